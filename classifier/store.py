"""The versioned model store: save, verify, load, promote, roll back.

Layout of a store (default ``models/``)::

    models/
      CURRENT                      the current version id (replaced atomically)
      HISTORY.json                 the versions that have been current, oldest first (for rollback)
      20261128-204512-3fa9c1/      one folder per training run
        model.joblib
        manifest.json              version, created, data fingerprint, config, labels, metrics, versions, sha256s
        validation_report.json
        user_dict.txt, stop_words.txt   the dictionaries the model embeds, when it has them

A version folder is written under a temporary name and renamed into place, so a crash never leaves a half
written version; a pickle runs code when loaded, so ``load`` checks every file's sha256 before unpickling.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import secrets
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib

from .errors import (
    CorruptModelError,
    ModelIntegrityError,
    ModelNotFoundError,
    ModelStoreError,
    ModelVersionError,
    ModelVersionWarning,
    NoCurrentModelError,
)

__all__ = ["ModelStore", "StoredModel", "library_versions", "default_store_path", "FORMAT_VERSION"]

FORMAT_VERSION = 1
MODEL_FILE = "model.joblib"
MANIFEST = "manifest.json"
CURRENT = "CURRENT"
HISTORY = "HISTORY.json"
_CHECKED_LIBRARIES = ("scikit-learn", "jieba", "numpy", "scipy")


def default_store_path() -> Path:
    """``$HOTLINE_MODEL_STORE`` if set, else ``models/``."""
    return Path(os.environ.get("HOTLINE_MODEL_STORE") or "models")


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in _CHECKED_LIBRARIES + ("joblib",):
        try:
            out[name] = version(name)
        except PackageNotFoundError:  # pragma: no cover - all are dependencies
            out[name] = "missing"
    return out


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


@dataclass(frozen=True)
class StoredModel:
    """A model loaded from the store, with the manifest it was verified against."""

    version: str
    path: Path
    model: Any
    manifest: dict[str, Any]


class ModelStore:
    """A folder of model versions with a pointer to the current one."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_store_path()

    def __repr__(self) -> str:
        return f"ModelStore({str(self.path)!r})"

    # -- reading --------------------------------------------------------------------------------------------
    def versions(self) -> list[str]:
        """Complete version folders (those with a manifest), oldest first."""
        if not self.path.is_dir():
            return []
        return sorted(
            p.name for p in self.path.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).exists()
        )

    def current(self) -> str | None:
        pointer = self.path / CURRENT
        if not pointer.exists():
            return None
        version = pointer.read_text(encoding="utf-8").strip()
        return version or None

    def history(self) -> list[str]:
        path = self.path / HISTORY
        if not path.exists():
            return []
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise CorruptModelError(f"{path} is not valid JSON ({exc}); fix or delete it") from None
        return [str(v) for v in data]

    def _version_dir(self, version: str) -> Path:
        if not version or "/" in version or "\\" in version or version.startswith("."):
            raise ModelNotFoundError(f"invalid version id {version!r}")
        path = self.path / version
        if not path.is_dir():
            known = ", ".join(self.versions()[-5:]) or "none"
            raise ModelNotFoundError(
                f"model version {version!r} not found in store {self.path} (latest versions: {known})"
            )
        return path

    def manifest(self, version: str) -> dict[str, Any]:
        path = self._version_dir(version) / MANIFEST
        if not path.exists():
            raise CorruptModelError(
                f"model version {version!r} in {self.path} is incomplete: {MANIFEST} is missing"
            )
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CorruptModelError(f"manifest of model version {version!r} is not valid JSON: {exc}") from None
        if not isinstance(manifest, dict) or "files" not in manifest:
            raise CorruptModelError(f"manifest of model version {version!r} has no 'files' section")
        return manifest

    def resolve(self, version: str | None = None) -> str:
        """``version`` itself, or the current version when None (``"current"`` and ``"latest"`` also work)."""
        if version in (None, "current"):
            current = self.current()
            if current is None:
                if not self.path.exists():
                    raise NoCurrentModelError(
                        f"model store {self.path} does not exist; train a model first (hotline train ... "
                        f"--store {self.path}) or run `hotline demo`"
                    )
                raise NoCurrentModelError(
                    f"model store {self.path} has no current model; train one or `hotline models promote VERSION`"
                )
            return current
        if version == "latest":
            versions = self.versions()
            if not versions:
                raise NoCurrentModelError(f"model store {self.path} has no versions")
            return versions[-1]
        return version

    def verify(self, version: str) -> dict[str, Any]:
        """Check every file against the manifest's sha256; return the manifest."""
        manifest = self.manifest(version)
        folder = self._version_dir(version)
        for name, expected in manifest["files"].items():
            path = folder / name
            if not path.exists():
                raise CorruptModelError(f"model version {version!r} is incomplete: {name} is missing")
            actual = _sha256_file(path)
            if actual != expected:
                raise ModelIntegrityError(
                    f"model version {version!r}: {name} has sha256 {actual[:16]}..., the manifest says "
                    f"{expected[:16]}...; the file was modified or damaged, refusing to load it"
                )
        if MODEL_FILE not in manifest["files"]:
            raise CorruptModelError(f"manifest of model version {version!r} does not list {MODEL_FILE}")
        return manifest

    def load(self, version: str | None = None, strict: bool = False) -> StoredModel:
        """Verify then unpickle a version (default: the current one).

        Library version skew against the manifest warns (``ModelVersionWarning``), or raises
        ``ModelVersionError`` with ``strict=True``.
        """
        version = self.resolve(version)
        manifest = self.verify(version)
        _check_versions(version, manifest.get("versions", {}), strict)
        path = self._version_dir(version)
        try:
            with warnings.catch_warnings():
                if not strict:
                    warnings.filterwarnings("ignore", message=".*Trying to unpickle estimator.*")
                model = joblib.load(path / MODEL_FILE)
        except Exception as exc:  # a verified file that still fails is an incompatible environment
            raise CorruptModelError(
                f"model version {version!r} passed its checksums but could not be unpickled: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        model.manifest = manifest
        return StoredModel(version=version, path=path, model=model, manifest=manifest)

    # -- writing --------------------------------------------------------------------------------------------
    def new_version_id(self, data_sha256: str = "") -> str:
        # milliseconds keep ids in creation order when several models are saved in one second (tests, tuning)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S.%f")[:-3]
        suffix = (data_sha256[:6] if data_sha256 else secrets.token_hex(3))
        version = f"{stamp}-{suffix}"
        n = 1
        while (self.path / version).exists():
            n += 1
            version = f"{stamp}-{suffix}-{n}"
        return version

    def save(
        self,
        model: Any,
        manifest: dict[str, Any],
        extra_files: dict[str, str] | None = None,
        promote: bool | None = None,
    ) -> str:
        """Write a new version atomically and return its id.

        ``manifest`` is completed with the version id, creation time, library versions and file hashes.
        ``promote``: make it current; by default only when the store has no current version yet.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        data_sha = str(manifest.get("data", {}).get("sha256", ""))
        version = self.new_version_id(data_sha)
        tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=self.path))
        try:
            joblib.dump(model, tmp / MODEL_FILE, compress=3)
            for name, text in (extra_files or {}).items():
                (tmp / name).write_text(text, encoding="utf-8")
            files = {p.name: _sha256_file(p) for p in sorted(tmp.iterdir())}
            full = {
                "format_version": FORMAT_VERSION,
                "version": version,
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                **manifest,
                "versions": library_versions(),
                "files": files,
            }
            (tmp / MANIFEST).write_text(json.dumps(full, ensure_ascii=False, indent=2), encoding="utf-8")
            for p in tmp.iterdir():
                with p.open("rb") as f:
                    os.fsync(f.fileno())
            os.rename(tmp, self.path / version)
            _fsync_dir(self.path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if promote or (promote is None and self.current() is None):
            self.promote(version)
        return version

    def promote(self, version: str) -> str:
        """Make ``version`` current (after verifying it); the old current is kept for ``rollback``."""
        self.verify(version)
        history = self.history()
        if not history or history[-1] != version:
            history.append(version)
        _write_atomic(self.path / HISTORY, json.dumps(history, ensure_ascii=False, indent=1))
        _write_atomic(self.path / CURRENT, version + "\n")
        return version

    def rollback(self) -> str:
        """Make the previously current version current again; return it."""
        history = self.history()
        current = self.current()
        if current is not None and history and history[-1] == current:
            history = history[:-1]
        while history and not (self.path / history[-1] / MANIFEST).exists():
            history.pop()  # versions deleted by hand since they were promoted
        if not history:
            raise ModelStoreError(f"nothing to roll back to in {self.path}: no earlier current version")
        previous = history[-1]
        self.verify(previous)
        _write_atomic(self.path / HISTORY, json.dumps(history, ensure_ascii=False, indent=1))
        _write_atomic(self.path / CURRENT, previous + "\n")
        return previous

    def summary(self) -> list[dict[str, Any]]:
        """One row per version for ``hotline models list``; broken versions are listed with their problem."""
        current = self.current()
        rows = []
        for version in self.versions():
            row: dict[str, Any] = {"version": version, "current": version == current}
            try:
                m = self.manifest(version)
                row["created"] = m.get("created")
                row["rows"] = m.get("data", {}).get("rows")
                row["targets"] = list(m.get("labels", {}))
                row["metrics"] = {
                    t: {k: v for k, v in (m.get("metrics", {}).get(t) or {}).items() if k in ("accuracy", "macro_f1")}
                    for t in m.get("labels", {})
                }
            except ModelStoreError as exc:
                row["error"] = str(exc)
            rows.append(row)
        return rows


def _check_versions(version: str, saved: dict[str, str], strict: bool) -> None:
    now = library_versions()
    skew = [
        f"{lib} {saved[lib]} (trained) vs {now.get(lib)} (installed)"
        for lib in _CHECKED_LIBRARIES
        if lib in saved and saved[lib] != now.get(lib)
    ]
    if not skew:
        return
    message = f"model version {version!r} was trained with different libraries: " + "; ".join(skew)
    if strict:
        raise ModelVersionError(message + ". Retrain it here, or load without --strict")
    warnings.warn(message + ". Predictions may differ; retrain to be sure", ModelVersionWarning, stacklevel=3)
