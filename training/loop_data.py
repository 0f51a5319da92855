"""Training data from the live loop: the decision log's corrected cases beside (or instead of) an export.

``read_feedback(source)`` reads the labeled cases of a decision log (a database URL, a SQLite file, or an open
``live.log.DecisionLog``) or a file written by ``hotline feedback export`` (columns ``case_id``, ``text``, one
column per target, ``source``, ``time``).  ``combine(export, feedback, ...)`` puts them together for ``train``:

- a corrected case that is also in the export (same case id, ``--id``) is one case: each target's corrected
  label replaces the export's, the export's text and date stay;
- a corrected case the export lacks is added with the log's (masked) text and its correction's time; one whose
  text the log did not store (the service stores texts only with ``HOTLINE_DECISION_LOG_TEXTS``) cannot be
  learned from and is counted, not silently dropped;
- the export's rows keep their order and spreadsheet row numbers; the corrected-only cases follow.

``CombinedSources`` says how many cases came from where, for the validation report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from classifier.errors import ConfigError, DataFormatError, MissingColumnError, TrainingDataError

from .data import read_table

__all__ = ["read_feedback", "combine", "feedback_targets", "CombinedSources", "FEEDBACK_COLUMNS", "LOG_SUFFIXES"]

FEEDBACK_COLUMNS = ("case_id", "text", "source", "time")  # beside one column per target
LOG_SUFFIXES = (".sqlite", ".sqlite3", ".db")


@dataclass
class CombinedSources:
    """How many training cases came from where (``ValidationReport.sources``)."""

    export_rows: int = 0                    # rows of the export (before validation)
    feedback_cases: int = 0                 # corrected cases read from the log / feedback file
    relabeled: int = 0                      # export cases whose label a correction changed
    confirmed: int = 0                      # export cases a correction confirmed (same labels)
    added: int = 0                          # corrected cases the export does not have, added with their text
    without_text: int = 0                   # corrected cases the export lacks whose text the log did not keep
    labels_changed: dict[str, int] = field(default_factory=dict)   # target -> export labels a correction changed
    export_without_id: int = 0              # export rows with a blank case id (cannot be matched)
    repeated_ids: int = 0                   # export rows whose case id an earlier row already has
    feedback: str = ""                      # where the corrections came from

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        out = []
        if self.export_rows:
            out.append(f"from the export: {self.export_rows} rows")
        out.append(f"from the corrections ({self.feedback}): {self.feedback_cases} cases: {self.relabeled} "
                   f"relabeled export cases, {self.confirmed} confirmed export cases, {self.added} cases the "
                   "export does not have")
        changed = ", ".join(f"{t} {n}" for t, n in self.labels_changed.items() if n)
        if changed:
            out.append(f"labels a correction changed: {changed}")
        if self.without_text:
            out.append(f"left out {self.without_text} corrected cases the export does not have and whose text the "
                       "log did not keep (the service stores texts only with HOTLINE_DECISION_LOG_TEXTS); pass the "
                       "export that holds them, with --id")
        if self.export_without_id:
            out.append(f"{self.export_without_id} export rows have no case id: no correction can reach them")
        if self.repeated_ids:
            out.append(f"{self.repeated_ids} export rows repeat an earlier row's case id: a correction relabels "
                       "every row of its case")
        return out


def _open_log(url: str) -> Any:
    from live.db import schema_revision
    from live.log import DecisionLog

    log = DecisionLog(url, migrate_schema=False)
    try:
        log.ping()  # DecisionLogError, with the reason, when the database cannot be reached
    except Exception:
        log.close()
        raise
    if schema_revision(log.engine) is None:
        log.close()
        raise DataFormatError(f"{url} is not a decision log (no schema in it); give the service's log URL "
                              "(HOTLINE_DECISION_LOG_URL) or a file from `hotline feedback export`")
    return log


def read_feedback(source: Any, targets: Sequence[str] | None = None) -> tuple[pd.DataFrame, str]:
    """The corrected cases of ``source`` (``case_id``, ``text``, one column per target, ``source``, ``time``)
    and a description of where they came from.  ``source``: an open ``DecisionLog``, a database URL
    (``sqlite:///...``, ``postgresql+psycopg://...``), a SQLite file (``.sqlite``, ``.db``) or an exported file
    (CSV, XLSX, JSONL, Parquet)."""
    from live.log import DecisionLog

    if isinstance(source, DecisionLog):
        return source.labeled_cases(targets=targets), repr(source)
    if isinstance(source, pd.DataFrame):
        frame, where = source.copy(), "DataFrame"
    elif isinstance(source, str) and "://" in source:
        log = _open_log(source)
        try:
            return log.labeled_cases(targets=targets), repr(log)
        finally:
            log.close()
    else:
        path = Path(source)
        if path.suffix.lower() in LOG_SUFFIXES:
            if not path.is_file():
                raise DataFormatError(f"decision log not found: {path}")
            log = _open_log(f"sqlite:///{path.resolve()}")
            try:
                return log.labeled_cases(targets=targets), str(path)
            finally:
                log.close()
        frame, where = read_table(path), str(path)
    missing = [c for c in ("case_id", "text") if c not in frame.columns]
    if missing:
        raise MissingColumnError(f"the feedback file {where} has no column(s) {missing}; expected the columns of "
                                 f"`hotline feedback export`: {list(FEEDBACK_COLUMNS)} and one per target; its "
                                 f"columns are {list(frame.columns)}")
    if "time" in frame.columns:
        frame["time"] = pd.to_datetime(frame["time"], errors="coerce", utc=True, format="mixed")
    return frame, where


def feedback_targets(feedback: pd.DataFrame) -> dict[str, str]:
    """The targets the corrections label: every column beside ``case_id``, ``text``, ``source`` and ``time``."""
    names = [c for c in feedback.columns if c not in FEEDBACK_COLUMNS]
    if not names:
        raise TrainingDataError(f"the corrections carry no target labels; their columns are {list(feedback.columns)}")
    return {n: n for n in names}


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v) or not str(v).strip()


def combine(export: pd.DataFrame | None, feedback: pd.DataFrame, text: str, targets: Mapping[str, str],
            id_column: str | None = None, time: str | None = None, where: str = "feedback",
            ) -> tuple[pd.DataFrame, CombinedSources]:
    """One frame to train on: the export's rows (its own columns; each target's label replaced by the case's
    correction, if any) then the corrected cases it lacks.  ``targets``: target name -> the export's column;
    the feedback's columns are target names.  ``time``: the export's date column; corrected-only cases get
    their correction's time in it (without an export, a column ``time`` holds them)."""
    names = list(targets)
    have = [n for n in names if n in feedback.columns]
    if not have:
        raise TrainingDataError(f"the corrections ({where}) label none of the targets {names}; their columns are "
                                f"{list(feedback.columns)}")
    fb = feedback.copy()
    fb["case_id"] = fb["case_id"].map(lambda v: None if _blank(v) else str(v).strip())
    fb = fb[fb["case_id"].notna()].drop_duplicates("case_id", keep="last").set_index("case_id")
    report = CombinedSources(feedback_cases=len(fb), feedback=where)
    time_out = time or "time"
    if export is None:
        columns = {"text": "text", **{n: n for n in names}}
        base = pd.DataFrame(columns=[*columns.values(), time_out, "case_id"])
        matched: set[str] = set()
    else:
        if id_column is None:
            raise ConfigError("corrections are matched to the export's cases by case id: name the export's id "
                              "column with --id COLUMN (train(..., id_column=...))")
        if id_column not in export.columns:
            raise MissingColumnError(f"id column {id_column!r} not in the export; its columns are "
                                     f"{list(export.columns)}")
        base = export.copy()
        base.attrs = dict(export.attrs)
        columns = {"text": text, **dict(targets)}
        report.export_rows = len(base)
        ids = base[id_column].map(lambda v: None if _blank(v) else str(v).strip())
        report.export_without_id = int(ids.isna().sum())
        report.repeated_ids = int(ids[ids.notna()].duplicated().sum())
        in_fb = ids.isin(fb.index)
        matched = set(ids[in_fb])
        changed_cases: set[str] = set()
        rows = np.flatnonzero(in_fb.to_numpy())
        matched_ids = ids.iloc[rows].tolist()
        for n in have:
            col = targets[n]
            corrected = fb[n].to_dict()
            values = [corrected.get(c) for c in matched_ids]
            has_new = np.array([not _blank(v) for v in values], dtype=bool)
            old = base[col].iloc[rows].tolist()
            differs = np.array([h and ("" if _blank(o) else str(o).strip()) != str(v).strip()
                                for h, o, v in zip(has_new, old, values, strict=True)], dtype=bool)
            report.labels_changed[n] = int(differs.sum())
            changed_cases |= {c for c, d in zip(matched_ids, differs, strict=True) if d}
            if has_new.any():
                base.loc[base.index[rows[has_new]], col] = [str(v).strip() for v, h in zip(values, has_new) if h]
        report.relabeled = len(changed_cases)
        report.confirmed = len(matched) - len(changed_cases)
    extra = fb[~fb.index.isin(list(matched))]
    with_text = extra[extra["text"].map(lambda v: not _blank(v))] if "text" in extra else extra.iloc[0:0]
    report.without_text = len(extra) - len(with_text)
    report.added = len(with_text)
    if export is None and not len(with_text):
        raise TrainingDataError(
            f"none of the {len(fb)} corrected cases in {where} has a stored text to learn from (the service stores "
            "texts only with HOTLINE_DECISION_LOG_TEXTS); train from the export that holds them: "
            "--data EXPORT --id COLUMN --feedback ...")
    added = pd.DataFrame({columns["text"]: with_text["text"].astype(str).tolist()})
    for n in names:
        added[columns[n]] = with_text[n].tolist() if n in with_text else None
    if "time" in with_text and (time is not None or export is None):  # an export's dates only with --time
        added[time_out] = [t.isoformat() if isinstance(t, pd.Timestamp) else t for t in with_text["time"]]
    if export is not None:
        added[id_column] = with_text.index.tolist()
    else:
        added["case_id"] = with_text.index.tolist()
    out = pd.concat([base, added], ignore_index=True) if export is not None else added
    out.attrs = dict(base.attrs)
    # a short name for people (``train``'s summary shows it): the files' names, not their folders
    corrections = "the decision log" if "://" in where else Path(where).name
    out.attrs["source"] = (f"{Path(str(base.attrs.get('source', 'the export'))).name} + corrections from "
                           f"{corrections}" if export is not None else f"corrections from {corrections}")
    return out, report
