"""A fitted vocabulary (feature name -> column) that loads in a fraction of a dict's time.

A model keeps every feature it was fitted with, and serving looks each of a text's features up.  Held as one
Python dict, a million features took ~0.5 s to rebuild whenever a model was loaded (every name hashed and
inserted: most of a cold start; BENCHMARKS.md, training that scales), so the vocabulary's size, not the
weights', bounded how many features a model could keep.  Char n-grams are most of the features (70 % at
1,000,000); ``Vocabulary`` looks them up by their code points as one integer, ``c1 << 42 | c2 << 21 | c3``, in a
sorted array per length and per block (text or lead), arrays that are pickled and loaded as they are.  Word
n-grams (and char n-grams longer than 3, which do not fit in 63 bits) stay in dicts.  A text's char n-grams are
then found with a few numpy operations over its code points instead of a string and a lookup per n-gram.

``Vocabulary`` is a read-only mapping like the dict it replaces (``vectorizer.vocabulary_[name]``, ``name in``,
``len``, iteration in column order); ``columns`` is the vectorizer's bulk lookup of one text's features.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, Mapping, Sequence
from itertools import repeat
from typing import Any

import numpy as np

__all__ = ["Vocabulary", "CHAR_BITS", "MAX_CODED_CHARS"]

WORD_PREFIX = "\x01"  # the same prefixes as classifier.features (which imports this module)
LEAD_PREFIX = "\x02"
CHAR_BITS = 21  # every Unicode code point fits
MAX_CODED_CHARS = 63 // CHAR_BITS  # char n-grams up to 3 are codes; longer ones are looked up by name

_Table = tuple[np.ndarray, np.ndarray]  # (sorted int64 codes, their int32 columns)


def _codes(cps: np.ndarray, n: int) -> np.ndarray:
    """The code of every char n-gram of a sequence of code points (int64), in order."""
    m = len(cps) - n + 1
    code = cps[:m].copy()
    for k in range(1, n):
        code <<= CHAR_BITS
        code |= cps[k:k + m]
    return code


def _code_points(text: str) -> np.ndarray:
    # surrogatepass: normalize keeps a lone surrogate (no character, but text a request can carry)
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.int64)


class Vocabulary(Mapping[str, int]):
    """Feature name -> column for the names given in column order (``classifier.features`` prefixes: word
    n-grams start with ``WORD_PREFIX``, a lead's features with ``LEAD_PREFIX``)."""

    def __init__(self, names: Sequence[str]) -> None:
        names = list(names)
        self._size = len(names)
        cols = np.arange(len(names), dtype=np.int32)
        lead = np.fromiter(map(str.startswith, names, repeat(LEAD_PREFIX)), dtype=bool, count=len(names))
        bodies = [name[len(LEAD_PREFIX):] if is_lead else name for name, is_lead in zip(names, lead.tolist())]
        word = np.fromiter(map(str.startswith, bodies, repeat(WORD_PREFIX)), dtype=bool, count=len(names))
        length = np.fromiter(map(len, bodies), dtype=np.int64, count=len(names))
        coded = ~word & (length >= 1) & (length <= MAX_CODED_CHARS)
        # by name: words (their full name), a lead's words by their name without the lead's prefix
        self._words = {bodies[i]: i for i in np.flatnonzero(~coded & ~lead).tolist()}
        self._lead_words = {bodies[i]: i for i in np.flatnonzero(~coded & lead).tolist()}
        self._tables: dict[tuple[bool, int], _Table] = {}
        for is_lead in (False, True):
            for n in range(1, MAX_CODED_CHARS + 1):
                where = np.flatnonzero(coded & (lead == is_lead) & (length == n))
                if len(where):
                    cps = _code_points("".join(bodies[i] for i in where.tolist())).reshape(-1, n)
                    code = np.zeros(len(where), dtype=np.int64)
                    for k in range(n):
                        code = (code << CHAR_BITS) | cps[:, k]
                    order = np.argsort(code, kind="stable")
                    self._tables[(is_lead, n)] = (code[order], cols[where[order]])

    # -- the bulk lookup serving uses --------------------------------------------------------------------
    def columns(self, words: Sequence[str], lead_words: Sequence[str], chars: str, n_lead: int,
                char_ngram_range: tuple[int, int], missing: int) -> np.ndarray:
        """The column of each feature occurrence of one text (``missing`` where unknown): its word n-grams
        (``WORD_PREFIX`` names), its lead's (the same names, without ``LEAD_PREFIX``), and the char n-grams of
        ``chars`` (the normalized text without spaces) of the lengths in ``char_ngram_range``, the first
        ``n_lead`` characters' also as the lead's."""
        parts = [np.fromiter(map(self._words.get, words, repeat(missing)), dtype=np.int32, count=len(words))]
        if lead_words:
            parts.append(np.fromiter(map(self._lead_words.get, lead_words, repeat(missing)), dtype=np.int32,
                                     count=len(lead_words)))
        lo, hi = char_ngram_range
        cps = _code_points(chars) if chars and lo <= MAX_CODED_CHARS else None
        for n in range(lo, hi + 1):
            m = len(chars) - n + 1
            if m <= 0:
                break
            if cps is not None and n <= MAX_CODED_CHARS:
                code = _codes(cps, n)
                parts.append(self._find((False, n), code, missing))
                if n_lead >= n:
                    parts.append(self._find((True, n), code[:n_lead - n + 1], missing))
            else:
                grams = [chars[i:i + n] for i in range(m)]
                parts.append(np.fromiter(map(self._words.get, grams, repeat(missing)), dtype=np.int32, count=m))
                if n_lead >= n:
                    head = grams[:n_lead - n + 1]
                    parts.append(np.fromiter(map(self._lead_words.get, head, repeat(missing)), dtype=np.int32,
                                             count=len(head)))
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def _find(self, kind: tuple[bool, int], code: np.ndarray, missing: int) -> np.ndarray:
        table = self._tables.get(kind)
        if table is None:
            return np.full(len(code), missing, dtype=np.int32)
        known, cols = table
        pos = np.searchsorted(known, code)
        np.minimum(pos, len(known) - 1, out=pos)
        return np.where(known[pos] == code, cols[pos], np.int32(missing)).astype(np.int32, copy=False)

    # -- the mapping ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._size

    def __getitem__(self, name: str) -> int:
        if not isinstance(name, str):
            raise KeyError(name)
        lead = name.startswith(LEAD_PREFIX)
        body = name[len(LEAD_PREFIX):] if lead else name
        if body.startswith(WORD_PREFIX) or not 1 <= len(body) <= MAX_CODED_CHARS:
            return (self._lead_words if lead else self._words)[body]
        found = int(self._find((lead, len(body)), _codes(_code_points(body), len(body)), -1)[0])
        if found < 0:
            raise KeyError(name)
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self.names().tolist())

    def items(self) -> ItemsView[str, int]:
        return _Items(self)

    def names(self) -> np.ndarray:
        """Every feature's name, in column order (an object array)."""
        out = np.empty(self._size, dtype=object)
        for table, prefix in ((self._words, ""), (self._lead_words, LEAD_PREFIX)):
            if table:
                out[np.fromiter(table.values(), dtype=np.int64, count=len(table))] = [prefix + k for k in table]
        for (lead, n), (code, cols) in self._tables.items():
            cps = np.stack([(code >> (CHAR_BITS * (n - 1 - k))) & ((1 << CHAR_BITS) - 1) for k in range(n)], axis=1)
            grams = np.ascontiguousarray(cps.astype("<u4")).view(f"<U{n}").ravel().tolist()
            out[cols] = [LEAD_PREFIX + g for g in grams] if lead else grams
        return out

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Vocabulary):
            return self.names().tolist() == other.names().tolist()
        return Mapping.__eq__(self, other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Vocabulary({self._size:,} features)"

    # -- pickling: the dicts' names as one string each, the code tables as arrays -------------------------------
    def __getstate__(self) -> dict[str, Any]:
        # normalized text has no line breaks, so no name contains "\n"; joblib's pure-Python unpickler then reads
        # one string rather than a million
        state: dict[str, Any] = {"size": self._size, "tables": self._tables}
        for key, table in (("words", self._words), ("lead_words", self._lead_words)):
            state[key] = "\n".join(table)
            state[key + "_columns"] = np.fromiter(table.values(), dtype=np.int32, count=len(table))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._size = state["size"]
        self._tables = state["tables"]
        for key in ("words", "lead_words"):
            cols = state[key + "_columns"]
            keys = state[key].split("\n") if len(cols) else []
            setattr(self, "_" + key, dict(zip(keys, cols.tolist())))


class _Items(ItemsView[str, int]):
    """(name, column) in column order, without a lookup per name."""

    _mapping: Vocabulary

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return zip(self._mapping.names().tolist(), range(len(self._mapping)))
