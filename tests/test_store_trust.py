"""The model store under attack and under load (issue 15, sections 2.6 and 3): concurrent writers, signed
manifests, linked or renamed version folders, files that unpickle to something that is not a model."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import pickle
from pathlib import Path

import joblib
import pytest

from benchmarks.serve_null_model import NullModel
from classifier.errors import (
    ConfigError,
    ModelIntegrityError,
    ModelSignatureError,
    ModelStoreLockedError,
    ModelTypeError,
)
from classifier.store import SIGNING_KEY_ENV, ModelStore
from training.cli import main

KEY = "3f9c1a7be04d2e58a6c9017fb3d4e2a1c5b8f0e6d7a9b2c4"
OTHER_KEY = "b7e2d4c6a8f0e1d3c5b7a9f2e4d6c8b0a1f3e5d7c9b2a4f6"
DATA = {"data": {"sha256": "abc123" * 10}, "targets": NullModel.targets_}  # every save: the same 6-char suffix


@pytest.fixture(autouse=True)
def no_key_from_the_environment(monkeypatch):
    monkeypatch.delenv(SIGNING_KEY_ENV, raising=False)


# -- concurrency (3.1) ----------------------------------------------------------------------------------------
def _save_and_promote(path: str, n: int, queue: mp.Queue) -> None:
    store = ModelStore(path)
    out = []
    try:
        for _ in range(n):
            out.append(store.save(NullModel(), DATA, promote=True))
    except BaseException as exc:  # report it to the test rather than dying silently
        queue.put(("error", f"{type(exc).__name__}: {exc}"))
        return
    queue.put(("ok", out))


def test_parallel_processes_saving_and_promoting_lose_nothing(tmp_path):
    """8 processes x 6 saves, each promoted, all with the same data fingerprint (ids that would collide in the
    same millisecond): every save lands under its own id and every promotion is in HISTORY.json."""
    path = str(tmp_path / "models")
    ctx = mp.get_context("fork")
    queue: mp.Queue = ctx.Queue()
    procs = [ctx.Process(target=_save_and_promote, args=(path, 6, queue)) for _ in range(8)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    errors = [r for status, r in results if status == "error"]
    assert errors == []
    saved = [v for _, versions in results for v in versions]
    store = ModelStore(path)
    assert len(saved) == len(set(saved)) == 48
    assert store.versions() == sorted(saved)
    history = store.history()
    assert sorted(history) == sorted(saved)  # each promotion recorded once, none lost
    assert store.current() == history[-1]
    for version in saved:  # and each folder holds its own manifest
        assert store.manifest(version)["version"] == version


def test_a_writer_waits_for_the_lock_and_gives_up_with_a_clear_error(tmp_path):
    holder = ModelStore(tmp_path / "models")
    first = holder.save(NullModel(), DATA)
    impatient = ModelStore(tmp_path / "models", lock_timeout=0.2)
    with holder._lock.held():
        with pytest.raises(ModelStoreLockedError, match=r"stayed locked for 0 s by another process .* retry"):
            impatient.save(NullModel(), DATA, promote=True)
        with pytest.raises(ModelStoreLockedError):
            impatient.promote(first)
    assert holder.versions() == [first]  # the refused save left nothing behind
    assert [p.name for p in holder.path.iterdir() if p.name.startswith(".saving")] == []


# -- a store file that is not a model (2.6) -------------------------------------------------------------------
def test_a_version_that_unpickles_to_a_dict_is_refused_clearly(tmp_path):
    store = ModelStore(tmp_path / "models")
    version = store.save({"manifest": "not a model"}, DATA)
    with pytest.raises(ModelTypeError, match=rf"'{version}': model.joblib holds a builtins.dict, not a model "
                                             r"\(expected an object with predict_details, targets_"):
        store.load(version)
    assert main(["predict", "路灯坏了", "--store", str(store.path)]) == 2


# -- signed manifests (3.2) -----------------------------------------------------------------------------------
class _Payload:
    """What an attacker puts in a pickle: unpickling it creates a file (stands in for any command)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (self.marker,))


def _replace_pickle_and_fix_its_hash(store: ModelStore, version: str, marker: Path) -> None:
    import hashlib

    folder = store.path / version
    (folder / "model.joblib").write_bytes(pickle.dumps(_Payload(marker)))
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    manifest["files"]["model.joblib"] = hashlib.sha256((folder / "model.joblib").read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def test_with_a_key_a_replaced_pickle_with_its_hash_updated_never_runs(tmp_path, monkeypatch):
    store = ModelStore(tmp_path / "models", signing_key=KEY)
    version = store.save(NullModel(), DATA)
    assert store.manifest(version)["signature"]["algorithm"] == "hmac-sha256"
    assert store.load(version).model.targets_ == NullModel.targets_
    marker = tmp_path / "payload-ran"
    _replace_pickle_and_fix_its_hash(store, version, marker)
    with pytest.raises(ModelSignatureError, match=rf"'{version}': its manifest does not match its signature"):
        store.load(version)
    monkeypatch.setenv(SIGNING_KEY_ENV, KEY)  # `hotline predict` takes the key from the environment
    assert main(["predict", "路灯坏了", "--store", str(store.path)]) == 2
    assert not marker.exists()
    # what the README says the store cannot catch without a key: the sha256s match, so the pickle runs
    monkeypatch.delenv(SIGNING_KEY_ENV)
    with pytest.raises(ModelTypeError):
        ModelStore(store.path).load(version)
    assert marker.exists()


def test_with_a_key_unsigned_and_otherly_signed_versions_are_refused_until_signed(tmp_path, monkeypatch, capsys):
    path = tmp_path / "models"
    unsigned = ModelStore(path).save(NullModel(), DATA)
    other = ModelStore(path, signing_key=OTHER_KEY).save(NullModel(), DATA)
    store = ModelStore(path, signing_key=KEY)
    with pytest.raises(ModelSignatureError, match=rf"'{unsigned}' is not signed, and {SIGNING_KEY_ENV} is set.*"
                                                  rf"hotline models sign {unsigned}"):
        store.load(unsigned)
    with pytest.raises(ModelSignatureError, match=rf"'{other}' was signed with another key"):
        store.load(other)
    with pytest.raises(ModelSignatureError, match="not signed"):
        store.promote(unsigned)
    assert ModelStore(path).load(other).version == other  # without a key signatures are not checked
    monkeypatch.setenv(SIGNING_KEY_ENV, KEY)
    assert main(["models", "sign", unsigned, "--store", str(path)]) == 0
    assert store.load(unsigned).version == unsigned
    rows = {r["version"]: r for r in store.summary()}
    assert "error" not in rows[unsigned] and "signed with another key" in rows[other]["error"]
    capsys.readouterr()


def test_signing_refuses_a_version_whose_files_changed(tmp_path):
    store = ModelStore(tmp_path / "models")
    version = store.save(NullModel(), DATA)
    model_file = store.path / version / "model.joblib"
    model_file.write_bytes(model_file.read_bytes() + b"\0")
    with pytest.raises(ModelIntegrityError, match="model.joblib has sha256"):
        ModelStore(store.path, signing_key=KEY).sign(version)
    with pytest.raises(ConfigError, match="signing needs a key"):
        store.sign(version)


@pytest.mark.parametrize("key", ["short-key", "a" * 40, "abababababababababababababababab"])
def test_weak_signing_keys_are_refused(tmp_path, monkeypatch, capsys, key):
    with pytest.raises(ConfigError, match=rf"{SIGNING_KEY_ENV} must be a random secret of at least 32 characters"):
        ModelStore(tmp_path, signing_key=key).save(NullModel(), DATA)
    assert not any(tmp_path.iterdir())  # refused before anything was written
    version = ModelStore(tmp_path).save(NullModel(), DATA)
    monkeypatch.setenv(SIGNING_KEY_ENV, key)
    assert main(["predict", "路灯坏了", "--store", str(tmp_path)]) == 2
    assert main(["models", "sign", version, "--store", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count(f"error: {SIGNING_KEY_ENV} must be a random secret") == 2 and key not in err


def test_a_linked_version_folder_is_neither_listed_nor_served(tmp_path):
    outside = ModelStore(tmp_path / "elsewhere")
    version = outside.save(NullModel(), DATA)
    store = ModelStore(tmp_path / "models")
    kept = store.save(NullModel(), DATA)
    os.symlink(outside.path / version, store.path / version)
    assert store.versions() == [kept]
    with pytest.raises(ModelIntegrityError, match=rf"'{version}' in store .* is a symbolic link"):
        store.load(version)
    with pytest.raises(ModelIntegrityError, match="symbolic link"):
        store.promote(version)
    (store.path / "CURRENT").write_text(version + "\n", encoding="utf-8")  # a pointer edited by hand
    with pytest.raises(ModelIntegrityError, match="symbolic link"):
        store.load()
    rows = {r["version"]: r for r in store.summary()}
    assert "symbolic link" in rows[version]["error"]


def test_a_linked_file_inside_a_version_is_refused(tmp_path):
    store = ModelStore(tmp_path / "models")
    version = store.save(NullModel(), DATA)
    real = tmp_path / "model.joblib"
    (store.path / version / "model.joblib").rename(real)
    os.symlink(real, store.path / version / "model.joblib")
    with pytest.raises(ModelIntegrityError, match="model.joblib is a symbolic link"):
        store.load(version)


def test_a_renamed_version_folder_is_refused(tmp_path):
    store = ModelStore(tmp_path / "models")
    version = store.save(NullModel(), DATA)
    (store.path / version).rename(store.path / "99991231-000000.000-abc123")
    with pytest.raises(ModelIntegrityError, match=rf"folder '99991231-000000.000-abc123' holds the manifest of "
                                                  rf"model version '{version}'"):
        store.load("99991231-000000.000-abc123")
    with pytest.raises(ModelIntegrityError, match="holds the manifest"):
        store.load("latest")


def test_the_unpickled_bytes_are_the_hashed_bytes(tmp_path, monkeypatch):
    """The model file is read once: swapping it after the hash check cannot change what is unpickled."""
    store = ModelStore(tmp_path / "models")
    version = store.save(NullModel(), DATA)
    seen = []
    real_load = joblib.load

    def load(source, *args, **kwargs):  # noqa: ANN001, ANN202
        seen.append(source)
        return real_load(source, *args, **kwargs)

    monkeypatch.setattr(joblib, "load", load)
    store.load(version)
    assert len(seen) == 1 and not isinstance(seen[0], (str, Path))
