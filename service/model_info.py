"""What ``GET /model`` says about the serving model."""

import weakref
from typing import Any

# (5-15 ms for a large model), too long to repeat on the event loop for every GET /model
_HEAD_INFO: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def head_info(model: Any, target: str) -> dict[str, Any] | None:
    head: Any = getattr(model, "heads_", {}).get(target)
    if head is None or not hasattr(head, "describe"):
        return None
    info = _HEAD_INFO.get(head)
    if info is None:
        info = _HEAD_INFO[head] = head.describe()
    return info


def scalar_metrics(m: Any) -> dict[str, float]:
    if not isinstance(m, dict):
        return {}
    return {k: float(v) for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}

