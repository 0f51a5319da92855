"""train(): validation report, hold-out metrics, and the manifest written by save_model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score

from classifier.store import ModelStore
from tests.conftest import tiny_config
from training.demo import DEMO_CORPUS
from training.metrics import classification_metrics, top_k_accuracy
from training.train import fit_and_measure, save_model, train

FAST = {"model.calibration_folds": 3}


@pytest.fixture(scope="module")
def corpus() -> pd.DataFrame:
    return pd.read_csv(DEMO_CORPUS)


@pytest.fixture(scope="module")
def category_model(corpus):
    config = tiny_config(test_size=0.2, min_class_count=3, **FAST)
    return train(corpus, text="text", targets={"category": "category"}, config=config, progress=False)


def test_train_attaches_report_and_holdout_metrics(category_model, corpus):
    report = category_model.validation_report
    assert report.rows_read == len(corpus)
    assert report.rows_used == len(corpus) - sum(report.dropped.values())
    m = category_model.metrics["category"]
    assert m["split"] == "holdout"
    assert m["n"] == pytest.approx(0.2 * report.rows_used, abs=1)
    assert 0.7 <= m["accuracy"] <= 1.0
    assert m["top3_accuracy"] >= m["accuracy"]
    assert sum(c["support"] for c in m["per_class"].values()) == m["n"]
    assert set(m["per_class"]) == set(corpus["category"])


def test_holdout_metrics_equal_sklearn_on_the_same_predictions(corpus):
    clean = corpus.rename(columns={"category": "category"})
    idx = np.arange(len(clean))
    train_idx, test_idx = idx[idx % 5 != 0], idx[idx % 5 == 0]
    model, metrics = fit_and_measure(clean, train_idx, test_idx, ["category"], tiny_config(**FAST))
    test = clean.iloc[test_idx]
    pred = model.predict(test["text"].tolist())["category"]
    assert metrics["category"]["accuracy"] == pytest.approx(accuracy_score(test["category"], pred))
    labels = sorted(set(test["category"]) | set(pred))
    assert metrics["category"]["macro_f1"] == pytest.approx(
        f1_score(test["category"], pred, labels=labels, average="macro")
    )


def test_calibration_on_the_demo_holdout(corpus):
    """Scores are usable as probabilities: confidence tracks accuracy (expected calibration error < 0.1)."""
    idx = np.arange(len(corpus))
    train_idx, test_idx = idx[idx % 4 != 0], idx[idx % 4 == 0]
    model, _ = fit_and_measure(corpus, train_idx, test_idx, ["category"], tiny_config(**FAST))
    test = corpus.iloc[test_idx]
    proba = model.predict_proba(test["text"].tolist(), "category")
    conf = proba.max(axis=1)
    correct = np.array(model.classes("category"))[proba.argmax(axis=1)] == test["category"].to_numpy()
    bins = np.minimum((conf * 10).astype(int), 9)
    ece = sum(abs(conf[bins == b].mean() - correct[bins == b].mean()) * (bins == b).mean()
              for b in range(10) if (bins == b).any())
    assert ece < 0.1


def test_top_k_and_metrics_helpers():
    proba = np.array([[0.6, 0.3, 0.1], [0.2, 0.3, 0.5]])
    classes = ["a", "b", "c"]
    assert top_k_accuracy(["b", "a"], proba, classes, k=1) == 0.0
    assert top_k_accuracy(["b", "a"], proba, classes, k=2) == 0.5
    assert top_k_accuracy(["zzz", "c"], proba, classes, k=3) == 0.5  # a label the model never saw is a miss
    m = classification_metrics(["a", "c"], proba, classes)
    assert m["accuracy"] == 1.0 and m["per_class"]["a"]["support"] == 1


def test_cross_validation_reports_mean_and_folds(corpus):
    small = corpus[corpus["category"].isin(["交通秩序", "供暖供热", "教育"])]
    config = tiny_config(test_size=0.0, cv_folds=3, min_class_count=3, **FAST)
    model = train(small, targets={"category": "category"}, config=config, progress=False)
    cv = model.metrics["category"]["cv"]
    assert len(cv["accuracy"]["folds"]) == 3
    assert cv["accuracy"]["mean"] == pytest.approx(np.mean(cv["accuracy"]["folds"]))


def test_save_model_writes_fingerprint_report_and_dictionaries(tmp_path, corpus):
    from training.demo import demo_config

    small = corpus.groupby("category").head(6)
    config = demo_config(test_size=0.0, **FAST)
    model = train(small, targets={"category": "category", "agency": "agency"}, config=config, progress=False)
    store = ModelStore(tmp_path)
    version = save_model(model, store)
    folder = tmp_path / version
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["data"]["rows"] == len(small)
    assert manifest["data"]["columns"] == {"text": "text", "category": "category", "agency": "agency"}
    assert len(manifest["data"]["sha256"]) == 64
    assert sum(manifest["labels"]["category"].values()) == len(small)
    assert manifest["dictionaries"]["user_dict_sha256"] == model.vectorizer_.tokenizer.user_dict_sha256
    assert {"model.joblib", "validation_report.json", "user_dict.txt", "stop_words.txt"} <= set(manifest["files"])
    report = json.loads((folder / "validation_report.json").read_text(encoding="utf-8"))
    assert report["rows_read"] == len(small)
    # the fingerprint depends on the content only (a copy of the frame gives the same one)
    again = train(small.copy(), targets={"category": "category", "agency": "agency"}, config=config, progress=False)
    assert again.training_data["sha256"] == manifest["data"]["sha256"]
