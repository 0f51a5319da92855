"""How a head's weights are kept: on float16's grid, stored as float16, served as float32.

A head's ``coef_`` is a dense (features, classes) matrix, most of a saved model's bytes: 1,000,000 features x 26
classes is 104 MB as float32.  A fitted head rounds its weights to the nearest float16 (``on_storage_grid``), the
model it is scored with right after fitting (``hotline train``'s metrics) is that rounded one, and pickling
stores them as float16 (``stored``); every float16 is exactly a float32, so loading (``served``) gives back the
very weights that were scored, bit for bit.  In memory they are float32 again: a single complaint's prediction
gathers a few hundred rows of ``coef_``, and numpy's float16 gather and upcast took twice the time of float32's
(43 vs 22 us a head, BENCHMARKS.md, training that scales).

On disk only the non-zero weights are kept (a streamed head's are 40-45 % of them, an exact one's 35-50 %),
with a bit per weight saying which, and their two bytes in two arrays: the high bytes (sign, exponent) compress
well, the low ones hardly, and mixed they compress worse (a 1,000,000-text model's 26 million weights: 23.4 MB as
dense float16 through joblib's zlib, 18.2 MB this way).

Rounding to float16 moves a weight by at most 2^-11 of itself (weights under 6e-5, whose pushes no prediction
notices, keep less); on the scaling benchmark's real test set (12,528 texts) it changed 0-1 predicted labels and
no probability by more than 6e-4 at 25,000-1,000,000 texts.  int8 with a scale per feature changed 2-6 labels and
probabilities by up to 0.009, with one scale per class 14-35 labels and up to 0.096 (``benchmarks/weight_storage.py``,
BENCHMARKS.md).

Weights that are not on the grid (a head pickled before this, or one whose weights were changed by hand) and
weights beyond float16's range are stored as float32, as they are: saving never changes a model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["STORAGE_DTYPE", "FORMAT", "on_storage_grid", "stored", "served"]

STORAGE_DTYPE = np.dtype(np.float16)
_LITTLE_HALF = np.dtype("<f2")  # the bytes' order in the file, whatever the machine's
FORMAT = "float16 non-zero, bytes split"
_ROUNDING_BLOCK = 1 << 16  # rows
# float16's largest finite value: larger weights (none seen: a fused head's reach 20) stay float32
_FLOAT16_MAX = float(np.finfo(np.float16).max)


def _fits(coef: np.ndarray) -> bool:
    if coef.size == 0:
        return True
    return bool(np.isfinite(coef).all() and np.abs(coef).max() <= _FLOAT16_MAX)


def on_storage_grid(coef: np.ndarray) -> np.ndarray:
    """``coef`` as float32 rounded to the nearest float16 (unchanged when a weight is beyond float16's range).  A
    float32 array is rounded in place, a block of rows at a time (no copy of a 100 MB matrix at the end of a fit)."""
    coef = np.asarray(coef, dtype=np.float32)
    if not _fits(coef):
        return coef
    if not coef.flags.writeable:
        coef = coef.copy()
    rows = coef.reshape(len(coef), -1) if coef.ndim > 1 else coef.reshape(-1, 1)
    for start in range(0, len(rows), _ROUNDING_BLOCK):
        block = rows[start:start + _ROUNDING_BLOCK]
        block[...] = block.astype(STORAGE_DTYPE)
    return coef


def stored(coef: Any) -> Any:
    """What is pickled for ``coef``: its non-zero weights as float16 (``served`` reads them) when that holds every
    weight exactly, else ``coef`` itself."""
    if not isinstance(coef, np.ndarray) or coef.dtype != np.float32 or coef.ndim != 2 or not _fits(coef):
        return coef
    half = coef.astype(_LITTLE_HALF)
    if not np.array_equal(half.astype(np.float32), coef):
        return coef
    nonzero = half != 0
    pairs = half[nonzero].view(np.uint8).reshape(-1, 2)
    return {"format": FORMAT, "shape": coef.shape, "nonzero": np.packbits(nonzero, axis=None),
            "low_bytes": np.ascontiguousarray(pairs[:, 0]), "high_bytes": np.ascontiguousarray(pairs[:, 1])}


def served(coef: Any) -> Any:
    """The weights a loaded head predicts with: float32, whatever ``stored`` made of them."""
    if isinstance(coef, dict) and coef.get("format") == FORMAT:
        shape = tuple(coef["shape"])
        nonzero = np.unpackbits(coef["nonzero"], count=shape[0] * shape[1]).view(bool).reshape(shape)
        pairs = np.empty((len(coef["low_bytes"]), 2), dtype=np.uint8)
        pairs[:, 0] = coef["low_bytes"]
        pairs[:, 1] = coef["high_bytes"]
        out = np.zeros(shape, dtype=np.float32)
        out[nonzero] = pairs.view(_LITTLE_HALF).ravel()
        return out
    if isinstance(coef, np.ndarray) and coef.dtype == STORAGE_DTYPE:
        return coef.astype(np.float32)
    return coef
