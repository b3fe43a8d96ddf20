"""models.onnx_file: the onnx-free reader agrees with the onnx package and refuses what is not a model."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import AttributeProto, GraphProto, TensorProto, helper, numpy_helper

from models import DEFAULT_MODEL
from models.onnx_file import OnnxHeader, read_onnx_header


def _onnx_tensors(model: onnx.ModelProto):
    """Every TensorProto of *model* that models.onnx_file looks at, walked with onnx's own API."""

    def graph_tensors(graph: GraphProto):
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield sparse.values
            yield sparse.indices
        for node in graph.node:
            yield from node_tensors(node)

    def node_tensors(node: onnx.NodeProto):
        for attr in node.attribute:
            yield from attribute_tensors(attr)

    def attribute_tensors(attr: AttributeProto):
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        if attr.HasField("g"):
            yield from graph_tensors(attr.g)
        for graph in attr.graphs:
            yield from graph_tensors(graph)
        sparse = list(attr.sparse_tensors) + ([attr.sparse_tensor] if attr.HasField("sparse_tensor") else [])
        for tensor in sparse:
            yield tensor.values
            yield tensor.indices

    yield from graph_tensors(model.graph)
    for function in model.functions:
        for node in function.node:
            yield from node_tensors(node)
        for attr in function.attribute_proto:
            yield from attribute_tensors(attr)
    for info in model.training_info:
        yield from graph_tensors(info.initialization)
        yield from graph_tensors(info.algorithm)


def _onnx_external_names(model: onnx.ModelProto) -> list[str]:
    return [
        t.name for t in _onnx_tensors(model) if len(t.external_data) or t.data_location == TensorProto.EXTERNAL
    ]


def _small_model() -> onnx.ModelProto:
    """MatMul with a 1000-float initializer, a Constant node, and an If whose branches hold Constants."""
    weight = numpy_helper.from_array(np.arange(1000, dtype=np.float32).reshape(10, 100) / 7, name="W")
    const = helper.make_node(
        "Constant", [], ["c"], value=numpy_helper.from_array(np.full(100, 0.5, np.float32), name="c_value")
    )

    def branch(tag: str, fill: float) -> GraphProto:
        node = helper.make_node(
            "Constant", [], [f"{tag}_out"],
            value=numpy_helper.from_array(np.full(100, fill, np.float32), name=f"{tag}_value"),
        )
        out = helper.make_tensor_value_info(f"{tag}_out", TensorProto.FLOAT, [100])
        return helper.make_graph([node], f"{tag}_branch", [], [out])

    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["y0"]),
        const,
        helper.make_node("Add", ["y0", "c"], ["y1"]),
        helper.make_node(
            "If", ["cond"], ["z"], then_branch=branch("then", 1.0), else_branch=branch("else", -1.0)
        ),
        helper.make_node("Add", ["y1", "z"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "small",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10]),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 100])],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {"kit": "test", "note": "ünïcode"})
    onnx.checker.check_model(model)
    return model


def test_kit_model_matches_onnx():
    path = DEFAULT_MODEL
    model = onnx.load(path, load_external_data=False)
    header = read_onnx_header(path)
    assert isinstance(header, OnnxHeader)
    assert header.metadata == {p.key: p.value for p in model.metadata_props}
    assert header.metadata  # the kit writes its metadata at export
    assert header.graph_inputs == tuple(v.name for v in model.graph.input)
    assert header.graph_outputs == tuple(v.name for v in model.graph.output)
    assert header.external_tensors == ()
    assert _onnx_external_names(model) == []


def test_str_path_is_accepted():
    assert read_onnx_header(str(DEFAULT_MODEL)) == read_onnx_header(DEFAULT_MODEL)


@pytest.mark.parametrize(
    ("convert_attribute", "moved"),
    [(False, {"W"}), (True, {"W", "c_value", "then_value", "else_value"})],
)
def test_external_data_model(tmp_path: Path, convert_attribute: bool, moved: set[str]):
    path = tmp_path / "ext.onnx"
    onnx.save_model(
        _small_model(), path, save_as_external_data=True, all_tensors_to_one_file=True,
        location="w.bin", size_threshold=0, convert_attribute=convert_attribute,
    )
    assert (tmp_path / "w.bin").is_file()
    model = onnx.load(path, load_external_data=False)
    expected = _onnx_external_names(model)
    # The initializer always moves out; with convert_attribute, the Constants' tensors (the main
    # graph's and both If branches') too.
    assert set(expected) == moved
    assert sorted(expected) == sorted(
        t.name for t in onnx.external_data_helper._get_all_tensors(model)
        if onnx.external_data_helper.uses_external_data(t)
    )
    header = read_onnx_header(path)
    assert sorted(header.external_tensors) == sorted(expected)
    assert header.metadata == {"kit": "test", "note": "ünïcode"}
    assert header.graph_inputs == ("x", "cond")
    assert header.graph_outputs == ("y",)


def test_external_data_field_alone_counts(tmp_path: Path):
    """A tensor with external_data entries but no data_location is still refused."""
    model = _small_model()
    tensor = model.graph.initializer[0]
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "w.bin"
    tensor.ClearField("raw_data")
    assert not tensor.HasField("data_location")
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    assert read_onnx_header(path).external_tensors == ("W",)


def test_sparse_function_and_training_tensors_are_checked(tmp_path: Path):
    """External tensors in sparse initializers, function bodies and training graphs are found too."""

    def external(name: str) -> TensorProto:
        tensor = helper.make_tensor(name, TensorProto.FLOAT, [2], [0.0, 0.0])
        tensor.ClearField("float_data")
        tensor.data_location = TensorProto.EXTERNAL
        entry = tensor.external_data.add()
        entry.key, entry.value = "location", "w.bin"
        return tensor

    model = _small_model()
    indices = helper.make_tensor("sp_idx", TensorProto.INT64, [1], [0])
    model.graph.sparse_initializer.append(helper.make_sparse_tensor(external("sp_values"), indices, [4]))
    function = helper.make_function(
        "local", "F", ["a"], ["b"],
        [helper.make_node("Constant", [], ["b"], value=external("fn_value"))],
        [helper.make_opsetid("", 17)],
    )
    model.functions.append(function)
    info = model.training_info.add()
    info.initialization.CopyFrom(helper.make_graph([], "init", [], [], initializer=[external("train_init")]))
    info.algorithm.CopyFrom(helper.make_graph([], "algo", [], [], initializer=[external("train_algo")]))
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    found = read_onnx_header(path).external_tensors
    assert sorted(found) == sorted(_onnx_external_names(model))
    assert set(found) == {"sp_values", "fn_value", "train_init", "train_algo"}


def test_normally_saved_model_has_no_external_tensors(tmp_path: Path):
    path = tmp_path / "plain.onnx"
    model = _small_model()
    onnx.save_model(model, path)
    header = read_onnx_header(path)
    assert header.external_tensors == ()
    assert header.metadata == {p.key: p.value for p in model.metadata_props}
    assert header.graph_inputs == ("x", "cond")
    assert header.graph_outputs == ("y",)


def _bad_inputs(tmp_path: Path):
    kit_bytes = DEFAULT_MODEL.read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(kit_bytes[: len(kit_bytes) // 2])
    small_truncated = tmp_path / "small_truncated.onnx"
    small = _small_model().SerializeToString()
    small_truncated.write_bytes(small[: len(small) // 2])
    noise = tmp_path / "noise.onnx"
    noise.write_bytes(random.Random(1234).randbytes(4096))
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    directory = tmp_path / "dir.onnx"
    directory.mkdir()
    return {
        "truncated": truncated,
        "small_truncated": small_truncated,
        "noise": noise,
        "empty": empty,
        "directory": directory,
        "missing": tmp_path / "missing.onnx",
        "text": _write(tmp_path / "text.onnx", b"this is not a model\n"),
        "group": _write(tmp_path / "group.onnx", b"\x0b\x0c"),  # start/end group of field 1
        "long_varint": _write(tmp_path / "varint.onnx", b"\x08" + b"\xff" * 11 + b"\x01"),
        "no_graph": _write(tmp_path / "nograph.onnx", b"\x08\x07"),  # ir_version 7, nothing else
    }


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "case",
    ["truncated", "small_truncated", "noise", "empty", "directory", "missing", "text", "group", "long_varint",
     "no_graph"],
)
def test_not_a_model_raises(tmp_path: Path, case: str):
    path = _bad_inputs(tmp_path)[case]
    with pytest.raises(ValueError, match="is not an ONNX model") as info:
        read_onnx_header(path)
    assert str(path) in str(info.value)
