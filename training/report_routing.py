"""A routing model's agency errors: why each wrong agency was wrong (county, function, town) and how accurate
and calibrated the routing is by where the place came from (the text, the request's hint, the county model,
none), against the review threshold."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["ROUTING_CAUSES", "PLACE_SOURCES", "place_calibration", "routing_tables"]

ROUTING_CAUSES = {
    "place": "right function, wrong county",
    "town": "right county and function, wrong town or street office",
    "function": "right place, wrong function (department)",
    "place and function": "wrong county and wrong function",
    "outside the directory": "the given or the predicted agency is not in the routing directory",
}
PLACE_SOURCES = {
    "gazetteer": "named in the text",
    "hint": "from the request's place hint",
    "model": "guessed by the county model",
    "none": "not decided (flat agency model)",
}


def routing_tables(clf: Any, texts: list[str], given: np.ndarray, predicted: np.ndarray,
                   flagged: np.ndarray, places: list[str | None] | None = None, *,
                   details: list[dict[str, Any]] | None = None, score: np.ndarray | None = None,
                   threshold: float | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For a routing model's agency: each wrong agency's cause (by comparing the given and the predicted
    agency's county, town and function in the directory), and accuracy and calibration by where the place came
    from (``place_calibration``).  ``flagged``: the cases sent to review; ``details``: the model's
    ``predict_details`` of ``texts`` (computed when not given)."""
    directory = clf.directory_
    if details is None:
        details = clf.predict_details(texts, top_k=1, targets=["agency"], places=places,
                                      **({} if threshold is None else {"thresholds": {"agency": threshold}}))
    if score is None:
        score = np.array([d["agency"]["score"] for d in details], dtype=np.float64)
    sources = []
    for d in details:
        place = d["routing"]["place"]
        sources.append(place["source"] if place.get("county") else "none")
    causes = []
    for g, p in zip(given, predicted):
        a, b = directory.agencies.get(str(g)), directory.agencies.get(str(p))
        if g == p:
            causes.append(None)
        elif a is None or b is None:
            causes.append("outside the directory")
        elif a.county != b.county:
            causes.append("place" if a.function == b.function else "place and function")
        elif a.function != b.function:
            causes.append("function")
        else:
            causes.append("town")
    wrong = np.array([c is not None for c in causes], dtype=bool)
    n_wrong = int(wrong.sum())
    error_rows = []
    for cause, meaning in ROUTING_CAUSES.items():
        m = np.array([c == cause for c in causes], dtype=bool)
        error_rows.append({"cause": cause, "meaning": meaning, "errors": int(m.sum()),
                           "share_of_errors": float(m.sum() / n_wrong) if n_wrong else 0.0,
                           "flagged_for_review": float(flagged[m].mean()) if m.any() else None})
    threshold = clf.review_threshold if threshold is None else threshold
    places_table = place_calibration(np.asarray(sources, dtype=object), ~wrong, score, flagged, threshold)
    return pd.DataFrame(error_rows), places_table


def place_calibration(sources: np.ndarray, correct: np.ndarray, score: np.ndarray, flagged: np.ndarray,
                      threshold: float) -> pd.DataFrame:
    """A routing model's agency by where the place came from (``PLACE_SOURCES``): accuracy against the mean
    score (calibration), the share flagged for review, and for the cases routed without review whether they
    were right at least as often as the threshold promises (``meets_threshold``; None when none were)."""
    sources = np.asarray(sources, dtype=object)
    correct = np.asarray(correct, dtype=bool)
    score = np.asarray(score, dtype=np.float64)
    flagged = np.asarray(flagged, dtype=bool)
    rows = []
    for source, meaning in PLACE_SOURCES.items():
        m = sources == source
        out = m & ~flagged
        k = int(out.sum())
        accuracy_out = float(correct[out].mean()) if k else None
        rows.append({"place": source, "meaning": meaning, "cases": int(m.sum()),
                     "accuracy": float(correct[m].mean()) if m.any() else None,
                     "mean_score": float(score[m].mean()) if m.any() else None,
                     "flagged_for_review": float(flagged[m].mean()) if m.any() else None,
                     "routed_without_review": k,
                     "accuracy_not_flagged": accuracy_out,
                     "mean_score_not_flagged": float(score[out].mean()) if k else None,
                     "threshold": float(threshold),
                     "meets_threshold": None if accuracy_out is None else bool(accuracy_out >= threshold)})
    return pd.DataFrame(rows)
