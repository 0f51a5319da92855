"""How a head's linear views become calibrated probabilities: one-vs-rest scores as a class matrix, softmax,
case weights, the view weights and the temperature fitted on out-of-fold scores, and naive Bayes from per-class
sums (``classifier.model.TargetHead`` uses them; ``training.disputed`` and routing's county calibration too).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize, minimize_scalar

from .errors import TrainingDataError
from .sampling import HeadStatistics

__all__ = ["NB_ALPHA", "naive_bayes_view", "combine_views"]

# naive Bayes's smoothing in a fused head
NB_ALPHA = 0.05


def _as_multiclass(svm: Any, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    coef = svm.coef_
    intercept = svm.intercept_
    if n_classes == 2:  # sklearn gives one column for binary problems: scores s for class 1, -s for class 0
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    return np.ascontiguousarray(coef.T, dtype=np.float32), intercept.astype(np.float32)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _sample_weight(sample_weight: Any, n: int) -> np.ndarray | None:
    """Case weights as float64 scaled to a mean of 1 (None stays None: every case counts once)."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n,):
        raise TrainingDataError(f"sample_weight has shape {w.shape} for {n} cases; give one weight per case")
    if not np.all(np.isfinite(w)) or (w < 0).any() or not (w > 0).any():
        raise TrainingDataError("sample weights must be finite, non-negative and not all zero")
    return w * (n / w.sum())


def _take(weight: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    return None if weight is None else weight[rows]


def _weighted_mean(values: np.ndarray, weight: np.ndarray | None) -> float:
    return float(values.mean() if weight is None else np.average(values, weights=weight))


def _fit_view_weights(scores: np.ndarray, truth: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """One non-negative weight per view (scores: rows x views x classes) minimizing the log-loss of the
    softmax of the weighted sum; started from the views' equal sum.  Non-negative: the views overlap (word and
    char n-grams see the same text), and a negative weight would only be that overlap being undone, turning
    the explanations' "terms that pushed toward the label" upside down."""
    rows = np.arange(len(truth))
    share = (np.full(len(truth), 1.0 / len(truth)) if weight is None else weight / weight.sum())

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = np.einsum("nvk,v->nk", scores, w)
        z -= z.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(z).sum(axis=1))
        p = np.exp(z - log_norm[:, None])
        p[rows, truth] -= 1.0
        grad = np.einsum("nvk,nk->v", scores, p * share[:, None])
        return float(((log_norm - z[rows, truth]) * share).sum()), grad

    res = minimize(loss, np.ones(scores.shape[1]), jac=True, method="L-BFGS-B",
                   bounds=[(0.0, None)] * scores.shape[1])
    return np.asarray(res.x, dtype=np.float64)


def _naive_bayes(statistics: HeadStatistics, classes: np.ndarray,
                 columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(feature log-probabilities as features x classes, class log-priors) from per-class sums over every row:
    ``MultinomialNB(alpha=NB_ALPHA)``'s arithmetic."""
    order = np.searchsorted(statistics.classes, classes)
    counts = statistics.feature_count[order][:, columns] + NB_ALPHA
    log_prob = np.log(counts) - np.log(counts.sum(axis=1, keepdims=True))
    class_count = statistics.class_count[order]
    return log_prob.T, np.log(class_count) - np.log(class_count.sum())


# features a block of ``naive_bayes_view``'s and ``combine_views``' work: (classes x block) float64 temporaries
# instead of (classes x features) ones (at 1,000,000 features and 26 classes each of those is 208 MB)
FEATURE_BLOCK = 1 << 16


def naive_bayes_view(statistics: HeadStatistics, classes: np.ndarray, columns: np.ndarray, width: int,
                     held_out: tuple[sp.csr_matrix, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Naive Bayes over ``columns`` as a linear view (coef as width x classes float32, log-priors): the same
    arithmetic as ``_nb_view(*_naive_bayes(statistics, classes, columns), columns, width)``, a block of features
    at a time, so its memory is the float32 result rather than several float64 copies of the counts.
    ``held_out``: per-class feature sums (statistics.classes x width, sparse) and class weights of rows to leave
    out (``HeadStatistics.without``'s arithmetic)."""
    order = np.searchsorted(statistics.classes, classes)
    columns = np.asarray(columns, dtype=np.int64)
    held = None if held_out is None else held_out[0].tocsc()[:, columns].tocsr()[order].tocsc()

    def counts(start: int, stop: int) -> np.ndarray:
        c = statistics.feature_count[np.ix_(order, columns[start:stop])]
        if held is not None:
            c = np.maximum(c - held[:, start:stop].toarray(), 0.0)
        return c + NB_ALPHA

    blocks = [(i, min(i + FEATURE_BLOCK, len(columns))) for i in range(0, len(columns), FEATURE_BLOCK)]
    totals = np.zeros(len(order))
    for start, stop in blocks:
        totals += counts(start, stop).sum(axis=1)
    log_totals = np.log(totals)[:, None]
    coef = np.zeros((width, len(order)), dtype=np.float32)
    for start, stop in blocks:
        log_prob = np.log(counts(start, stop)) - log_totals
        # centred per feature: adding the same number to every class changes no probability, and a weight then
        # says how much the feature favours a class over the average (explanations)
        coef[columns[start:stop]] = (log_prob - log_prob.mean(axis=0, keepdims=True)).T
    class_count = statistics.class_count[order]
    if held_out is not None:
        class_count = class_count - held_out[1][order]
    return coef, np.log(class_count) - np.log(class_count.sum())


def combine_views(weights: np.ndarray, coefs: list[np.ndarray]) -> np.ndarray:
    """``sum(w * c for w, c in zip(weights, coefs)).astype(np.float32)``, a block of features at a time."""
    width = coefs[0].shape[0]
    out = np.empty(coefs[0].shape, dtype=np.float32)
    for start in range(0, width, FEATURE_BLOCK):
        stop = min(start + FEATURE_BLOCK, width)
        out[start:stop] = sum(w * c[start:stop] for w, c in zip(weights, coefs))
    return out


def _fit_temperature(scores: np.ndarray, truth: np.ndarray, weight: np.ndarray | None = None) -> float:
    """The temperature that minimizes the (weighted) negative log-likelihood of out-of-fold scores."""

    def nll(log_t: float) -> float:
        z = scores / math.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return -_weighted_mean(log_p[np.arange(len(truth)), truth], weight)

    res = minimize_scalar(nll, bounds=(math.log(1e-3), math.log(1e2)), method="bounded")
    return float(math.exp(res.x))
