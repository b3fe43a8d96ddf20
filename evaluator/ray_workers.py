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
from pathlib import Path

from .datasets import Dataset
from .harness import ENV_RESULTS, EvalSettings, Log, RunResult, SetupError, _setup, _song_line, _stderr, \
    failed_record, prepare_run, run_song
from .workers import MAX_ATTEMPTS, RUNNING_DIR, DatasetSpec, where


_REPO_ROOT = Path(__file__).resolve().parents[1]


class _SongWorker:
    """One worker (becomes a Ray actor): setup in the constructor, then :meth:`run` per song."""

    def __init__(self, spec: DatasetSpec, settings: EvalSettings) -> None:
        os.environ[ENV_RESULTS] = str(settings.out_dir)  # this process exists for this run only
        self.settings = settings
        self.songs = {song.name: song for song in spec.load().songs}
        self.predictor, session = _setup(settings, log=lambda message: None)
        session["worker"] = where()
        self._session = session
        self.running = Path(settings.out_dir) / RUNNING_DIR
        self.running.mkdir(parents=True, exist_ok=True)

    def session(self) -> dict:
        return self._session

    def run(self, name: str) -> dict:
        marker = self.running / f"{name}.{os.getpid()}"
        marker.touch()
        try:
            record = run_song(self.predictor, self.songs[name], self.settings)
        finally:
            marker.unlink(missing_ok=True)
        record["worker"] = where()
        return record


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ValueError("--ray needs the `ray` package (pip install -r requirements.txt)") from None
    return ray


def evaluate_ray(dataset: Dataset, spec: DatasetSpec, settings: EvalSettings, address: str,
                 n_workers: int | None = None, log: Log = _stderr) -> RunResult:
    """Run (or resume) ``dataset`` on Ray actors; ``address`` ``auto`` starts a local cluster."""
    ray = _import_ray()
    from ray.exceptions import ActorDiedError, RayActorError, RayTaskError

    from separation.backends import available_cpus

    run = prepare_run(dataset, settings, log)
    if not run.pending:
        return run.result(dataset)
    threads = settings.predictor_settings.threads or 1
    started_here = not ray.is_initialized()
    if started_here:
        if address == "auto":  # workers import the kit from this checkout
            ray.init(num_cpus=available_cpus(), include_dashboard=False, log_to_driver=False,
                     _node_ip_address="127.0.0.1", runtime_env={"env_vars": {"PYTHONPATH": str(_REPO_ROOT)}})
        else:
            ray.init(address=address, log_to_driver=False)
    worker_cls = ray.remote(num_cpus=threads, max_restarts=0)(_SongWorker)
    cluster_cpus = int(ray.cluster_resources().get("CPU", 1))
    n = max(1, min(n_workers or cluster_cpus // threads, len(run.pending)))
    songs = {song.name: song for song in run.pending}
    todo = list(songs)
    attempts = {name: 0 for name in songs}
    idle: list = []
    sessions: dict = {}  # actor -> session index
    inflight: dict = {}  # object ref -> (actor, song)
    finished = 0

    def new_actor():
        actor = worker_cls.remote(spec, settings)
        try:
            sessions[actor] = run.save_session(ray.get(actor.session.remote()))
        except (RayActorError, RayTaskError) as exc:
            raise SetupError(f"a Ray worker failed its setup: {str(exc).splitlines()[0]}") from None
        return actor

    log(f"[evaluator] {len(todo)} song(s) over {n} Ray worker(s) of {threads} thread(s) "
        f"({'a local cluster' if address == 'auto' else address}, {cluster_cpus} CPUs)")
    try:
        idle = [new_actor() for _ in range(n)]
        while todo or inflight:
            while idle and todo:
                actor, name = idle.pop(), todo.pop(0)
                attempts[name] += 1
                inflight[actor.run.remote(name)] = (actor, name)
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
            for ref in ready:
                actor, name = inflight.pop(ref)
                try:
                    record = ray.get(ref)
                except (ActorDiedError, RayActorError) as exc:
                    for marker in (Path(settings.out_dir) / RUNNING_DIR).glob(f"{name}.*"):
                        marker.unlink(missing_ok=True)
                    why = f"its Ray worker died ({type(exc).__name__})"
                    if attempts[name] < MAX_ATTEMPTS:
                        log(f"[evaluator] {name}: {why}; retrying on a new worker")
                        todo.insert(0, name)
                    else:
                        record = failed_record(songs[name], settings, f"{why}, {attempts[name]} times")
                        record["attempts"] = attempts[name]
                        run.save_record(record)
                        finished += 1
                        log(_song_line(finished, len(songs), record))
                    idle.append(new_actor())
                    continue
                record.update(session=sessions[actor], attempts=attempts[name])
                run.save_record(record)
                finished += 1
                log(_song_line(finished, len(songs), record) + f"  [{record['worker']}]")
                idle.append(actor)
    finally:
        for actor in list(sessions):
            ray.kill(actor)
        if started_here:
            ray.shutdown()
    return run.result(dataset)
