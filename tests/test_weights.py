"""A head's weights are rounded to float16 when it is fitted, stored as float16 and served as float32: the saved
model is half the size and predicts exactly as the model that was scored (classifier.weights)."""

from __future__ import annotations

import io
import pickle

import joblib
import numpy as np
import pandas as pd
import pytest

import classifier.model
from classifier.config import TrainingConfig
from classifier.model import ComplaintClassifier, TargetHead
from classifier.store import ModelStore
from classifier.weights import FORMAT, on_storage_grid, served, stored
from training.demo import DEMO_CORPUS
from training.train import save_model

TEXTS = ["解放东街红绿灯坏了两天，路口堵车", "小区暖气片一直不热，屋里才十几度", "出租车司机拒载还骂人",
         "楼下饭店油烟太大，窗户都不敢开"]


@pytest.fixture(scope="module")
def demo() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Eight demo categories (fused heads) and their agencies (a single SVM: many small agencies)."""
    df = pd.read_csv(DEMO_CORPUS)
    df = df[df["category"].isin(df["category"].value_counts().index[:8])].reset_index(drop=True)
    test = np.random.default_rng(0).random(len(df)) < 0.25
    return df[~test], df[test]


def _fit(train: pd.DataFrame) -> ComplaintClassifier:
    return ComplaintClassifier(TrainingConfig(min_class_count=1)).fit(
        train["text"].tolist(), {"category": train["category"].tolist(), "agency": train["agency"].tolist()})


@pytest.fixture(scope="module")
def model(demo) -> ComplaintClassifier:
    return _fit(demo[0])


def test_fitted_weights_are_float32_on_float16s_grid_and_pickle_as_float16(model):
    for name in ("category", "agency"):
        head = model.heads_[name]
        assert head.coef_.dtype == np.float32
        np.testing.assert_array_equal(head.coef_.astype(np.float16).astype(np.float32), head.coef_)
        state = head.__getstate__()
        compact = state["coef_"]  # the non-zero weights' two bytes apart, and a bit per weight saying which
        assert compact["format"] == FORMAT and tuple(compact["shape"]) == head.coef_.shape
        nonzero = int(np.count_nonzero(head.coef_))
        assert len(compact["low_bytes"]) == len(compact["high_bytes"]) == nonzero < head.coef_.size
        assert compact["nonzero"].nbytes == -(-head.coef_.size // 8) and state["intercept_"].dtype == np.float32
        assert head.coef_.dtype == np.float32  # pickling leaves the live head alone
    assert model.heads_["category"].describe()["kind"] == "fused"
    assert model.heads_["agency"].describe()["kind"] == "svm"


def test_the_store_holds_float16_weights_and_the_file_is_smaller(model, tmp_path, monkeypatch):
    store = ModelStore(tmp_path / "half")
    version = save_model(model, store)
    path = store.path / version / "model.joblib"
    # read the file's arrays without TargetHead.__setstate__: what is on disk
    monkeypatch.setattr(TargetHead, "__setstate__", lambda self, state: self.__dict__.update(state))
    raw = joblib.load(path)
    assert raw.heads_["category"].coef_["format"] == FORMAT
    monkeypatch.undo()
    monkeypatch.setattr(classifier.model, "stored", lambda coef: coef)  # as saved before: float32
    wide = ModelStore(tmp_path / "wide")
    wide_path = wide.path / save_model(model, wide) / "model.joblib"
    assert path.stat().st_size < 0.85 * wide_path.stat().st_size


def test_a_saved_and_loaded_model_predicts_exactly_what_the_fitted_one_did(model, tmp_path):
    """Tolerance 0: the loaded weights are the fitted ones bit for bit, on both paths (batch and one text)."""
    store = ModelStore(tmp_path)
    loaded = store.load(save_model(model, store)).model
    for name in ("category", "agency"):
        np.testing.assert_array_equal(loaded.heads_[name].coef_, model.heads_[name].coef_)
        assert loaded.heads_[name].coef_.dtype == np.float32
        np.testing.assert_array_equal(loaded.predict_proba(TEXTS, name), model.predict_proba(TEXTS, name))
        assert loaded.predict(TEXTS)[name] == model.predict(TEXTS)[name]
    for text in TEXTS:
        assert loaded.predict_one(text, top_k=3) == model.predict_one(text, top_k=3)


def test_rounding_to_float16_changes_no_label_and_probabilities_by_under_0_001(demo, model, monkeypatch):
    """The quantization's cost, against the same fit with float32 weights, on the held-out demo cases."""
    monkeypatch.setattr(classifier.model, "on_storage_grid", lambda coef: np.asarray(coef, dtype=np.float32))
    full = _fit(demo[0])
    assert any(not np.array_equal(full.heads_[n].coef_, model.heads_[n].coef_) for n in ("category", "agency"))
    texts = demo[1]["text"].tolist()
    for name in ("category", "agency"):
        np.testing.assert_allclose(model.predict_proba(texts, name), full.predict_proba(texts, name), atol=1e-3)
        assert model.predict(texts)[name] == full.predict(texts)[name]


def test_weights_off_the_grid_or_out_of_range_are_stored_as_they_are():
    """A head pickled before float16 storage (float32 weights anywhere) loads and re-saves unchanged."""
    rng = np.random.default_rng(0)
    old = rng.normal(size=(50, 3)).astype(np.float32)  # off float16's grid, like every weight fitted before
    assert stored(old) is old
    big = np.array([[1e6, -1.0]], dtype=np.float32)
    assert stored(big) is big and np.array_equal(on_storage_grid(big)[0], [1e6, -1.0])
    assert stored(np.array([[np.nan]], dtype=np.float32)).dtype == np.float32
    assert served(old) is old and served(None) is None
    on_grid = on_storage_grid(np.array([[0.0, -0.0, 1e-9, 3.14159], [65504.0, -2.5, 0.0, 1e-5]], dtype=np.float32))
    back = served(pickle.loads(pickle.dumps(stored(on_grid))))
    assert back.dtype == np.float32 and np.array_equal(back, on_grid)
    assert served(on_grid.astype(np.float16)).dtype == np.float32  # a plain float16 array reads too
    head = TargetHead()
    head.classes_ = np.array(["a", "b", "c"])
    head.coef_, head.intercept_, head.temperature_ = old, np.zeros(3, dtype=np.float32), 1.0
    again = pickle.loads(pickle.dumps(head))
    assert again.coef_.dtype == np.float32 and np.array_equal(again.coef_, old)
    buf = io.BytesIO()
    joblib.dump(head, buf, compress=3)
    buf.seek(0)
    assert np.array_equal(joblib.load(buf).coef_, old)


def test_a_model_saved_with_float32_weights_loads_and_predicts_as_it_did(model, tmp_path, monkeypatch):
    """An older store's version: float32 weights in the file, loaded and served as they were."""
    old = pickle.loads(pickle.dumps(model))
    for head in old.heads_.values():
        head.coef_ = head.coef_ + np.float32(1e-7) * (head.coef_ != 0)  # off the grid, as before this change
    store = ModelStore(tmp_path)
    with monkeypatch.context() as patch:
        patch.setattr(classifier.model, "stored", lambda coef: coef)
        version = save_model(old, store)
    loaded = store.load(version).model
    for name in ("category", "agency"):
        assert np.array_equal(loaded.heads_[name].coef_, old.heads_[name].coef_)
        np.testing.assert_array_equal(loaded.predict_proba(TEXTS, name), old.predict_proba(TEXTS, name))
