"""Labels the model confidently disputes: cleanlab's confident joint on out-of-fold probabilities.

Out-of-fold probabilities, the cheaper choice: the model's own vectorizer (TF-IDF is label-free) turns the
data into features once; per fold only the linear heads are refit with the model's config (``C``,
``class_weight``) as single SVMs, and one temperature fitted on the pooled out-of-fold scores turns them into
probabilities.  This costs a few linear fits instead of k full trainings.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["DISPUTE_CONFIDENCE", "disputed_labels", "out_of_fold_disputes"]

DISPUTE_CONFIDENCE = 0.5  # the suggested label must be at least this probable (out of fold)


def disputed_labels(proba: np.ndarray, given: np.ndarray, scorable: np.ndarray | None = None,
                    min_confidence: float = DISPUTE_CONFIDENCE) -> pd.DataFrame:
    """Cases whose given label the out-of-fold probabilities confidently dispute (cleanlab's confident joint).

    ``proba``: (n, k) out-of-fold probabilities; ``given``: the given label's column (or -1 when the model
    cannot score it).  Per class j, the threshold t_j is the mean probability of j over cases labeled j.  A
    case is disputed when some other class j has p_j >= t_j and is the most probable of those classes
    (cleanlab's confident joint, off the diagonal), its given label i has p_i < t_i, and p_j is at least
    ``min_confidence``: with few cases per class the out-of-fold models are unsure, their per-class
    thresholds low, and without a floor a third of a long-tailed agency column gets flagged.
    Returns positions, suggested class column, given-label and suggested probabilities, margin; most
    certain first (largest margin p_suggested - p_given).
    """
    proba = np.asarray(proba, dtype=np.float64)
    given = np.asarray(given, dtype=np.int64)
    n, k = proba.shape
    ok = given >= 0 if scorable is None else (np.asarray(scorable, dtype=bool) & (given >= 0))
    thresholds = np.full(k, np.inf)
    for j in range(k):
        sel = ok & (given == j)
        if sel.any():
            thresholds[j] = proba[sel, j].mean()
    above = proba >= thresholds[None, :]
    masked = np.where(above, proba, -np.inf)
    suggested = np.argmax(masked, axis=1)
    has = np.isfinite(masked[np.arange(n), suggested])
    # and the given label is itself unconvincing: under its own class's typical probability
    low_given = proba[np.arange(n), np.maximum(given, 0)] < thresholds[np.maximum(given, 0)]
    confident = proba[np.arange(n), suggested] >= min_confidence
    disputed = ok & has & (suggested != given) & low_given & confident
    pos = np.flatnonzero(disputed)
    p_given = proba[pos, given[pos]]
    p_sugg = proba[pos, suggested[pos]]
    out = pd.DataFrame({"position": pos, "suggested": suggested[pos], "given_probability": p_given,
                        "suggested_probability": p_sugg, "margin": p_sugg - p_given})
    return out.sort_values(["margin", "position"], ascending=[False, True]).reset_index(drop=True)


def out_of_fold_disputes(clf: Any, X: Any, given: np.ndarray, name: str, folds: int, seed: int,
              max_cases: int) -> tuple[pd.DataFrame, str | None]:
    """Out-of-fold probabilities on the evaluated rows, then the confident-joint check."""
    columns = ["position", "given", "suggested", "given_probability", "suggested_probability", "margin"]
    empty = pd.DataFrame(columns=columns)
    if folds < 2 or X is None:
        return empty, "disputed labels not computed (oof_folds < 2)"
    from sklearn.model_selection import KFold, StratifiedKFold

    from classifier.model import TargetHead, _fit_temperature, _softmax

    labels, counts = np.unique(given, return_counts=True)
    count_of = dict(zip(labels, counts))
    # a class with one case here can neither be judged out of fold nor be suggested with any confidence:
    # leaving it out of the refits keeps them fast (a linear SVM is one-vs-rest: its cost grows with classes)
    idx = np.flatnonzero([count_of[g] >= 2 for g in given])
    if len(np.unique(given[idx])) < 2:
        return empty, "disputed labels not computed: fewer than 2 classes have 2 or more cases"
    folds = min(folds, len(idx))
    stratify = int(counts[counts >= 2].min()) >= folds
    splitter: Any = (StratifiedKFold if stratify else KFold)(n_splits=folds, shuffle=True, random_state=seed)
    cfg = clf._config().model.model_copy(update={"calibration": "none"})
    lead = clf.vectorizer_.is_lead_  # a single SVM leaves the lead blocks out, as in training
    scores = np.full((len(given), len(labels)), -np.inf)
    scorable = np.zeros(len(given), dtype=bool)
    for train, test in splitter.split(idx, given[idx] if stratify else None):
        train, test = idx[train], idx[test]
        fold_classes = np.unique(given[train])
        if len(fold_classes) < 2:
            continue
        h = TargetHead.from_config(cfg, random_state=seed).fit(X[train], given[train], lead_columns=lead)
        scores[np.ix_(test, np.searchsorted(labels, fold_classes))] = h.decision_function(X[test])
        # a case whose class is missing from the fold's training part cannot be judged
        scorable[test] = np.isin(given[test], fold_classes)
    given_col = np.searchsorted(labels, given)
    # one temperature for these out-of-fold scores, fitted on them (the model's own calibration belongs to
    # its own heads, which may be fused views rather than this single SVM)
    finite = np.where(np.isfinite(scores), scores, np.nan)
    floor = np.nanmin(finite) - 10.0 if np.isfinite(finite).any() else -10.0
    scores = np.where(np.isfinite(scores), scores, floor)
    temperature = _fit_temperature(scores[scorable], given_col[scorable]) if scorable.any() else 1.0
    proba = _softmax(scores / temperature)
    proba[~scorable] = 0.0
    found = disputed_labels(proba, given_col, scorable)
    note = None
    if (~scorable).any():
        note = (f"{int((~scorable).sum())} case(s) not checked for disputed labels: their class has too few "
                f"cases here to be judged out of fold ({folds} folds)")
    if not len(found):
        return empty, note
    found = found.head(max_cases)
    found.insert(1, "given", given[found["position"].to_numpy()])
    found["suggested"] = labels[found["suggested"].to_numpy()]
    return found[columns], note
