"""Songs spread over local worker processes (``python -m evaluator ... --workers N``).

Each worker is a fresh process (``spawn``): it rebuilds the dataset from a :class:`DatasetSpec`,
sets up the predictor once (its own setup, timed), then separates and scores one song at a time,
timing the song inside itself as the grader would. Only the run's own process writes records, so
a song is recorded once. A worker that dies mid-song (SIGKILL, out of memory) costs that song one
retry on another worker; a song whose worker dies twice is recorded as failed with the reason,
and the run goes on. Ctrl-C stops the workers; finished songs stay recorded and a rerun resumes.
"""
from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import queue
import signal
import socket
import time
from collections import deque
from pathlib import Path
from typing import Any

from .datasets import Dataset
from .harness import (ENV_RESULTS, EvalSettings, Log, RunResult, SetupError, _environment, _setup, _song_line,
                      _stderr, failed_record, prepare_run, run_song)

#: A song is tried at most this often (a first run and one retry after its worker died).
MAX_ATTEMPTS = 2
#: Workers that may die during setup before the run gives up.
MAX_SETUP_FAILURES = 3
#: Under the run folder: one empty file ``<song>.<pid>`` per song being separated right now.
RUNNING_DIR = ".state/running"


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """How a worker rebuilds the run's dataset (the dataset itself holds callables: not picklable)."""

    kind: str  # data | musdb | stempeg | demo
    path: str | None
    scratch: str
    subset: str = "test"
    is_wav: bool = False
    songs: tuple[str, ...] | None = None

    def load(self) -> Dataset:
        from . import datasets

        songs = list(self.songs) if self.songs else None
        if self.kind == "data":
            return datasets.mdx_folder(self.path, songs)
        if self.kind == "musdb":
            return datasets.musdb_set(self.path, Path(self.scratch), self.subset, self.is_wav, songs)
        if self.kind == "stempeg":
            return datasets.stempeg_excerpt(Path(self.scratch))
        return datasets.demo(self.path, songs)


def where() -> str:
    """host:pid of this process (the report says where each song ran)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def run_marked(predictor, song, settings: EvalSettings) -> dict:
    """One song in a worker: ``RUNNING_DIR/<song>.<pid>`` exists while it runs, and its record says
    where it ran."""
    running = Path(settings.out_dir) / RUNNING_DIR
    running.mkdir(parents=True, exist_ok=True)
    marker = running / f"{song.name}.{os.getpid()}"
    marker.touch()
    try:
        record = run_song(predictor, song, settings)
    finally:
        marker.unlink(missing_ok=True)
    record["worker"] = where()
    return record


class SongQueue:
    """The songs a spread run has left, how often each was handed out, and how each ended: every
    record goes through the run (so each song is recorded once); a song whose worker died goes back
    to the front once, and is recorded as failed the second time."""

    def __init__(self, run, settings: EvalSettings, log: Log) -> None:
        self.run, self.settings, self.log = run, settings, log
        self.songs = {song.name: song for song in run.pending}
        self.todo = deque(self.songs)
        self.attempts = {name: 0 for name in self.songs}
        self.finished = 0

    def take(self) -> str:
        name = self.todo.popleft()
        self.attempts[name] += 1
        return name

    def finish(self, record: dict, session: int | None) -> None:
        record.update(session=session, attempts=self.attempts[record["song"]])
        self._save(record, f"  [{record['worker']}]")

    def lost(self, name: str, why: str) -> None:
        """The worker running ``name`` died."""
        for marker in (Path(self.settings.out_dir) / RUNNING_DIR).glob(f"{name}.*"):
            marker.unlink(missing_ok=True)  # it runs no longer
        if self.attempts[name] < MAX_ATTEMPTS:
            self.log(f"[evaluator] {name}: {why}; retrying on another worker")
            self.todo.appendleft(name)
            return
        record = failed_record(self.songs[name], self.settings, f"{why}, {self.attempts[name]} times")
        record["attempts"] = self.attempts[name]
        self._save(record, "")

    def _save(self, record: dict, where_note: str) -> None:
        self.run.save_record(record)
        self.finished += 1
        self.log(_song_line(self.finished, len(self.songs), record) + where_note)


def _worker(spec: DatasetSpec, settings: EvalSettings, worker_id: int, inbox, outbox) -> None:
    """A worker process: set up once, then one song at a time until told to stop (None)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the run's own process decides when to stop
    songs = {song.name: song for song in spec.load().songs}
    with _environment({ENV_RESULTS: str(settings.out_dir)}):
        try:
            predictor, session = _setup(settings, log=lambda message: None)
        except SetupError as exc:
            outbox.put(("setup_failed", worker_id, str(exc)))
            return
        session["worker"] = where()
        outbox.put(("ready", worker_id, session))
        while (name := inbox.get()) is not None:
            outbox.put(("done", worker_id, run_marked(predictor, songs[name], settings)))


@dataclasses.dataclass
class _Slot:
    process: Any
    inbox: Any
    song: str | None = None
    ready: bool = False
    session: int | None = None


def evaluate_parallel(dataset: Dataset, spec: DatasetSpec, settings: EvalSettings, n_workers: int,
                      log: Log = _stderr) -> RunResult:
    """Run (or resume) ``dataset`` over ``n_workers`` local processes; same records as :func:`evaluate`."""
    run = prepare_run(dataset, settings, log)
    songs = SongQueue(run, settings, log)
    ctx = mp.get_context("spawn")
    outbox = ctx.Queue()
    slots: dict[int, _Slot] = {}
    next_id = 0
    setup_failures = 0

    def start() -> None:
        nonlocal next_id
        inbox = ctx.Queue()
        process = ctx.Process(target=_worker, args=(spec, settings, next_id, inbox, outbox), daemon=True,
                              name=f"mdx-worker-{next_id}")
        process.start()
        slots[next_id] = _Slot(process, inbox)
        next_id += 1

    for _ in range(min(n_workers, len(songs.todo))):
        start()
    log(f"[evaluator] {len(songs.todo)} song(s) over {len(slots)} worker process(es)")
    try:
        while songs.todo or any(slot.song for slot in slots.values()):
            for slot in slots.values():  # hand out songs to idle, set-up workers
                if slot.ready and slot.song is None and songs.todo:
                    slot.song = songs.take()
                    slot.inbox.put(slot.song)
            messages = []
            try:  # everything already sent, so that a worker's last result counts before its death
                messages.append(outbox.get(timeout=0.2))
                while True:
                    messages.append(outbox.get_nowait())
            except queue.Empty:
                pass
            for message in messages:
                kind, worker_id = message[0], message[1]
                slot = slots.get(worker_id)
                if kind == "ready" and slot is not None:
                    slot.ready = True
                    slot.session = run.save_session(message[2])
                elif kind == "setup_failed":
                    raise SetupError(message[2])
                elif kind == "done" and slot is not None:
                    songs.finish(message[2], slot.session)
                    slot.song = None
            for worker_id, slot in list(slots.items()):  # a worker that died: retry its song elsewhere
                if slot.process.is_alive() or slot.process.exitcode is None:
                    continue
                del slots[worker_id]
                if not slot.ready:
                    setup_failures += 1
                    if setup_failures >= MAX_SETUP_FAILURES:
                        raise SetupError(f"{setup_failures} worker processes died during setup "
                                         f"(last exit code {slot.process.exitcode})")
                if slot.song is not None:
                    songs.lost(slot.song, f"its worker process died (exit code {slot.process.exitcode})")
                if songs.todo and len(slots) < n_workers:
                    start()
    finally:
        _stop(slots)
    return run.result(dataset)


def _stop(slots: dict[int, _Slot], grace_s: float = 10.0) -> None:
    """Ask every worker to finish, then make sure none is left behind."""
    for slot in slots.values():
        if slot.process.is_alive() and slot.song is None:
            slot.inbox.put(None)
    deadline = time.monotonic() + grace_s
    for slot in slots.values():
        slot.process.join(timeout=max(0.0, deadline - time.monotonic()) if slot.song is None else 0)
        if slot.process.is_alive():
            slot.process.kill()
            slot.process.join()
