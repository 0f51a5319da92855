"""Hold-out and k-fold splits, stratified by the first target and optionally kept whole by a group column, or
ordered in time.

Hotline exports repeat themselves: one caller phones about the same pothole five times, and each call is a case
with nearly the same text.  A random split puts some of those calls in training and the rest in the test part,
so the hold-out measures memory, not generalization.  With ``group`` (e.g. the caller or the work-order
thread), every group lands entirely on one side (``StratifiedGroupKFold``); rows without a group value are
groups of their own.

A group split needs many groups: with 5 groups over 3,813 rows the hold-out is one group, whose labels the other
four may never show, and the agency accuracy came out 0.0000.  Such a column (a handful of callers, a district,
a call type) is refused with the reason: each test part must hold ``MIN_GROUPS_PER_PART`` groups.

A model is always used on cases newer than the ones it learned from, and hotline topics move with the seasons
and agencies come and go: a random split hides that.  With ``time`` (the day a call was taken), the hold-out is
the latest cases (``time_holdout_split``) and the folds are forward-chaining (``time_folds``): the rows are cut
into k + 1 consecutive periods and fold i trains on periods 0..i-1 and is scored on period i, so no fold learns
from the future.  Cases of one instant stay on one side.  With a group column as well, training rows of a group
that also occurs in the scored part are left out ("purged"), so a caller's earlier calls cannot vouch for the
later ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from classifier.errors import MissingColumnError, TimeColumnError, TrainingDataError

__all__ = ["group_values", "holdout_split", "kfold_splits", "MIN_GROUPS_PER_PART", "time_values",
           "time_holdout_split", "time_folds", "parse_times"]

Split = tuple[np.ndarray, np.ndarray]
# groups in each test part (the hold-out, each fold) below which a group split measures those few groups, not
# the model: refused rather than warned, so no model is saved with metrics that mean nothing
MIN_GROUPS_PER_PART = 5


def _check_enough_groups(codes: np.ndarray, parts: int, split: str) -> None:
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    needed = MIN_GROUPS_PER_PART * parts
    if n_groups >= needed:
        return
    largest = int(np.bincount(codes).max()) if len(codes) else 0
    raise TrainingDataError(
        f"the group column has {n_groups} groups over {len(codes):,} rows (the largest holds {largest:,}): "
        f"{split} keeps each group whole on one side, so each test part would hold about {n_groups / parts:.1f} "
        f"groups, and its metrics would measure those few groups, whose labels the others may never show, "
        f"rather than the model. A group split needs at least {MIN_GROUPS_PER_PART} groups per test part "
        f"({needed} here). --group is for callers or work-order threads (many small groups): name a finer column, "
        "or leave --group out"
    )


def group_values(data: pd.DataFrame, column: str, clean: pd.DataFrame) -> np.ndarray:
    """The group of each row of ``clean`` (the validated rows of ``data``); a missing value is its own group."""
    if column not in data.columns:
        raise MissingColumnError(f"group column {column!r} not in the data; its columns are {list(data.columns)}")
    rows = np.asarray(clean.attrs["row_numbers"], dtype=np.int64) - 2  # spreadsheet row numbers -> positions
    values = data[column].iloc[rows].tolist()
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        missing = v is None or (isinstance(v, float) and np.isnan(v)) or not str(v).strip()
        out[i] = f"\x00row {i}" if missing else str(v).strip()
    return out


def holdout_split(strat: Sequence[Any], test_size: float, seed: int, groups: np.ndarray | None = None,
                  warnings: list[str] | None = None) -> Split:
    """Train and test positions: stratified by ``strat``; with ``groups``, no group on both sides.

    A stratified split that cannot be made (a class too small) falls back to an unstratified one and says so
    in ``warnings``.
    """
    idx = np.arange(len(strat))
    note = warnings.append if warnings is not None else (lambda _m: None)
    if groups is None:
        try:
            train, test = train_test_split(idx, test_size=test_size, random_state=seed, stratify=strat)
        except ValueError as exc:
            note(f"hold-out split is not stratified ({exc})")
            train, test = train_test_split(idx, test_size=test_size, random_state=seed)
        return np.asarray(train), np.asarray(test)
    n_groups = len(set(groups.tolist()))
    if n_groups < 2:
        raise TrainingDataError(f"the group column has {n_groups} group(s); a hold-out needs at least 2")
    # the first of round(1 / test_size) group folds is the test part (0.2 -> 5 folds -> ~20 % of the rows)
    k = min(n_groups, max(2, round(1.0 / test_size)))
    codes = pd.factorize(pd.Series(groups, dtype=object))[0]
    _check_enough_groups(codes, max(2, round(1.0 / test_size)), "a group hold-out")
    try:
        train, test = next(StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(idx, strat, codes))
    except ValueError as exc:
        note(f"group hold-out split is not stratified ({exc})")
        from sklearn.model_selection import GroupShuffleSplit

        train, test = next(GroupShuffleSplit(1, test_size=test_size, random_state=seed).split(idx, groups=codes))
    return np.asarray(train), np.asarray(test)


def kfold_splits(strat: Sequence[Any], k: int, seed: int, groups: np.ndarray | None = None) -> list[Split]:
    """``k`` stratified folds; with ``groups``, each group entirely inside one fold."""
    idx = np.zeros(len(strat))
    codes = None if groups is None else pd.factorize(pd.Series(groups, dtype=object))[0]
    if codes is not None and codes.max() + 1 >= k:
        _check_enough_groups(codes, k, f"{k}-fold group cross-validation")
    try:
        if codes is None:
            return list(StratifiedKFold(k, shuffle=True, random_state=seed).split(idx, strat))
        if codes.max() + 1 < k:
            raise ValueError(f"{codes.max() + 1} groups cannot fill {k} folds")
        return list(StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(idx, strat, codes))
    except ValueError as exc:
        raise TrainingDataError(f"cannot make {k} stratified folds: {exc}") from None


def parse_times(values: Sequence[Any] | pd.Series) -> pd.Series:
    """Datetimes (UTC; a time without a zone is taken as UTC) of dates or date-times in any common spelling
    (``2018-01-31``, ``2018/1/31 08:30``, ISO 8601 with a zone); NaT where a value is missing or unreadable."""
    series = pd.Series(list(values), dtype=object)
    blank = series.map(lambda v: v is None or (isinstance(v, float) and np.isnan(v)) or not str(v).strip())
    parsed = pd.to_datetime(series.where(~blank, None), errors="coerce", utc=True, format="mixed")
    return parsed


def time_values(data: pd.DataFrame, column: str, clean: pd.DataFrame) -> np.ndarray:
    """The time of each row of ``clean`` (the validated rows of ``data``) from ``column``, as datetime64 (UTC).

    Every row needs one: a time-ordered split cannot place a case without a time, and guessing would put it on
    the wrong side.  Raises ``TimeColumnError`` naming the rows (spreadsheet numbers) without a readable time."""
    if column not in data.columns:
        raise MissingColumnError(f"time column {column!r} not in the data; its columns are {list(data.columns)}")
    row_numbers = np.asarray(clean.attrs["row_numbers"], dtype=np.int64)
    raw = data[column].iloc[row_numbers - 2]
    times = parse_times(raw)
    bad = np.flatnonzero(times.isna().to_numpy())
    if len(bad):
        shown = ", ".join(str(int(row_numbers[i])) for i in bad[:10]) + (", ..." if len(bad) > 10 else "")
        example = raw.iloc[bad[0]]
        raise TimeColumnError(
            f"time column {column!r}: {len(bad)} of {len(times)} rows have no readable date (rows {shown}; e.g. "
            f"{'a blank' if pd.isna(example) or not str(example).strip() else repr(str(example)[:40])}). Expected "
            "dates such as 2018-01-31 or 2018-01-31 08:30; fill them in or remove those rows")
    return times.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")


def _purge(train: np.ndarray, test: np.ndarray, groups: np.ndarray | None) -> tuple[np.ndarray, int]:
    """``train`` without the rows whose group also occurs in ``test``; and how many were left out."""
    if groups is None:
        return train, 0
    tested = set(groups[test].tolist())
    keep = np.array([g not in tested for g in groups[train]], dtype=bool)
    return train[keep], int((~keep).sum())


def time_holdout_split(times: np.ndarray, test_size: float, groups: np.ndarray | None = None,
                       warnings: list[str] | None = None) -> Split:
    """Train and test positions: the test part is the latest ``test_size`` of the rows (every row at the cut's
    instant with it, so it may be a little larger), the training part everything earlier; with ``groups``,
    training rows of a group in the test part are purged (counted in ``warnings``)."""
    times = np.asarray(times, dtype="datetime64[ns]")
    n = len(times)
    if not 0 < test_size < 1:
        raise TrainingDataError(f"test_size must be between 0 and 1 for a time hold-out, got {test_size}")
    ordered = np.sort(times)
    n_test = max(1, int(np.ceil(test_size * n)))
    cut = ordered[n - n_test]
    test = np.flatnonzero(times >= cut)
    train = np.flatnonzero(times < cut)
    if not len(train):
        raise TrainingDataError(
            f"cannot hold out the latest {test_size:.0%} of the cases by time: the latest {len(test)} rows share the "
            f"earliest time ({np.datetime_as_string(cut, unit='s')}), so nothing is older to train on. Check the "
            "time column, or drop --time")
    train, purged = _purge(train, test, groups)
    if purged and warnings is not None:
        warnings.append(f"time hold-out: {purged} training rows left out because their group also has calls in the "
                        "held-out period")
    if not len(train):
        raise TrainingDataError("every group of the older cases also occurs among the latest ones: with the group "
                                "column nothing is left to train on; drop --group or --time")
    return train, test


def time_folds(times: np.ndarray, k: int, groups: np.ndarray | None = None) -> list[Split]:
    """``k`` forward-chaining folds: the rows cut into k + 1 consecutive periods of about equal size (an
    instant's rows in one period); fold i trains on periods 0..i-1 and is scored on period i (i = 1..k)."""
    times = np.asarray(times, dtype="datetime64[ns]")
    n = len(times)
    ordered = np.sort(times)
    cuts = np.unique(ordered[[round(j * n / (k + 1)) for j in range(1, k + 1)]])
    period = np.searchsorted(cuts, times, side="right")  # 0..k
    sizes = np.bincount(period, minlength=k + 1)
    if len(cuts) < k or (sizes == 0).any():
        raise TrainingDataError(
            f"cannot make {k} time-ordered folds: the {n} rows have {len(np.unique(times))} distinct times, too few "
            f"for {k + 1} periods; lower the number of folds")
    out = []
    for i in range(1, k + 1):
        test = np.flatnonzero(period == i)
        train, _ = _purge(np.flatnonzero(period < i), test, groups)
        if not len(train):
            raise TrainingDataError(f"time-ordered fold {i}: every earlier group also occurs in the period it is "
                                    "scored on; drop --group or --time")
        out.append((train, test))
    return out
