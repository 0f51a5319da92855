"""Live quality: how the served models do on the cases that came back with a correction or a confirmation.

Per window (7 and 30 days by default), per model version and per target:

- ``predictions``, ``review_rate``: how many cases, and the share sent to a person (the target's score under
  its threshold);
- ``labeled``, ``accuracy``: predictions whose case got a final label (a correction, or a confirmation: the
  same label), and the share the model had right; split into ``auto`` (went out without review) and
  ``review`` (sent to a person): the auto-routed accuracy is the promise the service makes;
- ``new_label_share``: of the labeled ones, the share whose final label the model does not know (a new or
  renamed agency: retrain);
- ``label_psi``: the predicted label mix against the training mix (``live.drift``);

and per version ``unseen_token_share``: the share of incoming tokens the model never saw (a sample).
Accuracy is computed only from cases that got a final label: cases nobody confirmed or corrected are not
assumed right.  The numbers are what ``GET /quality``, ``/metrics`` and ``hotline report --live`` show.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, case, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from live.drift import population_stability_index
from live.log import DecisionLog, as_utc, utc_now
from live.schema import TALLY_SECONDS, decisions, prediction_tallies, predictions

__all__ = ["live_quality", "DEFAULT_WINDOWS", "training_mix", "prediction_counts", "decision_counts", "PredictionCount",
           "DecisionCount", "versions_quality"]

DEFAULT_WINDOWS = (7, 30)


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def training_mix(manifest: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """A version's training label counts per target, from its manifest (None counts, as old manifests have
    for labels without a validation report, count as 1 each)."""
    out: dict[str, dict[str, float]] = {}
    for target, counts in (manifest.get("labels") or {}).items():
        if isinstance(counts, dict):
            out[target] = {str(k): float(v) if isinstance(v, (int, float)) else 1.0 for k, v in counts.items()}
    return out


@dataclass(frozen=True)
class PredictionCount:
    """Predictions alike in everything the live numbers read: how many were made at or after each of the
    ``starts`` given to ``prediction_counts`` (and before its ``until``)."""

    model_version: str
    target: str
    label: str
    needs_review: bool
    truth_known: bool | None
    truth: str | None          # the final label; None until a correction or confirmation arrives
    truth_source: str | None
    since: tuple[int, ...]     # since[i]: how many at or after starts[i]


@dataclass(frozen=True)
class DecisionCount:
    """Decisions of one version alike in review: per start, (decisions, tokens, unseen tokens, sampled)."""

    model_version: str
    needs_review: bool
    since: tuple[tuple[int, int, int, int], ...]


class _in_scan(FunctionElement[datetime]):
    """A time column as a condition of the scan only: on SQLite ``+created_at`` (the no-op unary plus), which keeps
    the planner from answering the window's range through ``ix_*_created_at`` (table reads and a sort of every
    row of the window: 13 s instead of 3 at a million decisions once the period has an end) rather than
    streaming the covering index in GROUP BY order; elsewhere the column itself."""

    type = DateTime(timezone=True)
    inherit_cache = True


@compiles(_in_scan)
def _in_scan_default(element: _in_scan, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(_in_scan, "sqlite")
def _in_scan_sqlite(element: _in_scan, compiler: Any, **kw: Any) -> str:
    return "+" + str(compiler.process(element.clauses, **kw))


def _period(col: Any, start: datetime, until: datetime | None) -> list[Any]:
    scanned = _in_scan(col)
    return [scanned >= start] + ([scanned < until] if until is not None else [])


def _count_since(col: Any, starts: Sequence[datetime]) -> list[Any]:
    """Per later start: how many rows are at or after it (the first start bounds the scan)."""
    return [func.sum(case((col >= s, 1), else_=0)) for s in starts[1:]]


def prediction_counts(decision_log: DecisionLog, starts: Sequence[datetime],
                      until: datetime | None = None) -> list[PredictionCount]:
    """The predictions made in ``[starts[0], until)``, grouped by version, target, label, review, final label
    and its source, with the count at or after each start (ascending): a window's numbers are the counts of one
    start, a week's the difference of two.

    Two parts.  The corrected predictions (a final label) are one scan of the partial covering index
    ``ix_predictions_corrected``, grouped in index order, so SQLite streams it without sorting.  How many
    predictions each (version, target, label, review) made at all comes from ``prediction_tallies``: whole hours
    from their tallies, the part-hours at a window's edges from the predictions themselves (``_total_counts``);
    the uncorrected ones are the difference.  (One scan of an index over every prediction did both until
    migration 0004, and made every written prediction dearer: BENCHMARKS.md, issue 13.)"""
    starts = _check_starts(starts)
    until = as_utc(until) if until is not None else None
    p = predictions.c
    keys = [p.model_version, p.target, p.label, p.needs_review, p.truth_known, p.truth, p.truth_source]
    cond = [*_period(p.created_at, starts[0], until), p.truth.is_not(None)]
    query = select(*keys, func.count(), *_count_since(p.created_at, starts)).where(*cond).group_by(*keys)
    try:
        with decision_log.engine.connect() as conn:
            rows = conn.execute(query).all()
            totals = _total_counts(conn, starts, until)
    except SQLAlchemyError as exc:
        raise decision_log._fail("read", exc) from None
    out = [PredictionCount(r[0], r[1], r[2], bool(r[3]), None if r[4] is None else bool(r[4]), r[5], r[6],
                           tuple(int(x or 0) for x in r[7:])) for r in rows]
    corrected: dict[tuple[str, str, str, bool], list[int]] = {}
    for c in out:
        acc = corrected.setdefault((c.model_version, c.target, c.label, c.needs_review), [0] * len(starts))
        for i, n in enumerate(c.since):
            acc[i] += n
    for key, total in totals.items():
        done = corrected.get(key)
        rest = tuple(t - d for t, d in zip(total, done, strict=True)) if done else tuple(total)
        if rest[0] > 0:
            out.append(PredictionCount(*key, None, None, None, rest))
    out.sort(key=_count_order)
    return out


def _count_order(c: PredictionCount) -> tuple[Any, ...]:
    """The covering index's order (a missing final label first)."""
    return (c.model_version, c.target, c.label, c.needs_review, c.truth_known is not None, bool(c.truth_known),
            c.truth is not None, c.truth or "", c.truth_source is not None, c.truth_source or "")


def _check_starts(starts: Sequence[datetime]) -> list[datetime]:
    """The starts in UTC, as the log stores times (SQLite compares a bound time's own wall clock, so a start in
    another zone would shift the period by its offset)."""
    starts = [as_utc(s) for s in starts]
    if not starts or any(b <= a for a, b in zip(starts, starts[1:])):
        raise ValueError(f"starts must be given oldest first, without repeats, got {starts}")
    return starts


def _total_counts(conn: Any, starts: Sequence[datetime],
                  until: datetime | None) -> dict[tuple[str, str, str, bool], list[int]]:
    """How many predictions each (version, target, label, review) made at or after each start (and before
    ``until``): the tallies of the whole hours in between, plus the predictions of the part-hours at the
    edges, counted one by one (at most an hour's worth each, through ``ix_predictions_created_at``)."""
    t = prediction_tallies.c
    p = predictions.c
    first_hour = [_hour_at_or_after(s) for s in starts]
    end_hour = _hour_before(until) if until is not None else None  # the whole hours end where this one starts
    totals: dict[tuple[str, str, str, bool], list[int]] = {}

    def add(rows: Any, index: Sequence[int]) -> None:
        for r in rows:
            acc = totals.setdefault((r[0], r[1], r[2], bool(r[3])), [0] * len(starts))
            for i, n in zip(index, r[4:], strict=True):
                acc[i] += int(n or 0)

    # whole hours: one scan of the tallies from the first start's first whole hour
    hours = [i for i, h in enumerate(first_hour) if end_hour is None or h < end_hour]
    if hours:
        cond = [t.hour >= first_hour[hours[0]]] + ([t.hour < end_hour] if end_hour is not None else [])
        sums = [func.sum(case((t.hour >= first_hour[i], t.n), else_=0)) for i in hours]
        group = [t.model_version, t.target, t.label, t.needs_review]
        add(conn.execute(select(*group, *sums).where(*cond).group_by(*group)), hours)
    # part-hours, each counted once for every start it belongs to
    edges: dict[tuple[datetime, datetime | None], list[int]] = {}
    for i, s in enumerate(starts):
        if i in hours:
            head_end = _hour_start(first_hour[i])
            if s < head_end:
                edges.setdefault((s, head_end), []).append(i)
            if until is not None and end_hour is not None and _hour_start(end_hour) < until:
                edges.setdefault((_hour_start(end_hour), until), []).append(i)
        else:  # the whole period is inside one part-hour
            edges.setdefault((s, until), []).append(i)
    group = [p.model_version, p.target, p.label, p.needs_review]
    for (a, b), index in edges.items():
        cond = [p.created_at >= a] + ([p.created_at < b] if b is not None else [])
        add((r[:4] + (r[4],) * len(index) for r in conn.execute(select(*group, func.count()).where(*cond)
                                                                    .group_by(*group))), index)
    return totals


def _hour_at_or_after(moment: datetime) -> int:
    """The first tally hour that starts at or after ``moment``."""
    hour = _hour_before(moment)
    return hour if _hour_start(hour) == as_utc(moment) else hour + 1


def _hour_before(moment: datetime) -> int:
    """The tally hour that ``moment`` falls in (the whole hours before ``moment`` end where it starts)."""
    return int(as_utc(moment).timestamp()) // TALLY_SECONDS


def _hour_start(hour: int) -> datetime:
    return datetime.fromtimestamp(hour * TALLY_SECONDS, UTC)


def decision_counts(decision_log: DecisionLog, starts: Sequence[datetime],
                    until: datetime | None = None) -> list[DecisionCount]:
    """One scan of the decisions made in ``[starts[0], until)`` by version and review, with per start the
    decisions, the tokens and unseen tokens of the drift sample, and the sampled decisions (covering index
    ``ix_decisions_quality``)."""
    starts = _check_starts(starts)
    until = as_utc(until) if until is not None else None
    d = decisions.c
    keys = [d.model_version, d.needs_review]
    sampled = case((d.n_tokens.is_not(None), 1), else_=0)
    cols = [func.count(), func.sum(d.n_tokens), func.sum(d.n_unseen), func.count(d.n_tokens)]
    for s in starts[1:]:
        cols += [func.sum(case((d.created_at >= s, 1), else_=0)), func.sum(case((d.created_at >= s, d.n_tokens))),
                 func.sum(case((d.created_at >= s, d.n_unseen))), func.sum(case((d.created_at >= s, sampled),
                                                                               else_=0))]
    cond = _period(d.created_at, starts[0], until)
    query = select(*keys, *cols).where(*cond).group_by(*keys).order_by(*keys)
    try:
        with decision_log.engine.connect() as conn:
            rows = conn.execute(query).all()
    except SQLAlchemyError as exc:
        raise decision_log._fail("read", exc) from None
    out = []
    for r in rows:
        values = [int(x or 0) for x in r[2:]]
        out.append(DecisionCount(r[0], bool(r[1]), tuple(
            (values[4 * i], values[4 * i + 1], values[4 * i + 2], values[4 * i + 3]) for i in range(len(starts)))))
    return out


def live_quality(decision_log: DecisionLog, *, windows: Sequence[int] = DEFAULT_WINDOWS,
                 now: datetime | None = None,
                 mixes: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
                 until: datetime | None = None) -> dict[str, Any]:
    """The live quality of every model version that decided in the windows (days).  ``mixes``: per version,
    its training label mix per target (``training_mix(manifest)``), for the PSI; versions without one get
    ``label_psi: null``.  ``until``: leave out what was decided at or after it (a report of a past period; by
    default nothing is left out).  One scan of each table over the longest window."""
    now = now or utc_now()
    windows = sorted({int(w) for w in windows})
    if not windows or windows[0] < 1:
        raise ValueError(f"windows must be whole days >= 1, got {list(windows)}")
    since = {w: now - timedelta(days=w) for w in windows}
    oldest_first = windows[::-1]
    starts = [since[w] for w in oldest_first]
    pred_rows = prediction_counts(decision_log, starts, until)
    dec_rows = decision_counts(decision_log, starts, until)

    out: dict[str, Any] = {"generated_at": now.isoformat(), "windows": {}}
    for w in windows:
        versions = versions_quality(pred_rows, dec_rows, oldest_first.index(w), mixes)
        out["windows"][f"{w}d"] = {"days": w, "since": since[w].isoformat(), "versions": versions}
    return out


def versions_quality(pred_rows: Sequence[PredictionCount], dec_rows: Sequence[DecisionCount], k: int,
                     mixes: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None) -> dict[str, Any]:
    """Per version that decided at or after start ``k`` of the counts: its decisions, review rate, unseen-token
    share, and per target the numbers of the module's docstring (a window of ``live_quality``)."""
    versions: dict[str, Any] = {}
    per_version: dict[str, list[int]] = {}
    for dc in dec_rows:
        n, tokens, unseen, sampled = dc.since[k]
        sums = per_version.setdefault(dc.model_version, [0, 0, 0, 0, 0])
        for i, v in enumerate((n, n if dc.needs_review else 0, tokens, unseen, sampled)):
            sums[i] += v
    for version, (n, n_review, tokens, unseen, sampled) in per_version.items():
        if not n:
            continue
        versions[version] = {"decisions": n, "review_rate": _ratio(n_review, n),
                             "unseen_token_share": _ratio(unseen, tokens), "drift_sample": sampled,
                             "targets": {}}
    per_target: dict[tuple[str, str], dict[str, Any]] = {}
    for pc in pred_rows:
        n = pc.since[k]
        if not n or pc.model_version not in versions:
            continue
        acc = per_target.setdefault((pc.model_version, pc.target), {"mix": {}, "sums": [0] * 7})
        acc["mix"][pc.label] = acc["mix"].get(pc.label, 0) + n
        labeled = pc.truth is not None
        right = labeled and pc.truth == pc.label
        for i, hit in enumerate((True, pc.needs_review, labeled, right, labeled and not pc.needs_review,
                                 right and not pc.needs_review, labeled and pc.truth_known is False)):
            if hit:
                acc["sums"][i] += n
    for (version, target), acc in sorted(per_target.items()):
        n, n_review, n_lab, n_right, n_lab_auto, n_right_auto, n_new = acc["sums"]
        mix = (mixes or {}).get(version, {}).get(target)
        versions[version]["targets"][target] = {
            "predictions": n,
            "review_rate": _ratio(n_review, n),
            "labeled": n_lab,
            "accuracy": _ratio(n_right, n_lab),
            "auto": {"labeled": n_lab_auto, "accuracy": _ratio(n_right_auto, n_lab_auto)},
            "review": {"labeled": n_lab - n_lab_auto, "accuracy": _ratio(n_right - n_right_auto,
                                                                          n_lab - n_lab_auto)},
            "new_label_share": _ratio(n_new, n_lab),
            "label_psi": population_stability_index(acc["mix"], mix) if mix else None,
        }
    return versions
