"""Open-Unmix through the kit: the whole-track BiLSTM, then Wiener and iSTFT streamed in chunks.

Open-Unmix's BiLSTM reads every frame of the track, so it cannot be windowed without changing
its output. What it needs is small, though: ``hidden_size`` values per frame and target. The
track is therefore separated in two passes over the audio, and never holds a whole-track
spectrogram:

1. *network*: the mixture's STFT chunk by chunk, each target's frame-wise encoder, then per
   target the BiLSTM over the whole track and the layers up to ``fc2`` (kept: frames x hidden);
2. *filter*: per chunk of ``wiener_win_len`` frames (the package's 300, so the post-filter sees
   exactly the frames it sees in the package), the STFT again, each target's last layers, the
   Wiener/EM filter, and an overlap-add iSTFT that emits the samples no later frame touches.

Peak memory is the per-frame hidden states (4 x 512 floats per 23 ms of audio: 210 MiB for 10
minutes) plus one chunk. Under a budget the network pass is one guarded stage and every chunk a
window of the deadline controller; a chunk that gets no filter pass gets the mixture / 4, in the
STFT domain so that the overlap-add stays seamless.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.nn import functional as F

from core.audio import AudioSource
from core.constants import N_AUDIO_CHANNELS, SOURCES
from models.registry import Architecture, get
from models.umx import UmxModel, wiener

from .backends import EagerModelBackend
from .engine import ProgressCallback, StageTimes
from .timebudget import DeadlineController, Variant

#: Frames per Wiener chunk: ``openunmix``'s ``wiener_win_len`` default.
WIENER_WIN_LEN = 300
#: Post-filter iterations by default (the ``openunmix`` package's default).
DEFAULT_NITER = 1


class UmxBackend(EagerModelBackend):
    """What runs the four target networks (eager PyTorch; fp32 only)."""

    model: UmxModel


class UmxSeparator:
    """Separates tracks with an Open-Unmix model; the same streaming interface as
    :class:`separation.engine.Separator`."""

    #: A pass here is the whole track, not a window: the calibration cache does not apply.
    calibrates = False

    def __init__(self, backend: UmxBackend, niter: int = DEFAULT_NITER,
                 wiener_win_len: int = WIENER_WIN_LEN) -> None:
        if niter < 0:
            raise ValueError(f"niter must be >= 0, got {niter}")
        if wiener_win_len < 1:
            raise ValueError("wiener_win_len must be >= 1")
        self.backend = backend
        self.model = backend.model
        self.architecture: Architecture = get("umx")
        self.sources = SOURCES
        self.niter = niter
        self.wiener_win_len = wiener_win_len
        self.n_fft, self.hop = self.model.n_fft, self.model.hop_length
        self.pad = self.n_fft // 2
        self.window = torch.hann_window(self.n_fft)

    def extras(self) -> tuple[Variant, ...]:
        """Test-time extras a budget may buy: none (the BiLSTM sees the whole track once)."""
        return ()

    def describe(self) -> dict:
        return {"niter": self.niter, "wiener_win_len": self.wiener_win_len}

    # ------------------------------------------------------------------ STFT pieces
    def n_frames(self, n_samples: int) -> int:
        return 1 + n_samples // self.hop

    def _read_padded(self, source: AudioSource, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) of the track reflect-padded by ``pad`` on each side, as
        ``torch.stft(center=True)`` pads it (indices in track coordinates)."""
        n = source.n_samples
        if start >= 0 and stop <= n:
            return source.read(start, stop)
        if n <= self.pad:  # too short to reflect once: reflect the whole track repeatedly
            whole = np.pad(source.read(0, n), ((self.pad, self.pad), (0, 0)), mode="reflect")
            return whole[start + self.pad:stop + self.pad]
        idx = np.abs(np.arange(start, stop))
        idx = np.where(idx >= n, 2 * (n - 1) - idx, idx)
        lo = int(idx.min())
        return source.read(lo, int(idx.max()) + 1)[idx - lo]

    def stft(self, source: AudioSource, first: int, stop: int) -> torch.Tensor:
        """Mixture STFT frames [first, stop) -> (frames, bins, channels) complex64."""
        start = first * self.hop - self.pad
        audio = self._read_padded(source, start, (stop - 1) * self.hop - self.pad + self.n_fft)
        spec = torch.stft(torch.from_numpy(np.ascontiguousarray(audio.T)), self.n_fft, self.hop,
                          window=self.window, center=False, return_complex=True)  # (C, F, T)
        return spec.permute(2, 1, 0)

    # ------------------------------------------------------------------ the two passes
    def hidden_states(self, source: AudioSource, times: StageTimes) -> dict[str, torch.Tensor]:
        """Pass 1: per target, (frames, hidden) decoder inputs for the whole track."""
        total = self.n_frames(source.n_samples)
        nets = self.model.networks
        hidden = self.model.config.hidden_size
        feats = {t: torch.empty((total, hidden)) for t in self.sources}
        with torch.inference_mode():
            for first in range(0, total, self.wiener_win_len):
                stop = min(first + self.wiener_win_len, total)
                with times.stage("stft"):
                    mag = self.stft(source, first, stop).abs().permute(0, 2, 1)  # (T, C, F)
                with times.stage("network"):
                    for t in self.sources:
                        feats[t][first:stop] = nets[t].features(mag)
            with times.stage("network"):
                for t in self.sources:
                    feats[t] = nets[t].recur(feats[t])  # the BiLSTM: whole track per target
        return feats

    def filter_chunk(self, spec: torch.Tensor, states: dict[str, torch.Tensor], first: int,
                     times: StageTimes) -> torch.Tensor:
        """Pass 2 for one chunk: (T, F, C) mixture STFT -> (T, F, C, sources) source STFTs."""
        nets = self.model.networks
        with torch.inference_mode():
            with times.stage("network"):
                mag = spec.abs().permute(0, 2, 1)  # (T, C, F)
                stop = first + spec.shape[0]
                mags = torch.stack([nets[t].decode(states[t][first:stop], mag) for t in self.sources], -1)
            with times.stage("wiener"):
                return wiener(mags.permute(0, 2, 1, 3), spec, self.niter)

    # ------------------------------------------------------------------ streaming
    def iter_blocks(self, source: AudioSource, progress: ProgressCallback | None = None,
                    times: StageTimes | None = None,
                    budget: DeadlineController | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_sample, stems)`` blocks in order; stems is (n_sources, n, 2) float32."""
        times = times if times is not None else StageTimes()
        total = source.n_samples
        n_src = len(self.sources)
        if total == 0:
            return
        if source.peak == 0.0:  # digital silence in, silence out (no invented bias sound)
            if progress is not None:
                progress(total, total)
            yield 0, np.zeros((n_src, total, N_AUDIO_CHANNELS), dtype=np.float32)
            return
        n_frames = self.n_frames(total)
        chunks = list(range(0, n_frames, self.wiener_win_len))
        if budget is None:
            states = self.hidden_states(source, times)
        else:
            states = budget.run_stage("network", lambda: self.hidden_states(source, times), len(chunks))
        ola = _OverlapAdd(self.window, self.hop, n_frames, total, n_src)
        for index, first in enumerate(chunks):
            stop = min(first + self.wiener_win_len, n_frames)
            with times.stage("stft"):
                spec = self.stft(source, first, stop)
            if budget is None:
                est = self.filter_chunk(spec, states, first, times)
            elif states is None:
                est = budget.run_window(index, len(chunks), lambda _v: None,  # the network pass ran out
                                        lambda: _mixture_share(spec, n_src))
            else:
                est = budget.run_window(index, len(chunks),
                                        lambda _v: self.filter_chunk(spec, states, first, times),
                                        lambda: _mixture_share(spec, n_src))
            with times.stage("istft"):
                start, block = ola.add(est, first, last=stop == n_frames)
            if block.shape[1]:
                if progress is not None:
                    progress(start + block.shape[1], total)
                yield start, block


def _mixture_share(spec: torch.Tensor, n_src: int) -> torch.Tensor:
    """The no-network estimate: each source gets the mixture / n_sources."""
    return (spec / n_src)[..., None].expand(*spec.shape, n_src).clone()


class _OverlapAdd:
    """Streaming ``torch.istft(center=True, length=n_samples)`` for every source at once.

    Frames arrive in order; the overlap-added signal and the window-square envelope are kept
    only where later frames may still add, and every sample before the next frame's start is
    divided by the envelope and emitted.
    """

    def __init__(self, window: torch.Tensor, hop: int, n_frames: int, n_samples: int, n_src: int) -> None:
        self.window, self.hop, self.n_fft = window, hop, window.shape[0]
        self.pad = self.n_fft // 2
        self.n_frames, self.n_samples, self.n_src = n_frames, n_samples, n_src
        self.buf = torch.zeros((n_src * N_AUDIO_CHANNELS, 0))  # padded-signal samples from self.buf_start
        self.env = torch.zeros(0)
        self.buf_start = 0
        self.emitted = 0  # track samples already yielded

    def add(self, est: torch.Tensor, first: int, last: bool) -> tuple[int, np.ndarray]:
        """Add (T, F, C, S) complex frames starting at frame ``first``; returns (start, block)."""
        n = est.shape[0]
        frames = est.permute(3, 2, 1, 0).reshape(self.n_src * N_AUDIO_CHANNELS, est.shape[1], n)
        frames = torch.fft.irfft(frames, n=self.n_fft, dim=1) * self.window[:, None]  # (SC, n_fft, T)
        span = (n - 1) * self.hop + self.n_fft
        signal = F.fold(frames, (1, span), (1, self.n_fft), stride=(1, self.hop))[:, 0, 0]  # (SC, span)
        envelope = F.fold((self.window ** 2)[None, :, None].expand(1, -1, n), (1, span), (1, self.n_fft),
                          stride=(1, self.hop))[0, 0, 0]
        offset = first * self.hop - self.buf_start  # where these frames start in the buffer
        grow = offset + span - self.buf.shape[1]
        if grow > 0:
            self.buf = torch.cat([self.buf, self.buf.new_zeros((self.buf.shape[0], grow))], dim=1)
            self.env = torch.cat([self.env, self.env.new_zeros(grow)])
        self.buf[:, offset:offset + span] += signal
        self.env[offset:offset + span] += envelope
        # Final: padded samples before the next frame's start (all of them after the last frame).
        final_padded = self.buf_start + self.buf.shape[1] if last else (first + n) * self.hop
        stop = min(final_padded - self.pad, self.n_samples)
        start = self.emitted
        if stop <= start:
            return start, np.zeros((self.n_src, 0, N_AUDIO_CHANNELS), dtype=np.float32)
        lo, hi = start + self.pad - self.buf_start, stop + self.pad - self.buf_start
        block = self.buf[:, lo:hi] / self.env[lo:hi]
        self.buf, self.env = self.buf[:, hi:], self.env[hi:]
        self.buf_start += hi
        self.emitted = stop
        block = block.reshape(self.n_src, N_AUDIO_CHANNELS, -1).permute(0, 2, 1)
        return start, np.ascontiguousarray(block.numpy(), dtype=np.float32)
