"""The SDX23 music track's side of its predictor interface, as that grader drove it.

The grader reads ``mixture.wav`` with ``soundfile.read`` (float64, (n, 2)), calls the
predictor's ``separate_music_file(mixed_sound_array, sample_rate)`` under the song's limit, and
expects back one array per name of ``predictor.instruments`` with the mixture's shape and a dict
of their sample rates; it writes them as the stems. :func:`run_song` does the same, checks what
comes back, and writes float WAVs atomically (nothing when the output is unusable).
"""
from __future__ import annotations

import os
import time
from typing import Any, Mapping

import numpy as np

from core.audio import read_array, write_stems
from core.constants import SOURCES

from .music_demixing import time_limit


class Sdx23OutputError(ValueError):
    """What ``separate_music_file`` returned is not what the SDX23 grader accepts."""


def check_outputs(arrays: Any, rates: Any, n_samples: int, rate: int) -> dict[str, np.ndarray]:
    """The four stems from a ``separate_music_file`` result, or :class:`Sdx23OutputError`."""
    if not isinstance(arrays, Mapping) or not isinstance(rates, Mapping):
        raise Sdx23OutputError("separate_music_file must return (dict of arrays, dict of sample rates), got "
                               f"({type(arrays).__name__}, {type(rates).__name__})")
    missing = [s for s in sorted(SOURCES) if s not in arrays or s not in rates]
    if missing:
        raise Sdx23OutputError(f"separate_music_file returned no {', '.join(missing)}")
    stems = {}
    for name in SOURCES:
        stem = np.asarray(arrays[name])
        if stem.shape != (n_samples, 2):
            raise Sdx23OutputError(f"{name}: shape {stem.shape}, expected the mixture's ({n_samples}, 2)")
        if int(rates[name]) != rate:
            raise Sdx23OutputError(f"{name}: sample rate {rates[name]}, expected the mixture's {rate}")
        if not np.isfinite(stem).all():
            raise Sdx23OutputError(f"{name}: contains NaN or Inf")
        stems[name] = stem.astype(np.float32, copy=False)
    return stems


def run_song(predictor: Any, mixture_path: str | os.PathLike[str],
             out_paths: Mapping[str, str | os.PathLike[str]], limit_s: float | None) -> float:
    """Drive ``predictor`` through the SDX23 interface for one song; returns the call's wall time."""
    if not callable(getattr(predictor, "separate_music_file", None)):
        raise Sdx23OutputError(f"{type(predictor).__name__} has no separate_music_file(mixed_sound_array, "
                               "sample_rate): it does not implement the SDX23 interface")
    mixture, rate = read_array(mixture_path)
    t0 = time.perf_counter()
    with time_limit(limit_s or 0, f"separate_music_file of {os.path.basename(os.path.dirname(mixture_path))!r}"):
        arrays, rates = predictor.separate_music_file(mixture, rate)
    wall = time.perf_counter() - t0
    stems = check_outputs(arrays, rates, mixture.shape[0], rate)
    write_stems({name: out_paths[name] for name in SOURCES}, stems, rate)
    return wall
