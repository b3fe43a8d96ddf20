"""Approximate precisions and their quality gate.

``fp32`` is exact and always allowed. An approximate precision (``bf16``, ``int8``) runs only
when a *gate record* beside the model file (``<model>.gate.json``, written by
``python -m evaluator.gate``) says that, for this very file (its sha256), it was measured:

* its SDR change per source against exact fp32 on every measured set (the held-out rendered
  songs and the demo set), the mean over sources losing at most :data:`MAX_MEAN_LOSS_DB`;
* its speed against exact fp32 in the same run, and it was faster.

A precision without a record, or with a failing one, is refused with a message that says why
and how to measure it. Whether the CPU can run it natively is :mod:`separation.loading`'s call:
there a precision without native support falls back to fp32 before the gate is asked.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from core.files import atomic_write_json, read_json, sha256_file

#: Largest mean SDR loss (dB, mean over the four sources) an approximate precision may cost on any set.
MAX_MEAN_LOSS_DB = 0.15
GATE_SUFFIX = ".gate.json"


class PrecisionRefused(ValueError):
    """An approximate precision that has not passed its quality gate for this model file."""


def gate_path(model_path: str | os.PathLike[str]) -> Path:
    """Where the gate record of ``model_path`` lives (beside it)."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + GATE_SUFFIX)


def verdict(entry: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether one precision's measured entry passes the gate, and why (one line)."""
    sets = entry.get("sets") or {}
    if not sets:
        return False, "no set was measured"
    for name, result in sets.items():
        loss = -float(result["mean_delta_db"])
        if loss > MAX_MEAN_LOSS_DB:
            return False, f"it loses {loss:.3f} dB mean SDR on {name} (the gate allows {MAX_MEAN_LOSS_DB} dB)"
    speedup = float(entry.get("speedup", 0.0))
    if speedup <= 1.0:
        return False, f"it is not faster than exact fp32 ({speedup:.2f}x)"
    worst = min(float(r["mean_delta_db"]) for r in sets.values())
    return True, f"{speedup:.2f}x faster, worst mean SDR change {worst:+.3f} dB over {', '.join(sets)}"


def record_gate(model_path: str | os.PathLike[str], precision: str, sets: Mapping[str, Mapping[str, Any]],
                speedup: float, measured_on: Mapping[str, Any]) -> dict[str, Any]:
    """Write (atomically, keeping other precisions' entries) one precision's measurement and verdict.

    ``sets``: {set name: {"per_source": {source: dB change}, "mean_delta_db": float, "songs": int}}.
    """
    path = gate_path(model_path)
    doc = read_json(path) if path.is_file() else {}
    entry = {"sets": {k: dict(v) for k, v in sets.items()}, "speedup": float(speedup),
             "measured_on": dict(measured_on)}
    passed, why = verdict(entry)
    entry.update(passed=passed, verdict=why)
    doc["model_sha256"] = sha256_file(model_path)
    doc["max_mean_loss_db"] = MAX_MEAN_LOSS_DB
    doc.setdefault("precisions", {})[precision] = entry
    atomic_write_json(path, doc)
    return entry


def check_gate(model_path: str | os.PathLike[str], precision: str) -> str | None:
    """None for exact fp32; else the passing verdict of ``precision``, or :class:`PrecisionRefused`."""
    if precision == "fp32":
        return None
    path = gate_path(model_path)
    how = (f"measure it with `python -m evaluator.gate {model_path} --precision {precision}` on a machine that "
           "runs it natively, or run exact fp32 (--precision fp32)")
    if not path.is_file():
        raise PrecisionRefused(f"{precision} is refused for {model_path}: its quality gate was never measured "
                               f"(no {path.name}); {how}")
    doc = read_json(path)
    if doc.get("model_sha256") != sha256_file(model_path):
        raise PrecisionRefused(f"{precision} is refused for {model_path}: {path.name} was measured on another "
                               f"version of the file; {how}")
    entry = (doc.get("precisions") or {}).get(precision)
    if entry is None:
        raise PrecisionRefused(f"{precision} is refused for {model_path}: {path.name} has no {precision} entry; {how}")
    passed, why = verdict(entry)
    if not passed:
        raise PrecisionRefused(f"{precision} is refused for {model_path}: {why}. Run exact fp32 (--precision fp32)")
    return why
