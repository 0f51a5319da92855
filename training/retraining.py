"""The retraining cycle's decisions, for ``notebooks/retrain.ipynb`` (and anyone scripting it): which settings
to train with, which cases to hold out, which cases both models can be fairly judged on, and whether to
promote.

- ``training_settings``: a config file if given, else the current version's own settings (so a retrained model
  reads text as the one in service does), else the defaults; with a sentence saying which.
- ``newest_holdout``: hold out the newest cases when the export has dates (a model is used on cases that come
  after its training data), else a seeded random share; with a sentence saying which.
- ``unseen_cases``: the held-out cases none of the compared models learned from (their row fingerprints,
  ``training.overlap``), so the comparison is on cases neither has seen.
- ``promotion_decision``: promote on the comparison's verdict (better / no significant difference / worse).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from classifier.config import TrainingConfig, load_config, validate_config
from classifier.errors import ConfigError, MissingColumnError
from classifier.store import ModelStore, StoredModel

from .overlap import load_row_filter

__all__ = ["DATE_NAMES", "find_date_column", "newest_holdout", "training_settings", "unseen_cases",
           "promotion_decision", "Decision"]

# column names a date of the case goes by in hotline exports (the day the call was taken, first)
DATE_NAMES = ("date", "受理时间", "受理日期", "来电时间", "来电日期", "登记时间", "登记日期", "创建时间", "工单日期",
              "日期", "时间", "created", "created_at", "received")
_DATE_LIKE = re.compile(r"(date|time|日期|时间)", re.IGNORECASE)
MIN_PARSED = 0.9  # a date column: this share of its filled values parse as dates, and most rows have one


def _parse_dates(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, errors="coerce", format="mixed")


def _date_share(values: pd.Series) -> float:
    """The share of filled values that are dates (0 when under half the rows have a value)."""
    filled = values[values.notna() & (values.astype(str).str.strip() != "")]
    if len(filled) < 0.5 * len(values) or not len(filled):
        return 0.0
    return float(_parse_dates(filled).notna().mean())


def find_date_column(df: pd.DataFrame, hint: str | None = None) -> str | None:
    """The column holding each case's date: ``hint`` if given (it must exist and parse), else the first of
    ``DATE_NAMES`` (then any column named like a date) whose filled values are at least 90 % dates (a few cases
    without a date do not disqualify it: they count as the oldest)."""
    if hint is not None:
        if hint not in df.columns:
            raise MissingColumnError(f"date column {hint!r} not in the export; its columns are {list(df.columns)}")
        share = _date_share(df[hint])
        if share < MIN_PARSED:
            raise ConfigError(f"date column {hint!r}: only {share:.0%} of its values are dates; give another column "
                              "or DATE = None")
        return hint
    names = [c for c in DATE_NAMES if c in df.columns]
    names += [c for c in df.columns if c not in names and _DATE_LIKE.search(str(c))]
    for c in names:
        if _date_share(df[c]) >= MIN_PARSED:
            return str(c)
    return None


def newest_holdout(df: pd.DataFrame, share: float = 0.2, date_column: str | None = None,
                   seed: int = 42) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """``(learn, held_out, how)``: the newest ``share`` of the cases held out when ``date_column`` is given
    (cases without a date count as oldest; a day is never split: its cases all go to the newer side), else a
    seeded random ``share``.  Both keep the export's row order and columns; ``how`` says what was done."""
    if not 0 < share < 1:
        raise ConfigError(f"the held-out share must be between 0 and 1, got {share}")
    n_new = max(1, round(share * len(df)))
    if date_column is not None:
        dates = _parse_dates(df[date_column])
        # NaT is the smallest int64: a case without a date counts as the oldest
        order = np.argsort(dates.to_numpy(dtype="datetime64[ns]").astype(np.int64), kind="stable")
        cut_date = dates.iloc[order[len(df) - n_new]]
        newer = np.array(dates >= cut_date, dtype=bool) if pd.notna(cut_date) else np.zeros(len(df), dtype=bool)
        newer[order[len(df) - n_new:]] = True
        learn, new = df[~newer], df[newer]
        how = (f"held out the newest {len(new):,} cases ({len(new) / len(df):.0%}, {date_column} from "
               f"{dates[newer].min():%Y-%m-%d} to {dates[newer].max():%Y-%m-%d}); learning from the "
               f"{len(learn):,} before them")
    else:
        rng = np.random.default_rng(seed)
        newer = np.zeros(len(df), dtype=bool)
        newer[rng.choice(len(df), n_new, replace=False)] = True
        learn, new = df[~newer], df[newer]
        how = (f"no date column: held out a random {len(new) / len(df):.0%} ({len(new):,} cases, seed {seed}); "
               "set DATE to hold out the newest cases instead")
    return learn.reset_index(drop=True), new.reset_index(drop=True), how


def training_settings(store: ModelStore, config_file: str | Path | None = None,
                      default: TrainingConfig | None = None) -> tuple[TrainingConfig, str]:
    """The config to train with and a sentence saying where it came from: ``config_file``, else the current
    version's (from its manifest), else ``default`` (or ``TrainingConfig()``)."""
    if config_file is not None:
        return load_config(config_file), f"settings from the config file {config_file}"
    current = store.current()
    if current is not None:
        saved = store.manifest(current).get("config")
        if isinstance(saved, dict):
            saved = dict(saved)
            # the dictionaries travel with the version: use its copies where the original files are gone
            for key, name in (("user_dict", "user_dict.txt"), ("stop_words", "stop_words.txt")):
                copy = store.path / current / name
                if saved.get(key) and not Path(saved[key]).exists() and copy.exists():
                    saved[key] = str(copy)
            return validate_config(saved), f"settings of the current version {current}"
    config = default or TrainingConfig()
    return config, "default settings (the store has no current version and no CONFIG file was given)"


def unseen_cases(df: pd.DataFrame, text: str, models: Sequence[StoredModel]) -> tuple[pd.DataFrame, list[str]]:
    """The rows of ``df`` none of ``models`` learned from (by each version's row fingerprint), and a note per
    model that has no fingerprint to check (its overlap is then unknown; the report says so)."""
    keep = np.ones(len(df), dtype=bool)
    notes = []
    for stored in models:
        rows = load_row_filter(stored.model, stored.path, stored.manifest)
        if rows is None:
            notes.append(f"version {stored.version} has no row fingerprint: cannot tell which held-out cases it "
                         "learned from")
            continue
        seen = rows.contains(df[text].tolist())
        if seen.any():
            notes.append(f"left out {int(seen.sum()):,} held-out cases version {stored.version} learned from (its row "
                         "fingerprint has them; about 1 case in 10,000 matches it by chance)")
        keep &= ~seen
    return df[keep].reset_index(drop=True), notes


@dataclass
class Decision:
    """Whether to promote, and why, target by target."""

    promote: bool
    reasons: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return ("promote: " if self.promote else "keep the current version: ") + "; ".join(self.reasons)


def promotion_decision(report: Any) -> Decision:
    """Promote on the comparison's verdict: when at least one target is "better" and none is "worse", and no
    model had learned from the evaluated cases (then the verdict would be unfair)."""
    if not report.comparisons:
        return Decision(False, ["nothing was compared"])
    warnings = report.overlap_warnings()
    if warnings:
        return Decision(False, [f"the comparison is unfair: {w}" for w in warnings])
    verdicts = {name: c.paired["verdict"] for name, c in report.comparisons.items()}
    reasons = [f"{name}: {v}" for name, v in verdicts.items()]
    better = [n for n, v in verdicts.items() if v == "better"]
    worse = [n for n, v in verdicts.items() if v == "worse"]
    if worse:
        return Decision(False, reasons + [f"worse on {', '.join(worse)}"])
    if not better:
        return Decision(False, reasons + ["no target is significantly better: keep what works"])
    return Decision(True, reasons)
