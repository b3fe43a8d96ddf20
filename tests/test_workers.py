"""--workers: songs over local worker processes, the same scores as one process, and a worker
killed with SIGKILL mid-song costs its song one retry, nothing else."""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from evaluator.cli import main as evaluator_main
from evaluator.demo import write_demo_set
from evaluator.workers import RUNNING_DIR


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_demo_set(root, n_songs=4, seed=9, duration_range_s=(6.0, 8.0))
    return root


def _run(data_dir, ckpt, out, *extra) -> int:
    return evaluator_main(["--data", str(data_dir), "--checkpoint", str(ckpt), "--out", str(out), "--plain",
                           "--threads", "1", "--quiet", "--no-oracle", *extra])


def _kill_one_worker_mid_song(out: Path, timeout_s: float = 180) -> tuple[threading.Thread, list[str]]:
    """A thread that SIGKILLs the first worker it sees separating a song (by the run's running
    markers); the list receives that song's name."""
    killed: list[str] = []

    def watch() -> None:
        running = out / RUNNING_DIR
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for marker in running.glob("*.*") if running.is_dir() else []:
                song, pid = marker.name.rsplit(".", 1)
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    continue
                killed.append(song)
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher, killed


def _songs(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (out / ".state" / "songs").glob("*.json")}


def test_two_workers_score_like_one_process(data_dir, tiny_ckpt_module, tmp_path):
    assert _run(data_dir, tiny_ckpt_module, tmp_path / "one") == 0
    assert _run(data_dir, tiny_ckpt_module, tmp_path / "two", "--workers", "2") == 0
    one = json.loads((tmp_path / "one" / "scores.json").read_text())["songs"]
    two = json.loads((tmp_path / "two" / "scores.json").read_text())["songs"]
    assert two == one and len(two) == 4  # identical scores, every song once
    records = _songs(tmp_path / "two")
    assert all(r["worker"].split(":")[1] != str(os.getpid()) for r in records.values())  # ran in workers
    assert len(json.loads((tmp_path / "two" / ".state" / "sessions.json").read_text())) == 2  # a setup each
    assert "ran on (tries)" in (tmp_path / "two" / "report.md").read_text()
    assert not multiprocessing.active_children()


def test_a_worker_killed_mid_song_costs_one_retry(data_dir, tiny_ckpt_module, tmp_path):
    out = tmp_path / "run"
    watcher, killed = _kill_one_worker_mid_song(out)
    assert _run(data_dir, tiny_ckpt_module, out, "--workers", "2") == 0
    watcher.join()
    assert killed, "no song was caught mid-run"
    records = _songs(out)
    assert len(records) == 4 and all(r["status"] == "ok" for r in records.values())
    assert records[killed[0]]["attempts"] == 2
    assert sorted(r["attempts"] for r in records.values()) == [1, 1, 1, 2]
    scores = json.loads((out / "scores.json").read_text())
    assert sorted(scores["songs"]) == sorted(records)  # each song scored once
    assert not list((out / RUNNING_DIR).iterdir())  # nothing is said to be running any more
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    assert not multiprocessing.active_children()


# ---------------------------------------------------------------------- Ray
def _ray_processes() -> int:
    """Ray's daemons running on this machine (read from /proc: no `ps` needed)."""
    count = 0
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ")
        except OSError:  # the process ended meanwhile
            continue
        count += b"raylet" in text or b"gcs_server" in text
    return count


@pytest.fixture()
def no_ray_left():
    """Ray must be installed on CI (requirements.txt); elsewhere its absence skips. Afterwards no
    Ray process may be left behind."""
    if os.getenv("CI") != "true":
        pytest.importorskip("ray")
    before = _ray_processes()
    yield
    deadline = time.monotonic() + 30
    while _ray_processes() > before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _ray_processes() <= before, "a Ray process was left behind"


def test_ray_auto_scores_like_one_process_and_survives_a_sigkill(data_dir, tiny_ckpt_module, tmp_path, no_ray_left):
    assert _run(data_dir, tiny_ckpt_module, tmp_path / "one") == 0
    out = tmp_path / "ray"
    watcher, killed = _kill_one_worker_mid_song(out)
    assert _run(data_dir, tiny_ckpt_module, out, "--ray", "auto", "--workers", "2") == 0
    watcher.join()
    assert killed
    one = json.loads((tmp_path / "one" / "scores.json").read_text())["songs"]
    assert json.loads((out / "scores.json").read_text())["songs"] == one  # identical, every song once
    records = _songs(out)
    assert records[killed[0]]["attempts"] == 2 and sorted(r["attempts"] for r in records.values()) == [1, 1, 1, 2]
    assert not list((out / RUNNING_DIR).iterdir())


# ---------------------------------------------------------------------- predict.py separate
def test_separate_a_folder_over_workers_writes_what_one_process_writes(data_dir, tiny_ckpt_module, tmp_path):
    import subprocess
    import sys

    import numpy as np
    import soundfile as sf

    from core.constants import SOURCES
    from tests.helpers import REPO_ROOT

    outs = {}
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}"
        res = subprocess.run([sys.executable, "predict.py", "separate", str(data_dir), "--checkpoint",
                              str(tiny_ckpt_module), "--out", str(out), "--threads", "1", "--workers", workers],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr
        outs[workers] = out
    assert "4 of 4 file(s) separated" in res.stderr and "4 files, 2 workers" in res.stderr  # one bar for all
    songs = sorted(p.name for p in data_dir.iterdir() if (p / "mixture.wav").is_file())
    assert sorted(p.name for p in outs["2"].iterdir()) == songs
    for song in songs:
        for source in SOURCES:
            a = sf.read(outs["1"] / song / f"{source}.wav", dtype="float32")[0]
            b = sf.read(outs["2"] / song / f"{source}.wav", dtype="float32")[0]
            assert np.array_equal(a, b), (song, source)


def test_separate_over_a_local_ray_cluster(data_dir, tiny_ckpt_module, tmp_path, no_ray_left):
    import subprocess
    import sys

    from tests.helpers import REPO_ROOT

    out = tmp_path / "ray"
    res = subprocess.run([sys.executable, "predict.py", "separate", str(data_dir), "--checkpoint",
                          str(tiny_ckpt_module), "--out", str(out), "--threads", "1", "--ray"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "4 of 4 file(s) separated" in res.stderr and "4 files, Ray auto" in res.stderr
    assert all(len(list(song.glob("*.wav"))) == 4 for song in out.iterdir()) and len(list(out.iterdir())) == 4


def test_several_models_and_budget_rules_in_one_run_over_workers(data_dir, tiny_ckpt_module, tmp_path):
    out = tmp_path / "cmp"
    assert evaluator_main(["--data", str(data_dir), "--songs", "synthetic-00,synthetic-01", "--checkpoint",
                           str(tiny_ckpt_module), "--budget-rule", "round1", "--budget-rule", "round2", "--out",
                           str(out), "--threads", "1", "--quiet", "--no-oracle", "--workers", "2"]) == 0
    rows = {r["label"]: r for r in json.loads((out / "comparison.json").read_text())["models"]}
    assert set(rows) == {"tiny@round1", "tiny@round2"}
    assert rows["tiny@round1"]["budget"].startswith("round1") and rows["tiny@round2"]["budget"].startswith("round2")
    for label in rows:
        latency = json.loads((out / label / "latency.json").read_text())
        assert latency["budget"]["name"] == label.split("@")[1]
        assert all(r["worker"] for r in _songs(out / label).values())  # spread over the workers
