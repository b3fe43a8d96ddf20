"""Window geometry of the original inference (spec section 2), in one place.

A track of ``L`` samples is cut into ``n = ceil(L / step)`` windows of ``window`` samples; window
``c`` covers mixture samples ``[c*step - trim, c*step - trim + window)``, zero outside the track.
After separation ``[trim, window - trim)`` of each window is kept, and the kept pieces are
concatenated hard and cut to ``L``.
"""
from __future__ import annotations

import dataclasses
import math

from models.config import LightSAFTConfig


@dataclasses.dataclass(frozen=True)
class WindowGeometry:
    """Window length, trim per side and step (kept samples), all in samples."""

    window: int
    trim: int

    @property
    def step(self) -> int:
        return self.window - 2 * self.trim

    @classmethod
    def exact(cls, cfg: LightSAFTConfig) -> "WindowGeometry":
        """The original's geometry: 261,120 / 8,192 / 244,736 for lightsaft_small."""
        return cls(window=cfg.window_samples, trim=cfg.trim_samples)

    def n_windows(self, n_samples: int) -> int:
        """Windows needed for a track of ``n_samples`` (the original's ceil; 0 for empty)."""
        return math.ceil(n_samples / self.step) if n_samples > 0 else 0

    def window_start(self, index: int) -> int:
        """Mixture sample at which window ``index`` starts (negative for the first window)."""
        return index * self.step - self.trim
