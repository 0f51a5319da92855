"""The versioned model store: save, verify, load, promote, roll back.

Layout of a store (default ``models/``)::

    models/
      CURRENT                      the current version id (replaced atomically)
      HISTORY.json                 the versions that have been current, oldest first (for rollback)
      TAGS.json                    names data staff gave versions (``hotline models tag VERSION 2024-winter``)
      NOTES.json                   a note per version (``hotline train --note``, ``hotline models note``)
      20261128-204512-3fa9c1/      one folder per training run
        model.joblib
        manifest.json              version, created, data fingerprint, config, labels, metrics, versions, sha256s
        validation_report.json
        user_dict.txt, stop_words.txt   the dictionaries the model embeds, when it has them

A version folder is written under a temporary name and renamed into place, so a crash never leaves a half
written version; a pickle runs code when loaded, so ``load`` checks every file's sha256 before unpickling (and
unpickles the very bytes it hashed).  Writers (save, promote, rollback, sign) take an exclusive lock on
``<store>/.lock`` while they pick a version id and update ``CURRENT`` / ``HISTORY.json``, so processes that save
at the same moment neither collide nor lose a promotion.

With a signing key (``HOTLINE_STORE_SIGNING_KEY``), every saved manifest carries an HMAC-SHA256 of its content
(which holds every file's sha256), and loading refuses versions that are unsigned, signed with another key or
changed since: a replaced pickle whose hash was updated in the manifest is refused before it is unpickled.
Version folders that are symbolic links, or whose name is not the manifest's version, are always refused.

Wherever a version is asked for, ``resolve`` takes the id, a unique prefix of it, a tag, or one of the words
``current``, ``previous`` (the version that was current before it) and ``latest`` (the newest saved).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
import json
import os
import platform
import re
import secrets
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib

from .errors import (
    AmbiguousVersionError,
    ConfigError,
    CorruptModelError,
    ModelIntegrityError,
    ModelNotFoundError,
    ModelSignatureError,
    ModelStoreError,
    ModelStoreLockedError,
    ModelTypeError,
    ModelVersionError,
    ModelVersionWarning,
    NoCurrentModelError,
)

__all__ = ["ModelStore", "StoredModel", "library_versions", "default_store_path", "FORMAT_VERSION",
           "SIGNING_KEY_ENV", "MIN_SIGNING_KEY_LENGTH"]

FORMAT_VERSION = 1
MODEL_FILE = "model.joblib"
MANIFEST = "manifest.json"
CURRENT = "CURRENT"
HISTORY = "HISTORY.json"
LOCK = ".lock"
SIGNING_KEY_ENV = "HOTLINE_STORE_SIGNING_KEY"
MIN_SIGNING_KEY_LENGTH = 32
_SIGNATURE = "signature"
_SIGNATURE_ALGORITHM = "hmac-sha256"
TAGS = "TAGS.json"
NOTES = "NOTES.json"
VERSION_WORDS = ("current", "previous", "latest")  # names ``resolve`` reads itself; never tags
_TAG_NAME = re.compile(r"^[^\W_][\w.\-]{0,63}$")  # letters (Chinese too), digits, . _ -; starts with a letter/digit
MAX_NOTE_CHARS = 500
_CHECKED_LIBRARIES = ("scikit-learn", "jieba", "numpy", "scipy")
# what the service and the CLI call on a loaded model (training.train.save_model writes ComplaintClassifier or
# RoutedClassifier; benchmarks save a stand-in with the same API): anything else is refused after unpickling
_MODEL_API = ("predict_details", "targets_")


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


def _signing_key(value: str | None) -> bytes | None:
    """The key from ``value`` or ``$HOTLINE_STORE_SIGNING_KEY``; None when neither is set.  A short or repetitive
    key is refused: an HMAC is only as strong as a key nobody can guess."""
    key = value if value is not None else os.environ.get(SIGNING_KEY_ENV)
    if key is None or key == "":
        return None
    if len(key) < MIN_SIGNING_KEY_LENGTH or len(set(key)) < 8:
        raise ConfigError(
            f"{SIGNING_KEY_ENV} must be a random secret of at least {MIN_SIGNING_KEY_LENGTH} characters with at "
            f"least 8 different ones; got {len(key)} characters, {len(set(key))} different. Make one with "
            "`python -c 'import secrets; print(secrets.token_hex(32))'` and keep it out of the store"
        )
    return key.encode("utf-8")


def _key_id(key: bytes) -> str:
    """A short public name for a key (which key signed a version), derived so it reveals nothing usable."""
    return hmac.new(key, b"hotline-store-key-id", hashlib.sha256).hexdigest()[:12]


def _signed_bytes(manifest: dict[str, Any]) -> bytes:
    """The manifest as signed: canonical JSON of everything but the signature (which holds every file's sha256)."""
    body = {k: v for k, v in manifest.items() if k != _SIGNATURE}
    return json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _signature(manifest: dict[str, Any], key: bytes) -> dict[str, str]:
    return {"algorithm": _SIGNATURE_ALGORITHM, "key_id": _key_id(key),
            "value": hmac.new(key, _signed_bytes(manifest), hashlib.sha256).hexdigest()}


class _StoreLock:
    """An exclusive lock on ``<store>/.lock`` between processes (``flock``; ``msvcrt.locking`` on Windows).

    The kernel releases it when its holder exits, however it exits, so a crashed save never leaves the store
    locked.  Advisory: it orders this code's writers, not other programs that write into the store.
    """

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = path
        self.timeout = timeout

    @contextmanager
    def held(self) -> Iterator[None]:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + self.timeout
            pause = 0.002
            while not _try_lock(fd):
                if time.monotonic() > deadline:
                    raise ModelStoreLockedError(
                        f"model store {self.path.parent} stayed locked for {self.timeout:.0f} s by another process "
                        f"(saving or promoting a version; lock file {self.path}); retry when it has finished"
                    )
                time.sleep(pause)
                pause = min(pause * 2, 0.05)
            try:
                yield
            finally:
                _unlock(fd)
        finally:
            os.close(fd)


try:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

except ImportError:  # pragma: no cover - Windows
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class StoredModel:
    """A model loaded from the store, with the manifest it was verified against."""

    version: str
    path: Path
    model: Any
    manifest: dict[str, Any]


class ModelStore:
    """A folder of model versions with a pointer to the current one.

    ``signing_key``: the HMAC key that signs new manifests and that every loaded version must be signed with
    (default ``$HOTLINE_STORE_SIGNING_KEY``; unset: versions are saved unsigned and signatures are not checked).
    ``lock_timeout``: seconds a writer waits for another process's save or promotion to finish.
    """

    def __init__(self, path: str | Path | None = None, signing_key: str | None = None,
                 lock_timeout: float = 120.0) -> None:
        self.path = Path(path) if path is not None else default_store_path()
        self._signing_key = signing_key
        self._lock = _StoreLock(self.path / LOCK, lock_timeout)

    @property
    def _key(self) -> bytes | None:
        """The signing key, read and checked where it is first needed (a weak key fails that save or load with a
        ``ConfigError``, which the CLI and the service report as their other start-up errors)."""
        if "_key_bytes" not in self.__dict__:
            self._key_bytes = _signing_key(self._signing_key)
        return self._key_bytes

    def __repr__(self) -> str:
        return f"ModelStore({str(self.path)!r})"

    @property
    def signed(self) -> bool:
        """Whether this store signs new versions and refuses unsigned ones (a signing key is set)."""
        return self._key is not None

    @contextmanager
    def _writing(self) -> Iterator[None]:
        self.path.mkdir(parents=True, exist_ok=True)
        with self._lock.held():
            yield

    # -- reading --------------------------------------------------------------------------------------------
    def versions(self) -> list[str]:
        """Complete version folders (those with a manifest), oldest first; symbolic links are never versions."""
        return sorted(p.name for p in self._folders() if not p.is_symlink())

    def _folders(self) -> list[Path]:
        if not self.path.is_dir():
            return []
        return [p for p in self.path.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).exists()]

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
        if path.is_symlink():
            raise ModelIntegrityError(
                f"model version {version!r} in store {self.path} is a symbolic link (to {os.readlink(path)}); a "
                "version must be a real folder inside the store, refusing it. Copy the version into the store "
                "(or save it with `hotline train --store`) instead of linking it"
            )
        if not path.is_dir():
            known = ", ".join(self.versions()[-5:]) or "none"
            raise ModelNotFoundError(
                f"model version {version!r} not found in store {self.path} (latest versions: {known})"
            )
        return path

    def manifest(self, version: str) -> dict[str, Any]:
        """A version's parsed manifest, after checking that it names this folder (not the signature: ``verify``)."""
        path = self._version_dir(version) / MANIFEST
        if path.is_symlink():
            raise ModelIntegrityError(f"model version {version!r}: {MANIFEST} is a symbolic link; refusing it")
        if not path.exists():
            raise CorruptModelError(
                f"model version {version!r} in {self.path} is incomplete: {MANIFEST} is missing"
            )
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CorruptModelError(f"manifest of model version {version!r} is not valid JSON: {exc}") from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
            raise CorruptModelError(f"manifest of model version {version!r} has no 'files' section")
        if manifest.get("version") != version:
            raise ModelIntegrityError(
                f"folder {version!r} holds the manifest of model version {manifest.get('version')!r}: a version "
                "folder must keep the name it was saved under (renamed or copied under another name?); refusing it"
            )
        return manifest

    def _check_signature(self, version: str, manifest: dict[str, Any]) -> None:
        key = self._key
        if key is None:
            return
        sig = manifest.get(_SIGNATURE)
        if not isinstance(sig, dict) or not isinstance(sig.get("value"), str):
            raise ModelSignatureError(
                f"model version {version!r} is not signed, and {SIGNING_KEY_ENV} is set: only signed versions "
                f"load. If you trust this version's files, sign it: `hotline models sign {version}`"
            )
        if sig.get("algorithm") != _SIGNATURE_ALGORITHM:
            raise ModelSignatureError(
                f"model version {version!r} is signed with {sig.get('algorithm')!r}; this release checks "
                f"{_SIGNATURE_ALGORITHM!r} signatures only, refusing it"
            )
        if sig.get("key_id") != _key_id(key):
            raise ModelSignatureError(
                f"model version {version!r} was signed with another key (key id {sig.get('key_id')}; "
                f"{SIGNING_KEY_ENV} has key id {_key_id(key)}); refusing it. Set the key it was signed with, or "
                f"re-sign the version if you trust its files (`hotline models sign {version}`)"
            )
        expected = _signature(manifest, key)["value"]
        if not hmac.compare_digest(expected, sig["value"]):
            raise ModelSignatureError(
                f"model version {version!r}: its manifest does not match its signature: the manifest (or a file "
                "hash in it) was changed after the version was signed; refusing to load it"
            )

    def resolve(self, version: str | None = None) -> str:
        """The version id that ``version`` names: ``None`` or ``"current"`` (the current one), ``"previous"`` (the
        version that was current before it: what ``rollback`` returns to), ``"latest"`` (the newest saved), a
        version id, a tag (``tag``), or a unique prefix of a version id (tags win over prefixes)."""
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
        if version == "previous":
            return self._previous()
        assert version is not None
        versions = self.versions()
        if version in versions:
            return version
        tags = self.tags()
        if version in tags:
            target = tags[version]
            if target not in versions:
                raise ModelNotFoundError(f"tag {version!r} names version {target!r}, which is no longer in store "
                                         f"{self.path}; tag another version (`hotline models tag VERSION {version} "
                                         "--force`) or remove the tag (`hotline models untag`)")
            return target
        matches = [v for v in versions if v.startswith(version)] if version and not version.startswith(".") else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            shown = ", ".join(matches[:5]) + (f" and {len(matches) - 5} more" if len(matches) > 5 else "")
            raise AmbiguousVersionError(f"{version!r} is the start of {len(matches)} versions ({shown}); give more "
                                        "of the version id")
        return version  # not a known name: ``_version_dir`` says so, with the latest versions

    def _previous(self) -> str:
        current = self.current()
        earlier = [v for v in self.history() if v != current and (self.path / v / MANIFEST).exists()]
        if not earlier:
            raise ModelNotFoundError(f"model store {self.path} has no previous version: no other version has been "
                                     "current")
        return earlier[-1]

    # -- names and notes ------------------------------------------------------------------------------------
    def _read_json_map(self, name: str) -> dict[str, str]:
        path = self.path / name
        if not path.exists():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CorruptModelError(f"{path} is not valid JSON ({exc}); fix or delete it") from None
        if not isinstance(data, dict):
            raise CorruptModelError(f"{path} must hold a JSON object of names, got {type(data).__name__}")
        return {str(k): str(v) for k, v in data.items()}

    def tags(self) -> dict[str, str]:
        """Tag name -> version id."""
        return self._read_json_map(TAGS)

    def tag(self, version: str, name: str, force: bool = False) -> str:
        """Give ``version`` (any name ``resolve`` takes) the tag ``name``; return the version id.  A tag names one
        version: moving an existing tag needs ``force``."""
        if not isinstance(name, str) or not _TAG_NAME.match(name):
            raise ModelStoreError(f"tag {name!r} is not a usable name: use 1-64 letters, digits, '.', '_' or '-', "
                                  "starting with a letter or digit (e.g. 2024-winter)")
        if name in VERSION_WORDS:
            raise ModelStoreError(f"{name!r} already means a version ({', '.join(VERSION_WORDS)}); pick another tag")
        if name in self.versions():
            raise ModelStoreError(f"{name!r} is a version id; pick another tag")
        target = self.resolve(version)
        self.manifest(target)  # the version exists and is complete
        with self._writing():
            tags = self.tags()
            if name in tags and tags[name] != target and not force:
                raise ModelStoreError(f"tag {name!r} already names version {tags[name]}; pass --force (force=True) "
                                      f"to move it to {target}")
            tags[name] = target
            _write_atomic(self.path / TAGS, json.dumps(tags, ensure_ascii=False, indent=1, sort_keys=True))
        return target

    def untag(self, name: str) -> str:
        """Remove tag ``name``; return the version it named."""
        with self._writing():
            tags = self.tags()
            if name not in tags:
                known = ", ".join(sorted(tags)) or "none"
                raise ModelNotFoundError(f"no tag {name!r} in store {self.path} (tags: {known})")
            version = tags.pop(name)
            _write_atomic(self.path / TAGS, json.dumps(tags, ensure_ascii=False, indent=1, sort_keys=True))
        return version

    def tags_of(self, version: str) -> list[str]:
        return sorted(name for name, v in self.tags().items() if v == version)

    def notes(self) -> dict[str, str]:
        """Version id -> the note data staff wrote about it."""
        return self._read_json_map(NOTES)

    def set_note(self, version: str, note: str) -> str:
        """Store ``note`` for ``version`` (an empty note removes it); return the version id."""
        target = self.resolve(version)
        self.manifest(target)
        note = " ".join(str(note).split())
        if len(note) > MAX_NOTE_CHARS:
            raise ModelStoreError(f"a note has at most {MAX_NOTE_CHARS} characters, got {len(note)}; shorten it")
        with self._writing():
            notes = self.notes()
            if note:
                notes[target] = note
            else:
                notes.pop(target, None)
            _write_atomic(self.path / NOTES, json.dumps(notes, ensure_ascii=False, indent=1, sort_keys=True))
        return target

    def verify(self, version: str, _skip: str | None = None) -> dict[str, Any]:
        """Check the manifest's signature (when a signing key is set) and every file against the manifest's
        sha256; return the manifest."""
        version = self.resolve(version)
        manifest = self.manifest(version)
        self._check_signature(version, manifest)
        folder = self._version_dir(version)
        if MODEL_FILE not in manifest["files"]:
            raise CorruptModelError(f"manifest of model version {version!r} does not list {MODEL_FILE}")
        for name, expected in manifest["files"].items():
            if name == _skip:
                continue
            _check_hash(version, name, self._file(version, folder, name), expected)
        return manifest

    def _file(self, version: str, folder: Path, name: str) -> Path:
        path = folder / name
        if os.path.basename(name) != name or name.startswith("."):
            raise ModelIntegrityError(f"manifest of model version {version!r} lists {name!r}, not a file name")
        if path.is_symlink():
            raise ModelIntegrityError(
                f"model version {version!r}: {name} is a symbolic link; version files must be real files, refusing it"
            )
        if not path.exists():
            raise CorruptModelError(f"model version {version!r} is incomplete: {name} is missing")
        return path

    def load(self, version: str | None = None, strict: bool = False) -> StoredModel:
        """Verify then unpickle a version (default: the current one).

        Library version skew against the manifest warns (``ModelVersionWarning``), or raises
        ``ModelVersionError`` with ``strict=True``.
        """
        version = self.resolve(version)
        manifest = self.verify(version, _skip=MODEL_FILE)
        _check_versions(version, manifest.get("versions", {}), strict)
        path = self._version_dir(version)
        # the bytes that are unpickled are the bytes that were hashed: a file swapped after the check is not read
        payload = self._file(version, path, MODEL_FILE).read_bytes()
        _check_hash(version, MODEL_FILE, payload, manifest["files"][MODEL_FILE])
        try:
            with warnings.catch_warnings():
                if not strict:
                    warnings.filterwarnings("ignore", message=".*Trying to unpickle estimator.*")
                model = joblib.load(io.BytesIO(payload))
        except Exception as exc:  # a verified file that still fails is an incompatible environment
            raise CorruptModelError(
                f"model version {version!r} passed its checksums but could not be unpickled: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        missing = [name for name in _MODEL_API if not hasattr(model, name)]
        if missing:
            raise ModelTypeError(
                f"model version {version!r}: {MODEL_FILE} holds a {type(model).__module__}.{type(model).__qualname__}"
                f", not a model (expected an object with {', '.join(_MODEL_API)}, as `hotline train` saves; "
                f"missing {', '.join(missing)}); retrain it or promote another version"
            )
        try:
            model.manifest = manifest
        except AttributeError as exc:  # a model class with __slots__: it must take its manifest
            raise ModelTypeError(f"model version {version!r}: the model does not take a manifest ({exc})") from None
        return StoredModel(version=version, path=path, model=model, manifest=manifest)

    # -- writing --------------------------------------------------------------------------------------------
    def new_version_id(self, data_sha256: str = "") -> str:
        """A fresh id: UTC time to the millisecond, the data's fingerprint, and ``-2``, ``-3``... when that name
        is taken.  Unique only while the store's lock is held (``save`` picks it under the lock)."""
        # milliseconds keep ids in creation order when several models are saved in one second (tests, tuning)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S.%f")[:-3]
        suffix = (data_sha256[:6] if data_sha256 else secrets.token_hex(3))
        version = f"{stamp}-{suffix}"
        n = 1
        while (self.path / version).exists() or (self.path / version).is_symlink():
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

        ``manifest`` is completed with the version id, creation time, library versions and file hashes, and
        signed when the store has a signing key.  ``promote``: make it current; by default only when the store
        has no current version yet.  The slow part (pickling, hashing) runs outside the store's lock; picking
        the id, writing the manifest, renaming the folder into place and promoting run under it.
        """
        key = self._key  # a weak key is refused before anything is written
        self.path.mkdir(parents=True, exist_ok=True)
        data_sha = str(manifest.get("data", {}).get("sha256", ""))
        tmp = Path(tempfile.mkdtemp(prefix=".saving.", dir=self.path))
        try:
            joblib.dump(model, tmp / MODEL_FILE, compress=3)
            for name, text in (extra_files or {}).items():
                (tmp / name).write_text(text, encoding="utf-8")
            files = {p.name: _sha256_file(p) for p in sorted(tmp.iterdir())}
            for p in tmp.iterdir():
                with p.open("rb") as f:
                    os.fsync(f.fileno())
            with self._writing():
                version = self.new_version_id(data_sha)
                full = {
                    "format_version": FORMAT_VERSION,
                    "version": version,
                    "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    **manifest,
                    "versions": library_versions(),
                    "files": files,
                }
                if key is not None:
                    full[_SIGNATURE] = _signature(full, key)
                with (tmp / MANIFEST).open("w", encoding="utf-8") as f:
                    f.write(json.dumps(full, ensure_ascii=False, indent=2))
                    f.flush()
                    os.fsync(f.fileno())
                os.rename(tmp, self.path / version)
                _fsync_dir(self.path)
                if promote or (promote is None and self.current() is None):
                    self._promote(version)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return version

    def promote(self, version: str) -> str:
        """Make ``version`` (any name ``resolve`` takes) current after verifying it; return its id.  The old
        current is kept for ``rollback``."""
        version = self.resolve(version)
        with self._writing():
            return self._promote(version)

    def _promote(self, version: str) -> str:
        self.verify(version)
        history = self.history()
        if not history or history[-1] != version:
            history.append(version)
        _write_atomic(self.path / HISTORY, json.dumps(history, ensure_ascii=False, indent=1))
        _write_atomic(self.path / CURRENT, version + "\n")
        return version

    def rollback(self) -> str:
        """Make the previously current version current again; return it."""
        with self._writing():
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

    def sign(self, version: str) -> str:
        """Sign a version saved without a key (or with another one) with this store's key, after checking its
        files against its manifest's sha256s.  Signing says "I trust these files": do it only for versions
        whose origin you know."""
        if self._key is None:
            raise ConfigError(f"signing needs a key: set {SIGNING_KEY_ENV} to the secret the service loads with")
        with self._writing():
            manifest = self.manifest(version)
            folder = self._version_dir(version)
            for name, expected in manifest["files"].items():
                _check_hash(version, name, self._file(version, folder, name), expected)
            manifest[_SIGNATURE] = _signature(manifest, self._key)
            _write_atomic(folder / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=2))
        return version

    def summary(self) -> list[dict[str, Any]]:
        """One row per version for ``hotline models list``: when, from what data (file name, rows, content
        fingerprint), headline metrics, tags and note; broken versions are listed with their problem."""
        current = self.current()
        try:
            previous: str | None = self._previous() if current else None
        except ModelNotFoundError:
            previous = None
        tags, notes = self.tags(), self.notes()
        rows = []
        for version in sorted(p.name for p in self._folders()):
            row: dict[str, Any] = {"version": version, "current": version == current,
                                   "previous": version == previous,
                                   "tags": sorted(n for n, v in tags.items() if v == version),
                                   "note": notes.get(version)}
            try:
                m = self.manifest(version)  # a link, a renamed folder: refused with the reason
                self._check_signature(version, m)
                data = m.get("data", {}) or {}
                row["created"] = m.get("created")
                row["rows"] = data.get("rows")
                row["rows_used"] = data.get("rows_used")
                row["source"] = Path(str(data.get("source") or "")).name or None
                row["data_sha256"] = data.get("sha256")
                row["targets"] = list(m.get("labels", {}))
                row["classes"] = {t: len(labels or {}) for t, labels in (m.get("labels") or {}).items()}
                row["metrics"] = {
                    t: {k: v for k, v in (m.get("metrics", {}).get(t) or {}).items()
                        if k in ("accuracy", "macro_f1", "n")}
                    for t in m.get("labels", {})
                }
            except ModelStoreError as exc:
                row["error"] = str(exc)
            rows.append(row)
        return rows


def _check_hash(version: str, name: str, content: Path | bytes, expected: str) -> None:
    actual = _sha256_file(content) if isinstance(content, Path) else hashlib.sha256(content).hexdigest()
    if not isinstance(expected, str) or not hmac.compare_digest(actual, expected):
        raise ModelIntegrityError(
            f"model version {version!r}: {name} has sha256 {actual[:16]}..., the manifest says "
            f"{str(expected)[:16]}...; the file was modified or damaged, refusing to load it"
        )


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
