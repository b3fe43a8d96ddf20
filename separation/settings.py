"""The predictor's settings: one object, built once from arguments or, in grader mode only, from
the grader's environment (:func:`grader_settings`).

Nothing below the entry points reads environment variables for its configuration; the settings
travel as this object (``separate`` builds it from its options, the evaluator from its own).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping

from core.audio import output_format
from models import DEFAULT_MODEL
from models.formats import looks_like_umx_folder

from .backends import PRECISIONS
from .budget import BudgetRule
from . import calibration
from .music_demixing import ENV_PER_MUSIC_TIMEOUT

#: The kit's own variables, read by grader mode only (a submission configures itself with them).
ENV_MODEL = "MDX_MODEL"
ENV_BACKEND = "MDX_BACKEND"
ENV_THREADS = "MDX_THREADS"
ENV_PRECISION = "MDX_PRECISION"            # fp32 | bf16 | int8 (approximate ones pass a quality gate)
ENV_BUDGET_RULE = "MDX_BUDGET_RULE"        # round1 | round2 | none
ENV_BUDGET_SECONDS = "MDX_BUDGET_SECONDS"  # fixed seconds per track (overrides the rule)
ENV_BUDGET_RATIO = "MDX_BUDGET_RATIO"      # x track duration (overrides the rule)
ENV_BUDGET_MARGIN = "MDX_BUDGET_MARGIN"    # safety margin, fraction of the limit
ENV_EXTRAS = "MDX_EXTRAS"                  # 0 disables quality extras under a budget
ENV_NITER = "MDX_NITER"                    # Open-Unmix's Wiener iterations
ENV_FORMAT = "MDX_FORMAT"                  # stem encoding: float | wav16 | wav24 | flac
#: Every variable grader mode reads, for reports and resume checks.
GRADER_VARIABLES = (ENV_MODEL, ENV_BACKEND, ENV_THREADS, ENV_PRECISION, ENV_BUDGET_RULE, ENV_BUDGET_SECONDS,
                    ENV_BUDGET_RATIO, ENV_BUDGET_MARGIN, ENV_EXTRAS, ENV_NITER, ENV_FORMAT, ENV_PER_MUSIC_TIMEOUT)

#: Safety margin kept free of the per-track limit: this fraction of it, plus a fixed part. One
#: second when the limit is timed by someone else (a grader timing ``prediction()``: its clock,
#: its calls around ours); when the budget is the whole command, timed from this process's own
#: start, what follows the deadline is only the rest of the stems' writing (reserved per window
#: by the deadline controller), the renames and the exit: 0.1 s measured for a 60-s song on two
#: busy cores, so a quarter of a second is kept.
DEFAULT_MARGIN_FRACTION = 0.1
MARGIN_FIXED_S = 1.0
WHOLE_COMMAND_MARGIN_FIXED_S = 0.25


class ModelNotFoundError(FileNotFoundError):
    """No model file where one was expected; the message says how to get one."""


@dataclasses.dataclass(frozen=True)
class PredictorSettings:
    """Everything that shapes a predictor's output and timing.

    ``model``: a model file (None: the kit's default model). ``backend``: a runtime name, or None for
    ``auto`` (see :mod:`separation.loading`). ``precision``: ``fp32`` (exact) or an approximate one
    that must pass its quality gate (:mod:`separation.precision`). ``budget``: the per-track rule the
    predictor plans against (None: the plain pass with no deadline, reproducible). ``hard_limit_s``:
    a grader's own per-track limit, applied when tighter than the rule. ``cache_dir``: the folder
    remembering the cost of a pass per machine and model and OpenVINO's compiled models (None:
    measure and compile at every setup).
    ``require_gate``: refuse an approximate precision without a passing quality gate (only the
    gate's own measurement turns this off). ``niter``: Open-Unmix's Wiener post-filter iterations
    (None: the package's default, 1; other architectures ignore it). ``output_format``: how stems
    are encoded (``core.audio.OUTPUT_FORMATS``; float by default, what graders and the evaluator read).
    """

    model: Path | None = None
    backend: str | None = None
    threads: int | None = None
    precision: str = "fp32"
    budget: BudgetRule | None = None
    margin_fraction: float = DEFAULT_MARGIN_FRACTION
    extras: bool = True
    hard_limit_s: float | None = None
    progress: bool = False
    # looked up when the settings are made, so that a test can point it elsewhere
    cache_dir: Path | None = dataclasses.field(default_factory=lambda: calibration.default_cache_dir())
    require_gate: bool = True
    niter: int | None = None
    output_format: str = "float"

    def __post_init__(self) -> None:
        if self.model is not None:
            object.__setattr__(self, "model", Path(self.model))
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        output_format(self.output_format)  # raises for an unknown name
        if self.niter is not None and self.niter < 0:
            raise ValueError(f"niter must be >= 0, got {self.niter}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if not 0 <= self.margin_fraction < 1:
            raise ValueError(f"the margin is a fraction of the limit in [0, 1), got {self.margin_fraction}")

    def replace(self, **changes: Any) -> "PredictorSettings":
        return dataclasses.replace(self, **changes)

    @property
    def budgeted(self) -> bool:
        return self.budget is not None and self.budget.kind != "none"

    @property
    def calibration_cache(self) -> Path | None:
        return None if self.cache_dir is None else Path(self.cache_dir) / calibration.CACHE_NAME

    @property
    def compile_cache(self) -> Path | None:
        return None if self.cache_dir is None else Path(self.cache_dir) / calibration.COMPILE_CACHE_NAME

    def model_path(self) -> Path:
        """The model file to load, checked to exist."""
        return resolve_model_path(self.model)

    def describe(self) -> dict[str, Any]:
        """JSON-ready form for reports: which settings ran."""
        return {"model": str(self.model_path()), "backend": self.backend or "auto",
                "threads": self.threads, "precision": self.precision,
                "budget": self.budget.to_dict() if self.budget else None,
                "margin_fraction": self.margin_fraction, "extras": self.extras, "hard_limit_s": self.hard_limit_s,
                "cache_dir": str(self.cache_dir) if self.cache_dir else None, "niter": self.niter,
                "output_format": self.output_format}


def resolve_model_path(path: str | os.PathLike[str] | None = None) -> Path:
    """``path``, else the kit's default model, checked to exist."""
    chosen = Path(path) if path else DEFAULT_MODEL
    if not (chosen.is_file() or looks_like_umx_folder(chosen)):
        raise ModelNotFoundError(
            f"model file not found: {chosen}. Pass --checkpoint PATH (an original .ckpt of a supported "
            "architecture, a state_dict .pt, an exported .onnx/.ts, a demucs .th or an Open-Unmix model "
            "folder) or set $MDX_MODEL in grader mode; reference models with random weights are in "
            "../shared/reference.")
    return chosen


def budget_from_options(rule: str | None, seconds: float | None, ratio: float | None) -> BudgetRule | None:
    """The rule that ``--budget-rule/--budget-seconds/--budget-ratio`` ask for, or None when none is given."""
    if not (rule or seconds or ratio):
        return None
    return BudgetRule.from_options(rule, seconds, ratio)


def grader_settings(environ: Mapping[str, str], default_budget: BudgetRule | None = None,
                    **overrides: Any) -> PredictorSettings:
    """What grader mode runs: the ``MDX_*`` variables of ``environ`` over the submission defaults
    (the default model, the auto backend, exact fp32, every song planned against ``default_budget``, the
    round-2 rule unless given, with extras). ``overrides`` (e.g. an explicit ``--checkpoint``) win
    over the environment; None values are ignored."""
    seconds, ratio = environ.get(ENV_BUDGET_SECONDS), environ.get(ENV_BUDGET_RATIO)
    budget = (budget_from_options(environ.get(ENV_BUDGET_RULE), float(seconds) if seconds else None,
                                  float(ratio) if ratio else None) or default_budget or BudgetRule.round2())
    margin, threads, hard = environ.get(ENV_BUDGET_MARGIN), environ.get(ENV_THREADS), environ.get(ENV_PER_MUSIC_TIMEOUT)
    niter = environ.get(ENV_NITER)
    values: dict[str, Any] = {
        "model": environ.get(ENV_MODEL) or None, "backend": environ.get(ENV_BACKEND) or None,
        "threads": int(threads) if threads else None, "precision": environ.get(ENV_PRECISION) or "fp32",
        "budget": budget, "margin_fraction": float(margin) if margin else DEFAULT_MARGIN_FRACTION,
        "extras": environ.get(ENV_EXTRAS, "1") != "0", "hard_limit_s": float(hard) if hard else None,
        "niter": int(niter) if niter else None, "output_format": environ.get(ENV_FORMAT) or "float",
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return PredictorSettings(**values)
