"""Separation engine, backends and the glue that turns a model file into a ready separator."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from .backends import Backend, TorchBackend
from .engine import ArraySource, AudioSource, ProgressCallback, Separator, StageTimes
from .geometry import WindowGeometry

__all__ = [
    "ArraySource", "AudioSource", "Backend", "ProgressCallback", "Separator", "StageTimes",
    "TorchBackend", "WindowGeometry", "backend_for_path", "load_separator", "separate_file",
]

#: File endings and the backend each implies when ``--backend`` is not given.
BACKEND_BY_SUFFIX = {".ckpt": "torch", ".pt": "torch", ".pth": "torch"}


def backend_for_path(path: str | os.PathLike[str]) -> str:
    """The backend a model file implies by its ending."""
    suffix = Path(path).suffix.lower()
    if suffix not in BACKEND_BY_SUFFIX:
        known = ", ".join(sorted(BACKEND_BY_SUFFIX))
        raise ValueError(f"cannot tell the backend of {path}: expected one of {known}, or pass --backend")
    return BACKEND_BY_SUFFIX[suffix]


def load_separator(model_path: str | os.PathLike[str], backend: str | None = None,
                   threads: int | None = None, windows_per_batch: int = 1) -> Separator:
    """Load a model file into a :class:`Separator` (exact windowing).

    ``backend`` defaults to what the file ending implies; ``threads`` sets intra-op threads.
    """
    import torch

    from models.checkpoint import load_checkpoint

    backend = backend or backend_for_path(model_path)
    if threads:
        torch.set_num_threads(threads)
    if backend == "torch":
        loaded = load_checkpoint(model_path)
        return Separator(TorchBackend(loaded.network), loaded.window, windows_per_batch)
    raise ValueError(f"unknown backend {backend!r}; choose torch")


def separate_file(separator: Separator, mixture_path: str | os.PathLike[str],
                  out_paths: Mapping[str, str | os.PathLike[str]],
                  progress: ProgressCallback | None = None,
                  times: StageTimes | None = None) -> StageTimes:
    """Separate one file and write every stem in ``out_paths`` ({source: path}) atomically."""
    from audio_io import StemWriter, open_mixture

    times = times if times is not None else StageTimes()
    missing = [s for s in separator.sources if s not in out_paths]
    if missing:
        raise ValueError(f"no output path for {', '.join(missing)}")
    with times.stage("read"):
        source = open_mixture(mixture_path)
    try:
        with StemWriter({s: out_paths[s] for s in separator.sources}) as writer:
            for _, block in separator.iter_blocks(source, progress, times):
                with times.stage("write"):
                    for i, name in enumerate(separator.sources):
                        writer.write(name, block[i])
    finally:
        if hasattr(source, "close"):
            source.close()
    return times
