"""Did a model learn from the cases it is being evaluated on?

A model scored on cases it was trained on looks far better than it is (the retraining notebook once compared
a current version on its own training export: 0.988 against the candidate's 0.903, every flip "right->wrong").
So every saved version carries a fingerprint of the rows it learned from, and every evaluation checks its
cases against it and says, loudly, how many the model has already seen.

The fingerprint is a Bloom filter of the salted sha256 of each training row's text (whitespace collapsed, as
validation's duplicate check compares texts), in ``training_rows.json`` beside the model (its sha256 is in the
manifest, like every file of a version).  About 2.4 bytes per row for a false-positive rate of 0.01 %: a case
the model never saw is reported as seen once in ten thousand, which the check allows for (it warns only when
the hits exceed what chance explains).  It holds no text, but like the model itself it can tell someone who
already has a complaint's text whether it was trained on: keep the store as private as the data.

Versions saved before the fingerprint existed are checked by the whole data set's content fingerprint (the
same columns, the same values) and the file's sha256: that catches "the same export again", not a partial
overlap, and the check says which it did.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ROW_FILTER_FILE", "RowFilter", "Overlap", "check_overlap", "row_key"]

ROW_FILTER_FILE = "training_rows.json"
FALSE_POSITIVE_RATE = 0.0001
CHANCE_QUANTILE = 0.999  # hits above this quantile of Binomial(n, false-positive rate) are not chance


def row_key(text: Any) -> str:
    """What identifies a case's text: its characters with runs of whitespace collapsed."""
    return " ".join(str(text).split())


def _hash_pairs(texts: Iterable[Any], salt: bytes) -> tuple[np.ndarray, np.ndarray]:
    h1, h2 = [], []
    for t in texts:
        digest = hashlib.sha256(salt + row_key(t).encode("utf-8")).digest()
        h1.append(int.from_bytes(digest[:8], "little"))
        h2.append(int.from_bytes(digest[8:16], "little") | 1)  # odd: the k probes never collapse onto one bit
    return np.asarray(h1, dtype=np.uint64), np.asarray(h2, dtype=np.uint64)


@dataclass
class RowFilter:
    """A Bloom filter of training rows (``build``, ``contains``; ``to_json`` / ``from_json`` for the store)."""

    bits: np.ndarray  # uint8, packed
    n_bits: int
    n_hashes: int
    salt: bytes
    rows: int
    false_positive_rate: float

    @classmethod
    def build(cls, texts: Sequence[Any], false_positive_rate: float = FALSE_POSITIVE_RATE,
              salt: bytes | None = None) -> RowFilter:
        keys = list(dict.fromkeys(row_key(t) for t in texts))  # distinct texts
        n = max(len(keys), 1)
        n_bits = max(64, math.ceil(-n * math.log(false_positive_rate) / math.log(2) ** 2))
        n_hashes = max(1, round(n_bits / n * math.log(2)))
        salt = salt if salt is not None else secrets.token_bytes(16)
        flags = np.zeros(n_bits, dtype=bool)
        h1, h2 = _hash_pairs(keys, salt)
        for i in range(n_hashes):
            flags[((h1 + np.uint64(i) * h2) % np.uint64(n_bits)).astype(np.int64)] = True
        return cls(np.packbits(flags), n_bits, n_hashes, salt, len(keys), false_positive_rate)

    def contains(self, texts: Sequence[Any]) -> np.ndarray:
        """For each text: True when it was (almost certainly) among the training rows."""
        if not len(texts):
            return np.zeros(0, dtype=bool)
        flags = np.unpackbits(self.bits, count=self.n_bits).astype(bool)
        h1, h2 = _hash_pairs(texts, self.salt)
        found = np.ones(len(h1), dtype=bool)
        for i in range(self.n_hashes):
            found &= flags[((h1 + np.uint64(i) * h2) % np.uint64(self.n_bits)).astype(np.int64)]
        return found

    def chance_rate(self) -> float:
        """The false-positive rate this filter actually has (from its share of set bits)."""
        filled = float(np.unpackbits(self.bits, count=self.n_bits).mean())
        return filled ** self.n_hashes

    def to_json(self) -> str:
        return json.dumps({
            "format": 1, "kind": "bloom filter of sha256(salt + text with whitespace collapsed)",
            "rows": self.rows, "bits": self.n_bits, "hashes": self.n_hashes,
            "false_positive_rate": self.false_positive_rate, "salt": self.salt.hex(),
            "data": base64.b64encode(self.bits.tobytes()).decode("ascii"),
        })

    @classmethod
    def from_json(cls, text: str) -> RowFilter:
        d = json.loads(text)
        bits = np.frombuffer(base64.b64decode(d["data"]), dtype=np.uint8).copy()
        return cls(bits, int(d["bits"]), int(d["hashes"]), bytes.fromhex(d["salt"]), int(d["rows"]),
                   float(d["false_positive_rate"]))

    def manifest_entry(self) -> dict[str, Any]:
        return {"file": ROW_FILTER_FILE, "rows": self.rows, "false_positive_rate": self.false_positive_rate}


@dataclass
class Overlap:
    """How many evaluated cases a model learned from.  ``status``: "overlap" (more than chance explains),
    "none", "same data" (an older version's whole-data fingerprint matches), "unknown" (nothing to check
    against)."""

    version: str | None
    status: str
    method: str
    rows_checked: int
    rows_seen: int = 0
    expected_by_chance: float = 0.0

    @property
    def share(self) -> float:
        return self.rows_seen / self.rows_checked if self.rows_checked else 0.0

    @property
    def warns(self) -> bool:
        return self.status in ("overlap", "same data")

    def sentence(self) -> str:
        who = f"model {self.version}" if self.version else "the model"
        if self.status == "overlap":
            return (f"{self.rows_seen:,} of the {self.rows_checked:,} evaluated cases ({self.share:.0%}) were in the "
                    f"training data of {who}: its scores here are too good (it has seen these answers). Evaluate "
                    "on cases it did not learn from (e.g. the newest, labeled after it was trained).")
        if self.status == "same data":
            return (f"this is the data {who} was trained on ({self.method}): its scores here are too good. Evaluate "
                    "on cases it did not learn from.")
        if self.status == "none":
            chance = (f" ({self.rows_seen} matched its fingerprint, which chance explains)" if self.rows_seen
                      else "")
            return f"none of the {self.rows_checked:,} evaluated cases was in the training data of {who}{chance}"
        return f"not checked whether {who} learned from these cases: {self.method}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "share": self.share, "warns": self.warns, "sentence": self.sentence()}


def load_row_filter(model: Any, folder: str | Path | None, manifest: dict[str, Any]) -> RowFilter | None:
    """The model's row filter: attached by ``train`` (an unsaved model), or the version's file."""
    attached = getattr(model, "training_rows", None)
    if isinstance(attached, RowFilter):
        return attached
    entry = (manifest.get("data") or {}).get("row_fingerprint") if isinstance(manifest, dict) else None
    if folder is None or not entry:
        return None
    path = Path(folder) / str(entry.get("file", ROW_FILTER_FILE))
    if not path.exists():
        return None
    return RowFilter.from_json(path.read_text(encoding="utf-8"))


def check_overlap(model: Any, texts: Sequence[Any], *, version: str | None = None, folder: str | Path | None = None,
                  manifest: dict[str, Any] | None = None, content_sha256: str | None = None,
                  file_sha256: str | None = None) -> Overlap:
    """Check ``texts`` (the evaluated cases) against the rows ``model`` learned from.

    ``folder``/``manifest``: the stored version's (``StoredModel.path``, ``.manifest``).  ``content_sha256``
    and ``file_sha256``: the evaluated data's ``training.data.fingerprint`` over the model's training columns
    and its file's sha256, for versions without a row fingerprint."""
    manifest = manifest or {}
    n = len(texts)
    row_filter = load_row_filter(model, folder, manifest)
    if row_filter is not None:
        from scipy.stats import binom

        seen = int(row_filter.contains(list(texts)).sum())
        rate = row_filter.chance_rate()
        bound = float(binom.ppf(CHANCE_QUANTILE, n, rate)) if n else 0.0
        return Overlap(version, "overlap" if seen > bound else "none", "row fingerprint", n, seen, n * rate)
    data = manifest.get("data") or {}
    if file_sha256 and data.get("file_sha256") == file_sha256:
        return Overlap(version, "same data", "the same file (sha256)", n, n)
    if content_sha256 and data.get("sha256") == content_sha256:
        return Overlap(version, "same data", "the same content fingerprint", n, n)
    why = ("the model was not saved in a store" if not manifest else
           "the version has no row fingerprint (saved before this check existed) and its whole-data "
           "fingerprint differs from this data's")
    return Overlap(version, "unknown", why, n)
