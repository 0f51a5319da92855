"""TF-IDF features: word 1-2-grams over jieba tokens plus character 1-3-grams, sublinear, float32.

``ComplaintVectorizer`` owns normalization and the tokenizer (scikit-learn's vectorizer owns its analyzer the
same way), so the fitted object *is* the preprocessing that serving uses.  It is written here rather than as a
``FeatureUnion`` of two ``TfidfVectorizer`` because a single complaint must be featurized in well under a
millisecond: one pass builds both blocks, with no per-call validation overhead.  The arithmetic is sklearn's:
smooth idf ``ln((1+n)/(1+df)) + 1``, ``1 + ln(tf)``, each block l2-normalised, then weighted.

With ``lead_chars`` > 0, the word and char n-grams of the text's first ``lead_chars`` characters form two more
blocks (the lead: a web message's title, the caller's first sentence).  A fused head gives them to its word
view, whose weight is fitted; a single SVM leaves them out (model.TargetHead).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .errors import NotAListError
from .phases import phase
from .text import NORMALIZATION_VERSION, ComplaintTokenizer, normalize
from .vocabulary import LEAD_PREFIX, WORD_PREFIX, Vocabulary

__all__ = ["WORD_PREFIX", "LEAD_PREFIX", "EXPLAIN_MIN_CASES", "ComplaintVectorizer", "analyze_many"]

# tokens and char n-grams share one vocabulary; a prefix on word features keeps the word "路" apart from the
# char "路" (words are the fewer, so they pay for the prefix): WORD_PREFIX, "\x01".  Features of the lead (the
# first ``lead_chars`` characters) carry LEAD_PREFIX, "\x02", before their word prefix or char n-gram (both
# defined in classifier.vocabulary, which looks them up)
# an explanation never names a feature seen in fewer distinct training cases than this (nor than min_df)
EXPLAIN_MIN_CASES = 2
# below this many characters a batch is analyzed in-process.  Measured on 2 cores (BENCHMARKS.md): starting the
# workers and shipping the distinct feature names back costs more than it saves for 10,000 titles (~190k chars,
# 17k/s serial vs 10-12k/s parallel) and for tipdm's 5,124 messages (~1.5M chars, 6 s vs 7-10 s)
_PARALLEL_MIN_CHARS = 4_000_000
_PARALLEL_MIN_TEXTS = 200


class ComplaintVectorizer(TransformerMixin, BaseEstimator):
    """Turn raw complaint texts into an l2-normalised sparse TF-IDF matrix (float32).

    Parameters mirror ``TfidfVectorizer``; ``tokenizer`` is a ``ComplaintTokenizer`` (None: jieba defaults);
    ``normalization`` is the version of ``text.normalize`` this vectorizer reads text with (the newest for a
    new one; a model pickled before versions existed reads with version 1, as it was trained).
    """

    normalization = 1  # vectorizers pickled before normalization versions have no instance attribute
    lead_chars = 0  # nor a lead block

    def __init__(
        self,
        tokenizer: ComplaintTokenizer | None = None,
        word_ngram_range: tuple[int, int] = (1, 2),
        char_ngram_range: tuple[int, int] = (1, 3),
        min_df: int = 1,
        max_df: float = 1.0,
        max_features: int | None = None,
        sublinear_tf: bool = True,
        char_weight: float = 1.0,
        n_jobs: int = 1,
        progress: bool = False,
        normalization: int = NORMALIZATION_VERSION,
        lead_chars: int = 0,
    ) -> None:
        self.tokenizer = tokenizer
        self.word_ngram_range = word_ngram_range
        self.char_ngram_range = char_ngram_range
        self.min_df = min_df
        self.max_df = max_df
        self.max_features = max_features
        self.sublinear_tf = sublinear_tf
        self.char_weight = char_weight
        self.n_jobs = n_jobs
        self.progress = progress
        self.normalization = normalization
        self.lead_chars = lead_chars

    # -- analysis ---------------------------------------------------------------------------------------
    def _tokenizer(self) -> ComplaintTokenizer:
        if self.tokenizer is None:
            self.tokenizer = ComplaintTokenizer()
        return self.tokenizer

    def analyze(self, text: str) -> list[str]:
        """The features of one raw text: word n-grams prefixed by ``\\x01``, char n-grams as they are."""
        return self.analyze_normalized(normalize(text, self.normalization))

    def analyze_normalized(self, norm: str) -> list[str]:
        feats, lead = self._parts(norm)
        if lead:
            feats.extend([LEAD_PREFIX + f for f in lead])
        return feats

    def _parts(self, norm: str) -> tuple[list[str], list[str]]:
        """The text's features, and its lead's without their prefix (the lead's char n-grams are the same
        string objects as the text's first ones)."""
        feats, lead, chars, n_lead, _ = self._pieces(norm)
        lo, hi = self.char_ngram_range
        n_ch = len(chars)
        for n in range(lo, hi + 1):
            grams = [chars[i : i + n] for i in range(n_ch - n + 1)]
            feats.extend(grams)
            if n_lead >= n:
                lead.extend(grams[: n_lead - n + 1])
        return feats, lead

    def _pieces(self, norm: str) -> tuple[list[str], list[str], str, int, list[str]]:
        """What a text's features are made of: its word n-grams, its lead's word n-grams (without the lead's
        prefix), the text without spaces that char n-grams run over, how many of its characters the lead
        has, and its tokens."""
        tokens = self._tokenizer().cut(norm)
        feats = self._word_ngrams(tokens)
        lead_chars = self.lead_chars
        lead: list[str] = []
        if lead_chars:
            # a text no longer than the lead is its own lead, and is not segmented twice
            lead = (feats[:] if len(norm) <= lead_chars
                    else self._word_ngrams(self._tokenizer().cut(norm[:lead_chars].strip())))
        # char n-grams run over the text without spaces: web-form debris must not change the features
        chars = norm.replace(" ", "")
        n_lead = len(norm[:lead_chars].replace(" ", "")) if lead_chars else 0
        return feats, lead, chars, n_lead, tokens

    def _word_ngrams(self, tokens: list[str]) -> list[str]:
        feats: list[str] = []
        lo, hi = self.word_ngram_range
        n_tok = len(tokens)
        for n in range(lo, hi + 1):
            if n == 1:
                feats.extend([WORD_PREFIX + t for t in tokens])
            else:
                feats.extend([WORD_PREFIX + " ".join(tokens[i : i + n]) for i in range(n_tok - n + 1)])
        return feats

    def tokens(self, text: str) -> list[str]:
        """The jieba tokens of one raw text, after normalization (for users and tests)."""
        return self._tokenizer().cut(normalize(text, self.normalization))

    # -- fitting ----------------------------------------------------------------------------------------
    def fit(self, raw_documents: Sequence[str], y: Any = None) -> ComplaintVectorizer:
        self.fit_transform(raw_documents)
        return self

    def fit_transform(self, raw_documents: Sequence[str], y: Any = None, **fit_params: Any) -> sp.csr_matrix:
        """Fit the vocabulary and idf, and return every text's features (``classifier.corpus`` builds them in
        chunks; a caller that needs only some rows or sums of them uses ``corpus.analyze_corpus`` itself)."""
        from .corpus import analyze_corpus

        _check_documents(raw_documents)
        with analyze_corpus(self, raw_documents, n_jobs=self.n_jobs, progress=self.progress) as corpus:
            corpus.select(self)
            with phase("feature matrix"):
                parts = [X for _, X in corpus.features(self)]
                return sp.vstack(parts, format="csr") if len(parts) != 1 else parts[0]

    def _set_vocabulary(self, names: list[str], idf: np.ndarray, block: np.ndarray, n_documents: int,
                        unexplainable: np.ndarray) -> None:
        """The fitted state: feature names in column order, their idf and block, and the columns too rare to
        name in an explanation (``classifier.corpus``)."""
        self.vocabulary_ = Vocabulary(names)
        self.idf_ = idf
        # features too rare to name in an explanation (only where min_df < EXPLAIN_MIN_CASES lets them in): an
        # explanation that shows a term seen in one training case tells who was in the training data
        self.unexplainable_ = unexplainable.astype(np.int32)
        self.block_ = block
        self.is_char_ = self.block_ == 1
        self.n_documents_ = n_documents

    # -- transforming -----------------------------------------------------------------------------------
    def transform(self, raw_documents: Sequence[str], coverage: list[tuple[int, int]] | None = None) -> sp.csr_matrix:
        """Features of texts for a fitted vectorizer.  Always in this process: ``n_jobs`` parallelizes fitting
        only, so a served model never starts a process pool inside a server worker.  ``coverage``: a list to
        which each text's (tokens, tokens not in the vocabulary) is appended (``_columns``)."""
        check_is_fitted(self, "vocabulary_")
        _check_documents(raw_documents)
        n = len(self.vocabulary_)
        # each feature straight to its fitted column (unknown ones to the extra column n, dropped below): no
        # per-batch vocabulary to build and remap as fitting needs
        chunks: list[np.ndarray] = []
        lengths: list[int] = []
        docs = list(raw_documents)
        for t in _progress(docs, len(docs), "featurizing", self.progress, unit="text"):
            cols = self._columns(t, missing=n, coverage=coverage)
            chunks.append(cols)
            lengths.append(len(cols))
        return self._weight(_count_matrix(chunks, lengths, n + 1)[:, :n])

    def _columns(self, text: str, missing: int, coverage: list[tuple[int, int]] | None = None) -> np.ndarray:
        """The fitted column of each feature occurrence of one raw text (``missing`` where unknown).

        ``coverage``: a list to which the text's (tokens, tokens the vocabulary does not have) is appended, read
        off this segmentation (the decision log's drift signal, ``live.drift``): the unigram columns are the
        first of the word features', so with unigrams in the vocabulary it costs one comparison per token."""
        words, lead, chars, n_lead, tokens = self._pieces(normalize(text, self.normalization))
        cols = self.vocabulary_.columns(words, lead, chars, n_lead, self.char_ngram_range, missing)
        if coverage is not None:
            n_tok = len(tokens)
            if self.word_ngram_range[0] == 1:
                unseen = int(np.count_nonzero(cols[:n_tok] == missing))
            else:  # unigrams are not features: none of the tokens is in the vocabulary as a word
                unseen = sum(WORD_PREFIX + t not in self.vocabulary_ for t in tokens)
            coverage.append((n_tok, unseen))
        return cols

    def explainable(self, idx: np.ndarray) -> np.ndarray:
        """Which of the columns ``idx`` an explanation may name: features seen in at least ``min_df`` and at least
        ``EXPLAIN_MIN_CASES`` distinct training cases (a vectorizer fitted before this rule: all of them, as its
        vocabulary was cut at its ``min_df``)."""
        rare = self.__dict__.get("unexplainable_")
        if rare is None or not len(rare):
            return np.ones(len(idx), dtype=bool)
        return ~np.isin(idx, rare)

    def __setstate__(self, state: dict[str, Any]) -> None:
        lines = state.pop("_vocabulary_lines", None)
        size = state.pop("_vocabulary_size", None)
        state.pop("_lead_vocab", None)
        super().__setstate__(state)
        if lines is not None:  # pickled with every name in one string (before ``Vocabulary``)
            self.vocabulary_ = Vocabulary(lines.split("\n") if size else [])
        elif isinstance(self.__dict__.get("vocabulary_"), dict):  # pickled as a dict (before that)
            vocabulary = self.__dict__["vocabulary_"]
            self.vocabulary_ = Vocabulary(_names_in_order(vocabulary))

    def _weight(self, X: sp.csr_matrix) -> sp.csr_matrix:
        """Counts to weights for all rows at once: sublinear tf, idf, per-block l2 norm, block weight."""
        X = X.tocsr()
        X.sort_indices()
        n_rows = X.shape[0]
        if self.sublinear_tf:
            np.log(X.data, out=X.data)
            X.data += 1.0
        X.data *= self.idf_[X.indices]
        rows = np.repeat(np.arange(n_rows), np.diff(X.indptr))
        block_of = self._blocks()[X.indices]
        squares = X.data.astype(np.float64) ** 2
        scale = np.ones_like(X.data)
        for b, weight in enumerate(self._block_weights()):
            block = block_of == b
            norms = np.sqrt(np.bincount(rows[block], weights=squares[block], minlength=n_rows))
            with np.errstate(divide="ignore"):
                factor = np.where(norms > 0, weight / norms, 0.0).astype(np.float32)
            scale[block] = factor[rows[block]]
        X.data *= scale
        return X

    @property
    def is_lead_(self) -> np.ndarray:
        """Which features belong to the lead (the first ``lead_chars`` characters' blocks)."""
        return self._blocks() >= 2

    def _blocks(self) -> np.ndarray:
        """Each feature's block: 0 words, 1 chars, 2 lead words, 3 lead chars (each block is l2-normalised)."""
        blocks = self.__dict__.get("block_")
        if blocks is None:  # fitted before lead blocks existed: words and chars only
            blocks = self.block_ = self.is_char_.astype(np.int8)
        return blocks

    def _block_weights(self) -> tuple[float, ...]:
        return (1.0, self.char_weight, 1.0, self.char_weight)

    def _row(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(sorted columns, weights) of one text from the column of each of its feature occurrences."""
        idx = idx[idx >= 0]
        if not len(idx):
            return idx, np.empty(0, dtype=np.float32)
        # sorted columns and their counts (np.unique's work without its overhead, which shows at this size)
        idx.sort()
        first = np.empty(len(idx), dtype=bool)
        first[0] = True
        np.not_equal(idx[1:], idx[:-1], out=first[1:])
        starts = np.flatnonzero(first)
        tf = np.diff(np.append(starts, len(idx))).astype(np.float32)
        idx = idx[starts]
        if self.sublinear_tf:
            tf = np.log(tf) + np.float32(1.0)
        val = tf * self.idf_[idx]
        block_of = self._blocks()[idx]
        for b, weight in enumerate(self._block_weights()):
            block = block_of == b
            norm = math.sqrt(float(np.dot(val[block], val[block])))
            if norm > 0:
                val[block] *= weight / norm
        return idx.astype(np.int32), val.astype(np.float32)

    def transform_one(self, text: str,
                      coverage: list[tuple[int, int]] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Sparse features of one raw text as (indices, values): the fast path for a single request
        (``coverage`` as in ``transform``)."""
        if "vocabulary_" not in self.__dict__:
            check_is_fitted(self, "vocabulary_")
        return self._row(self._columns(text, missing=-1, coverage=coverage))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "vocabulary_")
        return self.vocabulary_.names()

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        return tags


def _names_in_order(vocabulary: dict[str, int]) -> list[str]:
    names = list(vocabulary)
    if any(i != j for i, j in zip(vocabulary.values(), range(len(names)))):
        ordered: list[Any] = [None] * len(names)
        for f, i in vocabulary.items():
            ordered[i] = f
        names = ordered
    return names


def _block_of(feature: str) -> int:
    """0 word, 1 char, 2 lead word, 3 lead char n-gram (from the prefixes the analyzer gives)."""
    lead = feature.startswith(LEAD_PREFIX)
    if lead:
        feature = feature[len(LEAD_PREFIX):]
    return 2 * lead + (not feature.startswith(WORD_PREFIX))


def _count_chunk(analyzer: ComplaintVectorizer, texts: Sequence[str]) -> tuple[list[str], sp.csr_matrix]:
    """Feature counts of some texts against their own vocabulary: (feature names, csr counts).

    The name -> column map is filled with C-level ``map`` (no Python loop per feature: this is where most of
    the fitting time would otherwise go).  Worker processes return only the distinct names, not every feature.
    """
    vocab: defaultdict[str, int] = defaultdict()
    vocab.default_factory = vocab.__len__
    index = vocab.__getitem__
    chunks: list[np.ndarray] = []
    lengths: list[int] = []
    for t in texts:
        feats = analyzer.analyze(t)
        chunks.append(np.fromiter(map(index, feats), dtype=np.int32, count=len(feats)))
        lengths.append(len(feats))
    return list(vocab), _count_matrix(chunks, lengths, len(vocab))


def _count_matrix(chunks: list[np.ndarray], lengths: list[int], width: int) -> sp.csr_matrix:
    """Counts as CSR from each text's column indices (one array per text; repeats are summed)."""
    indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    indices = np.concatenate(chunks) if chunks else np.empty(0, dtype=np.int32)
    X = sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(len(lengths), width))
    X.sum_duplicates()
    return X


def _check_documents(raw_documents: Any) -> None:
    if raw_documents is None or isinstance(raw_documents, (str, bytes)):
        got = "None" if raw_documents is None else "a single string"
        raise NotAListError(f"expected a list of texts, got {got}; wrap one text in a list: [text]")


def _analyze_chunk(vectorizer: ComplaintVectorizer, texts: list[str]) -> list[list[str]]:
    return [vectorizer.analyze(t) for t in texts]


def _analyzer_copy(vectorizer: ComplaintVectorizer) -> ComplaintVectorizer:
    """An unfitted copy that analyzes the same way: what worker processes need, without the vocabulary."""
    vectorizer._tokenizer()
    return ComplaintVectorizer(
        tokenizer=vectorizer.tokenizer,
        word_ngram_range=vectorizer.word_ngram_range,
        char_ngram_range=vectorizer.char_ngram_range,
        normalization=vectorizer.normalization,
        lead_chars=vectorizer.lead_chars,
    )


def _chunks(texts: list[str], n_jobs: int) -> tuple[list[list[str]], int]:
    """Chunks for worker processes (and how many workers), or one chunk when the batch is too small."""
    if n_jobs == 1 or len(texts) < _PARALLEL_MIN_TEXTS or sum(map(len, texts)) < _PARALLEL_MIN_CHARS:
        return [texts], 1
    from joblib import effective_n_jobs

    workers = effective_n_jobs(n_jobs)
    if workers <= 1:
        return [texts], 1
    size = max(100, -(-len(texts) // (workers * 4)))
    return [texts[i : i + size] for i in range(0, len(texts), size)], workers


def analyze_many(
    vectorizer: ComplaintVectorizer, texts: Sequence[str], n_jobs: int = 1, progress: bool = False
) -> list[list[str]]:
    """The features of many texts, in parallel processes (joblib) when the input is large enough to pay."""
    texts = list(texts)
    chunks, workers = _chunks(texts, n_jobs)
    if workers == 1:
        return [vectorizer.analyze(t) for t in _progress(texts, len(texts), "tokenizing", progress, unit="text")]
    from joblib import Parallel, delayed

    analyzer = _analyzer_copy(vectorizer)
    results = Parallel(n_jobs=workers, return_as="generator")(delayed(_analyze_chunk)(analyzer, c) for c in chunks)
    out: list[list[str]] = []
    for part in _progress(results, len(chunks), "tokenizing", progress, unit="chunk"):
        out.extend(part)
    return out


def _progress(items: Iterable[Any], total: int, desc: str, enabled: bool, unit: str) -> Iterable[Any]:
    from .progress import progress_bar

    return progress_bar(items, total=total, desc=desc, unit=unit, enabled=enabled)
