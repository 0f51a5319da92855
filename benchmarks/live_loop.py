"""The live loop month by month: does learning from corrections pay, and is choosing what to label worth it?

    .venv/bin/python -m benchmarks.live_loop [--tasks qingdao,tipdm,thucnews] [--seeds 3] [--no-write]

**Qingdao** (``../shared/data/qingdao12345/work_orders.csv``, 28 months by the day each call was taken): the
product is trained on the first 12 months; then each later month, in order, every system

1. predicts the month's cases (``predict_details`` -> ``prediction_record``, the service's answer) and records
   the decisions in its own decision log (SQLite in a work folder, masked texts stored) through the service's
   writer (``live.writer.DecisionWriter``: ``Decision.from_prediction``, drift sample of every decision);
2. receives that month's true labels as corrections (``DecisionLog.add_corrections``; the category of every
   case, the agency of the forwarded ones);
3. retrains from the export of the first 12 months plus the log (``train(export, feedback=log,
   id_column=...)``, the product's ``hotline train --feedback``), ready for the next month.

The systems differ in which cases get their labels: (a) none, the first model stays; (b) every case; (c) a
quarter of the month's cases, chosen by ``select_from_log`` (``hotline select --from-log``) among the month's
decisions; (c-) the same without its density weighting; (d) the same number at random (several seeds); (d2x)
twice that number at random; and (b) retrained with ``--half-life`` 90 and 180 days (a renamed agency).  Accuracy and
macro-F1 are measured on each month's cases before its labels arrive (category on all, agency on the forwarded
ones), so every system is scored on the same cases and McNemar's test compares them.  The drift signals are
those of ``live.quality.live_quality`` over each month (label-mix PSI against the training mix, the share of
unseen tokens).  **tipdm** and **thucnews** have no dates: they are shuffled into a random-order stream (an
initial 1,000 cases, then 16 "months") and run for (a), (c), (d) and (d2x).

Training: ``TrainingConfig(min_class_count=1, test_size=0.0)``: the product's defaults otherwise (every
corrected label counts, and the month that follows is the measurement, so no hold-out is fitted).  Results per
system are cached as JSON in ``--work`` (default: a folder in the temp directory) and reused with
``--resume``; the section of BENCHMARKS.md and the chart ``benchmarks/charts/live_loop.svg`` are written from
them.  Complaint texts are never printed or written outside the work folder's logs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.datasets import DEFAULT_DATA  # noqa: E402
from benchmarks.experiments import command_line, publish  # noqa: E402
from classifier.config import TrainingConfig  # noqa: E402
from classifier.model import prediction_record  # noqa: E402
from live.log import Correction, Decision, DecisionLog  # noqa: E402
from live.quality import live_quality  # noqa: E402
from live.renames import as_relabel, suggest_renames  # noqa: E402
from live.writer import DecisionWriter, Pending  # noqa: E402
from training.metrics import paired_accuracy_test  # noqa: E402
from training.select import select_from_log  # noqa: E402
from training.train import train  # noqa: E402

START, END = "<!-- live-loop:start -->", "<!-- live-loop:end -->"
CHART = ROOT / "benchmarks" / "charts" / "live_loop.svg"
CONFIG = TrainingConfig(min_class_count=1, test_size=0.0)
TASKS = ("qingdao", "tipdm", "thucnews")
INITIAL_MONTHS = 12
LAST = 12  # months of the overall comparison


@dataclass
class Stream:
    """Cases in time order: ``initial`` (the first export) and then one frame per month; columns ``case_id``,
    ``text``, one per target, ``when`` (UTC datetime)."""

    name: str
    targets: list[str]
    initial: pd.DataFrame
    months: list[tuple[str, pd.DataFrame]]
    description: str = ""


@dataclass
class System:
    name: str
    kind: str  # static / all / select / random
    share: float = 0.0
    seed: int = 0
    density: bool = True  # select: rank by the uncertainty of a case's near-duplicate group (the default)
    half_life_days: float | None = None  # retrain with --half-life (recent cases weigh more)
    renames: bool = False  # retrain with the renames the log's corrections show (live.renames, --relabel-file)
    updates: tuple[tuple[str, Any], ...] = ()  # other training-config changes (an experiment's)


def qingdao_stream(data: Path) -> Stream:
    df = pd.read_csv(data / "qingdao12345" / "work_orders.csv")
    df = df[df["text"].notna()].copy()
    df["case_id"] = [f"q{i}" for i in df.index]
    day = pd.to_datetime(df["date"])
    # the day's calls in file order, one minute apart from noon: decisions and corrections keep an order
    df["when"] = [d.to_pydatetime().replace(tzinfo=UTC) + timedelta(hours=12, minutes=k)
                  for d, k in zip(day, df.groupby("date").cumcount())]
    df["month"] = df["date"].str[:7]
    df = df.sort_values(["when", "case_id"], kind="stable")
    months = sorted(df["month"].unique())
    cols = ["case_id", "text", "category", "agency", "when"]
    initial = df[df["month"].isin(months[:INITIAL_MONTHS])][cols].reset_index(drop=True)
    later = [(m, df[df["month"] == m][cols].reset_index(drop=True)) for m in months[INITIAL_MONTHS:]]
    return Stream("qingdao", ["category", "agency"], initial, later,
                  f"Qingdao 12345 work orders: {len(initial):,} cases of {months[0]}..{months[INITIAL_MONTHS - 1]} "
                  f"to start, then {len(later)} months ({sum(len(f) for _, f in later):,} cases)")


def shuffled_stream(name: str, df: pd.DataFrame, label: str, initial: int, per_month: int, months: int,
                    seed: int = 0) -> Stream:
    """A data set without dates as a random-order stream: ``initial`` cases, then ``months`` of ``per_month``."""
    df = df[df["text"].notna() & df[label].notna()].reset_index(drop=True)
    order = np.random.default_rng(seed).permutation(len(df))[: initial + per_month * months]
    frame = pd.DataFrame({"case_id": [f"{name[0]}{i}" for i in order], "text": df["text"].to_numpy()[order],
                          "category": df[label].astype(str).to_numpy()[order]})
    start = datetime(2020, 1, 1, tzinfo=UTC)
    frame["when"] = [start + timedelta(hours=i) for i in range(len(frame))]
    init = frame.iloc[:initial].reset_index(drop=True)
    later = []
    for k in range(months):
        part = frame.iloc[initial + k * per_month: initial + (k + 1) * per_month].reset_index(drop=True)
        first = start + timedelta(days=31 * (k + 1))
        part["when"] = [first + timedelta(minutes=i) for i in range(len(part))]
        later.append((f"month {k + 1:02d}", part))
    return Stream(name, ["category"], init, later,
                  f"{name} shuffled (seed {seed}): {initial:,} cases to start, then {months} months of {per_month}")


def load_streams(data: Path, names: list[str]) -> tuple[list[Stream], list[str]]:
    streams, skipped = [], []
    for name in names:
        if name == "qingdao":
            path = data / "qingdao12345" / "work_orders.csv"
            if path.exists():
                streams.append(qingdao_stream(data))
                continue
        elif name == "tipdm":
            path = data / "tipdm2020" / "messages.csv"
            if path.exists():
                streams.append(shuffled_stream("tipdm", pd.read_csv(path), "label", 1000, 300, 16))
                continue
        elif name == "thucnews":
            path = data / "thucnews" / "titles.csv"
            if path.exists():
                streams.append(shuffled_stream("thucnews", pd.read_csv(path), "label", 1000, 400, 16))
                continue
        else:
            raise ValueError(f"unknown task {name!r}; choose from {list(TASKS)}")
        skipped.append(f"{name}: {path} not found")
    return streams, skipped


def systems_for(stream: Stream, seeds: int, share: float) -> list[System]:
    out = [System("a", "static")]
    if stream.name == "qingdao":  # every correction (b) only where the issue asks for it: the others are (c) vs (d)
        out.append(System("b", "all"))
        # every correction, recent cases weighing more (--half-life): a renamed agency's new name wins sooner
        out += [System(f"bh{d}", "all", half_life_days=float(d)) for d in (90, 180)]
        # every correction, and each month the renames the log shows (hotline feedback renames) as --relabel-file
        out.append(System("br", "all", renames=True))
        # an experiment: the same with balanced class weights (a new agency's first cases count as much as a class)
        out.append(System("brb", "all", renames=True, updates=(("model.class_weight", "balanced"),)))
    out.append(System("c", "select", share))
    out.append(System("cu", "select", share, density=False))  # ablation: uncertainty and spread, no density
    out += [System(f"d{s}", "random", share, s) for s in range(seeds)]
    out += [System(f"d2x{s}", "random", 2 * share, s) for s in range(seeds)]
    return out


def _training_mix(model: Any) -> dict[str, dict[str, float]]:
    report = getattr(model, "validation_report", None)
    counts = report.class_counts if report is not None else {}
    return {t: {k: float(v) for k, v in counts.get(t, {}).items()} for t in model.targets_}


def _month_window(frame: pd.DataFrame) -> tuple[datetime, datetime]:
    first = min(frame["when"])
    start = first.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, max(end, max(frame["when"]) + timedelta(seconds=1))


def run_system(stream: Stream, system: System, initial_model: Any, work: Path, say: Any) -> dict[str, Any]:
    """Replay the stream's months through one system; per month its predictions, truth, corrections, drift."""
    path = work / f"{stream.name}-{system.name}.sqlite"
    path.unlink(missing_ok=True)
    log = DecisionLog(f"sqlite:///{path}", store_texts=True)
    writer = DecisionWriter(log, drift_sample=1.0)
    model, version = initial_model, f"{system.name}-0"
    mixes = {version: _training_mix(model)}
    rng = np.random.default_rng(1000 + system.seed)
    months: list[dict[str, Any]] = []
    for k, (month, frame) in enumerate(stream.months):
        t0 = time.perf_counter()
        texts = frame["text"].astype(str).tolist()
        coverage: list[tuple[int, int]] = []
        records = [prediction_record(r, stream.targets, default_threshold=model.review_threshold)
                   for r in model.predict_details(texts, top_k=1, coverage=coverage)]
        writer.record([Pending(Decision.from_prediction(rec, case_id=cid, request_id=cid, model_version=version,
                                                        created_at=when), text=text, tokens=n)
                       for rec, cid, when, text, n in zip(records, frame["case_id"], frame["when"], texts, coverage,
                                                          strict=True)])
        if not writer.flush(60):
            raise RuntimeError(f"{stream.name} {system.name} {month}: the decision log did not take the decisions")
        start, end = _month_window(frame)
        days = max(1, math.ceil((end - start).total_seconds() / 86400))
        quality = live_quality(log, windows=(days,), now=end, mixes=mixes)["windows"][f"{days}d"]["versions"]
        q = quality.get(version, {})
        entry: dict[str, Any] = {
            "month": month, "version": version,
            "pred": {t: [r["targets"][t]["label"] for r in records] for t in stream.targets},
            "truth": {t: [None if pd.isna(v) else str(v) for v in frame[t]] for t in stream.targets},
            "psi": {t: (q.get("targets", {}).get(t) or {}).get("label_psi") for t in stream.targets},
            "unseen_token_share": q.get("unseen_token_share"),
            "review_rate": q.get("review_rate"),
        }
        # which cases get their labels this month
        n = len(frame)
        if system.kind == "static":
            chosen: list[int] = []
        elif system.kind == "all":
            chosen = list(range(n))
        elif system.kind == "random":
            chosen = sorted(rng.choice(n, size=min(n, round(system.share * n)), replace=False).tolist())
        else:
            budget = max(1, round(system.share * n))
            picks = select_from_log(model, log, budget, since=start, until=end, density=system.density).picks
            position = {cid: i for i, cid in enumerate(frame["case_id"])}
            chosen = sorted(position[c] for c in picks["case_id"])
        corrections = []
        for i in chosen:
            labels = {t: entry["truth"][t][i] for t in stream.targets if entry["truth"][t][i] is not None}
            corrections.append(Correction(frame["case_id"].iloc[i], labels, "dispatcher",
                                          frame["when"].iloc[i] + timedelta(hours=2)))
        if corrections:
            known = {t: model.classes(t) for t in stream.targets}
            problems = [r for r in log.add_corrections(corrections, known) if isinstance(r, Exception)]
            if problems:
                raise RuntimeError(f"{stream.name} {system.name} {month}: {len(problems)} corrections refused: "
                                   f"{problems[0]}")
        entry["labeled"] = len(chosen)
        entry["labeled_cases"] = [frame["case_id"].iloc[i] for i in chosen]
        if system.kind == "all":  # the log's live accuracy must be what the benchmark counts itself
            live = live_quality(log, windows=(days,), now=end)["windows"][f"{days}d"]["versions"][version]
            entry["live_accuracy"] = {t: live["targets"][t]["accuracy"] for t in stream.targets}
        t1 = time.perf_counter()
        if system.kind != "static" and k + 1 < len(stream.months):
            config, dated = CONFIG, None
            if system.half_life_days:  # the cases' dates: the export's, and the corrections' own times
                config = CONFIG.with_updates(**{"recency.half_life_days": system.half_life_days})
                dated = "when"
            if system.updates:
                config = config.with_updates(**dict(system.updates))
            if system.renames:
                found = suggest_renames(log)
                entry["renames"] = [f"{r.target}: {r.old} -> {r.new}" for r in found]
                if found:
                    config = config.with_updates(relabel=as_relabel(found))
            model = train(stream.initial, text="text", targets={t: t for t in stream.targets}, config=config,
                          feedback=log, id_column="case_id", progress=False, time=dated)
            version = f"{system.name}-{k + 1}"
            mixes[version] = _training_mix(model)
        entry["fit_s"] = time.perf_counter() - t1
        entry["month_s"] = time.perf_counter() - t0
        months.append(entry)
        acc = {t: _accuracy(entry, t) for t in stream.targets}
        say(f"{stream.name} {system.name} {month}: " + ", ".join(f"{t} {a:.3f}" for t, a in acc.items())
            + f"; {len(chosen)} labeled; retrain {entry['fit_s']:.0f} s")
    writer.close()
    log.close()
    return {"system": system.name, "kind": system.kind, "share": system.share, "seed": system.seed,
            "months": months}


# -- scoring ------------------------------------------------------------------------------------------------
def _rights(entry: dict[str, Any], target: str) -> np.ndarray:
    truth, pred = entry["truth"][target], entry["pred"][target]
    return np.array([p == t for p, t in zip(pred, truth) if t is not None], dtype=bool)


def _accuracy(entry: dict[str, Any], target: str) -> float:
    r = _rights(entry, target)
    return float(r.mean()) if len(r) else float("nan")


def _macro_f1(entries: list[dict[str, Any]], target: str) -> float:
    truth = [t for e in entries for t in e["truth"][target] if t is not None]
    pred = [p for e in entries for p, t in zip(e["pred"][target], e["truth"][target]) if t is not None]
    labels = sorted(set(truth) | set(pred))
    return float(f1_score(truth, pred, labels=labels, average="macro", zero_division=0)) if truth else float("nan")


def overall(result: dict[str, Any], target: str, last: int = LAST) -> dict[str, Any]:
    entries = result["months"][-last:]
    right = np.concatenate([_rights(e, target) for e in entries])
    return {"accuracy": float(right.mean()), "macro_f1": _macro_f1(entries, target), "right": right,
            "n": int(len(right))}


def mean_of(results: list[dict[str, Any]], target: str) -> dict[str, float]:
    scores = [overall(r, target) for r in results]
    return {"accuracy": float(np.mean([s["accuracy"] for s in scores])),
            "macro_f1": float(np.mean([s["macro_f1"] for s in scores])),
            "accuracy_min": float(min(s["accuracy"] for s in scores)),
            "accuracy_max": float(max(s["accuracy"] for s in scores))}


def budget_ratio(c: float, d: float, d2x: float, b: float | None, share: float) -> tuple[float | None, str]:
    """How many times the selected budget random labels need to match (c): accuracy is interpolated linearly in
    log2(budget) between (d) at ``share``, (d2x) at 2 x ``share`` and (b) at every case."""
    points = [(math.log2(share), d), (math.log2(2 * share), d2x)]
    if b is not None:
        points.append((0.0, b))
    if c <= d:
        return None, "(c) is no better than (d)"
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if y0 <= c <= y1 and y1 > y0:
            x = x0 + (c - y0) / (y1 - y0) * (x1 - x0)
            return 2 ** x / share, ""
    top = points[-1]
    return None, f"(c) is above every random budget measured (up to {2 ** top[0] / share:g}x)"


def new_agencies(stream: Stream, result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per agency first seen after the initial months: its cases, the month its first correction arrived in this
    system, and how its cases were routed in the two months after that."""
    if "agency" not in stream.targets:
        return []
    known = set(stream.initial["agency"].dropna())
    months = result["months"]
    rows: dict[str, dict[str, Any]] = {}
    for k, e in enumerate(months):
        labeled = set(e["labeled_cases"])
        ids = stream.months[k][1]["case_id"].tolist()
        for i, (p, t) in enumerate(zip(e["pred"]["agency"], e["truth"]["agency"])):
            if t is None or t in known:
                continue
            row = rows.setdefault(t, {"agency": t, "first_seen": e["month"], "cases": 0, "first_corrected": None,
                                      "after": [], "later": []})
            row["cases"] += 1
            if row["first_corrected"] is not None and k > row["_k"]:  # predicted after it was learned
                row["later"].append(p == t)
                if k - row["_k"] <= 2:
                    row["after"].append(p == t)
            if ids[i] in labeled and row["first_corrected"] is None:
                row["first_corrected"], row["_k"] = e["month"], k
    for row in rows.values():
        row.pop("_k", None)
        row["routed_right_after"] = int(sum(row["after"]))
        row["cases_after"] = len(row.pop("after"))
        row["routed_right_later"] = int(sum(row["later"]))  # every month after the first correction
        row["cases_later"] = len(row.pop("later"))
    return sorted(rows.values(), key=lambda r: (r["first_seen"], -r["cases"], r["agency"]))


# -- the section and the chart ------------------------------------------------------------------------------
COLOURS = {"a": "#888888", "b": "#1f77b4", "c": "#d62728", "cu": "#ff9896", "d": "#2ca02c", "d2x": "#9467bd"}
NAMES = {"a": "(a) static", "b": "(b) every correction", "bh90": "(b) with --half-life 90d",
         "br": "(b) with the renames the log shows",
         "brb": "(b) with the renames and balanced class weights",
         "bh180": "(b) with --half-life 180d", "c": "(c) 25 % chosen by select",
         "cu": "(c-) select without density", "d": "(d) 25 % at random", "d2x": "(d2x) 50 % at random"}
FAMILIES = ("a", "b", "bh90", "bh180", "br", "brb", "c", "cu", "d", "d2x")


def _family(name: str) -> str:
    return "d2x" if name.startswith("d2x") else "d" if name.startswith("d") else name


def monthly(results: dict[str, dict[str, Any]], target: str) -> dict[str, list[float]]:
    """Per system family, accuracy per month (random systems: mean over seeds)."""
    fam: dict[str, list[list[float]]] = {}
    for name, r in results.items():
        fam.setdefault(_family(name), []).append([_accuracy(e, target) for e in r["months"]])
    return {f: list(np.mean(v, axis=0)) for f, v in fam.items()}


def svg_chart(stream: Stream, results: dict[str, dict[str, Any]]) -> str:
    """Accuracy per month, one panel per target, one line per system (random ones: the mean of the seeds)."""
    months = [m for m, _ in stream.months]
    W, H, left, top, panel_h, gap = 760, 0, 60, 30, 220, 60
    panels = stream.targets
    H = top + len(panels) * (panel_h + gap) + 40
    x = lambda i: left + i * (W - left - 180) / max(1, len(months) - 1)  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
             'font-family="sans-serif" font-size="11">', f'<rect width="{W}" height="{H}" fill="white"/>',
             f'<text x="{left}" y="18" font-size="13">Live loop on the {stream.name} stream: accuracy on each month '
             'before its labels arrive</text>']
    for p, target in enumerate(panels):
        series = monthly(results, target)
        values = [v for s in series.values() for v in s if not math.isnan(v)]
        lo = math.floor(min(values) * 20) / 20
        hi = math.ceil(max(values) * 20) / 20
        y0 = top + p * (panel_h + gap) + 10

        def y(v: float, y0: float = y0, lo: float = lo, hi: float = hi) -> float:
            return y0 + panel_h - (v - lo) / max(hi - lo, 1e-9) * panel_h

        parts.append(f'<text x="{left}" y="{y0 - 4}" font-weight="bold">{target} accuracy</text>')
        steps = int(round((hi - lo) / 0.05))
        for s in range(steps + 1):
            v = lo + s * 0.05
            parts.append(f'<line x1="{left}" x2="{x(len(months) - 1):.1f}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                         'stroke="#e5e5e5"/>')
            parts.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>')
        for i, m in enumerate(months):
            if i % 2 == 0 or len(months) <= 8:
                parts.append(f'<text x="{x(i):.1f}" y="{y0 + panel_h + 16}" text-anchor="middle">{m[-5:]}</text>')
        for f in ("a", "b", "d", "d2x", "c"):
            if f not in series:
                continue
            pts = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(series[f]) if not math.isnan(v))
            width = 2.5 if f == "c" else 1.5
            dash = ' stroke-dasharray="4 3"' if f in ("d", "d2x") else ""
            parts.append(f'<polyline points="{pts}" fill="none" stroke="{COLOURS[f]}" stroke-width="{width}"{dash}/>')
        if p == 0:
            ly = y0 + 6
            for f in ("a", "b", "c", "d", "d2x"):
                if f in series:
                    lx = x(len(months) - 1) + 14
                    dash = ' stroke-dasharray="4 3"' if f in ("d", "d2x") else ""
                    parts.append(f'<line x1="{lx:.1f}" x2="{lx + 18:.1f}" y1="{ly}" y2="{ly}" stroke="{COLOURS[f]}" '
                                 f'stroke-width="2"{dash}/>')
                    parts.append(f'<text x="{lx + 22:.1f}" y="{ly + 4}">{NAMES[f]}</text>')
                    ly += 16
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _fmt(v: float | None, digits: int = 4) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _paired(results: dict[str, dict[str, Any]], this: str, other: str, target: str) -> dict[str, Any]:
    return paired_accuracy_test(overall(results[this], target)["right"], overall(results[other], target)["right"])


def render_stream(stream: Stream, results: dict[str, dict[str, Any]], share: float) -> list[str]:
    months = [m for m, _ in stream.months]
    names = list(results)
    d_names = [n for n in names if _family(n) == "d"]
    d2_names = [n for n in names if _family(n) == "d2x"]
    lines = [f"### {stream.name}", "", stream.description + ".", ""]
    for target in stream.targets:
        series = monthly(results, target)
        fams = [f for f in FAMILIES if f in series]
        head = "| month | cases | " + " | ".join(NAMES[f] for f in fams) + " |"
        extra = stream.name == "qingdao" and "a" in results
        if extra:
            head += " (a) label PSI | (a) unseen tokens |"
        lines += [f"{target} accuracy, month by month (random systems: mean of {len(d_names)} seeds):", "", head,
                  "|" + " --- |" * (2 + len(fams) + (2 if extra else 0))]
        for k, m in enumerate(months):
            n = len(_rights(results[names[0]]["months"][k], target))
            row = f"| {m} | {n} | " + " | ".join(_fmt(series[f][k]) for f in fams) + " |"
            if extra:
                e = results["a"]["months"][k]
                row += f" {_fmt(e['psi'].get(target), 3)} | {_fmt(e['unseen_token_share'], 3)} |"
            lines.append(row)
        lines.append("")
        # overall on the last months
        lines += [f"{target}, overall on the last {LAST} months:", "",
                  "| system | accuracy | macro-F1 | cases labeled per month |", "| --- | --- | --- | --- |"]
        per_month = {n: np.mean([e["labeled"] for e in r["months"][-LAST:]]) for n, r in results.items()}
        for f in fams:
            members = [n for n in names if _family(n) == f]
            s = mean_of([results[n] for n in members], target)
            spread = (f" (seeds {s['accuracy_min']:.4f}..{s['accuracy_max']:.4f})" if len(members) > 1 else "")
            lines.append(f"| {NAMES[f]} | {s['accuracy']:.4f}{spread} | {s['macro_f1']:.4f} | "
                         f"{np.mean([per_month[n] for n in members]):.0f} |")
        lines.append("")
        tests = []
        if "b" in results and "a" in results:
            tests.append(("(b) against (a)", [_paired(results, "b", "a", target)]))
        for h in ("bh90", "bh180", "br", "brb"):
            if h in results and "b" in results:
                tests.append((f"{NAMES[h]} against (b)", [_paired(results, h, "b", target)]))
        if "c" in results:
            tests.append(("(c) against (d)", [_paired(results, "c", n, target) for n in d_names]))
            tests.append(("(c) against (d2x)", [_paired(results, "c", n, target) for n in d2_names]))
        lines.append(f"McNemar on the same {overall(results[names[0]], target)['n']:,} cases of the last {LAST} "
                     "months (one test per seed of the random systems):")
        lines.append("")
        for what, ps in tests:
            parts = [f"{p['only_this_right']} vs {p['only_other_right']} cases right only in one, delta "
                     f"{100 * p['accuracy_delta']:+.2f} points, p = {p['p_value']:.3g}: {p['verdict']}" for p in ps]
            lines.append(f"- {what}: " + "; ".join(parts))
        if "c" in results and d_names and d2_names:
            c = overall(results["c"], target)["accuracy"]
            d = mean_of([results[n] for n in d_names], target)["accuracy"]
            d2 = mean_of([results[n] for n in d2_names], target)["accuracy"]
            b = overall(results["b"], target)["accuracy"] if "b" in results else None
            ratio, why = budget_ratio(c, d, d2, b, share)
            verdict = "met" if c >= d2 else "missed"
            said = (f"random labels need {ratio:.2f}x the selected budget to match (c)" if ratio is not None else why)
            lines.append(f"- target \"(c) at least as accurate as (d) with twice the budget\": {verdict} "
                         f"((c) {c:.4f}, (d2x) {d2:.4f}); measured: {said}")
        lines.append("")
    if stream.name == "qingdao":
        cover = twin_coverage(stream, results)
        fams: dict[str, list[float]] = {}
        for name, share in cover.items():
            fams.setdefault(_family(name), []).append(share)
        lines += [f"How much of what comes next the labels already cover (repeat callers recur, and a label "
                  f"covers its near-duplicates): the share of each of the last {LAST} months' cases with a "
                  "near-duplicate (cosine >= 0.8) among the cases labeled in earlier months: "
                  + ", ".join(f"{NAMES[f]} {np.mean(v):.0%}" for f, v in fams.items() if f in NAMES and f != "a")
                  + ".", ""]
        lines += _new_agency_lines(stream, results)
        fits = [e["fit_s"] for r in results.values() for e in r["months"] if e["fit_s"] > 0.5]
        if fits:
            lines += [f"Retraining from the log (export of the first {INITIAL_MONTHS} months + the corrections): "
                      f"median {np.median(fits):.0f} s, max {max(fits):.0f} s per month on 2 cores.", ""]
        if "b" in results:
            live = [(e["live_accuracy"][t], _accuracy(e, t)) for e in results["b"]["months"] for t in stream.targets
                    if e.get("live_accuracy")]
            same = all(abs(a - b) < 1e-9 for a, b in live)
            lines += [f"The decision log's live accuracy (`live_quality`) of (b) equals the benchmark's own count in "
                      f"{sum(abs(a - b) < 1e-9 for a, b in live)} of {len(live)} month-targets"
                      + ("." if same else ": CHECK."), ""]
    return lines


def twin_coverage(stream: Stream, results: dict[str, dict[str, Any]], similarity: float = 0.8,
                  last: int = LAST) -> dict[str, float]:
    """Per system, the share of each of the last months' cases that has a near-duplicate (cosine >= 0.8 of the
    product's features, fitted on the initial export) among the cases the loop had labeled before that month:
    how much of what comes next the labels already cover (repeat callers recur)."""
    from sklearn.preprocessing import normalize

    from classifier.model import ComplaintClassifier

    texts = [t for _, f in stream.months for t in f["text"].astype(str)]
    ids = [c for _, f in stream.months for c in f["case_id"]]
    vectorizer = ComplaintClassifier(CONFIG).fit(stream.initial["text"].astype(str).tolist(), {
        stream.targets[0]: stream.initial[stream.targets[0]].tolist()}).vectorizer_
    X = normalize(vectorizer.transform(texts))
    row = {c: i for i, c in enumerate(ids)}
    out = {}
    for name, result in results.items():
        labeled: list[int] = []
        shares = []
        for k, ((_, frame), e) in enumerate(zip(stream.months, result["months"])):
            if k >= len(stream.months) - last:
                rows = [row[c] for c in frame["case_id"]]
                best = ((X[rows] @ X[labeled].T).max(axis=1).toarray().ravel() if labeled else np.zeros(len(rows)))
                shares.append(float(np.mean(best >= similarity)))
            labeled += [row[c] for c in e["labeled_cases"]]
        out[name] = float(np.mean(shares))
    return out


def _new_agency_lines(stream: Stream, results: dict[str, dict[str, Any]]) -> list[str]:
    lines = [f"Agencies first seen after month {INITIAL_MONTHS}: cases routed right in the two months after the "
             "first correction reached the loop (right / cases in those months; — : no case in those months):", ""]
    shown = [n for n in ("b", "bh90", "bh180", "br", "brb", "c") if n in results]
    tables = {n: {r["agency"]: r for r in new_agencies(stream, results[n])} for n in shown}
    if not shown or not tables[shown[0]]:
        return []
    head = "| agency | first seen | cases after month 12 | " + " | ".join(
        f"{NAMES[n]}: first corrected | right after" for n in shown) + " |"
    lines += [head, "|" + " --- |" * (3 + 2 * len(shown))]
    summary = {n: [0, 0, 0] for n in shown}  # agencies with cases in the window, routed right at least once, all
    for agency, row in tables[shown[0]].items():
        cells = [agency, row["first_seen"], str(row["cases"])]
        for n in shown:
            r = tables[n].get(agency)
            if r is None or r["first_corrected"] is None:
                cells += ["never", "—"]
                continue
            after = f"{r['routed_right_after']} / {r['cases_after']}" if r["cases_after"] else "—"
            cells += [r["first_corrected"], after]
            if r["cases_after"]:
                summary[n][0] += 1
                summary[n][1] += r["routed_right_after"] > 0
                summary[n][2] += r["routed_right_after"] == r["cases_after"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for n in shown:
        w, some, every = summary[n]
        rows = list(tables[n].values())
        right, cases = sum(r["routed_right_later"] for r in rows), sum(r["cases_later"] for r in rows)
        lines.append(f"- {NAMES[n]}: of the {w} new agencies with cases in the two months after their first "
                     f"correction, {some} were routed right at least once there and {every} every time; over every "
                     f"month after each one's first correction, {right} of their {cases} cases were routed right"
                     + (f" ({right / cases:.0%})." if cases else "."))
    lines.append("")
    return lines


def render(streams: list[Stream], all_results: dict[str, dict[str, dict[str, Any]]], command: str,
           seconds: float, share: float) -> str:
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [START, "## The live loop month by month (issue 14)", "",
             f"Command: `{command}` · {date} · {seconds / 60:.0f} min on 2 cores · see the script's docstring for "
             "the protocol. Each month is predicted before its labels arrive; the loop retrains at the end of each "
             f"month from the export of the first {INITIAL_MONTHS} months plus its decision log's corrections. "
             f"Random systems: mean over seeds. Budget of (c) and (d): {share:.0%} of each month's cases.", ""]
    if any(s.name == "qingdao" for s in streams):
        lines += [f"![accuracy month by month]({CHART.relative_to(ROOT).as_posix()})", ""]
    for stream in streams:
        lines += render_stream(stream, all_results[stream.name], share)
    lines.append(END)
    return "\n".join(lines) + "\n"


# -- running --------------------------------------------------------------------------------------------------
def run_stream(stream: Stream, systems: list[System], work: Path, resume: bool, say: Any) -> dict[str, Any]:
    cache = work / f"{stream.name}-results.json"
    results: dict[str, Any] = json.loads(cache.read_text()) if (resume and cache.exists()) else {}
    missing = [s for s in systems if s.name not in results]
    if missing:
        t0 = time.perf_counter()
        initial_model = train(stream.initial, text="text", targets={t: t for t in stream.targets}, config=CONFIG,
                              progress=False)
        say(f"{stream.name}: initial model on {len(stream.initial):,} cases in {time.perf_counter() - t0:.0f} s")
        for system in missing:
            results[system.name] = run_system(stream, system, initial_model, work, say)
            cache.write_text(json.dumps(results, ensure_ascii=False, default=str))
    return {s.name: results[s.name] for s in systems}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--seeds", type=int, default=3, help="seeds of the random systems (d) and (d2x)")
    p.add_argument("--budget", type=float, default=0.25, help="share of each month's cases (c) and (d) label")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "hotline-live-loop",
                   help="folder for the decision logs and the cached results (not committed)")
    p.add_argument("--resume", action="store_true", help="reuse the cached results of systems already run")
    p.add_argument("--months", type=int, help="only the first N months after the initial ones (a quick check)")
    p.add_argument("--systems", help="only these systems, e.g. c,d0 (default: all)")
    p.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    p.add_argument("--no-write", action="store_true", help="print the section instead of writing BENCHMARKS.md")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    streams, skipped = load_streams(args.data, [t for t in args.tasks.split(",") if t])
    if args.months:
        for stream in streams:
            stream.months = stream.months[: args.months]
    for reason in skipped:
        print(f"skipped {reason}", file=sys.stderr)
    if not streams:
        print("nothing to run: the live-loop benchmark needs ../shared/data", file=sys.stderr)
        return 1
    args.work.mkdir(parents=True, exist_ok=True)

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    all_results = {}
    for stream in streams:
        seeds = args.seeds if stream.name == "qingdao" else max(1, min(args.seeds, 2))
        systems = systems_for(stream, seeds, args.budget)
        if args.systems:
            systems = [s for s in systems if s.name in args.systems.split(",")]
        all_results[stream.name] = run_stream(stream, systems, args.work, args.resume, say)
    body = render(streams, all_results, command_line("benchmarks.live_loop", argv), time.perf_counter() - t0,
                  args.budget)
    qingdao = next((s for s in streams if s.name == "qingdao"), None)
    if qingdao is not None and not args.no_write:
        CHART.parent.mkdir(parents=True, exist_ok=True)
        CHART.write_text(svg_chart(qingdao, all_results["qingdao"]), encoding="utf-8")
    publish(body, args, START, END, "live-loop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
