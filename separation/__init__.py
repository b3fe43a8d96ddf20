"""Separation engine, backends and the glue that turns a model file into a ready separator."""
from __future__ import annotations

import os
from typing import Mapping

from .backends import PRECISIONS, Backend, OnnxBackend, OpenVinoBackend, available_cpus
from .calibration import measure_pass_seconds, pass_seconds
from .engine import ArraySource, AudioSource, ProgressCallback, Separator, StageTimes
from .geometry import ConcatGeometry, Geometry, HalfOverlapGeometry, geometry_for
from .loading import (BACKEND_CHOICES, BACKENDS, BackendChoice, backend_for_path, choose_backend, load_backend,
                      load_separator)

# The torch backends (``separation.torch_backends``) are not imported here: the exported-model
# path, from ``predict.py`` to the stems, runs without torch.
from .timebudget import DeadlineController, Variant, extras_for

__all__ = [
    "ArraySource", "AudioSource", "BACKENDS", "BACKEND_CHOICES", "Backend", "BackendChoice", "DeadlineController",
    "OnnxBackend", "OpenVinoBackend", "PRECISIONS", "ProgressCallback", "Separator", "choose_backend",
    "StageTimes", "ConcatGeometry", "Geometry", "HalfOverlapGeometry",
    "available_cpus", "geometry_for",
    "Variant", "backend_for_path", "extras_for", "load_backend", "load_separator",
    "measure_pass_seconds", "pass_seconds", "separate_file",
]


def separate_file(separator: Separator, mixture_path: str | os.PathLike[str],
                  out_paths: Mapping[str, str | os.PathLike[str]],
                  progress: ProgressCallback | None = None,
                  times: StageTimes | None = None,
                  budget: DeadlineController | None = None, fmt: str = "float",
                  clipped: dict[str, int] | None = None) -> StageTimes:
    """Separate one file and write every stem in ``out_paths`` ({source: path}) atomically.

    With a ``budget`` controller the windows are planned against its deadline (see
    ``separation.timebudget``). ``fmt``: an output format of ``core.audio.OUTPUT_FORMATS``;
    ``clipped``, when given, receives the samples clipped per stem (integer formats)."""
    from core.audio import StemWriter, open_mixture

    times = times if times is not None else StageTimes()
    missing = [s for s in separator.sources if s not in out_paths]
    if missing:
        raise ValueError(f"no output path for {', '.join(missing)}")
    with times.stage("read"):
        source = open_mixture(mixture_path)
    try:
        with StemWriter({s: out_paths[s] for s in separator.sources}, fmt=fmt) as writer:
            for _, block in separator.iter_blocks(source, progress, times, budget):
                with times.stage("write"):
                    for i, name in enumerate(separator.sources):
                        writer.write(name, block[i])
        if clipped is not None:
            clipped.update(writer.clipped)
    finally:
        if hasattr(source, "close"):
            source.close()
    return times
