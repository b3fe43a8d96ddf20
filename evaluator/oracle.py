"""Reference rows computed on the evaluated data itself: a floor and a ceiling.

* ``mixture/4``: every source estimated as a quarter of the mixture -- what doing nothing earns.
* ``oracle IRM``: the ideal ratio mask, built from the reference stems. Each source's mask is
  ``|S_j|^2 / sum_k |S_k|^2`` per time-frequency bin (a power, "Wiener-like" ratio), applied to
  the mixture's STFT (4096-point periodic Hann, hop 1024). A mask-based separator cannot beat
  it on average, so it bounds what the kit's masking model could reach on the same songs.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from core.constants import SOURCES

from .scoring import song_scores

FLOOR_ROW = "mixture/4"
CEILING_ROW = "oracle IRM"
REFERENCE_ROWS = (FLOOR_ROW, CEILING_ROW)

IRM_N_FFT = 4096
IRM_HOP = 1024
IRM_POWER = 2.0
#: Samples per chunk (a multiple of the hop); chunks overlap by ``IRM_N_FFT`` on each side,
#: so every kept sample sees exactly the frames an unchunked STFT would give it.
IRM_CHUNK = 256 * IRM_HOP * 4
_EPS = 1e-12


def floor_estimates(mixture: np.ndarray) -> dict[str, np.ndarray]:
    """mixture/4 for every source."""
    quarter = np.asarray(mixture, dtype=np.float64) / 4.0
    return {s: quarter for s in SOURCES}


def _stft(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """(channels, n) -> (channels, bins, frames) complex."""
    return torch.stft(x, IRM_N_FFT, IRM_HOP, window=window, center=True, pad_mode="reflect",
                      return_complex=True)


def _irm_piece(mixture: np.ndarray, references: list[np.ndarray], window: torch.Tensor) -> np.ndarray:
    """IRM estimates of one piece: (n, ch) arrays in, (sources, n, ch) float64 out."""
    n = mixture.shape[0]
    mix = _stft(torch.from_numpy(mixture.T.astype(np.float32)), window)
    power = torch.stack([_stft(torch.from_numpy(r.T.astype(np.float32)), window).abs() ** IRM_POWER
                         for r in references])
    masks = power / (power.sum(dim=0, keepdim=True) + _EPS)
    est = (masks * mix).reshape((-1,) + tuple(mix.shape[1:]))  # (sources * channels, bins, frames)
    out = torch.istft(est, IRM_N_FFT, IRM_HOP, window=window, center=True, length=n)
    out = out.reshape(len(references), mix.shape[0], n)
    return out.numpy().transpose(0, 2, 1).astype(np.float64)


def irm_estimates(mixture: np.ndarray, references: Mapping[str, np.ndarray],
                  chunk: int = IRM_CHUNK) -> dict[str, np.ndarray]:
    """Ideal-ratio-mask estimates of every source from the mixture and the references."""
    if chunk % IRM_HOP:
        raise ValueError(f"chunk must be a multiple of {IRM_HOP}")
    n = mixture.shape[0]
    refs = [np.asarray(references[s]) for s in SOURCES]
    if n <= IRM_N_FFT:  # too short for reflect padding: pad with silence, cut back afterwards
        pad = ((0, IRM_N_FFT + 1 - n), (0, 0))
        padded = irm_estimates(np.pad(mixture, pad), {s: np.pad(r, pad) for s, r in zip(SOURCES, refs)}, chunk)
        return {s: v[:n] for s, v in padded.items()}
    window = torch.hann_window(IRM_N_FFT, periodic=True, dtype=torch.float32)
    out = np.zeros((len(SOURCES),) + mixture.shape)
    context = IRM_N_FFT
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        lo, hi = max(0, start - context), min(n, stop + context)
        piece = _irm_piece(mixture[lo:hi], [r[lo:hi] for r in refs], window)
        out[:, start:stop] = piece[:, start - lo:stop - lo]
    return {s: out[i] for i, s in enumerate(SOURCES)}


def reference_scores(mixture: np.ndarray, references: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """MDX scores of the floor and ceiling rows for one song."""
    return {FLOOR_ROW: song_scores(references, floor_estimates(mixture)),
            CEILING_ROW: song_scores(references, irm_estimates(mixture, references))}
