"""Classification metrics from calibrated probabilities: the numbers saved in a model's manifest."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

__all__ = ["classification_metrics", "paired_accuracy_test", "paired_sentence", "top_k_accuracy"]

# below this p-value (McNemar's exact test) a difference in accuracy is called better / worse
SIGNIFICANCE = 0.05
_BOOTSTRAP_DRAWS = 10_000


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


def paired_accuracy_test(right_this: np.ndarray, right_other: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Is one model's accuracy really different from another's on the same cases, or is it noise?

    Only the cases exactly one model gets right carry evidence: McNemar's exact test (a two-sided binomial
    test of those discordant cases against a fair coin) gives the p-value, and a paired bootstrap of the cases
    (drawn as multinomial counts of the four right/wrong cells: the same distribution, without materializing
    the resamples) the 95 % interval of the accuracy delta.  ``verdict``: "better" / "worse" when p < 0.05,
    else "no significant difference".  A few cases of 1,000 either way is usually the last.
    """
    from scipy.stats import binomtest

    a = np.asarray(right_this, dtype=bool)
    b = np.asarray(right_other, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"right_this and right_other must be 1-d and of one length, got {a.shape} and {b.shape}")
    n = int(len(a))
    only_this, only_other = int((a & ~b).sum()), int((~a & b).sum())
    discordant = only_this + only_other
    p_value = float(binomtest(only_this, discordant, 0.5).pvalue) if discordant else 1.0
    if n:
        cells = np.random.default_rng(seed).multinomial(n, [only_this / n, only_other / n,
                                                             1.0 - discordant / n], size=_BOOTSTRAP_DRAWS)
        deltas = (cells[:, 0] - cells[:, 1]) / n
        low, high = (float(v) for v in np.quantile(deltas, [0.025, 0.975]))
    else:
        low = high = 0.0
    if p_value < SIGNIFICANCE and only_this != only_other:
        verdict = "better" if only_this > only_other else "worse"
    else:
        verdict = "no significant difference"
    return {"n": n, "both_right": int((a & b).sum()), "both_wrong": int((~a & ~b).sum()),
            "only_this_right": only_this, "only_other_right": only_other,
            "accuracy_delta": (only_this - only_other) / n if n else 0.0,
            "ci95_low": low, "ci95_high": high, "p_value": p_value, "verdict": verdict}


def paired_sentence(paired: dict[str, Any]) -> str:
    """One line for people: the flips both ways, the interval of the accuracy delta, the test and its verdict."""
    return (f"right->wrong {paired['only_other_right']}, wrong->right {paired['only_this_right']}; accuracy "
            f"{100 * paired['accuracy_delta']:+.2f} points (95 % CI {100 * paired['ci95_low']:+.2f} to "
            f"{100 * paired['ci95_high']:+.2f}), McNemar p = {paired['p_value']:.3g}: {paired['verdict']}")
