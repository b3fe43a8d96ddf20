"""Waveform models through the engine: HTDemucs in demucs's own segments.

The streaming, the budget and the fallback are :class:`separation.engine.Separator`'s; what
differs is the window itself: no STFT around the network (the model takes and returns
waveforms), the track-level normalisation demucs applies before ``apply_model`` (mean and
unbiased std of the mono mix, taken in a first streaming pass over the track), and segment
geometry (:class:`separation.geometry.SegmentGeometry`) whose last segment is centre-padded.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from core.audio import AudioSource
from core.constants import SOURCES
from models.htdemucs import DemucsModel
from models.registry import get

from .backends import EagerModelBackend
from .engine import ProgressCallback, Separator, StageTimes
from .geometry import SegmentGeometry
from .timebudget import DeadlineController, Variant

#: demucs's defaults for ``apply_model`` (and the ``demucs`` command).
DEFAULT_OVERLAP = 0.25
#: Samples read at a time for the track statistics.
_STATS_BLOCK = 1 << 20


class DemucsBackend(EagerModelBackend):
    """What runs an HTDemucs network: eager PyTorch, fp32 (the package's own classes)."""

    model: DemucsModel

    def separate_waveforms(self, batch: np.ndarray) -> np.ndarray:
        """(N, window, 2) float32 normalised mixture -> (N, 4, window, 2) in the kit's source order."""
        with torch.inference_mode():
            audio = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
            out = self.model.network(audio.transpose(1, 2))  # (N, model sources, 2, window)
            index = self.model.source_index
            stems = [out[:, list(index[name])].sum(dim=1) for name in SOURCES]
            return torch.stack(stems, dim=1).transpose(2, 3).numpy()


class WaveformSeparator(Separator):
    """Separates tracks with an HTDemucs model; same streaming interface as :class:`Separator`."""

    def __init__(self, backend: DemucsBackend, overlap: float = DEFAULT_OVERLAP) -> None:
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {overlap}")
        self.backend = backend
        self.architecture = get("htdemucs")
        self.config = None
        self.geometry = SegmentGeometry(backend.model.segment_samples, overlap)
        self.windows_per_batch = 1
        self.sources = SOURCES
        self._stats = (0.0, 1.0)

    def extras(self) -> tuple[Variant, ...]:
        """Extras a budget may buy: the channel swap and the polarity flip (demucs's random time
        shifts need context its fixed-length input does not have)."""
        return (Variant("swap", swap=True), Variant("invert", invert=True))

    def describe(self) -> dict:
        return {"segment_samples": self.geometry.window, "overlap": self.geometry.overlap, "shifts": 0}

    def iter_blocks(self, source: AudioSource, progress: ProgressCallback | None = None,
                    times: StageTimes | None = None,
                    budget: DeadlineController | None = None) -> Iterator[tuple[int, np.ndarray]]:
        times = times if times is not None else StageTimes()
        with times.stage("read"):
            self._stats = track_statistics(source)
        yield from super().iter_blocks(source, progress, times, budget)

    def run_windows(self, source: AudioSource, indices: list[int], variant: Variant,
                    times: StageTimes) -> np.ndarray:
        """Segments ``indices`` through the network -> (N, S, window, 2) float32, each segment's
        samples first (zeros after them)."""
        geo, total = self.geometry, source.n_samples
        mean, std = self._stats
        if variant.shift:
            raise ValueError("HTDemucs windows take no time shift")
        with times.stage("read"):
            batch = np.stack([source.read(geo.window_start(c, total), geo.window_start(c, total) + geo.window)
                              for c in indices])
            inside = [(max(0, -geo.window_start(c, total)), min(geo.window, total - geo.window_start(c, total)))
                      for c in indices]
            batch = (batch - np.float32(mean)) / np.float32(std)
            for row, (lo, hi) in zip(batch, inside):  # demucs pads the normalised track with zeros
                row[:lo] = 0.0
                row[hi:] = 0.0
            if variant.swap:
                batch = batch[..., ::-1]
            if variant.invert:
                batch = -batch
        with times.stage("network"):
            out = self.backend.separate_waveforms(batch)  # (N, S, window, 2)
        if variant.swap:
            out = out[..., ::-1]
        if variant.invert:
            out = -out
        out = out * np.float32(std) + np.float32(mean)
        kept = np.zeros_like(out)
        for i, c in enumerate(indices):  # centre trim: the segment's own samples first
            first, n = geo.trim_of(c, total), geo.length(c, total)
            kept[i, :, :n] = out[i, :, first:first + n]
        return kept


def track_statistics(source: AudioSource) -> tuple[float, float]:
    """(mean, unbiased std + 1e-8) of the mono mix, as demucs normalises before ``apply_model``."""
    n = source.n_samples
    total = total_sq = 0.0
    for start in range(0, n, _STATS_BLOCK):
        mono = source.read(start, min(n, start + _STATS_BLOCK)).astype(np.float64).mean(axis=1)
        total += float(mono.sum())
        total_sq += float(np.square(mono).sum())
    if n < 2:
        return (total / max(n, 1), 1e-8 + 0.0)
    mean = total / n
    var = max(0.0, (total_sq - n * mean * mean) / (n - 1))
    return mean, float(np.sqrt(var)) + 1e-8
