"""The live report as one self-contained HTML page, in the confusion report's style (its CSS, tables, heatmap
and sorting script from ``training.report_html``), plus line charts of the weeks in inline SVG.

Every text shown is escaped.  The page holds labels and numbers only: the decision log's texts never reach it.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from typing import TYPE_CHECKING, Any

import pandas as pd

from live.schema import SOURCES

from .report_html import CSS, SORT_SCRIPT, svg_heatmap, table_html

if TYPE_CHECKING:
    from .live_report import LiveReport

__all__ = ["render_live_page", "svg_weekly_lines"]

SHOWN_PAIRS = 30
LINE_COLORS = {"accuracy": "#2166ac", "auto-routed": "#1a7f37", "sent to review": "#bc4c00",
               "review rate": "#8c959f", "unseen-token share": "#8250df"}
EXTRA_CSS = """
.hr-report .legend span{margin-right:14px;font-size:.85em;white-space:nowrap}
.hr-report .legend i{display:inline-block;width:14px;height:3px;vertical-align:middle;margin-right:4px}
.hr-report dl.defs dt{font-weight:600;margin-top:.4em}.hr-report dl.defs dd{margin-left:1.2em;color:#57606a}
"""


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _pct(v: float | None, digits: int = 1) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{100 * v:.{digits}f}%"


def _num(v: float | None, digits: int = 4) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def _day(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


# -- SVG --------------------------------------------------------------------------------------------------------------
def svg_weekly_lines(weeks: list[str], series: dict[str, list[float | None]], title: str,
                     counts: dict[str, list[int]] | None = None, to_full: bool = True) -> str:
    """One line per series over the weeks (a gap where a week has no value), a point per week with a tooltip.
    Values are shares, the axis in percent: with ``to_full`` from a round step under the smallest value to 100 %,
    else from 0 to a round step above the largest."""
    values = [v for vs in series.values() for v in vs if v is not None and math.isfinite(v)]
    n = len(weeks)
    left, right, top, bottom = 46, 14, 12, 44
    width = max(360, min(1100, left + right + 84 * max(n, 1)))
    height = 230
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}" '
             f'font-family="system-ui, sans-serif" font-size="10">',
             f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#f6f8fa" stroke="#d0d7de"/>']
    if to_full:
        y_min, y_max, step = _axis(min(values) if values else 0.0, 1.0)
    else:
        y_min, y_max, step = _axis(0.0, max(values) * 1.1 if values and max(values) > 0 else 0.01)
    span = (y_max - y_min) or 1.0

    def x_of(i: int) -> float:
        return left + (plot_w * (i + 0.5) / n if n else plot_w / 2)

    def y_of(v: float) -> float:
        return top + plot_h * (1 - (v - y_min) / span)

    digits = 0 if round(step * 100, 6) == round(step * 100) else 1
    for k in range(round(span / step) + 1):
        v = y_min + step * k
        y = y_of(v)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#e1e4e8"/>')
        parts.append(f'<text x="{left - 5}" y="{y + 3:.1f}" text-anchor="end" fill="#57606a">'
                     f"{100 * v:.{digits}f}%</text>")
    for i, week in enumerate(weeks):
        parts.append(f'<text x="{x_of(i):.1f}" y="{top + plot_h + 14}" text-anchor="middle" fill="#57606a">'
                     f"{_e(week[5:])}</text>")
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle" fill="#57606a">'
                 f"{_e(title)} · week starting (month-day)</text>")
    for name, vs in series.items():
        color = LINE_COLORS.get(name, "#1b1f24")
        dash = ' stroke-dasharray="5 3"' if name == "review rate" else ""
        run: list[str] = []
        for i, v in enumerate(vs + [None]):
            if v is not None and math.isfinite(v):
                run.append(f"{x_of(i):.1f},{y_of(v):.1f}")
                continue
            if len(run) > 1:
                parts.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{color}" stroke-width="2"'
                             f"{dash}/>")
            run = []
        for i, v in enumerate(vs):
            if v is None or not math.isfinite(v):
                continue
            extra = f", {counts[name][i]:,} cases" if counts and name in counts else ""
            shown = _pct(v, 1 if to_full else 2)
            parts.append(f'<circle cx="{x_of(i):.1f}" cy="{y_of(v):.1f}" r="3.2" fill="{color}">'
                         f"<title>{_e(f'week of {weeks[i]}: {name} {shown}{extra}')}</title></circle>")
    parts.append("</svg>")
    legend = "".join(f'<span><i style="background:{LINE_COLORS.get(k, "#1b1f24")}"></i>{_e(k)}</span>'
                     for k in series)
    return f'<div><div class="legend">{legend}</div>{"".join(parts)}</div>'


def _axis(lo: float, hi: float) -> tuple[float, float, float]:
    """A readable axis around ``[lo, hi]``: its ends on multiples of a round step (1, 2, 2.5 or 5 x 10^k), at most
    about five steps."""
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0) * 0.1
    raw = (hi - lo) / 5
    exp = math.floor(math.log10(raw))
    step = 10.0 ** (exp + 1)
    for m in (1, 2, 2.5, 5):
        if m * 10.0**exp >= raw:
            step = m * 10.0**exp
            break
    return math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step, step


# -- sections ---------------------------------------------------------------------------------------------------------
def _card(value: str, label: str, **data: str) -> str:
    attrs = "".join(f' data-{k.replace("_", "-")}="{_e(v)}"' for k, v in data.items())
    return f'<div class="card"><b{attrs}>{_e(value)}</b><span>{_e(label)}</span></div>'


def _overview(report: LiveReport) -> str:
    d = report.decisions
    cards = [_card(f"{d['decisions']:,}", "decisions", live="decisions"),
             _card(_pct(d["review_rate"]), "sent to review (any target)", live="review-rate")]
    for t in report.targets:
        h = report.headline[t]
        cards.append(_card(_num(h["accuracy"]), f"{t} accuracy ({h['labeled']:,} labeled)", target=t,
                           metric="accuracy"))
        cards.append(_card(_num(h["auto_accuracy"]), f"{t} auto-routed accuracy ({h['auto_labeled']:,})",
                           target=t, metric="auto-accuracy"))
    rows = []
    for t in report.targets:
        h = report.headline[t]
        rows.append({"target": t, "predictions": h["predictions"], "review rate": h["review_rate"],
                     "labeled": h["labeled"], "accuracy": h["accuracy"], "auto-routed labeled": h["auto_labeled"],
                     "auto-routed accuracy": h["auto_accuracy"], "review labeled": h["review_labeled"],
                     "review accuracy": h["review_accuracy"], "new-label share": h["new_label_share"]})
    table = table_html(_nan(pd.DataFrame(rows)), table_id="headline") if rows else ""
    return f"""<section id="overview"><h2>Overview</h2>
<div class="cards">{"".join(cards)}</div>
{table}
<p class="meta">Accuracy counts only predictions whose case got a final label (a correction, or a confirmation:
the same label); auto-routed: the target's score was at or above its review threshold, so no person looked
before it went out; that accuracy is the promise the service makes.</p></section>"""


def _nan(df: pd.DataFrame) -> pd.DataFrame:
    """None -> NaN in numeric columns (shown as –, sorted last)."""
    out = df.copy()
    for c in out.columns:
        if out[c].dtype == object and out[c].map(lambda v: v is None or isinstance(v, (int, float))).all():
            out[c] = pd.to_numeric(out[c], errors="coerce")
    return out


def _weekly_section(report: LiveReport, target: str) -> str:
    w = report.weekly[target]
    if not len(w):
        return "<p>No weeks in this period.</p>"
    chart = svg_weekly_lines(
        list(w["week"]),
        {"accuracy": list(w["accuracy"]), "auto-routed": list(w["auto_accuracy"]),
         "sent to review": list(w["review_accuracy"]), "review rate": list(w["review_rate"])},
        f"{target}: accuracy by week",
        counts={"accuracy": list(w["labeled"]), "auto-routed": list(w["auto_labeled"]),
                "sent to review": list(w["review_labeled"]), "review rate": list(w["predictions"])})
    shown = pd.DataFrame({
        "week": w["week"], "from": [_day(t) for t in w["from"]], "days": [f"{d:g}" for d in w["days"]],
        "predictions": w["predictions"], "review rate": w["review_rate"], "labeled": w["labeled"],
        "accuracy": w["accuracy"], "auto-routed labeled": w["auto_labeled"], "auto-routed accuracy": w["auto_accuracy"],
        "review labeled": w["review_labeled"], "review accuracy": w["review_accuracy"],
        "new-label share": w["new_label_share"], "model versions": w["versions"]})
    return f"""{chart}
{table_html(_nan(shown), table_id=f"weekly-{target}")}"""


def _versions_table(report: LiveReport, target: str) -> str:
    rows = []
    for version, v in report.versions.items():
        q = v["targets"].get(target)
        if not q:
            continue
        rows.append({"model version": version, "predictions": q["predictions"], "review rate": q["review_rate"],
                     "labeled": q["labeled"], "accuracy": q["accuracy"], "auto-routed labeled": q["auto"]["labeled"],
                     "auto-routed accuracy": q["auto"]["accuracy"], "review labeled": q["review"]["labeled"],
                     "review accuracy": q["review"]["accuracy"], "new-label share": q["new_label_share"],
                     "label PSI": q["label_psi"]})
    return table_html(_nan(pd.DataFrame(rows)), table_id=f"versions-{target}") if rows else "<p>No predictions.</p>"


def _changes_section(report: LiveReport, target: str) -> str:
    from .report import heatmap_order

    changes = report.changes[target]
    labels, matrix = report.confusion[target]
    if not len(labels):
        return "<p>No prediction of this period got a final label.</p>"
    if not len(changes):
        table = "<p>Every final label confirmed the prediction: nothing was changed.</p>"
    else:
        shown = changes.rename(columns={"predicted": "predicted", "final": "final label",
                                        "share_of_predicted": "share of the predicted label's labeled cases",
                                        "new_label": "label new to the model"})
        table = table_html(shown, sortable=True, limit=SHOWN_PAIRS, table_id=f"changes-{target}")
        if len(changes) > SHOWN_PAIRS:
            table += f'<p class="meta">(tables/{_e(target)}_changes.csv and live.json)</p>'
    order, m = heatmap_order(matrix, labels, top_n=report.top_n)
    grouped = len(order) < len(labels)
    note = (f'<p class="meta">{len(labels)} labels: the {len(order) - 1} most changed are shown, the rest are summed '
            "in the last row and column.</p>") if grouped else ""
    heatmap = svg_heatmap(order, m, False, f"{target}: labeled predictions (rows: final label)", grouped=grouped)
    return f"""<p class="meta">From what to what the final labels changed the predictions, by who gave the final
label ({", ".join(SOURCES)}); confirmations are the diagonal of the matrix.</p>
{table}
{note}
<div class="heatmaps">{heatmap}</div>"""


def _new_labels_section(report: LiveReport, target: str) -> str:
    new = report.new_labels[target]
    if not len(new):
        return "<p>None: every final label is one the model knows.</p>"
    more = (f'<p class="meta">(tables/{_e(target)}_new_labels.csv and live.json)</p>'
            if len(new) > SHOWN_PAIRS else "")
    return ('<p class="meta">A new or renamed agency (or category): the model cannot predict it until it is '
            "retrained on cases that carry it (<code>hotline feedback export</code>, then <code>hotline train</code>)."
            "</p>" + table_html(new, sortable=True, limit=SHOWN_PAIRS, table_id=f"new-labels-{target}") + more)


def _target_section(report: LiveReport, target: str) -> str:
    return f"""<section id="live-{_e(target)}">
<h2>{_e(target)}</h2>
<h3>Accuracy by week</h3>
{_weekly_section(report, target)}
<h3>By model version</h3>
{_versions_table(report, target)}
<h3>What the corrections changed</h3>
{_changes_section(report, target)}
<h3>Final labels the model does not know</h3>
{_new_labels_section(report, target)}
</section>"""


def _drift_section(report: LiveReport) -> str:
    from .live_report import PSI_MOVING, PSI_SHIFTED, psi_verdict

    rows = []
    for version, v in report.versions.items():
        for target, q in v["targets"].items():
            rows.append({"model version": version, "target": target, "predictions": q["predictions"],
                         "label PSI": q["label_psi"], "reading": psi_verdict(q["label_psi"])})
    psi = table_html(_nan(pd.DataFrame(rows)), table_id="label-psi") if rows else "<p>No predictions.</p>"
    weekly_psi = "".join(
        f"<h3>{_e(t)}: label PSI by week</h3>"
        + table_html(_nan(df.rename(columns={"model_version": "model version", "label_psi": "label PSI"})),
                     table_id=f"weekly-psi-{t}")
        for t, df in report.weekly_psi.items() if len(df))
    unseen_rows = [{"model version": version, "decisions": v["decisions"], "drift sample": v["drift_sample"],
                    "unseen-token share": v["unseen_token_share"]} for version, v in report.versions.items()]
    unseen = table_html(_nan(pd.DataFrame(unseen_rows)), table_id="unseen-tokens") if unseen_rows else ""
    wd = report.weekly_decisions
    chart = ""
    if len(wd) and wd["unseen_token_share"].notna().any():
        chart = svg_weekly_lines(list(wd["week"]), {"unseen-token share": list(wd["unseen_token_share"])},
                                 "share of incoming tokens the model never saw", to_full=False,
                                 counts={"unseen-token share": list(wd["drift_sample"])})
    weekly_unseen = table_html(_nan(pd.DataFrame({
        "week": wd["week"], "decisions": wd["decisions"], "review rate": wd["review_rate"],
        "drift sample": wd["drift_sample"], "unseen-token share": wd["unseen_token_share"]})),
        table_id="weekly-decisions") if len(wd) else ""
    return f"""<section id="drift"><h2>Drift: signals that need no labels</h2>
<p class="meta">Label PSI: the population stability index of the labels a version predicted against the labels
it was trained on (its manifest): under {PSI_MOVING} stable, {PSI_MOVING}–{PSI_SHIFTED} moving, above
{PSI_SHIFTED} a different population (a new policy, a season, a renamed agency). The unseen-token share: of the
tokens of a sample of incoming texts, the share the model never saw in training; new topics and new place
names raise it.</p>
{psi}
{weekly_psi}
<h3>Unseen tokens</h3>
{unseen}
{chart}
{weekly_unseen}
</section>"""


def render_live_page(report: LiveReport) -> str:
    nav = ('<a href="#overview">overview</a>' + "".join(f'<a href="#live-{_e(t)}">{_e(t)}</a>' for t in report.targets)
           + '<a href="#drift">drift</a>')
    notes = "".join(f'<div class="note">{_e(n)}</div>' for n in report.notes)
    body = "".join(_target_section(report, t) for t in report.targets)
    versions = ", ".join(report.decisions["model_versions"]) or "none"
    created = report.generated_at.strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Live quality {_e(report.since.date().isoformat())} to {_e(report.until.date().isoformat())}</title></head>
<body style="margin:0;background:#fff">
<div class="hr-report"><style>{CSS}{EXTRA_CSS}</style>
<h1>Live quality: {_e(_day(report.since))} to {_e(_day(report.until))}</h1>
<p class="meta">decision log {_e(report.log)} · model versions {_e(versions)} · weeks start on Monday 00:00
({_e(report.time_zone)} time) and are cut to the period</p>
<nav>{nav}</nav>
{notes}
{_overview(report)}
{body}
{_drift_section(report)}
</div>
<p class="meta" style="font-family:sans-serif;text-align:center;color:#57606a">generated {created}</p>
<script>{SORT_SCRIPT}</script>
</body></html>
"""
