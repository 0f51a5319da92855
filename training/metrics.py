"""Classification metrics from calibrated probabilities: the numbers saved in a model's manifest."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

__all__ = ["classification_metrics", "top_k_accuracy"]


def top_k_accuracy(y_true: Sequence[str], proba: np.ndarray, classes: Sequence[str] | np.ndarray, k: int = 3) -> float:
    """Share of cases whose true label is among the k most probable (a label the model never saw: a miss)."""
    names = np.asarray(classes)
    top = np.argsort(-proba, axis=1, kind="stable")[:, :k]
    hits = [t in set(names[row]) for t, row in zip(y_true, top)]
    return float(np.mean(hits)) if hits else 0.0


def classification_metrics(
    y_true: Sequence[str], proba: np.ndarray, classes: Sequence[str] | np.ndarray
) -> dict[str, Any]:
    """accuracy, macro-F1 (over the classes present in truth or prediction), top-3 accuracy, per-class P/R/F1."""
    classes_arr = np.asarray(classes, dtype=object)
    truth = np.asarray([str(v) for v in y_true], dtype=object)
    y_pred = classes_arr[np.argmax(proba, axis=1)]
    labels = sorted(set(truth) | set(y_pred))
    p, r, f, s = precision_recall_fscore_support(truth, y_pred, labels=labels, zero_division=0)
    return {
        "n": int(len(truth)),
        "accuracy": float(accuracy_score(truth, y_pred)),
        "macro_f1": float(f1_score(truth, y_pred, labels=labels, average="macro", zero_division=0)),
        "top3_accuracy": top_k_accuracy(list(truth), proba, classes_arr, k=3),
        "per_class": {
            str(c): {"precision": float(pi), "recall": float(ri), "f1": float(fi), "support": int(si)}
            for c, pi, ri, fi, si in zip(labels, p, r, f, s)
        },
    }
