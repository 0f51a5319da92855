"""Feature occurrences as integer codes: how training counts a corpus without building a string per n-gram.

``ComplaintVectorizer.analyze`` turns a text into feature *names* (a string per word and char n-gram, ~700 for
a 165-character complaint); counting a corpus by those names cost ~500 µs of CPU a text, half of it hashing
freshly sliced strings into a dict, and memory for every distinct name.  Here the same features of a chunk of
texts are built as numbers, with numpy over the whole chunk at once:

- a char n-gram is its characters' code points, 21 bits each: ``c1 << 42 | c2 << 21 | c3`` (n <= 3);
- a word n-gram is its tokens' ids, ``63 // n`` bits each (a corpus-wide token table: ``TokenTable``);
- each *kind* of feature (word or char, n, in the lead or not) has its own code space (``kinds_of``).

The text path is the vectorizer's own: ``normalize``, the tokenizer's ``cut``, the lead's rule (a text no
longer than the lead is its own lead; char n-grams over the text without spaces).  Only the n-gram enumeration
is done here, and a model's vocabulary is still its feature names (``decode``), which serving looks up as it
always did; ``tests/test_codes.py`` checks on real texts that training's matrix equals serving's
``transform`` of the same texts, column for column.

Codes cover the defaults and most settings: char n-grams up to 3 and word n-grams up to 3 (``fits``);
a vectorizer outside them is counted by name (``classifier.corpus``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import scipy.sparse as sp

from .text import normalize

if TYPE_CHECKING:
    from .features import ComplaintVectorizer

__all__ = ["Kind", "kinds_of", "fits", "ChunkCodes", "encode_chunk", "TokenTable", "globalize", "columns_of",
           "decode"]

CHAR_BITS = 21  # every Unicode code point fits
MAX_CHAR_N = 63 // CHAR_BITS


class Kind(NamedTuple):
    """One code space: word or char n-grams of length ``n``, of the whole text or of its lead."""

    word: bool
    n: int
    lead: bool


def kinds_of(vectorizer: ComplaintVectorizer) -> list[Kind]:
    """The vectorizer's kinds of feature, in the order ``analyze`` lists them (words, chars, then the lead's)."""
    w_lo, w_hi = vectorizer.word_ngram_range
    c_lo, c_hi = vectorizer.char_ngram_range
    leads = (False, True) if vectorizer.lead_chars else (False,)
    return [Kind(word, n, lead) for lead in leads
            for word, lo, hi in ((True, w_lo, w_hi), (False, c_lo, c_hi)) for n in range(lo, hi + 1)]


def word_bits(vectorizer: ComplaintVectorizer) -> int:
    return 63 // vectorizer.word_ngram_range[1]


def fits(vectorizer: ComplaintVectorizer) -> bool:
    """Whether this vectorizer's features can be counted as codes (char n <= 3, word n <= 3)."""
    return vectorizer.char_ngram_range[1] <= MAX_CHAR_N and vectorizer.word_ngram_range[1] <= 3


@dataclass
class ChunkCodes:
    """A chunk's features as a worker returns them.

    ``tokens``: the chunk's distinct tokens (its own ids, in order); ``codes``: per kind, the distinct codes in
    the order of ``counts``'s columns (a kind's columns follow the previous kind's; word codes over the chunk's
    token ids until ``TokenTable.globalize``); ``counts``: term counts, rows x the chunk's columns; ``first``: per
    kind, the row each code first occurs in."""

    tokens: list[str]
    codes: list[np.ndarray]
    counts: sp.csr_matrix
    first: list[np.ndarray]  # per kind, the row each code first occurs in


def _grams(symbols: np.ndarray, lengths: np.ndarray, limit: np.ndarray, n: int, bits: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """(row, code) of every n-gram of the rows' symbol runs (concatenated in ``symbols``, ``lengths`` each) that
    ends within the first ``limit`` symbols of its row, in row order then position."""
    starts = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    row = np.repeat(np.arange(len(lengths)), lengths)
    pos = np.arange(len(symbols)) - starts[row]
    at = np.flatnonzero(pos + n <= limit[row])
    code = symbols[at]
    for j in range(1, n):
        code = (code << bits) | symbols[at + j]
    return row[at], code


def encode_chunk(vectorizer: ComplaintVectorizer, texts: Sequence[str]) -> ChunkCodes:
    """Normalize, segment and encode some raw texts: their feature counts against the chunk's own columns."""
    tokenizer = vectorizer._tokenizer()
    lead_chars = vectorizer.lead_chars
    ids: defaultdict[str, int] = defaultdict()
    ids.default_factory = ids.__len__
    token_id = ids.__getitem__
    words: list[list[int]] = []
    lead_words: list[list[int]] = []
    chars: list[str] = []
    lead_len: list[int] = []
    for text in texts:
        norm = normalize(text, vectorizer.normalization)
        tokens = list(map(token_id, tokenizer.cut(norm)))
        words.append(tokens)
        if lead_chars:
            # a text no longer than the lead is its own lead, and is not segmented twice (``_parts``)
            lead_words.append(tokens if len(norm) <= lead_chars
                              else list(map(token_id, tokenizer.cut(norm[:lead_chars].strip()))))
            lead_len.append(len(norm[:lead_chars].replace(" ", "")))
        chars.append(norm.replace(" ", ""))
    n_rows = len(chars)
    char_lengths = np.fromiter(map(len, chars), dtype=np.int64, count=n_rows)
    code_points = np.frombuffer("".join(chars).encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    word_lengths = np.fromiter(map(len, words), dtype=np.int64, count=n_rows)
    word_ids = np.fromiter((t for w in words for t in w), dtype=np.int64, count=int(word_lengths.sum()))
    if lead_chars:
        lead_lengths = np.fromiter(map(len, lead_words), dtype=np.int64, count=n_rows)
        lead_ids = np.fromiter((t for w in lead_words for t in w), dtype=np.int64, count=int(lead_lengths.sum()))
        lead_limit = np.asarray(lead_len, dtype=np.int64)
    bits = word_bits(vectorizer)
    rows: list[np.ndarray] = []
    columns: list[np.ndarray] = []
    codes: list[np.ndarray] = []
    firsts: list[np.ndarray] = []
    width = 0
    for kind in kinds_of(vectorizer):
        if kind.word:
            symbols, lengths = (lead_ids, lead_lengths) if kind.lead else (word_ids, word_lengths)
            row, code = _grams(symbols, lengths, lengths, kind.n, bits)
        else:
            row, code = _grams(code_points, char_lengths, lead_limit if kind.lead else char_lengths, kind.n,
                               CHAR_BITS)
        distinct, first, column = np.unique(code, return_index=True, return_inverse=True)
        rows.append(row)
        columns.append(column.reshape(-1) + width)
        codes.append(distinct)
        firsts.append(row[first])
        width += len(distinct)
    row = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    column = np.concatenate(columns) if columns else np.zeros(0, dtype=np.int64)
    counts = sp.csr_matrix((np.ones(len(row), dtype=np.float32), (row, column)), shape=(n_rows, width))
    counts.sum_duplicates()
    counts.indices = counts.indices.astype(np.int32, copy=False)
    return ChunkCodes(list(ids), codes, counts, firsts)


class TokenTable:
    """Every token of a corpus with a corpus-wide id (in order of first appearance), for word codes."""

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self._ids: defaultdict[str, int] = defaultdict()
        self._ids.default_factory = self._ids.__len__
        self._names: list[str] = []

    def __len__(self) -> int:
        return len(self._names)

    def ids_of(self, tokens: Sequence[str]) -> np.ndarray:
        """The corpus-wide id of each token (new tokens get the next ids, in order)."""
        ids = self._ids
        before = len(ids)
        mapped = np.fromiter(map(ids.__getitem__, tokens), dtype=np.int64, count=len(tokens))
        if len(ids) > before:  # the new tokens, in the order they got their ids
            self._names.extend([tokens[i] for i in np.flatnonzero(mapped >= before).tolist()])
        if len(ids) >= 1 << self.bits:
            raise ValueError(f"{len(ids):,} distinct tokens do not fit word codes of {self.bits} bits; lower "
                             "features.word_ngram_range's maximum")
        return mapped

    def globalize(self, chunk: ChunkCodes, kinds: Sequence[Kind]) -> None:
        """Rewrite the chunk's word codes from its own token ids to the corpus's (in place)."""
        chunk.codes = globalize(chunk.codes, kinds, self.ids_of(chunk.tokens), self.bits)

    def names(self, ids: np.ndarray) -> list[str]:
        names = self._names
        return [names[i] for i in ids.tolist()]


def globalize(codes: list[np.ndarray], kinds: Sequence[Kind], mapped: np.ndarray, bits: int) -> list[np.ndarray]:
    """Word codes over a chunk's own token ids rewritten over the corpus's (``mapped``: each own id's corpus id);
    char codes as they are."""
    mask = (1 << bits) - 1
    out = []
    for code, kind in zip(codes, kinds):
        if kind.word:
            new = np.zeros_like(code)
            for j in range(kind.n):
                shift = bits * (kind.n - 1 - j)
                new |= mapped[(code >> shift) & mask] << shift
            code = new
        out.append(code)
    return out


def columns_of(lookup: Sequence[tuple[np.ndarray, np.ndarray]], codes: Sequence[np.ndarray]) -> np.ndarray:
    """The vocabulary column of each code of each kind, concatenated (-1: not in the vocabulary); ``lookup``: per
    kind, the vocabulary's codes sorted and their columns (``classifier.corpus.CodedCorpus.lookup``)."""
    out = []
    for (kept, columns), q in zip(lookup, codes):
        if not len(kept):
            out.append(np.full(len(q), -1, dtype=np.int64))
            continue
        at = np.minimum(np.searchsorted(kept, q), len(kept) - 1)
        out.append(np.where(kept[at] == q, columns[at], -1))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def decode(kind: Kind, codes: np.ndarray, tokens: TokenTable) -> list[str]:
    """The feature names (``ComplaintVectorizer.analyze``'s) of codes of one kind."""
    from .features import LEAD_PREFIX, WORD_PREFIX

    if kind.word:
        bits = tokens.bits
        mask = (1 << bits) - 1
        parts = [tokens.names((codes >> (bits * (kind.n - 1 - j))) & mask) for j in range(kind.n)]
        names = [WORD_PREFIX + " ".join(p) for p in zip(*parts)]
    else:
        mask = (1 << CHAR_BITS) - 1
        points = np.stack([(codes >> (CHAR_BITS * (kind.n - 1 - j))) & mask for j in range(kind.n)], axis=1)
        flat = points.astype(np.uint32).tobytes()
        size = 4 * kind.n
        names = [flat[i:i + size].decode("utf-32-le") for i in range(0, len(flat), size)]
    if kind.lead:
        names = [LEAD_PREFIX + f for f in names]
    return names
