"""A model that answers instantly with a fixed result: the service's own ceiling in ``bench_serve.py``.

It has the documented model API (``predict_details``, ``targets_``, ``classes``, ``max_text_length``,
``warm_up``) and is saved into a store like any model, so the real server loads and serves it.
"""

from __future__ import annotations

from typing import Any


class NullModel:
    """Same response shape as the demo model (two targets, top 3), no computation."""

    targets_ = ["category", "agency"]
    max_text_length = 10_000

    def classes(self, target: str) -> list[str]:
        return ["甲", "乙", "丙"]

    def warm_up(self) -> NullModel:
        return self

    def predict_details(self, texts: list[str], top_k: int = 3, targets: Any = None, explain: bool = False,
                        thresholds: Any = None) -> list[dict[str, Any]]:
        alts = [{"label": "甲", "score": 0.9}, {"label": "乙", "score": 0.06}, {"label": "丙", "score": 0.04}][:top_k]
        entry = {"label": "甲", "score": 0.9, "alternatives": alts}
        return [{t: dict(entry) for t in (targets or self.targets_)} | {"needs_review": False} for _ in texts]
