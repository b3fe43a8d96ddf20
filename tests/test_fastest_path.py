"""The default runtime and model, approximate precisions behind their quality gate, the cached
cost of a pass, and a budget that times the whole command."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from core.constants import SOURCES
from core.files import sha256_file
from models import DEFAULT_CHECKPOINT, DEFAULT_MODEL
from models.registry import get
from separation import choose_backend, load_separator, loading
from separation.calibration import pass_seconds
from separation.precision import PrecisionRefused, check_gate, gate_path, record_gate
from separation.predictor import KitPredictor
from separation.settings import PredictorSettings
from separation.budget import BudgetRule
from tests.helpers import REPO_ROOT, music_like


@pytest.fixture()
def tiny_onnx(tmp_path, tiny_ckpt) -> Path:
    from export.exporters import export_onnx
    from models.checkpoint import load_checkpoint

    return export_onnx(load_checkpoint(tiny_ckpt), tmp_path / "tiny.onnx")


@pytest.fixture()
def cpu_only(monkeypatch):
    monkeypatch.setattr(loading, "_onnxruntime_cuda", lambda: False)


# ---------------------------------------------------------------------- the default
def test_the_shipped_default_model_is_the_default_checkpoint_exported():
    """The ONNX file that runs by default was exported from the checkpoint beside it, and still
    separates like it on both ONNX runtimes (the export's own parity check)."""
    import onnx

    from export.parity import check_artifact
    from models.artifact import METADATA_KEY
    from models.checkpoint import load_checkpoint

    meta = json.loads({p.key: p.value for p in onnx.load(str(DEFAULT_MODEL), load_external_data=False)
                       .metadata_props}[METADATA_KEY])
    assert meta["exported_from_sha256"] == sha256_file(DEFAULT_CHECKPOINT), \
        "the checkpoint changed: export it again (python -m export ... --format onnx --out models/checkpoints)"
    model = load_checkpoint(DEFAULT_CHECKPOINT)
    for runtime in ("onnx", "openvino"):
        report = check_artifact(model, DEFAULT_MODEL, runtime)
        assert report.audio_max_abs <= 1e-5, (runtime, report)
    assert PredictorSettings().model_path() == DEFAULT_MODEL


def test_auto_picks_the_runtime_by_file_kind_and_machine(cpu_only, monkeypatch):
    assert choose_backend("m.ckpt").backend == "torch"
    assert choose_backend("m.pt", "auto").backend == "torch"
    assert choose_backend("m.ts").backend == "torchscript"
    monkeypatch.setattr(loading, "openvino_available", lambda: True)
    assert choose_backend("m.onnx").backend == "openvino"
    # LASAFT-Net-v2 (OpenVINO's rounding moves it past its criteria) and LaSAFT v1 (OpenVINO measured
    # 2.2x slower) stay on ONNX Runtime
    assert get("lasaft_v2").cpu_runtime == "onnx" == get("lasaft_v1").cpu_runtime
    assert get("lightsaft").cpu_runtime == "openvino"
    assert choose_backend("m.onnx", cpu_runtime="onnx").backend == "onnx"
    assert choose_backend("m.onnx", "openvino", cpu_runtime="onnx").backend == "openvino"  # asked for
    monkeypatch.setattr(loading, "openvino_available", lambda: False)
    choice = choose_backend("m.onnx")
    assert choice.backend == "onnx" and "not installed" in choice.reason
    monkeypatch.setattr(loading, "_onnxruntime_cuda", lambda: True)
    choice = choose_backend("m.onnx")
    assert choice.backend == "onnx" and "CUDA" in choice.reason


def test_a_runtime_that_cannot_read_the_file_is_refused():
    with pytest.raises(ValueError, match="runs onnx files.*export"):
        choose_backend("m.ckpt", "openvino")
    with pytest.raises(ValueError, match="runs checkpoint files"):
        choose_backend("m.onnx", "torch")
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'"):
        choose_backend("m.onnx", "tensorrt")
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        choose_backend("m.onnx", precision="fp8")
    with pytest.raises(ValueError, match="cannot tell the backend"):
        choose_backend("m.bin")


def test_the_loaded_backend_says_what_chose_it(tiny_onnx, cpu_only):
    separator = load_separator(tiny_onnx)
    assert separator.backend.name == "openvino" and separator.backend.threads >= 1
    assert separator.backend.choice.precision == "fp32" and "fastest exact" in separator.backend.choice.reason


# ---------------------------------------------------------------------- precisions
def test_native_bf16_is_what_the_cpu_flags_say():
    """OpenVINO's report of native bf16 agrees with the CPU's own flags (AVX512_BF16 or AMX)."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if not flags:
        pytest.skip("no /proc/cpuinfo to compare with")
    assert loading._native_bf16() == any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def test_reduced_precision_without_native_support_runs_exact_and_says_so(cpu_only, monkeypatch):
    monkeypatch.setattr(loading, "_native_bf16", lambda: False)
    choice = choose_backend("m.onnx", precision="bf16")
    assert choice.precision == "fp32" and "no native bf16" in choice.notes[0] and "exact fp32" in choice.notes[0]
    choice = choose_backend("m.onnx", "onnx", precision="bf16")
    assert choice.precision == "fp32" and "only in fp32" in choice.notes[0]
    choice = choose_backend("m.onnx", precision="int8")
    assert choice.precision == "fp32" and choice.notes
    monkeypatch.setattr(loading, "_native_bf16", lambda: True)
    assert choose_backend("m.onnx", precision="bf16").precision == "bf16"


def _sets(mean: float) -> dict:
    return {"demo": {"per_source": {"bass": mean, "drums": mean, "other": mean, "vocals": mean},
                     "mean_delta_db": mean, "songs": 4}}


def test_the_ladder_has_a_reduced_rung_only_where_a_gated_precision_runs_natively(tmp_path, tiny_onnx, cpu_only,
                                                                                   monkeypatch):
    """extras -> exact -> reduced -> mixture/4 through the predictor. Without native bf16 (this
    CPU) or without a passing gate there is no rung, and the report says why. With both (bf16
    declared native here; OpenVINO then keeps f32, so the numbers stay comparable), the rung is
    loaded and measured at setup, and windows whose exact pass cannot fit get it."""
    import soundfile as sf

    settings = PredictorSettings(model=str(tiny_onnx), budget=BudgetRule.fixed(60.0), cache_dir=None, extras=False)
    predictor = KitPredictor(settings)
    predictor.prediction_setup()
    assert predictor.separator.reduced_backend is None and predictor.reduced_rung.startswith("none: ")
    monkeypatch.setattr(loading, "_native_bf16", lambda: True)
    predictor = KitPredictor(settings)
    predictor.prediction_setup()
    assert "quality gate was never measured" in predictor.describe()["reduced_rung"]
    record_gate(tiny_onnx, "bf16", _sets(-0.05), 1.4, {"cpu": "test"})
    predictor = KitPredictor(settings)
    predictor.prediction_setup()
    assert predictor.describe()["reduced_rung"].startswith("bf16 on openvino")
    assert predictor.separator.reduced_backend.precision == "bf16" and predictor.reduced_pass_seconds > 0
    mixture = tmp_path / "mix.wav"
    sf.write(mixture, music_like(3 * predictor.separator.geometry.step), 44100, subtype="FLOAT")
    exact = {s: tmp_path / f"exact_{s}.wav" for s in SOURCES}
    predictor.prediction(str(mixture), *(str(exact[s]) for s in ("bass", "drums", "other", "vocals")))
    assert predictor.last_budget_report["done"]["reduced_windows"] == []  # the exact pass fits: no rung
    predictor.pass_seconds = 1000.0  # as if the exact pass could never fit in the minute
    rung = {s: tmp_path / f"rung_{s}.wav" for s in SOURCES}
    predictor.prediction(str(mixture), *(str(rung[s]) for s in ("bass", "drums", "other", "vocals")))
    done = predictor.last_budget_report["done"]
    assert done["reduced_windows"] == [0, 1, 2] and done["fallback_windows"] == []
    for s in SOURCES:
        assert np.abs(sf.read(rung[s], dtype="float32")[0] - sf.read(exact[s], dtype="float32")[0]).max() <= 1e-6


def test_the_quality_gate_refuses_unmeasured_lossy_slow_or_stale_precisions(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"a model")
    assert check_gate(model, "fp32") is None
    with pytest.raises(PrecisionRefused, match="never measured.*evaluator.gate"):
        check_gate(model, "bf16")
    assert record_gate(model, "bf16", _sets(-0.05), 1.4, {"cpu": "test"})["passed"]
    assert "1.40x faster" in check_gate(model, "bf16")
    assert not record_gate(model, "int8", _sets(-0.3), 2.0, {"cpu": "test"})["passed"]
    with pytest.raises(PrecisionRefused, match=r"loses 0\.300 dB mean SDR on demo"):
        check_gate(model, "int8")
    assert check_gate(model, "bf16")  # the other precision's entry is kept
    record_gate(model, "bf16", _sets(0.01), 0.9, {"cpu": "test"})
    with pytest.raises(PrecisionRefused, match="not faster"):
        check_gate(model, "bf16")
    record_gate(model, "bf16", _sets(-0.05), 1.4, {"cpu": "test"})
    model.write_bytes(b"another model")
    with pytest.raises(PrecisionRefused, match="another version"):
        check_gate(model, "bf16")
    assert json.loads(gate_path(model).read_text())["max_mean_loss_db"] == 0.15


def test_the_predictor_refuses_an_ungated_precision(tiny_onnx, cpu_only, monkeypatch):
    """Where bf16 would run natively, a model without a passing gate record is refused at setup."""
    monkeypatch.setattr(loading, "_native_bf16", lambda: True)
    monkeypatch.setattr(loading, "OpenVinoBackend", _Fp32OpenVino)  # bf16 itself cannot run on this CPU
    predictor = KitPredictor(PredictorSettings(model=tiny_onnx, precision="bf16"))
    with pytest.raises(PrecisionRefused, match="never measured"):
        predictor.prediction_setup()
    record_gate(tiny_onnx, "bf16", _sets(-0.02), 1.5, {"cpu": "test"})
    predictor.prediction_setup()
    assert predictor.describe()["precision"] == "bf16" and "1.50x" in predictor.describe()["quality_gate"]


class _Fp32OpenVino(loading.OpenVinoBackend):
    def __init__(self, path, threads=None, precision="fp32", **kwargs):
        super().__init__(path, threads=threads, precision="fp32", **kwargs)
        self.precision = precision


def test_gate_tool_measures_nothing_a_cpu_cannot_run(tiny_onnx, tmp_path, cpu_only, monkeypatch, capsys):
    from evaluator import gate

    monkeypatch.setattr(loading, "_native_bf16", lambda: False)
    assert gate.main([str(tiny_onnx), "--precision", "bf16", "--out", str(tmp_path / "g")]) == 2
    assert "cannot measure bf16 here" in capsys.readouterr().err
    assert not gate_path(tiny_onnx).exists()


def test_gate_comparison_is_per_source_over_songs():
    from evaluator.gate import compare

    exact = [{"song": s, "scores": {"sdr_bass": 1.0, "sdr_drums": 2.0, "sdr_other": 3.0, "sdr_vocals": 4.0}}
             for s in ("a", "b")]
    approx = [{"song": "a", "scores": {"sdr_bass": 0.8, "sdr_drums": 2.0, "sdr_other": 3.0, "sdr_vocals": 4.2}},
              {"song": "b", "scores": {"sdr_bass": 0.6, "sdr_drums": 2.0, "sdr_other": 2.9, "sdr_vocals": 4.0}}]
    result = compare(exact, approx)
    assert result["per_source"]["bass"] == pytest.approx(-0.3)
    assert result["per_source"]["vocals"] == pytest.approx(0.1)
    assert result["mean_delta_db"] == pytest.approx((-0.3 + 0 - 0.05 + 0.1) / 4) and result["songs"] == 2


# ---------------------------------------------------------------------- calibration and deadlines
def test_the_cost_of_a_pass_is_measured_once_per_machine_and_model(tiny_onnx, tmp_path):
    cache = tmp_path / "calibration.json"
    separator = load_separator(tiny_onnx, "onnx")
    first, how = pass_seconds(separator, tiny_onnx, cache)
    assert how == "measured" and first > 0 and len(json.loads(cache.read_text())) == 1
    again, how = pass_seconds(separator, tiny_onnx, cache)
    assert (again, how) == (first, "cached")
    other, how = pass_seconds(load_separator(tiny_onnx, "onnx", threads=1), tiny_onnx, cache)
    assert how == "measured" and len(json.loads(cache.read_text())) == 2  # threads are part of the key
    cache.write_text("{cut sho")
    assert pass_seconds(separator, tiny_onnx, cache)[1] == "measured"
    assert pass_seconds(separator, tiny_onnx, None)[1] == "measured"


def test_process_start_is_seen_from_inside():
    code = ("import time; time.sleep(0.6); from core.clock import process_started_monotonic as p; "
            "print(time.monotonic() - p())")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert float(out.stdout) >= 0.6


def test_a_budget_counts_from_when_the_command_started(tiny_onnx, tmp_path):
    """A track whose budget was spent before its call gets the fallback on every window, fast."""
    import soundfile as sf

    mix = tmp_path / "mix.wav"
    sf.write(mix, music_like(120_000, seed=3), 44100)
    settings = PredictorSettings(model=tiny_onnx, budget=BudgetRule.fixed(5.0), cache_dir=None)
    predictor = KitPredictor(settings)
    predictor.prediction_setup()
    predictor.next_track_started = time.monotonic() - 60.0
    out = {f"{s}_file_path": str(tmp_path / f"{s}.wav") for s in ("bass", "drums", "other", "vocals")}
    predictor.prediction(str(mix), **out)
    report = predictor.last_budget_report
    assert report["wall_s"] >= 60.0 and report["done"]["fallback_windows"]
    assert len(report["done"]["fallback_windows"]) == report["done"]["windows"]
    assert predictor.next_track_started is None  # only the first track counts from the start
    vocals, _ = sf.read(out["vocals_file_path"])
    np.testing.assert_allclose(vocals, sf.read(mix)[0] / 4, atol=1e-4)


def test_separate_says_which_runtime_and_precision_ran(tiny_onnx, tmp_path):
    import soundfile as sf

    sf.write(tmp_path / "mixture.wav", music_like(44_100, seed=5), 44100)
    res = subprocess.run([sys.executable, "predict.py", "separate", str(tmp_path / "mixture.wav"),
                          "--checkpoint", str(tiny_onnx), "--out", str(tmp_path / "out"), "--precision", "bf16"],
                         cwd=REPO_ROOT, capture_output=True, text=True)
    if loading._native_bf16():  # bf16 would run, but this model has no gate record
        assert res.returncode == 2 and "never measured" in res.stderr
        return
    assert res.returncode == 0, res.stderr
    assert "on openvino fp32" in res.stderr and "running exact fp32" in res.stderr
    assert (tmp_path / "out" / "mixture" / "vocals.wav").is_file()


def test_a_whole_command_budget_learns_the_pass_cost_from_its_first_window(tiny_onnx, tmp_path, cpu_only):
    """No passes at setup when the budget already runs: the first window measures, the next start reads it."""
    import soundfile as sf

    from separation.calibration import cached_pass_seconds, calibration_key

    mix = tmp_path / "mix.wav"
    sf.write(mix, music_like(100_000, seed=2), 44100)
    settings = PredictorSettings(model=tiny_onnx, budget=BudgetRule.fixed(120.0), cache_dir=tmp_path / "cache")
    predictor = KitPredictor(settings)
    predictor.next_track_started = time.monotonic()
    predictor.prediction_setup()
    assert predictor.pass_seconds is None and predictor.calibration == "first window"
    out = {f"{s}_file_path": str(tmp_path / f"{s}.wav") for s in ("bass", "drums", "other", "vocals")}
    predictor.prediction(str(mix), **out)
    assert predictor.last_budget_report["done"]["fallback_windows"] == []
    assert predictor.calibration.startswith("learned") and predictor.pass_seconds > 0
    key = calibration_key(predictor.separator, tiny_onnx)
    assert cached_pass_seconds(key, settings.calibration_cache) == predictor.pass_seconds
    again = KitPredictor(settings)
    again.next_track_started = time.monotonic()
    again.prediction_setup()
    assert (again.calibration, again.pass_seconds) == ("cached", predictor.pass_seconds)
    assert any((tmp_path / "cache" / "openvino").iterdir())  # OpenVINO kept its compiled models
