"""The confusion report as one self-contained HTML page (inline CSS, inline SVG heatmaps, a few lines of
inline script to sort tables; no network).

The first screen answers first: what was evaluated and on what (with a loud warning when a model learned from
these cases), the headline numbers of each target and, with a comparison, its verdict.  The details follow,
one section per target, reached from a table of contents that stays in view.  Heatmaps stay readable at 40+
classes (cells and labels sized for Chinese text, the full label on hover and in a table beside the matrix);
nothing is a scroll box, so a printout, a PDF or a full-page screenshot shows whole tables.  Every column is
explained in a line of plain words under its table.

Every text shown is escaped; complaint examples were masked (``mask_pii``) and shortened by ``evaluate``.
"""

from __future__ import annotations

import datetime as dt
import html
import math
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .model_card import render_model_card

if TYPE_CHECKING:
    from .overlap import Overlap
    from .report import Comparison, Report, TargetReport

__all__ = ["render_page", "render_fragment", "render_notebook", "render_summary", "render_model_card",
           "svg_heatmap", "svg_reliability", "table_html", "text_width", "COLUMN_HELP"]

SHOWN_CASES = 30  # rows of the case tables shown in the page; the CSV files hold them all
SHOWN_PAIRS = 15
SHOWN_CLASSES = 40  # above this many classes, the comparison table shows only the classes that changed
LABEL_CHARS = 14  # a heatmap axis label longer than this is cut (with "…"); the table beside it has it whole

# every column of every table, in plain words (under each table, and on hover over its header)
COLUMN_HELP: dict[str, str] = {
    "label": "the class (category or agency)",
    "precision": "of the cases the model put in this class, the share that belong there",
    "recall": "of the cases that belong to this class, the share the model found",
    "f1": "one number for precision and recall together (their harmonic mean); 1 is perfect",
    "support": "cases of this class in the evaluated data",
    "predicted": "cases the model put in this class",
    "known_to_model": "whether the class was in the model's training data (if not, its cases are always wrong)",
    "true": "the label the case carries",
    "predicted as": "what the model said instead",
    "count": "cases",
    "share_of_true": "those cases as a share of all cases of the true class",
    "reverse": "cases going the other way round (predicted as the true class)",
    "pair_total": "cases confused between the two, both ways",
    "bin": "the model's top score, in bands",
    "cases": "cases",
    "mean_score": "the average top score in the band (what the model claims)",
    "accuracy": "the share of cases whose predicted label is right",
    "gap": "accuracy minus mean score: negative means the model is surer than it should be",
    "side": "which side of the review threshold the cases fall on",
    "threshold": "the review threshold: a score under it sends the case to a person",
    "share": "share of all evaluated cases",
    "routed_directly": "share of cases whose score is at or over the threshold (no person looks at them)",
    "accuracy_routed_directly": "how many of those are right",
    "errors_routed_directly": "wrong cases that would go out without review",
    "sent_to_review": "share of cases a person would have to decide",
    "row": "the case's row in the data file (the header is row 1, as in a spreadsheet)",
    "id": "the case's id from the id column",
    "text": "the complaint, personal data masked, shortened",
    "given": "the label the case carries",
    "score": "the model's probability for its own answer",
    "given_score": "the model's probability for the given label",
    "suggested": "the label the out-of-fold model finds more likely",
    "given_probability": "out-of-fold probability of the given label",
    "suggested_probability": "out-of-fold probability of the suggested label",
    "margin": "suggested minus given probability: larger is surer",
    "place": "where the routing took the case's place from",
    "meaning": "what that means",
    "flagged_for_review": "share of those cases sent to a person",
    "accuracy_not_flagged": "accuracy of the cases that went out without review",
    "cause": "why the agency was wrong",
    "errors": "wrong agencies with that cause",
    "share_of_errors": "their share of all wrong agencies",
    "recall_this": "recall of this model (the one the report is about)",
    "recall_other": "recall of the other model (the one it is compared with)",
    "delta_recall": "this minus other",
    "wrong_to_right": "cases of the class the other model got wrong and this one gets right",
    "right_to_wrong": "cases of the class the other model got right and this one gets wrong",
    "p_value": "McNemar's exact test on those two counts: the chance of a split at least this uneven if the "
               "models were equally good on the class; small means the change is real",
    "change": "real (p < 0.05), could be noise, or none (no case of the class changed)",
    "f1_this": "F1 of this model", "f1_other": "F1 of the other model", "delta_f1": "this minus other",
    "precision_this": "precision of this model", "precision_other": "precision of the other model",
    "this": "this model's answer (or score)", "other": "the other model's answer (or score)",
    "direction": "wrong->right: this model fixed the case; right->wrong: it broke it",
    "metric": "the measure", "delta": "this minus other",
    "class": "the class, its full name",
    "most confused with": "the class its cases are most often put in instead, with the share",
}

CSS = """
.hr-report{font-family:system-ui,-apple-system,"Noto Sans CJK SC","WenQuanYi Zen Hei","Microsoft YaHei",sans-serif;
 color:#1b1f24;line-height:1.45;max-width:1320px;margin:0 auto;padding:0 12px 40px}
.hr-report h1{font-size:1.5em;margin:.5em 0 .2em}.hr-report h2{font-size:1.25em;border-bottom:2px solid #d0d7de;
 padding-bottom:.2em;margin-top:1.6em}.hr-report h3{font-size:1.05em;margin:1.2em 0 .4em}
.hr-report section{scroll-margin-top:52px}
.hr-report .meta{color:#57606a;font-size:.9em;margin:.2em 0}
.hr-report nav.toc{position:sticky;top:0;z-index:5;background:#fff;border-bottom:1px solid #d0d7de;
 padding:6px 0;display:flex;flex-wrap:wrap;gap:2px 14px;font-size:.9em}
.hr-report nav.toc b{color:#57606a;font-weight:600}
.hr-report .cards{display:flex;flex-wrap:wrap;gap:10px;margin:.6em 0}
.hr-report .card{border:1px solid #d0d7de;border-radius:6px;padding:8px 14px;min-width:120px;background:#f6f8fa}
.hr-report .card b{display:block;font-size:1.4em}.hr-report .card span{color:#57606a;font-size:.85em}
.hr-report table{border-collapse:collapse;font-size:.85em;margin:.4em 0 .3em}
.hr-report th,.hr-report td{border:1px solid #d0d7de;padding:3px 7px;text-align:left;vertical-align:top}
.hr-report th{background:#f6f8fa}
.hr-report table.sortable th{cursor:pointer;user-select:none}
.hr-report table.sortable th:after{content:" \\2195";color:#8c959f;font-size:.8em}
.hr-report td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.hr-report .scroll{overflow-x:auto;max-width:100%}
.hr-report p.cols{color:#57606a;font-size:.8em;margin:0 0 1em;max-width:1100px}
.hr-report p.cols b{color:#1b1f24;font-weight:600}
.hr-report .note{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:6px 10px;margin:.5em 0}
.hr-report .overlap{border-radius:6px;padding:8px 12px;margin:.5em 0}
.hr-report .overlap.warn{background:#ffebe9;border:2px solid #cf222e;color:#82071e;font-weight:600}
.hr-report .overlap.unknown{background:#fff8c5;border:1px solid #d4a72c}
.hr-report .overlap.ok{background:#dafbe1;border:1px solid #4ac26b;font-size:.9em}
.hr-report .badge{display:inline-block;border-radius:10px;padding:1px 10px;font-weight:700}
.hr-report .badge.better{background:#dafbe1;color:#116329}.hr-report .badge.worse{background:#ffebe9;color:#a40e26}
.hr-report .badge.same{background:#eaeef2;color:#24292f}
.hr-report .heatmaps{display:flex;flex-wrap:wrap;gap:16px 24px;align-items:flex-start}
.hr-report .heatmaps table{font-size:.8em}
.hr-report .keybox{flex:1 1 300px;max-width:460px}
.hr-report .pos{color:#1a7f37}.hr-report .neg{color:#cf222e}
.hr-report .ex{color:#57606a;font-size:.92em}
.hr-report dl.glossary dt{font-weight:600;margin-top:.5em}.hr-report dl.glossary dd{margin:0 0 0 1.2em}
@media print{
 .hr-report{max-width:none;padding:0}
 .hr-report nav.toc{position:static;border:0}
 .hr-report .scroll{overflow:visible;max-width:none}
 .hr-report table{font-size:.75em}
 .hr-report tr,.hr-report svg,.hr-report .card{page-break-inside:avoid;break-inside:avoid}
 .hr-report h2,.hr-report h3{page-break-after:avoid;break-after:avoid}
 .hr-report svg{max-width:100%;height:auto}
 .hr-report table.sortable th:after{content:""}
}
"""

# idempotent: a notebook runs it once per displayed report, and a table must not get two click handlers
SORT_SCRIPT = """
document.querySelectorAll('table.sortable:not([data-sortable-ready])').forEach(function (table) {
  table.setAttribute('data-sortable-ready', '1');
  table.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var asc = th.getAttribute('data-dir') !== 'asc';
      table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('data-dir'); });
      th.setAttribute('data-dir', asc ? 'asc' : 'desc');
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute('data-v'), y = b.cells[col].getAttribute('data-v');
        var nx = parseFloat(x), ny = parseFloat(y);
        var r = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : String(x).localeCompare(String(y), 'zh');
        return asc ? r : -r;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _fmt(v: Any, digits: int = 4) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return "–" if not math.isfinite(float(v)) else f"{float(v):.{digits}f}"
    if v is None:
        return ""
    return str(v)


def _short(label: str, n: int = LABEL_CHARS) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def text_width(text: str, size: float) -> float:
    """About how many pixels ``text`` takes at font size ``size`` in a sans-serif font: a Chinese character
    (wide or full width) is one em, Latin letters and digits a little over half."""
    em = 0.0
    for ch in text:
        if unicodedata.east_asian_width(ch) in ("W", "F"):
            em += 1.0
        elif ch in "il.,:;|!'()[] ":
            em += 0.32
        elif ch.isupper() or ch in "mwMW%@":
            em += 0.78
        else:
            em += 0.6
    return em * size * 1.05


def _columns_line(columns: list[str]) -> str:
    known = [c for c in dict.fromkeys(columns) if c in COLUMN_HELP]
    if not known:
        return ""
    return '<p class="cols">' + "; ".join(f"<b>{_e(c)}</b>: {_e(COLUMN_HELP[c])}" for c in known) + ".</p>"


def table_html(df: pd.DataFrame, sortable: bool = False, digits: int = 4, limit: int | None = None,
               table_id: str | None = None, explain: bool = True) -> str:
    """A plain HTML table; numbers right-aligned; each cell carries its raw value for sorting; each header its
    meaning on hover, and (``explain``) every column in plain words under the table."""
    shown = df if limit is None else df.head(limit)
    cls = ' class="sortable"' if sortable else ""
    tid = f' id="{_e(table_id)}"' if table_id else ""
    head = "".join(f'<th title="{_e(COLUMN_HELP[c])}">{_e(c)}</th>' if c in COLUMN_HELP else f"<th>{_e(c)}</th>"
                   for c in shown.columns)
    body = []
    for row in shown.itertuples(index=False):
        cells = []
        for v in row:
            num = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
            raw = v if num and math.isfinite(float(v)) else ("" if num or v is None else v)
            cells.append(f'<td{" class=num" if num else ""} data-v="{_e(raw)}">{_e(_fmt(v, digits))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = ""
    if limit is not None and len(df) > limit:
        more = f'<p class="meta">showing {limit} of {len(df)} rows; all of them are in the CSV file</p>'
    cols = _columns_line([str(c) for c in shown.columns]) if explain else ""
    return (f'<div class="scroll"><table{cls}{tid}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}'
            f"</tbody></table></div>{more}{cols}")


# -- SVG ------------------------------------------------------------------------------------------------------------
def _blend(share: float, rgb: tuple[int, int, int]) -> str:
    share = min(max(share, 0.0), 1.0)
    r, g, b = (round(255 + (c - 255) * share) for c in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def svg_heatmap(labels: list[str], matrix: np.ndarray, normalized: bool, title: str, grouped: bool = False) -> str:
    """A confusion heatmap: rows are true classes, columns predictions; correct cells blue, errors red.

    Sized for reading at 40+ classes: 12 px labels measured as Chinese text (the margins hold the longest),
    cells of at least 22 px; a label longer than ``LABEL_CHARS`` is cut with "…" and given whole on hover
    (``<title>``) and in the table beside the heatmap.  Counts are coloured on a square-root scale of the
    largest off-/on-diagonal value, shares linearly.  ``grouped``: the last row and column sum the classes beyond
    the top N; they do not set the colour scale (they would wash it out).
    """
    n = len(labels)
    cell = 32 if n <= 12 else 26 if n <= 25 else 22
    font, num_font = 12, (11 if n <= 25 else 10)
    shorts = [_short(s) for s in labels]
    widths = [text_width(s, font) for s in shorts]
    longest = max(widths, default=font * 2)
    left = math.ceil(longest) + 14
    sin, cos = math.sin(math.radians(60)), math.cos(math.radians(60))
    top = math.ceil(longest * sin + font) + 12  # column labels rotated by -60 degrees
    grid = n * cell
    # the last column's rotated label reaches right of the grid; the caption must fit too
    right = max([left + j * cell + cell / 2 + w * cos + font for j, w in enumerate(widths)] + [left + grid])
    caption = f"{title} · rows: true, columns: predicted"
    width = math.ceil(max(right, text_width(caption, 12) + 8)) + 8
    height = top + grid + 30
    m = np.asarray(matrix, dtype=np.float64)
    values = row_shares = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    if not normalized:
        values = m
    scale = values[:-1, :-1] if grouped and n > 1 else values
    off = scale - np.diag(np.diag(scale))
    max_off = float(off.max()) if off.size else 0.0
    max_diag = float(np.diag(scale).max()) if len(scale) else 0.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}" '
             f'font-family="system-ui, &quot;Noto Sans CJK SC&quot;, &quot;WenQuanYi Zen Hei&quot;, sans-serif" '
             f'font-size="{font}">',
             f'<text x="4" y="{height - 8}" font-size="12" fill="#57606a" class="caption">{_e(caption)}</text>']
    for i, (lab, short) in enumerate(zip(labels, shorts)):
        y = top + i * cell + cell / 2 + font / 3
        parts.append(f'<text class="label" x="{left - 6}" y="{y:.1f}" text-anchor="end"><title>{_e(lab)}</title>'
                     f"{_e(short)}</text>")
        x = left + i * cell + cell / 2 + font / 3
        parts.append(f'<text class="label" transform="translate({x:.1f},{top - 6}) rotate(-60)"><title>{_e(lab)}'
                     f"</title>{_e(short)}</text>")
    for i in range(n):
        for j in range(n):
            v = values[i, j]
            diag = i == j
            peak = max_diag if diag else max_off
            share = min((v / peak if normalized else math.sqrt(v / peak)) if peak > 0 else 0.0, 1.0)
            color = _blend(share, (33, 102, 172) if diag else (203, 24, 29)) if v > 0 else "#ffffff"
            x, y = left + j * cell, top + i * cell
            tip = (f"true {labels[i]} → predicted {labels[j]}: {int(m[i, j])} case(s), "
                   f"{row_shares[i, j]:.1%} of the true class")
            parts.append(f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{color}" stroke="#e1e4e8">'
                         f"<title>{_e(tip)}</title></rect>")
            if v > 0:
                txt = ("<1" if v < 0.005 else f"{100 * v:.0f}") if normalized else f"{int(v)}"
                ink = "#ffffff" if share > 0.6 else "#1b1f24"
                parts.append(f'<text x="{x + cell / 2}" y="{y + cell / 2 + num_font / 3:.1f}" text-anchor="middle" '
                             f'font-size="{num_font}" fill="{ink}" pointer-events="none">{_e(txt)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def svg_reliability(table: pd.DataFrame, title: str) -> str:
    """Reliability diagram: accuracy per confidence bin against the diagonal of perfect calibration."""
    size, pad = 220, 34
    w, h = size + pad + 10, size + pad + 24
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
             f'role="img" aria-label="{_e(title)}" font-family="system-ui, sans-serif" font-size="10">',
             f'<rect x="{pad}" y="10" width="{size}" height="{size}" fill="#f6f8fa" stroke="#d0d7de"/>',
             f'<line x1="{pad}" y1="{10 + size}" x2="{pad + size}" y2="10" stroke="#8c959f" stroke-dasharray="4 3"/>']
    total = max(int(table["cases"].sum()), 1)
    for r in table.itertuples():
        if not r.cases:
            continue
        x = pad + r.low * size
        bw = (r.high - r.low) * size
        bh = r.accuracy * size
        parts.append(f'<rect x="{x + 1:.1f}" y="{10 + size - bh:.1f}" width="{bw - 2:.1f}" height="{bh:.1f}" '
                     f'fill="#2166ac" fill-opacity="{0.35 + 0.65 * r.cases / total:.2f}">'
                     f"<title>{_e(f'score {r.bin}: {r.cases} cases, accuracy {r.accuracy:.1%}')}</title></rect>")
    for k in range(0, 11, 5):
        v = k / 10
        parts.append(f'<text x="{pad + v * size:.0f}" y="{size + 22}" text-anchor="middle">{v:.1f}</text>')
        parts.append(f'<text x="{pad - 4}" y="{10 + size - v * size + 3:.0f}" text-anchor="end">{v:.1f}</text>')
    parts.append(f'<text x="{pad + size / 2}" y="{h - 2}" text-anchor="middle">top score → accuracy</text></svg>')
    return "".join(parts)


# -- the first screen ------------------------------------------------------------------------------------------------
def _name(path: Any) -> str:
    return str(path or "DataFrame").replace("\\", "/").rsplit("/", 1)[-1]


def _trained(manifest: dict[str, Any] | None) -> str:
    """", trained 2026-11-28 on cases.csv (5,063 rows)" from a manifest (empty without one)."""
    if not manifest:
        return ""
    data = manifest.get("data") or {}
    when = str(manifest.get("created") or "")[:10]
    rows = data.get("rows")
    on = f" on {_name(data.get('source'))}" + (f" ({rows:,} rows)" if isinstance(rows, int) else "") if data else ""
    return f", trained {when}{on}" if when or on else ""


def _overlap_html(o: Overlap | None) -> str:
    if o is None:
        return ""
    kind = "warn" if o.warns else "ok" if o.status == "none" else "unknown"
    lead = "Warning: " if o.warns else ""
    return f'<div class="overlap {kind}" data-status="{_e(o.status)}">{lead}{_e(o.sentence())}</div>'


def _shows_top3(t: TargetReport) -> bool:
    return len(t.labels) > 3


def _headline_table(report: Report) -> str:
    from .calibration import expected_calibration_error

    rows = []
    for name, t in report.targets.items():
        m = t.metrics
        top3 = f'<td class=num data-metric="top3_accuracy">{m["top3_accuracy"]:.4f}</td>' if _shows_top3(t) else \
            '<td class=num title="3 classes or fewer: always 1">–</td>'
        rows.append(f'<tr data-target="{_e(name)}"><th><a href="#target-{_e(name)}">{_e(name)}</a></th>'
                    f"<td>{_e(t.column)}</td><td class=num>{m['n']}</td><td class=num>{len(t.labels)}</td>"
                    f'<td class=num data-metric="accuracy">{m["accuracy"]:.4f}</td>'
                    f'<td class=num data-metric="macro_f1">{m["macro_f1"]:.4f}</td>{top3}'
                    f'<td class=num>{t.review.iloc[0]["share"]:.1%}</td>'
                    f"<td class=num>{_fmt(expected_calibration_error(t.calibration), 3)}</td></tr>")
    head = ("<tr><th>target</th><th>column</th><th>cases</th><th>classes</th><th>accuracy</th><th>macro-F1</th>"
            "<th>top-3 accuracy</th><th>review rate</th><th>ECE</th></tr>")
    return (f'<table id="headline"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'
            '<p class="cols"><b>accuracy</b>: share of cases given the right label; <b>macro-F1</b>: the '
            "average over classes of how well each is found and kept clean, so small classes count as much as "
            "large ones; <b>top-3 accuracy</b>: the right label among the model's 3 best guesses (not shown with 3 "
            "classes or fewer, where it is always 1); <b>review rate</b>: share of cases scored under the review "
            "threshold, sent to a person; <b>ECE</b>: expected calibration error, how far the model's scores are "
            "from how often it is right (0.02: a score of 0.90 means right about 88-92 % of the time).</p>")


def _verdict_badge(verdict: str) -> str:
    kind = {"better": "better", "worse": "worse"}.get(verdict, "same")
    return f'<b class="badge {kind}" data-verdict="{_e(verdict)}">{_e(verdict)}</b>'


def _verdict_table(report: Report) -> str:
    if not report.comparisons:
        return ""
    rows = []
    for name, c in report.comparisons.items():
        p = c.paired
        m = c.metrics.set_index("metric")
        rows.append(f'<tr data-target="{_e(name)}"><th><a href="#compare-{_e(name)}">{_e(name)}</a></th>'
                    f'<td class=num>{m.loc["accuracy", "this"]:.4f}</td><td class=num>{m.loc["accuracy", "other"]:.4f}'
                    f'</td><td class=num>{100 * p["accuracy_delta"]:+.2f}</td>'
                    f'<td class=num>{100 * p["ci95_low"]:+.2f} to {100 * p["ci95_high"]:+.2f}</td>'
                    f'<td class=num>{p["only_this_right"]}</td><td class=num>{p["only_other_right"]}</td>'
                    f'<td class=num>{p["p_value"]:.3g}</td><td class="verdict">{_verdict_badge(p["verdict"])}</td>'
                    "</tr>")
    this = _e(report.model_version or "this model")
    other = _e(report.compare_version or "the other model")
    head = ("<tr><th>target</th><th>accuracy this</th><th>accuracy other</th><th>change (points)</th>"
            "<th>95 % interval</th><th>wrong→right</th><th>right→wrong</th><th>p</th><th>verdict</th></tr>")
    return (f'<h2 id="verdict">Is {this} better than {other}?</h2>'
            f'<table id="verdicts"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'
            f'<p class="cols"><b>this</b>: {this}, the model this report is about; <b>other</b>: {other}, the one it '
            "is compared with, on the same cases. <b>wrong→right</b> / <b>right→wrong</b>: cases only this / only "
            "the other model gets right; only these carry evidence. <b>95 % interval</b>: where the accuracy "
            "change lies, from resampling the cases. <b>p</b>: McNemar's exact test, the chance of a split of "
            "those cases at least this uneven if the two were equally good. <b>verdict</b>: better or worse when "
            "p < 0.05, else no significant difference. Promote on \"better\"; a few flipped cases either way is "
            "noise.</p>")


def _summary_block(report: Report) -> str:
    d = report.data
    dropped = d["skipped_empty_text"] + d["skipped_too_long"]
    model = _e(report.model_version or "(not from the store)")
    evaluated = (f"Evaluated on <b>{_e(_name(d.get('source')))}</b>: {d['rows']:,} rows, {d['rows_evaluated']:,} "
                 f"evaluated{f' ({dropped} skipped: empty or too long)' if dropped else ''}.")
    compared = (f"<p class=meta>Compared with version <b>{_e(report.compare_version or 'other')}</b>"
                f"{_e(_trained(report.compare_manifest))}.</p>") if report.comparisons else ""
    skipped = "".join(f'<div class="note">{_e(k)} not evaluated: {_e(v)}</div>'
                      for k, v in report.skipped_targets.items())
    return f"""<section id="summary">
<h1>Confusion report: model {model}</h1>
<p class="meta">Model <b>{model}</b>{_e(_trained(report.manifest))}.</p>
<p class="meta">{evaluated}</p>
{compared}
{_overlap_html(report.overlap)}
{_overlap_html(report.compare_overlap) if report.comparisons else ""}
{skipped}
{_headline_table(report)}
{_verdict_table(report)}
</section>"""


# -- details ----------------------------------------------------------------------------------------------------------
def _cards(t: TargetReport, extra: dict[str, str]) -> str:
    items = [("accuracy", "accuracy"), ("macro_f1", "macro-F1")]
    if _shows_top3(t):
        items.append(("top3_accuracy", "top-3 accuracy"))
    out = [f'<div class="card"><b data-metric="{k}">{t.metrics[k]:.4f}</b><span>{name}</span></div>'
           for k, name in items]
    out.append(f'<div class="card"><b>{t.metrics["n"]}</b><span>cases</span></div>')
    out.extend(f'<div class="card"><b>{_e(v)}</b><span>{_e(k)}</span></div>' for k, v in extra.items())
    return '<div class="cards">' + "".join(out) + "</div>"


def _pairs_html(t: TargetReport) -> str:
    if not len(t.pairs):
        return "<p>No confusions: every case was predicted as its given label.</p>"
    rows = []
    for r in t.pairs.head(SHOWN_PAIRS).itertuples():
        ex = "".join(f'<li class="ex">row {e["row"]}: {_e(e["text"])} (score {e["score"]:.2f}, '
                     f'given label {e["given_score"]:.2f})</li>' for e in r.examples)
        rows.append(f"<tr><td>{_e(r.true)}</td><td>{_e(r.predicted)}</td><td class=num>{r.count}</td>"
                    f"<td class=num>{r.share_of_true:.1%}</td><td class=num>{r.reverse}</td>"
                    f"<td><ul>{ex}</ul></td></tr>")
    more = (f'<p class="meta">showing {SHOWN_PAIRS} of {len(t.pairs)} pairs; all of them are in '
            f"tables/{_e(t.target)}_confused_pairs.csv</p>") if len(t.pairs) > SHOWN_PAIRS else ""
    return ("<table><thead><tr><th>true</th><th>predicted as</th><th>cases</th><th>share of true class</th>"
            "<th>other way round</th><th>examples (personal data masked)</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>" + more
            + _columns_line(["true", "predicted as", "count", "share_of_true", "reverse"]))


def _heatmap_key(t: TargetReport, labels: list[str], m: np.ndarray, grouped: bool) -> str:
    """The table beside a heatmap: each row's full label, cases, recall and where its errors go."""
    rows = []
    for i, label in enumerate(labels):
        total = int(m[i].sum())
        off = m[i].copy()
        off[i] = 0
        group = grouped and i == len(labels) - 1  # the summed rest: its diagonal mixes many classes
        j = int(np.argmax(off)) if off.any() and not group else None
        confused = f"{labels[j]} ({off[j] / total:.0%})" if j is not None and total else ""
        recall = f"{m[i, i] / total:.2f}" if total and not group else "–"
        rows.append(f"<tr><td>{_e(label)}</td><td class=num>{total}</td><td class=num>{recall}</td>"
                    f"<td>{_e(confused)}</td></tr>")
    return (f'<div class="keybox"><table class="key" id="heatmap-key-{_e(t.target)}"><thead><tr><th>class</th>'
            f"<th>cases</th><th>recall</th><th>most confused with</th></tr></thead><tbody>{''.join(rows)}"
            "</tbody></table>"
            + _columns_line(["class", "cases", "recall", "most confused with"]) + "</div>")


def _target_section(report: Report, t: TargetReport) -> str:
    from .calibration import expected_calibration_error
    from .confusion import heatmap_order

    name = t.target
    review = t.review.iloc[0]
    extra = {"review rate": f"{review['share']:.1%}", "ECE": _fmt(expected_calibration_error(t.calibration), 3)}
    notes = "".join(f'<div class="note">{_e(n)}</div>' for n in t.notes)
    labels, m = heatmap_order(t.confusion, t.labels, top_n=report.top_n)
    grouped = len(labels) < len(t.labels)
    group_note = (f'<p class="meta">{len(t.labels)} classes: the {len(labels) - 1} most confused are shown, the rest '
                  "are summed in the last row and column (every class is in the per-class table and "
                  f"tables/{_e(name)}_confusion_cells.csv).</p>") if grouped else ""
    unseen = ""
    if len(t.unseen_labels):
        unseen = "<h3>Labels the model never saw</h3>" + table_html(t.unseen_labels, limit=SHOWN_CASES)
    per_class = t.per_class.sort_values(["f1", "support"], ascending=[True, False])
    disputed = (table_html(t.disputed, limit=SHOWN_CASES) if len(t.disputed)
                else "<p>No case whose given label the model confidently disputes.</p>")
    misrouted = (table_html(t.misrouted, limit=SHOWN_CASES) if len(t.misrouted)
                 else "<p>No wrong predictions.</p>")
    routing = ""
    if t.routing_errors is not None and t.routing_places is not None:
        routing = f"""<h3>Routing: where the place came from</h3>
<p class="meta">Calibration by where the place came from. flagged_for_review: the agency's score is under the
review threshold, or the text and the request's hint do not decide its county (a county model's guess asks for
review until <code>hotline check-guesses</code> shows on real held-out cases that it earns the threshold).
routed_without_review: the cases the service would send out; meets_threshold: were they right at least as often
as the threshold promises (accuracy_not_flagged &ge; threshold)? mean_score against accuracy: the calibration.</p>
{table_html(t.routing_places, digits=3)}
<h3>Routing: why agencies were missed</h3>
<p class="meta">Each wrong agency against the right one in the routing directory: a wrong county points at
place names (the gazetteer, missing aliases), a wrong function at the text model (retrain, more cases).</p>
{table_html(t.routing_errors, digits=3)}"""
    ece = _fmt(expected_calibration_error(t.calibration), 3)
    return f"""
<section id="target-{_e(name)}">
<h2>{_e(name)} <span class="meta">(column {_e(t.column)})</span></h2>
{_cards(t, extra)}
{notes}
<h3>Per class</h3>
<p class="meta">Click a column header to sort. Worst F1 first.</p>
{table_html(per_class, sortable=True, table_id=f"per-class-{name}")}
{unseen}
<h3>Confusion matrix</h3>
{group_note}
<p class="meta">Rows: the label a case carries; columns: what the model said. Blue: right; red: wrong, darker for
more cases. Hover over a cell or a label for the full names and numbers.</p>
<div class="heatmaps">{svg_heatmap(labels, m, False, f"{name}: cases", grouped=grouped)}
{_heatmap_key(t, labels, m, grouped)}</div>
<div class="heatmaps">{svg_heatmap(labels, m, True, f"{name}: % of the true class", grouped=grouped)}</div>
<h3>Most-confused pairs</h3>
{_pairs_html(t)}
<h3>Calibration: does a score mean what it says?</h3>
<p class="meta">Cases grouped by the model's top score. Where a band's accuracy is close to its mean score, a
score of 0.8 means right 8 times in 10, and a review threshold does what it promises. ECE {ece} is the average
distance between the two, weighted by cases (0 is perfect; under 0.05 is good).</p>
<div class="heatmaps"><div>{table_html(t.calibration.drop(columns=["low", "high"]), digits=3)}</div>
{svg_reliability(t.calibration, f"{name} reliability")}</div>
<h3>Review threshold {t.threshold:.2f}</h3>
{table_html(t.review, digits=3)}
<h3>Operating points: other thresholds</h3>
<p class="meta">Per threshold: the share of cases the service would route without review, how many of those
are right, and the share left for dispatchers (set per target with HOTLINE_THRESHOLDS).</p>
{table_html(t.operating_points, digits=3)}
{routing}
<h3>Cases to re-check: misrouted (most confident errors first)</h3>
{misrouted}
<h3>Cases to re-check: given label confidently disputed (out-of-fold)</h3>
<p class="meta">Out-of-fold probabilities: the model's linear heads refit on folds of this data; a case is listed
when another class is at least as probable as that class typically is for its own cases (confident learning),
at least 50% probable, and the given label is less probable than it typically is for its own cases.</p>
{disputed}
</section>"""


def _comparison_section(report: Report, c: Comparison) -> str:
    p = c.paired
    rows = []
    for r in c.metrics.itertuples():
        if r.metric == "top3_accuracy" and not _shows_top3(report.targets[c.target]):
            continue
        cls = "pos" if r.delta > 0 else "neg" if r.delta < 0 else ""
        rows.append(f'<tr><td>{_e(r.metric)}</td><td class=num>{r.this:.4f}</td><td class=num>{r.other:.4f}</td>'
                    f'<td class="num {cls}">{r.delta:+.4f}</td></tr>')
    this, other = _e(report.model_version or "this model"), _e(report.compare_version or "other")
    real = int((c.per_class["change"] == "real").sum())
    shown = c.per_class.drop(columns=["precision_this", "precision_other"])
    unchanged = ""
    if len(shown) > SHOWN_CLASSES:
        moved = shown[shown["change"] != "none"]
        if len(moved) < len(shown):
            unchanged = (f'<p class="meta">{len(shown) - len(moved)} classes none of whose cases changed are left '
                         f"out here; every class is in tables/{_e(c.target)}_compare_per_class.csv.</p>")
            shown = moved
    return f"""
<section id="compare-{_e(c.target)}">
<h2>{_e(c.target)}: {this} (this) vs {other} (other)</h2>
<table><thead><tr><th>metric</th><th>this</th><th>other</th><th>delta</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
<p class=paired>Cases that flipped: <b class="neg">right→wrong {p["only_other_right"]}</b>,
<b class="pos">wrong→right {p["only_this_right"]}</b> of {p["n"]}. Accuracy
{100 * p["accuracy_delta"]:+.2f} points (95 % interval {100 * p["ci95_low"]:+.2f} to {100 * p["ci95_high"]:+.2f},
paired bootstrap); McNemar's exact test p = {p["p_value"]:.3g}: {_verdict_badge(p["verdict"])}.
Only the cases one model gets right and the other wrong carry evidence; a few of them either way is noise.</p>
<h3>Per-class changes, the surest first</h3>
<p class="meta">Sorted by how sure each class's change is (McNemar's test on the class's own flipped cases), then
by its number of cases; not by the size of the change, which in a small class is mostly chance. {real} of
{len(c.per_class)} classes changed for real.</p>
{table_html(shown, sortable=True, table_id=f"compare-per-class-{c.target}") if len(shown) else
 "<p>No case of any class changed.</p>"}
{unchanged}
<h3>Flipped cases</h3>
{table_html(c.flips, limit=SHOWN_CASES) if len(c.flips) else "<p>No case flipped.</p>"}
</section>"""


GLOSSARY = [
    ("accuracy", "The share of cases whose predicted label equals the label they carry."),
    ("macro-F1", "For each class, F1 combines precision (of the cases put in the class, the share that belong "
                 "there) and recall (of the class's cases, the share found); macro-F1 averages it over the classes, "
                 "so a small agency counts as much as a large one."),
    ("top-3 accuracy", "The share of cases whose label is among the model's 3 most probable; what an operator "
                       "choosing from a short list gets. Not shown for targets with 3 classes or fewer."),
    ("review rate", "The share of cases whose score is under the review threshold: the service flags them for "
                    "a person instead of routing them."),
    ("ECE (expected calibration error)", "Cases are grouped by the model's top score; in each group the gap "
                                         "between the average score and the share actually right is taken, "
                                         "and the gaps are averaged, weighted by cases. 0.03 means a score is "
                                         "about 3 points off the truth on average; small is good."),
    ("this / other", "In a comparison, \"this\" is the model the report is about (usually the candidate) and "
                     "\"other\" the one it is compared with (usually the current version), on the same cases; "
                     "every delta is this minus other."),
    ("right→wrong / wrong→right", "Cases the other model got right and this one gets wrong (regressions), and "
                                  "the reverse (fixes). Cases both get right or both get wrong say nothing about "
                                  "which is better."),
    ("p (McNemar)", "The chance that the flipped cases split at least this unevenly if both models were equally "
                    "good. Under 0.05 the report calls the difference real: better or worse."),
    ("95 % interval", "Where the accuracy change lies, from resampling the evaluated cases 10,000 times."),
    ("disputed label", "A case whose given label the model, trained without that case (out of fold), finds "
                       "clearly less likely than another label: worth a second look by a person."),
    ("overlap", "Evaluated cases that a model learned from (found by the row fingerprint saved with every "
                "version). A model scored on them looks better than it is."),
]


def _glossary() -> str:
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in GLOSSARY)
    return f'<section id="glossary"><h2>What the numbers mean</h2><dl class="glossary">{items}</dl></section>'


def _toc(report: Report) -> str:
    links = ['<b>Contents</b>', '<a href="#summary">Summary</a>']
    if report.comparisons:
        links.append('<a href="#verdict">Verdict</a>')
    links += [f'<a href="#target-{_e(n)}">{_e(n)}</a>' for n in report.targets]
    links += [f'<a href="#compare-{_e(n)}">{_e(n)}: this vs other</a>' for n in report.comparisons]
    links.append('<a href="#glossary">What the numbers mean</a>')
    return '<nav class="toc">' + "".join(links) + "</nav>"


def render_summary(report: Report, link: str | Path | None = None) -> str:
    """The first screen alone (what was evaluated, on what, overlap warnings, headline numbers, verdicts), for a
    notebook; ``link``: where the full report is (a link, relative to the notebook when it can be)."""
    more = ""
    if link is not None:
        href = str(link)
        more = (f'<p class="meta">The full report (per class, confusion matrices, cases to re-check): '
                f'<a href="{_e(href)}" target="_blank">{_e(href)}</a></p>')
    else:
        more = ('<p class="meta">The full report: <code>report.save(folder)</code> writes report.html; '
                "<code>report.full()</code> shows it here.</p>")
    return f'<div class="hr-report"><style>{CSS}</style>{_summary_block(report)}{more}</div>'


def render_notebook(report: Report) -> str:
    """The whole report in a notebook: the fragment and the sorting script (Jupyter runs scripts of trusted
    outputs, which the outputs of cells the user runs are)."""
    return f"{render_fragment(report)}\n<script>{SORT_SCRIPT}</script>"


def render_fragment(report: Report) -> str:
    """The report's body with its (scoped) style: table of contents, first screen, details, glossary."""
    body = "".join(_target_section(report, t) for t in report.targets.values())
    body += "".join(_comparison_section(report, c) for c in report.comparisons.values())
    return f"""<div class="hr-report"><style>{CSS}</style>
{_toc(report)}
{_summary_block(report)}
{body}
{_glossary()}
</div>"""


def render_page(report: Report) -> str:
    created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Confusion report {_e(report.model_version or "")}</title></head>
<body style="margin:0;background:#fff">
{render_fragment(report)}
<p class="meta" style="font-family:sans-serif;text-align:center;color:#57606a">generated {created}</p>
<script>{SORT_SCRIPT}</script>
</body></html>
"""
