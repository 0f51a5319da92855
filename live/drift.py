"""Drift signals that need no labels.

- **Label mix**: the population stability index (PSI) of the labels the model predicted in a window against the
  label mix it was trained on (``manifest.json`` ``labels``): below 0.1 stable, 0.1-0.25 moving, above 0.25 a
  different population (a new policy, a season, a renamed agency).
- **Unseen tokens**: the share of an incoming text's jieba tokens that are not in the model's vocabulary;
  training texts are near 0, a new topic or new place names push it up.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from classifier.features import WORD_PREFIX

__all__ = ["token_coverage", "population_stability_index", "PSI_SMOOTHING"]

PSI_SMOOTHING = 0.5  # added to every count of both mixes, so a label absent from one side has a finite share


def token_coverage(model: Any, text: str) -> tuple[int, int]:
    """(tokens, tokens the model never saw in training) of one raw text, by the model's own segmentation."""
    vectorizer = model.vectorizer_
    vocabulary = vectorizer.vocabulary_
    tokens = [t for t in vectorizer.tokens(text) if t.strip()]
    unseen = sum(WORD_PREFIX + t not in vocabulary for t in tokens)
    return len(tokens), unseen


def population_stability_index(observed: Mapping[str, float], expected: Mapping[str, float]) -> float | None:
    """PSI of ``observed`` label counts against ``expected`` ones (over the union of their labels); None when
    either side is empty."""
    labels = sorted(set(observed) | set(expected))
    n_obs = sum(observed.values())
    n_exp = sum(expected.values())
    if n_obs <= 0 or n_exp <= 0:
        return None
    k = len(labels)
    psi = 0.0
    for label in labels:
        p = (observed.get(label, 0) + PSI_SMOOTHING) / (n_obs + PSI_SMOOTHING * k)
        q = (expected.get(label, 0) + PSI_SMOOTHING) / (n_exp + PSI_SMOOTHING * k)
        psi += (p - q) * math.log(p / q)
    return psi
