"""Corrections from the work-order system's exports into the decision log, and the log's labeled cases back out
as training data (``hotline feedback import`` / ``export``; the command line is ``training.feedback_cli``).

An export row is a case id and its final labels (any of the model's targets: an export may carry only the
agency), from one source (``dispatcher``, ``agency_return``, ``audit``: one for the file or a column), with the
time it was corrected and, for a case the service never predicted, its text.  Every row ends as stored,
replaced (the same case and source said something else before: the old label goes to the history), unchanged
(imported before) or refused with its spreadsheet row number and the reason; none is dropped silently.  A label
the model does not know (a new or renamed agency) is stored and counted as new.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

import pandas as pd

from classifier.errors import ConfigError, DataFormatError, DecisionLogError, MissingColumnError
from live.log import MAX_CORRECTIONS_PER_BATCH, Correction, CorrectionResult, DecisionLog
from live.schema import SOURCES

from .periods import to_utc_series

__all__ = ["ImportColumns", "FeedbackImport", "import_corrections", "known_labels", "write_cases", "log_statistics",
           "EXPORT_FORMATS"]

EXPORT_FORMATS = (".csv", ".xlsx", ".jsonl", ".parquet")


@dataclass(frozen=True)
class ImportColumns:
    """Which export columns hold what.  ``source``: one source for every row, unless ``source_column`` names a
    column that holds each row's."""

    case_id: str
    targets: Mapping[str, str]  # target -> column
    source: str = "dispatcher"
    source_column: str | None = None
    time: str | None = None
    text: str | None = None

    def named(self) -> dict[str, str]:
        """Every named column, with the option that named it (for messages)."""
        out = {"--case-id": self.case_id, **{f"{t} (label)": c for t, c in self.targets.items()}}
        for flag, col in (("--source-column", self.source_column), ("--time", self.time), ("--text", self.text)):
            if col is not None:
                out[flag] = col
        return out


@dataclass
class FeedbackImport:
    """What an import did, row by row."""

    rows_read: int = 0
    stored: int = 0
    replaced: int = 0
    unchanged: int = 0
    refused: list[dict[str, Any]] = field(default_factory=list)  # {"row", "case_id", "reason"}
    new_labels: dict[str, Counter[str]] = field(default_factory=dict)  # target -> label -> rows
    labels_per_target: Counter[str] = field(default_factory=Counter)  # target -> rows that gave its label
    time_column: str | None = None  # None: every correction is stamped with the import's time
    untimed: int = 0      # rows with a blank time: stamped with the import's time
    with_text: int = 0    # rows that brought a text (cases the service never saw)
    cases_seen: int = 0   # rows whose case the service predicted
    batches: int = 0

    @property
    def new_label_rows(self) -> int:
        return sum(sum(c.values()) for c in self.new_labels.values())

    def to_dict(self) -> dict[str, Any]:
        return {"rows_read": self.rows_read, "stored": self.stored, "replaced": self.replaced,
                "unchanged": self.unchanged, "refused": len(self.refused), "refused_rows": self.refused,
                "labels": dict(self.labels_per_target),
                "new_labels": {t: dict(c.most_common()) for t, c in self.new_labels.items()},
                "new_label_rows": self.new_label_rows, "untimed_rows": self.untimed,
                "rows_with_text": self.with_text, "rows_of_predicted_cases": self.cases_seen,
                "time_column": self.time_column,
                "batches": self.batches}

    def summary(self, shown_refusals: int = 30) -> str:
        lines = [f"rows read {self.rows_read:,}: stored {self.stored:,}, replaced {self.replaced:,}, "
                 f"unchanged {self.unchanged:,}, refused {len(self.refused):,}"]
        if self.labels_per_target:
            lines.append("labels: " + ", ".join(f"{t} {n:,}" for t, n in self.labels_per_target.items()))
        for target, counts in self.new_labels.items():
            top = ", ".join(f"{label} ({n})" for label, n in counts.most_common(5))
            more = f" and {len(counts) - 5} more" if len(counts) > 5 else ""
            lines.append(f"new {target} labels (the model does not know them; retrain to learn them): "
                         f"{sum(counts.values()):,} rows, {len(counts)} labels: {top}{more}")
        if self.time_column is None:
            lines.append("no --time column: every correction is stamped with the time of this import")
        elif self.untimed:
            lines.append(f"{self.untimed:,} rows with a blank {self.time_column!r}: stamped with the time of this "
                         "import")
        if self.with_text:
            lines.append(f"{self.with_text:,} rows brought a text (stored masked: phone numbers, ID numbers and "
                         "e-mail addresses replaced)")
        for r in self.refused[:shown_refusals]:
            lines.append(f"refused row {r['row']}: {r['reason']}")
        if len(self.refused) > shown_refusals:
            lines.append(f"... and {len(self.refused) - shown_refusals:,} more refused rows (--json lists them all)")
        return "\n".join(lines)


def known_labels(model: Any) -> dict[str, set[str]]:
    """The labels the serving model can predict, per target (for a routing model's agency: every agency of its
    directory too): a correction's label outside them is new."""
    return {t: set(model.classes(t)) for t in model.targets_}


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v) or (isinstance(v, str) and not v.strip())


def _check_columns(df: pd.DataFrame, columns: ImportColumns, source: str, targets: Collection[str]) -> None:
    missing = {flag: col for flag, col in columns.named().items() if col not in df.columns}
    if missing:
        named = ", ".join(f"{col!r} ({flag})" for flag, col in missing.items())
        raise MissingColumnError(f"{source} has no column {named}; its columns are "
                                 f"{', '.join(map(repr, df.columns[:30]))}; name the right ones")
    if not columns.targets:
        raise ConfigError("name at least one label column: --category COLUMN, --agency COLUMN or "
                          "--target NAME=COLUMN")
    unknown = sorted(set(columns.targets) - set(targets))
    if unknown:
        raise ConfigError(f"the model predicts {sorted(targets)}; it has no target {unknown}: a correction can "
                          "only give the final label of one of the model's targets")
    if columns.source_column is None and columns.source not in SOURCES:
        raise ConfigError(f"--source must be one of {list(SOURCES)}, got {columns.source!r}")


def import_corrections(df: pd.DataFrame, decision_log: DecisionLog, columns: ImportColumns,
                       labels: Mapping[str, Collection[str]], *, tz: tzinfo | None = None,
                       batch_size: int = MAX_CORRECTIONS_PER_BATCH, now: datetime | None = None) -> FeedbackImport:
    """Store an export's corrections in ``decision_log`` in batches of ``batch_size`` (<= 10,000), each batch one
    transaction.  ``labels``: the model's known labels per target.  Rows are numbered as a spreadsheet shows
    them (the header is row 1).  Raises ``DecisionLogError`` when the database fails; the batches before are
    stored, and importing the file again stores the rest (what is stored already comes back unchanged)."""
    if not 1 <= batch_size <= MAX_CORRECTIONS_PER_BATCH:
        raise ConfigError(f"batch size must be 1 to {MAX_CORRECTIONS_PER_BATCH:,}, got {batch_size}")
    _check_columns(df, columns, str(df.attrs.get("source") or "the data"), labels)
    result = FeedbackImport(rows_read=len(df), time_column=columns.time)
    row_no = [i + 2 for i in range(len(df))]
    times, bad_time = (to_utc_series(df[columns.time], tz) if columns.time is not None
                       else (pd.Series([None] * len(df), dtype=object), pd.Series([False] * len(df))))
    pending: list[tuple[int, Correction]] = []  # (row number, correction)

    def flush() -> None:
        if not pending:
            return
        try:
            outcomes = decision_log.add_corrections([c for _, c in pending], labels, now=now)
        except DecisionLogError as exc:
            first = pending[0][0]
            raise DecisionLogError(
                f"{exc}; rows before row {first} were stored ({result.stored:,} stored, {result.replaced:,} "
                f"replaced, {result.unchanged:,} unchanged), row {first} onwards were not: import the file again "
                "when the database is back (rows already stored come back unchanged)") from None
        result.batches += 1
        for (row, correction), outcome in zip(pending, outcomes, strict=True):
            if isinstance(outcome, CorrectionResult):
                setattr(result, outcome.status, getattr(result, outcome.status) + 1)
                result.cases_seen += outcome.case_seen
                result.labels_per_target.update(correction.labels.keys())
                for target in outcome.new_labels:
                    result.new_labels.setdefault(target, Counter())[correction.labels[target]] += 1
            else:
                result.refused.append({"row": row, "case_id": correction.case_id, "reason": str(outcome)})
        pending.clear()

    case_ids = df[columns.case_id].tolist()
    label_values = {t: df[col].tolist() for t, col in columns.targets.items()}
    sources = df[columns.source_column].tolist() if columns.source_column is not None else None
    texts = df[columns.text].tolist() if columns.text is not None else None
    for i, row in enumerate(row_no):
        case_id = "" if _blank(case_ids[i]) else str(case_ids[i]).strip()
        if not case_id:
            result.refused.append({"row": row, "case_id": None, "reason": f"no case id in {columns.case_id!r}"})
            continue
        given = {t: str(v[i]).strip() for t, v in label_values.items() if not _blank(v[i])}
        if not given:
            result.refused.append({"row": row, "case_id": case_id, "reason": "no final label in " + ", ".join(
                repr(c) for c in columns.targets.values())})
            continue
        if sources is not None:
            if _blank(sources[i]):
                result.refused.append({"row": row, "case_id": case_id,
                                       "reason": f"no source in {columns.source_column!r} (one of {list(SOURCES)})"})
                continue
            source = str(sources[i]).strip()
        else:
            source = columns.source
        if bool(bad_time.iloc[i]):
            shown = str(df[columns.time].iloc[i])[:40]
            result.refused.append({"row": row, "case_id": case_id,
                                   "reason": f"{columns.time!r} is not a date and time: {shown!r}"})
            continue
        when = times.iloc[i]
        if when is None and columns.time is not None:
            result.untimed += 1
        text = None if texts is None or _blank(texts[i]) else str(texts[i])
        result.with_text += text is not None
        pending.append((row, Correction(case_id=case_id, labels=given, source=source, corrected_at=when,
                                        text=text)))
        if len(pending) >= batch_size:
            flush()
    flush()
    result.refused.sort(key=lambda r: r["row"])
    return result


def write_cases(cases: pd.DataFrame, path: Path) -> Path:
    """Write labeled cases as CSV (UTF-8 with a byte-order mark, which Excel needs to show Chinese), XLSX, JSONL or
    Parquet, by the file's suffix."""
    suffix = path.suffix.lower()
    if suffix not in EXPORT_FORMATS:
        raise DataFormatError(f"--out {path}: write cases as {', '.join(EXPORT_FORMATS)}, got "
                              f"{suffix or 'no suffix'!r}")
    if path.is_dir():
        raise DataFormatError(f"--out {path} is a folder; give a file name such as cases.csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    out = cases.copy()
    if "time" in out:
        out["time"] = [t.isoformat() if isinstance(t, (datetime, pd.Timestamp)) else t for t in out["time"]]
    if suffix == ".csv":
        out.to_csv(path, index=False, encoding="utf-8-sig")
    elif suffix == ".xlsx":
        out.to_excel(path, index=False)
    elif suffix == ".jsonl":
        out.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        out.to_parquet(path, index=False)
    return path


def log_statistics(decision_log: DecisionLog) -> dict[str, Any]:
    """What the log holds: row counts, the first and last decision, decisions per model version, corrections
    per source, how many corrections name a label the model did not know, and how many texts are stored."""
    from sqlalchemy import func, select
    from sqlalchemy.exc import SQLAlchemyError

    from live.schema import corrections, decisions

    out: dict[str, Any] = {"tables": decision_log.counts()}
    d, c = decisions.c, corrections.c
    try:
        with decision_log.engine.connect() as conn:
            first, last = conn.execute(select(func.min(d.created_at), func.max(d.created_at))).one()
            out["first_decision"] = _iso(first)
            out["last_decision"] = _iso(last)
            out["decisions_per_version"] = dict(conn.execute(
                select(d.model_version, func.count()).group_by(d.model_version).order_by(d.model_version)).all())
            out["corrections_per_source"] = dict(conn.execute(
                select(c.source, func.count()).group_by(c.source).order_by(c.source)).all())
            out["corrections_with_new_labels"] = int(conn.execute(
                select(func.count()).where(c.known_label.is_(False))).scalar_one())
            out["texts_stored"] = {
                "decisions": int(conn.execute(select(func.count()).where(d.text.is_not(None))).scalar_one()),
                "corrections": int(conn.execute(select(func.count()).where(c.text.is_not(None))).scalar_one())}
    except SQLAlchemyError as exc:
        raise decision_log._fail("read", exc) from None
    return out


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite without type information (an aggregate)
        value = datetime.fromisoformat(value)
    return (value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)).isoformat()
