"""Several models on the same songs under the same rules: one table side by side.

``python -m evaluator --checkpoint A --checkpoint B ...`` (and ``bash run.sh`` with the same
options) evaluates each model into ``RUN_DIR/<label>/`` (a complete run folder each, resumable
on its own) and writes ``comparison.json``, ``report.html`` and a ``report.md`` with the table here: MDX SDR per
source, RTF, peak RSS and the smallest budget margin, per model.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable, Sequence

from core.constants import KIT_NAME, KIT_VERSION
from core.files import atomic_write_json, atomic_write_text

from .html_report import comparison_html
from .scoring import SCORE_SOURCES, SONG_KEY


def run_labels(models: Sequence[Path], rules: Sequence[str] | None = None) -> list[str]:
    """A short, unique folder name per run: the model's file or folder name without the ending,
    and ``@rule`` when several budget rules are compared."""
    labels: list[str] = []
    for i, path in enumerate(models):
        base = Path(path).stem or Path(path).name
        if rules is not None:
            base = f"{base}@{rules[i]}"
        label, n = base, 2
        while label in labels:
            label, n = f"{base}-{n}", n + 1
        labels.append(label)
    return labels


def comparison_row(label: str, scores: dict, latency: dict, predictor: dict | None) -> dict:
    """One model's line of the comparison, from its run's scores.json and latency.json contents."""
    summary = latency["summary"]
    predictor = predictor or {}
    return {"label": label, "model": scores["checkpoint"]["path"], "architecture": predictor.get("architecture"),
            "backend": predictor.get("backend"), "precision": predictor.get("precision"),
            "scores": scores["mean"], "n_scored": scores["n_scored"], "n_songs": scores["n_songs"],
            "rtf": summary["rtf"], "max_rtf": summary["max_rtf"], "peak_rss_mib": summary["peak_rss_mib"],
            "min_margin_s": summary["min_margin_s"], "n_missed": summary["n_missed"],
            "n_failed": summary["n_failed"], "total_wall_s": summary["total_wall_s"]}


def _f(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def comparison_table(rows: Iterable[dict]) -> str:
    head = ("| model | architecture | SDR | " + " | ".join(SCORE_SOURCES)
            + " | RTF | max RTF | peak RSS (MiB) | min margin (s) | missed | failed |")
    lines = [head, "|---|---|---:|" + "---:|" * len(SCORE_SOURCES) + "---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        scores = row["scores"] or {}
        cells = [_f(scores.get(f"sdr_{s}")) for s in SCORE_SOURCES]
        engine = f"{row['architecture'] or '?'} ({row['backend'] or '?'} {row['precision'] or ''})".strip()
        lines.append(f"| {row['label']} | {engine} | {_f(scores.get(SONG_KEY))} | " + " | ".join(cells)
                     + f" | {_f(row['rtf'])} | {_f(row['max_rtf'])} | {_f(row['peak_rss_mib'], 0)} | "
                       f"{_f(row['min_margin_s'], 1)} | {row['n_missed']} | {row['n_failed']} |")
    return "\n".join(lines)


def write_comparison(out_dir: Path, rows: list[dict], dataset_description: str, budget: str) -> dict[str, Path]:
    """``comparison.json`` and ``report.md`` in ``out_dir`` (written atomically)."""
    paths = {"comparison.json": out_dir / "comparison.json", "report.md": out_dir / "report.md",
             "report.html": out_dir / "report.html"}
    atomic_write_json(paths["comparison.json"], {"dataset": dataset_description, "budget": budget, "models": rows})
    lines = [f"# {KIT_NAME} model comparison", "",
             f"- generated: {time.strftime('%Y-%m-%d %H:%M:%S %z')} by {KIT_NAME} {KIT_VERSION}",
             f"- data: {dataset_description} (the same songs for every model)",
             f"- budget: {budget}; every model's songs timed as the grader would",
             "- SDR: the MDX metric (dB), mean over the songs each model scored; RTF: wall / audio over all songs",
             "", comparison_table(rows), "",
             "Each model's full report: " + ", ".join(f"[{r['label']}]({r['label']}/report.md)" for r in rows), ""]
    atomic_write_text(paths["report.md"], "\n".join(lines))
    atomic_write_text(paths["report.html"], comparison_html(rows, dataset_description, budget))
    return paths
