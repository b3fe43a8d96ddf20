"""Deterministic test signals: the kit's parity checks and speed measurements use these."""
from __future__ import annotations

import numpy as np

from .constants import SAMPLE_RATE


def parity_signal(n_samples: int, seed: int = 2021) -> np.ndarray:
    """Deterministic stereo signal with harmonic, swept and noisy parts, peak 0.9."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / SAMPLE_RATE
    bass = np.sin(2 * np.pi * 55 * t) + 0.5 * np.sin(2 * np.pi * 110 * t)
    voice = sum(np.sin(2 * np.pi * k * (440 + 8 * np.sin(2 * np.pi * 5 * t)) * t) / k for k in (1, 2, 3))
    sweep = np.sin(2 * np.pi * (200 + 1500 * t / t[-1]) * t)
    noise = rng.standard_normal((n_samples, 2)) * np.exp(-((t % 0.5) / 0.05))[:, None]
    audio = np.stack([bass + 0.7 * voice + 0.3 * sweep, 0.8 * bass + 0.5 * voice - 0.3 * sweep], 1) + 0.3 * noise
    return (0.9 * audio / np.abs(audio).max()).astype(np.float32)
