"""Window geometry: where each network window reads the track and how its output is put back.

A track of ``L`` samples is separated window by window. Window ``c`` reads ``window`` mixture
samples starting at ``window_start(c)`` (zeros outside the track, and from ``read_stop(c, L)``
on); of its separated output, ``kept`` samples starting at ``trim`` are multiplied by
``weights(c, L)`` and overlap-added at mixture sample ``c * step``. After window ``c`` every
sample before ``(c + 1) * step`` is final, which is what lets the engine stream.

* :class:`ConcatGeometry`: the LaSAFT/LightSAFT starter kit (LIGHTSAFT_SPEC section 2): windows
  tile the track, ``trim`` samples dropped per side, hard concatenation, cut to ``L``.
* :class:`HalfOverlapGeometry`: LASAFT-Net-v2's ``SingleTrackSet`` with ``overlap_ratio=0.5``,
  the weights and quirks of its original included (lasaft_v2_light/SPEC_ADDENDUM.md).
* :class:`SegmentGeometry`: demucs's ``apply_model`` segments (25 % overlap, triangle weights).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from models.registry import WindowSpec

@dataclasses.dataclass(frozen=True)
class ConcatGeometry:
    """Windows ``step`` apart, kept parts concatenated."""

    window: int
    trim: int

    def __post_init__(self) -> None:
        if self.step <= 0 or self.trim < 0:
            raise ValueError(f"invalid window geometry {self}")

    @property
    def step(self) -> int:
        """Distance between window starts = samples each window finalises."""
        return self.window - 2 * self.trim

    @property
    def kept(self) -> int:
        """Samples kept from each separated window (all of the step: no overlap)."""
        return self.window - 2 * self.trim

    def n_windows(self, n_samples: int) -> int:
        """Windows needed for a track of ``n_samples`` (the original's ceil; 0 for empty)."""
        return math.ceil(n_samples / self.step) if n_samples > 0 else 0

    def window_start(self, index: int) -> int:
        """Mixture sample at which window ``index`` starts (negative for the first window)."""
        return index * self.step - self.trim

    def read_stop(self, index: int, n_samples: int) -> int:
        """Mixture samples from here on read as zeros in window ``index``."""
        return n_samples

    def weights(self, index: int, n_samples: int) -> np.ndarray | None:
        """(kept,) overlap-add weights of window ``index``; None: all ones (plain concatenation)."""
        return None


@dataclasses.dataclass(frozen=True)
class HalfOverlapGeometry:
    """LASAFT-Net-v2's 50 %-overlap windows (``SingleTrackSet``, ``overlap_ratio=0.5``).

    ``kept = window - 2 trim`` samples per window, ``step = int(kept * 0.5)`` apart. Window ``c``
    (start ``s = c * step``) is one of three cases, as in the original:

    * (a) last (``s + kept > L``): audio to the end, zeros after; first ``kept - step`` samples x0.5
      unless ``s == 0``;
    * (b) interior (``s + kept + trim < L``): full context; first part x0.5 unless ``s == 0``, last
      ``kept - step`` samples x0.5 when ``s + step < L``;
    * (c) otherwise: the right context is zeros even though the track goes on, and no 0.5 weights
      (a quirk of the original, reproduced).

    One deliberate difference: the original makes no window at all for tracks shorter than
    ``kept - step`` samples (about 1.4 s) and returns silence; here such a track gets one window.
    """

    window: int
    trim: int
    overlap_ratio: float = 0.5

    @property
    def kept(self) -> int:
        return self.window - 2 * self.trim

    @property
    def step(self) -> int:
        return int(self.kept * (1 - self.overlap_ratio))

    def n_windows(self, n_samples: int) -> int:
        if n_samples <= 0:
            return 0
        return max(1, math.ceil((n_samples - self.kept) / self.step) + 1)

    def window_start(self, index: int) -> int:
        return index * self.step - self.trim

    def _case(self, index: int, n_samples: int) -> str:
        s = index * self.step
        if s + self.kept > n_samples:
            return "a"
        if s + self.kept + self.trim < n_samples:
            return "b"
        return "c"

    def read_stop(self, index: int, n_samples: int) -> int:
        if self._case(index, n_samples) == "c":
            return index * self.step + self.kept
        return n_samples

    def weights(self, index: int, n_samples: int) -> np.ndarray | None:
        case = self._case(index, n_samples)
        s = index * self.step
        overlap = self.kept - self.step
        w = np.ones(self.kept, dtype=np.float32)
        if case in ("a", "b") and s != 0:
            w[:overlap] *= 0.5
        if case == "b" and s + self.step < n_samples:
            w[self.kept - overlap:] *= 0.5
        return w


@dataclasses.dataclass(frozen=True)
class SegmentGeometry:
    """demucs's ``apply_model(split=True)``: segments ``step = int((1 - overlap) * window)`` apart.

    Segment ``c`` covers ``[c * step, c * step + n_c)`` with ``n_c = min(window, L - c * step)``.
    The network reads ``window`` samples centred on it (real neighbouring samples where the track
    has them, zeros outside: ``TensorChunk.padded``), its output is centre-trimmed back to
    ``n_c``, weighted by the first ``n_c`` values of a triangle over the window and divided by the
    summed weights. ``trim_of`` says where each segment's output starts in its window; the
    weights are already divided by the sum, so segments simply add.
    """

    window: int
    overlap: float = 0.25

    trim = 0

    @property
    def step(self) -> int:
        return int((1 - self.overlap) * self.window)

    @property
    def kept(self) -> int:
        return self.window

    def n_windows(self, n_samples: int) -> int:
        return math.ceil(n_samples / self.step) if n_samples > 0 else 0

    def length(self, index: int, n_samples: int) -> int:
        """Samples of the track segment ``index`` covers."""
        return min(self.window, n_samples - index * self.step)

    def trim_of(self, index: int, n_samples: int) -> int:
        """Where segment ``index``'s samples start in its window (centre padding)."""
        return (self.window - self.length(index, n_samples)) // 2

    def window_start(self, index: int, n_samples: int | None = None) -> int:
        if n_samples is None:
            return index * self.step
        return index * self.step - self.trim_of(index, n_samples)

    def read_stop(self, index: int, n_samples: int) -> int:
        return n_samples

    def _triangle(self) -> np.ndarray:
        half = self.window // 2
        tri = np.concatenate([np.arange(1, half + 1), np.arange(self.window - half, 0, -1)]).astype(np.float64)
        return tri / tri.max()

    def weights(self, index: int, n_samples: int) -> np.ndarray:
        """(window,) weights of segment ``index`` divided by every segment's weight at each sample;
        zero past the segment's end."""
        tri = self._triangle()
        start, n = index * self.step, self.length(index, n_samples)
        total = np.zeros(n)
        reach = math.ceil(self.window / self.step)
        for other in range(max(0, index - reach), min(self.n_windows(n_samples), index + reach + 1)):
            o_start = other * self.step
            o_len = self.length(other, n_samples)
            lo, hi = max(start, o_start), min(start + n, o_start + o_len)
            if hi > lo:
                total[lo - start:hi - start] += tri[lo - o_start:hi - o_start]
        out = np.zeros(self.window, dtype=np.float32)
        out[:n] = tri[:n] / total
        return out


Geometry = ConcatGeometry | HalfOverlapGeometry | SegmentGeometry


def geometry_for(spec: WindowSpec) -> Geometry:
    """The geometry of an architecture's :class:`WindowSpec` (its original's windowing)."""
    if spec.overlap == "half":
        return HalfOverlapGeometry(spec.window, spec.trim)
    if spec.overlap == "segment":
        return SegmentGeometry(spec.window)
    if spec.overlap != "concat":
        raise ValueError(f"unknown window overlap {spec.overlap!r}")
    return ConcatGeometry(window=spec.window, trim=spec.trim)
