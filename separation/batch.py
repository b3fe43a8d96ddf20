"""Many files at once: ``predict.py separate A B C ... --workers N``.

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
