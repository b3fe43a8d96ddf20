"""ONNX and TorchScript exporters for every registered architecture, with metadata and BN folding.

Design: the STFT stays **outside** the graph. ONNX's STFT/iSTFT coverage in ONNX Runtime
(center/reflect padding, inverse with window-sum normalisation) is partial and slower than
torch.stft, the transform is ~1 % of the run time, and keeping it outside lets every backend
share one STFT implementation that is proven against the original. The artifact still carries
everything the STFT needs (n_fft, hop, the window itself) in its metadata.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import torch

from core.files import atomic_write_bytes, sha256_file
from models.checkpoint import LoadedModel
from models.optimize import fold_batchnorm

from models.artifact import (INPUT_CONDITION, INPUT_FEATURES, INPUT_SPEC, METADATA_KEY, OUTPUT_SPEC,
                             OUTPUT_STEM, build_metadata, feature_names)
from .graph import SplitGraph, example_inputs

ONNX_OPSET = 17


def _prepared(model: LoadedModel):
    net = fold_batchnorm(model.network)
    spec, features, condition = example_inputs(net, model.architecture.window_spec(model.config).frame_multiple)
    source = Path(model.source)
    digest = sha256_file(source) if source.is_file() else None
    metadata = build_metadata(model.architecture, model.config, model.window, source.name, len(features), digest)
    return net, spec, features, condition, metadata


def export_onnx(model: LoadedModel, path: str | os.PathLike[str]) -> Path:
    """Write an ONNX file (dynamic batch and time axes) with the kit metadata."""
    import onnx

    path = Path(path)
    net, spec, features, condition, metadata = _prepared(model)
    graph = SplitGraph(net, len(features)).eval()
    feature_inputs = feature_names(INPUT_FEATURES, len(features))
    stem_outputs = feature_names(OUTPUT_STEM, len(features))
    dynamic = {INPUT_SPEC: {0: "windows", 2: "frames"}, INPUT_CONDITION: {0: "items"},
               OUTPUT_SPEC: {0: "items", 2: "frames"}}
    for i, (name, out) in enumerate(zip(feature_inputs, stem_outputs)):
        dynamic[name] = {0: "items", 2: f"frames_{i}"}
        dynamic[out] = {0: "windows", 2: f"frames_{i}"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated but produces the plain opset-17 graph that
        # ONNX Runtime optimises best; the dynamo exporter needs onnxscript.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            graph, (spec, *features, condition), buffer, dynamo=False, opset_version=ONNX_OPSET,
            input_names=[INPUT_SPEC, *feature_inputs, INPUT_CONDITION],
            output_names=[*stem_outputs, OUTPUT_SPEC], dynamic_axes=dynamic,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata
    proto.producer_name = "mdx-kit"
    onnx.checker.check_model(proto)
    atomic_write_bytes(path, proto.SerializeToString())
    return path


def export_torchscript(model: LoadedModel, path: str | os.PathLike[str]) -> Path:
    """Write a traced TorchScript module with ``stem`` and ``body`` methods and the metadata."""
    path = Path(path)
    net, spec, features, condition, metadata = _prepared(model)
    body_features = features if len(features) > 1 else features[0]
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is a format we ship
        traced = torch.jit.trace_module(net, {"stem": (spec,), "body": (body_features, condition)},
                                        check_trace=False)
        torch.jit.save(traced, buffer, _extra_files={METADATA_KEY: metadata})
    atomic_write_bytes(path, buffer.getvalue())
    return path
