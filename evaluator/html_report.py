"""``report.html``: the run as pictures, in one self-contained file (inline SVG, no scripts, no network).

Sections: per song a timeline of the stages against its budget and the margin left; RTF per song
against the limit; SDR per source with the mixture/4 floor and the oracle ceiling; for budgeted
runs, what the deadline controller did with each window (extras, plain pass, fallback); peak
memory per song; then this run's table and, separately, the published rows. A comparison run gets
its own page with the models side by side (:func:`comparison_html`).
"""
from __future__ import annotations

import html
import time
from typing import Iterable, Sequence

from core.constants import KIT_NAME, KIT_VERSION

from .scoring import SCORE_SOURCES, SONG_KEY

STAGE_COLORS = {"read": "#9ecae1", "stft": "#6baed6", "network": "#2171b5", "wiener": "#807dba",
                "istft": "#74c476", "write": "#fdae6b", "other": "#bdbdbd"}
_RUN, _FLOOR, _CEILING, _MISS = "#2171b5", "#969696", "#31a354", "#d62728"
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1100px;
color:#222;line-height:1.4;padding:0 16px}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #ddd}
.meta{color:#555;font-size:.9em}.verdict{font-weight:600;padding:.4em .8em;border-radius:4px;display:inline-block}
.pass{background:#e5f5e0;color:#1b5e20}.fail{background:#fde0dd;color:#a50f15}
table{border-collapse:collapse;font-size:.88em;margin:.6em 0}td,th{border:1px solid #ddd;padding:3px 8px}
th{background:#f5f5f5}td.n{text-align:right;font-variant-numeric:tabular-nums}
svg{display:block;margin:.4em 0}svg text{font-size:11px;fill:#333}.legend span{display:inline-block;margin-right:12px;
font-size:.85em}.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}
.note{color:#555;font-size:.85em}
"""


def _e(text: object) -> str:
    return html.escape(str(text))


def _n(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _legend(items: Iterable[tuple[str, str]]) -> str:
    return '<div class="legend">' + "".join(f'<span><i style="background:{c}"></i>{_e(label)}</span>'
                                            for label, c in items) + "</div>"


def _page(title: str, body: Sequence[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n" + "\n".join(body)
            + f"\n<p class=\"note\">Generated {_e(time.strftime('%Y-%m-%d %H:%M:%S %z'))} by {KIT_NAME} "
              f"{KIT_VERSION}. Self-contained: no scripts, no network.</p>\n</body></html>\n")


# ---------------------------------------------------------------------- charts (inline SVG)
def _bars_horizontal(rows: list[tuple[str, list[tuple[str, float, str]], float | None, str]], unit: str,
                     chart_id: str, width: int = 1000) -> str:
    """One row per label: stacked segments (name, value, colour), an optional limit tick, a note."""
    label_w, note_w, row_h = 190, 170, 26
    plot_w = width - label_w - note_w
    top = max([sum(v for _, v, _ in segs) for _, segs, _, _ in rows] + [lim or 0 for _, _, lim, _ in rows] + [1e-9])
    scale = plot_w / (top * 1.05)
    height = row_h * len(rows) + 30
    out = [f'<svg id="{chart_id}" width="{width}" height="{height}" role="img">']
    for i, (label, segments, limit, note) in enumerate(rows):
        y = 6 + i * row_h
        out.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{_e(label)}</text>')
        x = label_w
        for name, value, colour in segments:
            w = max(0.0, value * scale)
            out.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_h - 8}" fill="{colour}">'
                       f'<title>{_e(name)}: {value:.2f} {unit}</title></rect>')
            x += w
        if limit:
            lx = label_w + limit * scale
            out.append(f'<line x1="{lx:.1f}" x2="{lx:.1f}" y1="{y - 3}" y2="{y + row_h - 5}" stroke="#000" '
                       f'stroke-width="2"><title>limit {limit:.2f} {unit}</title></line>')
        out.append(f'<text x="{width - note_w + 6}" y="{y + 14}">{_e(note)}</text>')
    axis_y = height - 18
    out.append(f'<line x1="{label_w}" x2="{label_w + plot_w}" y1="{axis_y}" y2="{axis_y}" stroke="#999"/>')
    for k in range(6):
        value = top * 1.05 * k / 5
        x = label_w + value * scale
        out.append(f'<text x="{x:.1f}" y="{axis_y + 13}" text-anchor="middle">{value:.3g} {unit}</text>')
    out.append("</svg>")
    return "".join(out)


def _sdr_chart(series: list[tuple[str, dict, str]], chart_id: str, width: int = 1000) -> str:
    """Grouped bars: for each source and the song mean, one bar per series (name, scores, colour)."""
    keys = [f"sdr_{s}" for s in SCORE_SOURCES] + [SONG_KEY]
    names = list(SCORE_SOURCES) + ["mean"]
    values = [v for _, scores, _ in series for k in keys if (v := (scores or {}).get(k)) is not None]
    lo, hi = min(values + [0.0]), max(values + [1.0])
    span = (hi - lo) * 1.1 or 1.0
    height, left, bottom = 260, 50, 30
    plot_h = height - bottom - 10
    group_w = (width - left) / len(keys)
    bar_w = group_w * 0.8 / max(1, len(series))

    def y_of(v: float) -> float:
        return 10 + (hi + 0.05 * span - v) * plot_h / span

    out = [f'<svg id="{chart_id}" width="{width}" height="{height}" role="img">']
    zero = y_of(0.0)
    out.append(f'<line x1="{left}" x2="{width}" y1="{zero:.1f}" y2="{zero:.1f}" stroke="#999"/>')
    for tick in range(5):
        v = lo + (hi - lo) * tick / 4
        out.append(f'<text x="{left - 6}" y="{y_of(v) + 4:.1f}" text-anchor="end">{v:.1f} dB</text>')
    for g, (key, name) in enumerate(zip(keys, names)):
        gx = left + g * group_w + group_w * 0.1
        for j, (label, scores, colour) in enumerate(series):
            v = (scores or {}).get(key)
            if v is None:
                continue
            y0, y1 = sorted((y_of(v), zero))
            out.append(f'<rect x="{gx + j * bar_w:.1f}" y="{y0:.1f}" width="{bar_w - 2:.1f}" height="{y1 - y0:.1f}" '
                       f'fill="{colour}"><title>{_e(label)}, {name}: {v:.3f} dB</title></rect>')
        out.append(f'<text x="{left + g * group_w + group_w / 2:.1f}" y="{height - 10}" text-anchor="middle">'
                   f'{_e(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def _windows_strip(records: list[dict], chart_id: str, width: int = 1000) -> str | None:
    """Per budgeted song, one cell per window: plain pass, with extras, or the fallback."""
    budgeted = [r for r in records if r.get("predictor_budget")]
    if not budgeted:
        return None
    label_w, row_h = 190, 22
    out = [f'<svg id="{chart_id}" width="{width}" height="{row_h * len(budgeted) + 8}" role="img">']
    for i, r in enumerate(budgeted):
        done = r["predictor_budget"]["done"]
        variants = done.get("variants_per_window") or []
        y = 4 + i * row_h
        out.append(f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{_e(r["song"])}</text>')
        cell = (width - label_w) / max(1, len(variants))
        for k, names in enumerate(variants):
            colour = _MISS if not names else (_CEILING if len(names) > 1 else _RUN)
            what = "fallback (mixture / 4)" if not names else ", ".join(names)
            out.append(f'<rect x="{label_w + k * cell:.1f}" y="{y}" width="{max(1.0, cell - 1):.1f}" '
                       f'height="{row_h - 6}" fill="{colour}"><title>window {k}: {_e(what)}</title></rect>')
    out.append("</svg>")
    return "".join(out)


# ---------------------------------------------------------------------- tables
def _score_rows_table(rows: list[dict], table_id: str) -> str:
    head = "".join(f"<th>{_e(s)}</th>" for s in SCORE_SOURCES)
    body = []
    for rank, row in enumerate(rows, 1):
        cells = "".join(f'<td class="n">{_n(row["scores"].get(f"sdr_{s}"))}</td>' for s in SCORE_SOURCES)
        system = _e(row["system"].replace("**", ""))
        body.append(f'<tr><td class="n">{rank}</td><td>{system}</td><td class="n">{_n(row["scores"][SONG_KEY])}</td>'
                    f"{cells}<td>{_e(row['data'])}</td></tr>")
    return (f'<table id="{table_id}"><tr><th>#</th><th>system</th><th>SDR</th>{head}<th>data</th></tr>'
            + "".join(body) + "</table>")


# ---------------------------------------------------------------------- pages
def run_html(result, scores: dict, latency: dict, header: dict[str, str], verdict: str,
             run_rows: list[dict], published_rows: list[dict], published_source: str,
             profile: dict | None = None, profile_dir: str = "profile") -> str:
    """The page of one run (``result``: a harness RunResult; ``scores``/``latency``: the JSON reports)."""
    records = result.records
    body = [f"<h1>{_e(KIT_NAME)} local evaluation</h1>",
            '<div class="meta">' + "<br>".join(f"<b>{_e(k)}</b>: {_e(v)}" for k, v in header.items()) + "</div>",
            f'<p class="verdict {"pass" if verdict.startswith("PASS") else "fail"}" id="verdict">{_e(verdict)}</p>']

    timeline = []
    for r in records:
        stages = r.get("stages") or {}
        order = [s for s in STAGE_COLORS if s in stages and s != "other"] + [s for s in stages if s not in STAGE_COLORS]
        segments = [(s, stages[s], STAGE_COLORS.get(s, "#bdbdbd")) for s in order]
        segments.append(("other (predictor overhead)", max(0.0, r["wall_s"] - sum(stages.values())), STAGE_COLORS["other"]))
        margin = r.get("margin_s")
        note = (f"margin {margin:.1f} s" if margin is not None else "no limit") + ("  MISS" if r.get("miss") else "")
        timeline.append((r["song"], segments, r.get("budget_s"), note))
    body += ["<h2>Timeline per song against its budget</h2>",
             "<p class=\"note\">Wall time of each song split by stage; the black tick is the song's limit.</p>",
             _legend([(s, c) for s, c in STAGE_COLORS.items()]),
             _bars_horizontal(timeline, "s", "timeline")]

    limit_ratio = [r["budget_s"] / r["duration_s"] for r in records if r.get("budget_s") and r.get("duration_s")]
    rtf_rows = [(r["song"], [("RTF", r["rtf"] or 0.0, _MISS if r.get("miss") else _RUN)],
                 (r["budget_s"] / r["duration_s"]) if r.get("budget_s") and r.get("duration_s") else None,
                 f"RTF {_n(r.get('rtf'), 2)}") for r in records]
    body += ["<h2>Real-time factor per song</h2>",
             f"<p class=\"note\">Wall / audio duration; the tick is the limit as a real-time factor"
             f"{f' ({limit_ratio[0]:.2f})' if limit_ratio and max(limit_ratio) - min(limit_ratio) < 1e-9 else ''}.</p>",
             _bars_horizontal(rtf_rows, "x", "rtf")]

    floor = (scores.get("reference_rows") or {}).get("mixture/4", {}).get("mean")
    ceiling = (scores.get("reference_rows") or {}).get("oracle IRM", {}).get("mean")
    series = [("this run", scores.get("mean"), _RUN)]
    series += [(name, s, c) for name, s, c in (("floor: mixture / 4", floor, _FLOOR),
                                                ("ceiling: oracle IRM", ceiling, _CEILING)) if s]
    body += ["<h2>SDR per source</h2>",
             "<p class=\"note\">MDX SDR (dB), mean over the scored songs, with the no-separation floor and the "
             "oracle ceiling on the same songs.</p>",
             _legend([(name, c) for name, _, c in series]), _sdr_chart(series, "sdr-chart")]

    strip = _windows_strip(records, "windows")
    if strip:
        body += ["<h2>What the deadline did with each window</h2>",
                 _legend([("plain pass", _RUN), ("plain pass + extras", _CEILING), ("fallback: mixture / 4", _MISS)]),
                 strip]

    memory = [(r["song"], [("peak RSS", r.get("peak_rss_mib") or 0.0, _FLOOR)], None,
               f"{_n(r.get('peak_rss_mib'), 0)} MiB") for r in records]
    body += ["<h2>Peak memory per song</h2>", _bars_horizontal(memory, "MiB", "memory")]

    if profile:
        ops = [(row["operator"], [("time", row["seconds"], _RUN)], None, f"{100 * row['share']:.1f}%")
               for row in profile["top"]]
        body += [f"<h2>Per-operator profile: {_e(profile['song'])} (the slowest song)</h2>",
                 f"<p class=\"note\">{_e(profile['profiler'])} on {_e(profile['runtime'])}: separation "
                 f"{profile['wall_s']:.2f} s, operators {profile['operator_seconds']:.2f} s. Raw trace: "
                 f"<a href=\"{_e(profile_dir)}/{_e(profile['raw'])}\">{_e(profile_dir)}/{_e(profile['raw'])}</a></p>",
                 _bars_horizontal(ops, "s", "profile")]
    body += ["<h2>This run (on its own songs)</h2>", _score_rows_table(run_rows, "run-table"),
             "<h2>Published rows (MDXDB21, Leaderboard A)</h2>",
             f"<p class=\"note\">{_e(published_source)}. Measured on the hidden MDXDB21 set: not comparable with "
             "the table above, so never ranked with it.</p>",
             _score_rows_table(published_rows, "published-table")]
    return _page(f"{KIT_NAME} evaluation", body)


def comparison_html(rows: list[dict], dataset: str, budget: str) -> str:
    """The page of a comparison run: one row and one bar group per model."""
    palette = ["#2171b5", "#e6550d", "#31a354", "#756bb1", "#636363", "#d6616b", "#3182bd", "#fd8d3c"]
    series = [(r["label"], r["scores"], palette[i % len(palette)]) for i, r in enumerate(rows)]
    table = ["<table id=\"comparison-table\"><tr><th>model</th><th>architecture</th><th>SDR</th>"
             + "".join(f"<th>{_e(s)}</th>" for s in SCORE_SOURCES)
             + "<th>RTF</th><th>max RTF</th><th>peak RSS (MiB)</th><th>min margin (s)</th><th>missed</th></tr>"]
    for r in rows:
        sc = r["scores"] or {}
        table.append(f"<tr><td><a href=\"{_e(r['label'])}/report.html\">{_e(r['label'])}</a></td>"
                     f"<td>{_e(r['architecture'])} ({_e(r['backend'])} {_e(r['precision'])})</td>"
                     f"<td class=\"n\">{_n(sc.get(SONG_KEY))}</td>"
                     + "".join(f'<td class="n">{_n(sc.get(f"sdr_{s}"))}</td>' for s in SCORE_SOURCES)
                     + f"<td class=\"n\">{_n(r['rtf'])}</td><td class=\"n\">{_n(r['max_rtf'])}</td>"
                       f"<td class=\"n\">{_n(r['peak_rss_mib'], 0)}</td><td class=\"n\">{_n(r['min_margin_s'], 1)}</td>"
                       f"<td class=\"n\">{r['n_missed']}</td></tr>")
    table.append("</table>")
    rtf = [(r["label"], [("RTF", r["rtf"] or 0.0, palette[i % len(palette)])], None, f"RTF {_n(r['rtf'], 2)}")
           for i, r in enumerate(rows)]
    memory = [(r["label"], [("peak RSS", r["peak_rss_mib"] or 0.0, palette[i % len(palette)])], None,
               f"{_n(r['peak_rss_mib'], 0)} MiB") for i, r in enumerate(rows)]
    body = [f"<h1>{_e(KIT_NAME)} model comparison</h1>",
            f'<div class="meta"><b>data</b>: {_e(dataset)} (the same songs for every model)<br>'
            f"<b>budget</b>: {_e(budget)}</div>",
            "<h2>Side by side</h2>", "".join(table),
            "<h2>SDR per source</h2>", _legend([(n, c) for n, _, c in series]), _sdr_chart(series, "sdr-chart"),
            "<h2>Real-time factor</h2>", _bars_horizontal(rtf, "x", "rtf"),
            "<h2>Peak memory</h2>", _bars_horizontal(memory, "MiB", "memory")]
    return _page(f"{KIT_NAME} comparison", body)
