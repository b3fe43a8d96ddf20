"""Deadline stress benchmark: ``python -m evaluator.stress CKPT [--songs 3] [--budget-rule round2]``.

Separates a batch of songs under a per-song budget while background processes keep every CPU
busy, once with quality extras and once without, each song under the grader's hard limit
(SIGALRM). Prints deadline misses (the goal is 0) and mean MDX SDR for both, and writes
``stress.json`` and ``stress.md``. The CPU hogs stop by themselves after ``--max-seconds``.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np


def _hog(until: float) -> None:
    """Burn one CPU until ``until`` (time.time()), then exit."""
    x = 0
    while time.time() < until:
        for _ in range(100_000):
            x += 1


def run_batch(checkpoint: str, songs: list, rule, extras: bool, out_dir: Path, backend: str | None,
              threads: int | None) -> dict:
    """Set up a predictor under contention and run every song under its limit."""
    from core.audio import audio_info
    from evaluator.datasets import read_float64
    from separation.music_demixing import TimeoutException, time_limit
    from evaluator.scoring import mean_scores, song_scores
    from core.constants import SOURCES
    from separation.predictor import KitPredictor
    from separation.settings import PredictorSettings

    predictor = KitPredictor(PredictorSettings(model=checkpoint, backend=backend, threads=threads, budget=rule,
                                               extras=extras))
    t0 = time.perf_counter()
    predictor.prediction_setup()
    setup_s = time.perf_counter() - t0
    rows = []
    for song in songs:
        frames, rate, _ = audio_info(song / "mixture.wav")
        limit = rule.limit_for(frames / rate)
        paths = {s: out_dir / song.name / f"{s}.wav" for s in SOURCES}
        started = time.perf_counter()
        missed = False
        try:
            with time_limit(limit, song.name):
                predictor.prediction(str(song / "mixture.wav"), **{f"{s}_file_path": str(p) for s, p in paths.items()})
        except TimeoutException:
            missed = True
        wall = time.perf_counter() - started
        missed = missed or wall > limit
        row = {"song": song.name, "duration_s": frames / rate, "limit_s": limit, "wall_s": wall,
               "missed": missed, "budget": predictor.last_budget_report}
        if not missed:
            refs = {s: read_float64(song / f"{s}.wav") for s in SOURCES}
            ests = {s: read_float64(p) for s, p in paths.items()}
            row["scores"] = song_scores(refs, ests)
        rows.append(row)
        extras_done = (row["budget"] or {}).get("done", {}).get("extras_done")
        print(f"[stress] extras={'on' if extras else 'off'} {song.name}: {wall:.1f} s of {limit:.1f} s, "
              f"{'MISSED' if missed else 'ok'}, extras {extras_done}, "
              f"SDR {row.get('scores', {}).get('sdr', float('nan')):.2f}", file=sys.stderr, flush=True)
    scored = [r["scores"] for r in rows if "scores" in r]
    return {"extras": extras, "setup_s": setup_s, "pass_seconds": predictor.pass_seconds, "songs": rows,
            "misses": sum(r["missed"] for r in rows), "mean": mean_scores(scored),
            "min_margin_s": min(r["limit_s"] - r["wall_s"] for r in rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluator.stress", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="model file (.ckpt, .onnx, .ts)")
    parser.add_argument("--data", default=None, help="MDX-layout folder with references (default: the demo set)")
    parser.add_argument("--songs", type=int, default=3, help="how many songs (default 3)")
    parser.add_argument("--budget-rule", choices=["round1", "round2"], default="round2")
    parser.add_argument("--hogs", type=int, default=None, help="busy background processes (default: one per CPU)")
    parser.add_argument("--max-seconds", type=float, default=1200, help="the hogs stop after this long at the latest")
    parser.add_argument("--backend", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None, help="report folder (default results/stress/<timestamp>)")
    args = parser.parse_args(argv)

    from separation.budget import BudgetRule
    from separation.backends import available_cpus

    if args.data:
        root = Path(args.data)
    else:
        from evaluator.demo import ensure_demo_set

        root = Path("data") / "demo"
        ensure_demo_set(root)
    songs = sorted(p for p in root.iterdir() if (p / "mixture.wav").is_file() and (p / "vocals.wav").is_file())
    songs = songs[:args.songs]
    if not songs:
        parser.error(f"no songs with reference stems under {root}")
    out_dir = Path(args.out or Path("results") / "stress" / time.strftime("%Y%m%d-%H%M%S"))
    out_dir.mkdir(parents=True, exist_ok=True)
    rule = BudgetRule.named(args.budget_rule)
    n_hogs = args.hogs if args.hogs is not None else available_cpus()
    until = time.time() + args.max_seconds
    hogs = [multiprocessing.Process(target=_hog, args=(until,), daemon=True) for _ in range(n_hogs)]
    for h in hogs:
        h.start()
    print(f"[stress] {n_hogs} CPU hog(s) running; {len(songs)} song(s) under {rule.describe()}", file=sys.stderr)
    try:
        batches = [run_batch(args.checkpoint, songs, rule, extras, out_dir / ("extras" if extras else "plain"),
                             args.backend, args.threads) for extras in (True, False)]
    finally:
        for h in hogs:
            h.terminate()
        for h in hogs:
            h.join()
    doc = {"checkpoint": args.checkpoint, "rule": rule.to_dict(), "hogs": n_hogs, "songs": [s.name for s in songs],
           "batches": batches}
    (out_dir / "stress.json").write_text(json.dumps(doc, indent=2))
    lines = [f"# Deadline stress: {len(songs)} songs, {rule.describe()}, {n_hogs} busy background process(es)", "",
             "| extras | misses | mean SDR (dB) | vocals | drums | bass | other | extra passes | min margin (s) | pass s (setup) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for b in batches:
        m = b["mean"] or {}
        extras_done = sum(((r["budget"] or {}).get("done", {}).get("extras_done") or 0) for r in b["songs"])
        lines.append(f"| {'on' if b['extras'] else 'off'} | {b['misses']} | {m.get('sdr', np.nan):.3f} | "
                     f"{m.get('sdr_vocals', np.nan):.2f} | {m.get('sdr_drums', np.nan):.2f} | {m.get('sdr_bass', np.nan):.2f} | "
                     f"{m.get('sdr_other', np.nan):.2f} | {extras_done} | {b['min_margin_s']:.1f} | {b['pass_seconds']:.2f} |")
    md = "\n".join(lines) + "\n"
    (out_dir / "stress.md").write_text(md)
    print(md)
    print(f"report: {out_dir / 'stress.md'}", file=sys.stderr)
    return 0 if all(b["misses"] == 0 for b in batches) else 1


if __name__ == "__main__":
    sys.exit(main())
