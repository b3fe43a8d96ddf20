"""The grader-like run: setup under its timeout, each song under its budget, outputs verified,
then scored -- resumable song by song.

Layout of a run folder::

    RUN_DIR/<song>/<source>.wav      the predictor's stems (written atomically by the predictor)
    RUN_DIR/.state/run.json          what this run is (checkpoint hash, data, budget): resume guard
    RUN_DIR/.state/songs/<song>.json one record per finished song: latency, hashes, scores
    RUN_DIR/.state/sessions.json     setup time of every invocation that loaded the model
    RUN_DIR/scores.json, latency.json, report.md, latency.png   (evaluator/reports.py)

A song counts as done when its record exists and its stems still hash to what the record
says; a run killed at any point and started again with the same command skips those songs
and recomputes the rest.
"""
from __future__ import annotations

import dataclasses
import importlib
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Mapping

import numpy as np

from core.constants import SOURCES

from separation.budget import SETUP_TIMEOUT_S, BudgetRule
from .datasets import Dataset, Song, read_float64
from core.files import atomic_write_json, read_json, sha256_file, size_bytes
from separation import sdx23
from separation.challenges import DEFAULT_CHALLENGE, get_challenge
from .memory import PeakRSS
from separation.music_demixing import ENV_RESULTS, MusicDemixingPredictor, TimeoutException
from separation.predictor import KitPredictor
from separation.settings import PredictorSettings
from .oracle import reference_scores
from .scoring import museval_song, song_scores

STATE_DIR = ".state"
INPUTS_DIR = ".inputs"
RECORD_VERSION = 1
#: The class grader mode runs (``predict.PREDICTOR_CLASS``).
DEFAULT_PREDICTOR = "predict:PREDICTOR_CLASS"

STATUS_OK = "ok"
STATUS_TIMEOUT = "timeout"
STATUS_ERROR = "error"
STATUS_INVALID = "invalid"


class RunDirError(ValueError):
    """RUN_DIR belongs to a different run (other checkpoint, data or budget)."""


class SetupError(RuntimeError):
    """``prediction_setup()`` failed or ran past the setup timeout."""


@dataclasses.dataclass
class EvalSettings:
    """Everything that shapes a run besides the data.

    ``predictor_settings``: what the kit's predictor runs with (by default the settings grader
    mode would submit, budget included; see ``evaluator.cli``); a ``--predictor`` class that is not
    the kit's is constructed without arguments, like the grader does. ``budget``: the limit each
    song is timed against. ``enforce``: stop a song at its limit like the grader, leaving it without
    stems; by default it may finish, is scored, and the miss is flagged. ``challenge``: the
    profile whose grader is imitated (its interface drives the predictor; see
    :mod:`separation.challenges`).
    """

    out_dir: Path
    predictor_settings: PredictorSettings
    budget: BudgetRule = dataclasses.field(default_factory=BudgetRule.round2)
    setup_timeout_s: float = SETUP_TIMEOUT_S
    enforce: bool = False
    museval: bool = False
    oracle: bool = True
    predictor: str = DEFAULT_PREDICTOR
    challenge: str = DEFAULT_CHALLENGE

    @property
    def checkpoint(self) -> Path:
        return self.predictor_settings.model_path()


@dataclasses.dataclass
class RunResult:
    """What a run produced: per-song records (in dataset order) and the setup sessions."""

    records: list[dict]
    sessions: list[dict]
    run_info: dict
    computed: list[str]
    skipped: list[str]


# ---------------------------------------------------------------------- identity and resume
def checkpoint_identity(path: Path) -> dict:
    path = Path(path).resolve()
    return {"path": str(path), "name": path.name, "bytes": size_bytes(path), "sha256": sha256_file(path)}


def run_identity(dataset: Dataset, settings: EvalSettings) -> dict:
    """The facts a resumed run must share with the first one."""
    described = settings.predictor_settings.describe()
    described.pop("model")  # identified by its hash below
    described.pop("cache_dir", None)  # where timings are remembered changes no output
    return {"version": RECORD_VERSION, "checkpoint": checkpoint_identity(settings.checkpoint),
            "predictor": settings.predictor, "predictor_settings": described, "dataset": dataset.identity,
            "budget": settings.budget.to_dict(), "enforce": settings.enforce, "challenge": settings.challenge}


def _check_run_dir(state: Path, identity: dict) -> None:
    previous = read_json(state / "run.json")
    if previous is None:
        atomic_write_json(state / "run.json", identity)
        return
    differs = [key for key in identity if previous.get(key) != identity[key]]
    if differs:
        raise RunDirError(f"{state.parent} already holds a run with a different {', '.join(differs)}; "
                          "resume it with the same options, or pass a new --out folder")


def _record_path(state: Path, name: str) -> Path:
    return state / "songs" / f"{name}.json"


def _finished_record(state: Path, out_dir: Path, song: Song) -> dict | None:
    """The song's record if it finished and its stems are still exactly what was recorded."""
    record = read_json(_record_path(state, song.name))
    if not record or record.get("status") != STATUS_OK or record.get("version") != RECORD_VERSION:
        return None
    if record.get("input_sha256") != sha256_file(song.source_file):
        return None  # the song itself changed since it was separated
    for source, info in record.get("stems", {}).items():
        path = out_dir / song.name / f"{source}.wav"
        if not path.is_file() or sha256_file(path) != info.get("sha256"):
            return None
    return record if set(record.get("stems", {})) == set(SOURCES) else None


# ---------------------------------------------------------------------- verification
def verify_outputs(mixture: Path, stems: Mapping[str, Path]) -> tuple[list[str], dict[str, dict]]:
    """The grader's checks and ours: every stem exists, matches the mixture's length, channel
    count and rate, and holds only finite samples. Returns (problems, {source: file facts})."""
    import soundfile as sf

    ref = sf.info(str(mixture))
    problems, facts = [], {}
    for source, path in stems.items():
        if not path.is_file():
            problems.append(f"{source}: {path.name} was not written")
            continue
        try:
            info = sf.info(str(path))
        except (RuntimeError, sf.LibsndfileError) as exc:
            problems.append(f"{source}: unreadable ({exc})")
            continue
        if info.frames != ref.frames:
            problems.append(f"{source}: {info.frames} samples, the mixture has {ref.frames}")
        if info.channels != ref.channels:
            problems.append(f"{source}: {info.channels} channel(s), the mixture has {ref.channels}")
        if info.samplerate != ref.samplerate:
            problems.append(f"{source}: {info.samplerate} Hz, the mixture is {ref.samplerate} Hz")
        with sf.SoundFile(str(path)) as f:
            for block in f.blocks(blocksize=1 << 18, dtype="float32", always_2d=True):
                if not np.isfinite(block).all():
                    problems.append(f"{source}: contains NaN or Inf samples")
                    break
        facts[source] = {"frames": int(info.frames), "channels": int(info.channels),
                         "sha256": sha256_file(path)}
    return problems, facts


class _StemFiles(Mapping):
    """{source: (n, ch) float64} read from disk on access, one stem at a time."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __getitem__(self, source: str) -> np.ndarray:
        if source not in SOURCES:
            raise KeyError(source)
        return read_float64(self.folder / f"{source}.wav")

    def __iter__(self) -> Iterator[str]:
        return iter(SOURCES)

    def __len__(self) -> int:
        return len(SOURCES)


# ---------------------------------------------------------------------- the predictor
@contextmanager
def _environment(values: Mapping[str, str | None]) -> Iterator[None]:
    def apply(settings: Mapping[str, str | None]) -> None:
        for key, value in settings.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    saved = {k: os.environ.get(k) for k in values}
    try:
        apply(values)
        yield
    finally:
        apply(saved)


def load_predictor_class(spec: str) -> type:
    """``module:Class`` -> the class (a MusicDemixingPredictor subclass; ``Class`` may name a module
    attribute bound to one, as ``predict:PREDICTOR_CLASS`` does)."""
    module_name, _, class_name = spec.partition(":")
    if not module_name or not class_name:
        raise ValueError(f"--predictor must look like module:Class, got {spec!r}")
    cls = getattr(importlib.import_module(module_name), class_name, None)
    if not isinstance(cls, type) or not issubclass(cls, MusicDemixingPredictor):
        raise ValueError(f"{spec} is not a MusicDemixingPredictor subclass")
    return cls


# ---------------------------------------------------------------------- one song
def _clear_outputs(folder: Path) -> None:
    """Remove stems and temporaries a killed or failed attempt may have left."""
    if not folder.is_dir():
        return
    for source in SOURCES:
        (folder / f"{source}.wav").unlink(missing_ok=True)
        for tmp in folder.glob(f".{source}.wav.tmp-*"):
            tmp.unlink(missing_ok=True)


def _new_record(song: Song, limit: float | None) -> dict:
    return {"version": RECORD_VERSION, "song": song.name, "input_sha256": sha256_file(song.source_file),
            "n_samples": song.n_samples, "duration_s": song.duration_s, "budget_s": limit,
            "status": STATUS_OK, "error": None, "wall_s": 0.0, "rtf": None, "margin_s": None, "miss": False,
            "stages": None, "peak_rss_mib": None, "rss_method": None}


def _run_one(predictor: MusicDemixingPredictor, song: Song, settings: EvalSettings) -> dict:
    out_folder = settings.out_dir / song.name
    _clear_outputs(out_folder)
    limit = settings.budget.limit_for(song.duration_s)
    predictor.test_data_path = str(song.input_root)
    if hasattr(predictor, "last_times"):
        predictor.last_times = {}  # a timed-out song must not inherit the previous song's stages
    if hasattr(predictor, "last_budget_report"):
        predictor.last_budget_report = None
    record = _new_record(song, limit)
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        try:
            # 0 disables the alarm: no budget, or a miss that is flagged rather than stopped.
            alarm = limit if (settings.enforce and limit) else 0
            if get_challenge(settings.challenge).interface == "sdx23-arrays":
                sdx23.run_song(predictor, song.mixture_path, {s: out_folder / f"{s}.wav" for s in SOURCES}, alarm)
            else:
                predictor.run_song(song.name, alarm)
        except TimeoutException as exc:
            record.update(status=STATUS_TIMEOUT, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - a failing song is reported, the run goes on
            record.update(status=STATUS_ERROR, error=f"{type(exc).__name__}: {exc}")
        wall = time.perf_counter() - t0
    stages = dict(getattr(predictor, "last_times", {}) or {})
    if getattr(predictor, "last_budget_report", None):
        record["predictor_budget"] = predictor.last_budget_report  # what its deadline controller did
    record.update(wall_s=wall, rtf=wall / song.duration_s if song.duration_s else None,
                  margin_s=(limit - wall) if limit else None,
                  miss=bool(record["status"] == STATUS_TIMEOUT or (limit is not None and wall > limit)),
                  stages={k: float(v) for k, v in stages.items()} or None,
                  peak_rss_mib=rss.peak_mib, rss_method=rss.method)
    if record["status"] != STATUS_OK:
        return record
    stems = {s: out_folder / f"{s}.wav" for s in SOURCES}
    problems, facts = verify_outputs(song.mixture_path, stems)
    record["stems"] = facts
    if problems:
        record.update(status=STATUS_INVALID, error="; ".join(problems))
    return record


def _score(record: dict, song: Song, settings: EvalSettings) -> None:
    """Add MDX scores (and museval) of a verified song's stems to its record, and the reference
    rows, which depend on the data only and so are computed whatever became of the stems."""
    if not song.has_references:
        record["scores"] = None
        return
    references = song.load_references()
    if settings.oracle and "reference_rows" not in record:
        record["reference_rows"] = reference_scores(song.load_mixture(), references)
    if record["status"] != STATUS_OK:
        return
    estimates = _StemFiles(settings.out_dir / song.name)
    if "scores" not in record:
        record["scores"] = song_scores(references, estimates)
    if settings.museval and "museval" not in record:
        record["museval"] = museval_song(references, {s: estimates[s] for s in SOURCES})


# ---------------------------------------------------------------------- the run
Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclasses.dataclass
class RunState:
    """What a run (sequential or spread over workers) starts from: finished records and the rest."""

    state: Path
    identity: dict
    records: dict[str, dict]
    pending: list[Song]
    skipped: list[str]
    sessions: list[dict]

    def save_record(self, record: dict) -> None:
        """Write one song's record atomically (the only writer of records is the run's own process)."""
        atomic_write_json(_record_path(self.state, record["song"]), record)
        self.records[record["song"]] = record

    def save_session(self, session: dict) -> int:
        self.sessions.append(session)
        atomic_write_json(self.state / "sessions.json", self.sessions)
        return len(self.sessions) - 1

    def result(self, dataset: Dataset) -> RunResult:
        ordered = [self.records[s.name] for s in dataset.songs]
        return RunResult(ordered, self.sessions, self.identity, [s.name for s in self.pending], self.skipped)


def prepare_run(dataset: Dataset, settings: EvalSettings, log: Log = _stderr) -> RunState:
    """Check the run folder, keep what already finished (verified), and list what is left."""
    out_dir = settings.out_dir = Path(settings.out_dir).resolve()
    state = out_dir / STATE_DIR
    (state / "songs").mkdir(parents=True, exist_ok=True)
    identity = run_identity(dataset, settings)
    _check_run_dir(state, identity)

    records: dict[str, dict] = {}
    pending: list[Song] = []
    for song in dataset.songs:
        record = _finished_record(state, out_dir, song)
        if record is not None:
            records[song.name] = record
        else:
            pending.append(song)
    skipped = [name for name in records]
    if skipped:
        log(f"[evaluator] resuming: {len(skipped)} song(s) already finished and verified, "
            f"{len(pending)} to go")

    # Songs already separated may still lack a score asked for now (e.g. --museval added).
    for song in dataset.songs:
        record = records.get(song.name)
        if record and song.has_references and ((settings.museval and "museval" not in record)
                                               or (settings.oracle and "reference_rows" not in record)):
            _with_prepared(song, lambda: _score(record, song, settings))
            atomic_write_json(_record_path(state, song.name), record)
    return RunState(state, identity, records, pending, skipped, read_json(state / "sessions.json") or [])


def run_song(predictor: MusicDemixingPredictor, song: Song, settings: EvalSettings) -> dict:
    """One song through the predictor and the scorer; a song whose input will not load gets an
    error record (the run goes on)."""
    try:
        record = _with_prepared(song, lambda: _run_and_score(predictor, song, settings))
    except (OSError, ValueError, RuntimeError) as exc:  # the input itself would not load
        record = _new_record(song, settings.budget.limit_for(song.duration_s))
        record.update(status=STATUS_ERROR, error=f"{type(exc).__name__}: {exc}")
    return record


def failed_record(song: Song, settings: EvalSettings, error: str) -> dict:
    """The record of a song that could not be separated at all (e.g. its worker died twice)."""
    record = _new_record(song, settings.budget.limit_for(song.duration_s))
    record.update(status=STATUS_ERROR, error=error)
    return record


def evaluate(dataset: Dataset, settings: EvalSettings, log: Log = _stderr) -> RunResult:
    """Run (or resume) an evaluation of ``dataset`` into ``settings.out_dir``, one song after another."""
    run = prepare_run(dataset, settings, log)
    if run.pending:
        with _environment({ENV_RESULTS: str(settings.out_dir)}):
            predictor, session = _setup(settings, log)
            index_of_session = run.save_session(session)
            for index, song in enumerate(run.pending, 1):
                record = run_song(predictor, song, settings)
                record["session"] = index_of_session
                run.save_record(record)
                log(_song_line(index, len(run.pending), record))
    return run.result(dataset)


def _with_prepared(song: Song, work: Callable[[], dict | None]):
    if song.prepare is not None:
        song.prepare()
    try:
        return work()
    finally:
        if song.release is not None:
            song.release()


def _run_and_score(predictor: MusicDemixingPredictor, song: Song, settings: EvalSettings) -> dict:
    record = _run_one(predictor, song, settings)
    _score(record, song, settings)
    record["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return record


def _setup(settings: EvalSettings, log: Log) -> tuple[MusicDemixingPredictor, dict]:
    """Construct the predictor the way the grader does (no arguments) and time its setup."""
    cls = load_predictor_class(settings.predictor)
    predictor = cls(settings.predictor_settings) if issubclass(cls, KitPredictor) else cls()
    predictor.results_data_path = str(settings.out_dir)
    predictor.inference_setup_timeout = settings.setup_timeout_s
    session = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "setup_limit_s": settings.setup_timeout_s}
    with PeakRSS() as rss:
        try:
            setup_s = predictor.run_setup()
        except TimeoutException as exc:
            raise SetupError(f"prediction_setup() ran past the setup timeout of "
                             f"{settings.setup_timeout_s:g} s; the grader would fail the submission") from exc
    session.update(setup_s=setup_s, setup_miss=False, peak_rss_mib=rss.peak_mib)
    if isinstance(predictor, KitPredictor):
        session["predictor"] = predictor.describe()  # which architecture, backend and budget ran
    log(f"[evaluator] setup: {setup_s:.2f} s (limit {settings.setup_timeout_s:g} s)")
    return predictor, session


def _song_line(index: int, total: int, record: dict) -> str:
    budget = f"{record['budget_s']:.1f} s" if record.get("budget_s") else "none"
    line = (f"[{index}/{total}] {record['song']} ({record['duration_s']:.1f} s): wall {record['wall_s']:.1f} s, "
            f"RTF {record['rtf']:.2f}, budget {budget}")
    if record.get("miss"):
        line += "  ** MISSED BUDGET **"
    if record["status"] != STATUS_OK:
        return f"{line}, {record['status'].upper()}: {record['error']}"
    if record.get("scores"):
        line += f", SDR {record['scores']['sdr']:.3f} dB"
    return line

