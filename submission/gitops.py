"""The git side of a submission: what state the repository is in, tagging and pushing.

Every function takes the repository root and runs ``git`` there; errors surface as
:class:`SubmissionError` with a message that says what to do.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

#: Submissions are tag pushes whose name starts with this (the AIcrowd convention).
TAG_PREFIX = "submission-"
#: Local folders that never leave the machine (datasets, evaluation runs).
PRIVATE_FOLDERS = ("data", "results")
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class SubmissionError(RuntimeError):
    """A submission step cannot go on; the message names the problem and the fix."""


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``git ARGS`` in ``repo``; raise :class:`SubmissionError` on failure when ``check``."""
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise SubmissionError(f"git {' '.join(args)} failed: {detail}")
    return proc


def repo_root(start: Path) -> Path:
    """The top folder of the git work tree that contains ``start``."""
    proc = git(start, "rev-parse", "--show-toplevel", check=False)
    if proc.returncode != 0:
        raise SubmissionError(f"{start} is not inside a git repository; run submit.sh from the kit's clone")
    return Path(proc.stdout.strip())


def tag_for(version: str) -> str:
    """``submission-VERSION``, after checking that VERSION makes a valid, plain tag name."""
    if version.startswith(TAG_PREFIX):
        version = version[len(TAG_PREFIX):]
    if not _VERSION_RE.match(version) or ".." in version or version.endswith((".", ".lock")):
        raise SubmissionError(
            f"invalid version {version!r}: use letters, digits, '.', '_' and '-' (for example v0.1)")
    return TAG_PREFIX + version


def current_branch(repo: Path) -> str:
    """The checked-out branch; a detached HEAD has nothing to push."""
    proc = git(repo, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
    if proc.returncode != 0:
        raise SubmissionError("HEAD is detached: check out the branch you want to submit (git switch BRANCH)")
    return proc.stdout.strip()


def head_commit(repo: Path) -> str:
    return git(repo, "rev-parse", "--verify", "HEAD^{commit}").stdout.strip()


def dirty_paths(repo: Path) -> list[str]:
    """Modified, staged and untracked (not ignored) paths, as ``git status --short`` shows them."""
    out = git(repo, "status", "--porcelain=v1", "--untracked-files=all").stdout
    return [line for line in out.splitlines() if line.strip()]


def remote_url(repo: Path, remote: str) -> str | None:
    proc = git(repo, "remote", "get-url", remote, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def local_tag_exists(repo: Path, tag: str) -> bool:
    return git(repo, "rev-parse", "--quiet", "--verify", f"refs/tags/{tag}", check=False).returncode == 0


def remote_refs(repo: Path, remote: str, *patterns: str) -> dict[str, str]:
    """``{ref: sha}`` on ``remote`` for the given ref patterns (``^{}`` entries are peeled tags)."""
    proc = git(repo, "ls-remote", remote, *patterns, check=False)
    if proc.returncode != 0:
        raise SubmissionError(
            f"cannot reach remote {remote!r}: {proc.stderr.strip()} "
            "(check the URL with `git remote -v`, your SSH key and your connection)")
    refs = {}
    for line in proc.stdout.splitlines():
        sha, _, ref = line.partition("\t")
        refs[ref] = sha
    return refs


def tracked_files(repo: Path, *pathspecs: str) -> list[str]:
    """Paths in the HEAD commit (what a push sends), optionally limited to ``pathspecs``."""
    out = git(repo, "ls-tree", "-r", "--name-only", "-z", "HEAD", "--", *pathspecs).stdout
    return [p for p in out.split("\0") if p]


def file_mode(repo: Path, path: str) -> str | None:
    """The mode git records for ``path`` at HEAD (``100755`` is executable), or None if untracked."""
    out = git(repo, "ls-tree", "HEAD", "--", path).stdout.strip()
    return out.split()[0] if out else None


def private_paths_to_push(repo: Path, remote: str) -> list[str]:
    """Paths under data/ or results/ in HEAD or in any commit the remote does not have yet.

    A file added and later deleted still travels inside the older commit, so history counts too.
    """
    found = set(tracked_files(repo, *PRIVATE_FOLDERS))
    known = [f"--remotes={remote}"] if remote_url(repo, remote) else []
    log = git(repo, "log", "--format=", "--name-only", "HEAD", "--not", *known, "--", *PRIVATE_FOLDERS).stdout
    found.update(p for p in log.splitlines() if p.strip())
    return sorted(found)


def create_tag(repo: Path, tag: str, message: str) -> None:
    """An annotated tag at HEAD (annotated tags carry who submitted and when)."""
    git(repo, "tag", "--annotate", "--message", message, tag, "HEAD")


def delete_local_tag(repo: Path, tag: str) -> None:
    git(repo, "tag", "--delete", tag, check=False)


def push_submission(repo: Path, remote: str, branch: str, tag: str) -> None:
    """Push the branch and the tag together, all or nothing (``--atomic``).

    Only these two refs travel: no ``--all``/``--tags``, so other local branches and tags stay home.
    The pre-push hook stays on, since that is where git-lfs uploads the model files.
    """
    proc = git(repo, "push", "--atomic", remote, f"refs/heads/{branch}:refs/heads/{branch}",
               f"refs/tags/{tag}:refs/tags/{tag}", check=False)
    if proc.returncode != 0:
        raise SubmissionError(f"push to {remote!r} failed:\n{(proc.stderr or proc.stdout).strip()}")


def verify_pushed(repo: Path, remote: str, branch: str, tag: str, commit: str) -> None:
    """The remote's branch and (peeled) tag both point at ``commit``."""
    refs = remote_refs(repo, remote, f"refs/heads/{branch}", f"refs/tags/{tag}", f"refs/tags/{tag}^{{}}")
    tag_target = refs.get(f"refs/tags/{tag}^{{}}") or refs.get(f"refs/tags/{tag}")
    if tag_target != commit:
        raise SubmissionError(f"after the push, {remote}'s tag {tag} points at {tag_target}, not {commit}")
    if refs.get(f"refs/heads/{branch}") != commit:
        raise SubmissionError(f"after the push, {remote}'s branch {branch} is not at {commit}")
