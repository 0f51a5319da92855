"""A head's linear views fitted by stochastic gradient epochs, for corpora too large to fit exactly.

liblinear's exact SVM fit costs ~26 one-vs-rest passes of coordinate descent over every row, 40-80 times: at
100,000 texts of ~170 characters that is minutes per view, and it needs ~30 bytes per feature occurrence in
memory.  Past ``ModelConfig.exact_fit_rows`` a view is instead a linear SVM fitted by SGD (hinge loss,
``alpha = 1 / (C * rows)``: ``LinearSVC(C)``'s objective up to the squared hinge) with ``ModelConfig.sgd_epochs``
passes over the feature chunks (``classifier.corpus.ChunkStore``; by default about ``SGD_ROWS_SEEN`` rows in
all, 2-4 passes: ``epochs_for``), each pass in a new seeded order of chunks and of rows within them.  Memory
is one chunk at a time.  A fused streamed head has one such view over every feature (``model._STREAMED_SVM_VIEWS``:
on the scaling corpus better than separate word and char views, table below) beside naive Bayes, and fits
their weights on a stratified tenth of its rows that its final view never learns from
(``TargetHead._fit_fused_held_out``: the weights describe the view the model keeps); a single-SVM streamed head
calibrates on out-of-fold models fitted the same way on the calibration sample (``FinalViews.fit_sample``).

**Feature scales.** SGD's steps are the same size for every feature, and a view's features are not alike: the
char view's ~320 values a text are dominated by a few hundred char 1-2-grams present in almost every text, a
badly conditioned problem on which plain SGD crawls (8 epochs at 100,000 texts: the char view alone 0.805 on
the real test set, where LinearSVC on a fifth of the rows reaches 0.837).  Each view's column is therefore
multiplied by its root mean square over the labeled rows to the power ``-SCALE_POWER`` (0.5), the whole view
rescaled so the mean row keeps a squared norm of 1 (``feature_scales``; the sums of squares come with the
head's statistics, ``HeadStatistics.feature_squares``, in the same pass as naive Bayes's); the fitted weights
are multiplied back, so the saved model reads unscaled features.  Its regularization then penalizes frequent
features more than rare ones, a diagonal preconditioning that the exact fits do not do.

Measured on the 100,000-text scaling corpus (one target, 26 classes, the real test set of 12,528 texts; 2
cores; "sgd CPU s" is the phase's process CPU time, shared machine, so loose):

| SGD views | word view alone | char view alone | fused head | sgd CPU s |
| --- | --- | --- | --- | --- |
| before: unscaled, 8 epochs, ``SGDClassifier(n_jobs=-1)``, scipy column slicing | 0.857 | 0.805 | 0.8582 | 80-150 |
| same, columns by lookup, one thread per view | 0.857 | 0.805 | 0.8582 | 104 (53 wall) |
| unscaled, averaged SGD, 8 epochs | 0.845 | 0.791 | 0.8512 | 199 |
| scaled, 8 epochs | 0.8605 | 0.855 | 0.8605 | 156 (loaded machine) |
| scaled, 3 epochs | 0.8617 | 0.8565 | 0.8620 | 55 (loaded machine) |
| **scaled, 2 epochs** (400,000 texts' default) | 0.8602 | 0.8565 | 0.8602 | 24 (12 wall) |

With the vocabulary counted exactly (``classifier.codes``), the fusion's weights fitted on held-out rows and
the default epochs, the fused head on the same corpus: separate word and char views 0.8622 at 100,000 texts
(weights: word 4.3, char 0, naive Bayes 0) and 0.8629 at 400,000; one view over every feature 0.8732 and
(see BENCHMARKS.md) at 400,000, in less time (one model to fit).

On 20,000 texts the scaled SGD word view matches LinearSVC (0.845 vs 0.843), the char view comes within 1.3
points (0.824 vs 0.837) at 1/70 of its CPU.  On those 20,000 texts averaged SGD (``average=True``, also with
constant or inverse-scaling rates), log loss and a constant bias column (sparse intercepts learn at 1/100 of
the rate) did not help the unscaled char view; modified Huber on scaled features traded a point of the word
view for one of the char view.
Each 5,000-row chunk's view is taken by one array lookup per value (``ViewColumns``) instead of scipy's
column indexing (0.2 s a chunk for the char view, as much as its SGD step), and the views learn side by side
in threads (SGD's epochs release the GIL; sklearn's own ``n_jobs`` over classes cost twice the CPU for no
wall time at this chunk size).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import SGDClassifier

from .corpus import ChunkStore
from .phases import phase

__all__ = ["sgd_view", "fit_views_on_chunks", "FinalViews", "ViewColumns"]


# with scaled features 2-3 passes do what 8 did (table above): 4 at 75,000 rows, 3 at 100,000, 2 from 150,000
SGD_ROWS_SEEN = 300_000
MIN_EPOCHS, MAX_EPOCHS = 2, 4
SCALE_POWER = 0.5


def feature_scales(squares: np.ndarray | None, rows: int, columns: np.ndarray,
                   allowed: np.ndarray | None = None) -> np.ndarray:
    """Each of a view's columns' factor: its root mean square over the labeled rows to the power
    ``-SCALE_POWER``, all scaled so the mean row's squared norm over the view is 1; 0 for a column with no value
    there (or not ``allowed``)."""
    columns = np.asarray(columns, dtype=np.int64)
    if squares is None:
        return np.ones(len(columns))
    sq = np.asarray(squares, dtype=np.float64)[columns].copy()
    if allowed is not None:
        sq[~np.asarray(allowed, dtype=bool)[columns]] = 0.0
    seen = sq > 0
    d = np.zeros(len(columns))
    d[seen] = (sq[seen] / max(rows, 1)) ** (-SCALE_POWER / 2)
    norm = float(np.sum(d * d * sq)) / max(rows, 1)
    return d / np.sqrt(norm) if norm > 0 else d


def epochs_for(rows: int, setting: int | None) -> int:
    """Passes over ``rows`` rows: the setting, or about ``SGD_ROWS_SEEN`` rows in all, clipped to
    [MIN_EPOCHS, MAX_EPOCHS]."""
    if setting is not None:
        return setting
    return int(min(MAX_EPOCHS, max(MIN_EPOCHS, -(-SGD_ROWS_SEEN // max(rows, 1)))))


def sgd_view(C: float, rows: int, class_weight: Any, seed: int, n_jobs: int, epochs: int) -> SGDClassifier:
    """An unfitted SGD linear SVM equivalent to ``LinearSVC(C)`` on ``rows`` rows (``n_jobs``: threads over
    classes; the callers give 1 and run views side by side instead)."""
    return SGDClassifier(loss="hinge", alpha=1.0 / (C * max(rows, 1)), max_iter=epochs, tol=None, shuffle=True,
                         class_weight=class_weight, random_state=seed, n_jobs=n_jobs)


def balanced_weights(classes: np.ndarray, counts: np.ndarray) -> dict[str, float]:
    """``class_weight="balanced"`` as a dict (``partial_fit`` cannot compute it from one chunk)."""
    total = counts.sum()
    return {str(c): float(total / (len(classes) * n)) for c, n in zip(classes, counts) if n > 0}


class ViewColumns:
    """A view's columns taken from a chunk by one lookup per stored value (scipy's column indexing sorts and
    copies: ~0.2 s per 5,000-row chunk of the char view, as much as the view's SGD step)."""

    def __init__(self, columns: np.ndarray, width: int, allowed: np.ndarray | None = None,
                 scale: np.ndarray | None = None) -> None:
        columns = np.asarray(columns, dtype=np.int64)
        self.width = len(columns)
        self.scale = scale
        self.position = np.full(width, -1, dtype=np.int32)
        self.position[columns] = np.arange(len(columns), dtype=np.int32)
        if allowed is not None:  # a feature the target does not admit is left out: its weight stays zero
            self.position[~np.asarray(allowed, dtype=bool)] = -1

    def take(self, X: sp.csr_matrix) -> sp.csr_matrix:
        """``X[:, columns]`` as float64 CSR (the type SGD copies from)."""
        new = self.position[X.indices]
        keep = new >= 0
        ends = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
        new = new[keep]
        data = X.data[keep].astype(np.float64)
        if self.scale is not None:
            data *= self.scale[new]
        return sp.csr_matrix((data, new, ends[X.indptr]),
                             shape=(X.shape[0], self.width))


_Step = tuple[SGDClassifier, "ViewColumns", sp.csr_matrix, np.ndarray, np.ndarray, "np.ndarray | None"]


def _partial_fit(step: _Step) -> None:
    """One view's SGD step over one chunk's rows."""
    model, taker, X, labels, classes, weight = step
    model.partial_fit(taker.take(X), labels, classes=classes, sample_weight=weight)


def fit_views_on_chunks(chunks: ChunkStore, class_index: np.ndarray, classes: np.ndarray,
                        views: Sequence[np.ndarray], C: float, class_weight: Any, epochs: int | None, seed: int,
                        n_jobs: int, allowed: np.ndarray | None = None,
                        weight: np.ndarray | None = None,
                        squares: np.ndarray | None = None) -> list[SGDClassifier]:
    """One SGD linear SVM per view (an array of feature columns) over every labeled row of ``chunks``.

    ``class_index``: each corpus row's class (an index into ``classes``; -1: unlabeled, skipped).
    ``allowed``: a feature mask; other features are left out, so they keep a zero weight (a partly labeled
    target's ``min_df``, ``model.head_rows``).  ``weight``: each corpus row's case weight, or None.
    ``n_jobs``: threads; the views learn side by side (SGD's epochs release the GIL)."""
    labeled = class_index >= 0
    n_rows = int(labeled.sum())
    if class_weight == "balanced":
        class_weight = balanced_weights(classes, np.bincount(class_index[labeled], minlength=len(classes)))
    epochs = epochs_for(n_rows, epochs)
    models = [sgd_view(C, n_rows, class_weight, seed, 1, epochs) for _ in views]
    takers: list[ViewColumns] | None = None
    rng = np.random.default_rng(seed)
    workers = min(len(views), max(1, n_jobs))
    pool = ThreadPoolExecutor(workers) if workers > 1 else None
    try:
        with phase("sgd epochs"):
            for _ in range(epochs):
                for i in rng.permutation(len(chunks)).tolist():
                    X, start = chunks.read(i)
                    if takers is None:
                        takers = [ViewColumns(columns, X.shape[1], allowed,
                                              feature_scales(squares, n_rows, columns, allowed))
                                  for columns in views]
                    y = class_index[start:start + X.shape[0]]
                    rows = np.flatnonzero(y >= 0)
                    if not len(rows):
                        continue
                    X = X[rows] if len(rows) < X.shape[0] else X
                    labels = classes[y[rows]]
                    w = None if weight is None else weight[start:start + len(y)][rows]

                    jobs = [(model, taker, X, labels, classes, w) for model, taker in zip(models, takers)]
                    if pool is not None:
                        list(pool.map(_partial_fit, jobs))
                    else:
                        for job in jobs:
                            _partial_fit(job)
    finally:
        if pool is not None:
            pool.shutdown()
    for model, taker in zip(models, takers or []):
        assert taker.scale is not None
        model.coef_ *= taker.scale  # weights of the unscaled features (in place: no second classes x features copy)
    return models


class FinalViews:
    """The final views of one streamed head: called with the views' column arrays (``TargetHead.fit``'s
    ``final``), it fits them over every labeled row of the chunks (``fit_views_on_chunks``)."""

    def __init__(self, chunks: ChunkStore, class_index: np.ndarray, classes: np.ndarray, C: float,
                 class_weight: Any, epochs: int | None, seed: int, n_jobs: int,
                 allowed: np.ndarray | None = None, weight: np.ndarray | None = None,
                 squares: np.ndarray | None = None) -> None:
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
        self.squares = squares
        self.rows = int((class_index >= 0).sum())
        # the corpus rows of the calibration sample the head is given (set by ComplaintClassifier._fit_head)
        self.sample_rows: np.ndarray | None = None

    def fit_sample(self, X: sp.csr_matrix, labels: np.ndarray, weight: np.ndarray | None,
                   columns: np.ndarray) -> SGDClassifier:
        """A view fitted on rows held in memory (an out-of-fold model on the calibration sample), the way the
        final views are: ``X`` holds the view's ``columns``, scaled as the final view's are."""
        scale = feature_scales(self.squares, self.rows, columns, self.allowed)
        model = sgd_view(self.C, X.shape[0], self.class_weight, self.seed, 1, epochs_for(X.shape[0], self.epochs))
        model.fit(sp.csr_matrix(X, dtype=np.float64) @ sp.diags(scale, format="csr"), labels, sample_weight=weight)
        model.coef_ *= scale
        return model

    def __call__(self, views: Sequence[np.ndarray], held_out: np.ndarray | None = None) -> list[SGDClassifier]:
        """The final views; ``held_out``: corpus rows they must not learn from (the rows their fusion weights and
        temperature are then fitted on, ``TargetHead``)."""
        class_index = self.class_index
        if held_out is not None and len(held_out):
            class_index = class_index.copy()
            class_index[held_out] = -1
        return fit_views_on_chunks(self.chunks, class_index, self.classes, views, self.C, self.class_weight,
                                   self.epochs, self.seed, self.n_jobs, self.allowed, self.weight, self.squares)
