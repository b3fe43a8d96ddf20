"""``python -m evaluator`` end to end with a tiny model on tiny data: scores, latency, reports."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from evaluator.cli import main
from evaluator.demo import write_demo_set
from evaluator.harness import verify_outputs
from core.constants import SOURCES
from separation.predictor import KitPredictor

STARTER_KIT_ORDER = ["bass", "drums", "other", "vocals"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_demo_set(root, n_songs=2, seed=3, duration_range_s=(2.0, 3.0))
    return root


def _run(data_dir: Path, ckpt: Path, out: Path, *extra: str) -> int:
    return main(["--data", str(data_dir), "--checkpoint", str(ckpt), "--out", str(out),
                 "--threads", "1", "--quiet", *extra])


def official_scores(reference_dir: Path, estimate_dir: Path) -> dict:
    """The starter kit's scoring, transcribed, run on files (soundfile reads float64)."""
    refs = np.stack([sf.read(reference_dir / f"{s}.wav")[0] for s in STARTER_KIT_ORDER])
    ests = np.stack([sf.read(estimate_dir / f"{s}.wav")[0] for s in STARTER_KIT_ORDER])
    num = np.sum(np.square(refs), axis=(1, 2)) + 1e-7
    den = np.sum(np.square(refs - ests), axis=(1, 2)) + 1e-7
    values = (10 * np.log10(num / den)).tolist()
    scores = {f"sdr_{s}": v for s, v in zip(STARTER_KIT_ORDER, values)}
    scores["sdr"] = float(np.mean(values))
    return scores


def test_end_to_end_scores_latency_and_reports(data_dir, tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(data_dir, tiny_ckpt, out) == 0
    printed = capsys.readouterr().out
    songs = ["synthetic-00", "synthetic-01"]
    for song in songs:
        for s in SOURCES:
            info = sf.info(out / song / f"{s}.wav")
            assert info.frames == sf.info(data_dir / song / "mixture.wav").frames and info.channels == 2

    scores = json.loads((out / "scores.json").read_text())
    assert list(scores["songs"]) == songs
    for song in songs:
        assert scores["songs"][song] == official_scores(data_dir / song, out / song)  # exactly
    assert scores["mean"]["sdr"] == pytest.approx(np.mean([scores["songs"][s]["sdr"] for s in songs]), abs=1e-12)
    floor, ceiling = scores["reference_rows"]["mixture/4"]["mean"], scores["reference_rows"]["oracle IRM"]["mean"]
    assert ceiling["sdr"] > floor["sdr"]

    latency = json.loads((out / "latency.json").read_text())
    assert latency["budget"]["name"] == "round2"
    for song in songs:
        row = latency["songs"][song]
        assert row["budget_s"] == pytest.approx(1.57 * row["duration_s"])
        assert row["margin_s"] == pytest.approx(row["budget_s"] - row["wall_s"])
        assert row["rtf"] == pytest.approx(row["wall_s"] / row["duration_s"])
        assert row["miss"] is False and row["status"] == "ok"
        assert set(row["stages"]) == {"read", "stft", "network", "istft", "write"}
        assert 0 < sum(row["stages"].values()) <= row["wall_s"]
        assert row["peak_rss_mib"] > 50
    assert latency["setup"]["seconds"] > 0 and latency["setup"]["limit_s"] == 900
    assert latency["summary"]["n_missed"] == 0

    report = (out / "report.md").read_text()
    for song in songs:
        assert f"| {song} | " in report and f"{scores['songs'][song]['sdr']:.3f}" in report
    for system, value in [("Hybrid Demucs", "7.328"), ("KUIELAB-MDX-Net", "7.236"), ("Demucs48-HQ", "5.873"),
                          ("LightSAFT+GPoCM", "5.394"), ("X-UMX", "5.372"), ("UMX", "5.042")]:
        assert f"| {system} | {value} |" in report
    assert "MDXDB21" in report and "comparable only on that set" in report
    assert f"{scores['mean']['sdr']:.3f}" in report and "PASS" in report
    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "this run" in printed and "report.md" in printed
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    # By default the evaluator runs what grader mode would submit, and says so.
    ran = json.loads((out / ".state" / "run.json").read_text())["predictor_settings"]
    assert ran["budget"]["name"] == "round2" and ran["extras"] is True and ran["threads"] == 1
    session = json.loads((out / ".state" / "sessions.json").read_text())[0]["predictor"]
    assert session["architecture"] == "lightsaft" and session["backend"] == "torch"
    assert "architecture lightsaft, backend torch" in report and "budget plan: round2" in report


def test_plain_option_runs_the_reproducible_pass(data_dir, tiny_ckpt, tmp_path):
    out = tmp_path / "run"
    assert _run(data_dir, tiny_ckpt, out, "--plain", "--songs", "synthetic-00") == 0
    assert json.loads((out / ".state" / "run.json").read_text())["predictor_settings"]["budget"] is None
    assert "budget plan: none (plain pass, reproducible)" in (out / "report.md").read_text()
    record = json.loads((out / ".state" / "songs" / "synthetic-00.json").read_text())
    assert "predictor_budget" not in record  # no deadline controller ran


def test_missed_budget_is_flagged_and_still_scored(data_dir, tiny_ckpt, tmp_path):
    out = tmp_path / "run"
    assert _run(data_dir, tiny_ckpt, out, "--budget-seconds", "0.001") == 1
    latency = json.loads((out / "latency.json").read_text())
    assert all(row["miss"] and row["status"] == "ok" and row["margin_s"] < 0 for row in latency["songs"].values())
    assert latency["summary"]["n_missed"] == 2
    scores = json.loads((out / "scores.json").read_text())
    assert len(scores["songs"]) == 2
    report = (out / "report.md").read_text()
    assert "FAIL" in report and "**MISS**" in report


def test_enforced_budget_stops_the_song(data_dir, tiny_ckpt, tmp_path):
    out = tmp_path / "run"
    assert _run(data_dir, tiny_ckpt, out, "--budget-seconds", "0.005", "--enforce", "--songs", "synthetic-00") == 1
    latency = json.loads((out / "latency.json").read_text())
    row = latency["songs"]["synthetic-00"]
    assert row["status"] == "timeout" and row["miss"] is True and row["wall_s"] < 5
    assert not list((out / "synthetic-00").glob("*.wav"))  # the grader would get no stems
    scores = json.loads((out / "scores.json").read_text())
    assert scores["songs"] == {} and "timeout" in scores["unscored"]["synthetic-00"]


class FailingPredictor(KitPredictor):
    """Raises on one song, writes short stems on another: both must be reported, not fatal."""

    def prediction(self, mixture_file_path, bass_file_path, drums_file_path, other_file_path, vocals_file_path):
        if "synthetic-00" in mixture_file_path:
            raise RuntimeError("boom")
        for path in (bass_file_path, drums_file_path, other_file_path, vocals_file_path):
            sf.write(path, np.zeros((10, 2), np.float32), 44100, subtype="FLOAT")


def test_failures_are_reported_per_song(data_dir, tiny_ckpt, tmp_path):
    out = tmp_path / "run"
    assert _run(data_dir, tiny_ckpt, out, "--predictor", "tests.test_evaluator_cli:FailingPredictor") == 1
    latency = json.loads((out / "latency.json").read_text())
    assert latency["songs"]["synthetic-00"]["status"] == "error"
    assert latency["songs"]["synthetic-01"]["status"] == "invalid"
    scores = json.loads((out / "scores.json").read_text())
    assert "boom" in scores["unscored"]["synthetic-00"]
    assert "samples" in scores["unscored"]["synthetic-01"]


def test_verify_outputs(tmp_path):
    mixture = tmp_path / "mixture.wav"
    sf.write(mixture, np.zeros((100, 2), np.float32), 44100, subtype="FLOAT")
    good = np.zeros((100, 2), np.float32)
    stems = {s: tmp_path / f"{s}.wav" for s in SOURCES}
    sf.write(stems["vocals"], good, 44100, subtype="FLOAT")
    sf.write(stems["drums"], np.zeros((99, 2), np.float32), 44100, subtype="FLOAT")
    bad = good.copy()
    bad[50, 1] = np.nan
    sf.write(stems["bass"], bad, 44100, subtype="FLOAT")
    problems, facts = verify_outputs(mixture, stems)
    text = "\n".join(problems)
    assert "drums: 99 samples" in text and "bass: contains NaN" in text and "other: other.wav was not written" in text
    assert not any(p.startswith("vocals") for p in problems)
    assert set(facts) == {"vocals", "drums", "bass"}


def test_missing_checkpoint_never_falls_back(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MDX_MODEL", str(tmp_path / "absent.ckpt"))
    assert main(["--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "--checkpoint" in err and "never falls back to random weights" in err
    assert not (tmp_path / "run").exists()


def test_run_dir_of_another_run_is_refused(data_dir, tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(data_dir, tiny_ckpt, out, "--songs", "synthetic-01") == 0
    other = tmp_path / "other.ckpt"
    shutil.copy(tiny_ckpt, other)
    with open(other, "ab") as f:
        f.write(b"\0")  # same weights, different file: a different run
    assert _run(data_dir, other, out, "--songs", "synthetic-01") == 2
    assert "different checkpoint" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed (CI installs it)")
def test_stempeg_excerpt_end_to_end(tiny_ckpt, tmp_path):
    out = tmp_path / "run"
    assert main(["--stempeg-excerpt", "--checkpoint", str(tiny_ckpt), "--out", str(out), "--threads", "1",
                 "--quiet", "--budget-rule", "none"]) == 0
    scores = json.loads((out / "scores.json").read_text())
    (song,) = scores["songs"]
    assert math.isfinite(scores["songs"][song]["sdr"])
    assert not list((out / ".state" / ".inputs").glob("*/mixture.wav"))  # decoded input removed
    latency = json.loads((out / "latency.json").read_text())
    assert latency["songs"][song]["budget_s"] is None and latency["songs"][song]["miss"] is False


def test_rerun_skips_finished_songs_unless_their_input_changed(tiny_ckpt, tmp_path, capsys):
    data = tmp_path / "data"
    write_demo_set(data, n_songs=1, seed=8, duration_range_s=(2.0, 2.5))
    out = tmp_path / "run"
    assert _run(data, tiny_ckpt, out) == 0
    first = json.loads((out / "scores.json").read_text())
    capsys.readouterr()
    assert _run(data, tiny_ckpt, out) == 0  # nothing to do: no setup, same scores
    err = capsys.readouterr().err
    assert "resuming: 1 song(s)" in err and "setup:" not in err
    assert json.loads((out / "scores.json").read_text())["songs"] == first["songs"]
    mixture = data / "synthetic-00" / "mixture.wav"
    audio, rate = sf.read(mixture, dtype="float32")
    sf.write(mixture, audio * 0.5, rate, subtype="FLOAT")  # same song name, different input
    assert _run(data, tiny_ckpt, out) == 0
    err = capsys.readouterr().err
    assert "resuming" not in err and "[1/1] synthetic-00" in err
