"""--profile: each runtime's own profiler on one song, ranked operators, the raw trace kept."""
from __future__ import annotations

import json

import pytest
import soundfile as sf

from evaluator.cli import main as evaluator_main
from evaluator.demo import write_demo_set
from separation.profiling import profile_track
from separation.settings import PredictorSettings
from tests.helpers import music_like


@pytest.fixture(scope="module")
def tiny_onnx(tiny_ckpt_module, tmp_path_factory):
    from export.exporters import export_onnx
    from models.checkpoint import load_checkpoint

    return export_onnx(load_checkpoint(tiny_ckpt_module), tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.mark.parametrize("runtime", ["torch", "onnx", "openvino"])
def test_profile_ranks_operators_with_the_runtimes_own_profiler(runtime, tiny_ckpt_module, tiny_onnx, tmp_path):
    song = tmp_path / "song" / "mixture.wav"
    song.parent.mkdir()
    sf.write(song, music_like(44_100, seed=1), 44_100, subtype="FLOAT")
    model = tiny_ckpt_module if runtime == "torch" else tiny_onnx
    settings = PredictorSettings(model=model, backend=runtime, threads=1, cache_dir=None)
    summary = profile_track(settings, song, tmp_path / "profile")
    assert summary["runtime"] == runtime and summary["song"] == "song"
    top = summary["top"]
    assert top and all(row["seconds"] >= 0 for row in top)
    assert [row["seconds"] for row in top] == sorted((row["seconds"] for row in top), reverse=True)
    assert 0.99 * sum(row["share"] for row in top) <= 1.0 and top[0]["share"] > 0
    assert (tmp_path / "profile" / summary["raw"]).stat().st_size > 100
    assert json.loads((tmp_path / "profile" / "profile.json").read_text())["top"] == top
    expected_op = {"torch": "aten::", "onnx": "Conv", "openvino": "Convolution"}[runtime]
    assert any(expected_op in row["operator"] for row in top), [row["operator"] for row in top]


def test_evaluator_profile_goes_into_both_reports(tiny_ckpt_module, tmp_path):
    data = tmp_path / "data"
    write_demo_set(data, n_songs=2, seed=8, duration_range_s=(1.5, 2.5))
    out = tmp_path / "run"
    assert evaluator_main(["--data", str(data), "--checkpoint", str(tiny_ckpt_module), "--out", str(out), "--plain",
                           "--threads", "1", "--quiet", "--no-oracle", "--profile"]) == 0
    summary = json.loads((out / "profile" / "profile.json").read_text())
    latency = json.loads((out / "latency.json").read_text())
    slowest = max(latency["songs"], key=lambda s: latency["songs"][s]["rtf"])
    assert summary["song"] == slowest
    assert f"## Per-operator profile: {slowest} (the slowest song)" in (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    assert 'id="profile"' in page and f"profile/{summary['raw']}" in page
