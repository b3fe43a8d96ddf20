"""Time-budgeted separation: never miss the deadline, and spend spare time on quality.

The engine asks a :class:`DeadlineController` what to do with each window. The controller
plans from a measured cost per pass (one window, all targets) and the time left:

1. every window gets the exact single pass first, as long as it can finish;
2. spare time buys *extras*, test-time variants of the same window whose outputs are averaged
   with the plain pass, in the order of :func:`extras_for`;
3. when time runs short, extras are dropped first; a window whose exact pass cannot finish gets
   the *reduced* pass when the separator has one (a gated approximate precision, e.g. bf16 on a
   CPU that runs it natively) and it can finish; a window that no pass can reach in time gets
   the fallback estimate (mixture / 4, no network); a network call that overruns its share of
   the budget is abandoned (it runs in a worker thread) and that window and every later one get
   the fallback, so the call returns before the deadline whatever happens.

Every decision is recorded; :meth:`DeadlineController.report` says what was planned, what was
done and how much margin was left.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import time
from typing import Any, Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class Variant:
    """One way to run a window: the plain pass or a test-time augmentation.

    ``shift`` (samples, ``|shift| <= trim``) moves the window, so STFT frames fall elsewhere;
    ``swap`` exchanges left and right; ``invert`` flips the polarity. Outputs are mapped back.
    ``reduced``: the plain window on the separator's reduced-precision backend.
    """

    name: str
    shift: int = 0
    swap: bool = False
    invert: bool = False
    reduced: bool = False


PLAIN = Variant("plain")
#: The degradation ladder's rung between the exact pass and the fallback.
REDUCED = Variant("reduced", reduced=True)


def extras_for(hop: int) -> tuple[Variant, ...]:
    """Extras in the order they are bought. Each costs one pass; the order (frame-grid shift
    first, then channel and polarity symmetries) is a reasoned guess, not yet a measured ranking
    of SDR gained per extra (docs/TIME_BUDGET.md)."""
    return (
        Variant("shift+half-hop", shift=hop // 2),
        Variant("swap", swap=True),
        Variant("invert", invert=True),
        Variant("shift-half-hop+swap", shift=-(hop // 2), swap=True),
    )


@dataclasses.dataclass
class WindowRecord:
    index: int
    variants: list[str]
    fallback: bool
    seconds: float


class DeadlineController:
    """Plans and polices one track's windows against a deadline (``time.monotonic`` seconds).

    ``pass_seconds``: measured cost of one plain pass (one window, all targets) at setup, or None
    when unknown: the first window's plain pass then runs if any time is left (still guarded by the
    deadline) and measures it, and extras wait until it has.
    ``extras``: the variants that may be bought, in order; ``max_extras`` caps them per window.
    ``safety``: factor on the cost estimate when deciding whether something still fits.
    ``fallback_seconds``: reserve per window that may still need the fallback estimate.
    ``started``: when the budget began (default: now), e.g. the process start for a whole command.
    ``reduced_pass_seconds``: measured cost of one pass on the reduced-precision backend, or None
    when the separator has no such rung.
    """

    def __init__(self, deadline: float, pass_seconds: float | None, extras: tuple[Variant, ...] = (),
                 max_extras: int | None = None, safety: float = 1.3, fallback_seconds: float = 0.05,
                 clock: Callable[[], float] = time.monotonic, limit_s: float | None = None,
                 margin_s: float | None = None, started: float | None = None,
                 reduced_pass_seconds: float | None = None) -> None:
        self.deadline = deadline
        self.estimate: float | None = None if pass_seconds is None else max(pass_seconds, 1e-4)
        self.reduced_estimate = None if reduced_pass_seconds is None else max(reduced_pass_seconds, 1e-4)
        self.initial_estimate = self.estimate
        self.first_pass_seconds: float | None = None  # the first pass measured during this track
        self.extras = tuple(extras)
        self.max_extras = len(self.extras) if max_extras is None else min(max_extras, len(self.extras))
        self.safety = safety
        self.fallback_seconds = fallback_seconds
        self.clock = clock
        self.limit_s = limit_s
        self.margin_s = margin_s
        self.started = clock() if started is None else started  # the budget's zero (report's wall_s)
        self.records: list[WindowRecord] = []
        self.abandoned_at: int | None = None
        self.out_of_time_at: int | None = None
        self.planned: dict[str, Any] | None = None
        self.stages: dict[str, float] = {}  # seconds of whole-track stages run before the windows
        self.abandoned_stage: str | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------ planning
    def time_left(self, windows_after: int) -> float:
        """Seconds left before the deadline, keeping the fallback reserve for later windows."""
        return self.deadline - self.clock() - self.fallback_seconds * windows_after

    def plan(self, index: int, n_windows: int) -> list[Variant]:
        """Variants to try for window ``index`` (empty: use the fallback)."""
        remaining = n_windows - index
        left = self.time_left(remaining - 1)
        stopped = self.abandoned_at is not None or self.out_of_time_at is not None
        if stopped or left < (self.estimate or 0.0):
            if not stopped and self.reduced_estimate is not None and left >= self.reduced_estimate:
                return [REDUCED]  # the exact pass cannot finish, the reduced one can
            if self.out_of_time_at is None:
                self.out_of_time_at = index  # from here on every window gets the fallback
            return []
        if self.estimate is None:  # unknown cost: this pass measures it, under the deadline's guard
            return [PLAIN]
        # Passes that fit per remaining window, keeping the plain pass of every later window.
        per_window = left / (remaining * self.estimate * self.safety)
        n_extra = max(0, min(self.max_extras, int(math.floor(per_window)) - 1))
        if self.planned is None:
            self.planned = {"pass_seconds_estimate": self.estimate,
                            "reduced_pass_seconds_estimate": self.reduced_estimate, "windows": n_windows,
                            "extras_per_window": n_extra, "extras": [v.name for v in self.extras[:n_extra]],
                            "expected_seconds": n_windows * (1 + n_extra) * self.estimate}
        return [PLAIN, *self.extras[:n_extra]]

    # ------------------------------------------------------------------ running
    def run_window(self, index: int, n_windows: int, compute: Callable[[Variant], np.ndarray],
                   fallback: Callable[[], np.ndarray]) -> np.ndarray:
        """The averaged outputs of the variants that finished in time, or the fallback (arrays
        of one shape; Open-Unmix's engine passes torch spectrograms, with no extras to average)."""
        t0 = self.clock()
        results: list[np.ndarray] = []
        done: list[str] = []
        for variant in self.plan(index, n_windows):
            left = self.time_left(n_windows - index - 1)
            if variant not in (PLAIN, REDUCED) and left < (self.estimate or 0.0) * self.safety * (n_windows - index):
                break  # an extra would eat into a later window's plain pass
            started = self.clock()
            out = self._call_with_timeout(compute, variant, timeout=left)
            if out is None:
                self.abandoned_at = index
                break
            if variant.reduced:
                self.reduced_estimate = max(self.reduced_estimate or 0.0, self.clock() - started)
            else:
                self._update_estimate(self.clock() - started)
            results.append(out)
            done.append(variant.name)
        if results:
            result = results[0] if len(results) == 1 else np.mean(np.stack(results), axis=0, dtype=np.float32)
        else:
            result = fallback()
        self.records.append(WindowRecord(index, done, not results, self.clock() - t0))
        return result

    def run_stage(self, name: str, compute: Callable[[], Any], windows_after: int) -> Any | None:
        """Run a whole-track stage that every later window needs (e.g. Open-Unmix's BiLSTM) under
        the deadline, keeping the fallback reserve of ``windows_after`` windows; None when it could
        not finish (then every window gets the fallback). Its time does not enter the per-window
        estimate."""
        t0 = self.clock()
        out = self._call_with_timeout(lambda _variant: compute(), PLAIN, timeout=self.time_left(windows_after))
        self.stages[name] = self.clock() - t0
        if out is None:
            self.abandoned_stage = name
            self.abandoned_at = 0
        return out

    def _update_estimate(self, seconds: float) -> None:
        # Follow slow-downs at once, speed-ups gradually: the deadline matters more than extras.
        if self.first_pass_seconds is None:
            self.first_pass_seconds = seconds
        if self.estimate is None or seconds > self.estimate:
            self.estimate = seconds
        else:
            self.estimate = 0.7 * self.estimate + 0.3 * seconds

    def _call_with_timeout(self, compute: Callable[[Variant], np.ndarray], variant: Variant,
                           timeout: float) -> np.ndarray | None:
        if timeout <= 0:
            return None
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="mdx-net")
        future = self._executor.submit(compute, variant)
        try:
            return future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            return None  # the worker finishes in the background; its result is discarded

    def close(self, wait: bool = False) -> None:
        """Stop taking calls; ``wait`` also waits for a call still running (an abandoned one)."""
        if self._executor is not None:
            self._executor.shutdown(wait=wait, cancel_futures=True)

    # ------------------------------------------------------------------ reporting
    def report(self) -> dict[str, Any]:
        """What was planned, what was done, and the margin left (seconds)."""
        now = self.clock()
        fallback = [r.index for r in self.records if r.fallback]
        reduced = [r.index for r in self.records if r.variants == [REDUCED.name]]
        extras_done = sum(max(0, len(r.variants) - 1) for r in self.records)
        degraded = []
        planned_extras = (self.planned or {}).get("extras_per_window", 0)
        if any(0 < len(r.variants) < 1 + planned_extras for r in self.records):
            degraded.append("extras dropped on some windows")
        if reduced:
            degraded.append(f"{len(reduced)} window(s) got the reduced-precision pass: {reduced}")
        if fallback:
            degraded.append(f"{len(fallback)} window(s) got the mixture/4 fallback: {fallback}")
        if self.abandoned_stage is not None:
            degraded.append(f"the {self.abandoned_stage} stage was abandoned at the deadline")
        elif self.abandoned_at is not None:
            degraded.append(f"a network call was abandoned at window {self.abandoned_at}")
        return {
            "limit_s": self.limit_s, "margin_s": self.margin_s,
            "planned": self.planned or {"pass_seconds_estimate": self.initial_estimate, "windows": 0},
            "done": {"windows": len(self.records), "extras_done": extras_done,
                     "variants_per_window": [r.variants for r in self.records],
                     "fallback_windows": fallback, "reduced_windows": reduced, "abandoned_at": self.abandoned_at,
                     "final_pass_seconds_estimate": self.estimate},
            "stages_s": dict(self.stages),
            "wall_s": now - self.started,
            "margin_left_s": self.deadline - now,
            "degraded": bool(degraded),
            "degradation": "; ".join(degraded) if degraded else "none",
        }
