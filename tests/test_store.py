"""The versioned model store: manifest, verification before unpickling, promote/rollback, atomic saves."""

from __future__ import annotations

import json
import warnings

import joblib
import pytest

from classifier.errors import (
    CorruptModelError,
    ModelIntegrityError,
    ModelNotFoundError,
    ModelStoreError,
    ModelVersionError,
    ModelVersionWarning,
    NoCurrentModelError,
)
from classifier.store import ModelStore, library_versions
from training.train import save_model


@pytest.fixture()
def store(tmp_path) -> ModelStore:
    return ModelStore(tmp_path / "models")


def test_first_version_becomes_current_later_ones_only_when_promoted(store, tiny_model):
    v1 = save_model(tiny_model, store)
    assert store.current() == v1
    v2 = save_model(tiny_model, store)
    assert v2 != v1 and store.current() == v1
    assert store.versions() == [v1, v2]
    assert store.promote(v2) == v2 and store.current() == v2
    assert store.rollback() == v1 and store.current() == v1
    with pytest.raises(ModelStoreError, match="nothing to roll back to"):
        store.rollback()


def test_manifest_describes_the_model(store, tiny_model):
    version = save_model(tiny_model, store)
    m = store.manifest(version)
    assert m["version"] == version and m["format_version"] == 1
    assert m["targets"] == ["category", "agency"]
    assert set(m["labels"]["category"]) == {"交通秩序", "道路设施", "公共交通", "供暖供热"}
    assert m["config"]["max_text_length"] == 10_000
    assert m["versions"]["scikit-learn"] == library_versions()["scikit-learn"]
    assert {"python", "jieba", "numpy"} <= set(m["versions"])
    assert set(m["files"]) >= {"model.joblib"}
    assert all(len(h) == 64 for h in m["files"].values())


def test_tampered_model_file_is_refused_before_unpickling(store, tiny_model, monkeypatch):
    version = save_model(tiny_model, store)
    path = store.path / version / "model.joblib"
    path.write_bytes(path.read_bytes() + b"\x00")
    unpickled = []
    monkeypatch.setattr(joblib, "load", lambda *a, **k: unpickled.append(a))
    with pytest.raises(ModelIntegrityError, match=rf"model version '{version}': model.joblib has sha256 .* refusing"):
        store.load(version)
    assert unpickled == []


def test_missing_manifest_missing_file_and_bad_json_name_the_version(store, tiny_model):
    version = save_model(tiny_model, store)
    (store.path / version / "model.joblib").unlink()
    with pytest.raises(CorruptModelError, match=rf"'{version}' is incomplete: model.joblib is missing"):
        store.load(version)
    (store.path / version / "manifest.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(CorruptModelError, match=rf"manifest of model version '{version}' is not valid JSON"):
        store.load(version)
    (store.path / version / "manifest.json").unlink()
    with pytest.raises(CorruptModelError, match=rf"'{version}' .* incomplete: manifest.json is missing"):
        store.load(version)


def test_unknown_version_and_empty_store(store, tiny_model):
    with pytest.raises(NoCurrentModelError, match="does not exist; train a model first"):
        store.load()
    store.path.mkdir(parents=True)
    with pytest.raises(NoCurrentModelError, match="has no current model"):
        store.load()
    save_model(tiny_model, store)
    with pytest.raises(ModelNotFoundError, match="model version 'nope' not found"):
        store.load("nope")
    with pytest.raises(ModelNotFoundError, match="invalid version id"):
        store.load("../etc")


def test_library_version_skew_warns_or_refuses_when_strict(store, tiny_model):
    version = save_model(tiny_model, store)
    path = store.path / version / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["versions"]["scikit-learn"] = "0.0.1"
    path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.warns(ModelVersionWarning, match=r"scikit-learn 0.0.1 \(trained\) vs"):
        store.load(version)
    with pytest.raises(ModelVersionError, match="trained with different libraries"):
        store.load(version, strict=True)


def test_crash_mid_save_leaves_no_version_and_keeps_current(store, tiny_model, monkeypatch):
    v1 = save_model(tiny_model, store)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(joblib, "dump", crash)
    with pytest.raises(OSError, match="disk full"):
        save_model(tiny_model, store, promote=True)
    assert store.versions() == [v1] and store.current() == v1
    assert [p.name for p in store.path.iterdir() if p.name.startswith(".") and p.name != ".lock"] == []


def test_partial_folder_is_not_listed_and_summary_flags_broken_versions(store, tiny_model):
    version = save_model(tiny_model, store)
    (store.path / "half-written").mkdir()
    assert store.versions() == [version]
    (store.path / version / "manifest.json").write_text("[]", encoding="utf-8")
    rows = store.summary()
    assert rows[0]["version"] == version and "no 'files' section" in rows[0]["error"]


def test_loaded_model_predicts_without_warnings(store, tiny_model):
    version = save_model(tiny_model, store)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = store.load(version)
    assert loaded.model.predict(["李旺镇的空气能坏了"])["category"] == ["供暖供热"]
    assert loaded.manifest["version"] == version
