"""Which training rows each head's fits see when a corpus is larger than the fitting settings allow.

A target with at most ``ModelConfig.exact_fit_rows`` labeled rows is fitted exactly as on small data: every
row's features in memory, liblinear SVMs.  A larger one is *streamed* (``classifier.partial_fit``): its SVM
views learn by stochastic gradient epochs over the feature chunks (kept on disk), naive Bayes from per-class
sums over every row (``HeadStatistics``), a partly labeled target's ``min_df`` from its own document
frequencies, and out-of-fold calibration and fusion from a sample of ``ModelConfig.calibration_rows`` rows
held in memory.  The matrix of every row is never held: memory is bounded by the settings, not the corpus.

The sample rule (calibration; the same for an exact head's calibration folds over ``calibration_rows``):
every class keeps the same fraction of its rows, rounded up, and at least ``MIN_ROWS_PER_CLASS`` (or all it
has); the rows are drawn at random with the training seed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .corpus import ChunkStore

__all__ = ["MIN_ROWS_PER_CLASS", "stratified_sample", "HeadStatistics", "FitRows", "collect_rows", "head_rows"]

MIN_ROWS_PER_CLASS = 10


def stratified_sample(labels: np.ndarray, limit: int | None, seed: int) -> np.ndarray | None:
    """Sorted indices of the rows to keep (the module's rule), or None when every row is kept."""
    n = len(labels)
    if limit is None or n <= limit:
        return None
    fraction = limit / n
    rng = np.random.default_rng(seed)
    classes, inverse = np.unique(labels, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(inverse, minlength=len(classes)))])
    picked = []
    for c in range(len(classes)):
        rows = order[bounds[c]:bounds[c + 1]]
        k = min(len(rows), max(math.ceil(fraction * len(rows)), MIN_ROWS_PER_CLASS))
        picked.append(rows if k == len(rows) else rng.choice(rows, k, replace=False))
    return np.sort(np.concatenate(picked))


@dataclass
class HeadStatistics:
    """What a head learns from every labeled row of its target, summed chunk by chunk.

    ``feature_count``: per class, the sum of each feature's weight over the class's rows (naive Bayes's
    sufficient statistics); ``class_count``: rows per class; ``document_frequency``: in how many labeled rows
    each feature occurs (a partly labeled target's ``min_df``); ``feature_squares``: the sum of each feature's
    squared value over the labeled rows, unweighted (the SGD views' feature scales, ``classifier.partial_fit``)."""

    classes: np.ndarray
    feature_count: np.ndarray
    class_count: np.ndarray
    document_frequency: np.ndarray
    class_rows: np.ndarray  # rows per class, unweighted (the fusion rule's class sizes)
    feature_squares: np.ndarray | None = None

    @classmethod
    def empty(cls, classes: np.ndarray, n_features: int) -> HeadStatistics:
        return cls(classes, np.zeros((len(classes), n_features), dtype=np.float64),
                   np.zeros(len(classes), dtype=np.float64), np.zeros(n_features, dtype=np.int64),
                   np.zeros(len(classes), dtype=np.int64), np.zeros(n_features, dtype=np.float64))

    def add(self, X: sp.csr_matrix, class_index: np.ndarray, weight: np.ndarray | None = None) -> None:
        """Add the rows of ``X`` labeled ``class_index`` (-1: no label for this target), each counting
        ``weight`` (None: 1) in the sums, as ``MultinomialNB(sample_weight=...)`` counts them."""
        labeled = class_index >= 0
        if not labeled.any():
            return
        rows = X[np.flatnonzero(labeled)] if not labeled.all() else X
        y = class_index[labeled]
        w = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=np.float64)[labeled]
        onehot = sp.csr_matrix((w, (y, np.arange(len(y)))), shape=(len(self.classes), len(y)))
        self.feature_count += np.asarray((onehot @ rows).todense())
        self.class_count += np.bincount(y, weights=w, minlength=len(self.classes))
        self.class_rows += np.bincount(y, minlength=len(self.classes))
        self.document_frequency += np.bincount(rows.indices, minlength=rows.shape[1])
        if self.feature_squares is not None:
            data = rows.data.astype(np.float64)
            self.feature_squares += np.bincount(rows.indices, weights=data * data, minlength=rows.shape[1])

    def without(self, other: HeadStatistics) -> HeadStatistics:
        """These sums less ``other``'s (rows that were added here too: a held-out sample's)."""
        squares = (None if self.feature_squares is None or other.feature_squares is None
                   else np.maximum(self.feature_squares - other.feature_squares, 0.0))
        return HeadStatistics(self.classes, np.maximum(self.feature_count - other.feature_count, 0.0),
                              self.class_count - other.class_count,
                              self.document_frequency - other.document_frequency,
                              self.class_rows - other.class_rows, squares)

    def merge(self, other: HeadStatistics) -> None:
        """Add another part's sums (a Dask partition's)."""
        self.feature_count += other.feature_count
        self.class_count += other.class_count
        self.class_rows += other.class_rows
        self.document_frequency += other.document_frequency
        if self.feature_squares is not None and other.feature_squares is not None:
            self.feature_squares += other.feature_squares


@dataclass
class FitRows:
    """What the heads fit on: ``X``, the features of the kept rows (``rows``: their indices in the corpus, None
    for every row).  A target with more labeled rows than the exact limit is *streamed*: ``X`` holds only its
    calibration sample (``calibration[name]``: positions in ``X``), its SVM views learn from ``chunks`` (every
    row's features, ``class_index[name]`` the class of each corpus row, -1 unlabeled) and its naive Bayes from
    ``statistics[name]``."""

    X: sp.csr_matrix
    rows: np.ndarray | None
    statistics: dict[str, HeadStatistics] = field(default_factory=dict)
    calibration: dict[str, np.ndarray] = field(default_factory=dict)
    class_index: dict[str, np.ndarray] = field(default_factory=dict)
    chunks: ChunkStore | None = None
    # a streamed target's case weights over every corpus row, scaled to a mean of 1 over its labeled rows
    weights: dict[str, np.ndarray] = field(default_factory=dict)

    def close(self) -> None:
        if self.chunks is not None:
            self.chunks.close()


def collect_rows(chunks: Iterable[tuple[int, sp.csr_matrix]], n_rows: int, targets: Mapping[str, np.ndarray],
                 exact_rows: int | None, calibration_rows: int | None, seed: int,
                 sample_weight: np.ndarray | None = None) -> FitRows:
    """Go through the weighted feature chunks once: keep the rows the heads fit on in memory, sum each
    streamed target's statistics and keep every chunk (in a ``ChunkStore``) when some target is streamed.
    ``targets``: name -> a label per row (None: unlabeled); ``sample_weight``: one per row, or None."""
    keep = np.zeros(n_rows, dtype=bool)
    sampled: dict[str, np.ndarray] = {}
    class_index: dict[str, np.ndarray] = {}
    classes: dict[str, np.ndarray] = {}
    weights: dict[str, np.ndarray] = {}
    for name, labels in targets.items():
        labels = np.asarray(labels, dtype=object)
        labeled = np.flatnonzero(np.array([v is not None for v in labels], dtype=bool))
        if exact_rows is None or len(labeled) <= exact_rows:
            keep[labeled] = True
            continue
        y = labels[labeled].astype(str)
        sample = stratified_sample(y, calibration_rows, seed)
        sampled[name] = labeled if sample is None else labeled[sample]
        keep[sampled[name]] = True
        classes[name], inverse = np.unique(y, return_inverse=True)
        idx = np.full(n_rows, -1, dtype=np.int64)
        idx[labeled] = inverse
        class_index[name] = idx
        if sample_weight is not None:
            w = np.zeros(n_rows)
            w[labeled] = sample_weight[labeled] * (len(labeled) / sample_weight[labeled].sum())
            weights[name] = w
    every = bool(keep.all())
    store = ChunkStore() if class_index else None
    stats: dict[str, HeadStatistics] = {}
    parts = []
    try:
        for start, X in chunks:
            stop = start + X.shape[0]
            for name, idx in class_index.items():
                if name not in stats:
                    stats[name] = HeadStatistics.empty(classes[name], X.shape[1])
                target_weight = weights.get(name)
                stats[name].add(X, idx[start:stop],
                                None if target_weight is None else target_weight[start:stop])
            if store is not None:
                store.append(X, start)
            parts.append(X if every else X[np.flatnonzero(keep[start:stop])])
    except BaseException:
        if store is not None:
            store.close()
        raise
    X_all = sp.vstack(parts, format="csr") if len(parts) != 1 else parts[0]
    rows = None if every else np.flatnonzero(keep)
    calibration = {name: (r if rows is None else np.searchsorted(rows, r)) for name, r in sampled.items()}
    return FitRows(X_all, rows, stats, calibration, class_index, store, weights)


def head_rows(X: sp.csr_matrix, has: np.ndarray, min_df: int,
              document_frequency: np.ndarray | None = None) -> sp.csr_matrix:
    """The rows of ``X`` a head labeled on ``has`` (a boolean mask) learns from.

    A target labeled on part of the texts (an agency: only on the forwarded cases) sees only the features in
    at least ``min_df`` of *its* texts, as if the vectorizer had been fitted on them alone: the others were
    admitted because of texts it has no label for, and each occurs in one of its cases, which with a few cases
    per class it fits like a name (Qingdao agencies trained beside categories: 0.8256 without, 0.8367 with
    this, 0.8404 alone; BENCHMARKS.md, joint targets).  A zeroed column gets a zero weight (the SVM never sees
    it; naive Bayes gives it one log-probability for every class, which centring removes), so the head needs
    no mask at prediction time.  ``training.tune`` scores heads through this too, so it measures what
    ``train`` fits.  ``document_frequency``: the target's own, counted over more rows than ``X`` holds (a
    sampled corpus, ``classifier.sampling``); None: counted on ``X[has]``."""
    has = np.asarray(has, dtype=bool)
    if has.all() and document_frequency is None:
        return X
    rows = X[np.flatnonzero(has)].tocsr() if not has.all() else X.copy()
    df = np.bincount(rows.indices, minlength=rows.shape[1]) if document_frequency is None else document_frequency
    if document_frequency is not None and (df >= min_df).all():
        return rows
    rows.data[df[rows.indices] < min_df] = 0.0
    rows.eliminate_zeros()
    return rows
