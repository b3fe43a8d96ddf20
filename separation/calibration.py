"""The cost of one pass, measured once per machine and model, then remembered.

A budgeted predictor plans from the seconds one plain pass (one window, every target) takes on
this machine. Measuring it costs a warm-up and a timed pass at every start-up; a cache keyed by
the machine (CPU model, usable CPUs), the model file (its sha256), the backend, the precision, the
threads and the window geometry turns later start-ups into a file read. The deadline controller
then follows the real cost window by window, so a busier machine than the cached figure is
caught at the first window. A command whose budget includes its own start-up (``separate
--budget-seconds``) never measures at setup: without a cached figure its first window's pass is
the measurement, and it is remembered for the next run.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from pathlib import Path

from core.constants import KIT_VERSION
from core.files import atomic_write_json, read_json, sha256_file
from core.signals import parity_signal

from .backends import available_cpus
from .engine import ArraySource, Separator, StageTimes
from .timebudget import PLAIN

CACHE_NAME = "calibration.json"
#: OpenVINO's compiled models, beside the calibration file.
COMPILE_CACHE_NAME = "openvino"


def default_cache_dir() -> Path:
    """The kit's cache folder unless the settings name another: ``mdx-kit`` in the user's cache
    folder (``$XDG_CACHE_HOME``, else ``~/.cache``). It holds ``calibration.json`` and OpenVINO's
    compiled models (``openvino/``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mdx-kit"


def cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``; else the platform's processor string)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def calibration_key(separator: Separator, model_path: str | os.PathLike[str], precision: str | None = None) -> str:
    """What the measured cost depends on, hashed; ``precision`` asks for the same separator's key
    at another precision (what its backend would be loaded at) without loading it."""
    backend = separator.backend
    parts = {"kit": KIT_VERSION, "cpu": cpu_model(), "cpus": available_cpus(), "model": sha256_file(model_path),
             "backend": backend.name, "precision": precision or getattr(backend, "precision", "fp32"),
             "threads": getattr(backend, "threads", None), "window": separator.geometry.window,
             "step": separator.geometry.step}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def measure_pass_seconds(separator: Separator, repeats: int = 1) -> float:
    """Measured wall time of one plain pass (one window, every target) on this machine.

    The first run warms the backend up; the fastest of the next ``repeats`` is returned.
    """
    geo = separator.geometry
    source = ArraySource(parity_signal(geo.window + geo.step, seed=7))
    best = float("inf")
    for attempt in range(repeats + 1):
        t0 = time.perf_counter()
        separator.run_windows(source, [1], PLAIN, StageTimes())
        if attempt:  # the first run only warms up
            best = min(best, time.perf_counter() - t0)
    return best


def _entries(cache: str | os.PathLike[str]) -> dict:
    entries = read_json(cache)
    return entries if isinstance(entries, dict) else {}  # missing, cut short or not ours


def cached_pass_seconds(key: str | None, cache: str | os.PathLike[str] | None) -> float | None:
    """The remembered cost of a pass under ``key`` (:func:`calibration_key`), or None."""
    if cache is None or key is None:
        return None
    entry = _entries(cache).get(key)
    if isinstance(entry, dict) and float(entry.get("pass_seconds", 0)) > 0:
        return float(entry["pass_seconds"])
    return None


def remember_pass_seconds(key: str, cache: str | os.PathLike[str] | None, seconds: float, **about: str) -> None:
    """Store a measured cost of a pass under ``key`` (``about``: what it was measured with, for a
    reader); a cache that cannot be written is skipped (measured again next time)."""
    if cache is None:
        return
    entries = _entries(cache)
    entries[key] = {"pass_seconds": float(seconds), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **about}
    try:
        atomic_write_json(cache, entries)
    except OSError:
        pass


def pass_seconds(separator: Separator, model_path: str | os.PathLike[str],
                 cache: str | os.PathLike[str] | None) -> tuple[float, str]:
    """(seconds per pass, where the figure came from: ``cached`` or ``measured``).

    ``cache`` None measures every time. A cache that cannot be read or written is ignored: the
    figure is then measured, never guessed.
    """
    if cache is None:
        return measure_pass_seconds(separator), "measured"
    key = calibration_key(separator, model_path)
    cached = cached_pass_seconds(key, cache)
    if cached is not None:
        return cached, "cached"
    seconds = measure_pass_seconds(separator)
    remember_pass_seconds(key, cache, seconds, backend=separator.backend.name, model=Path(model_path).name)
    return seconds, "measured"
