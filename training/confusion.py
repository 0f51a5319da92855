"""Confusion-matrix arithmetic for the report: counts, row shares, the most-confused pairs, and a readable
order (and grouping) of classes for a heatmap."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["OTHER_GROUP", "confusion_counts", "row_normalize", "confused_pairs", "heatmap_order"]

OTHER_GROUP = "（其余 {n} 类）"  # the heatmap's group of classes beyond the top N ("the other N classes")


def confusion_counts(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Counts[i, j] = cases with true label ``labels[i]`` predicted as ``labels[j]`` (rows: truth)."""
    index = {label: i for i, label in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)), dtype=np.int64)
    if len(y_true):
        rows = np.fromiter((index[t] for t in y_true), dtype=np.int64, count=len(y_true))
        cols = np.fromiter((index[p] for p in y_pred), dtype=np.int64, count=len(y_pred))
        np.add.at(m, (rows, cols), 1)
    return m


def row_normalize(counts: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (the share of a true class going to each prediction); empty rows stay 0."""
    sums = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, sums, out=np.zeros(counts.shape, dtype=np.float64), where=sums > 0)


def confused_pairs(counts: np.ndarray, labels: Sequence[str], limit: int | None = None) -> pd.DataFrame:
    """Off-diagonal cells, most cases first (ties: larger share of the true class, then label order).

    Columns: true, predicted, count, share_of_true (count / support of the true class), reverse (cases going
    the other way, predicted -> true), pair_total (both directions).
    """
    counts = np.asarray(counts)
    support = counts.sum(axis=1)
    rows = []
    for i, j in zip(*np.nonzero(counts)):
        if i == j:
            continue
        c = int(counts[i, j])
        rows.append({
            "true": str(labels[i]),
            "predicted": str(labels[j]),
            "count": c,
            "share_of_true": c / int(support[i]),
            "reverse": int(counts[j, i]),
            "pair_total": c + int(counts[j, i]),
            "_i": int(i),
            "_j": int(j),
        })
    columns = ["true", "predicted", "count", "share_of_true", "reverse", "pair_total"]
    if not rows:
        return pd.DataFrame(columns=columns)
    df = pd.DataFrame(rows).sort_values(["count", "share_of_true", "_i", "_j"], ascending=[False, False, True, True])
    df = df[columns].reset_index(drop=True)
    return df.head(limit) if limit is not None else df


def heatmap_order(counts: np.ndarray, labels: Sequence[str], top_n: int = 25) -> tuple[list[str], np.ndarray]:
    """Labels and counts for a readable heatmap: at most ``top_n`` classes, ordered by confusion.

    The classes most involved in errors (then the largest) are kept; they are chained so that classes
    confused with each other sit side by side.  Everything else is summed into one "other N classes" row and
    column, so the matrix still adds up to every case.
    """
    counts = np.asarray(counts, dtype=np.int64)
    n = len(labels)
    off = counts - np.diag(np.diag(counts))
    sym = off + off.T
    involvement = off.sum(axis=0) + off.sum(axis=1)
    size = counts.sum(axis=0) + counts.sum(axis=1)
    rank = sorted(range(n), key=lambda i: (-involvement[i], -size[i], str(labels[i])))
    keep = rank if n <= top_n else rank[: max(top_n - 1, 1)]
    # greedy chaining: start from the most confused class, append the class most confused with the last one
    order: list[int] = []
    remaining = list(keep)
    while remaining:
        if order:
            last = order[-1]
            best = max(remaining, key=lambda i: (sym[last, i], involvement[i], -keep.index(i)))
            if sym[last, best] == 0:
                best = remaining[0]
        else:
            best = remaining[0]
        order.append(best)
        remaining.remove(best)
    names = [str(labels[i]) for i in order]
    if len(order) == n:
        return names, counts[np.ix_(order, order)]
    rest = [i for i in range(n) if i not in set(order)]
    idx = order + [rest]
    m = np.zeros((len(order) + 1, len(order) + 1), dtype=np.int64)
    for a, ia in enumerate(idx):
        for b, ib in enumerate(idx):
            ra = ia if isinstance(ia, list) else [ia]
            rb = ib if isinstance(ib, list) else [ib]
            m[a, b] = counts[np.ix_(ra, rb)].sum()
    return names + [OTHER_GROUP.format(n=len(rest))], m
