"""Scoring a checkpoint on several sets: the mean of the sets' means, stems cleaned up, failures loud."""
from __future__ import annotations

import json

import pytest

from evaluator.demo import write_demo_set
from training import score


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("sets")
    sets = [root / "a" / "validation", root / "b" / "validation"]  # same folder name: runs must not collide
    for i, s in enumerate(sets):
        write_demo_set(s, n_songs=1, seed=20 + i, duration_range_s=(2.0, 2.5))
    return sets


def test_score_is_the_mean_of_each_sets_mean_and_stems_are_deleted(two_sets, tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "run"
    argv = [str(tiny_ckpt), *(x for s in two_sets for x in ("--data", str(s))), "--out", str(out), "--threads", "1"]
    assert score.main(argv) == 0
    written = json.loads((out / score.SCORE_NAME).read_text())
    runs = score.set_folders(out, two_sets)
    assert len(set(runs)) == 2
    per_set = [json.loads((r / "scores.json").read_text())["mean"]["sdr"] for r in runs]
    assert written["score"] == pytest.approx(sum(per_set) / 2, abs=1e-12)
    assert [written["sets"][str(s)]["sdr"] for s in two_sets] == per_set
    assert not list(out.rglob("*.wav"))  # the separated stems are gone, the reports stay
    assert all((r / "report.md").is_file() for r in runs)
    assert f"{written['score']:.3f} dB" in capsys.readouterr().out


def test_keep_stems_and_a_missing_set_fails_without_a_score(two_sets, tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "kept"
    score.score_checkpoint(tiny_ckpt, two_sets[:1], out, threads=1, keep_stems=True)
    assert len(list(out.rglob("*.wav"))) == 4
    bad = tmp_path / "bad"
    assert score.main([str(tiny_ckpt), "--data", str(two_sets[0]), "--data", str(tmp_path / "nowhere"),
                       "--out", str(bad), "--threads", "1"]) == 1
    assert "wrote no scores" in capsys.readouterr().err
    assert not (bad / score.SCORE_NAME).exists()
