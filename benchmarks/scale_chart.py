"""The scaling benchmark's chart: training time and peak memory against corpus size, one line per system.

A plain SVG (no plotting library): two panels with logarithmic axes, so a straight line of slope 1 is linear
growth.  Written by ``python -m benchmarks.scale report`` to ``benchmarks/scale.svg``.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["chart_svg"]

COLOURS = {"product": "#1f77b4", "before": "#9ecae1", "fasttext": "#d62728", "hashing-sgd": "#2ca02c"}
PANELS = (("train_s", "training time (s)"), ("peak_gib", "peak memory (GiB)"), ("accuracy", "accuracy (real test set)"))
W, H, PAD_L, PAD_R, PAD_T, PAD_B = 330, 260, 52, 12, 28, 40


def _ticks(lo: float, hi: float) -> list[float]:
    out = []
    for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            v = m * 10**e
            if lo <= v <= hi:
                out.append(v)
    return out


def _fmt(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    if v >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def _panel(rows: list[dict[str, Any]], key: str, title: str, x0: int) -> list[str]:
    xs = [r["texts"] for r in rows]
    ys = [r[key] for r in rows if r.get(key)]
    log_y = key != "accuracy"
    x_lo, x_hi = min(xs) / 1.3, max(xs) * 1.3
    if log_y:
        y_lo, y_hi = min(ys) / 1.5, max(ys) * 1.5
    else:
        y_lo, y_hi = math.floor(min(ys) * 50) / 50, math.ceil(max(ys) * 50) / 50
        y_hi = max(y_hi, y_lo + 0.02)

    def px(x: float) -> float:
        return x0 + PAD_L + (math.log(x) - math.log(x_lo)) / (math.log(x_hi) - math.log(x_lo)) * (W - PAD_L - PAD_R)

    def py(y: float) -> float:
        t = ((math.log(y) - math.log(y_lo)) / (math.log(y_hi) - math.log(y_lo)) if log_y
             else (y - y_lo) / (y_hi - y_lo))
        return PAD_T + (1 - t) * (H - PAD_T - PAD_B)

    out = [f'<text x="{x0 + PAD_L}" y="16" font-size="12" font-weight="bold">{title}</text>',
           f'<rect x="{x0 + PAD_L}" y="{PAD_T}" width="{W - PAD_L - PAD_R}" height="{H - PAD_T - PAD_B}" '
           'fill="none" stroke="#999"/>']
    for v in _ticks(x_lo, x_hi):
        out.append(f'<text x="{px(v):.1f}" y="{H - PAD_B + 14}" font-size="10" text-anchor="middle">{_fmt(v)}</text>')
    y_ticks = _ticks(y_lo, y_hi) if log_y else [y_lo + i * (y_hi - y_lo) / 4 for i in range(5)]
    for v in y_ticks:
        label = _fmt(v) if log_y else f"{v:.3f}"
        out.append(f'<line x1="{x0 + PAD_L}" x2="{x0 + W - PAD_R}" y1="{py(v):.1f}" y2="{py(v):.1f}" '
                   'stroke="#eee"/>')
        out.append(f'<text x="{x0 + PAD_L - 4}" y="{py(v) + 3:.1f}" font-size="10" text-anchor="end">{label}</text>')
    out.append(f'<text x="{x0 + (W + PAD_L) / 2:.0f}" y="{H - 8}" font-size="10" text-anchor="middle">'
               'training texts</text>')
    for label in sorted({r["label"] for r in rows}):
        pts = sorted((r["texts"], r[key]) for r in rows if r["label"] == label and r.get(key))
        colour = COLOURS.get(label, "#555")
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        out.extend(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}"/>' for x, y in pts)
    return out


def chart_svg(rows: list[dict[str, Any]]) -> str:
    """The chart of every result row (``label``, ``texts``, ``train_s``, ``peak_gib``, ``accuracy``)."""
    width = W * len(PANELS)
    body: list[str] = []
    for i, (key, title) in enumerate(PANELS):
        body += _panel(rows, key, title, i * W)
    labels = sorted({r["label"] for r in rows})
    for i, label in enumerate(labels):
        x = 12 + i * 130
        body.append(f'<rect x="{x}" y="{H + 4}" width="12" height="4" fill="{COLOURS.get(label, "#555")}"/>')
        body.append(f'<text x="{x + 16}" y="{H + 10}" font-size="11">{label}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{H + 18}" '
            f'viewBox="0 0 {width} {H + 18}" font-family="sans-serif">\n'
            '<rect width="100%" height="100%" fill="white"/>\n' + "\n".join(body) + "\n</svg>\n")
