"""How a head's weights are kept: on float16's grid, stored as float16, served as float32.

A head's ``coef_`` is a dense (features, classes) matrix, most of a saved model's bytes: 500,000 features x 26
classes is 52 MB as float32.  A fitted head rounds its weights to the nearest float16 (``on_storage_grid``), the
model it is scored with right after fitting (``hotline train``'s metrics) is that rounded one, and pickling
writes them as float16 (``stored``): half the bytes, and, as every float16 is exactly a float32, loading
(``served``) gives back the very weights that were scored, bit for bit.  In memory they are float32 again: a
single complaint's prediction gathers a few hundred rows of ``coef_``, and numpy's float16 gather and upcast
took twice the time of float32's (BENCHMARKS.md, training that scales).

Rounding to float16 moves a weight by at most 2^-11 of itself (weights under 6e-5, whose pushes no prediction
notices, keep less); on the scaling benchmark's real test set (12,528 texts) it changed 0-1 predicted labels and
no probability by more than 6e-4.  int8 with a scale per feature changed 3-4 labels and probabilities by up to
0.007, with one scale per class 27-35 labels and up to 0.096 (BENCHMARKS.md).

Weights that are not on the grid (a head pickled before this, or one whose weights were changed by hand) and
weights beyond float16's range are stored as float32, as they are: saving never changes a model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["STORAGE_DTYPE", "on_storage_grid", "stored", "served"]

STORAGE_DTYPE = np.dtype(np.float16)
# float16's largest finite value: larger weights (none seen: a fused head's reach 20) stay float32
_FLOAT16_MAX = float(np.finfo(np.float16).max)


def _fits(coef: np.ndarray) -> bool:
    if coef.size == 0:
        return True
    return bool(np.isfinite(coef).all() and np.abs(coef).max() <= _FLOAT16_MAX)


def on_storage_grid(coef: np.ndarray) -> np.ndarray:
    """``coef`` as float32 rounded to the nearest float16 (unchanged when a weight is beyond float16's range)."""
    coef = np.asarray(coef, dtype=np.float32)
    if not _fits(coef):
        return coef
    return coef.astype(STORAGE_DTYPE).astype(np.float32)


def stored(coef: Any) -> Any:
    """What is pickled for ``coef``: float16 when that holds every weight exactly, else ``coef`` itself."""
    if not isinstance(coef, np.ndarray) or coef.dtype != np.float32 or not _fits(coef):
        return coef
    half = coef.astype(STORAGE_DTYPE)
    return half if np.array_equal(half.astype(np.float32), coef) else coef


def served(coef: Any) -> Any:
    """The weights a loaded head predicts with: float16 back to float32 (exact), anything else as it is."""
    if isinstance(coef, np.ndarray) and coef.dtype == STORAGE_DTYPE:
        return coef.astype(np.float32)
    return coef
