"""Large inputs are tokenized in parallel processes; the result must equal the serial path exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd

from classifier import corpus, features
from classifier.features import ComplaintVectorizer, analyze_many
from training.demo import DEMO_CORPUS


def test_parallel_tokenization_equals_serial(monkeypatch):
    texts = pd.read_csv(DEMO_CORPUS)["text"].tolist()[:1200]
    serial_vec = ComplaintVectorizer(n_jobs=1)
    serial = analyze_many(serial_vec, texts, n_jobs=1)
    monkeypatch.setattr(features, "_PARALLEL_MIN_CHARS", 1)  # force the parallel path on a small input
    monkeypatch.setattr(corpus, "PARALLEL_MIN_CHARS", 1)
    monkeypatch.setattr(corpus, "CHUNK_TEXTS", 250)  # several chunks, analyzed by two processes
    parallel = analyze_many(ComplaintVectorizer(n_jobs=2), texts, n_jobs=2)
    assert parallel == serial
    X1 = ComplaintVectorizer(n_jobs=1).fit_transform(texts)
    X2 = ComplaintVectorizer(n_jobs=2).fit_transform(texts)
    assert (X1 != X2).nnz == 0


def test_progress_bar_shows_on_request(capsys):
    vec = ComplaintVectorizer(progress=True)
    vec.fit_transform(["路灯不亮", "井盖丢了"])
    err = capsys.readouterr().err
    assert "tokenizing" in err
    quiet = ComplaintVectorizer(progress=False)
    quiet.fit_transform(["路灯不亮", "井盖丢了"])
    assert capsys.readouterr().err == ""
    assert np.isfinite(quiet.idf_).all()
