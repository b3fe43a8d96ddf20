"""``python -m evaluator.gate MODEL --precision bf16``: measure an approximate precision's quality gate.

For every set (``--data DIR``, repeatable, and the synthetic demo set unless ``--no-demo``) the
kit's predictor separates each song twice through the evaluator's harness, plain pass, no
budget: exact fp32, then the asked precision on the same backend. The record written beside the
model (``MODEL.gate.json``, see :mod:`separation.precision`) holds the SDR change per source and
its mean for each set, and the speed ratio over all songs; a precision that loses more than
0.15 dB mean on any set, or is not faster, is recorded as refused and will not run.

The precision must run natively here: on a CPU without bf16 there is nothing to measure, and the
command says so.

    python -m evaluator.gate models/checkpoints/lightsaft_small_mdxkit.onnx --precision bf16 \\
        --data data/openmsx_test30 --out results/gate_bf16
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

from core.constants import SOURCES
from separation.backends import PRECISIONS
from separation.calibration import cpu_model
from separation.loading import choose_backend
from separation.precision import MAX_MEAN_LOSS_DB, record_gate
from separation.settings import PredictorSettings

from . import datasets
from .cli import DEFAULT_DEMO_DIR
from .harness import EvalSettings, evaluate


def _plain_run(dataset: datasets.Dataset, settings: PredictorSettings, out_dir: Path) -> list[dict]:
    """Every song's record (scores, wall time) from a plain, unlimited run."""
    from separation.budget import BudgetRule

    result = evaluate(dataset, EvalSettings(out_dir=out_dir, predictor_settings=settings, budget=BudgetRule.none(),
                                            oracle=False))
    bad = [r["song"] for r in result.records if r["status"] != "ok" or not r.get("scores")]
    if bad:
        raise RuntimeError(f"songs without scores in {out_dir}: {', '.join(bad)}")
    return result.records


def compare(exact: list[dict], approx: list[dict]) -> dict:
    """Per-source mean SDR change (approximate - exact, dB) over the songs of one set."""
    by_song = {r["song"]: r["scores"] for r in exact}
    per_source = {}
    for source in SOURCES:
        key = f"sdr_{source}"
        per_source[source] = sum(r["scores"][key] - by_song[r["song"]][key] for r in approx) / len(approx)
    return {"per_source": per_source, "mean_delta_db": sum(per_source.values()) / len(per_source),
            "songs": len(approx)}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m evaluator.gate", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="an exported .onnx model")
    p.add_argument("--precision", required=True, choices=[x for x in PRECISIONS if x != "fp32"])
    p.add_argument("--data", action="append", default=[], metavar="DIR", help="an MDX-layout set (repeatable)")
    p.add_argument("--no-demo", action="store_true", help="leave out the synthetic demo set")
    p.add_argument("--backend", default=None, help="runtime (default auto)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", required=True, help="folder for the two runs per set")
    args = p.parse_args(argv)

    choice = choose_backend(args.model, args.backend, args.precision)
    if choice.precision != args.precision:
        print(f"error: cannot measure {args.precision} here: {'; '.join(choice.notes)}", file=sys.stderr)
        return 2
    sets = {Path(d).name: datasets.mdx_folder(d) for d in args.data}
    if not args.no_demo:
        sets["demo"] = datasets.demo(DEFAULT_DEMO_DIR)
    if not sets:
        print("error: nothing to measure on: give --data DIR or keep the demo set", file=sys.stderr)
        return 2
    exact = PredictorSettings(model=args.model, backend=choice.backend, threads=args.threads)
    approx = exact.replace(precision=args.precision, require_gate=False)
    results, seconds = {}, {"fp32": 0.0, args.precision: 0.0}
    for name, dataset in sets.items():
        runs = {}
        for label, settings in (("fp32", exact), (args.precision, approx)):
            runs[label] = _plain_run(dataset, settings, Path(args.out) / name / label)
            seconds[label] += sum(r["wall_s"] for r in runs[label])
        results[name] = compare(runs["fp32"], runs[args.precision])
        per = ", ".join(f"{s} {v:+.3f}" for s, v in results[name]["per_source"].items())
        print(f"{name}: mean {results[name]['mean_delta_db']:+.3f} dB ({per})", file=sys.stderr)
    speedup = seconds["fp32"] / max(seconds[args.precision], 1e-9)
    entry = record_gate(args.model, args.precision, results, speedup,
                        {"cpu": cpu_model(), "backend": choice.backend, "date": time.strftime("%Y-%m-%d")})
    print(f"{args.precision}: {'PASSED' if entry['passed'] else 'REFUSED'} ({entry['verdict']}; the gate allows "
          f"{MAX_MEAN_LOSS_DB} dB mean loss)")
    return 0 if entry["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
