"""``hotline report --live``: how the served models did over a period, from the decision log.

    hotline report --live --since 2026-11-01 [--until 2026-11-30] --out live-report/ [--log URL | --store PATH]

writes ``live.html`` (one self-contained page in the confusion report's style: inline CSS and SVG, no network),
``live.json`` (the same numbers) and ``tables/*.csv``: per target the accuracy by calendar week (all,
auto-routed, sent to review), the review rate and the share of final labels the model does not know; the same
per model version (what ``GET /quality`` answers for a window: ``live.quality.versions_quality`` over the same
counts); what the corrections changed, from which label to which, by source; and the drift signals: each
version's predicted label mix against its training mix (PSI, from the version's manifest in the store) and the
share of incoming tokens the model never saw.

Accuracy counts only the predictions whose case got a final label (a correction, or a confirmation: the same
label); cases nobody confirmed or corrected are not assumed right.  Two scans of the log (predictions,
decisions) over the period give every number.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from live.drift import population_stability_index
from live.log import DecisionLog, utc_now
from live.quality import (
    DecisionCount,
    PredictionCount,
    decision_counts,
    prediction_counts,
    training_mix,
    versions_quality,
)
from live.schema import SOURCES

from .periods import Week, weeks

__all__ = ["LiveReport", "live_report", "add_live_arguments", "cmd_live_report", "refuse_live_options",
           "PSI_MOVING", "PSI_SHIFTED", "psi_verdict"]

# the population stability index's usual reading (live/drift.py)
PSI_MOVING = 0.1
PSI_SHIFTED = 0.25
HTML_FILE = "live.html"
JSON_FILE = "live.json"


def psi_verdict(psi: float | None) -> str:
    if psi is None:
        return "no training mix"
    return "shifted" if psi > PSI_SHIFTED else "moving" if psi > PSI_MOVING else "stable"


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


@dataclass
class LiveReport:
    """The numbers of one period; ``save`` writes the page and the JSON."""

    since: datetime
    until: datetime
    time_zone: str
    log: str
    generated_at: datetime
    targets: list[str]
    versions: dict[str, Any]                 # per version: live quality over the whole period
    headline: dict[str, dict[str, Any]]      # per target, every version together
    decisions: dict[str, Any]                # every version together: decisions, review rate, drift sample
    weekly: dict[str, pd.DataFrame]          # per target: one row per week
    weekly_decisions: pd.DataFrame
    weekly_psi: dict[str, pd.DataFrame]      # per target: week x version
    changes: dict[str, pd.DataFrame]         # per target: predicted -> final label pairs that differ
    confusion: dict[str, tuple[list[str], np.ndarray]]  # per target: labels (final and predicted), counts
    new_labels: dict[str, pd.DataFrame]      # per target: final labels the model did not know
    notes: list[str] = field(default_factory=list)
    top_n: int = 25

    def to_json(self) -> dict[str, Any]:
        def rows(df: pd.DataFrame) -> list[dict[str, Any]]:
            return [{k: _plain(v) for k, v in r.items()} for r in df.to_dict(orient="records")]

        return {
            "window": {"since": self.since.isoformat(), "until": self.until.isoformat(),
                       "days": (self.until - self.since) / timedelta(days=1), "time_zone": self.time_zone},
            "log": self.log,
            "generated_at": self.generated_at.isoformat(),
            "targets": self.targets,
            "headline": self.headline,
            "decisions": self.decisions,
            "versions": self.versions,
            "weekly": {t: rows(df) for t, df in self.weekly.items()},
            "weekly_decisions": rows(self.weekly_decisions),
            "weekly_label_psi": {t: rows(df) for t, df in self.weekly_psi.items()},
            "corrections": {t: {"changed": rows(self.changes[t]), "new_labels": rows(self.new_labels[t])}
                            for t in self.targets},
            "psi_thresholds": {"moving": PSI_MOVING, "shifted": PSI_SHIFTED},
            "notes": self.notes,
        }

    def save(self, out: str | Path) -> dict[str, Path]:
        from .live_report_html import render_live_page

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        html_path, json_path = out / HTML_FILE, out / JSON_FILE
        html_path.write_text(render_live_page(self), encoding="utf-8")
        json_path.write_text(json.dumps(self.to_json(), ensure_ascii=False, indent=2), encoding="utf-8")
        tables = out / "tables"
        tables.mkdir(exist_ok=True)
        for t in self.targets:
            for name, df in (("weekly", self.weekly[t]), ("changes", self.changes[t]),
                             ("new_labels", self.new_labels[t]), ("weekly_label_psi", self.weekly_psi[t])):
                df.to_csv(tables / f"{t}_{name}.csv", index=False, encoding="utf-8-sig")
        self.weekly_decisions.to_csv(tables / "weekly_decisions.csv", index=False, encoding="utf-8-sig")
        return {"html": html_path, "json": json_path, "tables": tables}


def _plain(v: Any) -> Any:
    """JSON-ready: numpy scalars as Python numbers, NaN as null, times as ISO strings."""
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, (datetime, pd.Timestamp)):
        return v.isoformat()
    if v is None or (isinstance(v, float) and v != v):
        return None
    return v


def _week_counts(rows: Sequence[PredictionCount], n_weeks: int) -> Iterator[tuple[PredictionCount, list[int]]]:
    """Per row, its count in each week: the difference of two weeks' starts' counts."""
    for r in rows:
        cum = r.since
        yield r, [cum[i] - (cum[i + 1] if i + 1 < n_weeks else 0) for i in range(n_weeks)]


def live_report(decision_log: DecisionLog, since: datetime, until: datetime | None = None, *,
                mixes: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None, tz: tzinfo | None = None,
                time_zone_name: str = "local", top_n: int = 25, notes: Sequence[str] = ()) -> LiveReport:
    """The live report of ``[since, until)`` (default: until now).  ``mixes``: per version, its training label mix
    (``training_mix(manifest)``) for the PSI; ``tz``: the zone whose Monday 00:00 starts a week (None: the
    machine's)."""
    until = until or utc_now()
    if until <= since:
        raise ValueError(f"the period must end after it starts: since {since.isoformat()}, until {until.isoformat()}")
    cal = weeks(since, until, tz)
    starts = [w.start for w in cal]
    pred_rows = prediction_counts(decision_log, starts, until)
    dec_rows = decision_counts(decision_log, starts, until)
    versions = versions_quality(pred_rows, dec_rows, 0, mixes)
    all_notes = list(notes)

    targets = sorted({r.target for r in pred_rows if r.since[0]})
    headline = _headline(pred_rows, targets)
    n_dec = sum(d.since[0][0] for d in dec_rows)
    n_dec_review = sum(d.since[0][0] for d in dec_rows if d.needs_review)
    tokens = sum(d.since[0][1] for d in dec_rows)
    unseen = sum(d.since[0][2] for d in dec_rows)
    decisions = {"decisions": n_dec, "review_rate": _ratio(n_dec_review, n_dec),
                 "unseen_token_share": _ratio(unseen, tokens), "drift_sample": sum(d.since[0][3] for d in dec_rows),
                 "model_versions": sorted(versions)}
    if not n_dec:
        all_notes.append(f"The log has no decisions from {since.isoformat()} to {until.isoformat()}: check the "
                         "period and that the service logs its decisions (HOTLINE_DECISION_LOG_URL).")
    elif not any(h["labeled"] for h in headline.values()):
        all_notes.append("No prediction of this period got a final label yet: accuracy cannot be measured. Send "
                         "the dispatchers' final labels with POST /feedback or `hotline feedback import`.")
    missing = sorted(v for v in versions if not (mixes or {}).get(v))
    if missing:
        all_notes.append(f"No training label mix for model version(s) {', '.join(missing)} (not in the model "
                         "store): their label PSI is not shown.")
    return LiveReport(
        since=since, until=until, time_zone=time_zone_name, log=_describe(decision_log), generated_at=utc_now(),
        targets=targets, versions=versions, headline=headline, decisions=decisions,
        weekly={t: _weekly(pred_rows, cal, t) for t in targets},
        weekly_decisions=_weekly_decisions(dec_rows, cal),
        weekly_psi={t: _weekly_psi(pred_rows, cal, t, mixes) for t in targets},
        changes={t: _changes(pred_rows, t) for t in targets},
        confusion={t: _confusion(pred_rows, t) for t in targets},
        new_labels={t: _new_labels(pred_rows, t) for t in targets},
        notes=all_notes, top_n=top_n)


def _describe(decision_log: DecisionLog) -> str:
    from live.db import describe_url

    return describe_url(decision_log.url)


_SUMS = ("predictions", "review", "labeled", "right", "auto_labeled", "auto_right", "new")


def _sums(r: PredictionCount, n: int) -> tuple[int, ...]:
    labeled = r.truth is not None
    right = labeled and r.truth == r.label
    flags = (True, r.needs_review, labeled, right, labeled and not r.needs_review, right and not r.needs_review,
             labeled and r.truth_known is False)
    return tuple(n if f else 0 for f in flags)


def _quality_numbers(s: Sequence[int]) -> dict[str, Any]:
    n, review, labeled, right, auto_labeled, auto_right, new = s
    return {"predictions": n, "review_rate": _ratio(review, n), "labeled": labeled,
            "accuracy": _ratio(right, labeled),
            "auto_labeled": auto_labeled, "auto_accuracy": _ratio(auto_right, auto_labeled),
            "review_labeled": labeled - auto_labeled,
            "review_accuracy": _ratio(right - auto_right, labeled - auto_labeled),
            "new_label_share": _ratio(new, labeled), "right": right, "auto_right": auto_right}


def _headline(rows: Sequence[PredictionCount], targets: list[str]) -> dict[str, dict[str, Any]]:
    totals = {t: [0] * len(_SUMS) for t in targets}
    for r in rows:
        if r.target in totals and r.since[0]:
            totals[r.target] = [a + b for a, b in zip(totals[r.target], _sums(r, r.since[0]))]
    return {t: _quality_numbers(s) for t, s in totals.items()}


def _week_label(w: Week) -> str:
    return w.monday.isoformat()


def _weekly(rows: Sequence[PredictionCount], cal: list[Week], target: str) -> pd.DataFrame:
    sums = [[0] * len(_SUMS) for _ in cal]
    seen: list[set[str]] = [set() for _ in cal]
    for r, per_week in _week_counts([r for r in rows if r.target == target], len(cal)):
        for i, n in enumerate(per_week):
            if n:
                sums[i] = [a + b for a, b in zip(sums[i], _sums(r, n))]
                seen[i].add(r.model_version)
    out = []
    for w, s, vs in zip(cal, sums, seen):
        q = _quality_numbers(s)
        out.append({"week": _week_label(w), "from": w.start, "to": w.end, "days": round(w.days, 3), **q,
                    "versions": ", ".join(sorted(vs))})
    return pd.DataFrame(out)


def _weekly_decisions(rows: Sequence[DecisionCount], cal: list[Week]) -> pd.DataFrame:
    sums = [[0, 0, 0, 0, 0] for _ in cal]
    for r in rows:
        for i in range(len(cal)):
            later = r.since[i + 1] if i + 1 < len(cal) else (0, 0, 0, 0)
            n, tokens, unseen, sampled = (a - b for a, b in zip(r.since[i], later))
            for j, v in enumerate((n, n if r.needs_review else 0, tokens, unseen, sampled)):
                sums[i][j] += v
    return pd.DataFrame([{"week": _week_label(w), "from": w.start, "to": w.end, "decisions": s[0],
                          "review_rate": _ratio(s[1], s[0]), "unseen_token_share": _ratio(s[3], s[2]),
                          "drift_sample": s[4]} for w, s in zip(cal, sums)])


def _weekly_psi(rows: Sequence[PredictionCount], cal: list[Week], target: str,
                mixes: Mapping[str, Mapping[str, Mapping[str, float]]] | None) -> pd.DataFrame:
    mix: dict[tuple[int, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r, per_week in _week_counts([r for r in rows if r.target == target], len(cal)):
        for i, n in enumerate(per_week):
            if n:
                mix[(i, r.model_version)][r.label] += n
    out = []
    for (i, version), observed in sorted(mix.items()):
        expected = (mixes or {}).get(version, {}).get(target)
        psi = population_stability_index(observed, expected) if expected else None
        out.append({"week": _week_label(cal[i]), "model_version": version, "predictions": sum(observed.values()),
                    "label_psi": psi, "reading": psi_verdict(psi)})
    return pd.DataFrame(out, columns=["week", "model_version", "predictions", "label_psi", "reading"])


def _changes(rows: Sequence[PredictionCount], target: str) -> pd.DataFrame:
    """Each (predicted, final) pair that differs, with its cases by source, and its share of the labeled
    predictions of that predicted label."""
    pairs: dict[tuple[str, str], dict[str, Any]] = {}
    labeled_per_label: dict[str, int] = defaultdict(int)
    for r in rows:
        n = r.since[0]
        if r.target != target or r.truth is None or not n:
            continue
        labeled_per_label[r.label] += n
        if r.truth == r.label:
            continue
        entry = pairs.setdefault((r.label, r.truth), {"predicted": r.label, "final": r.truth, "cases": 0,
                                                        **dict.fromkeys(SOURCES, 0), "new_label": False})
        entry["cases"] += n
        if r.truth_source in SOURCES:
            entry[r.truth_source] += n
        entry["new_label"] = entry["new_label"] or r.truth_known is False
    out = pd.DataFrame(list(pairs.values()),
                       columns=["predicted", "final", "cases", *SOURCES, "new_label"])
    if len(out):
        out["share_of_predicted"] = [c / labeled_per_label[p] for p, c in zip(out["predicted"], out["cases"])]
        out = out.sort_values(["cases", "predicted", "final"], ascending=[False, True, True], kind="stable")
    else:
        out["share_of_predicted"] = pd.Series(dtype=float)
    return out.reset_index(drop=True)


def _confusion(rows: Sequence[PredictionCount], target: str) -> tuple[list[str], np.ndarray]:
    """Counts of labeled predictions: rows the final label, columns the predicted one."""
    cells: dict[tuple[str, str], int] = defaultdict(int)
    for r in rows:
        if r.target == target and r.truth is not None and r.since[0]:
            cells[(r.truth, r.label)] += r.since[0]
    labels = sorted({a for a, _ in cells} | {b for _, b in cells})
    index = {lab: i for i, lab in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for (truth, label), n in cells.items():
        m[index[truth], index[label]] = n
    return labels, m


def _new_labels(rows: Sequence[PredictionCount], target: str) -> pd.DataFrame:
    found: dict[str, dict[str, Any]] = {}
    predicted_as: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        n = r.since[0]
        if r.target != target or r.truth is None or r.truth_known is not False or not n:
            continue
        entry = found.setdefault(r.truth, {"label": r.truth, "cases": 0, **dict.fromkeys(SOURCES, 0)})
        entry["cases"] += n
        if r.truth_source in SOURCES:
            entry[r.truth_source] += n
        predicted_as[r.truth][r.label] += n
    out = pd.DataFrame(list(found.values()), columns=["label", "cases", *SOURCES])
    out["most_often_predicted_as"] = [max(predicted_as[lab].items(), key=lambda kv: (kv[1], kv[0]))[0]
                                      for lab in out["label"]] if len(out) else pd.Series(dtype=object)
    return out.sort_values(["cases", "label"], ascending=[False, True], kind="stable").reset_index(drop=True)


# -- command line (wired into `hotline report` by training/report.py) ----------------------------------------------
def add_live_arguments(p: argparse.ArgumentParser) -> None:
    from .feedback_cli import add_log_arguments, add_time_zone_argument

    live = p.add_argument_group("live quality (--live: from the decision log instead of --data)")
    live.add_argument("--live", action="store_true",
                      help="report how the served models did on the cases that came back with final labels")
    live.add_argument("--since", metavar="DATE", help="with --live: the period's first day (or time)")
    live.add_argument("--until", metavar="DATE",
                      help="with --live: its last day (included; or a time, excluded; default: now)")
    add_log_arguments(live, store=False)
    add_time_zone_argument(live)


def refuse_live_options(args: argparse.Namespace) -> None:
    """The confusion report was asked for (no ``--live``): the live options would be ignored, so refuse them."""
    from classifier.errors import ConfigError

    given = [flag for flag, dest in (("--since", "since"), ("--until", "until"), ("--log", "log"),
                                     ("--timezone", "timezone")) if getattr(args, dest, None)]
    if given:
        raise ConfigError(f"{', '.join(given)} go(es) with --live (the served model's quality from the decision "
                          "log); add --live, or leave them out for the confusion report of --data")


def _mixes(store: Any) -> tuple[dict[str, dict[str, dict[str, float]]], list[str]]:
    """Every stored version's training label mix, and a note per version whose manifest cannot be read."""
    from classifier.errors import ModelStoreError

    mixes: dict[str, dict[str, dict[str, float]]] = {}
    notes: list[str] = []
    for version in store.versions():
        try:
            mixes[version] = training_mix(store.manifest(version))
        except ModelStoreError as exc:
            notes.append(f"model version {version}: {exc}")
    return mixes, notes


def cmd_live_report(args: argparse.Namespace) -> int:
    from classifier.errors import ConfigError, CorrectionError, DecisionLogError

    from .cli import _print_json, _store
    from .feedback_cli import open_decision_log
    from .periods import parse_when, time_zone

    given = [flag for flag, value in (("--data", args.data), ("--compare", args.compare),
                                      ("--category", args.category), ("--agency", args.agency),
                                      ("--target", args.target), ("--id", args.id_column),
                                      ("--place", args.place_column)) if value]
    if given:
        raise ConfigError(f"--live reports from the decision log; {', '.join(given)} belong(s) to the confusion "
                          "report of labeled data: leave them out, or leave out --live")
    if not args.since:
        raise ConfigError("--live needs --since DATE (the period's first day), e.g. --since 2026-11-01")
    if args.top_n < 2:
        raise ConfigError(f"--top-n must be at least 2, got {args.top_n}")
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out} is a file; give a folder for the report files")
    tz = time_zone(args.timezone)
    since = parse_when(args.since, tz, what="--since")
    until = parse_when(args.until, tz, end_of_day=True, what="--until") if args.until else utc_now()
    if until <= since:
        raise ConfigError(f"--until ({until.isoformat()}) must be after --since ({since.isoformat()})")
    store = _store(args)
    mixes, notes = _mixes(store)
    try:
        decision_log = open_decision_log(args)
        try:
            report = live_report(decision_log, since, until, mixes=mixes, tz=tz,
                                 time_zone_name=args.timezone or "local", top_n=args.top_n, notes=notes)
        finally:
            decision_log.close()
    except (DecisionLogError, CorrectionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    written = report.save(args.out)
    if args.json:
        _print_json({"headline": report.headline, "decisions": report.decisions, "notes": report.notes,
                     "html": str(written["html"]), "json": str(written["json"])})
        return 0
    print(f"{report.decisions['decisions']:,} decisions from {since.isoformat()} to {until.isoformat()}")
    for target, h in report.headline.items():
        acc = "–" if h["accuracy"] is None else f"{h['accuracy']:.4f}"
        auto = "–" if h["auto_accuracy"] is None else f"{h['auto_accuracy']:.4f}"
        rate = "–" if h["review_rate"] is None else f"{h['review_rate']:.1%}"
        print(f"{target}: accuracy {acc} on {h['labeled']:,} labeled predictions (auto-routed {auto}), "
              f"review rate {rate}")
    for note in report.notes:
        print(f"note: {note}")
    print(f"wrote {written['html']} (+ {JSON_FILE}, tables/)")
    return 0
