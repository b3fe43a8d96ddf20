"""The latency benchmark runs end to end and its report agrees with its JSON (tiny model)."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import REPO_ROOT


def test_bench_smoke(tmp_path, tiny_ckpt):
    out = tmp_path / "bench"
    res = subprocess.run([sys.executable, "-m", "evaluator.bench", str(tiny_ckpt), "--seconds", "1.5",
                          "--configs", "plain,torch,onnx,openvino,openvino-bf16", "--out", str(out)],
                         cwd=REPO_ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    doc = json.loads((out / "bench.json").read_text())
    rows = {r["name"]: r for r in doc["rows"]}
    from separation.loading import _native_bf16

    # bf16 runs only where the CPU has it natively, and is skipped with the reason elsewhere
    assert list(rows) == ["plain", "torch", "onnx", "openvino"] + (["openvino-bf16"] if _native_bf16() else [])
    if not _native_bf16():
        assert "skipping openvino-bf16: bf16 asked, but this CPU has no native bf16" in res.stderr
    for r in rows.values():
        assert r["wall_s"] > 0 and r["peak_rss_mib"] > 50 and r["gflops"] > 0
        assert abs(r["rtf"] - r["wall_s"] / 1.5) < 1e-9
    # Exact backends reproduce the plain path; an approximate precision is allowed to differ.
    for name in ("torch", "onnx", "openvino"):
        assert rows[name]["max_abs_vs_plain"] <= 1e-5 and rows[name]["precision"] == "fp32", name
    assert rows["plain"]["speedup"] == 1.0
    md = (out / "bench.md").read_text()
    assert "ONNX Runtime artifact" in md and f"{rows['onnx']['wall_s']:.1f}" in md
