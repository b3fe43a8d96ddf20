"""Challenge profiles: MDX21 (rounds 1 and final) and SDX23, their interfaces and aicrowd.json rules."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from core.constants import SOURCES
from evaluator.cli import main as evaluator_main
from evaluator.demo import write_demo_set
from separation.challenges import CHALLENGES, get_challenge
from separation.predictor import KitPredictor
from separation.sdx23 import Sdx23OutputError, check_outputs
from separation.settings import PredictorSettings
from submission import checks
from submission.cli import build_parser
from tests.helpers import REPO_ROOT, music_like


def test_profiles_hold_each_challenges_rules():
    assert set(CHALLENGES) == {"mdx21-round1", "mdx21", "sdx23"}
    assert get_challenge(None).name == "mdx21"
    assert get_challenge("mdx21-round1").budget.limit_for(600) == 240
    assert get_challenge("mdx21").budget.limit_for(100) == pytest.approx(157)
    sdx = get_challenge("sdx23")
    assert sdx.budget.limit_for(100) == pytest.approx(157) and sdx.grader_threads == 4 and sdx.gpu_allowed
    assert sdx.interface == "sdx23-arrays" and {"labelnoise", "bleeding", "gpu"} <= dict(sdx.aicrowd_keys).keys()
    with pytest.raises(ValueError, match="unknown challenge 'mdx22'"):
        get_challenge("mdx22")


@pytest.fixture()
def predictor(tiny_ckpt):
    p = KitPredictor(PredictorSettings(model=tiny_ckpt, threads=1))
    p.prediction_setup()
    return p


def test_sdx23_interface_gives_the_file_interfaces_stems(predictor, tmp_path):
    mix = tmp_path / "mixture.wav"
    sf.write(mix, music_like(2 * 44_100, seed=2), 44_100, subtype="FLOAT")
    paths = {s: tmp_path / f"{s}.wav" for s in SOURCES}
    predictor.prediction(str(mix), **{f"{s}_file_path": str(p) for s, p in paths.items()})
    array, rate = sf.read(mix)  # float64, as the SDX23 grader reads it
    arrays, rates = predictor.separate_music_file(array, rate)
    assert predictor.instruments == ["bass", "drums", "other", "vocals"] == sorted(arrays) == sorted(rates)
    for name in SOURCES:
        assert rates[name] == 44_100 and arrays[name].dtype == np.float32
        assert np.array_equal(arrays[name], sf.read(paths[name], dtype="float32")[0]), name


def test_sdx23_interface_returns_the_callers_rate_and_length(predictor):
    mono = music_like(22_050, seed=3)[:, 0].astype(np.float64)
    with pytest.warns(UserWarning, match="resampled"):
        arrays, rates = predictor.separate_music_file(mono, 22_050)
    assert all(a.shape == (22_050, 2) for a in arrays.values()) and set(rates.values()) == {22_050}
    with pytest.raises(ValueError, match="NaN or Inf"):
        predictor.separate_music_file(np.full((1000, 2), np.nan), 44_100)
    with pytest.raises(ValueError, match="shape"):
        predictor.separate_music_file(np.zeros((10, 2, 2)), 44_100)


@pytest.mark.parametrize("arrays, rates, expected", [
    ({"bass": np.zeros((5, 2))}, {"bass": 44100}, "returned no drums, other, vocals"),
    ({s: np.zeros((4, 2)) for s in SOURCES}, {s: 44100 for s in SOURCES}, "shape (4, 2)"),
    ({s: np.zeros((5, 2)) for s in SOURCES}, {s: 22050 for s in SOURCES}, "sample rate 22050"),
    ([np.zeros((5, 2))], {}, "must return (dict of arrays, dict of sample rates)"),
])
def test_sdx23_outputs_are_checked_as_that_grader_would(arrays, rates, expected):
    with pytest.raises(Sdx23OutputError) as err:
        check_outputs(arrays, rates, 5, 44100)
    assert expected in str(err.value)


def test_evaluator_drives_the_sdx23_interface_under_its_budget(tiny_ckpt, tmp_path):
    data = tmp_path / "data"
    write_demo_set(data, n_songs=1, seed=4, duration_range_s=(2.0, 2.0))
    runs = {}
    for challenge in ("mdx21", "sdx23"):
        out = tmp_path / challenge
        assert evaluator_main(["--data", str(data), "--checkpoint", str(tiny_ckpt), "--out", str(out), "--plain",
                               "--threads", "1", "--quiet", "--no-oracle", "--challenge", challenge]) == 0
        runs[challenge] = out
    sdx_scores = json.loads((runs["sdx23"] / "scores.json").read_text())
    assert sdx_scores["songs"] == json.loads((runs["mdx21"] / "scores.json").read_text())["songs"]  # same stems
    latency = json.loads((runs["sdx23"] / "latency.json").read_text())
    assert latency["budget"]["name"] == "sdx23"
    song = next(iter(latency["songs"].values()))
    assert song["budget_s"] == pytest.approx(1.57 * song["duration_s"])
    report = (runs["sdx23"] / "report.md").read_text()
    assert "sdx23 (Sound Demixing Challenge 2023, music demixing track)" in report
    assert "SDX23 array interface (separate_music_file" in report
    assert "MDX21 file interface" in (runs["mdx21"] / "report.md").read_text()


def _json_with(tmp_path, **changes):
    data = {**json.loads((REPO_ROOT / "aicrowd.json").read_text()), **changes}
    data = {k: v for k, v in data.items() if v is not None}
    (tmp_path / "aicrowd.json").write_text(json.dumps(data))
    return tmp_path / "aicrowd.json"


def test_aicrowd_json_fields_follow_the_challenge(tmp_path):
    kit = REPO_ROOT / "aicrowd.json"
    assert checks.aicrowd_json_problems(kit, "mdx21") == [] == checks.aicrowd_json_problems(kit, "mdx21-round1")
    problems = checks.aicrowd_json_problems(kit, "sdx23")
    assert any("lacks the key 'labelnoise' (bool), which sdx23 needs" in p for p in problems)
    assert any("'challenge_id' is 'evaluations-api-music-demixing'" in p for p in problems)
    sdx = _json_with(tmp_path, challenge_id="music-demixing-track-mdx-23", grader_id=None, labelnoise=False,
                     bleeding=True, gpu=True)
    assert checks.aicrowd_json_problems(sdx, "sdx23") == []
    assert any("'gpu' is true, but" in p for p in checks.aicrowd_json_problems(_json_with(tmp_path, gpu=True)))


def test_submit_takes_a_challenge_profile():
    assert build_parser().parse_args(["v1", "--check", "--challenge", "sdx23"]).challenge == "sdx23"
    assert build_parser().parse_args(["v1"]).challenge == "mdx21"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["v1", "--challenge", "music-demixing-challenge-ismir-2021"])
