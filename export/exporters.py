"""ONNX and TorchScript exporters for LightSAFT+GPoCM, with metadata and BN folding.

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

from models.checkpoint import LoadedModel
from models.optimize import fold_batchnorm

from .artifact import (INPUT_CONDITION, INPUT_FEATURES, INPUT_SPEC, METADATA_KEY, OUTPUT_SPEC,
                       OUTPUT_STEM, build_metadata)
from .graph import SplitGraph, example_inputs

ONNX_OPSET = 17


def _atomic_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def export_onnx(model: LoadedModel, path: str | os.PathLike[str]) -> Path:
    """Write an ONNX file (dynamic batch and time axes) with the kit metadata."""
    import onnx

    path = Path(path)
    net = fold_batchnorm(model.network)
    graph = SplitGraph(net).eval()
    inputs = example_inputs(net, n_frames=net.cfg.frame_multiple * 2)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated but produces the plain opset-17 graph that
        # ONNX Runtime optimises best; the dynamo exporter needs onnxscript.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            graph, inputs, buffer, dynamo=False, opset_version=ONNX_OPSET,
            input_names=[INPUT_SPEC, INPUT_FEATURES, INPUT_CONDITION],
            output_names=[OUTPUT_STEM, OUTPUT_SPEC],
            dynamic_axes={INPUT_SPEC: {0: "windows", 2: "frames"},
                          INPUT_FEATURES: {0: "items", 2: "frames"},
                          INPUT_CONDITION: {0: "items"},
                          OUTPUT_STEM: {0: "windows", 2: "frames"},
                          OUTPUT_SPEC: {0: "items", 2: "frames"}},
        )
    proto = onnx.load_from_string(buffer.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, build_metadata(model.config, model.window, model.source)
    proto.producer_name = "mdx-kit"
    onnx.checker.check_model(proto)
    _atomic_bytes(path, proto.SerializeToString())
    return path


def export_torchscript(model: LoadedModel, path: str | os.PathLike[str]) -> Path:
    """Write a traced TorchScript module with ``stem`` and ``body`` methods and the metadata."""
    path = Path(path)
    net = fold_batchnorm(model.network)
    spec, features, condition = example_inputs(net, n_frames=net.cfg.frame_multiple * 2)
    buffer = io.BytesIO()
    extra = {METADATA_KEY: build_metadata(model.config, model.window, model.source)}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is a format we ship
        traced = torch.jit.trace_module(net, {"stem": (spec,), "body": (features, condition)},
                                        check_trace=False)
        torch.jit.save(traced, buffer, _extra_files=extra)
    _atomic_bytes(path, buffer.getvalue())
    return path
