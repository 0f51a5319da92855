"""A head's linear views fitted by stochastic gradient epochs, for corpora too large to fit exactly.

liblinear's exact SVM fit costs ~26 one-vs-rest passes of coordinate descent over every row, 40-80 times: at
100,000 texts of ~170 characters that is minutes per view, and it needs ~30 bytes per feature occurrence in
memory.  Past ``ModelConfig.exact_fit_rows`` a view is instead a linear SVM fitted by SGD (hinge loss,
``alpha = 1 / (C * rows)``: the same objective as ``LinearSVC(C)`` up to the squared hinge; on a 10,000-text
sample of the scaling corpus 0.832 against LinearSVC's 0.829, 7x faster, BENCHMARKS.md) with
``ModelConfig.sgd_epochs`` passes over the feature chunks (by default about a million rows seen in all:
``epochs_for``) (``classifier.corpus.ChunkStore``), each pass in a
new seeded order of chunks and of rows within them.  Memory is one chunk at a time.  The out-of-fold models
that calibrate a streamed head are fitted the same way on the calibration sample, so the weights fitted on
their scores describe the final views.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.linear_model import SGDClassifier

from .corpus import ChunkStore
from .phases import phase

__all__ = ["sgd_view", "fit_views_on_chunks", "FinalViews"]


SGD_ROWS_SEEN = 1_000_000
MIN_EPOCHS, MAX_EPOCHS = 2, 8


def epochs_for(rows: int, setting: int | None) -> int:
    """Passes over ``rows`` rows: the setting, or about ``SGD_ROWS_SEEN`` rows in all (sklearn's guide for SGD
    on sparse text), clipped to [MIN_EPOCHS, MAX_EPOCHS]."""
    if setting is not None:
        return setting
    return int(min(MAX_EPOCHS, max(MIN_EPOCHS, -(-SGD_ROWS_SEEN // max(rows, 1)))))


def sgd_view(C: float, rows: int, class_weight: Any, seed: int, n_jobs: int, epochs: int) -> SGDClassifier:
    """An unfitted SGD linear SVM equivalent to ``LinearSVC(C)`` on ``rows`` rows."""
    return SGDClassifier(loss="hinge", alpha=1.0 / (C * max(rows, 1)), max_iter=epochs, tol=None, shuffle=True,
                         class_weight=class_weight, random_state=seed, n_jobs=n_jobs)


def balanced_weights(classes: np.ndarray, counts: np.ndarray) -> dict[str, float]:
    """``class_weight="balanced"`` as a dict (``partial_fit`` cannot compute it from one chunk)."""
    total = counts.sum()
    return {str(c): float(total / (len(classes) * n)) for c, n in zip(classes, counts) if n > 0}


def fit_views_on_chunks(chunks: ChunkStore, class_index: np.ndarray, classes: np.ndarray,
                        views: Sequence[np.ndarray], C: float, class_weight: Any, epochs: int | None, seed: int,
                        n_jobs: int, allowed: np.ndarray | None = None,
                        weight: np.ndarray | None = None) -> list[SGDClassifier]:
    """One SGD linear SVM per view (an array of feature columns) over every labeled row of ``chunks``.

    ``class_index``: each corpus row's class (an index into ``classes``; -1: unlabeled, skipped).
    ``allowed``: a feature mask; other features are zeroed, so they keep a zero weight (a partly labeled
    target's ``min_df``, ``model.head_rows``).  ``weight``: each corpus row's case weight, or None."""
    labeled = class_index >= 0
    n_rows = int(labeled.sum())
    if class_weight == "balanced":
        class_weight = balanced_weights(classes, np.bincount(class_index[labeled], minlength=len(classes)))
    epochs = epochs_for(n_rows, epochs)
    models = [sgd_view(C, n_rows, class_weight, seed, n_jobs, epochs) for _ in views]
    rng = np.random.default_rng(seed)
    with phase("sgd epochs"):
        for _ in range(epochs):
            for i in rng.permutation(len(chunks)).tolist():
                X, start = chunks.read(i)
                y = class_index[start:start + X.shape[0]]
                rows = np.flatnonzero(y >= 0)
                if not len(rows):
                    continue
                X = X[rows] if len(rows) < X.shape[0] else X
                if allowed is not None:
                    X = X.copy()
                    X.data[~allowed[X.indices]] = 0.0
                labels = classes[y[rows]]
                w = None if weight is None else weight[start:start + len(y)][rows]
                for model, columns in zip(models, views):
                    model.partial_fit(X[:, columns].astype(np.float64), labels, classes=classes, sample_weight=w)
    return models


class FinalViews:
    """The final views of one streamed head: called with the views' column arrays (``TargetHead.fit``'s
    ``final``), it fits them over every labeled row of the chunks (``fit_views_on_chunks``)."""

    def __init__(self, chunks: ChunkStore, class_index: np.ndarray, classes: np.ndarray, C: float,
                 class_weight: Any, epochs: int | None, seed: int, n_jobs: int,
                 allowed: np.ndarray | None = None, weight: np.ndarray | None = None) -> None:
        self.chunks = chunks
        self.class_index = class_index
        self.classes = classes
        self.C = C
        self.class_weight = class_weight
        self.epochs = epochs
        self.seed = seed
        self.n_jobs = n_jobs
        self.allowed = allowed
        self.weight = weight

    def __call__(self, views: Sequence[np.ndarray]) -> list[SGDClassifier]:
        return fit_views_on_chunks(self.chunks, self.class_index, self.classes, views, self.C, self.class_weight,
                                   self.epochs, self.seed, self.n_jobs, self.allowed, self.weight)
