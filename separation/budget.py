"""Time budgets as data: how long the MDX grader gave a submission, in one place.

The MDX 2021 grader timed two things: ``prediction_setup()`` (model loading) once, and
``prediction()`` once per song. Round 1 allowed a fixed 240 s per song; round 2 allowed
1.57 x the song's duration. The predictor, the local evaluator and the submit preflight all
take their limits from a :class:`BudgetRule`, so those figures appear nowhere else.
"""
from __future__ import annotations

import dataclasses
import math

#: Seconds the grader allowed ``prediction_setup()``.
SETUP_TIMEOUT_S = 900.0
#: Round 1: a fixed limit per song, whatever its length.
ROUND1_SECONDS_PER_SONG = 240.0
#: Round 2: the limit is this multiple of the song's duration.
ROUND2_DURATION_RATIO = 1.57

#: Rule names accepted by ``--budget-rule``.
RULE_NAMES = ("round1", "round2", "none")


class BudgetError(ValueError):
    """A budget that cannot be used (negative, zero, not a number, unknown rule)."""


def _positive(value: float, what: str) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise BudgetError(f"{what} must be a positive number of seconds or ratio, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class BudgetRule:
    """A per-song time limit: ``fixed`` seconds, ``ratio`` x duration, or ``none``.

    ``name`` is how the rule is reported (``round1``, ``round2``, ``fixed``, ``ratio``, ``none``).
    """

    kind: str
    value: float | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("fixed", "ratio", "none"):
            raise BudgetError(f"unknown budget kind {self.kind!r}; expected fixed, ratio or none")
        if self.kind == "none":
            if self.value is not None:
                raise BudgetError("a 'none' budget takes no value")
        else:
            object.__setattr__(self, "value", _positive(self.value, f"a {self.kind} budget"))
        if not self.name:
            object.__setattr__(self, "name", self.kind)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def fixed(cls, seconds: float, name: str = "fixed") -> "BudgetRule":
        """The same limit, in seconds, for every song."""
        return cls("fixed", seconds, name)

    @classmethod
    def ratio(cls, ratio: float, name: str = "ratio") -> "BudgetRule":
        """A limit of ``ratio`` x the song's duration."""
        return cls("ratio", ratio, name)

    @classmethod
    def none(cls) -> "BudgetRule":
        """No per-song limit (latency is still measured)."""
        return cls("none", None, "none")

    @classmethod
    def round1(cls) -> "BudgetRule":
        """MDX 2021 round 1: a fixed limit per song."""
        return cls.fixed(ROUND1_SECONDS_PER_SONG, "round1")

    @classmethod
    def round2(cls) -> "BudgetRule":
        """MDX 2021 round 2: a limit proportional to the song's duration."""
        return cls.ratio(ROUND2_DURATION_RATIO, "round2")

    @classmethod
    def named(cls, name: str) -> "BudgetRule":
        """``round1``, ``round2`` or ``none``."""
        makers = {"round1": cls.round1, "round2": cls.round2, "none": cls.none}
        if name not in makers:
            raise BudgetError(f"unknown budget rule {name!r}; choose one of {', '.join(RULE_NAMES)}")
        return makers[name]()

    @classmethod
    def from_options(cls, rule: str | None = "round2", seconds: float | None = None,
                     ratio: float | None = None) -> "BudgetRule":
        """The rule the command line asks for: ``seconds`` or ``ratio`` override ``rule``."""
        if seconds is not None and ratio is not None:
            raise BudgetError("give either --budget-seconds or --budget-ratio, not both")
        if seconds is not None:
            return cls.fixed(seconds)
        if ratio is not None:
            return cls.ratio(ratio)
        return cls.named(rule or "round2")

    @classmethod
    def from_dict(cls, data: dict) -> "BudgetRule":
        """The inverse of :meth:`to_dict`."""
        return cls(data["kind"], data.get("value"), data.get("name", ""))

    # ------------------------------------------------------------------ use
    def limit_for(self, duration_s: float) -> float | None:
        """Seconds allowed for a song of ``duration_s`` seconds; None when unlimited."""
        if self.kind == "fixed":
            return self.value
        if self.kind == "ratio":
            return self.value * float(duration_s)
        return None

    def describe(self) -> str:
        """One line for reports, e.g. ``round2: 1.57 x song duration``."""
        if self.kind == "fixed":
            text = f"{self.value:g} s per song"
        elif self.kind == "ratio":
            text = f"{self.value:g} x song duration"
        else:
            text = "no per-song limit"
        return text if self.name == self.kind else f"{self.name}: {text}"

    def to_dict(self) -> dict:
        """JSON-ready form, with the one-line description."""
        return {"kind": self.kind, "value": self.value, "name": self.name, "description": self.describe()}
