"""Static preflight checks: files the grader needs, aicrowd.json, model artifacts, the predictor.

Each check returns a list of problems (empty when fine); every problem names the file and the fix.
The smoke prediction, which needs the model, lives in :mod:`submission.smoke`.
"""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

from separation.challenges import get_challenge
from submission import gitops

#: What the AIcrowd grader reads from the repository (run.sh is its entry point).
REQUIRED_FILES = ("aicrowd.json", "run.sh", "predict.py", "requirements.txt", "environment.yml", "apt.txt")
#: File endings of model artifacts; .gitattributes routes exactly these through git-lfs.
ARTIFACT_SUFFIXES = (".onnx", ".ckpt", ".pt", ".pth", ".th", ".ts")
#: Keys and types aicrowd.json needs for the default challenge (each profile of
#: ``separation.challenges`` has its own: SDX23 adds ``labelnoise`` and ``bleeding``).
AICROWD_JSON_KEYS: dict[str, type] = dict(get_challenge(None).aicrowd_keys)
#: First bytes of a git-lfs pointer file (a checkout without git-lfs leaves these, not the model).
LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/"
_PLACEHOLDER_AUTHORS = {"", "your-aicrowd-username", "<your-aicrowd-username>"}


def check_required_files(repo: Path) -> list[str]:
    """Every required file exists in the working tree and is committed (only commits get pushed)."""
    tracked = set(gitops.tracked_files(repo, *REQUIRED_FILES))
    problems = []
    for name in REQUIRED_FILES:
        if not (repo / name).is_file():
            problems.append(f"required file {name} is missing")
        elif name not in tracked:
            problems.append(f"required file {name} is not committed (git add {name} && git commit)")
    return problems


def check_run_sh(repo: Path) -> list[str]:
    """run.sh is committed with the executable bit (the grader runs it directly)."""
    if not (repo / "run.sh").is_file():
        return []  # already reported as a missing required file
    mode = gitops.file_mode(repo, "run.sh")
    if mode is not None and mode != "100755":
        return ["run.sh is not executable in the commit (git update-index --chmod=+x run.sh && git commit)"]
    if not os.access(repo / "run.sh", os.X_OK):
        return ["run.sh is not executable (chmod +x run.sh)"]
    return []


def aicrowd_json_problems(path: Path, challenge: str | None = None) -> list[str]:
    """Problems with aicrowd.json for ``challenge`` (a profile name; None: the default): unreadable,
    not JSON, keys missing or mistyped, another challenge's ids, a GPU where the challenge has none."""
    profile = get_challenge(challenge)
    if not path.is_file():
        return []  # reported as a missing required file
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [f"aicrowd.json is not valid JSON: {exc}"]
    if not isinstance(data, dict):
        return ["aicrowd.json must hold a JSON object ({...})"]
    problems = []
    for key, kind in profile.aicrowd_keys:
        if key not in data:
            problems.append(f"aicrowd.json lacks the key {key!r} ({kind.__name__}), which {profile.name} needs")
        elif type(data[key]) is not kind:  # bool is an int subclass; JSON true must not pass as 1
            problems.append(f"aicrowd.json: {key!r} must be a {kind.__name__}, not {type(data[key]).__name__}")
    for key, wanted in profile.aicrowd_values:
        if isinstance(data.get(key), str) and data[key] != wanted:
            problems.append(f"aicrowd.json: {key!r} is {data[key]!r}; {profile.title} ({profile.name}) is {wanted!r}")
    if data.get("gpu") is True and not profile.gpu_allowed:
        problems.append(f"aicrowd.json: 'gpu' is true, but {profile.title} grades on CPUs only")
    authors = data.get("authors")
    if isinstance(authors, list):
        if not authors:
            problems.append("aicrowd.json: 'authors' is empty; list your AIcrowd user name(s)")
        elif any(not isinstance(a, str) or a.strip().lower() in _PLACEHOLDER_AUTHORS for a in authors):
            problems.append("aicrowd.json: 'authors' must be AIcrowd user names (strings), not placeholders")
    return problems


def is_lfs_pointer(path: Path) -> bool:
    """True when ``path`` holds a git-lfs pointer text instead of the real file."""
    with open(path, "rb") as f:
        return f.read(len(LFS_POINTER_PREFIX)) == LFS_POINTER_PREFIX


def _blob_is_lfs_pointer(repo: Path, path: str) -> bool:
    """True when the HEAD commit stores ``path`` as a git-lfs pointer (the push relies on git-lfs)."""
    proc = subprocess.run(["git", "cat-file", "blob", f"HEAD:{path}"], cwd=repo, capture_output=True)
    return proc.returncode == 0 and proc.stdout.startswith(LFS_POINTER_PREFIX)


def _git_lfs_ready(repo: Path) -> bool:
    """git-lfs is installed and its pre-push hook is in this clone (it uploads the LFS objects)."""
    if subprocess.run(["git", "lfs", "version"], cwd=repo, capture_output=True).returncode != 0:
        return False
    hooks = gitops.git(repo, "rev-parse", "--git-path", "hooks").stdout.strip()
    hook = (repo / hooks / "pre-push")
    return hook.is_file() and "git lfs" in hook.read_text(errors="replace")


def model_artifacts(repo: Path) -> list[str]:
    """Committed files that are model artifacts, by ending."""
    return [p for p in gitops.tracked_files(repo) if p.lower().endswith(ARTIFACT_SUFFIXES)]


def check_artifact(repo: Path, rel: str) -> list[str]:
    """One artifact: present, non-empty, the real file (not an LFS pointer), pushable."""
    path = repo / rel
    if not path.is_file():
        return [f"model artifact {rel} is missing from the working tree"]
    if path.stat().st_size == 0:
        return [f"model artifact {rel} is empty"]
    if is_lfs_pointer(path):
        return [f"model artifact {rel} is a git-lfs pointer file, not the model: install git-lfs and run "
                f"`git lfs pull`, or copy the real file in its place and commit it"]
    if _blob_is_lfs_pointer(repo, rel) and not _git_lfs_ready(repo):
        return [f"model artifact {rel} is committed through git-lfs, but git-lfs is not set up here, so the "
                f"push would send only the pointer: install git-lfs and run `git lfs install --local`"]
    return []


def grader_model(repo: Path) -> tuple[Path | None, list[str]]:
    """The model grader mode will load (``grader_settings(os.environ).model_path()``), checked as the
    grader sees it.

    It must lie inside the repository and be committed; the grader has nothing else.
    Returns the model's absolute path (None if predict.py cannot say) and the problems found.
    """
    try:
        predict = importlib.import_module("predict")
    except Exception as exc:  # noqa: BLE001 - reported by check_predictor_importable as well
        return None, [f"cannot tell the predictor's model: predict.py does not import ({exc})"]
    from separation.settings import ModelNotFoundError, grader_settings

    settings = grader_settings(os.environ)
    try:
        model = settings.model_path().resolve()
    except ModelNotFoundError:
        wanted = Path(settings.model or predict.DEFAULT_MODEL).resolve()
        return wanted, [f"model artifact not found: the predictor loads {shown_path(repo, wanted)}, which does not "
                        f"exist; put the trained model there and commit it"]
    try:
        rel = model.relative_to(repo.resolve()).as_posix()
    except ValueError:
        return model, [f"the model {model} lies outside the repository, so the grader will not have it: "
                       "copy it under models/ and commit it"]
    if model.is_dir():  # an Open-Unmix model folder: every file in it travels
        tracked = set(gitops.tracked_files(repo, rel))
        files = sorted(p.relative_to(repo.resolve()).as_posix() for p in model.rglob("*") if p.is_file())
        untracked = [f for f in files if f not in tracked]
        if untracked:
            return model, [f"the model folder {rel} has files that are not committed (ignored?): "
                           f"{', '.join(untracked[:4])}: git add -f {rel} && git commit"]
        return model, [problem for f in files for problem in check_artifact(repo, f)]
    if rel not in gitops.tracked_files(repo, rel):
        return model, [f"the model {rel} is not committed (is it ignored?): git add -f {rel} && git commit"]
    return model, check_artifact(repo, rel)


def shown_path(repo: Path, path: Path) -> str:
    """``path`` relative to the repository when inside it."""
    try:
        return path.resolve().relative_to(repo.resolve()).as_posix()
    except ValueError:
        return str(path)


def check_predictor_importable(repo: Path) -> list[str]:
    """predict.py imports and offers the predictor class the grader instantiates."""
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    try:
        predict = importlib.import_module("predict")
        from separation.music_demixing import MusicDemixingPredictor
    except Exception as exc:  # noqa: BLE001 - report any import failure with its cause
        return [f"predict.py does not import: {type(exc).__name__}: {exc}"]
    cls = getattr(predict, "PREDICTOR_CLASS", None)
    if not (isinstance(cls, type) and issubclass(cls, MusicDemixingPredictor)):
        return ["predict.py's PREDICTOR_CLASS (the class grader mode runs) is not a MusicDemixingPredictor subclass"]
    return []
