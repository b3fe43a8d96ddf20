"""``bash run.sh``: arguments pass through, results land in a timestamped folder and ``latest``,
and without a checkpoint it stops with directions instead of using random weights."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from evaluator.demo import write_demo_set
from tests.helpers import REPO_ROOT


def _run_sh(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """run.sh from another directory: it must find its own repository."""
    return subprocess.run(["bash", str(REPO_ROOT / "run.sh"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_run_sh_passes_arguments_and_links_latest(tmp_path, tiny_ckpt):
    data = tmp_path / "data"
    write_demo_set(data, n_songs=1, seed=4, duration_range_s=(2.0, 2.5))
    results = tmp_path / "results"
    env = dict(os.environ, MDX_RESULTS_DIR=str(results))
    done = _run_sh("--data", str(data), "--checkpoint", str(tiny_ckpt), "--threads", "1", "--quiet",
                   env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    latest = results / "latest"
    assert latest.is_symlink() and (latest / "report.md").is_file()
    run_dir = latest.resolve()
    assert run_dir.parent == results.resolve() and run_dir.name[:8].isdigit()
    assert "| synthetic-00 |" in done.stdout and str(run_dir / "report.md") in done.stdout
    scores = json.loads((latest / "scores.json").read_text())
    assert list(scores["songs"]) == ["synthetic-00"]


def test_run_sh_without_a_checkpoint_explains_how_to_get_one(tmp_path):
    results = tmp_path / "results"
    env = dict(os.environ, MDX_RESULTS_DIR=str(results), MDX_MODEL=str(tmp_path / "no-such-model.ckpt"))
    done = _run_sh(env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert "--checkpoint" in done.stderr and "random weights" in done.stderr
    assert not results.exists() or not any(results.iterdir())
