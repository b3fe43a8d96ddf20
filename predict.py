#!/usr/bin/env python
"""Entry points: the AIcrowd predictor class, the ``separate`` command and grader mode.

    python predict.py                      # grader mode: TEST_DATASET_PATH -> RESULTS_DATASET_PATH
    python predict.py separate MIX.wav ... --checkpoint CKPT --out DIR

The model file comes from ``--checkpoint`` (``separate``) or the ``MDX_MODEL`` environment
variable (predictor class), else the kit's default checkpoint.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Sequence

REPO_ROOT = Path(__file__).resolve().parent
if str(REPO_ROOT) not in sys.path:  # let `python predict.py` work from any directory
    sys.path.insert(0, str(REPO_ROOT))

from evaluator.music_demixing import ENV_PER_MUSIC_TIMEOUT, MusicDemixingPredictor  # noqa: E402
from models.constants import SOURCES  # noqa: E402

ENV_MODEL = "MDX_MODEL"
ENV_BACKEND = "MDX_BACKEND"
ENV_THREADS = "MDX_THREADS"
ENV_MODE = "MDX_MODE"
ENV_BUDGET_RULE = "MDX_BUDGET_RULE"        # round1 | round2 | none
ENV_BUDGET_SECONDS = "MDX_BUDGET_SECONDS"  # fixed seconds per track (overrides the rule)
ENV_BUDGET_RATIO = "MDX_BUDGET_RATIO"      # x track duration (overrides the rule)
ENV_BUDGET_MARGIN = "MDX_BUDGET_MARGIN"    # safety margin, fraction of the limit
ENV_EXTRAS = "MDX_EXTRAS"                  # 0 disables quality extras under a budget
#: Safety margin kept free of the per-track limit: this fraction of it, plus one second.
DEFAULT_MARGIN_FRACTION = 0.1
MARGIN_FIXED_S = 1.0
#: The kit's own trained checkpoint (see models/checkpoints/README.md).
DEFAULT_MODEL = REPO_ROOT / "models" / "checkpoints" / "lightsaft_small_mdxkit.ckpt"


class ModelNotFoundError(FileNotFoundError):
    """No model file where one was expected; the message says how to get one."""


def resolve_model_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The model to use: ``path``, else ``$MDX_MODEL``, else the default checkpoint."""
    chosen = path or os.getenv(ENV_MODEL) or DEFAULT_MODEL
    chosen = Path(chosen)
    if not chosen.is_file():
        raise ModelNotFoundError(
            f"model file not found: {chosen}. Pass --checkpoint PATH (a LightSAFT .ckpt, a state_dict "
            f".pt, or an exported .onnx/.ts) or set {ENV_MODEL}; the reference checkpoint with random "
            "weights is ../shared/reference/lightsaft_small_random.ckpt.")
    return chosen


class LightSAFTPredictor(MusicDemixingPredictor):
    """LightSAFT+GPoCM behind the AIcrowd ``MusicDemixingPredictor`` interface."""

    def __init__(self, model_path: str | os.PathLike[str] | None = None, backend: str | None = None,
                 threads: int | None = None, progress: bool = False, mode: str | None = None,
                 budget=None, margin_fraction: float | None = None, extras: bool | None = None) -> None:
        """``budget``: a :class:`evaluator.budget.BudgetRule` (default from ``MDX_BUDGET_*``,
        else none: the plain exact pass with no deadline)."""
        super().__init__()
        self.model_path = model_path
        self.backend = backend or os.getenv(ENV_BACKEND) or None
        self.mode = mode or os.getenv(ENV_MODE) or "exact"
        self.budget = budget if budget is not None else budget_from_env()
        env_margin = os.getenv(ENV_BUDGET_MARGIN)
        self.margin_fraction = (margin_fraction if margin_fraction is not None
                                else float(env_margin) if env_margin else DEFAULT_MARGIN_FRACTION)
        self.extras = extras if extras is not None else os.getenv(ENV_EXTRAS, "1") != "0"
        self.pass_seconds: float | None = None
        self.last_budget_report: dict | None = None
        env_threads = os.getenv(ENV_THREADS)
        self.threads = threads or (int(env_threads) if env_threads else None)
        self.progress = progress
        self.separator = None
        self.last_times: dict[str, float] = {}

    def prediction_setup(self) -> None:
        """Load the model once (the grader times this under its setup limit)."""
        from separation import load_separator, measure_pass_seconds

        self.separator = load_separator(resolve_model_path(self.model_path), self.backend, self.threads,
                                        mode=self.mode)
        if self.budget is not None and self.budget.kind != "none":
            # Plan with this machine's measured speed, never an assumed one.
            self.pass_seconds = measure_pass_seconds(self.separator)

    def prediction(self, mixture_file_path: str, bass_file_path: str, drums_file_path: str,
                   other_file_path: str, vocals_file_path: str) -> None:
        """Separate one mixture into the four given paths (written atomically)."""
        from separation import separate_file

        if self.separator is None:
            self.prediction_setup()
        out = {"bass": bass_file_path, "drums": drums_file_path,
               "other": other_file_path, "vocals": vocals_file_path}
        controller = self._controller(mixture_file_path)
        try:
            with _progress_bar(Path(mixture_file_path).name, self.progress) as progress:
                self.last_times = dict(separate_file(self.separator, mixture_file_path, out, progress,
                                                     budget=controller))
        finally:
            if controller is not None:
                controller.close()
                self.last_budget_report = controller.report()

    def _controller(self, mixture_file_path: str):
        """A deadline controller for this track, or None when no budget applies."""
        import time

        from audio_io import audio_info
        from separation import DeadlineController, extras_for

        self.last_budget_report = None
        if self.budget is None or self.budget.kind == "none":
            return None
        started = time.monotonic()
        frames, rate, _ = audio_info(mixture_file_path)
        limit = self.budget.limit_for(frames / rate)
        if os.getenv(ENV_PER_MUSIC_TIMEOUT):  # a grader's own hard limit wins when it is tighter
            limit = min(limit, self.inference_per_music_timeout)
        margin = self.margin_fraction * limit + MARGIN_FIXED_S
        extras = extras_for(self.separator.config.hop_length) if self.extras else ()
        return DeadlineController(deadline=started + limit - margin, pass_seconds=self.pass_seconds or 1.0,
                                  extras=extras, limit_s=limit, margin_s=margin)


def budget_from_env():
    """The BudgetRule named by ``MDX_BUDGET_RULE`` / ``_SECONDS`` / ``_RATIO``, or None."""
    from evaluator.budget import BudgetRule

    rule, seconds, ratio = (os.getenv(ENV_BUDGET_RULE), os.getenv(ENV_BUDGET_SECONDS),
                            os.getenv(ENV_BUDGET_RATIO))
    if not (rule or seconds or ratio):
        return None
    return BudgetRule.from_options(rule, float(seconds) if seconds else None, float(ratio) if ratio else None)


class _progress_bar:
    """tqdm over seconds of audio on stderr; silent when disabled or not a terminal."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label, self.enabled, self.bar = label, enabled, None

    def __enter__(self):
        if not self.enabled:
            return None
        from tqdm import tqdm

        from models.constants import SAMPLE_RATE

        def update(done: int, total: int) -> None:
            if self.bar is None:
                self.bar = tqdm(total=round(total / SAMPLE_RATE, 1), unit="s", desc=self.label,
                                file=sys.stderr, leave=True, disable=None,
                                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s audio [{elapsed}<{remaining}]")
            self.bar.n = round(done / SAMPLE_RATE, 1)
            self.bar.refresh()

        return update

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


def _output_stem_paths(out_dir: Path, mixture: Path) -> dict[str, Path]:
    folder = out_dir / mixture.stem
    return {s: folder / f"{s}.wav" for s in SOURCES}


def cmd_separate(args: argparse.Namespace) -> int:
    from audio_io import AudioError
    from models.checkpoint import CheckpointError

    try:
        model = resolve_model_path(args.checkpoint)
        budget = None
        if args.budget_rule or args.budget_seconds or args.budget_ratio:
            from evaluator.budget import BudgetRule

            budget = BudgetRule.from_options(args.budget_rule, args.budget_seconds, args.budget_ratio)
        predictor = LightSAFTPredictor(model, args.backend, args.threads, progress=not args.quiet, mode=args.mode,
                                       budget=budget, margin_fraction=args.margin,
                                       extras=False if args.no_extras else None)
        predictor.prediction_setup()
    except (ModelNotFoundError, CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stems = {Path(m): _output_stem_paths(Path(args.out), Path(m)) for m in args.mixtures}
    duplicates = len({tuple(p.values())[0] for p in stems.values()}) < len(stems)
    if duplicates:
        print("error: two inputs share a file name; their stems would overwrite each other", file=sys.stderr)
        return 2
    failures = 0
    for mixture, paths in stems.items():
        try:
            predictor.prediction(str(mixture), **{f"{s}_file_path": str(p) for s, p in paths.items()})
        except AudioError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failures += 1
            continue
        if not args.quiet:
            print(f"{mixture} -> {paths['vocals'].parent}/{{{','.join(SOURCES)}}}.wav", file=sys.stderr)
            report = predictor.last_budget_report
            if report is not None:
                print(f"  budget {report['limit_s']:.1f} s: took {report['wall_s']:.1f} s, "
                      f"{report['done']['extras_done']} extra pass(es), degradation: {report['degradation']}",
                      file=sys.stderr)
    return 1 if failures else 0


def cmd_grader(args: argparse.Namespace) -> int:
    from evaluator.budget import BudgetRule

    # As a submission, plan every song against the round-2 rule unless MDX_BUDGET_* says otherwise.
    budget = budget_from_env() or BudgetRule.round2()
    predictor = LightSAFTPredictor(args.checkpoint, args.backend, args.threads, progress=False, mode=args.mode,
                                   budget=budget)
    predictor.run()
    print(f"stems written under {predictor.results_data_path}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="predict.py", description="LightSAFT+GPoCM music demixing (vocals, drums, bass, other).")
    sub = parser.add_subparsers(dest="command")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--checkpoint", "--model", dest="checkpoint", default=None,
                       help=f"model file (.ckpt, .pt, .onnx, .ts); default ${ENV_MODEL} or {DEFAULT_MODEL.relative_to(REPO_ROOT)}")
        p.add_argument("--backend", choices=["torch", "torchscript", "onnx"], default=None,
                       help="inference backend; default: from the model file's ending")
        p.add_argument("--threads", type=int, default=None,
                       help="intra-op CPU threads (default: the CPUs this process may use)")
        p.add_argument("--mode", choices=["exact", "fast"], default=None,
                       help="exact: the original's windowing (default); fast: approximate, shorter trims and cross-faded windows")

    sep = sub.add_parser("separate", help="separate audio files into DIR/<name>/<source>.wav")
    sep.add_argument("mixtures", nargs="+", help="input audio files (any rate, mono or stereo)")
    sep.add_argument("--out", required=True, help="output folder")
    sep.add_argument("--quiet", action="store_true", help="no progress bar")
    budget = sep.add_mutually_exclusive_group()
    budget.add_argument("--budget-rule", choices=["round1", "round2", "none"], default=None,
                        help="per-track time limit as the MDX grader set it (default: none)")
    budget.add_argument("--budget-seconds", type=float, default=None, help="per-track limit in seconds")
    budget.add_argument("--budget-ratio", type=float, default=None, help="per-track limit as a multiple of its duration")
    sep.add_argument("--margin", type=float, default=None,
                     help=f"safety margin as a fraction of the limit (default {DEFAULT_MARGIN_FRACTION}, plus {MARGIN_FIXED_S:g} s)")
    sep.add_argument("--no-extras", action="store_true", help="under a budget, never spend spare time on extras")
    common(sep)
    grader = sub.add_parser("grade", help="grader mode (the default with no command)")
    common(grader)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.simplefilter("default", category=UserWarning)
    if args.command == "separate":
        return cmd_separate(args)
    if args.command is None:
        args = parser.parse_args(["grade", *(argv or [])])
    return cmd_grader(args)


if __name__ == "__main__":
    sys.exit(main())
