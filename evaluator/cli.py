"""``python -m evaluator``: run a predictor over a dataset like the MDX grader, then score it.

    python -m evaluator --checkpoint CKPT --out RUN_DIR                 # the synthetic demo set
    python -m evaluator --data DIR --checkpoint CKPT --out RUN_DIR      # MDX layout
    python -m evaluator --musdb ROOT [--subset test] [--is-wav] ...     # MUSDB18 / MUSDB18-HQ
    python -m evaluator --stempeg-excerpt ...                           # the excerpt inside stempeg
    python -m evaluator --checkpoint A --checkpoint B --out RUN_DIR     # models side by side

Exit status: 0 when every song produced valid stems inside its budget, 1 when any song missed
its budget or failed, 2 for unusable input (no checkpoint, bad data folder, mismatched RUN_DIR).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from separation.backends import PRECISIONS, available_cpus
from separation.challenges import CHALLENGES, DEFAULT_CHALLENGE, get_challenge
from separation.loading import BACKEND_CHOICES
from separation.settings import ENV_THREADS
from separation.budget import (ROUND1_SECONDS_PER_SONG, ROUND2_DURATION_RATIO, RULE_NAMES, SETUP_TIMEOUT_S, BudgetError,
                     BudgetRule)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DEMO_DIR = REPO_ROOT / "data" / "demo"


def no_checkpoint_help() -> str:
    """How to get a model, printed when none is found (never a silent fallback)."""
    from models import DEFAULT_CHECKPOINT, DEFAULT_MODEL

    return ("The evaluator never falls back to random weights. To get the kit's trained default, train it "
            f"(python -m training.train, see docs/TRAINING.md) into {DEFAULT_CHECKPOINT.relative_to(REPO_ROOT)} "
            f"and export it to {DEFAULT_MODEL.relative_to(REPO_ROOT)} (python -m export); to check the pipeline alone, pass --checkpoint "
            "../shared/reference/lightsaft_small_random.ckpt (random weights, meaningless scores).")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m evaluator",
        description="Grader-like local evaluation: MDX SDR per song and latency against the MDX budget.")
    data = p.add_mutually_exclusive_group()
    data.add_argument("--data", metavar="DIR", help="MDX layout: DIR/<song>/mixture.wav (+ the four stems)")
    data.add_argument("--musdb", metavar="ROOT", help="MUSDB18 root (train/ and test/), read through musdb")
    data.add_argument("--stempeg-excerpt", action="store_true",
                      help="the real four-stem excerpt shipped inside the stempeg package (needs ffmpeg)")
    data.add_argument("--demo", metavar="DIR", nargs="?", const=str(DEFAULT_DEMO_DIR),
                      help=f"the synthetic demo set (default when no data is given; generated in "
                           f"{DEFAULT_DEMO_DIR.relative_to(REPO_ROOT)} when absent)")
    p.add_argument("--subset", default="test", help="MUSDB18 subset (default: test)")
    p.add_argument("--is-wav", action="store_true", help="MUSDB18-HQ: WAV folders instead of stem MP4s")
    p.add_argument("--songs", help="comma-separated song names to evaluate (default: all)")
    p.add_argument("--checkpoint", "--model", dest="checkpoint", action="append",
                   help="model (file, or an Open-Unmix folder); default $MDX_MODEL or the kit's default model. "
                        "Repeat it to compare models on the same songs: RUN_DIR/<model>/ each, and a comparison "
                        "table in RUN_DIR/report.md")
    p.add_argument("--out", required=True, metavar="RUN_DIR",
                   help="run folder: stems, scores.json, latency.json, report.md, latency.png")
    p.add_argument("--challenge", choices=list(CHALLENGES), default=DEFAULT_CHALLENGE,
                   help=f"whose grader to imitate (default {DEFAULT_CHALLENGE}): its per-song limit, setup limit, "
                        "threads and predictor interface (mdx21-round1: 240 s per song; mdx21: 1.57 x duration; "
                        "sdx23: 1.57 x duration, 4 threads, separate_music_file arrays); the options below win")
    p.add_argument("--budget-rule", choices=RULE_NAMES, default=None, action="append",
                   help=f"round1: {ROUND1_SECONDS_PER_SONG:g} s per song; round2: {ROUND2_DURATION_RATIO:g} x "
                        "song duration; none: no limit (default: the challenge's). Repeat it to compare rules in "
                        "one run (with several --checkpoint: every model under every rule)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--budget-seconds", type=float, metavar="S", help="fixed limit per song (overrides the rule)")
    budget.add_argument("--budget-ratio", type=float, metavar="R",
                        help="limit = R x song duration (overrides the rule)")
    p.add_argument("--setup-timeout", type=float, default=None, metavar="S",
                   help=f"limit for prediction_setup() (default: the challenge's, {SETUP_TIMEOUT_S:g} s for MDX21)")
    p.add_argument("--enforce", action="store_true",
                   help="stop a song at its limit, as the grader did (it then has no stems and no score); "
                        "by default a song may finish, is scored, and a miss is flagged")
    p.add_argument("--backend", choices=BACKEND_CHOICES,
                   help="inference runtime (default auto, as grader mode: see `python predict.py separate --help`)")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="fp32 (exact, default) or an approximate precision past its quality gate")
    p.add_argument("--threads", type=int, help="intra-op CPU threads for the predictor")
    p.add_argument("--niter", type=int, help="Open-Unmix models: Wiener post-filter iterations (default 1)")
    p.add_argument("--plain", action="store_true",
                   help="run the reproducible plain pass (no deadline planning, no extras) instead of what grader "
                        "mode would submit")
    p.add_argument("--predictor", default=None, metavar="MODULE:CLASS",
                   help="MusicDemixingPredictor subclass to run (default: the one grader mode runs; another class "
                        "is constructed without arguments, like the grader)")
    p.add_argument("--museval", action="store_true",
                   help="also compute BSSEval v4 SDR with museval (slow; needs ffmpeg for its imports)")
    p.add_argument("--no-oracle", action="store_true", help="skip the mixture/4 and oracle IRM reference rows")
    p.add_argument("--profile", action="store_true",
                   help="after the run, separate the slowest song again under the runtime's own profiler (ONNX "
                        "Runtime's trace, OpenVINO's counters or torch.profiler): top operators in the report, the "
                        "raw trace in RUN_DIR/profile/")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="separate songs in N local worker processes (each loads the model once, runs one song at "
                        "a time with --threads threads, and times it itself); a worker that dies costs its song one "
                        "retry elsewhere (default 1: in this process)")
    p.add_argument("--ray", nargs="?", const="auto", default=None, metavar="ADDRESS",
                   help="separate songs on Ray actors: `--ray` or `--ray auto` starts a local cluster, an address "
                        "joins an existing one (its nodes must see RUN_DIR and the data at the same paths); "
                        "--workers N caps the actors (default: the cluster's CPUs / --threads)")
    p.add_argument("--quiet", action="store_true", help="no per-song progress bar")
    return p


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _dataset_spec(args: argparse.Namespace, out_dir: Path):
    """What the options say the data is, in a form worker processes can rebuild it from."""
    from .harness import INPUTS_DIR, STATE_DIR
    from .workers import DatasetSpec

    songs = tuple(s.strip() for s in args.songs.split(",") if s.strip()) if args.songs else None
    scratch = str(out_dir / STATE_DIR / INPUTS_DIR)
    if args.data:
        return DatasetSpec("data", args.data, scratch, songs=songs)
    if args.musdb:
        return DatasetSpec("musdb", args.musdb, scratch, args.subset, args.is_wav, songs)
    if args.stempeg_excerpt:
        return DatasetSpec("stempeg", None, scratch)
    return DatasetSpec("demo", str(args.demo or DEFAULT_DEMO_DIR), scratch, songs=songs)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from separation.settings import ModelNotFoundError, grader_settings

    from .datasets import DatasetError
    from .harness import DEFAULT_PREDICTOR, RunDirError, SetupError

    models = args.checkpoint or [None]
    try:
        challenge = get_challenge(args.challenge)
        if args.budget_seconds is not None or args.budget_ratio is not None:  # they override any rule
            budgets = [BudgetRule.from_options(None, args.budget_seconds, args.budget_ratio)]
        elif args.budget_rule:
            budgets = [BudgetRule.named(rule) for rule in dict.fromkeys(args.budget_rule)]
        else:
            budgets = [challenge.budget]
        if args.setup_timeout is None:
            args.setup_timeout = challenge.setup_timeout_s
        if args.setup_timeout <= 0:
            raise BudgetError("--setup-timeout must be positive")
        if args.threads is None and not os.environ.get(ENV_THREADS):
            # the grader's threads, as far as this machine has them
            args.threads = min(challenge.grader_threads, available_cpus())
        if args.workers < 1:
            raise ValueError("--workers must be at least 1")
        if len(models) > 1 and args.predictor:
            raise ValueError("--predictor runs one class; compare models with the kit's predictor")
        # What grader mode would submit: its settings from this environment, planned against the
        # limit this run times songs with (unless MDX_BUDGET_* says otherwise), or the plain pass.
        runs = []  # (predictor settings, budget) for every model under every rule
        for model in models:
            for budget in budgets:
                predictor_settings = grader_settings(os.environ, default_budget=budget, model=model,
                                                     backend=args.backend, threads=args.threads,
                                                     precision=args.precision, progress=not args.quiet,
                                                     niter=args.niter,
                                                     output_format="float")  # scores are always of float stems
                if args.plain:
                    predictor_settings = predictor_settings.replace(budget=None)
                predictor_settings.model_path()
                runs.append((predictor_settings, budget))
    except ModelNotFoundError as exc:
        return _error(f"{exc}\n{no_checkpoint_help()}")
    except (BudgetError, ValueError) as exc:
        return _error(str(exc))
    out_dir = Path(args.out).expanduser().resolve()
    try:
        if args.museval:
            from .scoring import _import_museval

            _import_museval()  # fail before hours of separation, not after
        args.dataset_spec = _dataset_spec(args, out_dir)
        dataset = args.dataset_spec.load()
        if len(runs) == 1:
            predictor_settings, budget = runs[0]
            settings = _eval_settings(args, out_dir, predictor_settings, budget, DEFAULT_PREDICTOR)
            return _run_one(dataset, settings, budget, args)
        return _compare(args, dataset, out_dir, runs, len(budgets) > 1)
    except (DatasetError, RunDirError, ValueError) as exc:
        return _error(str(exc))
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _eval_settings(args: argparse.Namespace, out_dir: Path, predictor_settings, budget: BudgetRule, default: str):
    from .harness import EvalSettings

    return EvalSettings(out_dir=out_dir, predictor_settings=predictor_settings, budget=budget,
                        setup_timeout_s=args.setup_timeout, enforce=args.enforce, museval=args.museval,
                        oracle=not args.no_oracle, predictor=args.predictor or default, challenge=args.challenge)


def _evaluate(dataset, settings, budget: BudgetRule, args: argparse.Namespace):
    """Run one model (over --workers processes; and profile its slowest song when asked); returns
    (result, report paths)."""
    from .harness import evaluate
    from .ray_workers import evaluate_ray
    from .workers import evaluate_parallel
    from .reports import write_reports
    from .scoring import ScoringError

    ps = settings.predictor_settings
    plan = ps.budget.describe() if ps.budget else "none (plain pass)"
    print(f"[evaluator] {dataset.description}; model {ps.model_path()}; {settings.challenge} rules: songs timed "
          f"against {budget.describe()} through the {get_challenge(settings.challenge).interface} interface; the "
          f"predictor plans against {plan}", file=sys.stderr, flush=True)
    try:
        if args.ray:
            result = evaluate_ray(dataset, args.dataset_spec, settings, args.ray,
                                  args.workers if args.workers > 1 else None)
        elif args.workers > 1:
            result = evaluate_parallel(dataset, args.dataset_spec, settings, args.workers)
        else:
            result = evaluate(dataset, settings)
    except ScoringError as exc:
        raise ValueError(str(exc)) from None
    if args.profile:
        _profile_slowest(dataset, result, settings)
    return result, write_reports(result, settings, dataset.description)


def _profile_slowest(dataset, result, settings) -> None:
    from separation.profiling import profile_track

    from .reports import PROFILE_DIR

    done = [r for r in result.records if r["status"] == "ok" and r.get("rtf") is not None]
    if not done:
        print("[evaluator] --profile: no song finished, nothing to profile", file=sys.stderr)
        return
    slowest = max(done, key=lambda r: r["rtf"])
    song = next(s for s in dataset.songs if s.name == slowest["song"])
    print(f"[evaluator] profiling {song.name} (the slowest song, RTF {slowest['rtf']:.2f}) ...", file=sys.stderr,
          flush=True)
    if song.prepare is not None:
        song.prepare()
    try:
        profile_track(settings.predictor_settings, song.mixture_path, settings.out_dir / PROFILE_DIR)
    finally:
        if song.release is not None:
            song.release()


def _ok(result) -> bool:
    return all(r["status"] == "ok" and not r.get("miss") for r in result.records)


def _run_one(dataset, settings, budget: BudgetRule, args: argparse.Namespace) -> int:
    from .reports import terminal_summary

    result, paths = _evaluate(dataset, settings, budget, args)
    print(terminal_summary(result, settings))
    print(f"\nreport: {paths['report.md']}\nreport (pictures): {paths['report.html']}")
    return 0 if _ok(result) else 1


def _compare(args: argparse.Namespace, dataset, out_dir: Path, runs: list, by_rule: bool) -> int:
    """Every (model, budget rule) of ``runs`` on the same songs, one after another, then the table."""
    from .comparison import comparison_row, comparison_table, run_labels, write_comparison
    from .harness import DEFAULT_PREDICTOR
    from .reports import latency_report, scores_report

    rows, ok = [], True
    labels = run_labels([s.model_path() for s, _ in runs], [b.name for _, b in runs] if by_rule else None)
    for label, (predictor_settings, budget) in zip(labels, runs):
        settings = _eval_settings(args, out_dir / label, predictor_settings, budget, DEFAULT_PREDICTOR)
        result, _ = _evaluate(dataset, settings, budget, args)
        ok = ok and _ok(result)
        predictor = (result.sessions[-1] if result.sessions else {}).get("predictor")
        row = comparison_row(label, scores_report(result, dataset.description), latency_report(result, budget),
                             predictor)
        row["budget"] = budget.describe()
        rows.append(row)
    budgets = "; ".join(dict.fromkeys(row["budget"] for row in rows))
    paths = write_comparison(out_dir, rows, dataset.description, budgets)
    print(comparison_table(rows))
    print(f"\nreport: {paths['report.md']}\nreport (pictures): {paths['report.html']}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
