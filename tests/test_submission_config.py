"""The submission's runtime files agree with each other, and .gitattributes does what it says."""
from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from submission import checks
from tests.helpers import REPO_ROOT


def git_env() -> dict[str, str]:
    """git without the user's global/system config (an installed git-lfs there must not leak in)."""
    return {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}


def _pins(lines: list[str], where: str) -> dict[str, str]:
    """{canonical name: exact version} from requirement lines; every line must be an exact pin."""
    pins = {}
    for line in lines:
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{where}: {line!r} is not pinned with =="
        name = canonicalize_name(req.name)
        assert name not in pins, f"{where}: {req.name} listed twice"
        pins[name] = specs[0].version
    return pins


def _requirements_txt() -> dict[str, str]:
    lines = [line.split("#", 1)[0].strip() for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()]
    return _pins([line for line in lines if line], "requirements.txt")


def _environment() -> dict:
    return yaml.safe_load((REPO_ROOT / "environment.yml").read_text())


def _conda_deps(env: dict) -> list[str]:
    return [d for d in env["dependencies"] if isinstance(d, str)]


def _pip_deps(env: dict) -> list[str]:
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml needs exactly one pip: section"
    return pip_sections[0]


def test_environment_pip_pins_equal_requirements_txt():
    env_pins = _pins(_pip_deps(_environment()), "environment.yml")
    req_pins = _requirements_txt()
    assert env_pins == req_pins, (
        f"only in requirements.txt: {sorted(set(req_pins.items()) - set(env_pins.items()))}; "
        f"only in environment.yml: {sorted(set(env_pins.items()) - set(req_pins.items()))}")
    assert req_pins["torch"] == "2.13.0"


def test_environment_is_conda_forge_python_311_within_requires_python():
    env = _environment()
    assert env["channels"] == ["conda-forge"]
    deps = _conda_deps(env)
    pythons = [d for d in deps if re.fullmatch(r"python\s*[=<>!~]=?.*", d)]
    assert pythons == ["python=3.11"]
    assert "pip" in deps
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    requires = re.search(r'^requires-python\s*=\s*"([^"]+)"', pyproject, re.MULTILINE).group(1)
    assert "3.11" in SpecifierSet(requires)
    # Conda packages other than python/pip would drift from requirements.txt unchecked.
    assert set(deps) == {"python=3.11", "pip"}


def test_apt_txt_has_the_system_libraries():
    lines = [line.strip() for line in (REPO_ROOT / "apt.txt").read_text().splitlines()]
    packages = [line for line in lines if line and not line.startswith("#")]
    assert len(packages) == len(set(packages))
    # libsndfile1 backs soundfile on the grader; ffmpeg backs stempeg/musdb (.stem.mp4 input).
    assert {"libsndfile1", "ffmpeg"} <= set(packages)
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9+.-]*", p) for p in packages), packages
    reqs = _requirements_txt()
    assert "soundfile" in reqs and "stempeg" in reqs


def test_aicrowd_json_of_the_kit_is_valid():
    assert checks.aicrowd_json_problems(REPO_ROOT / "aicrowd.json") == []
    data = json.loads((REPO_ROOT / "aicrowd.json").read_text())
    assert data["challenge_id"] == data["grader_id"] == "evaluations-api-music-demixing"
    assert isinstance(data["external_dataset_used"], bool) and isinstance(data["gpu"], bool)


@pytest.mark.parametrize("suffix", checks.ARTIFACT_SUFFIXES)
def test_gitattributes_routes_artifacts_through_lfs(suffix):
    out = subprocess.run(["git", "check-attr", "filter", "diff", "merge", "text", "--", f"models/x{suffix}"],
                         cwd=REPO_ROOT, capture_output=True, text=True, check=True, env=git_env()).stdout
    attrs = dict(line.split(": ")[1:] for line in out.splitlines())
    assert attrs == {"filter": "lfs", "diff": "lfs", "merge": "lfs", "text": "unset"}
    # Nothing else: audio, code and configs stay ordinary git files.
    other = subprocess.run(["git", "check-attr", "filter", "--", "mixture.wav", "predict.py"], cwd=REPO_ROOT,
                           capture_output=True, text=True, check=True, env=git_env()).stdout
    assert "lfs" not in other


def test_gitattributes_alone_does_not_turn_commits_into_pointers(tmp_path):
    """Without git-lfs installed, the LFS lines are inert: a committed checkpoint is the real bytes.

    This is what keeps this repository's own checkpoint usable in clones that have no LFS server.
    """
    env = git_env()
    repo = tmp_path / "r"
    repo.mkdir()
    (repo / ".gitattributes").write_bytes((REPO_ROOT / ".gitattributes").read_bytes())
    payload = bytes(range(256)) * 64
    (repo / "m.ckpt").write_bytes(payload)
    for cmd in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "x"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True, env=env, capture_output=True)
    blob = subprocess.run(["git", "cat-file", "blob", "HEAD:m.ckpt"], cwd=repo, capture_output=True,
                          check=True, env=env).stdout
    assert blob == payload


def test_committed_model_artifacts_are_real_files_not_lfs_pointers():
    """Guards this repository: a model committed with git-lfs active would reach CI clones as a pointer."""
    artifacts = checks.model_artifacts(REPO_ROOT)
    if not artifacts:
        pytest.skip("no model artifact is committed yet")
    for rel in artifacts:
        blob = subprocess.run(["git", "cat-file", "blob", f"HEAD:{rel}"], cwd=REPO_ROOT, capture_output=True,
                              check=True).stdout
        assert not blob.startswith(checks.LFS_POINTER_PREFIX), (
            f"{rel} is committed as a git-lfs pointer; commit the real file (see docs/SUBMITTING.md, git-lfs)")


# ---------------------------------------------------------------------- aicrowd.json validation
def _kit_json() -> dict:
    return json.loads((REPO_ROOT / "aicrowd.json").read_text())


@pytest.mark.parametrize("key", sorted(checks.AICROWD_JSON_KEYS))
def test_aicrowd_json_missing_key_is_named(tmp_path, key):
    data = _kit_json()
    del data[key]
    (tmp_path / "aicrowd.json").write_text(json.dumps(data))
    problems = checks.aicrowd_json_problems(tmp_path / "aicrowd.json")
    assert len(problems) == 1 and f"lacks the key {key!r}" in problems[0]


@pytest.mark.parametrize("change, expected", [
    ({"gpu": "false"}, "'gpu' must be a bool, not str"),
    ({"gpu": 0}, "'gpu' must be a bool, not int"),
    ({"external_dataset_used": None}, "'external_dataset_used' must be a bool, not NoneType"),
    ({"authors": "me"}, "'authors' must be a list, not str"),
    ({"authors": []}, "'authors' is empty"),
    ({"authors": ["your-aicrowd-username"]}, "not placeholders"),
    ({"grader_id": "music-demixing"}, "'grader_id' is 'music-demixing'; Music Demixing Challenge 2021"),
    ({"challenge_id": "evaluations-api-other"}, "'challenge_id' is 'evaluations-api-other'"),
])
def test_aicrowd_json_wrong_values_are_named(tmp_path, change, expected):
    (tmp_path / "aicrowd.json").write_text(json.dumps({**_kit_json(), **change}))
    problems = checks.aicrowd_json_problems(tmp_path / "aicrowd.json")
    assert len(problems) == 1 and expected in problems[0], problems


@pytest.mark.parametrize("text, expected", [
    ('{"challenge_id": "evaluations-api-music-demixing",', "not valid JSON"),
    ("", "not valid JSON"),
    ('["evaluations-api-music-demixing"]', "must hold a JSON object"),
])
def test_aicrowd_json_unparsable(tmp_path, text, expected):
    (tmp_path / "aicrowd.json").write_text(text)
    problems = checks.aicrowd_json_problems(tmp_path / "aicrowd.json")
    assert len(problems) == 1 and expected in problems[0]


def test_lfs_pointer_detection(tmp_path):
    pointer = tmp_path / "m.ckpt"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 16851564\n")
    real = tmp_path / "r.ckpt"
    real.write_bytes(b"PK\x03\x04" + bytes(100))
    assert checks.is_lfs_pointer(pointer) and not checks.is_lfs_pointer(real)
