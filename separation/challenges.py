"""The rules of each challenge the kit targets, as data: one profile per challenge.

A profile says how long a song may take (a :class:`BudgetRule`), how long setup may take, how many
CPU threads the grader's machine gives, whether a GPU may be asked for, which predictor
interface the grader drives, and what ``aicrowd.json`` must hold. The evaluator, ``run.sh``, the
submit preflight and the predictor read them from here and nowhere else.

* ``mdx21-round1`` / ``mdx21``: the ISMIR 2021 Music Demixing Challenge, round 1 (240 s per song)
  and the final round (1.57 x the song's duration); CPU grading; the file interface
  ``prediction(mixture_file_path, bass_file_path, ...)``.
* ``sdx23``: the Sound Demixing Challenge 2023, music track: 1.57 x duration, 4 vCPUs and 16 GB,
  an optional T4 GPU (``"gpu": true``), the array interface
  ``separate_music_file(mixed_sound_array, sample_rate) -> (arrays, rates)`` per instrument, and
  ``labelnoise`` / ``bleeding`` in aicrowd.json (which leaderboard a submission enters).

Figures the kit could not confirm are marked as assumptions in :attr:`Challenge.notes`.
"""
from __future__ import annotations

import dataclasses

from .budget import ROUND2_DURATION_RATIO, SETUP_TIMEOUT_S, BudgetRule

MDX21_GRADER_ID = "evaluations-api-music-demixing"
SDX23_MUSIC_CHALLENGE_ID = "music-demixing-track-mdx-23"
#: Interfaces a grader drives a predictor through.
INTERFACES = ("mdx21-files", "sdx23-arrays")


@dataclasses.dataclass(frozen=True)
class Challenge:
    """One challenge's grading rules."""

    name: str
    title: str
    budget: BudgetRule
    setup_timeout_s: float
    grader_threads: int
    gpu_allowed: bool
    interface: str
    #: aicrowd.json: every required key and its JSON type.
    aicrowd_keys: tuple[tuple[str, type], ...]
    #: aicrowd.json: keys whose value is fixed by the challenge.
    aicrowd_values: tuple[tuple[str, str], ...]
    #: The challenge's slug for ``aicrowd submission create --challenge``.
    aicrowd_slug: str = ""
    memory_gb: float | None = None
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        gpu = ", optional GPU" if self.gpu_allowed else ", CPU only"
        return (f"{self.name} ({self.title}): {self.budget.describe()}, setup {self.setup_timeout_s:g} s, "
                f"{self.grader_threads} threads{gpu}, {self.interface} interface")

    def to_dict(self) -> dict:
        return {"name": self.name, "title": self.title, "budget": self.budget.to_dict(),
                "setup_timeout_s": self.setup_timeout_s, "grader_threads": self.grader_threads,
                "gpu_allowed": self.gpu_allowed, "interface": self.interface, "memory_gb": self.memory_gb,
                "aicrowd_keys": {k: t.__name__ for k, t in self.aicrowd_keys},
                "aicrowd_values": dict(self.aicrowd_values), "notes": list(self.notes)}


_MDX21_KEYS = (("challenge_id", str), ("grader_id", str), ("authors", list), ("description", str),
               ("gpu", bool), ("external_dataset_used", bool))
_MDX21_IDS = (("challenge_id", MDX21_GRADER_ID), ("grader_id", MDX21_GRADER_ID))
_MDX21_SLUG = "music-demixing-challenge-ismir-2021"
_MDX21_NOTES = ("2 grader threads is the kit's assumption (the grader's core count was not published in the "
                "kit's sources)",)

CHALLENGES: dict[str, Challenge] = {c.name: c for c in (
    Challenge("mdx21-round1", "Music Demixing Challenge 2021, round 1", BudgetRule.round1(), SETUP_TIMEOUT_S,
              grader_threads=2, gpu_allowed=False, interface="mdx21-files", aicrowd_keys=_MDX21_KEYS,
              aicrowd_values=_MDX21_IDS, aicrowd_slug=_MDX21_SLUG, notes=_MDX21_NOTES),
    Challenge("mdx21", "Music Demixing Challenge 2021, final round", BudgetRule.round2(), SETUP_TIMEOUT_S,
              grader_threads=2, gpu_allowed=False, interface="mdx21-files", aicrowd_keys=_MDX21_KEYS,
              aicrowd_values=_MDX21_IDS, aicrowd_slug=_MDX21_SLUG, notes=_MDX21_NOTES),
    Challenge("sdx23", "Sound Demixing Challenge 2023, music demixing track",
              BudgetRule.ratio(ROUND2_DURATION_RATIO, "sdx23"), SETUP_TIMEOUT_S, grader_threads=4,
              gpu_allowed=True, interface="sdx23-arrays", memory_gb=16.0,
              aicrowd_keys=(("challenge_id", str), ("authors", list), ("description", str), ("gpu", bool),
                            ("external_dataset_used", bool), ("labelnoise", bool), ("bleeding", bool)),
              aicrowd_values=(("challenge_id", SDX23_MUSIC_CHALLENGE_ID),), aicrowd_slug=SDX23_MUSIC_CHALLENGE_ID,
              notes=("setup limit: the MDX21 figure (900 s) is assumed; the kit's sources do not state "
                     "SDX23's",)),
)}
#: The profile used when none is named: the MDX21 final round.
DEFAULT_CHALLENGE = "mdx21"


def get_challenge(name: str | None) -> Challenge:
    """The profile called ``name`` (None: :data:`DEFAULT_CHALLENGE`); ValueError listing the choices."""
    name = name or DEFAULT_CHALLENGE
    if name not in CHALLENGES:
        raise ValueError(f"unknown challenge {name!r}; choose one of {', '.join(CHALLENGES)}")
    return CHALLENGES[name]
