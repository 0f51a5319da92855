"""Hold-out and k-fold splits, stratified by the first target and optionally kept whole by a group column.

Hotline exports repeat themselves: one caller phones about the same pothole five times, and each call is a case
with nearly the same text.  A random split puts some of those calls in training and the rest in the test part,
so the hold-out measures memory, not generalization.  With ``group`` (e.g. the caller or the work-order
thread), every group lands entirely on one side (``StratifiedGroupKFold``); rows without a group value are
groups of their own.

A group split needs many groups: with 5 groups over 3,813 rows the hold-out is one group, whose labels the other
four may never show, and the agency accuracy came out 0.0000.  Such a column (a handful of callers, a district,
a call type) is refused with the reason: each test part must hold ``MIN_GROUPS_PER_PART`` groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from classifier.errors import MissingColumnError, TrainingDataError

__all__ = ["group_values", "holdout_split", "kfold_splits", "MIN_GROUPS_PER_PART"]

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
