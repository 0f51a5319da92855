"""Place hints the model cannot use: said in the response (``warnings``) instead of ignored silently.

A hint that names no county, town or city of the routing directory (a typo, a street, a free-text field sent
by mistake) decides nothing: the place then comes from the text, or, when the text names none, from the county
model's guess (which asks for review).  The response says so, so the calling system can fix its field.  A hint
the directory knows but the text overrides (the text names another place) is the documented rule, not a
warning.  ``HOTLINE_DEFAULT_PLACE`` is checked when the model loads, so it never warns.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from classifier.routing import PLACE_HINT_IGNORED_MESSAGE, routes, unusable_place

__all__ = ["PLACE_HINT_IGNORED", "hint_warnings", "unusable_place"]

PLACE_HINT_IGNORED = "place_hint_ignored"
_CACHE_SIZE = 4096  # a hotline's districts and towns: a few hundred distinct hints

_known: weakref.WeakKeyDictionary[Any, dict[str, bool]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def hint_warnings(model: Any, place: str | None) -> list[dict[str, str]] | None:
    """``[{"type": "place_hint_ignored", "message": ...}]`` for a hint the model's directory cannot place;
    None for no hint, a usable one, or a model without routing (which refuses hints with a 422 instead)."""
    if place is None or not place.strip() or not routes(model):
        return None
    hint = place.strip()
    with _lock:
        per_model = _known.setdefault(model, {})
        unusable = per_model.get(hint)
    if unusable is None:
        unusable = unusable_place(model, hint)  # ~30 us: a gazetteer match
        with _lock:
            if len(per_model) >= _CACHE_SIZE:
                per_model.clear()
            per_model[hint] = unusable
    if not unusable:
        return None
    return [{"type": PLACE_HINT_IGNORED, "message": PLACE_HINT_IGNORED_MESSAGE}]
