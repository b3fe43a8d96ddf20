"""Per-operator profiles with each runtime's own profiler.

* ONNX Runtime: its session profiling (a Chrome-trace JSON per session; node events carry the
  operator type and their duration);
* OpenVINO: the CPU plugin's performance counters (``PERF_COUNT``), summed per node over every call;
* eager PyTorch and TorchScript (every baseline, every checkpoint): ``torch.profiler`` on the CPU.

:func:`profile_track` separates one track with profiling on (a plain exact pass: no budget, so
every window runs the network) and returns the operators ranked by time with their share of the
profiled operator time; the raw trace is written beside it for a closer look (chrome://tracing or
Perfetto for the JSON traces).
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from core.audio import open_mixture
from core.files import atomic_write_json

from .engine import StageTimes
from .loading import load_separator
from .settings import PredictorSettings

#: Operators listed in the summary.
TOP_OPERATORS = 15


def _ranked(times: dict[str, float], calls: dict[str, int] | None = None) -> list[dict[str, Any]]:
    total = sum(times.values()) or 1.0
    rows = sorted(times.items(), key=lambda kv: -kv[1])[:TOP_OPERATORS]
    return [{"operator": op, "seconds": seconds, "share": seconds / total,
             **({"calls": calls[op]} if calls else {})} for op, seconds in rows]


def _onnxruntime_ops(trace_files: list[str]) -> tuple[dict[str, float], dict[str, int]]:
    times: dict[str, float] = {}
    calls: dict[str, int] = {}
    for name in trace_files:
        for event in json.loads(Path(name).read_text()):
            if event.get("cat") != "Node" or not str(event.get("name", "")).endswith("_kernel_time"):
                continue
            op = event.get("args", {}).get("op_name", "?")
            times[op] = times.get(op, 0.0) + event.get("dur", 0) / 1e6
            calls[op] = calls.get(op, 0) + 1
    return times, calls


def profile_track(settings: PredictorSettings, mixture_path: str | os.PathLike[str],
                  out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Separate ``mixture_path`` once with the runtime's profiler; writes the raw trace and
    ``profile.json`` into ``out_dir`` and returns the summary."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = str(out_dir / "onnxruntime")
    separator = load_separator(settings.model_path(), settings.backend, settings.threads, precision=settings.precision,
                               compile_cache=settings.compile_cache, niter=settings.niter, profile_prefix=prefix)
    backend = separator.backend
    source = open_mixture(mixture_path)
    times = StageTimes()
    torch_profiler = None
    if backend.name in ("torch", "torchscript"):
        from torch.profiler import ProfilerActivity, profile

        torch_profiler = profile(activities=[ProfilerActivity.CPU])
    t0 = time.perf_counter()
    try:
        with torch_profiler if torch_profiler is not None else contextlib.nullcontext():
            for _ in separator.iter_blocks(source, times=times):
                pass
    finally:
        wall = time.perf_counter() - t0
        if hasattr(source, "close"):
            source.close()
    if torch_profiler is not None:
        raw = out_dir / "torch_trace.json"
        torch_profiler.export_chrome_trace(str(raw))
        averages = torch_profiler.key_averages()
        ops = {e.key: e.self_cpu_time_total / 1e6 for e in averages if e.self_cpu_time_total > 0}
        calls = {e.key: int(e.count) for e in averages}
        profiler = "torch.profiler (CPU, self time per operator)"
    elif backend.name == "onnx":
        traces = backend.end_profiling()
        ops, calls = _onnxruntime_ops(traces)
        raw = out_dir / "onnxruntime_trace.json"
        merged = [event for name in traces for event in json.loads(Path(name).read_text())]
        atomic_write_json(raw, merged)
        for name in traces:
            Path(name).unlink(missing_ok=True)
        profiler = "ONNX Runtime session profiling (kernel time per operator type)"
    else:  # OpenVINO
        ops, calls, per_node = {}, None, []
        for (node_type, node_name), seconds in sorted(backend.counters.items(), key=lambda kv: -kv[1]):
            ops[node_type] = ops.get(node_type, 0.0) + seconds
            per_node.append({"type": node_type, "node": node_name, "seconds": seconds})
        raw = out_dir / "openvino_counters.json"
        atomic_write_json(raw, per_node)
        profiler = "OpenVINO performance counters (real time per node type)"
    summary = {"song": Path(mixture_path).parent.name, "mixture": str(mixture_path), "runtime": backend.name,
               "profiler": profiler, "wall_s": wall, "stages_s": dict(times),
               "operator_seconds": sum(ops.values()), "top": _ranked(ops, calls), "raw": raw.name}
    atomic_write_json(out_dir / "profile.json", summary)
    return summary
