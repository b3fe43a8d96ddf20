"""Many files at once: ``predict.py separate A B C ... --workers N`` (local processes) or ``--ray``.

Each of N spawned worker processes builds one :class:`KitPredictor` (the model loaded once) and
separates whole files, one at a time; the caller sees one result per file as it finishes. A worker
that dies (SIGKILL, out of memory) breaks the pool: the files not finished yet get one more try in
a fresh pool, and a file that fails then is reported as failed; stems are written atomically, so a
killed file leaves nothing behind.
"""
from __future__ import annotations

import multiprocessing as mp
import signal
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Iterator, Mapping

from .settings import PredictorSettings

_PREDICTOR = None  # one per worker process


def _init_worker(settings: PredictorSettings) -> None:
    global _PREDICTOR
    from .predictor import KitPredictor

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    _PREDICTOR = KitPredictor(settings.replace(progress=False))
    _PREDICTOR.prediction_setup()


def _separate(mixture: str, paths: Mapping[str, str]) -> dict:
    _PREDICTOR.prediction(mixture, **{f"{s}_file_path": p for s, p in paths.items()})
    return {"budget": _PREDICTOR.last_budget_report, "clipped": _PREDICTOR.last_clipped}


def separate_many(settings: PredictorSettings, jobs: Mapping[str, Mapping[str, str]],
                  workers: int) -> Iterator[tuple[str, dict | None, BaseException | None]]:
    """Yield ``(mixture, info, error)`` per file as they finish (``error`` None on success)."""
    pending = dict(jobs)
    for attempt in (1, 2):
        broke = False
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(pending)), mp_context=ctx,
                                 initializer=_init_worker, initargs=(settings,)) as pool:
            futures = {pool.submit(_separate, m, dict(p)): m for m, p in pending.items()}
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for future in done:
                    mixture = futures.pop(future)
                    try:
                        info = future.result()
                    except BrokenProcessPool as exc:
                        broke = True
                        if attempt == 2:
                            pending.pop(mixture)
                            yield mixture, None, RuntimeError(f"its worker process died twice ({exc})")
                        continue
                    except Exception as exc:  # noqa: BLE001 - reported per file, the batch goes on
                        pending.pop(mixture)
                        yield mixture, None, exc
                        continue
                    pending.pop(mixture)
                    yield mixture, info, None
        if not broke or not pending:
            return


_REPO_ROOT = Path(__file__).resolve().parents[1]


def connect_ray(address: str):
    """``(ray, started_here)``: a local cluster on 127.0.0.1 for ``auto`` (its workers import the kit
    from this checkout), else the cluster at ``address``; nothing new when Ray already runs here."""
    try:
        import ray
    except ImportError:
        raise ValueError("--ray needs the `ray` package (pip install -r requirements.txt)") from None
    if ray.is_initialized():
        return ray, False
    if address == "auto":
        from .backends import available_cpus

        ray.init(num_cpus=available_cpus(), include_dashboard=False, log_to_driver=False,
                 _node_ip_address="127.0.0.1", runtime_env={"env_vars": {"PYTHONPATH": str(_REPO_ROOT)}})
    else:
        ray.init(address=address, log_to_driver=False)
    return ray, True


class _RayWorker:
    """A Ray actor holding one predictor (the model loaded once)."""

    def __init__(self, settings: PredictorSettings) -> None:
        _init_worker(settings)

    def separate(self, mixture: str, paths: Mapping[str, str]) -> dict:
        return _separate(mixture, paths)


def separate_many_ray(settings: PredictorSettings, jobs: Mapping[str, Mapping[str, str]], address: str,
                      workers: int | None = None) -> Iterator[tuple[str, dict | None, BaseException | None]]:
    """:func:`separate_many` on Ray actors (``address`` ``auto``: a local cluster, shut down after)."""
    ray, started_here = connect_ray(address)
    from ray.exceptions import RayActorError, RayTaskError

    threads = settings.threads or 1
    actor_cls = ray.remote(num_cpus=threads, max_restarts=0)(_RayWorker)
    n = max(1, min(workers or int(ray.cluster_resources().get("CPU", 1)) // threads, len(jobs)))
    actors = [actor_cls.remote(settings) for _ in range(n)]
    todo = list(jobs)
    tries = {m: 0 for m in jobs}
    inflight: dict = {}
    try:
        while todo or inflight:
            busy = {actor for actor, _ in inflight.values()}
            for actor in [a for a in actors if a not in busy]:
                if not todo:
                    break
                mixture = todo.pop(0)
                tries[mixture] += 1
                inflight[actor.separate.remote(mixture, dict(jobs[mixture]))] = (actor, mixture)
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
            for ref in ready:
                actor, mixture = inflight.pop(ref)
                try:
                    yield mixture, ray.get(ref), None
                except RayActorError as exc:  # the actor died: one more try on a new one
                    actors.remove(actor)
                    actors.append(actor_cls.remote(settings))
                    if tries[mixture] < 2:
                        todo.insert(0, mixture)
                    else:
                        yield mixture, None, RuntimeError(f"its Ray worker died twice ({type(exc).__name__})")
                except RayTaskError as exc:  # the file's own error, raised in the actor
                    yield mixture, None, exc.as_instanceof_cause()
    finally:
        for actor in actors:
            ray.kill(actor)
        if started_here:
            ray.shutdown()
