"""kill -9 in the middle of a run, the same command again: finished songs are skipped, and the
final scores equal those of an uninterrupted run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from evaluator.demo import write_demo_set
from core.constants import SOURCES
from separation.predictor import KitPredictor
from tests.helpers import REPO_ROOT

#: While set, the predictor below stalls after writing every song but the first, so that the
#: test can kill the run at a known point: song 2's stems on disk, its record not yet written.
STALL_ENV = "MDX_TEST_STALL_DIR"


class StallingPredictor(KitPredictor):
    def prediction(self, mixture_file_path, bass_file_path, drums_file_path, other_file_path, vocals_file_path):
        super().prediction(mixture_file_path, bass_file_path, drums_file_path, other_file_path, vocals_file_path)
        stall = os.getenv(STALL_ENV)
        if stall and "synthetic-00" not in mixture_file_path:
            Path(stall, "stalled").touch()
            time.sleep(120)


def _command(data: Path, ckpt: Path, out: Path) -> list[str]:
    # --plain: the resumed and the straight run are compared score for score, so no timing-driven extras.
    return [sys.executable, "-m", "evaluator", "--data", str(data), "--checkpoint", str(ckpt), "--out", str(out),
            "--threads", "1", "--quiet", "--plain", "--predictor", "tests.test_evaluator_resume:StallingPredictor"]


def _env(stall: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != STALL_ENV}
    env["PYTHONPATH"] = str(REPO_ROOT)
    if stall is not None:
        env[STALL_ENV] = str(stall)
    return env


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"evaluator exited early ({proc.returncode}): {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {path}")
        time.sleep(0.05)


def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path, tiny_ckpt):
    data = tmp_path / "data"
    write_demo_set(data, n_songs=3, seed=9, duration_range_s=(2.0, 3.0))
    out = tmp_path / "run"
    stall = tmp_path / "stall"
    stall.mkdir()

    proc = subprocess.Popen(_command(data, tiny_ckpt, out), cwd=REPO_ROOT, env=_env(stall),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(stall / "stalled", proc)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    records = out / ".state" / "songs"
    assert (records / "synthetic-00.json").is_file()
    assert not (records / "synthetic-01.json").exists()
    assert (out / "synthetic-01" / "vocals.wav").is_file()  # written, but never recorded as finished
    first_song = out / "synthetic-00" / "vocals.wav"
    first_stat = first_song.stat()

    resumed = subprocess.run(_command(data, tiny_ckpt, out), cwd=REPO_ROOT, env=_env(),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming: 1 song(s) already finished" in resumed.stderr
    assert "synthetic-00 (" not in resumed.stderr  # not recomputed ...
    assert first_song.stat().st_mtime_ns == first_stat.st_mtime_ns  # ... nor rewritten
    assert first_song.stat().st_ino == first_stat.st_ino
    assert "[1/2] synthetic-01" in resumed.stderr and "[2/2] synthetic-02" in resumed.stderr
    assert len(json.loads((out / ".state" / "sessions.json").read_text())) == 2

    clean = tmp_path / "clean"
    straight = subprocess.run(_command(data, tiny_ckpt, clean), cwd=REPO_ROOT, env=_env(),
                              capture_output=True, text=True, timeout=300)
    assert straight.returncode == 0, straight.stderr
    got, want = (json.loads((d / "scores.json").read_text()) for d in (out, clean))
    assert got["songs"] == want["songs"] and got["mean"] == want["mean"]
    assert got["reference_rows"] == want["reference_rows"]
    for song in want["songs"]:
        for s in SOURCES:
            a, b = (sf.read(d / song / f"{s}.wav", dtype="float32")[0] for d in (out, clean))
            assert np.array_equal(a, b), (song, s)
    latency = json.loads((out / "latency.json").read_text())
    assert set(latency["songs"]) == set(want["songs"]) and latency["summary"]["n_missed"] == 0
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
