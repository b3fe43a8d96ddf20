"""The baselines participants compare against: Open-Unmix and HTDemucs, read from their own
packages' formats and matched against the packages' own outputs (../shared/reference/umx and
htdemucs, criteria from their READMEs: 1e-5 max-abs per stem; 5e-6 x peak for one network call).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import soundfile as sf
import torch

from core.audio import ArraySource
from core.constants import SOURCES
from models.htdemucs import DemucsError, load_demucs
from models.umx import UmxError, load_umx_folder
from separation.geometry import SegmentGeometry
from separation.loading import choose_backend, load_separator
from separation.timebudget import DeadlineController
from tests.helpers import REPO_ROOT, require

WAV_TOL = 1e-5


@pytest.fixture(scope="module")
def umx_dir(reference_dir):
    return require(reference_dir / "umx")


@pytest.fixture(scope="module")
def htdemucs_file(reference_dir):
    return require(reference_dir / "htdemucs" / "htdemucs_random.th")


@pytest.fixture(scope="module")
def mixture(reference_dir):
    audio, _ = sf.read(reference_dir / "mixture.wav", dtype="float32")
    return audio


def _stems(separator, audio, budget=None):
    blocks = list(separator.iter_blocks(ArraySource(audio), budget=budget))
    starts = [s for s, _ in blocks]
    assert starts == sorted(starts) and starts[0] == 0
    return np.concatenate([b for _, b in blocks], axis=1)


# ---------------------------------------------------------------------- Open-Unmix
def test_umx_network_matches_package_call(umx_dir):
    model = load_umx_folder(umx_dir)
    io = torch.load(umx_dir / "spec_io.pt", weights_only=True)
    assert sum(p.numel() for p in model.networks["vocals"].parameters()) == 8_893_348
    with torch.inference_mode():
        out = model.networks["vocals"](io["input_spec"])
    ref = io["output_spec"]
    assert (out - ref).abs().max().item() <= 5e-6 * ref.abs().max().item()


@pytest.mark.parametrize("niter", [0, 1])
def test_umx_stems_match_package(umx_dir, mixture, niter):
    separator = load_separator(umx_dir, niter=niter)
    stems = _stems(separator, mixture)
    assert stems.shape == (4, len(mixture), 2)
    for i, name in enumerate(SOURCES):
        ref, _ = sf.read(umx_dir / f"expected_niter{niter}_{name}.wav", dtype="float32")
        assert np.abs(stems[i] - ref).max() <= WAV_TOL, name


def test_umx_streams_in_small_chunks(umx_dir, mixture):
    """niter 0 filters each frame on its own, so any chunking must give the package's output:
    this drives the overlap-add iSTFT across many chunk boundaries and the reflect padding."""
    separator = load_separator(umx_dir, niter=0)
    separator.wiener_win_len = 37
    stems = _stems(separator, mixture)
    ref, _ = sf.read(umx_dir / "expected_niter0_bass.wav", dtype="float32")
    assert np.abs(stems[SOURCES.index("bass")] - ref).max() <= WAV_TOL


def test_umx_budget_stage_and_fallback(umx_dir, mixture):
    separator = load_separator(umx_dir, niter=0)
    audio = mixture[:200_000]
    plain = _stems(separator, audio)
    import time
    generous = DeadlineController(deadline=time.monotonic() + 600, pass_seconds=None)
    assert np.abs(_stems(separator, audio, generous) - plain).max() <= 1e-6
    assert generous.report()["degradation"] == "none" and "network" in generous.report()["stages_s"]
    spent = DeadlineController(deadline=time.monotonic() - 1, pass_seconds=None)
    fallback = _stems(separator, audio, spent)
    assert np.abs(fallback - audio[None] / 4).max() <= 1e-6  # the mixture / 4, seamless
    assert "network stage was abandoned" in spent.report()["degradation"]


def _copy_umx(umx_dir, dest):
    shutil.copytree(umx_dir, dest, ignore=shutil.ignore_patterns("expected_*", "spec_io.pt", "make"))
    return dest


def test_umx_folder_errors_name_the_file(umx_dir, tmp_path):
    folder = _copy_umx(umx_dir, tmp_path / "umx")
    (folder / "drums.pth").unlink()
    with pytest.raises(UmxError, match="drums"):
        load_umx_folder(folder)
    shutil.copy(umx_dir / "drums.pth", folder / "drums.pth")
    args = json.loads((folder / "bass.json").read_text())
    args["args"]["hidden_size"] = 1024  # UMX-L's size, with UMX-HQ's weights
    (folder / "bass.json").write_text(json.dumps(args))
    with pytest.raises(UmxError, match=r"bass\.pth: shapes do not match"):
        load_umx_folder(folder)


def test_separate_refuses_broken_umx_folder_and_writes_nothing(umx_dir, reference_dir, tmp_path):
    folder = _copy_umx(umx_dir, tmp_path / "umx")
    (folder / "other.json").write_text("{not json")
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "predict.py", "separate", str(reference_dir / "mixture.wav"),
                             "--checkpoint", str(folder), "--out", str(out), "--quiet"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "other.json" in result.stderr and "JSON" in result.stderr
    assert not out.exists()


# ---------------------------------------------------------------------- HTDemucs
def test_htdemucs_package_reads_with_apply_model_geometry(htdemucs_file):
    separator = load_separator(htdemucs_file)
    model = separator.backend.model
    assert model.sources == ("drums", "bass", "other", "vocals")
    assert sum(p.numel() for p in model.network.parameters()) == 26_899_536
    assert all(p.dtype == torch.float32 for p in model.network.parameters())
    assert separator.geometry.window == 441_000 and separator.geometry.step == 330_750  # 10 s, overlap 0.25


@pytest.mark.parametrize("n_samples", [1000, 441_000, 529_200, 1_000_000, 661_500])
def test_segment_weights_sum_to_one(n_samples):
    geo = SegmentGeometry(441_000, 0.25)
    total = np.zeros(n_samples)
    for c in range(geo.n_windows(n_samples)):
        start, n = c * geo.step, geo.length(c, n_samples)
        w = geo.weights(c, n_samples)
        assert np.all(w[n:] == 0)
        total[start:start + n] += w[:n]
    assert np.abs(total - 1).max() < 1e-6


def _torch_zip_with(tmp_path, name, payload):
    path = tmp_path / name
    torch.save(payload, path)
    return path


def test_htdemucs_refuses_foreign_globals_without_running_them(tmp_path):
    marker = tmp_path / "ran"
    evil = _torch_zip_with(tmp_path, "evil.th", {"klass": os.system, "args": (f"touch {marker}",), "kwargs": {},
                                                 "state": {}})
    with pytest.raises(DemucsError, match="names code the kit will not load"):
        load_demucs(evil)
    assert not marker.exists()
    older = _torch_zip_with(tmp_path, "old.th", {"klass": SegmentGeometry, "args": (), "kwargs": {}, "state": {}})
    with pytest.raises(DemucsError, match="separation.geometry.SegmentGeometry"):
        load_demucs(older)
    with pytest.raises(DemucsError, match="not a demucs model package"):
        load_demucs(_torch_zip_with(tmp_path, "dict.th", {"state": {}}))
    garbage = tmp_path / "garbage.th"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(DemucsError, match="not a demucs model package"):
        load_demucs(garbage)


def test_htdemucs_refuses_quantized_and_wrong_shapes(htdemucs_file, tmp_path):
    from demucs.htdemucs import HTDemucs

    with torch.serialization.safe_globals([HTDemucs]):
        package = torch.load(htdemucs_file, weights_only=True)
    quantized = dict(package, state={"__quantized": True})
    with pytest.raises(DemucsError, match="quantized"):
        load_demucs(_torch_zip_with(tmp_path, "q.th", quantized))
    wrong = dict(package, kwargs={**package["kwargs"], "channels": 32})
    with pytest.raises(DemucsError, match="cannot build HTDemucs"):
        load_demucs(_torch_zip_with(tmp_path, "w.th", wrong))


def test_baselines_run_on_torch_and_say_why(umx_dir, htdemucs_file):
    for path in (umx_dir, htdemucs_file):
        choice = choose_backend(path, None, "bf16")
        assert choice.backend == "torch" and choice.precision == "fp32"
        assert "package's own model format" in choice.reason and "running exact fp32" in choice.notes[0]
    with pytest.raises(ValueError, match="runs onnx files"):
        choose_backend(htdemucs_file, "openvino")


def test_separate_command_runs_htdemucs(htdemucs_file, reference_dir, tmp_path):
    """apply_model's output through the whole command (streamed segments, normalisation, writing)."""
    out = tmp_path / "out"
    subprocess.run([sys.executable, "predict.py", "separate", str(reference_dir / "mixture.wav"),
                    "--checkpoint", str(htdemucs_file), "--out", str(out), "--quiet"],
                   cwd=REPO_ROOT, check=True, timeout=600)
    for name in SOURCES:
        got, _ = sf.read(out / "mixture" / f"{name}.wav", dtype="float32")
        ref, _ = sf.read(htdemucs_file.parent / f"expected_{name}.wav", dtype="float32")
        assert np.abs(got - ref).max() <= WAV_TOL, name


# ---------------------------------------------------------------------- comparison run
def test_evaluator_compares_models_on_the_same_songs(umx_dir, tiny_ckpt, tmp_path, capsys):
    from evaluator.cli import main
    from evaluator.demo import write_demo_set

    data = tmp_path / "data"
    write_demo_set(data, n_songs=2, seed=5, duration_range_s=(2.0, 3.0))
    out = tmp_path / "run"
    code = main(["--data", str(data), "--checkpoint", str(tiny_ckpt), "--checkpoint", str(umx_dir),
                 "--niter", "0", "--out", str(out), "--threads", "1", "--quiet", "--no-oracle"])
    assert code == 0
    doc = json.loads((out / "comparison.json").read_text())
    rows = {r["label"]: r for r in doc["models"]}
    assert set(rows) == {tiny_ckpt.stem, "umx"}
    assert rows["umx"]["architecture"] == "umx" and rows[tiny_ckpt.stem]["architecture"] == "lightsaft"
    for label, row in rows.items():
        run = json.loads((out / label / "scores.json").read_text())
        latency = json.loads((out / label / "latency.json").read_text())
        assert row["scores"] == run["mean"] and row["n_scored"] == 2  # the same songs, each scored
        assert row["rtf"] == latency["summary"]["rtf"] and row["peak_rss_mib"] > 50
    ran = json.loads((out / "umx" / ".state" / "sessions.json").read_text())[0]["predictor"]
    assert ran["niter"] == 0
    report = (out / "report.md").read_text()
    assert "model comparison" in report and "| umx | umx (torch fp32) |" in report
    assert f"{rows['umx']['scores']['sdr']:.3f}" in report
    assert "| umx | umx (torch fp32) |" in capsys.readouterr().out
