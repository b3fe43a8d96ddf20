"""Separation engine, backends and the glue that turns a model file into a ready separator."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from .backends import Backend, OnnxBackend, TorchBackend, TorchScriptBackend, available_cpus
from .engine import ArraySource, AudioSource, ProgressCallback, Separator, StageTimes
from .geometry import ConcatGeometry, Geometry, HalfOverlapGeometry, geometry_for
from .timebudget import PLAIN, DeadlineController, Variant, extras_for

__all__ = [
    "ArraySource", "AudioSource", "Backend", "DeadlineController", "OnnxBackend", "ProgressCallback", "Separator",
    "StageTimes", "TorchBackend", "TorchScriptBackend", "ConcatGeometry", "Geometry", "HalfOverlapGeometry",
    "available_cpus", "geometry_for",
    "Variant", "backend_for_path", "extras_for", "load_backend", "load_separator",
    "measure_pass_seconds", "separate_file",
]

#: File endings and the backend each implies when ``--backend`` is not given.
BACKEND_BY_SUFFIX = {".ckpt": "torch", ".pt": "torch", ".pth": "torch", ".ts": "torchscript",
                     ".onnx": "onnx"}
BACKENDS = ("torch", "torchscript", "onnx")


def backend_for_path(path: str | os.PathLike[str]) -> str:
    """The backend a model file implies by its ending."""
    suffix = Path(path).suffix.lower()
    if suffix not in BACKEND_BY_SUFFIX:
        known = ", ".join(sorted(BACKEND_BY_SUFFIX))
        raise ValueError(f"cannot tell the backend of {path}: expected one of {known}, or pass --backend")
    return BACKEND_BY_SUFFIX[suffix]


def load_backend(model_path: str | os.PathLike[str], backend: str | None = None,
                 threads: int | None = None, fold_bn: bool = True):
    """Load a model file into a backend; returns ``(backend, stft_window)``.

    ``backend`` defaults to what the file ending implies; ``threads`` sets intra-op threads
    (default: the CPUs this process may use).
    """
    import torch

    from models.checkpoint import load_checkpoint

    backend = backend or backend_for_path(model_path)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    threads = threads or available_cpus()
    torch.set_num_threads(threads)
    if backend == "torch":
        loaded = load_checkpoint(model_path)
        return TorchBackend(loaded.network, loaded.architecture, fold_bn=fold_bn), loaded.window
    if backend == "torchscript":
        ts = TorchScriptBackend(model_path)
        return ts, ts.window
    ort_backend = OnnxBackend(model_path, threads=threads)
    return ort_backend, ort_backend.window


def load_separator(model_path: str | os.PathLike[str], backend: str | None = None,
                   threads: int | None = None, windows_per_batch: int = 1, mode: str = "exact") -> Separator:
    """Load a model file (.ckpt/.pt checkpoint, .ts TorchScript, .onnx) into a :class:`Separator`.

    ``mode`` is ``"exact"`` (the original's windowing, within its parity criteria) or ``"fast"``
    (approximate: shorter trims, cross-faded windows; the concatenating architectures only).
    """
    model, window = load_backend(model_path, backend, threads)
    return Separator(model, window, windows_per_batch, mode=mode)


def separate_file(separator: Separator, mixture_path: str | os.PathLike[str],
                  out_paths: Mapping[str, str | os.PathLike[str]],
                  progress: ProgressCallback | None = None,
                  times: StageTimes | None = None,
                  budget: DeadlineController | None = None) -> StageTimes:
    """Separate one file and write every stem in ``out_paths`` ({source: path}) atomically.

    With a ``budget`` controller the windows are planned against its deadline (see
    ``separation.timebudget``)."""
    from core.audio import StemWriter, open_mixture

    times = times if times is not None else StageTimes()
    missing = [s for s in separator.sources if s not in out_paths]
    if missing:
        raise ValueError(f"no output path for {', '.join(missing)}")
    with times.stage("read"):
        source = open_mixture(mixture_path)
    try:
        with StemWriter({s: out_paths[s] for s in separator.sources}) as writer:
            for _, block in separator.iter_blocks(source, progress, times, budget):
                with times.stage("write"):
                    for i, name in enumerate(separator.sources):
                        writer.write(name, block[i])
    finally:
        if hasattr(source, "close"):
            source.close()
    return times


def measure_pass_seconds(separator: Separator, repeats: int = 2) -> float:
    """Measured wall time of one plain pass (one window, every target) on this machine.

    The first run warms up the backend; the fastest of the others is returned.
    """
    import time

    from core.signals import parity_signal

    geo = separator.geometry
    source = ArraySource(parity_signal(geo.window + geo.step, seed=7))
    best = float("inf")
    for attempt in range(repeats + 1):
        t0 = time.perf_counter()
        separator.run_windows(source, [1], PLAIN, StageTimes())
        if attempt:  # the first run only warms up
            best = min(best, time.perf_counter() - t0)
    return best
