"""What storing a head's weights compactly costs: float16 (shipped), int8 with a scale per feature or per class,
and pruning small weights, against the same fit with float32 weights (classifier/weights.py).

    .venv/bin/python -m benchmarks.weight_storage --size 25000 [--max-features 1000000]

Fits ``ComplaintClassifier(TrainingConfig())`` on a scaling corpus (``benchmarks/scale_corpus.py``; built by
``python -m benchmarks.scale run``) with the rounding to float16 switched off, then scores the real test set with
each storage of the weights: accuracy, how many predicted labels differ from float32's, the largest change of a
probability, and each storage's bytes through joblib's zlib (compress=3, as the store saves).  Complaint text is
never printed.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

import classifier.model
from benchmarks.scale_corpus import DEFAULT_OUT, corpus_path, test_path
from classifier.config import TrainingConfig
from classifier.model import ComplaintClassifier
from classifier.scores import _softmax
from classifier.weights import stored


def _int8(coef: np.ndarray, axis: int) -> np.ndarray:
    scale = np.abs(coef).max(axis=axis, keepdims=True) / 127.0
    scale[scale == 0] = 1.0
    return (np.round(coef / scale) * scale).astype(np.float32)


def _pruned(threshold: float) -> Callable[[np.ndarray], np.ndarray]:
    def prune(coef: np.ndarray) -> np.ndarray:
        out = coef.astype(np.float16).astype(np.float32)
        out[np.abs(coef) < threshold] = 0.0
        return out
    return prune


STORAGES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "float16": lambda c: c.astype(np.float16).astype(np.float32),
    "int8, a scale per feature": lambda c: _int8(c, 1),
    "int8, a scale per class": lambda c: _int8(c, 0),
    "float16, weights under 0.001 pruned": _pruned(1e-3),
}


def _zipped_mb(obj: object) -> float:
    buf = io.BytesIO()
    joblib.dump(obj, buf, compress=3)
    return round(buf.tell() / 1e6, 2)


def run(size: int, max_features: int | None, out: Path) -> dict[str, object]:
    corpus = pd.read_parquet(corpus_path(out, size))
    test = pd.read_parquet(test_path(out))
    config = TrainingConfig().with_updates(**{"features.max_features": max_features})
    rounding = classifier.model.on_storage_grid
    classifier.model.on_storage_grid = lambda coef: np.asarray(coef, dtype=np.float32)  # type: ignore[assignment]
    try:
        model = ComplaintClassifier(config).fit(corpus["text"].tolist(), {"category": corpus["label"].tolist()})
    finally:
        classifier.model.on_storage_grid = rounding  # type: ignore[assignment]
    head = model.heads_["category"]
    X = model.transform(test["text"].tolist())
    truth = test["label"].to_numpy(dtype=object)

    def probabilities(coef: np.ndarray) -> np.ndarray:
        return _softmax((np.asarray(X @ coef) + head.intercept_) / head.temperature_)

    coef = np.asarray(head.coef_, dtype=np.float32)
    base = probabilities(coef)
    labels = base.argmax(1)
    rows: dict[str, object] = {"float32": {"accuracy": round(float(np.mean(head.classes_[labels] == truth)), 4),
                                           "mb_zlib": _zipped_mb(coef)}}
    for name, storage in STORAGES.items():
        weights = storage(coef)
        P = probabilities(weights)
        rows[name] = {"accuracy": round(float(np.mean(head.classes_[P.argmax(1)] == truth)), 4),
                      "labels_changed": int((P.argmax(1) != labels).sum()),
                      "max_probability_change": float(f"{np.abs(P - base).max():.2g}"),
                      "zero_share": round(float(np.mean(weights == 0)), 3)}
    rows["float16"]["mb_zlib"] = _zipped_mb(coef.astype(np.float16))  # type: ignore[index]
    rows["float16"]["mb_zlib_as_stored"] = _zipped_mb(stored(STORAGES["float16"](coef)))  # type: ignore[index]
    return {"texts": size, "features": len(model.vectorizer_.vocabulary_), "test_texts": len(truth),
            "storages": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.weight_storage", description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=25_000, help="which scaling corpus (its number of texts)")
    p.add_argument("--max-features", type=lambda v: None if v == "none" else int(v),
                   default=TrainingConfig().features.max_features, help="the feature cap ('none': no cap)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the scaling corpora are")
    args = p.parse_args(argv)
    if not corpus_path(args.out, args.size).exists():
        print(f"no corpus of {args.size:,} texts under {args.out}: run `python -m benchmarks.scale run --sizes "
              f"{args.size}` first", file=sys.stderr)
        return 1
    print(json.dumps(run(args.size, args.max_features, args.out), ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
