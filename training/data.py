"""Reading labeled cases and validating them before any fitting.

Data staff bring Excel/CSV exports (often GBK), JSONL or Parquet.  ``read_table`` reads them all;
``validate`` reports everything it changes, so nothing is silently lost: rows dropped and why, exact
duplicates, the same text with conflicting labels, and classes below the minimum count.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from classifier.errors import DataFormatError, MissingColumnError, RareClassError, TrainingDataError
from classifier.text import is_blank

__all__ = ["read_table", "validate", "ValidationReport", "fingerprint", "default_targets", "SUPPORTED_FORMATS"]

SUPPORTED_FORMATS = (".csv", ".tsv", ".txt", ".xlsx", ".xlsm", ".jsonl", ".ndjson", ".json", ".parquet")
_ENCODINGS = ("utf-8-sig", "gb18030")  # GB18030 is a superset of GBK and GB2312
# Python's csv module refuses a field over 131,072 characters and with it the whole file; such a cell (a pasted
# log, a whole document in one comment) is read, and ``validate`` drops its row if it is the text and too long
_CSV_FIELD_LIMIT = 2**31 - 1
_csv_limit_lock = threading.Lock()


def _decode(raw: bytes, encoding: str | None, path: Path) -> tuple[str, str]:
    if encoding:
        try:
            return raw.decode(encoding), encoding
        except (UnicodeDecodeError, LookupError) as exc:
            raise DataFormatError(f"{path} cannot be decoded as {encoding}: {exc}") from None
    for enc in _ENCODINGS:
        try:
            return raw.decode(enc), ("utf-8" if enc == "utf-8-sig" else enc)
        except UnicodeDecodeError:
            continue
    raise DataFormatError(
        f"{path} is neither UTF-8 nor GBK/GB18030; pass its encoding explicitly (--encoding big5, ...)"
    )


def read_table(path: str | Path, encoding: str | None = None, sheet: str | int | None = 0) -> pd.DataFrame:
    """Read a labeled data file into a DataFrame of strings.

    CSV/TSV: UTF-8 (with or without BOM) or GBK/GB18030, detected (or ``encoding``).  XLSX: the first sheet
    (or ``sheet``).  JSONL: one object per line.  Parquet.
    """
    path = Path(path)
    if not path.exists():
        raise DataFormatError(f"data file not found: {path}")
    if path.is_dir():
        raise DataFormatError(f"{path} is a folder; give a data file ({', '.join(SUPPORTED_FORMATS)})")
    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        raise DataFormatError(f"{path} is empty (0 bytes)")
    try:
        if suffix in (".csv", ".tsv", ".txt"):
            text, used = _decode(path.read_bytes(), encoding, path)
            sep = "\t" if suffix == ".tsv" else None
            with _csv_limit_lock:  # the limit is process-wide: lifted for this read only
                limit = csv.field_size_limit(_CSV_FIELD_LIMIT)
                try:
                    df = pd.read_csv(io.StringIO(text), sep=sep, engine="python", dtype=str, keep_default_na=False,
                                     na_values=[""])
                finally:
                    csv.field_size_limit(limit)
            df.attrs["encoding"] = used
        elif suffix in (".xlsx", ".xlsm"):
            df = pd.read_excel(path, sheet_name=sheet, dtype=str)
        elif suffix in (".jsonl", ".ndjson"):
            df = pd.read_json(path, lines=True, dtype=False, encoding=encoding or "utf-8")
        elif suffix == ".json":
            df = pd.read_json(path, dtype=False, encoding=encoding or "utf-8")
        elif suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            raise DataFormatError(
                f"unsupported file type {suffix!r} for {path}; use one of {', '.join(SUPPORTED_FORMATS)}"
            )
    except DataFormatError:
        raise
    except (ValueError, OSError, ImportError) as exc:
        raise DataFormatError(f"cannot read {path} as {suffix[1:]}: {exc}") from None
    except Exception as exc:  # parsers raise their own types (csv.Error, zipfile.BadZipFile, ArrowInvalid)
        raise DataFormatError(f"cannot read {path} as {suffix[1:]}: {type(exc).__name__}: {exc}") from None
    if df.shape[0] == 0:
        raise DataFormatError(f"{path} has a header but no rows")
    df.columns = [str(c).strip() for c in df.columns]
    df.attrs["source"] = str(path)
    df.attrs["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return df


def default_targets(df: pd.DataFrame) -> dict[str, str]:
    """The targets when none are named: the data's ``category`` and/or ``agency`` columns."""
    targets = {c: c for c in ("category", "agency") if c in df.columns}
    if not targets:
        raise TrainingDataError("no targets given and the data has no 'category' or 'agency' column")
    return targets


def fingerprint(df: pd.DataFrame, columns: list[str]) -> str:
    """sha256 of the used columns' content (stable across file formats holding the same data)."""
    h = hashlib.sha256()
    for col in columns:
        h.update(col.encode())
        for v in df[col].tolist():
            h.update(b"\x00" + ("" if _missing(v) else str(v)).encode("utf-8"))
    return h.hexdigest()


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v) or (isinstance(v, str) and not v.strip())


@dataclass
class ValidationReport:
    """What validation found and did, saved with the model (``validation_report.json``)."""

    rows_read: int
    text_column: str
    target_columns: dict[str, str]
    rows_used: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> rows
    dropped_rows: dict[str, list[int]] = field(default_factory=dict)  # reason -> row numbers (first 50)
    missing_labels: dict[str, int] = field(default_factory=dict)  # target -> rows kept without that label
    exact_duplicates: int = 0
    conflicting_texts: dict[str, int] = field(default_factory=dict)  # target -> distinct texts, several labels
    conflict_examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    rare_classes: dict[str, dict[str, int]] = field(default_factory=dict)  # target -> {class: count}
    rare_policy: str = "error"
    other_label: str = "其他"  # what rare classes become with rare_policy "other"
    min_class_count: int = 3
    class_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # training from the live loop: how many cases came from where (training.loop_data.CombinedSources)
    sources: dict[str, Any] = field(default_factory=dict)
    # target -> {label: the date its last case was seen}: labels retired by TrainingConfig.recency
    retired: dict[str, dict[str, str]] = field(default_factory=dict)
    # target -> {old label: {"new": label, "cases": n}}: renamed / merged labels (TrainingConfig.relabel)
    relabeled: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what training did beyond validation, in words

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """What validation dropped so far, as the opening of an error message ("" when nothing was)."""
        if not self.dropped:
            return ""
        parts = [f"{n:,} {'row' if n == 1 else 'rows'}: {reason}" for reason, n in self.dropped.items()]
        return f"of {self.rows_read:,} rows read, validation dropped " + "; ".join(parts) + ". After that: "

    def rare_sentence(self, target: str) -> str:
        """What happened to ``target``'s rare classes, in words (without the list)."""
        n = len(self.rare_classes.get(target) or {})
        what = f"{n} {target} class{'es' if n != 1 else ''} with fewer than {self.min_class_count} cases"
        if self.rare_policy == "other":
            return f"{what} merged into the class \"{self.other_label}\""
        if self.rare_policy == "drop":
            return f"{what} dropped (their rows kept for the other targets)" if len(self.target_columns) > 1 \
                else f"{what} dropped with their rows"
        return what

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)

    def __str__(self) -> str:
        lines = [
            "Validation report",
            f"  rows read: {self.rows_read}",
            f"  text column: {self.text_column}; targets: "
            + ", ".join(f"{t} <- {c}" for t, c in self.target_columns.items()),
        ]
        for reason, n in self.dropped.items():
            rows = self.dropped_rows.get(reason, [])
            shown = ", ".join(str(r) for r in rows[:10]) + (", ..." if len(rows) > 10 else "")
            lines.append(f"  dropped {n} rows: {reason} (rows {shown})")
        for target, n in self.missing_labels.items():
            if n:
                lines.append(f"  kept {n} rows without {article(target)} {target} label (used for the other targets "
                             "only)")
        lines.append(f"  exact duplicate texts (same labels): {self.exact_duplicates}")
        for target, n in self.conflicting_texts.items():
            if n:
                lines.append(f"  texts with conflicting {target} labels: {n}")
        for target, classes in self.rare_classes.items():
            if classes:
                lines.append(f"  {self.rare_sentence(target)}: {rare_list(classes)}")
        for target, counts in self.class_counts.items():
            lines.append(f"  {target}: {len(counts)} classes, largest {max(counts.values(), default=0)}, "
                         f"smallest {min(counts.values(), default=0)}")
        lines.extend(f"  {note}" for note in self.notes)
        lines.append(f"  rows used: {self.rows_used}")
        lines.extend(f"  warning: {w}" for w in self.warnings)
        return "\n".join(lines)


RARE_SHOWN = 20  # rare classes named in the printed report; the rest are in validation_report.json


def rare_list(classes: Mapping[str, int], limit: int = RARE_SHOWN) -> str:
    """``A (2), B (1), ... and N more (every one is in validation_report.json)``."""
    items = list(classes.items())
    shown = ", ".join(f"{c} ({n})" for c, n in items[:limit])
    if len(items) > limit:
        shown += f" and {len(items) - limit} more (every one is listed in validation_report.json, saved with the model)"
    return shown


def article(word: str) -> str:
    """ "an" before a vowel sound (an agency), else "a" (a category)."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def validate(
    df: pd.DataFrame,
    text: str,
    targets: Mapping[str, str],
    min_class_count: int = 3,
    rare_policy: str = "error",
    other_label: str = "其他",
    drop_duplicates: bool = True,
    max_text_length: int | None = None,
) -> tuple[pd.DataFrame, ValidationReport]:
    """Check labeled data and return the rows to train on (columns ``text`` + target names) and a report.

    ``targets`` maps a target name (``category``, ``agency``) to its column.  ``max_text_length``: rows whose
    text is longer are dropped and reported (the model refuses such texts when predicting; the training config's
    ``max_text_length``).  Raises ``MissingColumnError``, ``TrainingDataError`` (nothing left, no labels) or
    ``RareClassError`` (with ``rare_policy="error"``); their messages start with what validation had already
    dropped (``ValidationReport.summary``), so "too small" never hides "49,999 duplicates were dropped".
    """
    if not isinstance(df, pd.DataFrame):
        raise TrainingDataError(f"expected a pandas DataFrame, got {type(df).__name__}")
    if not targets:
        raise TrainingDataError("name at least one target column (e.g. category=一级标签)")
    if rare_policy not in ("error", "other", "drop"):
        raise TrainingDataError(f"rare_policy must be 'error', 'other' or 'drop', got {rare_policy!r}")
    columns = [text, *targets.values()]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise MissingColumnError(
            f"column(s) {missing} not in the data; its columns are {list(df.columns)}. "
            "Name the right ones with --text / --category / --agency"
        )
    report = ValidationReport(rows_read=len(df), text_column=text, target_columns=dict(targets),
                              rare_policy=rare_policy, other_label=other_label, min_class_count=min_class_count)
    data = pd.DataFrame({"text": df[text].tolist()}, index=pd.RangeIndex(len(df)))
    for name, col in targets.items():
        data[name] = [None if _missing(v) else str(v).strip() for v in df[col].tolist()]
    row_no = data.index + 2  # spreadsheet row numbers: header is row 1

    def drop(mask: pd.Series, reason: str) -> None:
        nonlocal data, row_no
        if mask.any():
            report.dropped[reason] = report.dropped.get(reason, 0) + int(mask.sum())
            report.dropped_rows.setdefault(reason, []).extend(int(r) for r in row_no[mask][:50])
            data, row_no = data[~mask], row_no[~mask]

    not_text = data["text"].map(lambda v: not isinstance(v, str) and not _missing(v))
    data.loc[not_text, "text"] = data.loc[not_text, "text"].map(str)
    drop(data["text"].map(lambda v: _missing(v) or is_blank(v)), "empty text")  # the service refuses them too
    if max_text_length is not None:
        drop(data["text"].map(len) > max_text_length, f"text longer than {max_text_length:,} characters")
    names = list(targets)
    no_label = data[names].isna().all(axis=1)
    drop(no_label, "no label for any target" if len(names) > 1 else f"missing {names[0]} label")
    for name in names:
        report.missing_labels[name] = int(data[name].isna().sum())

    # exact duplicates: same text and same labels (kept once); conflicts: same text, different labels
    key = data["text"].map(lambda s: " ".join(str(s).split()))
    dup = pd.concat([key, data[names].fillna("\x00")], axis=1).duplicated(keep="first")
    report.exact_duplicates = int(dup.sum())
    if drop_duplicates:
        drop(dup, "exact duplicate (same text and labels)")
    key = data["text"].map(lambda s: " ".join(str(s).split()))
    for name in names:
        labelled = data[name].notna()
        per_text = data.loc[labelled].groupby(key[labelled])[name].nunique()
        conflicted = per_text[per_text > 1]
        report.conflicting_texts[name] = int(len(conflicted))
        examples = []
        for t in conflicted.index[:5]:
            labels = sorted(data.loc[labelled & (key == t), name].unique().tolist())
            examples.append({"rows": [int(r) for r in row_no[labelled & (key == t)][:5]], "labels": labels})
        report.conflict_examples[name] = examples

    for name in names:
        counts = data[name].value_counts()
        rare = counts[counts < min_class_count]
        report.rare_classes[name] = {str(k): int(v) for k, v in rare.items()}
    if any(report.rare_classes.values()):
        if rare_policy == "error":
            parts = []
            for name, rare in report.rare_classes.items():
                if rare:
                    shown = ", ".join(f"{c} ({n})" for c, n in list(rare.items())[:15])
                    more = f" and {len(rare) - 15} more" if len(rare) > 15 else ""
                    parts.append(f"{name} ({len(rare)} classes): {shown}{more}")
            raise RareClassError(
                report.summary() + f"classes with fewer than {min_class_count} examples: " + "; ".join(parts)
                + ". Add examples, or pass --min-class-count N --rare-policy other|drop"
            )
        for name, rare in report.rare_classes.items():
            if not rare:
                continue
            is_rare = data[name].isin(list(rare))
            if rare_policy == "other":
                data.loc[is_rare, name] = other_label
            elif len(names) == 1:
                drop(is_rare, f"rare {name} class (< {min_class_count})")
            else:  # other targets keep the row; this target just has no label there
                data.loc[is_rare, name] = None
                report.missing_labels[name] += int(is_rare.sum())

    for name in names:
        counts = data[name].value_counts()
        report.class_counts[name] = {str(k): int(v) for k, v in counts.items()}
        if len(counts) < 2:
            raise TrainingDataError(
                report.summary() + f"target {name!r} has {len(counts)} class(es) after validation "
                f"({list(counts.index)}); a classifier needs at least 2"
            )
    if data.empty:
        raise TrainingDataError(report.summary() + "no rows left to train on after validation")
    report.rows_used = len(data)
    data.attrs["row_numbers"] = row_no.tolist()
    return data.reset_index(drop=True), report
