"""The systems a hotline's data team would pick instead, behind one small interface.

Every system is fitted on raw texts and returns class scores (higher is more likely) for raw texts, so the
benchmark measures them identically.  ``predict_one`` is the single-request path whose latency is timed.

* ``ours``: ``ComplaintClassifier`` with the shipped defaults (``TrainingConfig()``).
* ``fasttext-word``: fastText supervised over the same jieba tokens we use (normalized text, space-joined).
* ``fasttext-char``: fastText over characters (space-separated), with character 1-3-grams via ``wordNgrams``.
* ``sklearn-baseline``: ``TfidfVectorizer()`` defaults + ``LinearSVC()`` over space-joined jieba tokens: the
  usual first attempt (its default token pattern drops single-character tokens).

fastText's Python ``predict`` calls ``np.array(..., copy=False)``, which numpy 2 rejects; we call the
bound C++ object directly: ``model.f.predict(line, k, threshold, on_unicode_error)`` for one text (it returns
correct (probability, label) pairs) and ``model.f.multilinePredict`` for batch top-1 labels only: in
fasttext-wheel 0.9.2 its probability arrays repeat the first probability for every label, so scores come from
per-text ``f.predict``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from classifier.config import TrainingConfig
from classifier.model import ComplaintClassifier
from classifier.text import ComplaintTokenizer, normalize

__all__ = ["SYSTEMS", "make_system", "FASTTEXT_PARAMS"]

# fastText's recommended supervised settings for small text-classification sets (the library's tutorial:
# more epochs, a higher learning rate and word bigrams), on both cores
FASTTEXT_PARAMS: dict[str, dict[str, Any]] = {
    "fasttext-word": {"epoch": 25, "lr": 0.5, "wordNgrams": 2, "dim": 100, "minCount": 1, "thread": 2, "seed": 0},
    "fasttext-char": {"epoch": 25, "lr": 0.5, "wordNgrams": 3, "dim": 100, "minCount": 1, "thread": 2, "seed": 0},
}


class Ours:
    name = "ours"

    def __init__(self, config: TrainingConfig | None = None) -> None:
        self.config = config or TrainingConfig()

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> Ours:
        self.model = ComplaintClassifier(self.config).fit(list(texts), {"category": list(labels)})
        self.classes_ = np.asarray(self.model.classes("category"), dtype=object)
        return self

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.predict_proba(list(texts), "category")

    def predict_one(self, text: str) -> str:
        return self.model.predict_details([text], top_k=3)[0]["category"]["label"]

    def predict_batch(self, texts: Sequence[str]) -> list[str]:
        return self.model.predict(list(texts))["category"]

    def save(self, path: str) -> None:
        import joblib

        joblib.dump(self.model, path, compress=3)  # what ModelStore.save writes


class _Jieba:
    """The same normalization and jieba segmentation as ours, as space-joined tokens."""

    def __init__(self) -> None:
        self.tokenizer = ComplaintTokenizer()

    def __call__(self, text: str) -> str:
        return " ".join(self.tokenizer(text))


def _chars(text: str) -> str:
    return " ".join(normalize(text).replace(" ", ""))


class FastText:
    def __init__(self, name: str) -> None:
        self.name = name
        self.params = FASTTEXT_PARAMS[name]
        self.prepare = _Jieba() if name == "fasttext-word" else _chars

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> FastText:
        import fasttext

        self.classes_ = np.asarray(sorted(set(labels)), dtype=object)
        self._index = {c: i for i, c in enumerate(self.classes_)}
        fd, path = tempfile.mkstemp(suffix=".txt")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                for t, y in zip(texts, labels):
                    fh.write(f"__label__{y.replace(' ', '_')} {self.prepare(t)}\n")
            self.model = fasttext.train_supervised(input=path, verbose=0, **self.params)
        finally:
            os.unlink(path)
        self._labels = {f"__label__{c.replace(' ', '_')}": c for c in self.classes_}
        return self

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        k = len(self.classes_)
        out = np.zeros((len(texts), k))
        predict = self.model.f.predict
        for i, t in enumerate(texts):
            for p, lab in predict(self.prepare(t) + "\n", k, 0.0, "strict"):
                out[i, self._index[self._labels[lab]]] = p
        return out

    def predict_one(self, text: str) -> str:
        (_, label), = self.model.f.predict(self.prepare(text) + "\n", 1, 0.0, "strict")
        return self._labels[label]

    def predict_batch(self, texts: Sequence[str]) -> list[str]:
        lines = [self.prepare(t) + "\n" for t in texts]
        labels, _ = self.model.f.multilinePredict(lines, 1, 0.0, "strict")
        return [self._labels[x[0]] for x in labels]

    def save(self, path: str) -> None:
        self.model.save_model(path)


class Baseline:
    name = "sklearn-baseline"

    def __init__(self) -> None:
        self.prepare = _Jieba()

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> Baseline:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import make_pipeline
        from sklearn.svm import LinearSVC

        self.model = make_pipeline(TfidfVectorizer(), LinearSVC())
        self.model.fit([self.prepare(t) for t in texts], list(labels))
        self.classes_ = np.asarray(self.model.classes_, dtype=object)
        return self

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        s = self.model.decision_function([self.prepare(t) for t in texts])
        return s if s.ndim == 2 else np.column_stack([-s, s])

    def predict_one(self, text: str) -> str:
        return str(self.model.predict([self.prepare(text)])[0])

    def predict_batch(self, texts: Sequence[str]) -> list[str]:
        return [str(x) for x in self.model.predict([self.prepare(t) for t in texts])]

    def save(self, path: str) -> None:
        import joblib

        joblib.dump(self.model, path, compress=3)


SYSTEMS = ("ours", "fasttext-word", "fasttext-char", "sklearn-baseline")


def make_system(name: str, config: TrainingConfig | None = None) -> Any:
    if name == "ours":
        return Ours(config)
    if name in FASTTEXT_PARAMS:
        return FastText(name)
    if name == "sklearn-baseline":
        return Baseline()
    raise ValueError(f"unknown system {name!r}; choose from {list(SYSTEMS)}")
