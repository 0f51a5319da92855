"""The confusion report as one self-contained HTML page (inline CSS, inline SVG heatmaps, a few lines of
inline script to sort tables; no network) and the model card as markdown.

Every text shown is escaped; complaint examples were masked (``mask_pii``) and shortened by ``evaluate``.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .metrics import paired_sentence

if TYPE_CHECKING:
    from .report import Comparison, Report, TargetReport

__all__ = ["render_page", "render_fragment", "render_notebook", "render_model_card", "svg_heatmap", "svg_reliability"]

SHOWN_CASES = 30  # rows of the case tables shown in the page; the CSV files hold them all
SHOWN_PAIRS = 15
LABEL_CHARS = 16

CSS = """
.hr-report{font-family:system-ui,-apple-system,"Noto Sans CJK SC","Microsoft YaHei",sans-serif;color:#1b1f24;
 line-height:1.45;max-width:1200px;margin:0 auto;padding:0 12px 40px}
.hr-report h1{font-size:1.5em;margin:.6em 0 .2em}.hr-report h2{font-size:1.25em;border-bottom:2px solid #d0d7de;
 padding-bottom:.2em;margin-top:1.6em}.hr-report h3{font-size:1.05em;margin:1.2em 0 .4em}
.hr-report .meta{color:#57606a;font-size:.9em}
.hr-report .cards{display:flex;flex-wrap:wrap;gap:10px;margin:.6em 0}
.hr-report .card{border:1px solid #d0d7de;border-radius:6px;padding:8px 14px;min-width:120px;background:#f6f8fa}
.hr-report .card b{display:block;font-size:1.4em}.hr-report .card span{color:#57606a;font-size:.85em}
.hr-report table{border-collapse:collapse;font-size:.85em;margin:.4em 0 1em}
.hr-report th,.hr-report td{border:1px solid #d0d7de;padding:3px 7px;text-align:left;vertical-align:top}
.hr-report th{background:#f6f8fa;position:sticky;top:0}
.hr-report table.sortable th{cursor:pointer;user-select:none}
.hr-report table.sortable th:after{content:" \\2195";color:#8c959f;font-size:.8em}
.hr-report td.num{text-align:right;font-variant-numeric:tabular-nums}
.hr-report .scroll{max-height:420px;overflow:auto;display:inline-block;max-width:100%}
.hr-report .note{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:6px 10px;margin:.5em 0}
.hr-report .heatmaps{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
.hr-report .pos{color:#1a7f37}.hr-report .neg{color:#cf222e}
.hr-report .ex{color:#57606a;font-size:.92em}
.hr-report nav a{margin-right:12px}
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
    return str(v)


def _short(label: str, n: int = LABEL_CHARS) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def table_html(df: pd.DataFrame, sortable: bool = False, digits: int = 4, limit: int | None = None,
               table_id: str | None = None) -> str:
    """A plain HTML table; numbers right-aligned; each cell carries its raw value for sorting."""
    shown = df if limit is None else df.head(limit)
    cls = ' class="sortable"' if sortable else ""
    tid = f' id="{_e(table_id)}"' if table_id else ""
    head = "".join(f"<th>{_e(c)}</th>" for c in shown.columns)
    body = []
    for row in shown.itertuples(index=False):
        cells = []
        for v in row:
            num = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
            raw = v if num and math.isfinite(float(v)) else ("" if num else v)
            cells.append(f'<td{" class=num" if num else ""} data-v="{_e(raw)}">{_e(_fmt(v, digits))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = ""
    if limit is not None and len(df) > limit:
        more = f'<p class="meta">showing {limit} of {len(df)} rows; all of them are in the CSV file</p>'
    return (f'<div class="scroll"><table{cls}{tid}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}'
            f"</tbody></table></div>{more}")


# -- SVG ------------------------------------------------------------------------------------------------------------
def _blend(share: float, rgb: tuple[int, int, int]) -> str:
    share = min(max(share, 0.0), 1.0)
    r, g, b = (round(255 + (c - 255) * share) for c in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def svg_heatmap(labels: list[str], matrix: np.ndarray, normalized: bool, title: str, grouped: bool = False) -> str:
    """A confusion heatmap: rows are true classes, columns predictions; correct cells blue, errors red.

    Counts are coloured on a square-root scale of the largest off-/on-diagonal value, shares linearly.
    Each cell has a tooltip (``<title>``) with the full labels and numbers.  ``grouped``: the last row and
    column sum the classes beyond the top N; they do not set the colour scale (they would wash it out).
    """
    n = len(labels)
    cell = 22 if n <= 20 else 18
    font = 9 if n <= 20 else 8
    left = 8 + 7 * max((len(_short(s)) for s in labels), default=4) + 12
    top = left  # column labels are rotated; same room as the row labels
    width, height = left + n * cell + 10, top + n * cell + 30
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
             f'font-family="system-ui, sans-serif" font-size="{font}">',
             f'<text x="{left}" y="{height - 8}" font-size="11" fill="#57606a">{_e(title)} · rows: true, '
             f"columns: predicted</text>"]
    for i, lab in enumerate(labels):
        y = top + i * cell + cell / 2 + font / 3
        parts.append(f'<text x="{left - 6}" y="{y:.1f}" text-anchor="end"><title>{_e(lab)}</title>'
                     f"{_e(_short(lab))}</text>")
        x = left + i * cell + cell / 2 + font / 3
        parts.append(f'<text transform="translate({x:.1f},{top - 6}) rotate(-60)"><title>{_e(lab)}</title>'
                     f"{_e(_short(lab))}</text>")
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
                parts.append(f'<text x="{x + cell / 2}" y="{y + cell / 2 + font / 3:.1f}" text-anchor="middle" '
                             f'fill="{ink}" pointer-events="none">{_e(txt)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def svg_reliability(table: pd.DataFrame, title: str) -> str:
    """Reliability diagram: accuracy per confidence bin against the diagonal of perfect calibration."""
    size, pad = 220, 34
    w, h = size + pad + 10, size + pad + 24
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
             f'role="img" aria-label="{_e(title)}" font-family="system-ui, sans-serif" font-size="9">',
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


# -- sections -------------------------------------------------------------------------------------------------------
def _cards(metrics: dict[str, Any], extra: dict[str, str]) -> str:
    items = [("accuracy", "accuracy"), ("macro_f1", "macro-F1"), ("top3_accuracy", "top-3 accuracy")]
    out = [f'<div class="card"><b data-metric="{k}">{metrics[k]:.4f}</b><span>{name}</span></div>' for k, name in items]
    out.append(f'<div class="card"><b>{metrics["n"]}</b><span>cases</span></div>')
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
            + "".join(rows) + "</tbody></table>" + more)


def _target_section(report: Report, t: TargetReport) -> str:
    from .report import expected_calibration_error, heatmap_order

    name = t.target
    review = t.review.iloc[0]
    extra = {"review rate": f"{review['share']:.1%}", "ECE": _fmt(expected_calibration_error(t.calibration), 3)}
    notes = "".join(f'<div class="note">{_e(n)}</div>' for n in t.notes)
    labels, m = heatmap_order(t.confusion, t.labels, top_n=report.top_n)
    grouped = (f'<p class="meta">{len(t.labels)} classes: the {len(labels) - 1} most confused are shown, the rest '
               f"are summed in the last row and column.</p>") if len(labels) < len(t.labels) else ""
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
<p class="meta">flagged_for_review: the agency's score is under the review threshold.</p>
{table_html(t.routing_places, digits=3)}
<h3>Routing: why agencies were missed</h3>
<p class="meta">Each wrong agency against the right one in the routing directory: a wrong county points at
place names (the gazetteer, missing aliases), a wrong function at the text model (retrain, more cases).</p>
{table_html(t.routing_errors, digits=3)}"""
    return f"""
<section id="target-{_e(name)}">
<h2>{_e(name)} <span class="meta">(column {_e(t.column)})</span></h2>
{_cards(t.metrics, extra)}
{notes}
<h3>Per class</h3>
<p class="meta">Click a column header to sort. Worst F1 first.</p>
{table_html(per_class, sortable=True, table_id=f"per-class-{name}")}
{unseen}
<h3>Confusion matrix</h3>
{grouped}
<div class="heatmaps">{svg_heatmap(labels, m, False, f"{name}: counts", grouped=bool(grouped))}
{svg_heatmap(labels, m, True, f"{name}: % of the true class", grouped=bool(grouped))}</div>
<h3>Most-confused pairs</h3>
{_pairs_html(t)}
<h3>Calibration</h3>
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
    verdict_cls = {"better": "pos", "worse": "neg"}.get(p["verdict"], "")
    rows = []
    for r in c.metrics.itertuples():
        cls = "pos" if r.delta > 0 else "neg" if r.delta < 0 else ""
        rows.append(f'<tr><td>{_e(r.metric)}</td><td class=num>{r.this:.4f}</td><td class=num>{r.other:.4f}</td>'
                    f'<td class="num {cls}">{r.delta:+.4f}</td></tr>')
    return f"""
<section id="compare-{_e(c.target)}">
<h2>{_e(c.target)}: {_e(report.model_version or "this model")} vs {_e(report.compare_version or "other")}</h2>
<table><thead><tr><th>metric</th><th>this</th><th>other</th><th>delta</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
<p class=paired>Cases that flipped: <b class="neg">right→wrong {p["only_other_right"]}</b>,
<b class="pos">wrong→right {p["only_this_right"]}</b> of {p["n"]}. Accuracy
{100 * p["accuracy_delta"]:+.2f} points (95 % interval {100 * p["ci95_low"]:+.2f} to {100 * p["ci95_high"]:+.2f},
paired bootstrap); McNemar's exact test p = {p["p_value"]:.3g}: <b class="{verdict_cls}">{_e(p["verdict"])}</b>.
Only the cases one model gets right and the other wrong carry evidence; a few of them either way is noise.</p>
<h3>Per-class deltas (largest losses first)</h3>
{table_html(c.per_class, sortable=True, table_id=f"compare-per-class-{c.target}")}
<h3>Flipped cases</h3>
{table_html(c.flips, limit=SHOWN_CASES) if len(c.flips) else "<p>No case flipped.</p>"}
</section>"""


def render_notebook(report: Report) -> str:
    """What a notebook shows: the fragment and the sorting script (Jupyter runs scripts of trusted outputs,
    which the outputs of cells the user runs are)."""
    return f"{render_fragment(report)}\n<script>{SORT_SCRIPT}</script>"


def render_fragment(report: Report) -> str:
    """The report's body with its (scoped) style."""
    d = report.data
    skipped = "".join(f'<div class="note">{_e(k)} not evaluated: {_e(v)}</div>'
                      for k, v in report.skipped_targets.items())
    nav = "".join(f'<a href="#target-{_e(n)}">{_e(n)}</a>' for n in report.targets)
    nav += "".join(f'<a href="#compare-{_e(n)}">{_e(n)} comparison</a>' for n in report.comparisons)
    dropped = d["skipped_empty_text"] + d["skipped_too_long"]
    source = str(d.get("source") or "DataFrame").replace("\\", "/").rsplit("/", 1)[-1]
    body = "".join(_target_section(report, t) for t in report.targets.values())
    body += "".join(_comparison_section(report, c) for c in report.comparisons.values())
    return f"""<div class="hr-report"><style>{CSS}</style>
<h1>Confusion report: model {_e(report.model_version or "(not from the store)")}</h1>
<p class="meta">data {_e(source)}: {d["rows"]} rows, {d["rows_evaluated"]} evaluated
{f"({dropped} skipped: empty or too long)" if dropped else ""}
{f"· compared with version {_e(report.compare_version)}" if report.comparisons else ""}</p>
<nav>{nav}</nav>
{skipped}
{body}
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


# -- model card -----------------------------------------------------------------------------------------------------
def _used(head: dict[str, Any]) -> str:
    """", N features used" when the manifest says (models saved before session 5 do not)."""
    used = head.get("features_used")
    return f", {used:,} features used" if isinstance(used, int) else ""


def render_model_card(report: Report) -> str:
    """Markdown model card from the manifest and this evaluation (no complaint text in it)."""
    m = report.manifest or {}
    data = m.get("data", {}) or {}
    lines = [f"# Model card: hotline classifier {report.model_version or '(unsaved model)'}", ""]
    lines += ["## Model", "",
              f"- version: {report.model_version or 'not saved in a store'}",
              f"- created: {m.get('created', 'unknown')}",
              f"- targets: {', '.join(m.get('targets', list(report.targets)))}",
              "- method: jieba-segmented word 1-2-grams + char 1-3-grams, TF-IDF, one linear model per target: "
              "a linear SVM with temperature-scaled probabilities, or, where the median class has enough cases, a "
              "word-block SVM, a char-block SVM and naive Bayes summed with weights fitted on out-of-fold scores",
              f"- review threshold: {m.get('review_threshold', next(iter(report.targets.values())).threshold)}"]
    for name, head in (m.get("heads") or {}).items():
        if isinstance(head, dict) and head.get("kind") == "fused":
            weights = ", ".join(f"{k} {v:.3g}" for k, v in (head.get("fusion_weights") or {}).items())
            lines.append(f"- head {name}: fused views ({weights}), {head.get('classes')} classes{_used(head)}")
        elif isinstance(head, dict):
            lines.append(f"- head {name}: linear SVM, temperature {head.get('temperature')}, "
                         f"{head.get('classes')} classes{_used(head)}")
    directory = data.get("directory") if isinstance(data, dict) else None
    if isinstance(directory, dict):
        facts = ", ".join(f"{k} {v}" for k, v in directory.items() if isinstance(v, (int, str)) and k != "source")
        lines.append(f"- agency routing: place + function through a jurisdiction directory ({facts})")
        if directory.get("category_function_pairs"):
            lines.append(f"- category and function decided together over the {directory['category_function_pairs']} "
                         "category-function pairs seen in training")
        calibration = directory.get("county_calibration")
        if isinstance(calibration, dict):
            lines.append(f"- county model (for texts that name no place) calibrated on the "
                         f"{calibration.get('unnamed_cases')} training cases that name none: temperature "
                         f"{calibration.get('temperature')}, out-of-fold accuracy "
                         f"{calibration.get('out_of_fold_accuracy')}")
    versions = m.get("versions") or {}
    if versions:
        lines.append("- libraries: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    lines += ["", "## Training data", ""]
    if data:
        lines += [f"- rows read: {data.get('rows', '?')}, used: {data.get('rows_used', '?')}",
                  f"- columns: {data.get('columns', {})}",
                  f"- content fingerprint (sha256): {data.get('sha256', '?')}"]
    for target, labels in (m.get("labels") or {}).items():
        counts = [v for v in (labels or {}).values() if isinstance(v, int)]
        size = f", {min(counts)}-{max(counts)} cases per class" if counts else ""
        lines.append(f"- {target}: {len(labels or {})} classes{size}")
    if not data and not m.get("labels"):
        lines.append("- not recorded (the model was not loaded from the store)")
    lines += ["", "## Metrics", "", "| target | measured on | cases | accuracy | macro-F1 | top-3 accuracy |",
              "|---|---|---|---|---|---|"]
    for target, tm in (m.get("metrics") or {}).items():
        if tm and "accuracy" in tm:
            lines.append(f"| {target} | training hold-out | {tm.get('n', '?')} | {tm['accuracy']:.4f} | "
                         f"{tm['macro_f1']:.4f} | {tm['top3_accuracy']:.4f} |")
    src = str(report.data.get("source") or "DataFrame").replace("\\", "/").rsplit("/", 1)[-1]
    for target, t in report.targets.items():
        lines.append(f"| {target} | this report ({src}) | {t.metrics['n']} | {t.metrics['accuracy']:.4f} | "
                     f"{t.metrics['macro_f1']:.4f} | {t.metrics['top3_accuracy']:.4f} |")
    lines += ["", "## Intended use", "",
              "Suggest a category and a handling agency for a 12345 hotline complaint so that an operator can "
              "confirm or correct it. Cases whose score is under the review threshold are flagged for a person "
              "to decide. Not for deciding a case without a person where the score is low, and not for any "
              "use beyond routing (e.g. judging the complainant).", "",
              "## Limitations", "",
              "- Learns only the categories and agencies present in its training data; a new or renamed agency "
              "is always wrong until the model is retrained.",
              "- Agencies with one or two training cases are rarely predicted; routing by jurisdiction (place "
              "names) matters more for them than the text model.",
              "- Trained on one city's or region's wording; other regions' place names and dialect are unseen.",
              "- Scores are calibrated on the training data; check the reliability table on new data.",
              "- With routing, a complaint that names no county or town gets its county from a guess; such cases "
              "are mostly flagged for review (send the caller's district as a place hint where it is known).", "",
              "## Known confusions (this report)", ""]
    compared = [f"- {name}: {paired_sentence(c.paired)}" for name, c in report.comparisons.items() if c.paired]
    for target, t in report.targets.items():
        pairs = t.pairs.head(5)
        if not len(pairs):
            lines.append(f"- {target}: none")
        for r in pairs.itertuples():
            lines.append(f"- {target}: {r.true} → {r.predicted}: {r.count} case(s), {r.share_of_true:.1%} of "
                         f"{r.true}")
        for note in t.notes:
            lines.append(f"- {target}: {note}")
    if compared:
        lines += ["", f"## Compared with version {report.compare_version or 'other'} (this report)", "", *compared]
    return "\n".join(lines) + "\n"
