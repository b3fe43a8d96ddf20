"""A few facts about an ``.onnx`` file, read straight from its protobuf bytes.

Importing the ``onnx`` package costs about a second of start-up (most of it ``ml_dtypes``), and
the kit only needs a handful of facts before it hands a model to a runtime: the metadata it
wrote at export time, the graph's input and output names, and whether any tensor keeps its data
in an external file. The kit refuses external data *before* any runtime reads a file, so that a
model can never make a runtime open paths next to it. This module decodes just enough of the
protobuf wire format of an ONNX ``ModelProto`` for that, with the standard library alone.

The file is read once; the walk moves over offsets into those bytes, so large ``raw_data``
fields are stepped over, never copied. Field numbers follow ``onnx/onnx.proto`` (checked
against onnx 1.23):

* ``ModelProto``: graph 7, metadata_props 14 (``StringStringEntryProto`` key 1, value 2),
  training_info 20, functions 25.
* ``GraphProto``: node 1, initializer 5, input 11, output 12, sparse_initializer 15;
  ``ValueInfoProto`` name 1.
* ``NodeProto``: attribute 5. ``AttributeProto``: t 5, g 6, tensors 10, graphs 11,
  sparse_tensor 22, sparse_tensors 23.
* ``FunctionProto``: node 7, attribute_proto 11 (attribute defaults).
  ``TrainingInfoProto``: initialization 1, algorithm 2 (graphs).
* ``SparseTensorProto``: values 1, indices 2. ``TensorProto``: name 8, external_data 13,
  data_location 14 (1 = EXTERNAL).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["OnnxHeader", "read_onnx_header"]

# Wire types of the protobuf encoding.
_VARINT, _I64, _LEN, _SGROUP, _EGROUP, _I32 = 0, 1, 2, 3, 4, 5
#: Graphs nested deeper than this (through If/Loop/Scan bodies) are taken as malformed: real
#: models nest a few levels, and the limit keeps a crafted file from exhausting Python's stack.
_MAX_GRAPH_DEPTH = 64
_DATA_LOCATION_EXTERNAL = 1


@dataclass(frozen=True)
class OnnxHeader:
    """What :func:`read_onnx_header` found in a model file."""

    #: ``ModelProto.metadata_props`` as a dict (a repeated key keeps its last value, as onnx's does).
    metadata: dict[str, str]
    #: Names of every tensor anywhere in the model (graphs, subgraphs, functions, training info)
    #: whose data lives in an external file, in file order; an unnamed tensor appears as "".
    external_tensors: tuple[str, ...]
    #: Names of the main graph's inputs and outputs, in order.
    graph_inputs: tuple[str, ...]
    graph_outputs: tuple[str, ...]


class _Malformed(Exception):
    """Raised inside the walk; :func:`read_onnx_header` turns it into a ValueError naming the file."""


def read_onnx_header(path: str | os.PathLike[str]) -> OnnxHeader:
    """Read metadata, graph input/output names and external-data tensors of the ONNX model at *path*.

    Raises ValueError("<path> is not an ONNX model: <why>") when *path* is not a regular file or
    its bytes are not a well-formed ``ModelProto`` with a graph. Other OS errors (permissions,
    I/O) propagate unchanged.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path} is not an ONNX model: no such file")
    if not path.is_file():  # a directory, FIFO, device: never read it
        raise ValueError(f"{path} is not an ONNX model: not a regular file")
    try:
        buf = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError) as exc:  # replaced since the checks above
        raise ValueError(f"{path} is not an ONNX model: {exc.strerror}") from None
    try:
        return _Walker(buf).model()
    except _Malformed as exc:
        raise ValueError(f"{path} is not an ONNX model: {exc}") from None


def _fields(buf: bytes, pos: int, end: int):
    """Yield ``(field_number, wire_type, a, b)`` for each field of the message in ``buf[pos:end]``.

    For a varint, ``a`` is its value; for a length-delimited field, ``buf[a:b]`` is its payload;
    for fixed-width fields, ``buf[a:b]`` are their bytes. Nothing is copied.
    """
    while pos < end:
        tag, pos = _varint(buf, pos, end, "tag")
        field, wire = tag >> 3, tag & 7
        if field == 0:
            raise _Malformed("field number 0")
        if wire == _LEN:
            length, pos = _varint(buf, pos, end, "length")
            stop = pos + length
            if stop > end:
                raise _Malformed(f"field {field} runs {stop - end} bytes past the end of its message")
            yield field, wire, pos, stop
            pos = stop
        elif wire == _VARINT:
            value, pos = _varint(buf, pos, end, "varint")
            yield field, wire, value, pos
        elif wire == _I64 or wire == _I32:
            stop = pos + (8 if wire == _I64 else 4)
            if stop > end:
                raise _Malformed(f"fixed-width field {field} runs past the end of its message")
            yield field, wire, pos, stop
            pos = stop
        elif wire == _SGROUP or wire == _EGROUP:
            raise _Malformed(f"group wire type {wire} (field {field}) is not used by ONNX")
        else:
            raise _Malformed(f"unknown wire type {wire} (field {field})")


def _varint(buf: bytes, pos: int, end: int, what: str) -> tuple[int, int]:
    """(value, position after it) of the varint at ``pos``; one byte is the common case."""
    if pos >= end:
        raise _Malformed(f"truncated {what}")
    byte = buf[pos]
    if byte < 0x80:
        return byte, pos + 1
    return _varint_rest(buf, pos + 1, end, byte)


def _varint_rest(buf: bytes, pos: int, end: int, first: int) -> tuple[int, int]:
    """Finish a varint whose first byte *first* (continuation bit set) was read; return (value, pos)."""
    value = first & 0x7F
    shift = 7
    while True:
        if pos >= end:
            raise _Malformed("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift >= 70:
            raise _Malformed("varint longer than 10 bytes")


def _expect(field: int, wire: int, expected: int, message: str) -> None:
    if wire != expected:
        raise _Malformed(f"{message} field {field} has wire type {wire}, expected {expected}")


# The length-delimited fields each message's walk descends into (numbers in the module docstring).
_MODEL_PARTS = frozenset({7, 14, 20, 25})
_ENTRY_PARTS = frozenset({1, 2})
_NAME_PART = frozenset({1})
_GRAPH_PARTS = frozenset({1, 5, 15})
_MAIN_GRAPH_PARTS = _GRAPH_PARTS | {11, 12}
_NODE_PARTS = frozenset({5})
_ATTRIBUTE_PARTS = frozenset({5, 6, 10, 11, 22, 23})
_FUNCTION_PARTS = frozenset({7, 11})
_TRAINING_PARTS = frozenset({1, 2})
_SPARSE_PARTS = frozenset({1, 2})


class _Walker:
    """One pass over a ModelProto's bytes, collecting the facts of :class:`OnnxHeader`."""

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.external: list[str] = []
        self.inputs: list[str] = []
        self.outputs: list[str] = []

    def parts(self, a: int, b: int, message: str, fields: frozenset[int]):
        """Yield ``(field, start, stop)`` of the length-delimited ``fields`` of the ``message``
        in ``buf[a:b]`` (any other wire type for them is malformed); other fields are skipped."""
        for field, wire, c, d in _fields(self.buf, a, b):
            if field in fields:
                _expect(field, wire, _LEN, message)
                yield field, c, d

    def model(self) -> OnnxHeader:
        buf = self.buf
        if not buf:
            raise _Malformed("empty file")
        metadata: dict[str, str] = {}
        has_graph = False
        for field, c, d in self.parts(0, len(buf), "ModelProto", _MODEL_PARTS):
            if field == 7:
                has_graph = True
                self.graph(c, d, depth=0, main=True)
            elif field == 14:
                key, value = self.string_entry(c, d)
                metadata[key] = value
            elif field == 20:
                self.training_info(c, d)
            else:  # 25
                self.function(c, d)
        if not has_graph:
            raise _Malformed("no graph")
        return OnnxHeader(
            metadata=metadata,
            external_tensors=tuple(self.external),
            graph_inputs=tuple(self.inputs),
            graph_outputs=tuple(self.outputs),
        )

    def text(self, a: int, b: int) -> str:
        try:
            return self.buf[a:b].decode("utf-8")
        except UnicodeDecodeError:
            raise _Malformed(f"invalid UTF-8 in a string at byte {a}") from None

    def string_entry(self, a: int, b: int) -> tuple[str, str]:
        """A StringStringEntryProto: (key, value), "" for an absent one."""
        entry = {1: "", 2: ""}
        for field, c, d in self.parts(a, b, "StringStringEntryProto", _ENTRY_PARTS):
            entry[field] = self.text(c, d)
        return entry[1], entry[2]

    def value_info_name(self, a: int, b: int) -> str:
        name = ""
        for _, c, d in self.parts(a, b, "ValueInfoProto", _NAME_PART):
            name = self.text(c, d)
        return name

    def graph(self, a: int, b: int, depth: int, main: bool = False) -> None:
        if depth > _MAX_GRAPH_DEPTH:
            raise _Malformed(f"graphs nested more than {_MAX_GRAPH_DEPTH} deep")
        for field, c, d in self.parts(a, b, "GraphProto", _MAIN_GRAPH_PARTS if main else _GRAPH_PARTS):
            if field == 1:
                self.node(c, d, depth)
            elif field == 5:
                self.tensor(c, d)
            elif field == 15:
                self.sparse_tensor(c, d)
            elif field == 11:
                self.inputs.append(self.value_info_name(c, d))
            else:  # 12
                self.outputs.append(self.value_info_name(c, d))

    def node(self, a: int, b: int, depth: int) -> None:
        for _, c, d in self.parts(a, b, "NodeProto", _NODE_PARTS):
            self.attribute(c, d, depth)

    def attribute(self, a: int, b: int, depth: int) -> None:
        for field, c, d in self.parts(a, b, "AttributeProto", _ATTRIBUTE_PARTS):
            if field in (5, 10):  # t, tensors
                self.tensor(c, d)
            elif field in (6, 11):  # g, graphs
                self.graph(c, d, depth + 1)
            else:  # 22, 23: sparse_tensor, sparse_tensors
                self.sparse_tensor(c, d)

    def function(self, a: int, b: int) -> None:
        for field, c, d in self.parts(a, b, "FunctionProto", _FUNCTION_PARTS):
            if field == 7:
                self.node(c, d, depth=0)
            else:  # 11: attribute defaults
                self.attribute(c, d, depth=0)

    def training_info(self, a: int, b: int) -> None:
        for _, c, d in self.parts(a, b, "TrainingInfoProto", _TRAINING_PARTS):  # initialization, algorithm
            self.graph(c, d, depth=0)

    def sparse_tensor(self, a: int, b: int) -> None:
        for _, c, d in self.parts(a, b, "SparseTensorProto", _SPARSE_PARTS):  # values, indices
            self.tensor(c, d)

    def tensor(self, a: int, b: int) -> None:
        """Record the tensor's name if it has external_data entries or data_location EXTERNAL."""
        name = ""
        has_external_data = False
        location = 0
        for field, wire, c, d in _fields(self.buf, a, b):
            if field == 8:
                _expect(field, wire, _LEN, "TensorProto")
                name = self.text(c, d)
            elif field == 13:
                _expect(field, wire, _LEN, "TensorProto")
                has_external_data = True
            elif field == 14:
                _expect(field, wire, _VARINT, "TensorProto")
                location = c  # the last occurrence wins, as in protobuf
        if has_external_data or location == _DATA_LOCATION_EXTERNAL:
            self.external.append(name)
