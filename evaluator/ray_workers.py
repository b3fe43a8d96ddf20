"""Songs spread over a Ray cluster (``python -m evaluator ... --ray [ADDRESS]``).

The same contract as :mod:`evaluator.workers`, with Ray actors for worker processes: each actor
rebuilds the dataset, sets up the predictor once and separates one song at a time, timing it
itself; the run's own process writes every record. ``--ray auto`` starts a local cluster (this
machine only, shut down at the end); an address (``ray://host:10001`` or ``host:6379``) joins an
existing one, whose nodes must see the run folder and the data at the same paths (shared storage).
An actor that dies mid-song (SIGKILL, out of memory, node lost) costs the song one retry on a new
actor; a song that fails twice is recorded as failed and the run goes on.
"""
from __future__ import annotations

import os

from separation.batch import connect_ray

from .datasets import Dataset
from .harness import ENV_RESULTS, EvalSettings, Log, RunResult, SetupError, _setup, _stderr, prepare_run
from .workers import DatasetSpec, SongQueue, run_marked, where


class _SongWorker:
    """One worker (becomes a Ray actor): setup in the constructor, then :meth:`run` per song."""

    def __init__(self, spec: DatasetSpec, settings: EvalSettings) -> None:
        os.environ[ENV_RESULTS] = str(settings.out_dir)  # this process exists for this run only
        self.settings = settings
        self.songs = {song.name: song for song in spec.load().songs}
        self.predictor, session = _setup(settings, log=lambda message: None)
        session["worker"] = where()
        self._session = session

    def session(self) -> dict:
        return self._session

    def run(self, name: str) -> dict:
        return run_marked(self.predictor, self.songs[name], self.settings)


def evaluate_ray(dataset: Dataset, spec: DatasetSpec, settings: EvalSettings, address: str,
                 n_workers: int | None = None, log: Log = _stderr) -> RunResult:
    """Run (or resume) ``dataset`` on Ray actors; ``address`` ``auto`` starts a local cluster."""
    run = prepare_run(dataset, settings, log)
    if not run.pending:
        return run.result(dataset)
    ray, started_here = connect_ray(address)
    from ray.exceptions import RayActorError, RayTaskError

    threads = settings.predictor_settings.threads or 1
    worker_cls = ray.remote(num_cpus=threads, max_restarts=0)(_SongWorker)
    cluster_cpus = int(ray.cluster_resources().get("CPU", 1))
    n = max(1, min(n_workers or cluster_cpus // threads, len(run.pending)))
    songs = SongQueue(run, settings, log)
    idle: list = []
    sessions: dict = {}  # actor -> session index
    inflight: dict = {}  # object ref -> (actor, song)

    def new_actor():
        actor = worker_cls.remote(spec, settings)
        try:
            sessions[actor] = run.save_session(ray.get(actor.session.remote()))
        except (RayActorError, RayTaskError) as exc:
            raise SetupError(f"a Ray worker failed its setup: {str(exc).splitlines()[0]}") from None
        return actor

    log(f"[evaluator] {len(songs.todo)} song(s) over {n} Ray worker(s) of {threads} thread(s) "
        f"({'a local cluster' if address == 'auto' else address}, {cluster_cpus} CPUs)")
    try:
        idle = [new_actor() for _ in range(n)]
        while songs.todo or inflight:
            while idle and songs.todo:
                actor, name = idle.pop(), songs.take()
                inflight[actor.run.remote(name)] = (actor, name)
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
            for ref in ready:
                actor, name = inflight.pop(ref)
                try:
                    record = ray.get(ref)
                except RayActorError as exc:  # ActorDiedError included
                    songs.lost(name, f"its Ray worker died ({type(exc).__name__})")
                    idle.append(new_actor())
                    continue
                songs.finish(record, sessions[actor])
                idle.append(actor)
    finally:
        for actor in list(sessions):
            ray.kill(actor)
        if started_here:
            ray.shutdown()
    return run.result(dataset)
