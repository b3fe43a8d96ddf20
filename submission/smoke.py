"""The preflight's smoke prediction: one short generated song through the grader's own harness.

The predictor class runs exactly as the grader drives it (``run_setup`` under the setup timeout,
``run_song`` under the song's limit), and the song's limit comes from the round-2 budget rule, so a
submission that would time out on the grader fails here first.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: Seed of the smoke song; the demo set and the training data use others.
SMOKE_SEED = 7001
SMOKE_SONG = "preflight-smoke"
#: The budget rule the smoke song must meet (round 2: a multiple of the song's duration).
SMOKE_RULE = "round2"


class SmokeFailure(RuntimeError):
    """The smoke prediction failed, ran over its budget or wrote bad stems."""


@dataclass(frozen=True)
class SmokeResult:
    duration_s: float
    setup_s: float
    wall_s: float
    limit_s: float | None

    def summary(self) -> str:
        limit = "no limit" if self.limit_s is None else f"limit {self.limit_s:.1f} s"
        return (f"{self.duration_s:.1f} s song separated in {self.wall_s:.1f} s ({limit}, "
                f"RTF {self.wall_s / self.duration_s:.2f}; setup {self.setup_s:.1f} s)")


def smoke_limit(duration_s: float) -> float | None:
    """The per-song limit the grader would apply to a song of ``duration_s`` seconds."""
    from separation.budget import BudgetRule

    return BudgetRule.named(SMOKE_RULE).limit_for(duration_s)


def _load_note() -> str:
    """A hint when other work competes for the CPUs (the timing is then not the grader's)."""
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    if load <= cpus:
        return ""
    return (f" (note: load average {load:.1f} on {cpus} CPUs; other processes were competing, "
            "so rerun when the machine is idle before concluding the model is too slow)")


def run_smoke_prediction(duration_s: float) -> SmokeResult:
    """Separate a generated ``duration_s``-second song with the kit's predictor, as the grader would."""
    from core.audio import AudioError, audio_info, read_mixture, write_wav
    from separation.budget import SETUP_TIMEOUT_S, BudgetRule
    from evaluator.demo import make_demo_song
    from separation.music_demixing import TimeoutException
    from core.constants import N_AUDIO_CHANNELS, SAMPLE_RATE
    from predict import PREDICTOR_CLASS
    from separation.settings import grader_settings

    limit = smoke_limit(duration_s)
    with tempfile.TemporaryDirectory(prefix="mdx-preflight-") as tmp:
        test_root, results_root = Path(tmp) / "test", Path(tmp) / "results"
        mixture = make_demo_song(SMOKE_SEED, duration_s)["mixture"]
        write_wav(test_root / SMOKE_SONG / "mixture.wav", mixture)

        predictor = PREDICTOR_CLASS(grader_settings(os.environ))  # what `python predict.py` runs
        predictor.test_data_path, predictor.results_data_path = str(test_root), str(results_root)
        predictor.inference_setup_timeout = SETUP_TIMEOUT_S
        try:
            setup_s = predictor.run_setup()
            wall_s = predictor.run_song(SMOKE_SONG, limit_s=limit)
            predictor.verify_results([SMOKE_SONG])
        except TimeoutException as exc:
            rule = BudgetRule.named(SMOKE_RULE).describe()
            raise SmokeFailure(f"over the budget ({rule}) for a {duration_s:g} s song: {exc}{_load_note()}") from exc
        except Exception as exc:  # noqa: BLE001 - whatever breaks, the message must say what it was
            raise SmokeFailure(f"{type(exc).__name__}: {exc}") from exc

        for source, path in predictor.output_paths(SMOKE_SONG).items():
            frames, rate, channels = audio_info(path)
            if (frames, rate, channels) != (len(mixture), SAMPLE_RATE, N_AUDIO_CHANNELS):
                raise SmokeFailure(f"{source}.wav has {frames} frames, {rate} Hz, {channels} channels; expected "
                                   f"{len(mixture)}, {SAMPLE_RATE} Hz, {N_AUDIO_CHANNELS}")
            try:
                read_mixture(path)  # rejects NaN/Inf samples
            except AudioError as exc:
                raise SmokeFailure(f"bad stem {source}.wav: {exc}") from exc
    return SmokeResult(duration_s, setup_s, wall_s, limit)

