#!/usr/bin/env python
"""Entry points: grader mode, the ``separate`` command, and the predictor class a grader runs.

    python predict.py                      # grader mode: TEST_DATASET_PATH -> RESULTS_DATASET_PATH
    python predict.py separate MIX.wav ... --checkpoint CKPT --out DIR [--workers N]

Grader mode builds its :class:`~separation.settings.PredictorSettings` from the grader's
environment (``MDX_*`` variables over the submission defaults: the default model on the auto runtime, every
song planned against the round-2 budget); ``separate`` builds them from its options. Any
registered architecture runs: the model file says which it holds.
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

from core.clock import process_started_monotonic  # noqa: E402
from core.audio import OUTPUT_FORMATS  # noqa: E402
from core.constants import SOURCES  # noqa: E402
from models import DEFAULT_MODEL  # noqa: E402
from separation.loading import BACKEND_CHOICES  # noqa: E402
from separation.backends import PRECISIONS  # noqa: E402
from separation.predictor import KitPredictor  # noqa: E402
from separation.settings import (DEFAULT_MARGIN_FRACTION, WHOLE_COMMAND_MARGIN_FIXED_S, ModelNotFoundError,  # noqa: E402
                                 PredictorSettings, budget_from_options, grader_settings)

#: The class grader mode runs (the evaluator and the submit preflight run the same one).
PREDICTOR_CLASS = KitPredictor
#: The name earlier versions of the kit exported; the same class.
LightSAFTPredictor = KitPredictor


_AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".mp3")


def _expand_inputs(paths: Sequence[str]) -> list[tuple[Path, str]]:
    """(mixture file, output name) per input: a file is itself; a folder gives its audio files and
    the ``mixture.wav`` of each song folder in it (named after the song folder)."""
    found: list[tuple[Path, str]] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            found.append((path, path.stem))
            continue
        for item in sorted(path.iterdir()):
            if item.is_file() and item.suffix.lower() in _AUDIO_SUFFIXES:
                found.append((item, item.stem))
            elif (item / "mixture.wav").is_file():
                found.append((item / "mixture.wav", item.name))
    return found


def _output_stem_paths(out_dir: Path, name: str, suffix: str = ".wav") -> dict[str, Path]:
    folder = out_dir / name
    return {s: folder / f"{s}{suffix}" for s in SOURCES}


def cmd_separate(args: argparse.Namespace) -> int:
    from core.audio import AudioError

    try:
        settings = PredictorSettings(
            model=args.checkpoint, backend=args.backend, threads=args.threads,
            precision=args.precision or "fp32",
            budget=budget_from_options(args.budget_rule, args.budget_seconds, args.budget_ratio),
            margin_fraction=DEFAULT_MARGIN_FRACTION if args.margin is None else args.margin,
            extras=not args.no_extras, progress=not args.quiet, niter=args.niter, output_format=args.format or "float")
        settings.model_path()
        predictor = PREDICTOR_CLASS(settings)
        if settings.budgeted and args.started is not None:
            predictor.next_track_started = args.started  # the budget times the whole command
        predictor.prediction_setup()
    except (ModelNotFoundError, ValueError) as exc:  # CheckpointError, ArtifactError, UmxError... are ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        info = predictor.describe()
        print(f"model {info['model']}: {info['architecture']} on {info['backend']} {info['precision']} "
              f"({info['backend_choice']})", file=sys.stderr)
        if info["quality_gate"]:
            print(f"  {info['precision']} passed its quality gate: {info['quality_gate']}", file=sys.stderr)
    suffix = OUTPUT_FORMATS[settings.output_format].suffix
    stems = {m: _output_stem_paths(Path(args.out), name, suffix) for m, name in _expand_inputs(args.mixtures)}
    if not stems:
        print(f"error: no audio files in {', '.join(args.mixtures)}", file=sys.stderr)
        return 2
    duplicates = len({tuple(p.values())[0] for p in stems.values()}) < len(stems)
    if duplicates:
        print("error: two inputs share a file name; their stems would overwrite each other", file=sys.stderr)
        return 2
    if (args.workers > 1 or args.ray) and len(stems) > 1:
        del predictor  # the workers load their own
        return _separate_in_workers(settings, stems, args)
    failures = 0
    for mixture, paths in stems.items():
        try:
            predictor.prediction(str(mixture), **{f"{s}_file_path": str(p) for s, p in paths.items()})
        except AudioError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failures += 1
            continue
        clipped = {name: n for name, n in predictor.last_clipped.items() if n}
        if clipped:  # said even with --quiet: the file differs from the float output
            print(f"  {mixture}: clipped to [-1, 1] for {settings.output_format}: "
                  + ", ".join(f"{n} samples of {name}" for name, n in clipped.items()), file=sys.stderr)
        if not args.quiet:
            print(f"{mixture} -> {paths['vocals'].parent}/{{{','.join(SOURCES)}}}{suffix}", file=sys.stderr)
            report = predictor.last_budget_report
            if report is not None:
                print(f"  budget {report['limit_s']:.1f} s: took {report['wall_s']:.1f} s, "
                      f"{report['done']['extras_done']} extra pass(es), degradation: {report['degradation']}",
                      file=sys.stderr)
    status = 1 if failures else 0
    if predictor.abandoned_calls:
        # A network call abandoned at the deadline still runs in a worker thread, and the
        # interpreter would wait for it at exit: the stems are written, so leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


def _separate_in_workers(settings: PredictorSettings, stems: dict[Path, dict[str, Path]],
                         args: argparse.Namespace) -> int:
    """Files over ``--workers`` processes, one progress bar over the whole batch's audio."""
    from core.audio import audio_info
    from separation.batch import separate_many, separate_many_ray

    seconds = {}
    for mixture in stems:
        try:
            frames, rate, _ = audio_info(mixture)
            seconds[str(mixture)] = frames / rate
        except Exception:  # noqa: BLE001 - the worker reports the file's own error
            seconds[str(mixture)] = 0.0
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=round(sum(seconds.values()), 1), unit="s", file=sys.stderr,
                   desc=f"{len(stems)} files, " + (f"Ray {args.ray}" if args.ray else f"{args.workers} workers"),
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s audio [{elapsed}<{remaining}]")
    jobs = {str(m): {s: str(p) for s, p in paths.items()} for m, paths in stems.items()}
    failures = 0
    results = (separate_many_ray(settings, jobs, args.ray, args.workers if args.workers > 1 else None) if args.ray
               else separate_many(settings, jobs, args.workers))
    for mixture, info, error in results:
        if bar is not None:
            bar.update(round(seconds[mixture], 1))
        if error is not None:
            failures += 1
            print(f"error: {mixture}: {error}", file=sys.stderr)
            continue
        clipped = {name: n for name, n in (info.get("clipped") or {}).items() if n}
        if clipped:
            print(f"  {mixture}: clipped to [-1, 1] for {settings.output_format}: "
                  + ", ".join(f"{n} samples of {name}" for name, n in clipped.items()), file=sys.stderr)
    if bar is not None:
        bar.close()
    print(f"{len(stems) - failures} of {len(stems)} file(s) separated into {args.out}", file=sys.stderr)
    return 1 if failures else 0


def cmd_grader(args: argparse.Namespace) -> int:
    """Grader mode: the only place that reads the grader's environment into settings."""
    settings = grader_settings(os.environ, model=args.checkpoint, backend=args.backend, threads=args.threads,
                               precision=args.precision, niter=args.niter, output_format=args.format)
    predictor = PREDICTOR_CLASS(settings)
    predictor.run()
    print(f"stems written under {predictor.results_data_path}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="predict.py", description="Music demixing (vocals, drums, bass, other) with any model the kit supports.")
    sub = parser.add_subparsers(dest="command")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--checkpoint", "--model", dest="checkpoint", default=None,
                       help=f"model (.ckpt, .pt, .onnx, .ts; a demucs .th; an Open-Unmix model folder); default "
                            f"{DEFAULT_MODEL.relative_to(REPO_ROOT)} ($MDX_MODEL in grader mode)")
        p.add_argument("--backend", choices=BACKEND_CHOICES, default=None,
                       help="inference runtime (default auto: OpenVINO for .onnx on a CPU, ONNX Runtime's CUDA "
                            "provider on an NVIDIA GPU, torch for checkpoints, torchscript for .ts)")
        p.add_argument("--precision", choices=PRECISIONS, default=None,
                       help="fp32 (exact, the default) or an approximate precision that has passed its quality "
                            "gate for the model file; without native support on this CPU it runs fp32 and says so "
                            "($MDX_PRECISION in grader mode)")
        p.add_argument("--threads", type=int, default=None,
                       help="intra-op CPU threads (default: the CPUs this process may use)")
        p.add_argument("--format", choices=list(OUTPUT_FORMATS), default=None,
                       help="stem encoding: float (32-bit float WAV, default, what graders read), wav16, wav24 "
                            "(clipped to [-1, 1], the command says when), flac (24-bit, .flac files) "
                            "($MDX_FORMAT in grader mode)")
        p.add_argument("--niter", type=int, default=None,
                       help="Open-Unmix models: Wiener post-filter iterations (default 1, as the openunmix "
                            "package; 0 = magnitudes with the mixture phase; $MDX_NITER in grader mode)")

    sep = sub.add_parser("separate", help="separate audio files into DIR/<name>/<source>.wav")
    sep.add_argument("mixtures", nargs="+",
                     help="input audio files (any rate, mono or stereo), or folders of them (or of song folders "
                          "holding mixture.wav)")
    sep.add_argument("--out", required=True, help="output folder")
    sep.add_argument("--quiet", action="store_true", help="no progress bar")
    budget = sep.add_mutually_exclusive_group()
    budget.add_argument("--budget-rule", choices=["round1", "round2", "none"], default=None,
                        help="per-track time limit as the MDX grader set it (default: none)")
    budget.add_argument("--budget-seconds", type=float, default=None, help="per-track limit in seconds")
    budget.add_argument("--budget-ratio", type=float, default=None, help="per-track limit as a multiple of its duration")
    sep.add_argument("--margin", type=float, default=None,
                     help=f"safety margin as a fraction of the limit (default {DEFAULT_MARGIN_FRACTION}, "
                          f"plus {WHOLE_COMMAND_MARGIN_FIXED_S:g} s: the budget counts the whole command, from "
                          "the process start)")
    sep.add_argument("--no-extras", action="store_true", help="under a budget, never spend spare time on extras")
    sep.add_argument("--workers", type=int, default=1, metavar="N",
                     help="separate the files in N worker processes (each loads the model once; use --threads to "
                          "share the CPUs between them); one progress bar over the batch")
    sep.add_argument("--ray", nargs="?", const="auto", default=None, metavar="ADDRESS",
                     help="separate the files on Ray actors instead: `--ray` starts a local cluster, an address "
                          "joins one (its nodes must see the files and OUT at the same paths)")
    common(sep)
    grader = sub.add_parser("grade", help="grader mode (the default with no command)")
    common(grader)
    return parser


def main(argv: Sequence[str] | None = None, started: float | None = None) -> int:
    """Run a command; ``started`` (a ``time.monotonic()`` instant) is when the first track's budget
    begins, the process start when run as a script (a caller in the same process leaves it None:
    the budget then starts at the track's call)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.started = started
    warnings.simplefilter("default", category=UserWarning)
    if args.command == "separate":
        return cmd_separate(args)
    if args.command is None:
        args = parser.parse_args(["grade", *(argv or [])])
        args.started = started
    return cmd_grader(args)


if __name__ == "__main__":
    sys.exit(main(started=process_started_monotonic()))
