"""The systems of the scaling benchmark, each run as one job in its own process (``benchmarks/scale.py``).

    python -m benchmarks.scale_systems fit --system product --corpus C.parquet --test T.parquet --work DIR
    python -m benchmarks.scale_systems cold-start --system product --model DIR/model

``fit`` reads the corpus, trains, saves the model under ``--work``, scores the real test set and prints one
JSON line; ``cold-start`` (a fresh process) loads the saved model and predicts one text, timing both.

* ``product``: ``ComplaintClassifier(TrainingConfig())`` with the shipped defaults, saved by ``save_model``
  into a ``ModelStore`` (what ``hotline train`` writes) and loaded by ``ModelStore.load`` (what the service
  does: sha256 checked, then unpickled); its phases come from ``classifier.phases``.
* ``fasttext``: fastText supervised over the product's normalization and jieba tokens (space-joined), epoch 10,
  lr 0.5, word bigrams, dim 100, 2 threads: the issue's settings.
* ``hashing-sgd``: ``HashingVectorizer(n_features=2**20)`` over the same tokens' word 1-2-grams and the text's
  char 1-3-grams (``alternate_sign=False``, l2) + ``SGDClassifier`` (hinge, alpha 1e-5, 2 threads): the
  stateless, streaming-friendly pipeline a data team would reach for at this size.

Train seconds run from reading the corpus to the saved model.  Complaint text is never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["SYSTEMS", "FASTTEXT_SCALE_PARAMS"]

SYSTEMS = ("product", "fasttext", "hashing-sgd")
FASTTEXT_SCALE_PARAMS = {"epoch": 10, "lr": 0.5, "wordNgrams": 2, "dim": 100, "minCount": 1, "thread": 2, "seed": 0}
SGD_PARAMS = {"loss": "hinge", "alpha": 1e-5, "max_iter": 20, "tol": 1e-4, "n_jobs": 2, "random_state": 0}
HASHING_FEATURES = 2**20


def _dir_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- the product ----------------------------------------------------------------------------------------------
def _fit_product(texts: list[str], labels: list[str], work: Path, log: Any) -> tuple[Path, Any]:
    from classifier.config import TrainingConfig
    from classifier.model import ComplaintClassifier
    from classifier.phases import phase
    from training.train import save_model

    model = ComplaintClassifier(TrainingConfig()).fit(texts, {"category": labels})
    with phase("saving"):
        store = work / "store"
        save_model(model, store)
    return store, model


def _product_predict(model: Any, texts: list[str]) -> list[str]:
    out: list[str] = []
    for i in range(0, len(texts), 5000):
        out.extend(model.predict(texts[i:i + 5000])["category"])
    return out


def _product_extra(model: Any) -> dict[str, Any]:
    head = model.heads_["category"].describe()
    return {"features": len(model.vectorizer_.vocabulary_), "head": head["kind"],
            "fusion_weights": head.get("fusion_weights")}


# -- the peers ------------------------------------------------------------------------------------------------
class _Tokens:
    """The product's normalization and jieba segmentation, as space-joined tokens."""

    def __init__(self) -> None:
        from classifier.text import ComplaintTokenizer

        self.tokenizer = ComplaintTokenizer(segmenter="auto")

    def __call__(self, text: str) -> str:
        return " ".join(self.tokenizer(text))


def _fit_fasttext(texts: list[str], labels: list[str], work: Path, log: Any) -> tuple[Path, Any]:
    import fasttext

    from classifier.phases import phase

    prepare = _Tokens()
    train_file = work / "fasttext-train.txt"
    with phase("segmentation"), open(train_file, "w", encoding="utf-8") as fh:
        for t, y in zip(texts, labels):
            fh.write(f"__label__{y.replace(' ', '_')} {prepare(t)}\n")
    with phase("fasttext training"):
        model = fasttext.train_supervised(input=str(train_file), verbose=0, **FASTTEXT_SCALE_PARAMS)
    train_file.unlink()
    path = work / "fasttext.bin"
    with phase("saving"):
        model.save_model(str(path))
    return path, (model, prepare)


def _fasttext_predict(bundle: Any, texts: list[str]) -> list[str]:
    model, prepare = bundle
    lines = [prepare(t) + "\n" for t in texts]
    out, _ = model.f.multilinePredict(lines, 1, 0.0, "strict")
    return [x[0][len("__label__"):] for x in out]


class HashingAnalyzer:
    """Word 1-2-grams of the jieba tokens and char 1-3-grams of the normalized text (a picklable callable)."""

    def __init__(self) -> None:
        from classifier.text import ComplaintTokenizer

        self.tokenizer = ComplaintTokenizer(segmenter="auto")

    def __call__(self, text: str) -> list[str]:
        from classifier.text import normalize

        norm = normalize(text)
        tokens = self.tokenizer.cut(norm)
        feats = ["w " + t for t in tokens] + ["w " + a + " " + b for a, b in zip(tokens, tokens[1:])]
        chars = norm.replace(" ", "")
        for n in (1, 2, 3):
            feats.extend(chars[i:i + n] for i in range(len(chars) - n + 1))
        return feats


def _fit_hashing(texts: list[str], labels: list[str], work: Path, log: Any) -> tuple[Path, Any]:
    import joblib
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.linear_model import SGDClassifier
    from sklearn.pipeline import make_pipeline

    from classifier.phases import phase

    vec = HashingVectorizer(n_features=HASHING_FEATURES, analyzer=HashingAnalyzer(), alternate_sign=False)
    with phase("hashing"):
        X = vec.transform(texts)
    with phase("sgd fit"):
        sgd = SGDClassifier(**SGD_PARAMS).fit(X, labels)
    del X
    model = make_pipeline(vec, sgd)
    path = work / "hashing-sgd.joblib"
    with phase("saving"):
        joblib.dump(model, path, compress=3)
    return path, model


def _sklearn_predict(model: Any, texts: list[str]) -> list[str]:
    return [str(x) for x in model.predict(texts)]


FIT = {"product": _fit_product, "fasttext": _fit_fasttext, "hashing-sgd": _fit_hashing}
PREDICT = {"product": _product_predict, "fasttext": _fasttext_predict, "hashing-sgd": _sklearn_predict}


def run_fit(system: str, corpus: Path, test: Path, work: Path) -> dict[str, Any]:
    from classifier.phases import phase, record_phases, tree_cpu_seconds

    work.mkdir(parents=True, exist_ok=True)
    cpu0 = tree_cpu_seconds()
    t0 = time.perf_counter()
    with record_phases() as log:
        with phase("reading"):
            df = pd.read_parquet(corpus)
            texts, labels = df["text"].tolist(), df["label"].tolist()
            del df
        path, model = FIT[system](texts, labels, work, log)
    train_s = time.perf_counter() - t0
    train_cpu_s = tree_cpu_seconds() - cpu0
    n_texts = len(texts)
    del texts, labels
    test_df = pd.read_parquet(test)
    t1 = time.perf_counter()
    predicted = PREDICT[system](model, test_df["text"].tolist())
    predict_s = time.perf_counter() - t1
    accuracy = float(np.mean(np.asarray(predicted, dtype=object) == test_df["label"].to_numpy(dtype=object)))
    out: dict[str, Any] = {"system": system, "texts": n_texts, "train_s": round(train_s, 2),
                           "train_cpu_s": round(train_cpu_s, 1),
                           "accuracy": round(accuracy, 4), "test_texts": len(test_df),
                           "test_texts_per_s": round(len(test_df) / predict_s, 1),
                           "model_mb": round(_dir_size(path) / 1e6, 2), "model_path": str(path),
                           "peak_gib_self": round(log.peak / 2**30, 3), "phases": log.rows()}
    if system == "product":
        out.update(_product_extra(model))
    return out


# -- cold start -----------------------------------------------------------------------------------------------
COLD_TEXT = "小区楼下的路灯坏了一个多月，晚上出行很不方便，请尽快维修。"


def run_cold_start(system: str, model_path: Path) -> dict[str, Any]:
    """Load the saved model and predict one text in this (fresh) process.  The libraries are imported before the
    clock starts (a server imports them once, at start); the segmenter's dictionary is loaded inside it."""
    if system == "product":
        import classifier.model  # noqa: F401  (the code a server has imported before it loads a model)
        import classifier.routing  # noqa: F401
        from classifier.store import ModelStore

        t0 = time.perf_counter()
        model = ModelStore(model_path).load().model
        t_load = time.perf_counter() - t0
        model.predict_details([COLD_TEXT], top_k=1)
    elif system == "fasttext":
        import fasttext

        prepare = _Tokens()
        t0 = time.perf_counter()
        ft = fasttext.load_model(str(model_path))
        t_load = time.perf_counter() - t0
        ft.f.predict(prepare(COLD_TEXT) + "\n", 1, 0.0, "strict")
    else:
        import joblib
        import sklearn.feature_extraction.text  # noqa: F401
        import sklearn.linear_model  # noqa: F401
        import sklearn.pipeline  # noqa: F401

        t0 = time.perf_counter()
        pipe = joblib.load(model_path)
        t_load = time.perf_counter() - t0
        pipe.predict([COLD_TEXT])
    total = time.perf_counter() - t0
    return {"load_s": round(t_load, 3), "cold_start_s": round(total, 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="one job of the scaling benchmark (see benchmarks/scale.py)")
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fit")
    f.add_argument("--system", choices=SYSTEMS, required=True)
    f.add_argument("--corpus", type=Path, required=True)
    f.add_argument("--test", type=Path, required=True)
    f.add_argument("--work", type=Path, required=True)
    c = sub.add_parser("cold-start")
    c.add_argument("--system", choices=SYSTEMS, required=True)
    c.add_argument("--model", type=Path, required=True)
    args = p.parse_args(argv)
    if args.command == "fit":
        result = run_fit(args.system, args.corpus, args.test, args.work)
    else:
        result = run_cold_start(args.system, args.model)
    sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
    sys.stdout.flush()
    # joblib's reusable worker processes would otherwise keep this process alive a while
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
