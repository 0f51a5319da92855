"""A training corpus's features, built in chunks with memory bounded by settings rather than by the data.

Fitting a vectorizer used to hold every raw feature of every text at once (a dict of each distinct n-gram, the
count matrix of all texts and its copies): memory grew with the corpus, ~3.5 GiB per 100,000 texts.  Here:

1. **Analysis**, chunk by chunk (``CHUNK_TEXTS`` texts, in worker processes when the corpus is large): each
   text is normalized, segmented and cut into n-grams once, and each chunk is counted against its own
   columns.  The n-grams are integer codes (``classifier.codes``: numpy over the chunk, no string per n-gram)
   whenever the vectorizer's n-gram lengths fit them (the defaults do); else feature names
   (``ComplaintVectorizer.analyze``).
2. **Counting**: each chunk's document frequencies go into bounded tables: one per kind of code
   (``KindFrequencies``, ``MIN_CODE_CAPACITY`` codes each: 20 bytes a code) or one of names
   (``DocumentFrequencies``).  When a table holds more than its capacity the less frequent half is dropped
   (lossy counting: a feature dropped and seen again starts from zero, so only features rarer than the kept
   ones can be lost; at 100,000 texts of the scaling corpus no kind of code reaches it, and the vocabulary is
   exact).  The chunk's counts are kept as they are (on disk past ``SPILL_BYTES``), with their columns' codes
   (or their table ids).
3. **Vocabulary**: the features in at least ``min_df`` and at most ``max_df`` of the texts; the
   ``max_features`` most frequent of them when there are more (ties: the first seen), in order of first
   appearance.
4. **Features**: each chunk's counts are re-read, their ids mapped to the vocabulary's columns and weighted
   (``ComplaintVectorizer._weight``), chunk by chunk; a caller receives the chunks in order and keeps what it
   needs (every row, or a sample and per-class sums: ``classifier.sampling``).

The text is analyzed once: the features are built from the kept counts, not from the text again.  A fixed
chunk size makes the result independent of the number of workers.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import scipy.sparse as sp

from .phases import phase

if TYPE_CHECKING:
    from .features import ComplaintVectorizer

__all__ = ["CHUNK_TEXTS", "ChunkStore", "DocumentFrequencies", "AnalyzedCorpus", "analyze_corpus"]

# texts per chunk: fixed (not derived from the number of workers) so that lossy counting, and so the model,
# is the same however many processes analyzed the corpus
CHUNK_TEXTS = 5_000
# below this many characters a corpus is analyzed in this process (worker start-up and shipping names back
# cost more than they save: BENCHMARKS.md, issue 5)
PARALLEL_MIN_CHARS = 4_000_000
# kept chunk counts stay in memory up to this size, then go to a temporary folder ($TMPDIR)
SPILL_BYTES = 64 * 2**20
# the count table holds at least this many distinct features before it prunes (by name; by code: per kind)
MIN_CAPACITY = 1_000_000
MIN_CODE_CAPACITY = 4_000_000
# a kind's pending chunk counts are merged into its table once they hold this many codes (or the table's size)
MERGE_MIN = 1_000_000


class DocumentFrequencies:
    """Distinct features (name -> id) with the number of texts each occurred in, bounded by ``capacity``.

    Ids are given in order of first appearance.  When the table exceeds ``capacity`` the features with the
    lowest frequencies are dropped until half of it is left (ties: the later seen go first) and the rest are
    renumbered in order; ``resolve`` maps ids handed out before a pruning to the current ones (-1: dropped).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(int(capacity), 2)
        self._ids: defaultdict[str, int] = defaultdict()
        self._ids.default_factory = self._ids.__len__
        self._df = np.zeros(1024, dtype=np.int64)
        self._cases = np.zeros(1024, dtype=np.int64)  # distinct texts: a repeated text counts once
        self._renumberings: list[np.ndarray] = []
        self.pruned = 0  # features dropped so far

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def epoch(self) -> int:
        """How many prunings happened so far: ids handed out now are valid until the next."""
        return len(self._renumberings)

    def add(self, names: Sequence[str], df: np.ndarray, cases: np.ndarray | None = None) -> np.ndarray:
        """Count one chunk: its distinct feature names, how many of its texts each occurred in and how many of
        its distinct texts (``cases``; None: ``df``, no text repeated); return the table id of each name (valid
        at the current ``epoch``).  Names are new to the table in order, so ids grow by one each."""
        ids = np.fromiter(map(self._ids.__getitem__, names), dtype=np.int64, count=len(names))
        size = len(self._ids)
        if size > len(self._df):
            grow = max(size, 2 * len(self._df))
            self._df = np.concatenate([self._df, np.zeros(grow - len(self._df), dtype=np.int64)])
            self._cases = np.concatenate([self._cases, np.zeros(grow - len(self._cases), dtype=np.int64)])
        # a chunk's names are distinct, so plain fancy-index addition counts each once
        self._df[ids] += df
        self._cases[ids] += df if cases is None else cases
        return ids

    def prune_if_full(self) -> None:
        if len(self._ids) > self.capacity:
            self._prune(self.capacity // 2)

    def _prune(self, keep: int) -> None:
        size = len(self._ids)
        df = self._df[:size]
        # the ``keep`` most frequent, earlier seen first among equals; then back to first-appearance order
        order = np.argsort(-df, kind="stable")[:keep]
        order.sort()
        renumber = np.full(size, -1, dtype=np.int64)
        renumber[order] = np.arange(len(order))
        names = list(self._ids)
        ids: defaultdict[str, int] = defaultdict()
        ids.default_factory = ids.__len__
        for i in order.tolist():
            ids[names[i]]
        self._ids = ids
        self._df = np.concatenate([df[order], np.zeros(max(1024, len(order)), dtype=np.int64)])
        self._cases = np.concatenate([self._cases[:size][order], np.zeros(max(1024, len(order)), dtype=np.int64)])
        self._renumberings.append(renumber)
        self.pruned += size - len(order)

    def resolve(self, ids: np.ndarray, epoch: int) -> np.ndarray:
        """Current ids of ids handed out at ``epoch`` (-1 where the feature was dropped since)."""
        for renumber in self._renumberings[epoch:]:
            ids = np.where(ids >= 0, renumber[np.maximum(ids, 0)], -1)
        return ids

    def frequencies(self) -> np.ndarray:
        return self._df[: len(self._ids)]

    def case_frequencies(self) -> np.ndarray:
        """In how many distinct texts each feature occurred (what ``min_df`` counts)."""
        return self._cases[: len(self._ids)]

    def names(self) -> list[str]:
        return list(self._ids)


class ChunkStore:
    """Sparse matrices of consecutive chunks of rows, each with a tag, held in memory up to ``SPILL_BYTES``
    and past that in a temporary folder (``$TMPDIR``) that ``close`` removes."""

    def __init__(self) -> None:
        self._chunks: list[Any] = []
        self._bytes = 0
        self._dir: Path | None = None

    def append(self, X: sp.csr_matrix, tag: int = 0, extra: Sequence[np.ndarray] = ()) -> None:
        """Keep ``X`` with its ``tag`` and any ``extra`` arrays (``read_extra``)."""
        size = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes + sum(a.nbytes for a in extra)
        if self._dir is None and self._bytes + size > SPILL_BYTES:
            self._dir = Path(tempfile.mkdtemp(prefix="hotline-features-"))
        if self._dir is not None:
            path = self._dir / f"chunk-{len(self._chunks)}.npz"
            arrays: dict[str, Any] = {f"extra{k}": a for k, a in enumerate(extra)}
            np.savez(path, data=X.data, indices=X.indices, indptr=X.indptr, shape=np.array(X.shape), **arrays)
            self._chunks.append((path, tag, len(extra)))
        else:
            self._chunks.append(((X, list(extra)), tag, len(extra)))
            self._bytes += size

    def __len__(self) -> int:
        return len(self._chunks)

    def read(self, i: int) -> tuple[sp.csr_matrix, int]:
        item, tag, _ = self._chunks[i]
        if isinstance(item, Path):
            with np.load(item) as f:
                return sp.csr_matrix((f["data"], f["indices"], f["indptr"]), shape=tuple(f["shape"])), tag
        return item[0], tag

    def read_extra(self, i: int) -> list[np.ndarray]:
        item, _, n = self._chunks[i]
        if isinstance(item, Path):
            with np.load(item) as f:
                return [f[f"extra{k}"] for k in range(n)]
        return item[1]

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self._chunks = []


class _StoredCounts:
    """A corpus's chunk counts in a ``ChunkStore``: ``close`` (or a ``with`` block) removes its temporary files."""

    _store: ChunkStore

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._store.close()


class AnalyzedCorpus(_StoredCounts):
    """Every text of a corpus analyzed once: the feature counts of each chunk and their document frequencies.

    ``select`` fits a vectorizer's vocabulary and idf from it; ``features`` then yields the weighted feature
    rows chunk by chunk.  ``close`` (or a ``with`` block) removes the temporary files.
    """

    def __init__(self, n_texts: int, table: DocumentFrequencies, store: ChunkStore) -> None:
        self.n_texts = n_texts
        self.table = table
        self._store = store
        self._columns: np.ndarray | None = None

    def select(self, vectorizer: ComplaintVectorizer) -> None:
        """Fit ``vectorizer``'s vocabulary (``min_df``, ``max_df``, ``max_features``) and idf on this corpus."""
        from .features import EXPLAIN_MIN_CASES, _block_of

        with phase("vocabulary"):
            df = self.table.frequencies()
            cases = self.table.case_frequencies()
            n_docs = self.n_texts
            # min_df counts distinct cases: a text repeated (one caller's name in two copies of one complaint)
            # is one case, so a one-off token cannot enter the vocabulary by being duplicated
            keep = (cases >= vectorizer.min_df) & (df <= vectorizer.max_df * n_docs)
            max_features = vectorizer.max_features
            if max_features is not None and keep.sum() > max_features:
                # the most frequent features; ties broken by first appearance so the result is deterministic
                order = np.argsort(-np.where(keep, df, -1), kind="stable")[:max_features]
                keep = np.zeros_like(keep)
                keep[order] = True
            if not keep.any():
                raise ValueError("no features left after min_df/max_df pruning; lower min_df or give more text")
            kept = np.flatnonzero(keep)
            names = self.table.names()
            kept_names = [names[i] for i in kept.tolist()]
            del names
            columns = np.full(len(df), -1, dtype=np.int64)
            columns[kept] = np.arange(len(kept))
            self._columns = columns
            vectorizer._set_vocabulary(kept_names, (np.log((1.0 + n_docs) / (1.0 + df[kept])) + 1.0)
                                       .astype(np.float32),
                                       np.fromiter(map(_block_of, kept_names), dtype=np.int8, count=len(kept)),
                                       n_docs,
                                       np.flatnonzero(cases[kept] < max(vectorizer.min_df, EXPLAIN_MIN_CASES)))

    def features(self, vectorizer: ComplaintVectorizer) -> Iterator[tuple[int, sp.csr_matrix]]:
        """(first row, weighted features) of each chunk in order, over the columns ``select`` chose."""
        if self._columns is None:
            raise RuntimeError("select a vocabulary first")
        width = len(vectorizer.vocabulary_)
        start = 0
        for i in range(len(self._store)):
            counts, epoch = self._store.read(i)
            cols = self._columns[self.table.resolve(counts.indices, epoch)]
            yield start, vectorizer._weight(_kept_columns(counts, cols, width))
            start += counts.shape[0]


class KindFrequencies:
    """The codes of one kind of feature (``classifier.codes``) with the texts each occurred in, bounded.

    Chunks' counts wait in a list and are merged (one sort) once they outnumber the table, so counting costs
    O(n log n) over the corpus.  Past ``capacity`` codes the table keeps the more frequent half (the rule of
    ``DocumentFrequencies``; ties: the earlier seen).  ``first``: the corpus row each code first occurred in."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(int(capacity), 2)
        # 20 bytes a code: counts and rows fit 32 bits (fewer than 2**31 texts)
        self.codes: np.ndarray = np.zeros(0, dtype=np.int64)
        self.df: np.ndarray = np.zeros(0, dtype=np.int32)
        self.cases: np.ndarray = np.zeros(0, dtype=np.int32)
        self.first: np.ndarray = np.zeros(0, dtype=np.int32)
        self.pruned = 0
        self._pending: list[tuple[np.ndarray, ...]] = []
        self._pending_size = 0

    def add(self, codes: np.ndarray, df: np.ndarray, cases: np.ndarray, first: np.ndarray) -> None:
        # copies at 32 bits: ``df`` and ``cases`` are slices of a chunk's counts over all its kinds, which a
        # small kind's pending list would otherwise keep alive chunk after chunk (0.8 GB at 400,000 texts)
        self._pending.append((codes, df.astype(np.int32), cases.astype(np.int32), first.astype(np.int32)))
        self._pending_size += len(codes)
        if self._pending_size >= max(len(self.codes), MERGE_MIN):
            self.merge()

    def merge(self) -> None:
        if not self._pending:
            return
        parts = [(self.codes, self.df, self.cases, self.first), *self._pending]
        self._pending, self._pending_size = [], 0
        codes, inverse = np.unique(np.concatenate([p[0] for p in parts]), return_inverse=True)
        inverse = inverse.reshape(-1)
        df = np.bincount(inverse, weights=np.concatenate([p[1] for p in parts]), minlength=len(codes))
        cases = np.bincount(inverse, weights=np.concatenate([p[2] for p in parts]), minlength=len(codes))
        first = np.full(len(codes), np.iinfo(np.int32).max, dtype=np.int32)
        np.minimum.at(first, inverse, np.concatenate([p[3] for p in parts]))
        self.codes, self.df, self.cases, self.first = codes, df.astype(np.int32), cases.astype(np.int32), first
        if len(codes) > self.capacity:
            keep = np.lexsort((self.first, -self.df.astype(np.int64)))[: self.capacity // 2]
            keep.sort()
            self.pruned += len(codes) - len(keep)
            self.codes, self.df, self.cases, self.first = (a[keep] for a in (codes, self.df, self.cases, first))

    def __len__(self) -> int:
        self.merge()
        return len(self.codes)


class CodedCorpus(_StoredCounts):
    """Every text of a corpus analyzed once into codes (``classifier.codes``): each chunk's counts against its own
    columns with those columns' codes, and each kind's document frequencies.  The interface of
    ``AnalyzedCorpus``: ``select`` fits a vectorizer's vocabulary and idf, ``features`` yields weighted rows."""

    def __init__(self, n_texts: int, kinds: list[Any], tables: list[KindFrequencies], tokens: Any,
                 store: ChunkStore) -> None:
        self.n_texts = n_texts
        self.kinds = kinds
        self.tables = tables
        self.tokens = tokens
        self._store = store
        self._lookup: list[tuple[np.ndarray, np.ndarray]] | None = None

    @property
    def pruned(self) -> int:
        return sum(t.pruned for t in self.tables)

    def select(self, vectorizer: ComplaintVectorizer) -> None:
        """Fit ``vectorizer``'s vocabulary (``min_df``, ``max_df``, ``max_features``) and idf on this corpus: the
        rule of ``AnalyzedCorpus.select``, columns in order of first appearance."""
        from .codes import decode
        from .features import EXPLAIN_MIN_CASES, _block_of

        with phase("vocabulary"):
            for t in self.tables:
                t.merge()
            kind = np.concatenate([np.full(len(t.codes), k, dtype=np.int64) for k, t in enumerate(self.tables)])
            code = np.concatenate([t.codes for t in self.tables])
            df = np.concatenate([t.df for t in self.tables])
            cases = np.concatenate([t.cases for t in self.tables])
            first = np.concatenate([t.first for t in self.tables])
            n_docs = self.n_texts
            keep = np.flatnonzero((cases >= vectorizer.min_df) & (df <= vectorizer.max_df * n_docs))
            max_features = vectorizer.max_features
            if max_features is not None and len(keep) > max_features:
                # the most frequent; ties by first appearance, so the result is deterministic
                keep = keep[np.lexsort((code[keep], kind[keep], first[keep], -df[keep]))[:max_features]]
            if not len(keep):
                raise ValueError("no features left after min_df/max_df pruning; lower min_df or give more text")
            keep = keep[np.lexsort((code[keep], kind[keep], first[keep]))]  # column order: first appearance
            names: list[str] = [""] * len(keep)
            lookup = []
            for k, kd in enumerate(self.kinds):
                columns = np.flatnonzero(kind[keep] == k)
                codes_k = code[keep[columns]]
                for c, name in zip(columns.tolist(), decode(kd, codes_k, self.tokens)):
                    names[c] = name
                order = np.argsort(codes_k)
                lookup.append((codes_k[order], columns[order]))
            self._lookup = lookup
            kept_df = df[keep]
            vectorizer._set_vocabulary(names, (np.log((1.0 + n_docs) / (1.0 + kept_df)) + 1.0).astype(np.float32),
                                       np.fromiter(map(_block_of, names), dtype=np.int8, count=len(names)),
                                       n_docs,
                                       np.flatnonzero(cases[keep] < max(vectorizer.min_df, EXPLAIN_MIN_CASES)))

    @property
    def lookup(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per kind, the vocabulary's codes sorted and their columns (``codes.columns_of``), once selected."""
        if self._lookup is None:
            raise RuntimeError("select a vocabulary first")
        return self._lookup

    def features(self, vectorizer: ComplaintVectorizer) -> Iterator[tuple[int, sp.csr_matrix]]:
        """(first row, weighted features) of each chunk in order, over the columns ``select`` chose."""
        from .codes import columns_of

        lookup = self.lookup
        width = len(vectorizer.vocabulary_)
        start = 0
        for i in range(len(self._store)):
            counts, _ = self._store.read(i)
            cols = columns_of(lookup, self._store.read_extra(i))[counts.indices]
            yield start, vectorizer._weight(_kept_columns(counts, cols, width))
            start += counts.shape[0]


def _kept_columns(counts: sp.csr_matrix, cols: np.ndarray, width: int) -> sp.csr_matrix:
    """``counts`` with each entry moved to column ``cols`` (its position in ``counts.data``); -1: dropped."""
    keep = cols >= 0
    row_of = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))[keep]
    indptr = np.zeros(counts.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(row_of, minlength=counts.shape[0]), out=indptr[1:])
    return sp.csr_matrix((counts.data[keep], cols[keep].astype(np.int32), indptr), shape=(counts.shape[0], width))


def first_occurrences(texts: Sequence[str]) -> np.ndarray:
    """True for each text not seen earlier in ``texts`` (by a 64-bit hash of the text: 16 bytes a text)."""
    import pandas as pd

    if not len(texts):
        return np.zeros(0, dtype=bool)
    hashes = pd.util.hash_array(np.asarray(texts, dtype=object))
    first = np.zeros(len(texts), dtype=bool)
    first[np.unique(hashes, return_index=True)[1]] = True
    return first


def _chunks(texts: Sequence[str]) -> list[Sequence[str]]:
    return [texts[i : i + CHUNK_TEXTS] for i in range(0, len(texts), CHUNK_TEXTS)]


def analyze_corpus(vectorizer: ComplaintVectorizer, texts: Sequence[str], n_jobs: int = 1,
                   progress: bool = False, capacity: int | None = None) -> AnalyzedCorpus | CodedCorpus:
    """Analyze and count every text once, chunk by chunk (see the module docstring): as codes
    (``classifier.codes``) when the vectorizer's n-grams fit them, else by name."""
    from .codes import fits

    texts = list(texts)
    if fits(vectorizer):
        return _analyze_codes(vectorizer, texts, n_jobs, progress, capacity)
    return _analyze_names(vectorizer, texts, n_jobs, progress, capacity)


def _chunk_results(func: Any, vectorizer: ComplaintVectorizer, texts: list[str], n_jobs: int) -> tuple[Any, int]:
    """``func(analyzer, chunk)`` of each chunk in order: in worker processes when the corpus is large enough."""
    from .features import _analyzer_copy

    chunks = _chunks(texts)
    workers = 1
    if n_jobs != 1 and len(chunks) > 1 and sum(map(len, texts)) >= PARALLEL_MIN_CHARS:
        from joblib import effective_n_jobs

        workers = effective_n_jobs(n_jobs)
    if workers > 1:
        from joblib import Parallel, delayed

        analyzer = _analyzer_copy(vectorizer)
        return Parallel(n_jobs=workers, return_as="generator")(delayed(func)(analyzer, c) for c in chunks), \
            len(chunks)
    return (func(vectorizer, c) for c in chunks), len(chunks)


def _analyze_codes(vectorizer: ComplaintVectorizer, texts: list[str], n_jobs: int, progress: bool,
                   capacity: int | None) -> CodedCorpus:
    from .codes import TokenTable, encode_chunk, kinds_of, word_bits
    from .features import _progress

    if capacity is None:
        capacity = max(MIN_CODE_CAPACITY, 4 * (vectorizer.max_features or 0))
    kinds = kinds_of(vectorizer)
    tables = [KindFrequencies(capacity) for _ in kinds]
    tokens = TokenTable(word_bits(vectorizer))
    store = ChunkStore()
    results, n_chunks = _chunk_results(encode_chunk, vectorizer, texts, n_jobs)
    repeated = ~first_occurrences(texts)
    try:
        with phase("analysis and counting"):
            for k, chunk in enumerate(_progress(results, n_chunks, "tokenizing", progress, unit="chunk")):
                tokens.globalize(chunk, kinds)
                counts = chunk.counts
                start = k * CHUNK_TEXTS
                df = np.bincount(counts.indices, minlength=counts.shape[1])
                again = repeated[start:start + counts.shape[0]]
                cases = (df if not again.any() else
                         np.bincount(counts[np.flatnonzero(~again)].indices, minlength=counts.shape[1]))
                offset = 0
                for table, codes, first in zip(tables, chunk.codes, chunk.first):
                    end = offset + len(codes)
                    table.add(codes, df[offset:end], cases[offset:end], first + start)
                    offset = end
                store.append(counts, 0, chunk.codes)
    except BaseException:
        store.close()
        raise
    return CodedCorpus(len(texts), kinds, tables, tokens, store)


def _analyze_names(vectorizer: ComplaintVectorizer, texts: list[str], n_jobs: int, progress: bool,
                   capacity: int | None) -> AnalyzedCorpus:
    from .features import _count_chunk, _progress

    if capacity is None:
        capacity = max(MIN_CAPACITY, 2 * (vectorizer.max_features or 0))
    table = DocumentFrequencies(capacity)
    store = ChunkStore()
    results, n_chunks = _chunk_results(_count_chunk, vectorizer, texts, n_jobs)
    repeated = ~first_occurrences(texts)
    try:
        with phase("analysis and counting"):
            for k, (names, counts) in enumerate(_progress(results, n_chunks, "tokenizing", progress,
                                                          unit="chunk")):
                df = np.bincount(counts.indices, minlength=len(names))
                again = repeated[k * CHUNK_TEXTS:k * CHUNK_TEXTS + counts.shape[0]]
                cases = (None if not again.any() else
                         np.bincount(counts[np.flatnonzero(~again)].indices, minlength=len(names)))
                ids = table.add(names, df, cases)
                # the chunk's columns as table ids, tagged with the epoch those ids belong to
                store.append(sp.csr_matrix((counts.data, ids[counts.indices].astype(np.int32), counts.indptr),
                                           shape=counts.shape), table.epoch)
                table.prune_if_full()
    except BaseException:
        store.close()
        raise
    return AnalyzedCorpus(len(texts), table, store)
