"""Predictor settings: one object from arguments, or from the grader's environment in grader mode only."""
from __future__ import annotations

from pathlib import Path

import pytest

from models import DEFAULT_MODEL
from separation.budget import BudgetRule
from separation.predictor import KitPredictor
from separation.settings import ModelNotFoundError, PredictorSettings, grader_settings


def test_defaults_are_the_plain_exact_pass_of_the_default_checkpoint():
    s = PredictorSettings()
    assert s.model_path() == DEFAULT_MODEL and s.budget is None and not s.budgeted and s.precision == "fp32"


def test_grader_settings_read_the_environment_over_submission_defaults():
    s = grader_settings({})
    assert s.budget == BudgetRule.round2() and s.extras and s.hard_limit_s is None and s.model is None
    assert s.backend is None and s.precision == "fp32"  # auto runtime, exact
    env = {"MDX_MODEL": "m.onnx", "MDX_BACKEND": "onnx", "MDX_THREADS": "3", "MDX_PRECISION": "bf16",
           "MDX_BUDGET_SECONDS": "30", "MDX_BUDGET_MARGIN": "0.2", "MDX_EXTRAS": "0",
           "INFERENCE_PER_MUSIC_TIMEOUT_SECONDS": "100"}
    s = grader_settings(env)
    assert (s.model, s.backend, s.threads, s.precision) == (Path("m.onnx"), "onnx", 3, "bf16")
    assert s.budget == BudgetRule.fixed(30) and s.margin_fraction == 0.2 and not s.extras and s.hard_limit_s == 100
    assert grader_settings({"MDX_BUDGET_RULE": "none"}).budget.kind == "none"
    assert grader_settings(env, model="x.ckpt", threads=None).model == Path("x.ckpt")  # arguments win, None keeps


def test_the_predictor_reads_no_environment(monkeypatch, tmp_path):
    """Only grader mode turns MDX_* variables into settings; the class itself ignores them."""
    monkeypatch.setenv("MDX_MODEL", str(tmp_path / "elsewhere.ckpt"))
    monkeypatch.setenv("MDX_BUDGET_RULE", "round1")
    predictor = KitPredictor()
    assert predictor.settings == PredictorSettings() and predictor.settings.model_path() == DEFAULT_MODEL


def test_bad_settings_are_refused_with_a_reason(tmp_path):
    with pytest.raises(ValueError, match="threads"):
        PredictorSettings(threads=0)
    with pytest.raises(ValueError, match="margin"):
        PredictorSettings(margin_fraction=1.5)
    with pytest.raises(ModelNotFoundError, match="--checkpoint"):
        PredictorSettings(model=tmp_path / "absent.ckpt").model_path()
