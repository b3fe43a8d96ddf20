"""A ``MusicDemixingPredictor`` base class with the AIcrowd MDX starter kit's contract.

Subclasses implement ``prediction_setup()`` (once) and ``prediction(mixture_file_path,
bass_file_path, drums_file_path, other_file_path, vocals_file_path)`` (per song). ``evaluation()``
runs them over ``TEST_DATASET_PATH/<song>/mixture.wav`` into ``RESULTS_DATASET_PATH/<song>/``
under the same environment variables and time limits the grader used, then verifies the outputs.
"""
from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from separation.budget import ROUND1_SECONDS_PER_SONG, SETUP_TIMEOUT_S
from core.constants import SOURCES

#: Environment variables of the grader and their defaults.
ENV_TEST_DATA = "TEST_DATASET_PATH"
ENV_RESULTS = "RESULTS_DATASET_PATH"
ENV_SETUP_TIMEOUT = "INFERENCE_SETUP_TIMEOUT_SECONDS"
ENV_PER_MUSIC_TIMEOUT = "INFERENCE_PER_MUSIC_TIMEOUT_SECONDS"
ENV_PARTIAL_RUN = "PARTIAL_RUN_MUSIC_NAMES"
#: The grader's defaults when the variables are unset (the figures live in evaluator/budget.py).
DEFAULT_SETUP_TIMEOUT = SETUP_TIMEOUT_S
DEFAULT_PER_MUSIC_TIMEOUT = ROUND1_SECONDS_PER_SONG


class TimeoutException(Exception):
    """A stage ran past its limit (the grader fails the submission on this)."""


@contextmanager
def time_limit(seconds: float, what: str) -> Iterator[None]:
    """Raise :class:`TimeoutException` in the main thread if the block outlasts ``seconds``."""
    if seconds is None or seconds <= 0:
        yield
        return

    message = f"{what} exceeded its time limit of {seconds:.1f} s"

    def on_alarm(signum, frame):  # noqa: ARG001 - signal handler signature
        raise TimeoutException(message)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    start = time.perf_counter()
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    # The alarm's exception is lost when the handler happens to run inside a finalizer (Python
    # prints "Exception ignored in ..." and carries on), so the block may end normally past its
    # limit. The grader would have stopped it: the limit holds anyway.
    if time.perf_counter() - start > seconds:
        raise TimeoutException(message)


class MusicDemixingPredictor:
    """Grader-compatible driver; subclass it and implement the two methods."""

    def __init__(self) -> None:
        self.test_data_path = os.getenv(ENV_TEST_DATA, os.path.join(os.getcwd(), "data", "test"))
        self.results_data_path = os.getenv(ENV_RESULTS, os.path.join(os.getcwd(), "data", "results"))
        self.inference_setup_timeout = float(os.getenv(ENV_SETUP_TIMEOUT, DEFAULT_SETUP_TIMEOUT))
        self.inference_per_music_timeout = float(os.getenv(ENV_PER_MUSIC_TIMEOUT, DEFAULT_PER_MUSIC_TIMEOUT))
        self.partial_run = os.getenv(ENV_PARTIAL_RUN)
        self.timings: dict[str, float] = {}
        #: Ending of the stem files this driver asks for (the graders read ``.wav``).
        self.stem_suffix = ".wav"

    # ------------------------------------------------------------------ to implement
    def prediction_setup(self) -> None:
        raise NotImplementedError

    def prediction(self, mixture_file_path: str, bass_file_path: str, drums_file_path: str,
                   other_file_path: str, vocals_file_path: str) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ grader side
    def get_all_music_names(self) -> list[str]:
        """Song folders under the test path (filtered by PARTIAL_RUN_MUSIC_NAMES), sorted."""
        root = Path(self.test_data_path)
        if not root.is_dir():
            raise FileNotFoundError(f"test data folder not found: {root} (set {ENV_TEST_DATA})")
        wanted = set(self.partial_run.split(",")) if self.partial_run else None
        return sorted(p.name for p in root.iterdir()
                      if p.is_dir() and (wanted is None or p.name in wanted))

    def get_music_file_location(self, music_name: str, instrument: str | None = None) -> str:
        """The mixture path of a song, or the output path of one of its stems."""
        if instrument is None:
            return os.path.join(self.test_data_path, music_name, "mixture.wav")
        folder = os.path.join(self.results_data_path, music_name)
        os.makedirs(folder, exist_ok=True)
        return os.path.join(folder, instrument + self.stem_suffix)

    def output_paths(self, music_name: str) -> dict[str, str]:
        return {s: self.get_music_file_location(music_name, s) for s in SOURCES}

    def run_setup(self) -> float:
        t0 = time.perf_counter()
        with time_limit(self.inference_setup_timeout, "prediction_setup"):
            self.prediction_setup()
        self.timings["setup"] = time.perf_counter() - t0
        return self.timings["setup"]

    def run_song(self, music_name: str, limit_s: float | None = None) -> float:
        """Predict one song under its limit; returns the wall time."""
        limit = self.inference_per_music_timeout if limit_s is None else limit_s
        paths = self.output_paths(music_name)
        t0 = time.perf_counter()
        with time_limit(limit, f"prediction of {music_name!r}"):
            self.prediction(mixture_file_path=self.get_music_file_location(music_name),
                            bass_file_path=paths["bass"], drums_file_path=paths["drums"],
                            other_file_path=paths["other"], vocals_file_path=paths["vocals"])
        wall = time.perf_counter() - t0
        self.timings[music_name] = wall
        return wall

    def verify_results(self, music_names: list[str]) -> None:
        """Every expected stem exists (the grader's own check)."""
        missing = [p for name in music_names for p in self.output_paths(name).values()
                   if not os.path.exists(p)]
        if missing:
            raise FileNotFoundError(f"{len(missing)} stem(s) missing, first: {missing[0]}")

    def evaluation(self) -> None:
        """Setup under its timeout, then every song under its own, then verification."""
        self.run_setup()
        names = self.get_all_music_names()
        for name in names:
            self.run_song(name)
        self.verify_results(names)

    def run(self) -> None:
        self.evaluation()
