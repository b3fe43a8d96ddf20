"""STFT front end and its inverse, in the original model's layout.

A stereo waveform window (batch, samples, 2) becomes a network input (batch, 4, frames, bins)
with channels ``[Re L, Re R, Im L, Im R]``; ``center=True`` reflect padding is local to each
window, exactly as ``torch.stft`` does it in the original (spec section 3, quirk Q5).
"""
from __future__ import annotations

import torch


def hann_window(n_fft: int) -> torch.Tensor:
    """The periodic Hann window the original stores in its checkpoint."""
    return torch.hann_window(n_fft, periodic=True, dtype=torch.float32)


class Spectral(torch.nn.Module):
    """STFT/iSTFT pair with a fixed window; no learnable state.

    The window is a buffer so that it is saved with TorchScript artifacts and follows
    ``.to(device)``.
    """

    def __init__(self, n_fft: int, hop_length: int, window: torch.Tensor | None = None) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        if window is None:
            window = hann_window(n_fft)
        if window.shape != (n_fft,):
            raise ValueError(f"STFT window must have shape ({n_fft},), got {tuple(window.shape)}")
        self.register_buffer("window", window.detach().to(torch.float32).clone())

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """(batch, samples, 2) waveform -> (batch, 4, frames, bins) real spectrogram."""
        return self.to_spec(audio)

    def to_spec(self, audio: torch.Tensor) -> torch.Tensor:
        """(batch, samples, 2) waveform -> (batch, 4, frames, bins) as [Re L, Re R, Im L, Im R]."""
        batch, n_samples, n_ch = audio.shape
        flat = audio.transpose(1, 2).reshape(batch * n_ch, n_samples)
        spec = torch.stft(flat, self.n_fft, self.hop_length, window=self.window.to(flat.dtype),
                          center=True, pad_mode="reflect", normalized=False, onesided=True,
                          return_complex=True)  # (batch*2, bins, frames)
        spec = spec.reshape(batch, n_ch, spec.shape[-2], spec.shape[-1]).transpose(-1, -2)
        return torch.cat([spec.real, spec.imag], dim=1).contiguous()

    def to_audio(self, spec: torch.Tensor) -> torch.Tensor:
        """(batch, 4, frames, bins) -> (batch, (frames - 1) * hop, 2) waveform."""
        batch, _, n_frames, n_bins = spec.shape
        cplx = torch.complex(spec[:, 0:2], spec[:, 2:4])  # (batch, 2, frames, bins)
        cplx = cplx.transpose(-1, -2).reshape(batch * 2, n_bins, n_frames)
        audio = torch.istft(cplx, self.n_fft, self.hop_length, window=self.window.to(spec.dtype),
                            center=True, normalized=False, onesided=True)
        return audio.reshape(batch, 2, -1).transpose(1, 2)
