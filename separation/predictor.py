"""The kit's predictor: any registered architecture behind the AIcrowd ``MusicDemixingPredictor``
interface (MDX21: files) and the SDX23 one (``separate_music_file``: arrays), configured by one
:class:`PredictorSettings` object.

``prediction_setup()`` loads the model once on the backend and precision the settings ask for
(an approximate precision only past its quality gate) and, under a budget, takes the cost of
one pass from the calibration cache or measures it; ``prediction(...)`` separates one mixture
into the four given paths, written atomically, and ``separate_music_file(array, rate)`` returns
the stems as arrays; either is planned against the settings' budget when there is one.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from core.audio import audio_info, mixture_from_array, output_format, resample
from core.constants import SAMPLE_RATE, SOURCES

from . import load_separator, separate_file
from .calibration import cached_pass_seconds, calibration_key, pass_seconds, remember_pass_seconds
from .loading import choose_backend, load_backend
from .music_demixing import MusicDemixingPredictor
from .engine import Separator, StageTimes
from .precision import PrecisionRefused, check_gate
from .settings import MARGIN_FIXED_S, WHOLE_COMMAND_MARGIN_FIXED_S, PredictorSettings
from .timebudget import DeadlineController


class KitPredictor(MusicDemixingPredictor):
    """Separates with the model and options of ``settings`` (default: the kit's checkpoint, plain
    exact pass, no deadline)."""

    def __init__(self, settings: PredictorSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or PredictorSettings()
        self.stem_suffix = output_format(self.settings.output_format).suffix  # grader mode's stem files
        self.separator = None
        self.pass_seconds: float | None = None
        self.calibration: str | None = None
        self._calibration_key: str | None = None  # set when the first window is to measure the cost
        self.gate: str | None = None
        #: Under a budget, the ladder's reduced rung: its precision and pass cost, or why there is none.
        self.reduced_pass_seconds: float | None = None
        self.reduced_rung: str | None = None
        #: When set, the next track's budget counts from this ``time.monotonic()`` instant instead of
        #: from its call (``separate`` sets it to the process start: the whole command is timed).
        self.next_track_started: float | None = None
        #: Network calls abandoned at a deadline that may still be running in a worker thread.
        self.abandoned_calls = 0
        self._abandoned: DeadlineController | None = None  # the track whose call may still run
        self.last_budget_report: dict | None = None
        self.last_times: dict[str, float] = {}
        #: Samples clipped per stem on the last track (integer output formats only).
        self.last_clipped: dict[str, int] = {}

    @property
    def progress(self) -> bool:
        return self.settings.progress

    @progress.setter
    def progress(self, value: bool) -> None:
        self.settings = self.settings.replace(progress=bool(value))

    def prediction_setup(self) -> None:
        """Load the model once (the grader times this under its setup limit)."""
        s = self.settings
        path = s.model_path()
        separator = load_separator(path, s.backend, s.threads, precision=s.precision,
                                   compile_cache=s.compile_cache, niter=s.niter)
        if s.require_gate:
            self.gate = check_gate(path, separator.backend.choice.precision)  # refuses an ungated approximation
        self.separator = separator
        if s.budgeted and not separator.calibrates:
            self.calibration = "none: a pass is the whole track (the first chunk measures)"
        elif s.budgeted and self.next_track_started is not None:
            # The budget already runs: no passes at setup. Without a remembered figure the first
            # window's pass measures the cost (see prediction()).
            if s.calibration_cache is not None:
                self._calibration_key = calibration_key(separator, path)
            self.pass_seconds = cached_pass_seconds(self._calibration_key, s.calibration_cache)
            self.calibration = "cached" if self.pass_seconds is not None else "first window"
        elif s.budgeted:
            # Plan with this machine's measured speed (cached per machine and model), never an assumed one.
            self.pass_seconds, self.calibration = pass_seconds(separator, path, s.calibration_cache)
        if s.budgeted:
            self.reduced_rung = self._setup_reduced_rung(path)

    #: The approximate precision the degradation ladder may fall back to before mixture/4.
    LADDER_PRECISION = "bf16"

    def _setup_reduced_rung(self, path: Path) -> str:
        """Load the same model at :data:`LADDER_PRECISION` for windows the exact pass cannot reach,
        when this machine runs it natively and its quality gate passed; returns what was decided."""
        separator, s = self.separator, self.settings
        if type(separator) is not Separator or separator.backend.choice.precision != "fp32":
            return "none: the separator runs one precision"
        choice = choose_backend(path, s.backend, self.LADDER_PRECISION)
        if choice.precision != self.LADDER_PRECISION:
            return "none: " + "; ".join(choice.notes or (f"the {choice.backend} backend runs fp32 only",))
        try:
            gate = check_gate(path, choice.precision)
        except PrecisionRefused as exc:
            return f"none: {exc}"
        seconds = None
        if self.next_track_started is not None:  # the budget already runs: remembered figures only, asked first
            seconds = cached_pass_seconds(calibration_key(separator, path, choice.precision), s.calibration_cache)
            if seconds is None:
                return (f"none: no remembered {choice.precision} pass cost on this machine (a budgeted run in grader "
                        "mode or the evaluator measures it)")
        backend, _ = load_backend(path, choice.backend, s.threads, precision=choice.precision, choice=choice,
                                  compile_cache=s.compile_cache)
        if seconds is None:
            seconds, _ = pass_seconds(Separator(backend, separator.spectral.window), path, s.calibration_cache)
        separator.reduced_backend = backend
        self.reduced_pass_seconds = seconds
        return f"{choice.precision} on {choice.backend}, {seconds:.2f} s per pass (gate: {gate})"

    def describe(self) -> dict[str, Any]:
        """The settings that ran, and what the loaded model is (for reports)."""
        info = self.settings.describe()
        if self.separator is not None:
            backend = self.separator.backend
            info.update(architecture=self.separator.architecture.name, backend=backend.name,
                        precision=backend.choice.precision, backend_choice=backend.choice.describe(),
                        quality_gate=self.gate, pass_seconds=self.pass_seconds, calibration=self.calibration,
                        reduced_rung=self.reduced_rung,
                        **self.separator.describe())
        return info

    def prediction(self, mixture_file_path: str, bass_file_path: str, drums_file_path: str,
                   other_file_path: str, vocals_file_path: str) -> None:
        """MDX21 interface: separate one mixture into the four given paths (written atomically)."""
        out = {"bass": bass_file_path, "drums": drums_file_path,
               "other": other_file_path, "vocals": vocals_file_path}
        frames, rate, _ = audio_info(mixture_file_path)
        with self._track(Path(mixture_file_path).name, frames / rate) as (controller, progress):
            self.last_clipped = {}
            self.last_times = dict(separate_file(self.separator, mixture_file_path, out, progress,
                                                 budget=controller, fmt=self.settings.output_format,
                                                 clipped=self.last_clipped))

    # ------------------------------------------------------------------ SDX23 interface
    @property
    def instruments(self) -> list[str]:
        """SDX23 interface: the instruments :meth:`separate_music_file` returns."""
        return sorted(SOURCES)

    def raise_aicrowd_error(self, msg: str) -> None:
        """SDX23 interface: how a predictor reports an error to that grader."""
        raise NameError(msg)

    def separate_music_file(self, mixed_sound_array: np.ndarray,
                            sample_rate: int) -> tuple[dict[str, np.ndarray], dict[str, int]]:
        """SDX23 interface: ``soundfile.read``'s (n,) or (n, 2) array at ``sample_rate`` ->
        ({instrument: (n, 2) float32}, {instrument: rate}), at the input's rate and length."""
        source = mixture_from_array(mixed_sound_array, sample_rate)
        n_sources = len(SOURCES)
        stems = np.zeros((n_sources, source.n_samples, 2), dtype=np.float32)
        times = StageTimes()
        with self._track("array", source.n_samples / SAMPLE_RATE) as (controller, progress):
            for start, block in self.separator.iter_blocks(source, progress, times, controller):
                stems[:, start:start + block.shape[1]] = block
            self.last_times = dict(times)
        arrays = {name: stems[i] for i, name in enumerate(self.separator.sources)}
        if int(sample_rate) != SAMPLE_RATE:  # give the grader back what it gave: its rate and length
            n = len(mixed_sound_array)
            arrays = {k: _fit(resample(v, SAMPLE_RATE, int(sample_rate)), n) for k, v in arrays.items()}
        return ({k: arrays[k] for k in self.instruments}, {k: int(sample_rate) for k in self.instruments})

    # ------------------------------------------------------------------ one track, either interface
    @contextmanager
    def _track(self, label: str, duration_s: float) -> Iterator[tuple[DeadlineController | None, Any]]:
        """Set up one track's deadline controller and progress bar; afterwards, handle a call the
        deadline abandoned and remember what the track measured."""
        if self.separator is None:
            self.prediction_setup()
        if self._abandoned is not None:
            # A call abandoned at the last track's deadline still runs on the same backend (whose
            # runtimes are not safe to call twice at once): let it finish first.
            self._abandoned.close(wait=True)
            self._abandoned = None
        controller = self._controller(duration_s)
        interrupted = True
        try:
            with progress_bar(label, self.settings.progress) as progress:
                yield controller, progress
            interrupted = False
        finally:
            if controller is not None:
                # Interrupted (e.g. a grader's timeout): the worker must not keep computing into
                # whatever the caller does next. At a deadline: leave it, and wait before the next track.
                controller.close(wait=interrupted)
                self.last_budget_report = controller.report()
                if controller.abandoned_at is not None and not interrupted:
                    self.abandoned_calls += 1
                    self._abandoned = controller
                self._learn(controller)

    def _controller(self, duration_s: float) -> DeadlineController | None:
        """A deadline controller for a track of ``duration_s`` seconds, or None when no budget applies."""
        self.last_budget_report = None
        s = self.settings
        if not s.budgeted:
            return None
        whole_command = self.next_track_started is not None
        started = self.next_track_started or time.monotonic()
        self.next_track_started = None
        limit = s.budget.limit_for(duration_s)
        if s.hard_limit_s:  # a grader's own hard limit wins when it is tighter
            limit = min(limit, s.hard_limit_s)
        margin = s.margin_fraction * limit + (WHOLE_COMMAND_MARGIN_FIXED_S if whole_command else MARGIN_FIXED_S)
        extras = self.separator.extras() if s.extras else ()
        return DeadlineController(deadline=started + limit - margin, pass_seconds=self.pass_seconds,
                                  extras=extras, limit_s=limit, margin_s=margin, started=started,
                                  reduced_pass_seconds=self.reduced_pass_seconds)

    def _learn(self, controller: DeadlineController) -> None:
        """Remember the first pass a track measured when no figure was known (a warm-up pass: an
        overestimate, which the next run's controller corrects downwards)."""
        if not self.separator.calibrates:
            return
        if self.pass_seconds is None and controller.first_pass_seconds is not None:
            self.pass_seconds = controller.first_pass_seconds
            self.calibration = "learned from the first window"
            if self._calibration_key is not None:
                remember_pass_seconds(self._calibration_key, self.settings.calibration_cache, self.pass_seconds,
                                      backend=self.separator.backend.name, model=self.settings.model_path().name)


def _fit(audio: np.ndarray, n: int) -> np.ndarray:
    """(m, 2) cut or zero-padded to (n, 2)."""
    if audio.shape[0] >= n:
        return np.ascontiguousarray(audio[:n])
    return np.concatenate([audio, np.zeros((n - audio.shape[0], audio.shape[1]), audio.dtype)])


class progress_bar:
    """tqdm over seconds of audio on stderr; silent when disabled or not a terminal."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label, self.enabled, self.bar = label, enabled, None

    def __enter__(self) -> Callable[[int, int], None] | None:
        if not self.enabled:
            return None
        import sys

        from tqdm import tqdm

        def update(done: int, total: int) -> None:
            if self.bar is None:
                self.bar = tqdm(total=round(total / SAMPLE_RATE, 1), unit="s", desc=self.label,
                                file=sys.stderr, leave=True, disable=None,
                                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s audio "
                                           "[{elapsed}<{remaining}]")
            self.bar.n = round(done / SAMPLE_RATE, 1)
            self.bar.refresh()

        return update

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
