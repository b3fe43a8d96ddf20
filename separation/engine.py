"""The separation engine: windows, batching, STFT, backend call, iSTFT, trim and stitch.

Pure with respect to files and graders: audio comes from an :class:`AudioSource`, results go
out as consecutive blocks of stems (``(n_sources, n_samples, 2)`` float32) so that a caller can
stream them to disk and a 10-minute track never needs all four stems in memory.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np

from core.audio import ArraySource, AudioSource
from core.constants import N_AUDIO_CHANNELS, SOURCES
from models.stft import Stft

from .backends import Backend
from .geometry import geometry_for
from .timebudget import PLAIN, DeadlineController, Variant, extras_for

ProgressCallback = Callable[[int, int], None]  # (samples done, total samples)


class StageTimes(dict):
    """Seconds spent per stage (read, stft, network, istft, write), accumulated."""

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + time.perf_counter() - t0


class Separator:
    """Separates tracks with a backend, in its architecture's window geometry.

    ``windows_per_batch`` windows are read and transformed together; their four targets are
    handled by the backend. Peak memory grows with it, speed barely does on CPU. The windowing is
    always the original's (exact); approximation, where wanted, is a precision of the backend.
    """

    def __init__(self, backend: Backend, window: np.ndarray | None = None,
                 windows_per_batch: int = 1) -> None:
        if windows_per_batch < 1:
            raise ValueError("windows_per_batch must be >= 1")
        cfg = backend.config
        self.backend = backend
        self.architecture = backend.architecture
        self.config = cfg
        self.spectral = Stft(cfg.n_fft, cfg.hop_length, window)
        self.window_spec = self.architecture.window_spec(cfg)
        self.geometry = geometry_for(self.window_spec)
        self.windows_per_batch = windows_per_batch
        self.sources = SOURCES

    #: Whether one pass (a window, every target) has a fixed cost worth caching per machine.
    calibrates = True
    #: The degradation ladder's reduced rung: the same model at a gated approximate precision
    #: (set on an instance by the predictor when one runs natively here), for windows the exact
    #: pass cannot reach; None: no such rung.
    reduced_backend: Backend | None = None

    def extras(self) -> tuple[Variant, ...]:
        """Test-time extras a budget may buy for this architecture's windows, in order."""
        return extras_for(self.window_spec.hop_length)

    def describe(self) -> dict:
        """Architecture-specific settings, for reports."""
        return {}

    def iter_blocks(self, source: AudioSource, progress: ProgressCallback | None = None,
                    times: StageTimes | None = None,
                    budget: DeadlineController | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_sample, stems)`` blocks in order; stems is (n_sources, n, 2) float32.

        The blocks tile ``[0, source.n_samples)`` exactly. Each window's kept part is weighted
        and overlap-added into a running buffer; what no later window touches is yielded at
        once, so memory stays bounded by one window whatever the track's length. With a
        ``budget`` controller each window is planned and policed against its deadline.
        """
        times = times if times is not None else StageTimes()
        geo = self.geometry
        total = source.n_samples
        n_windows = geo.n_windows(total)
        n_src = len(self.sources)
        if source.peak == 0.0:
            # Digital silence: the network's biases would invent sound, so return silence.
            for start in range(0, total, geo.step):
                n = min(geo.step, total - start)
                if progress is not None:
                    progress(start + n, total)
                yield start, np.zeros((n_src, n, N_AUDIO_CHANNELS), dtype=np.float32)
            return
        # acc holds mixture samples [acc_start, acc_start + kept): window c's kept part, plus what
        # earlier windows already added there.
        acc = np.zeros((n_src, geo.kept, N_AUDIO_CHANNELS), dtype=np.float32)
        acc_start = 0
        per_step = 1 if budget is not None else self.windows_per_batch
        for first in range(0, n_windows, per_step):
            indices = list(range(first, min(first + per_step, n_windows)))
            if budget is None:
                kept = self.run_windows(source, indices, PLAIN, times)
            else:
                c = indices[0]
                kept = budget.run_window(c, n_windows,
                                         lambda variant: self.run_windows(source, [c], variant, times)[0],
                                         lambda: self._fallback_window(source, c))[None]
            for c, piece in zip(indices, kept):  # piece: (S, kept, 2), starts at mixture sample c*step
                weights = geo.weights(c, total)
                if weights is not None:
                    piece = piece * weights[None, :, None]
                acc += piece
                last = c == n_windows - 1
                n_final = min(geo.kept if last else geo.step, total - acc_start)
                block = acc[:, :n_final].copy()
                if progress is not None:
                    progress(acc_start + n_final, total)
                yield acc_start, block
                if not last:
                    acc[:, :geo.kept - geo.step] = acc[:, geo.step:]
                    acc[:, geo.kept - geo.step:] = 0.0
                    acc_start += geo.step

    def run_windows(self, source: AudioSource, indices: list[int], variant: Variant,
                    times: StageTimes) -> np.ndarray:
        """Windows ``indices`` through STFT, backend and iSTFT -> kept parts (N, S, kept, 2) float32."""
        geo = self.geometry
        with times.stage("read"):
            reads = []
            for c in indices:
                start = geo.window_start(c) + variant.shift
                window = source.read(start, start + geo.window)
                stop = geo.read_stop(c, source.n_samples) - start  # zero the context the original zeroes
                if stop < geo.window:
                    window[max(stop, 0):] = 0.0
                reads.append(window)
            batch = np.stack(reads)
            if variant.swap:
                batch = batch[..., ::-1]
            if variant.invert:
                batch = -batch
            batch = np.ascontiguousarray(batch)
        with times.stage("stft"):
            spec = self.spectral.to_spec(batch)
        with times.stage("network"):
            backend = self.reduced_backend if variant.reduced else self.backend
            if backend is None:
                raise ValueError("a reduced-precision pass was asked, but this separator has no reduced backend")
            out_spec = backend.separate_spec(spec)  # (N, S, 4, T, F)
        with times.stage("istft"):
            n_win, n_src = out_spec.shape[:2]
            audio = self.spectral.to_audio(out_spec.reshape((n_win * n_src,) + tuple(out_spec.shape[2:])))
            audio = audio.reshape(n_win, n_src, -1, N_AUDIO_CHANNELS)
            first = geo.trim - variant.shift  # the same mixture samples whatever the shift
            kept = audio[:, :, first:first + geo.kept]
            if variant.swap:
                kept = kept[..., ::-1]
            if variant.invert:
                kept = -kept
        return kept

    def _fallback_window(self, source: AudioSource, index: int) -> np.ndarray:
        """No-network estimate of window ``index``: the mixture / n_sources for every source."""
        geo = self.geometry
        start = index * geo.step
        mix = source.read(start, start + geo.kept) / np.float32(len(self.sources))
        return np.repeat(mix[None], len(self.sources), axis=0)

    def separate(self, audio: np.ndarray, progress: ProgressCallback | None = None,
                 times: StageTimes | None = None) -> dict[str, np.ndarray]:
        """(n_samples, 2) float32 mixture -> {source: (n_samples, 2) float32} (in memory)."""
        source = ArraySource(audio)
        out = np.zeros((len(self.sources), source.n_samples, N_AUDIO_CHANNELS), dtype=np.float32)
        for start, block in self.iter_blocks(source, progress, times):
            out[:, start:start + block.shape[1]] = block
        return {name: out[i] for i, name in enumerate(self.sources)}
