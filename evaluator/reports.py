"""Reports of a run, all built from the same per-song records so that they always agree:
``scores.json``, ``latency.json``, ``report.md`` (leaderboard-style) and ``latency.png``.
"""
from __future__ import annotations

import time
from pathlib import Path

from core.constants import KIT_NAME, KIT_VERSION

from separation.budget import BudgetRule
from separation.challenges import get_challenge
from core.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from .harness import STATUS_OK, EvalSettings, RunResult
from .html_report import run_html
from .leaderboard import LEADERBOARD_A, LEADERBOARD_SOURCE
from .oracle import CEILING_ROW, FLOOR_ROW, REFERENCE_ROWS
from .scoring import SCORE_SOURCES, SDR_DELTA, SONG_KEY, mean_scores, median_scores

#: Folder of the --profile output inside a run folder (profile.json and the raw trace).
PROFILE_DIR = "profile"
STAGES = ("read", "stft", "network", "wiener", "istft", "write")
FORMULA = (f"MDX SDR (dB) = 10*log10((sum s^2 + {SDR_DELTA:g}) / (sum (s - s_hat)^2 + {SDR_DELTA:g})) per source "
           "over all samples and channels (float64); song = mean of the four sources; run = mean over songs")
MUSEVAL_AGGREGATE = "BSSEval v4 SDR: median over 1-s frames per song and source, then median over songs"


# ---------------------------------------------------------------------- the data
def scores_report(result: RunResult, dataset_description: str) -> dict:
    """The content of ``scores.json``."""
    scored = [r for r in result.records if r["status"] == STATUS_OK and r.get("scores")]
    report = {
        "metric": FORMULA,
        "dataset": dataset_description,
        "checkpoint": result.run_info["checkpoint"],
        "songs": {r["song"]: r["scores"] for r in scored},
        "mean": mean_scores(r["scores"] for r in scored),
        "n_songs": len(result.records),
        "n_scored": len(scored),
        "unscored": {r["song"]: _why_unscored(r) for r in result.records if r not in scored},
    }
    # The reference rows' means cover the songs the run's mean covers, so that the rows compare;
    # when the run scored nothing they cover every song with references.
    with_rows = [r for r in result.records if r.get("reference_rows")]
    in_mean = [r for r in with_rows if r in scored] or with_rows
    rows = {}
    for row in REFERENCE_ROWS:
        if in_mean:
            rows[row] = {"songs": {r["song"]: r["reference_rows"][row] for r in with_rows},
                         "mean": mean_scores(r["reference_rows"][row] for r in in_mean),
                         "mean_over": [r["song"] for r in in_mean]}
    report["reference_rows"] = rows
    museval = {r["song"]: r["museval"] for r in scored if r.get("museval")}
    if museval:
        report["museval"] = {"aggregate": MUSEVAL_AGGREGATE, "songs": museval,
                             "median": median_scores(museval.values())}
    return report


def _why_unscored(record: dict) -> str:
    if record["status"] != STATUS_OK:
        return f"{record['status']}: {record.get('error')}"
    return "no reference stems"


def latency_report(result: RunResult, budget: BudgetRule) -> dict:
    """The content of ``latency.json``."""
    songs = {}
    for r in result.records:
        songs[r["song"]] = {key: r.get(key) for key in
                            ("duration_s", "wall_s", "rtf", "budget_s", "margin_s", "miss", "status",
                             "stages", "peak_rss_mib")}
        if r.get("predictor_budget"):
            songs[r["song"]]["predictor_budget"] = r["predictor_budget"]
    walls = [r["wall_s"] for r in result.records]
    audio = [r["duration_s"] for r in result.records]
    margins = [r["margin_s"] for r in result.records if r.get("margin_s") is not None]
    peaks = [r["peak_rss_mib"] for r in result.records if r.get("peak_rss_mib") is not None]
    stage_totals = {}
    for r in result.records:
        for stage, seconds in (r.get("stages") or {}).items():
            stage_totals[stage] = stage_totals.get(stage, 0.0) + seconds
    last = result.sessions[-1] if result.sessions else {}
    methods = sorted({r.get("rss_method") for r in result.records if r.get("rss_method")})
    return {
        "budget": budget.to_dict(),
        "setup": {"seconds": last.get("setup_s"), "limit_s": last.get("setup_limit_s"),
                  "miss": last.get("setup_miss"), "sessions": result.sessions},
        "songs": songs,
        "summary": {
            "n_songs": len(songs),
            "n_missed": sum(bool(r.get("miss")) for r in result.records),
            "n_failed": sum(r["status"] != STATUS_OK for r in result.records),
            "total_wall_s": sum(walls),
            "total_audio_s": sum(audio),
            "rtf": sum(walls) / sum(audio) if sum(audio) else None,
            "max_rtf": max((r["rtf"] for r in result.records if r.get("rtf") is not None), default=None),
            "min_margin_s": min(margins) if margins else None,
            "peak_rss_mib": max(peaks) if peaks else None,
            "stage_totals_s": stage_totals,
        },
        "rss_method": "; ".join(methods),
    }


# ---------------------------------------------------------------------- markdown
def _f(value, digits: int = 3, unit: str = "") -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}f}{unit}"


_INTERFACE_WORDS = {
    "mdx21-files": "MDX21 file interface (prediction(mixture_file_path, bass_file_path, ...))",
    "sdx23-arrays": "SDX23 array interface (separate_music_file(mixed_sound_array, sample_rate))",
}


def run_rows(scores: dict, label: str) -> list[dict]:
    """This run and the reference rows, all on this run's data, best first."""
    rows = []
    n = scores["n_scored"]
    if scores["mean"] is not None:
        rows.append({"system": f"**{label} (this run)**", "scores": scores["mean"], "data": f"this data, {n} songs"})
    names = {FLOOR_ROW: "floor: mixture/4", CEILING_ROW: "ceiling: oracle IRM (from references)"}
    for row, content in scores["reference_rows"].items():
        rows.append({"system": names[row], "scores": content["mean"],
                     "data": f"this data, {len(content['mean_over'])} songs"})
    return sorted(rows, key=lambda r: -r["scores"][SONG_KEY])


def published_rows() -> list[dict]:
    """The published Leaderboard A rows (MDXDB21), best first."""
    rows = [{"system": p.system, "scores": {SONG_KEY: p.sdr}, "data": "MDXDB21 (published)"} for p in LEADERBOARD_A]
    return sorted(rows, key=lambda r: -r["scores"][SONG_KEY])


def _score_table(rows: list[dict], first_column: str) -> str:
    head = f"| {first_column} | system | SDR | " + " | ".join(SCORE_SOURCES) + " | data |"
    lines = [head, "|---:|---|---:|" + "---:|" * len(SCORE_SOURCES) + "---|"]
    for rank, row in enumerate(rows, 1):
        cells = [_f(row["scores"].get(f"sdr_{s}")) for s in SCORE_SOURCES]
        lines.append(f"| {rank} | {row['system']} | {_f(row['scores'][SONG_KEY])} | " + " | ".join(cells)
                     + f" | {row['data']} |")
    return "\n".join(lines)


def leaderboard_table(scores: dict, label: str) -> str:
    """Two tables, never ranked together: this run's rows (on its data), then the published ones."""
    return "\n".join([_score_table(run_rows(scores, label), "#"), "",
                      "Published (MDXDB21, Leaderboard A; not comparable with the rows above):", "",
                      _score_table(published_rows(), "#")])


def songs_table(result: RunResult, scores: dict) -> str:
    spread = any(r.get("worker") for r in result.records)  # a --workers run says where each song ran
    head = ("| song | length | SDR | " + " | ".join(SCORE_SOURCES)
            + " | wall | RTF | budget | margin | peak RSS | status |" + (" ran on (tries) |" if spread else ""))
    lines = [head, "|---|---:|---:|" + "---:|" * len(SCORE_SOURCES) + "---:|---:|---:|---:|---:|---|"
             + ("---|" if spread else "")]
    for r in result.records:
        s = scores["songs"].get(r["song"]) or {}
        status = r["status"] + (" **MISS**" if r.get("miss") else "")
        where = f" {r.get('worker') or '—'} ({r.get('attempts', 1)}) |" if spread else ""
        lines.append(
            f"| {r['song']} | {r['duration_s']:.1f} s | {_f(s.get(SONG_KEY))} | "
            + " | ".join(_f(s.get(f"sdr_{x}")) for x in SCORE_SOURCES)
            + f" | {_f(r['wall_s'], 1, ' s')} | {_f(r.get('rtf'), 2)} | {_f(r.get('budget_s'), 1, ' s')} | "
            f"{_f(r.get('margin_s'), 1, ' s')} | {_f(r.get('peak_rss_mib'), 0, ' MiB')} | {status} |" + where)
    return "\n".join(lines)


def verdict(result: RunResult, latency: dict) -> str:
    summary = latency["summary"]
    n = summary["n_songs"]
    if summary["n_failed"] or summary["n_missed"]:
        parts = []
        if summary["n_missed"]:
            parts.append(f"{summary['n_missed']} of {n} song(s) missed the time budget")
        failed = [r for r in result.records if r["status"] not in (STATUS_OK, "timeout")]
        if failed:
            parts.append(f"{len(failed)} song(s) failed or produced invalid stems")
        return "FAIL: " + "; ".join(parts) + " -- the grader would reject this submission."
    return f"PASS: all {n} songs produced valid stems inside their time budget."


def _settings_line(result: RunResult, settings: EvalSettings) -> str:
    """Which architecture, backend, precision and budget plan ran (from the last setup session)."""
    ran = next((s["predictor"] for s in reversed(result.sessions) if s.get("predictor")), None)
    ps = settings.predictor_settings
    budget = ps.budget.describe() if ps.budget else "none (plain pass, reproducible)"
    if ran:
        choice = ran.get("backend_choice")
        return (f"architecture {ran['architecture']}, backend {ran['backend']}, precision "
                f"{ran.get('precision', 'fp32')}{f' ({choice})' if choice else ''}, "
                f"threads {ran['threads'] or 'all available'}, predictor's own budget plan: {budget}, "
                f"extras {'on' if ps.extras else 'off'}"
                + (f", reduced-precision rung {ran['reduced_rung']}" if ran.get("reduced_rung") else ""))
    return (f"backend {ps.backend or 'auto'}, precision {ps.precision}, "
            f"predictor's own budget plan: {budget}")


def markdown_report(result: RunResult, scores: dict, latency: dict, settings: EvalSettings,
                    dataset_description: str) -> str:
    ckpt = result.run_info["checkpoint"]
    label = Path(ckpt["name"]).stem
    summary = latency["summary"]
    setup = latency["setup"]
    lines = [
        f"# {KIT_NAME} local evaluation",
        "",
        f"- generated: {time.strftime('%Y-%m-%d %H:%M:%S %z')} by {KIT_NAME} {KIT_VERSION}",
        f"- checkpoint: `{ckpt['path']}` (sha256 {ckpt['sha256'][:12]}, {ckpt['bytes'] / 1e6:.1f} MB)",
        f"- predictor: `{settings.predictor}`; {_settings_line(result, settings)}",
        f"- data: {dataset_description}",
        f"- challenge: {get_challenge(settings.challenge).describe()}; the predictor was driven through the "
        f"{_INTERFACE_WORDS[get_challenge(settings.challenge).interface]}",
        f"- budget: {settings.budget.describe()}; setup limit {settings.setup_timeout_s:g} s; "
        + ("songs stopped at their limit, as on the grader" if settings.enforce
           else "songs may run past their limit to be scored; a miss is flagged (the grader would stop it)"),
        f"- **{verdict(result, latency)}**",
        "",
        "## Leaderboard (MDX SDR, dB)",
        "",
        leaderboard_table(scores, label),
        "",
        f"The first table was computed here, on the songs below; the floor and the oracle ceiling bracket "
        f"what a separator can score on them. The published rows are {LEADERBOARD_SOURCE}; they are "
        "comparable only on that set, so they are ranked on their own.",
        "",
        FORMULA + ".",
        "",
        "## Per song",
        "",
        songs_table(result, scores),
        "",
    ]
    if scores["unscored"]:
        lines += ["Not scored: " + "; ".join(f"{k} ({v})" for k, v in scores["unscored"].items()), ""]
    lines += [
        "## Latency",
        "",
        f"- setup (`prediction_setup`): {_f(setup['seconds'], 2, ' s')} of {_f(setup['limit_s'], 0, ' s')} allowed",
        f"- songs: {summary['n_songs']}, audio {summary['total_audio_s']:.1f} s, wall {summary['total_wall_s']:.1f} s, "
        f"overall RTF {_f(summary['rtf'], 3)}, slowest RTF {_f(summary['max_rtf'], 3)}",
        f"- smallest margin: {_f(summary['min_margin_s'], 1, ' s')}; missed budgets: {summary['n_missed']}",
        f"- peak RSS: {_f(summary['peak_rss_mib'], 0, ' MiB')} ({latency['rss_method'] or 'not measured'})",
        "",
    ]
    totals = summary["stage_totals_s"]
    if totals:
        wall = summary["total_wall_s"] or 1.0
        lines += ["| stage | seconds | share of wall |", "|---|---:|---:|"]
        ordered = [s for s in STAGES if s in totals] + [s for s in totals if s not in STAGES]
        for stage in ordered:
            lines.append(f"| {stage} | {totals[stage]:.2f} | {100 * totals[stage] / wall:.1f}% |")
        other = wall - sum(totals.values())
        lines += [f"| other (predictor overhead) | {other:.2f} | {100 * other / wall:.1f}% |", ""]
    lines += ["![latency per song against its budget](latency.png)", ""]
    profile = read_profile(settings.out_dir)
    if profile:
        lines += [f"## Per-operator profile: {profile['song']} (the slowest song)", "",
                  f"{profile['profiler']} on {profile['runtime']}: separation {profile['wall_s']:.2f} s, operators "
                  f"{profile['operator_seconds']:.2f} s. Raw trace: `{PROFILE_DIR}/{profile['raw']}`.", "",
                  "| operator | seconds | share | calls |", "|---|---:|---:|---:|"]
        lines += [f"| {row['operator']} | {row['seconds']:.3f} | {100 * row['share']:.1f}% | {row.get('calls', '—')} |"
                  for row in profile["top"]]
        lines.append("")
    if "museval" in scores:
        med = scores["museval"]["median"]
        lines += ["## museval (BSSEval v4)", "", MUSEVAL_AGGREGATE + ".", "",
                  "| SDR | " + " | ".join(SCORE_SOURCES) + " |", "|---:|" + "---:|" * len(SCORE_SOURCES),
                  f"| {_f(med[SONG_KEY])} | " + " | ".join(_f(med[f'sdr_{s}']) for s in SCORE_SOURCES) + " |", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------- plot
def latency_plot(result: RunResult, budget: BudgetRule) -> bytes:
    """A PNG: per song, wall time split by stage, with the song's budget marked."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    records = result.records
    fig = Figure(figsize=(9, 1.8 + 0.45 * max(1, len(records))))
    ax = fig.add_subplot()
    names = [r["song"] for r in records]
    ys = list(range(len(records)))[::-1]
    colors = dict(zip(STAGES + ("other",), ("#9ecae1", "#6baed6", "#2171b5", "#807dba", "#74c476", "#fdae6b", "#bdbdbd")))
    for y, r in zip(ys, records):
        left = 0.0
        stages = r.get("stages") or {}
        parts = [(s, stages[s]) for s in STAGES if s in stages]
        parts.append(("other", max(0.0, r["wall_s"] - sum(v for _, v in parts))))
        for stage, seconds in parts:
            ax.barh(y, seconds, left=left, color=colors.get(stage, "#bdbdbd"),
                    edgecolor="red" if r.get("miss") else "none")
            left += seconds
        if r.get("budget_s"):
            ax.plot([r["budget_s"]] * 2, [y - 0.4, y + 0.4], color="red" if r.get("miss") else "black", lw=2)
        label = f"RTF {r['rtf']:.2f}" + ("  MISS" if r.get("miss") else "")
        ax.text(left, y, " " + label, va="center", fontsize=8, color="red" if r.get("miss") else "black")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Patch(color=colors[stage], label=stage) for stage in STAGES + ("other",)]
    handles.append(Line2D([], [], color="black", lw=2, label="budget"))
    ax.set_yticks(ys, names, fontsize=8)
    ax.set_xlabel("seconds")
    ax.set_title(f"wall time per song against its budget ({budget.describe()})", fontsize=10)
    fig.legend(handles=handles, fontsize=7, loc="lower center", ncols=len(handles), frameon=False)
    xmax = max([r["wall_s"] for r in records] + [r.get("budget_s") or 0 for r in records] + [1e-3])
    ax.set_xlim(0, xmax * 1.25)
    fig.tight_layout(rect=(0, 0.35 / fig.get_figheight(), 1, 1))  # room for the legend below
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


# ---------------------------------------------------------------------- all together
def write_reports(result: RunResult, settings: EvalSettings, dataset_description: str) -> dict[str, Path]:
    """Write the four reports into ``settings.out_dir`` atomically; returns their paths."""
    out = Path(settings.out_dir)
    scores = scores_report(result, dataset_description)
    latency = latency_report(result, settings.budget)
    paths = {name: out / name for name in ("scores.json", "latency.json", "report.md", "latency.png", "report.html")}
    atomic_write_json(paths["scores.json"], scores)
    atomic_write_json(paths["latency.json"], latency)
    atomic_write_bytes(paths["latency.png"], latency_plot(result, settings.budget))
    atomic_write_text(paths["report.md"], markdown_report(result, scores, latency, settings, dataset_description))
    label = Path(result.run_info["checkpoint"]["name"]).stem
    atomic_write_text(paths["report.html"], run_html(result, scores, latency, _header(result, settings, dataset_description),
                                                     verdict(result, latency), run_rows(scores, label), published_rows(),
                                                     LEADERBOARD_SOURCE, read_profile(out), PROFILE_DIR))
    return paths


def read_profile(out_dir: str | Path) -> dict | None:
    """The run's --profile summary, if one was made."""
    import json

    path = Path(out_dir) / PROFILE_DIR / "profile.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _header(result: RunResult, settings: EvalSettings, dataset_description: str) -> dict[str, str]:
    """The facts at the top of report.html (the same as report.md's)."""
    ckpt = result.run_info["checkpoint"]
    return {"model": f"{ckpt['path']} (sha256 {ckpt['sha256'][:12]}, {ckpt['bytes'] / 1e6:.1f} MB)",
            "predictor": f"{settings.predictor}; {_settings_line(result, settings)}",
            "data": dataset_description,
            "challenge": get_challenge(settings.challenge).describe(),
            "budget": settings.budget.describe()}


def terminal_summary(result: RunResult, settings: EvalSettings) -> str:
    """The leaderboard, the per-song table and the verdict, for printing."""
    scores = scores_report(result, "")
    latency = latency_report(result, settings.budget)
    label = Path(result.run_info["checkpoint"]["name"]).stem
    return "\n".join([leaderboard_table(scores, label), "", songs_table(result, scores), "",
                      verdict(result, latency)])

