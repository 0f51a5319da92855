"""Does a score mean what it says?  Reliability bins, expected calibration error, the review threshold's two
sides and the operating points of other thresholds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["OPERATING_THRESHOLDS", "reliability_table", "expected_calibration_error", "review_table",
           "operating_points"]


def reliability_table(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Cases binned by the top label's probability: how often the model is right at each confidence."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        sel = which == b
        k = int(sel.sum())
        mean_conf = float(confidence[sel].mean()) if k else float("nan")
        acc = float(correct[sel].mean()) if k else float("nan")
        rows.append({"bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}", "low": float(edges[b]), "high": float(edges[b + 1]),
                     "cases": k, "mean_score": mean_conf, "accuracy": acc,
                     "gap": (acc - mean_conf) if k else float("nan")})
    return pd.DataFrame(rows)


def expected_calibration_error(table: pd.DataFrame) -> float:
    total = int(table["cases"].sum())
    if not total:
        return float("nan")
    used = table[table["cases"] > 0]
    return float((used["cases"] * (used["accuracy"] - used["mean_score"]).abs()).sum() / total)


def review_table(confidence: np.ndarray, correct: np.ndarray, threshold: float,
                 required: np.ndarray | None = None) -> pd.DataFrame:
    """Cases the service would send to review (score under the threshold, or ``required``: a routed agency
    whose place the text and the hint do not decide) and those it would route directly."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    n = len(confidence)
    required = np.zeros(n, dtype=bool) if required is None else np.asarray(required, dtype=bool)
    review = (confidence < threshold) | required
    why = " or required by the model" if required.any() else ""
    rows = []
    for side, sel in ((f"needs review (score < threshold{why})", review),
                      ("routed directly (score >= threshold)", ~review)):
        k = int(sel.sum())
        rows.append({"side": side, "threshold": threshold, "cases": k, "share": k / n if n else float("nan"),
                     "accuracy": float(correct[sel].mean()) if k else float("nan")})
    return pd.DataFrame(rows)


OPERATING_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def operating_points(confidence: np.ndarray, correct: np.ndarray,
                     thresholds: Sequence[float] = OPERATING_THRESHOLDS,
                     required: np.ndarray | None = None) -> pd.DataFrame:
    """For each candidate review threshold: the share of cases routed directly, their accuracy, and the share
    sent to review; what a dispatcher needs to choose a threshold (``HOTLINE_THRESHOLDS``).  ``required``:
    cases that go to review whatever their score (``review_table``)."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    n = len(confidence)
    required = np.zeros(n, dtype=bool) if required is None else np.asarray(required, dtype=bool)
    rows = []
    for t in thresholds:
        direct = (confidence >= t) & ~required
        k = int(direct.sum())
        rows.append({"threshold": float(t), "routed_directly": k / n if n else float("nan"),
                     "accuracy_routed_directly": float(correct[direct].mean()) if k else float("nan"),
                     "errors_routed_directly": int((direct & ~correct).sum()),
                     "sent_to_review": (n - k) / n if n else float("nan")})
    return pd.DataFrame(rows)
