"""Submitting through the AIcrowd CLI (``aicrowd submission create``), with plain failure messages."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from submission import gitops

#: The MDX 2021 challenge on AIcrowd; AICROWD_CHALLENGE or --challenge picks another.
DEFAULT_CHALLENGE = "music-demixing-challenge-ismir-2021"
ENV_CHALLENGE = "AICROWD_CHALLENGE"
#: aicrowd-cli exit codes (aicrowd/errors.py): bad credentials, no API key configured.
_EXIT_BAD_CREDENTIALS, _EXIT_NOT_LOGGED_IN = 4, 6
_NOT_LOGGED_IN = re.compile(r"aicrowd login|api key", re.IGNORECASE)
_OFFLINE = re.compile(
    r"connectionerror|max retries exceeded|failed to establish a new connection|name or service not known|"
    r"temporary failure in name resolution|nameresolutionerror|network is unreachable|could not resolve host|"
    r"connection (timed out|refused)|read timed out", re.IGNORECASE)

INSTALL_HINT = ("the AIcrowd CLI (`aicrowd`) is not installed or not on PATH: `pip install -r requirements.txt` "
                "(it pins aicrowd-cli) or activate the kit's .venv, then `aicrowd login`; or submit without --cli "
                "(bash submit.sh VERSION pushes to the remote 'aicrowd')")


def default_challenge(slug: str = DEFAULT_CHALLENGE) -> str:
    """The AIcrowd challenge to submit to: $AICROWD_CHALLENGE, else ``slug`` (the profile's)."""
    return os.getenv(ENV_CHALLENGE) or slug


def cli_available() -> bool:
    return shutil.which("aicrowd") is not None


def explain_failure(returncode: int, output: str) -> str:
    """A message that says why ``aicrowd submission create`` failed and what to do about it."""
    tail = "\n".join(output.strip().splitlines()[-8:])
    if returncode in (_EXIT_NOT_LOGGED_IN, _EXIT_BAD_CREDENTIALS) or _NOT_LOGGED_IN.search(output):
        return ("not logged in to AIcrowd (or the saved API key is no longer valid): run `aicrowd login` "
                f"and try again; nothing was submitted.\naicrowd said:\n{tail}")
    if _OFFLINE.search(output):
        return ("could not reach AIcrowd (offline, or a proxy/firewall in the way): check the connection and "
                f"try again; nothing was submitted.\naicrowd said:\n{tail}")
    return f"`aicrowd submission create` failed (exit {returncode}):\n{tail}"


def create_submission(repo: Path, tag: str, challenge: str, description: str) -> str:
    """Run ``aicrowd submission create`` for ``tag``; returns its output, raises with an explanation.

    The CLI creates and pushes the tag itself. If it fails after creating the tag locally, that tag is
    removed again, so the version can be retried without being "already used".
    """
    if not cli_available():
        raise gitops.SubmissionError(INSTALL_HINT)
    tag_existed = gitops.local_tag_exists(repo, tag)
    cmd = ["aicrowd", "submission", "create", "--challenge", challenge, "--tag", tag, "--description", description]
    proc = subprocess.run(cmd, cwd=repo, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        if not tag_existed and gitops.local_tag_exists(repo, tag):
            gitops.delete_local_tag(repo, tag)
        raise gitops.SubmissionError(explain_failure(proc.returncode, output))
    return output
