"""The STFT front end and its inverse on numpy arrays: what inference runs.

Same layout and arithmetic as :class:`models.spectral.Spectral` (the torch twin that training
and export differentiate through; ``tests/test_stft.py`` holds the two within float32 rounding):
a stereo waveform window (batch, samples, 2) becomes a network input (batch, 4, frames, bins)
with channels ``[Re L, Re R, Im L, Im R]``; ``center=True`` reflect padding is local to each
window, as ``torch.stft`` does it in the original (spec section 3, quirk Q5).

It exists so that the exported-model path (ONNX Runtime, OpenVINO) never imports torch: that
import alone costs about 2 s of start-up and 200 MiB of resident memory on the project's CPU.
"""
from __future__ import annotations

import numpy as np
import scipy.fft


def hann_window(n_fft: int) -> np.ndarray:
    """The periodic Hann window (n_fft,) float32 the original stores in its checkpoint."""
    n = np.arange(n_fft, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / n_fft)).astype(np.float32)


class Stft:
    """STFT/iSTFT pair with a fixed window, on float32 numpy arrays (scipy's FFT: 2.5-3.5x numpy's
    here; one thread, two were slower on this project's two CPUs)."""

    def __init__(self, n_fft: int, hop_length: int, window: np.ndarray | None = None) -> None:
        window = hann_window(n_fft) if window is None else np.asarray(window, dtype=np.float32)
        if window.shape != (n_fft,):
            raise ValueError(f"STFT window must have shape ({n_fft},), got {tuple(window.shape)}")
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.window = window

    def to_spec(self, audio: np.ndarray) -> np.ndarray:
        """(batch, samples, 2) float32 waveform -> (batch, 4, frames, bins) float32, frames = 1 + samples // hop."""
        batch, n_samples, n_ch = audio.shape
        pad = self.n_fft // 2
        if n_samples <= pad:
            raise ValueError(f"reflect padding needs more than {pad} samples, got {n_samples}")
        flat = np.ascontiguousarray(np.swapaxes(audio, 1, 2), dtype=np.float32)  # (batch, 2, samples)
        padded = np.pad(flat, ((0, 0), (0, 0), (pad, pad)), mode="reflect")
        frames = np.lib.stride_tricks.sliding_window_view(padded, self.n_fft, axis=-1)[..., ::self.hop_length, :]
        spec = scipy.fft.rfft(frames * self.window, axis=-1)  # (batch, 2, frames, bins)
        out = np.empty((batch, 2 * n_ch) + spec.shape[2:], dtype=np.float32)
        out[:, :n_ch] = spec.real
        out[:, n_ch:] = spec.imag
        return out

    def to_audio(self, spec: np.ndarray) -> np.ndarray:
        """(batch, 4, frames, bins) -> (batch, (frames - 1) * hop, 2) float32 waveform.

        Overlap-add of the windowed inverse frames divided by the summed squared window, the
        first and last ``n_fft // 2`` samples dropped: ``torch.istft(center=True)``."""
        batch, n_chan, n_frames, _ = spec.shape
        n_ch = n_chan // 2
        cplx = np.empty((batch, n_ch) + spec.shape[2:], dtype=np.complex64)
        cplx.real = spec[:, :n_ch]
        cplx.imag = spec[:, n_ch:]
        frames = scipy.fft.irfft(cplx, n=self.n_fft, axis=-1).astype(np.float32, copy=False)
        frames *= self.window
        hop, n_fft = self.hop_length, self.n_fft
        length = n_fft + hop * (n_frames - 1)
        signal = np.zeros((batch, n_ch, length), dtype=np.float32)
        envelope = np.zeros(length, dtype=np.float32)
        squared = self.window * self.window
        if n_fft % hop == 0:
            # Frames k, k + r, k + 2r, ... (r = n_fft / hop) do not overlap: add each such set at once.
            ratio = n_fft // hop
            for k in range(min(ratio, n_frames)):
                chunk = frames[:, :, k::ratio]  # (batch, ch, m, n_fft), laid end to end from k * hop
                m = chunk.shape[2]
                signal[..., k * hop:k * hop + m * n_fft] += chunk.reshape(batch, n_ch, m * n_fft)
                envelope[k * hop:k * hop + m * n_fft] += np.tile(squared, m)
        else:
            for t in range(n_frames):
                signal[..., t * hop:t * hop + n_fft] += frames[:, :, t]
                envelope[t * hop:t * hop + n_fft] += squared
        pad = n_fft // 2
        stop = pad + hop * (n_frames - 1)
        envelope = envelope[pad:stop]
        if np.any(envelope <= 1e-11):
            raise ValueError("the STFT window does not satisfy the overlap-add condition (NOLA)")
        audio = signal[..., pad:stop] / envelope
        return np.ascontiguousarray(np.swapaxes(audio, 1, 2))
