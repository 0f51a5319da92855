"""A routing model's agency errors: why each wrong agency was wrong (county, function, town) and how accurate
the routing is by where the place came from (the text, the request's hint, the county model, none)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["ROUTING_CAUSES", "PLACE_SOURCES", "routing_tables"]

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
                   flagged: np.ndarray, places: list[str | None] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For a routing model's agency: each wrong agency's cause (by comparing the given and the predicted
    agency's county, town and function in the directory), and accuracy by where the place came from."""
    directory = clf.directory_
    details = clf.predict_details(texts, top_k=1, targets=["agency"], places=places)
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
    place_rows = []
    src = np.asarray(sources, dtype=object)
    for source, meaning in PLACE_SOURCES.items():
        m = src == source
        place_rows.append({"place": source, "meaning": meaning, "cases": int(m.sum()),
                           "accuracy": float((~wrong[m]).mean()) if m.any() else None,
                           "flagged_for_review": float(flagged[m].mean()) if m.any() else None,
                           "accuracy_not_flagged": float((~wrong[m & ~flagged]).mean()) if (m & ~flagged).any()
                           else None})
    return pd.DataFrame(error_rows), pd.DataFrame(place_rows)
