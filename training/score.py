"""Score one checkpoint on several validation sets: the number the selection rules compare.

Each set is evaluated exactly as ``python -m evaluator --data SET`` would (the kit's predictor,
the round-2 time budget, MDX SDR), one run folder per set under ``--out``. The score is the mean
of the sets' mean MDX SDR: the sets hold the same songs in different soundfonts, so each
rendering counts once. The separated stems are deleted after scoring (``--keep-stems`` keeps
them): a checkpoint's stems for 30 min of music take about 1.3 GB, and a leg scores many.

    python -m training.score CKPT --data data/split2/fluid_validation --data data/split2/msg_validation \\
        --data data/split2/tim_validation --out results/split2_step_024000
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from evaluator import cli as evaluator_cli
from core.files import atomic_write_text
from core.constants import SOURCES

SCORE_NAME = "score.json"


class ScoreError(RuntimeError):
    """A set could not be scored in full, so the checkpoint has no valid score."""


def set_folders(out: Path, sets: Sequence[Path]) -> list[Path]:
    """One run folder per set, numbered so that two sets with the same folder name never share one."""
    return [out / f"{i}_{Path(s).name}" for i, s in enumerate(sets, start=1)]


def score_checkpoint(checkpoint: Path, sets: Sequence[Path], out: Path, *, threads: int | None = None,
                     keep_stems: bool = False) -> dict:
    """Evaluate ``checkpoint`` on every set; returns (and writes to ``out/score.json``) the scores.

    Raises :class:`ScoreError` when a set's evaluation fails or leaves a song unscored (a missed
    time budget still counts: the grader scored late songs too, and the report flags them).
    """
    if not sets:
        raise ScoreError("give at least one set to score on (--data)")
    result: dict = {"checkpoint": str(checkpoint), "sets": {}}
    for data, run_dir in zip(sets, set_folders(out, sets)):
        argv = ["--data", str(data), "--checkpoint", str(checkpoint), "--out", str(run_dir), "--quiet"]
        if threads:
            argv += ["--threads", str(threads)]
        rc = evaluator_cli.main(argv)
        scores_path = run_dir / "scores.json"
        if not scores_path.is_file():
            raise ScoreError(f"the evaluation of {data} wrote no scores (exit {rc}); see the messages above")
        scores = json.loads(scores_path.read_text())
        if scores["n_scored"] != scores["n_songs"]:
            raise ScoreError(f"{data}: {scores['n_songs'] - scores['n_scored']} of {scores['n_songs']} songs "
                             f"unscored ({'; '.join(f'{k}: {v}' for k, v in scores['unscored'].items())}); "
                             f"see {run_dir / 'report.md'}")
        if not keep_stems:
            for wav in run_dir.glob("*/*.wav"):
                wav.unlink()
        result["sets"][str(data)] = {"run_dir": str(run_dir), "n_songs": scores["n_songs"],
                                     **{k: scores["mean"][k] for k in ["sdr", *(f"sdr_{s}" for s in SOURCES)]}}
    result["score"] = sum(s["sdr"] for s in result["sets"].values()) / len(result["sets"])
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / SCORE_NAME, json.dumps(result, indent=2) + "\n")
    return result


def summary(result: dict) -> str:
    """A few lines: each set's mean MDX SDR per source, then the score."""
    lines = [f"{'set':<40} {'SDR':>7} " + " ".join(f"{s:>7}" for s in SOURCES)]
    for name, s in result["sets"].items():
        lines.append(f"{name:<40} {s['sdr']:7.3f} " + " ".join(f"{s[f'sdr_{src}']:7.3f}" for src in SOURCES))
    lines.append(f"score (mean of the {len(result['sets'])} sets): {result['score']:.3f} dB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="the checkpoint to score")
    parser.add_argument("--data", type=Path, action="append", default=[], required=True,
                        help="a validation set in the MDX layout (repeatable; each counts once)")
    parser.add_argument("--out", type=Path, required=True, help="folder for one evaluator run per set and score.json")
    parser.add_argument("--threads", type=int, help="intra-op CPU threads for the predictor")
    parser.add_argument("--keep-stems", action="store_true", help="keep the separated stems")
    args = parser.parse_args(argv)
    try:
        result = score_checkpoint(args.checkpoint, args.data, args.out, threads=args.threads,
                                  keep_stems=args.keep_stems)
    except ScoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(summary(result))
    print(f"wrote {args.out / SCORE_NAME}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
