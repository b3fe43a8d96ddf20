"""`bash submit.sh` end to end: a fresh clone of the kit, a local bare repository as remote `aicrowd`.

The kit under test is this working tree (tracked and new files alike) committed into a temporary
repository, with a tiny random checkpoint in the default model's place. Each test clones it afresh
and checks what did (or did not) arrive in the bare remote.
"""
from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import predict
from separation.budget import BudgetRule
from separation.challenges import CHALLENGES, get_challenge
from submission import aicrowd_cli, checks, gitops, smoke
from tests.helpers import REPO_ROOT

TAG = "submission-v0.1"
MODEL_REL = predict.DEFAULT_MODEL.relative_to(REPO_ROOT).as_posix()
#: Files bigger than this are not copied into the test kit (recordings, exports, checkpoints).
_MAX_COPY_BYTES = 1 << 20


@functools.lru_cache(maxsize=1)
def _python_only_bin() -> str:
    """A folder whose only command is `python`, running this test's interpreter (its virtualenv's
    bin folder also holds the real `aicrowd`, which most tests must not find)."""
    folder = Path(tempfile.mkdtemp(prefix="mdxkit-python-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    for name in ("python", "python3"):
        (folder / name).write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        (folder / name).chmod(0o755)
    return str(folder)


def _path_without_aicrowd() -> str:
    """This Python first, then PATH minus any folder holding an `aicrowd` command."""
    own = str(Path(sys.executable).parent)
    rest = [d for d in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
            if d and d != own and not (Path(d) / "aicrowd").exists()]
    return os.pathsep.join([_python_only_bin(), *dict.fromkeys(rest)])


def git_env(**extra: str) -> dict[str, str]:
    """A hermetic environment: no global/system git config, a fixed identity, this test's Python."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "MDX_", "AICROWD_"))}
    env.update(GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0",
               GIT_AUTHOR_NAME="Tester", GIT_AUTHOR_EMAIL="tester@example.org",
               GIT_COMMITTER_NAME="Tester", GIT_COMMITTER_EMAIL="tester@example.org",
               VIRTUAL_ENV=sys.prefix, PATH=_path_without_aicrowd(),
               MDX_SMOKE_SECONDS="2", MDX_THREADS="1")
    env.update(extra)
    return env


def git(repo: Path, *args: str, **kw) -> str:
    return subprocess.run(["git", *args], cwd=repo, env=git_env(), capture_output=True, text=True,
                          check=True, **kw).stdout


def _kit_files() -> list[str]:
    """This working tree as a commit would see it: tracked plus new, not ignored, files."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                         capture_output=True, text=True, check=True).stdout
    files = []
    for rel in sorted(set(filter(None, out.split("\0")))):
        path = REPO_ROOT / rel
        if (path.is_file() and not path.is_symlink() and not rel.lower().endswith(checks.ARTIFACT_SUFFIXES)
                and path.stat().st_size <= _MAX_COPY_BYTES):
            files.append(rel)
    return files


@pytest.fixture(scope="module")
def kit_origin(tmp_path_factory) -> Path:
    """A committed copy of the kit with a small random LightSAFT, exported, as its default model."""
    from export.exporters import export_onnx
    from models.checkpoint import load_checkpoint, save_lightning_checkpoint
    from tests.helpers import random_network

    origin = tmp_path_factory.mktemp("kit") / "origin"
    for rel in _kit_files():
        (origin / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, origin / rel)
    (origin / MODEL_REL).parent.mkdir(parents=True, exist_ok=True)
    source = tmp_path_factory.mktemp("source") / "random.ckpt"
    save_lightning_checkpoint(source, random_network())
    export_onnx(load_checkpoint(source), origin / MODEL_REL)
    git(origin, "init", "-q", "-b", "main")
    git(origin, "add", "-A")
    git(origin, "commit", "-q", "-m", "kit")
    return origin


@pytest.fixture()
def kit(kit_origin, tmp_path) -> Path:
    """A fresh clone of the kit with an empty bare repository as remote `aicrowd`."""
    clone, remote = tmp_path / "kit", tmp_path / "aicrowd.git"
    git(tmp_path, "clone", "-q", str(kit_origin), str(clone))
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(clone, "remote", "add", "aicrowd", str(remote))
    return clone


def submit(repo: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "submit.sh", *args], cwd=repo, env=git_env(**env), capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)


def remote_refs(repo: Path) -> dict[str, str]:
    out = git(repo, "--git-dir", str(repo.parent / "aicrowd.git"), "for-each-ref", "--format=%(refname) %(objectname)")
    return dict(line.split() for line in out.splitlines())


def commit_all(repo: Path, message: str = "change") -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def assert_refused(proc: subprocess.CompletedProcess[str], repo: Path, *phrases: str) -> None:
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    for phrase in phrases:
        assert phrase in output, f"{phrase!r} not in:\n{output}"
    assert "nothing was tagged or pushed" in output
    assert remote_refs(repo) == {}, "nothing may reach the remote"
    assert not gitops.local_tag_exists(repo, TAG)


# ---------------------------------------------------------------------- the happy path
def test_submit_pushes_branch_and_tag_after_preflight(kit):
    # Local datasets and results lie around (ignored); they must never travel.
    for rel in ("data/test/song/mixture.wav", "results/latest/report.json"):
        (kit / rel).parent.mkdir(parents=True, exist_ok=True)
        (kit / rel).write_bytes(b"local only")
    head = git(kit, "rev-parse", "HEAD").strip()

    proc = submit(kit, "v0.1")

    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "FAIL" not in output
    assert "ok    smoke prediction: 2.0 s song separated in" in output
    refs = remote_refs(kit)
    assert refs["refs/heads/main"] == head
    remote_git = ["--git-dir", str(kit.parent / "aicrowd.git")]
    assert git(kit, *remote_git, "rev-parse", f"{TAG}^{{commit}}").strip() == head
    assert git(kit, *remote_git, "cat-file", "-t", TAG).strip() == "tag"  # annotated
    pushed = git(kit, *remote_git, "ls-tree", "-r", "--name-only", TAG).splitlines()
    assert MODEL_REL in pushed and "run.sh" in pushed and "aicrowd.json" in pushed
    assert not [p for p in pushed if p.startswith(("data/", "results/"))]
    model_blob = subprocess.run(["git", *remote_git, "cat-file", "blob", f"{TAG}:{MODEL_REL}"], env=git_env(),
                                capture_output=True, check=True).stdout
    assert model_blob == (kit / MODEL_REL).read_bytes()
    assert not model_blob.startswith(checks.LFS_POINTER_PREFIX)

    # The same version again: refused, and the remote's tag stays where it was.
    again = submit(kit, "v0.1")
    assert again.returncode == 1 and f"tag {TAG} already exists here" in again.stderr
    assert remote_refs(kit) == refs


# ---------------------------------------------------------------------- preflight failures
def test_missing_model_artifact_fails_preflight(kit):
    git(kit, "rm", "-q", MODEL_REL)
    commit_all(kit, "drop the model")
    proc = submit(kit, "v0.1")
    assert_refused(proc, kit, f"FAIL  model artifact not found: the predictor loads {MODEL_REL}",
                   "skip  smoke prediction")


def test_lfs_pointer_in_place_of_the_model_fails_preflight(kit):
    (kit / MODEL_REL).write_text("version https://git-lfs.github.com/spec/v1\n"
                                 "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
                                 "size 16851564\n")
    commit_all(kit, "pointer")
    proc = submit(kit, "v0.1")
    assert_refused(proc, kit, f"FAIL  model artifact {MODEL_REL} is a git-lfs pointer file")


@pytest.mark.parametrize("text, phrase", [
    ('{"challenge_id": "evaluations-api-music-demixing", "authors": [}', "aicrowd.json is not valid JSON"),
    ('{"challenge_id": "evaluations-api-music-demixing", "grader_id": "evaluations-api-music-demixing", '
     '"authors": ["someone"], "description": "x", "external_dataset_used": false}',
     "aicrowd.json lacks the key 'gpu'"),
])
def test_broken_aicrowd_json_fails_preflight(kit, text, phrase):
    (kit / "aicrowd.json").write_text(text)
    commit_all(kit, "break aicrowd.json")
    assert_refused(submit(kit, "v0.1"), kit, phrase)


def test_run_sh_must_be_executable(kit):
    if not (kit / "run.sh").is_file():
        pytest.fail("the kit has no run.sh (the grader's entry point)")
    git(kit, "update-index", "--chmod=-x", "run.sh")
    (kit / "run.sh").chmod(0o644)
    commit_all(kit, "not executable")
    assert_refused(submit(kit, "v0.1"), kit, "run.sh is not executable")


def test_model_committed_through_lfs_needs_git_lfs_to_push(tmp_path, monkeypatch):
    """The working file is real, but the commit holds a pointer: without git-lfs and its pre-push hook
    the grader would receive only the pointer."""
    for key, value in git_env().items():
        if key.startswith("GIT_"):
            monkeypatch.setenv(key, value)
    repo = tmp_path / "r"
    (repo / "models").mkdir(parents=True)
    model = repo / "models" / "m.onnx"
    model.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "1" * 64 + "\nsize 9\n")
    git(tmp_path, "init", "-q", str(repo))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "pointer")
    model.write_bytes(b"real bytes")  # as a git-lfs checkout would leave it
    git(repo, "update-index", "--assume-unchanged", "models/m.onnx")
    assert checks.check_artifact(repo, "models/m.onnx") == [
        "model artifact models/m.onnx is committed through git-lfs, but git-lfs is not set up here, so the push "
        "would send only the pointer: install git-lfs and run `git lfs install --local`"]


def test_open_unmix_folder_must_be_committed_whole(tmp_path, monkeypatch):
    """A model that is a folder (Open-Unmix's format) travels only if every file in it is committed."""
    for key, value in git_env().items():
        if key.startswith("GIT_"):
            monkeypatch.setenv(key, value)
    repo = tmp_path / "r"
    folder = repo / "models" / "umx"
    folder.mkdir(parents=True)
    for name in ("separator.json", "vocals.json", "vocals.pth"):
        (folder / name).write_text("{}")
    git(tmp_path, "init", "-q", str(repo))
    git(repo, "add", "models/umx/separator.json", "models/umx/vocals.json")
    git(repo, "commit", "-q", "-m", "part of the folder")
    monkeypatch.setenv("MDX_MODEL", str(folder))
    model, problems = checks.grader_model(repo)
    assert model == folder.resolve()
    assert problems == ["the model folder models/umx has files that are not committed (ignored?): "
                        "models/umx/vocals.pth: git add -f models/umx && git commit"]
    git(repo, "add", "models/umx/vocals.pth")
    git(repo, "commit", "-q", "-m", "the rest")
    assert checks.grader_model(repo) == (folder.resolve(), [])


# ---------------------------------------------------------------------- the smoke prediction itself
@pytest.fixture()
def tiny_model_env(tiny_ckpt, monkeypatch):
    """The predictor on the tiny checkpoint with one thread (two threads on a busy 2-core box spin for
    seconds), restoring torch's thread count afterwards since the predictor sets it process-wide."""
    import torch

    threads = torch.get_num_threads()
    monkeypatch.setenv("MDX_MODEL", str(tiny_ckpt))
    monkeypatch.setenv("MDX_THREADS", "1")
    yield
    torch.set_num_threads(threads)


def test_smoke_prediction_is_timed_against_round2(tiny_model_env):
    result = smoke.run_smoke_prediction(1.5)
    assert result.limit_s == pytest.approx(BudgetRule.round2().limit_for(1.5))
    assert 0 < result.wall_s <= result.limit_s


def test_smoke_prediction_over_budget_fails_with_the_rule(tiny_model_env):
    """A 50-ms limit: the grader's alarm lands while the song is being separated. In its own process,
    as the preflight runs it: an alarm's asynchronous exception can land inside whatever native
    libraries earlier tests left running in a shared pytest process (that crashed it once)."""
    code = ("import sys; from submission import smoke; smoke.smoke_limit = lambda duration_s: 0.05\n"
            "try:\n    smoke.run_smoke_prediction(1.5)\nexcept smoke.SmokeFailure as exc:\n"
            "    print(exc); sys.exit(3)\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 3, res.stdout + res.stderr[-2000:]
    assert f"over the budget ({BudgetRule.round2().describe()}) for a 1.5 s song" in res.stdout


# ---------------------------------------------------------------------- the real aicrowd-cli
def _real_aicrowd() -> Path:
    cli = Path(sys.executable).parent / "aicrowd"
    if not cli.exists():
        msg = "aicrowd-cli is not installed in this environment (pip install -r requirements.txt)"
        if os.getenv("CI") == "true":
            pytest.fail(msg + "; CI must have it")
        pytest.skip(msg)
    return cli


def _real_cli_env(monkeypatch, tmp_path, api_key: str | None) -> None:
    """The real `aicrowd` on PATH, its config in a temporary folder, AIcrowd's API at a closed
    local port (no network here anyway: nothing can leave)."""
    cli = _real_aicrowd()
    monkeypatch.setenv("PATH", f"{cli.parent}{os.pathsep}{os.environ['PATH']}")
    config = tmp_path / "config"
    (config / "aicrowd-cli").mkdir(parents=True)
    if api_key is not None:
        (config / "aicrowd-cli" / "config.toml").write_text(f'aicrowd_api_key = "{api_key}"\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    monkeypatch.setenv("AICROWD_API_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv(aicrowd_cli.ENV_CHALLENGE, raising=False)
    for key, value in git_env().items():
        if key.startswith("GIT_"):
            monkeypatch.setenv(key, value)


def test_real_aicrowd_cli_has_the_options_the_kit_passes():
    help_text = subprocess.run([str(_real_aicrowd()), "submission", "create", "--help"], capture_output=True,
                               text=True, timeout=120, check=True).stdout
    for option in ("--challenge", "--tag", "--description"):
        assert option in help_text


@pytest.mark.parametrize("profile", sorted(CHALLENGES))
def test_real_aicrowd_cli_offline_is_explained_and_pushes_nothing(kit, tmp_path, monkeypatch, profile):
    _real_cli_env(monkeypatch, tmp_path, api_key="0" * 32)
    slug = get_challenge(profile).aicrowd_slug
    with pytest.raises(gitops.SubmissionError) as err:
        aicrowd_cli.create_submission(kit, TAG, slug, TAG)
    message = str(err.value)
    assert "could not reach AIcrowd" in message and "nothing was submitted" in message, message
    assert "No such option" not in message and "Usage:" not in message  # it parsed what the kit passed
    assert not gitops.local_tag_exists(kit, TAG)
    assert remote_refs(kit) == {}


def test_real_aicrowd_cli_without_login_says_so(kit, tmp_path, monkeypatch):
    _real_cli_env(monkeypatch, tmp_path, api_key=None)
    with pytest.raises(gitops.SubmissionError, match="not logged in to AIcrowd"):
        aicrowd_cli.create_submission(kit, TAG, get_challenge("mdx21").aicrowd_slug, TAG)
    assert remote_refs(kit) == {}


# ---------------------------------------------------------------------- repository refusals
def test_dirty_tree_is_refused_with_the_list(kit):
    with open(kit / "predict.py", "a") as f:
        f.write("# local edit\n")
    (kit / "notes.txt").write_text("scratch")
    proc = submit(kit, "v0.1")
    assert_refused(proc, kit, "the working tree is dirty", " M predict.py", "?? notes.txt")
    assert "preflight for" not in proc.stdout  # refused before any slow check


@pytest.mark.parametrize("later_deleted", [False, True], ids=["in-HEAD", "only-in-history"])
def test_data_and_results_are_never_pushed(kit, later_deleted):
    for rel in ("data/test/song/mixture.wav", "results/run/report.json"):
        (kit / rel).parent.mkdir(parents=True, exist_ok=True)
        (kit / rel).write_bytes(b"private")
        git(kit, "add", "-f", rel)
    commit_all(kit, "oops, data")
    if later_deleted:
        git(kit, "rm", "-q", "-r", "--cached", "data", "results")
        commit_all(kit, "remove data again")
    proc = submit(kit, "v0.1")
    assert_refused(proc, kit, "would be pushed", "data/test/song/mixture.wav", "results/run/report.json")


@pytest.mark.parametrize("where", ["local", "remote"])
def test_existing_tag_is_not_reused(kit, where):
    git(kit, "tag", "-a", "-m", "earlier", TAG, "HEAD")
    if where == "remote":
        git(kit, "push", "-q", "aicrowd", f"refs/tags/{TAG}")
        git(kit, "tag", "-d", TAG)
    before = remote_refs(kit)
    proc = submit(kit, "v0.1")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1 and f"tag {TAG} already exists" in output, output
    assert remote_refs(kit) == before


@pytest.mark.parametrize("version", ["v 0.1", "../x", "", "a..b", "v1.lock", "v1/x"])
def test_invalid_versions_are_refused(kit, version):
    proc = submit(kit, version)
    assert proc.returncode == 1 and "invalid version" in proc.stderr
    assert remote_refs(kit) == {}


def test_missing_remote_is_refused(kit):
    git(kit, "remote", "remove", "aicrowd")
    proc = submit(kit, "v0.1")
    assert proc.returncode == 1 and "no git remote named 'aicrowd'" in proc.stderr


# ---------------------------------------------------------------------- --cli
FAKE_AICROWD = """#!/usr/bin/env bash
# Stands in for aicrowd-cli: records its arguments, then acts as $FAKE_MODE says.
printf '%s\\n' "$@" > "$FAKE_LOG"
case "$FAKE_MODE" in
  ok) git tag -a -m "$6" "$6" && git push -q aicrowd HEAD "refs/tags/$6" && echo "Submitted $6" ;;
  not-logged-in) echo "API Key not found. Please run aicrowd login to login." >&2; exit 6 ;;
  offline) git tag -a -m "$6" "$6"
           echo "An unexpected error occured!" >&2
           echo "HTTPSConnectionPool(host='www.aicrowd.com', port=443): Max retries exceeded" >&2
           exit 7 ;;
esac
"""


@pytest.fixture()
def fake_aicrowd(tmp_path) -> Path:
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    (bin_dir / "aicrowd").write_text(FAKE_AICROWD)
    (bin_dir / "aicrowd").chmod(0o755)
    return bin_dir


def test_cli_submission_goes_through_aicrowd_submission_create(kit, fake_aicrowd, tmp_path):
    log = tmp_path / "aicrowd-args"
    proc = submit(kit, "v0.1", "--cli", FAKE_MODE="ok", FAKE_LOG=str(log),
                  PATH=f"{fake_aicrowd}{os.pathsep}{git_env()['PATH']}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok    smoke prediction" in proc.stdout and "Submitted submission-v0.1" in proc.stdout
    assert log.read_text().split("\n")[:6] == [
        "submission", "create", "--challenge", aicrowd_cli.DEFAULT_CHALLENGE, "--tag", TAG]
    assert TAG in git(kit, "tag", "--list")


def test_cli_missing_is_explained_before_any_work(kit):
    proc = submit(kit, "v0.1", "--cli")
    assert_refused(proc, kit, "`aicrowd`) is not installed", "pip install -r requirements.txt")


@pytest.mark.parametrize("mode, phrase", [
    ("not-logged-in", "not logged in to AIcrowd"),
    ("offline", "could not reach AIcrowd"),
])
def test_cli_failures_are_explained_and_leave_no_tag(kit, fake_aicrowd, tmp_path, monkeypatch, mode, phrase):
    # In-process (the preflight is covered above): only the CLI hand-off is under test here.
    monkeypatch.setenv("PATH", f"{fake_aicrowd}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_MODE", mode)
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "log"))
    for key, value in git_env().items():
        if key.startswith("GIT_"):
            monkeypatch.setenv(key, value)
    with pytest.raises(gitops.SubmissionError, match=phrase) as err:
        aicrowd_cli.create_submission(kit, TAG, aicrowd_cli.DEFAULT_CHALLENGE, TAG)
    assert "nothing was submitted" in str(err.value)
    assert not gitops.local_tag_exists(kit, TAG)  # the fake CLI tagged before failing; cleaned up
    assert remote_refs(kit) == {}
