"""``bash submit.sh VERSION [--cli] [--check] [--challenge PROFILE]``: refuse unsafe states, run the
preflight for the challenge's rules (``separation.challenges``), then submit.

Order: repository state (clean tree, new tag, nothing private in the push) -> preflight (required
files, run.sh, aicrowd.json, predictor import, model artifacts, smoke prediction) -> tag and push to
the remote ``aicrowd`` (or ``aicrowd submission create`` with ``--cli``) -> check what arrived.
Nothing is tagged or pushed unless every check passed.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from separation.challenges import CHALLENGES, DEFAULT_CHALLENGE, get_challenge
from submission import aicrowd_cli, checks, gitops
from submission.gitops import SubmissionError

REMOTE = "aicrowd"
ENV_SMOKE_SECONDS = "MDX_SMOKE_SECONDS"
#: Long enough to cover more than one model window, short enough to take seconds.
DEFAULT_SMOKE_SECONDS = 10.0


class Preflight:
    """Runs checks, prints one line each, and collects the problems."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def step(self, label: str, found: Sequence[str]) -> bool:
        for problem in found:
            print(f"  FAIL  {problem}")
        if not found:
            print(f"  ok    {label}")
        self.problems.extend(found)
        return not found

    @staticmethod
    def skip(label: str, why: str) -> None:
        print(f"  skip  {label} ({why})")


def run_preflight(repo: Path, smoke_seconds: float, challenge: str = DEFAULT_CHALLENGE) -> list[str]:
    """Every preflight check in order, for ``challenge``'s rules; returns the problems (empty means
    ready to submit)."""
    pf = Preflight()
    pf.step(f"required files: {', '.join(checks.REQUIRED_FILES)}", checks.check_required_files(repo))
    if (repo / "run.sh").is_file():
        pf.step("run.sh is executable", checks.check_run_sh(repo))
    else:
        pf.skip("run.sh is executable", "run.sh is missing")
    pf.step(f"aicrowd.json is valid for {challenge}", checks.aicrowd_json_problems(repo / "aicrowd.json", challenge))
    importable = pf.step("predict.py imports its predictor class", checks.check_predictor_importable(repo))

    artifacts = checks.model_artifacts(repo)
    if importable:
        model, found = checks.grader_model(repo)
        label = "the predictor's model" + (f": {_describe(repo, model)}" if model and model.is_file() else "")
        pf.step(label, found)
        # Checked just now as the predictor's model; no need to report it twice.
        artifacts = [a for a in artifacts if model is None or (repo / a).resolve() != model]
    else:
        pf.skip("the predictor's model", "predict.py does not import")
    for rel in artifacts:
        pf.step(f"model artifact {_describe(repo, repo / rel)}", checks.check_artifact(repo, rel))

    if pf.problems:
        pf.skip("smoke prediction", "fix the problems above first")
    else:
        pf.step(*_smoke(smoke_seconds))
    return pf.problems


def _describe(repo: Path, path: Path) -> str:
    size = f" ({path.stat().st_size / 1e6:.1f} MB)" if path.is_file() else ""
    return checks.shown_path(repo, path) + size


def _smoke(seconds: float) -> tuple[str, list[str]]:
    from submission.smoke import SMOKE_RULE, SmokeFailure, run_smoke_prediction

    print(f"  ...   smoke prediction of a {seconds:g} s generated song under the {SMOKE_RULE} budget")
    try:
        result = run_smoke_prediction(seconds)
    except SmokeFailure as exc:
        return "", [f"smoke prediction failed: {exc}"]
    return f"smoke prediction: {result.summary()}", []


def repository_refusals(repo: Path, tag: str, use_cli: bool) -> list[str]:
    """Reasons not to submit from this repository state at all (checked before the slow preflight)."""
    refusals = []
    try:
        gitops.current_branch(repo)
    except SubmissionError as exc:
        refusals.append(str(exc))
    dirty = gitops.dirty_paths(repo)
    if dirty:
        refusals.append("the working tree is dirty; only committed files are submitted, so commit or "
                        f"remove these first:\n{_listing(dirty)}")
    has_remote = gitops.remote_url(repo, REMOTE) is not None
    if not has_remote and not use_cli:
        refusals.append(f"no git remote named {REMOTE!r}: git remote add {REMOTE} "
                        "git@gitlab.aicrowd.com:YOUR_USER_NAME/YOUR_REPO.git (see docs/SUBMITTING.md)")
    if gitops.local_tag_exists(repo, tag):
        refusals.append(f"tag {tag} already exists here; every submission needs a new version "
                        "(a tag is never moved or reused)")
    elif has_remote:
        try:
            if f"refs/tags/{tag}" in gitops.remote_refs(repo, REMOTE, f"refs/tags/{tag}"):
                refusals.append(f"tag {tag} already exists on {REMOTE!r}; choose a new version")
        except SubmissionError as exc:
            refusals.append(str(exc))
    private = gitops.private_paths_to_push(repo, REMOTE)
    if private:
        refusals.append(f"files under {' or '.join(f'{d}/' for d in gitops.PRIVATE_FOLDERS)} are committed "
                        f"and would be pushed; remove them from the branch's history first:\n{_listing(private)}")
    if use_cli and not aicrowd_cli.cli_available():
        refusals.append(aicrowd_cli.INSTALL_HINT)
    return refusals


def _listing(lines: Sequence[str], most: int = 40) -> str:
    """Indented lines, at most ``most`` of them and a count of the rest."""
    shown = [f"      {line}" for line in lines[:most]]
    if len(lines) > most:
        shown.append(f"      ... and {len(lines) - most} more")
    return "\n".join(shown)


def submit_git(repo: Path, tag: str, commit: str) -> None:
    branch = gitops.current_branch(repo)
    gitops.create_tag(repo, tag, f"{tag}: {commit[:12]} on {branch}")
    try:
        gitops.push_submission(repo, REMOTE, branch, tag)
    except SubmissionError:
        gitops.delete_local_tag(repo, tag)  # never pushed, so the version stays free for a retry
        raise
    gitops.verify_pushed(repo, REMOTE, branch, tag, commit)
    print(f"submit: pushed {branch} and {tag} ({commit[:12]}) to {REMOTE} ({gitops.remote_url(repo, REMOTE)})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="submit.sh", description="Check the kit as the AIcrowd grader will run it, then submit it.")
    parser.add_argument("version", help="submission version, e.g. v0.1 (the tag is submission-VERSION)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--cli", action="store_true",
                      help="submit with `aicrowd submission create` instead of a plain git push")
    mode.add_argument("--check", action="store_true", help="run the preflight only; tag and push nothing")
    parser.add_argument("--challenge", choices=list(CHALLENGES), default=DEFAULT_CHALLENGE,
                        help=f"the challenge's rules (default {DEFAULT_CHALLENGE}): which aicrowd.json fields the "
                             "preflight checks, and the challenge --cli submits to (its AIcrowd slug, unless "
                             f"${aicrowd_cli.ENV_CHALLENGE} names another)")
    parser.add_argument("--smoke-seconds", type=float, default=None,
                        help=f"length of the generated smoke song (default ${ENV_SMOKE_SECONDS} or "
                             f"{DEFAULT_SMOKE_SECONDS:g})")
    return parser


def _smoke_seconds(arg: float | None) -> float:
    value = arg if arg is not None else float(os.getenv(ENV_SMOKE_SECONDS) or DEFAULT_SMOKE_SECONDS)
    if not value > 0:
        raise SubmissionError(f"the smoke song must last more than 0 s, not {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # keep check lines in order with stderr messages
    try:
        return _run(args)
    except SubmissionError as exc:
        print(f"submit: error: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    repo = gitops.repo_root(Path.cwd())
    os.chdir(repo)
    tag = gitops.tag_for(args.version)
    smoke_seconds = _smoke_seconds(args.smoke_seconds)
    if not args.check:
        refusals = repository_refusals(repo, tag, args.cli)
        if refusals:
            for refusal in refusals:
                print(f"submit: refused: {refusal}", file=sys.stderr)
            print("submit: nothing was tagged or pushed", file=sys.stderr)
            return 1
    commit = gitops.head_commit(repo)
    print(f"submit: preflight for {tag} (commit {commit[:12]})")
    problems = run_preflight(repo, smoke_seconds, args.challenge)
    if problems:
        print(f"submit: preflight failed with {len(problems)} problem(s); nothing was tagged or pushed",
              file=sys.stderr)
        return 1
    if args.check:
        print("submit: preflight passed (--check: nothing tagged or pushed)")
        return 0
    if args.cli:
        slug = aicrowd_cli.default_challenge(get_challenge(args.challenge).aicrowd_slug)
        output = aicrowd_cli.create_submission(repo, tag, slug, tag)
        print(output.rstrip())
        print(f"submit: submitted {tag} ({commit[:12]}) with the AIcrowd CLI")
    else:
        submit_git(repo, tag, commit)
    return 0
