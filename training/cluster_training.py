"""Training on a corpus larger than one machine: featurization on Dask workers, heads without the whole matrix.

    from training.distributed import cluster_client, read_partitions
    from training.cluster_training import train_on_cluster
    with cluster_client("tcp://10.0.0.5:8786") as client:
        model = train_on_cluster(client, "s3://bucket/history/*.parquet", text="text", targets={"category": "cat"})

What runs where (the same steps as one machine, ``classifier.corpus`` and ``classifier.sampling``):

1. Workers read their partitions and analyze each text once (normalization, segmentation, n-grams:
   ``ComplaintVectorizer.analyze``, the one text path), counting each partition against its own vocabulary; the
   counts stay in the workers' memory.  Only each partition's distinct feature names and document frequencies
   come to the client.
2. The client merges them in partition order into the bounded count table and chooses the vocabulary and idf
   (``AnalyzedCorpus.select``'s rule); the fitted vectorizer is shipped to each worker once.
3. Workers map their counts to the vocabulary's columns and weight them; the weighted matrices stay there.
   Each partition sends back only its per-class feature sums and document frequencies (naive Bayes and
   ``min_df``: a reduction of sufficient statistics) and the rows of the calibration sample, drawn by the
   client from the labels alone (``classifier.sampling``'s rule and seed).
4. The client fits each head as a streamed head: fold views and fusion weights on the calibration sample, and
   the final SGD views by partial fits over the partitions, fetched one at a time from the workers
   (``ClusterChunks``): the whole matrix is never in one place.

Every target is streamed here, whatever its size (``ModelConfig.exact_fit_rows`` does not apply).  With the
same vocabulary the features, statistics and sample equal one machine's; the SGD views see the rows in
partitions instead of 5,000-row chunks, in another order: the accuracy cost is measured in BENCHMARKS.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from classifier.codes import (
    MAX_CHAR_N,
    ChunkCodes,
    TokenTable,
    columns_of,
    encode_chunk,
    fits,
    globalize,
    kinds_of,
    word_bits,
)
from classifier.config import TrainingConfig
from classifier.corpus import MIN_CODE_CAPACITY, ChunkStore, CodedCorpus, KindFrequencies, _kept_columns
from classifier.errors import ConfigError
from classifier.features import ComplaintVectorizer, _analyzer_copy
from classifier.model import ComplaintClassifier, _is_label
from classifier.phases import phase
from classifier.sampling import FitRows, HeadStatistics, stratified_sample
from classifier.text import NORMALIZATION_VERSION, ComplaintTokenizer

__all__ = ["train_on_cluster", "featurize_on_cluster", "ClusterChunks"]


# -- on the workers -------------------------------------------------------------------------------------------
def _analyze(frame: pd.DataFrame, analyzer: ComplaintVectorizer, text: str) -> ChunkCodes:
    return encode_chunk(analyzer, frame[text].astype(str).tolist())


def _text_hashes(frame: pd.DataFrame, text: str) -> np.ndarray:
    return pd.util.hash_array(frame[text].astype(str).to_numpy(dtype=object))


def _frequencies(chunk: ChunkCodes, repeated: np.ndarray) -> tuple[list[str], list[np.ndarray], np.ndarray,
                                                                     np.ndarray, list[np.ndarray]]:
    """The partition's tokens, codes, document frequencies, distinct-text frequencies and first rows."""
    counts = chunk.counts
    df = np.bincount(counts.indices, minlength=counts.shape[1])
    cases = (df if not repeated.any() else
             np.bincount(counts[np.flatnonzero(~repeated)].indices, minlength=counts.shape[1]))
    return chunk.tokens, chunk.codes, df, cases, chunk.first


def _weigh(chunk: ChunkCodes, vectorizer: ComplaintVectorizer, lookup: list[tuple[np.ndarray, np.ndarray]],
           mapped: np.ndarray) -> sp.csr_matrix:
    """The partition's weighted features over the fitted vocabulary (``mapped``: its tokens' corpus ids)."""
    codes = globalize(chunk.codes, kinds_of(vectorizer), mapped, word_bits(vectorizer))
    columns = columns_of(lookup, codes)[chunk.counts.indices]
    return vectorizer._weight(_kept_columns(chunk.counts, columns, len(vectorizer.vocabulary_)))


def _partition_statistics(X: sp.csr_matrix, class_index: Mapping[str, np.ndarray],
                          classes: Mapping[str, np.ndarray]) -> dict[str, HeadStatistics]:
    out = {}
    for name, idx in class_index.items():
        stats = HeadStatistics.empty(classes[name], X.shape[1])
        stats.add(X, idx)
        out[name] = stats
    return out


def _rows(X: sp.csr_matrix, rows: np.ndarray) -> sp.csr_matrix:
    return X[rows]


# -- on the client --------------------------------------------------------------------------------------------
class ClusterChunks(ChunkStore):
    """The weighted feature partitions held by the workers, read one at a time (``ChunkStore``'s interface,
    so ``classifier.partial_fit`` streams over them as over chunks on disk)."""

    def __init__(self, client: Any, futures: list[Any], starts: list[int]) -> None:
        super().__init__()
        self._client = client
        self._futures = futures
        self._starts = starts

    def __len__(self) -> int:
        return len(self._futures)

    def read(self, i: int) -> tuple[sp.csr_matrix, int]:
        return self._client.gather(self._futures[i]), self._starts[i]

    def close(self) -> None:
        self._client.cancel(self._futures)
        self._futures = []


def featurize_on_cluster(client: Any, partitions: list[Any], text: str, targets: Mapping[str, np.ndarray],
                         config: TrainingConfig, tokenizer: ComplaintTokenizer | None = None
                         ) -> tuple[ComplaintVectorizer, FitRows]:
    """Steps 1-3 of the module docstring over ``partitions`` (futures or delayed pandas frames, in row order);
    ``targets``: name -> a label per row of the whole corpus (None: unlabeled)."""
    f = config.features
    tokenizer = tokenizer or ComplaintTokenizer.from_files(config.user_dict, config.stop_words, hmm=f.hmm,
                                                           segmenter=f.segmenter)
    vectorizer = ComplaintVectorizer(tokenizer=tokenizer, word_ngram_range=f.word_ngram_range,
                                     char_ngram_range=f.char_ngram_range, min_df=f.min_df, max_df=f.max_df,
                                     max_features=f.max_features, sublinear_tf=f.sublinear_tf,
                                     char_weight=f.char_weight, lead_chars=f.lead_chars,
                                     normalization=getattr(f, "normalization", NORMALIZATION_VERSION))
    if not fits(vectorizer):
        raise ConfigError(f"training on a cluster counts n-grams as codes: char n-grams up to {MAX_CHAR_N} and word "
                          f"n-grams up to 3, got {f.char_ngram_range} and {f.word_ngram_range}; train on one "
                          "machine for longer n-grams")
    analyzer = client.scatter(_analyzer_copy(vectorizer), broadcast=True, hash=False)
    with phase("analysis and counting"):
        frames = [client.compute(p) if hasattr(p, "dask") else p for p in partitions]
        counted = [client.submit(_analyze, frame, analyzer, text, pure=False) for frame in frames]
        # a text repeated anywhere in the corpus counts once for min_df (classifier.corpus), found by its hash
        hashes = client.gather([client.submit(_text_hashes, frame, text, pure=False) for frame in frames])
        del frames
        starts = np.concatenate([[0], np.cumsum([len(h) for h in hashes])]).astype(int).tolist()
        n_rows = starts[-1]
        all_hashes = np.concatenate(hashes) if hashes else np.zeros(0, dtype=np.uint64)
        first = np.zeros(n_rows, dtype=bool)
        first[np.unique(all_hashes, return_index=True)[1]] = True
        kinds = kinds_of(vectorizer)
        tables = [KindFrequencies(max(MIN_CODE_CAPACITY, 4 * (f.max_features or 0))) for _ in kinds]
        tokens = TokenTable(word_bits(vectorizer))
        mapped = []
        jobs = [client.submit(_frequencies, c, ~first[starts[k]:starts[k + 1]], pure=False)
                for k, c in enumerate(counted)]
        for k, job in enumerate(jobs):  # in partition order, one at a time: first appearance, bounded memory
            names, codes, df, cases, firsts = job.result()
            jobs[k] = None
            mapped.append(tokens.ids_of(names))
            codes = globalize(codes, kinds, mapped[-1], tokens.bits)
            offset = 0
            for table, code, first_row in zip(tables, codes, firsts):
                end = offset + len(code)
                table.add(code, df[offset:end], cases[offset:end], first_row + starts[k])
                offset = end
        starts = starts[:-1]
    corpus = CodedCorpus(n_rows, kinds, tables, tokens, ChunkStore())
    corpus.select(vectorizer)
    lookup = corpus.lookup
    del corpus, tables
    with phase("feature matrix"):
        fitted = client.scatter(vectorizer, broadcast=True, hash=False)
        lookup_on_workers = client.scatter(lookup, broadcast=True, hash=False)
        weighted = [client.submit(_weigh, c, fitted, lookup_on_workers, m, pure=False)
                    for c, m in zip(counted, mapped)]
        del counted  # the workers drop the counts once the weighted features exist
        class_index, classes, samples = {}, {}, {}
        keep = np.zeros(n_rows, dtype=bool)
        for name, labels in targets.items():
            labels = np.asarray(labels, dtype=object)
            if len(labels) != n_rows:
                raise ValueError(f"target {name!r} has {len(labels)} labels for {n_rows} rows")
            labeled = np.flatnonzero([_is_label(v) for v in labels])
            y = labels[labeled].astype(str)
            classes[name], inverse = np.unique(y, return_inverse=True)
            idx = np.full(n_rows, -1, dtype=np.int64)
            idx[labeled] = inverse
            class_index[name] = idx
            sample = stratified_sample(y, config.model.calibration_rows, config.seed)
            samples[name] = labeled if sample is None else labeled[sample]
            keep[samples[name]] = True
        bounds = starts + [n_rows]
        parts = []
        stats: dict[str, HeadStatistics] = {}
        for k, w in enumerate(weighted):
            lo, hi = bounds[k], bounds[k + 1]
            part = client.submit(_partition_statistics, w, {n: i[lo:hi] for n, i in class_index.items()},
                                 classes, pure=False)
            for name, s in client.gather(part).items():
                if name in stats:
                    stats[name].merge(s)
                else:
                    stats[name] = s
            parts.append(client.gather(client.submit(_rows, w, np.flatnonzero(keep[lo:hi]), pure=False)))
    rows = np.flatnonzero(keep)
    X = sp.vstack(parts, format="csr")
    calibration = {name: np.searchsorted(rows, r) for name, r in samples.items()}
    return vectorizer, FitRows(X, rows, stats, calibration, class_index, ClusterChunks(client, weighted, starts))


def train_on_cluster(client: Any, data: str, text: str, targets: Mapping[str, str],
                     config: TrainingConfig | None = None) -> ComplaintClassifier:
    """A model trained on the cluster from the file(s) at ``data`` (read by the workers; labels are read by the
    client too, they are small): ``targets`` maps target names to label columns."""
    from .distributed import read_partitions

    config = config or TrainingConfig()
    ddf = read_partitions(data, [text, *targets.values()])
    labels_frame = ddf[list(dict.fromkeys(targets.values()))].compute()
    given = {name: np.array([str(v) if _is_label(v) else None for v in labels_frame[col]], dtype=object)
             for name, col in targets.items()}
    vectorizer, fit = featurize_on_cluster(client, ddf.to_delayed(), text, given, config)
    try:
        return ComplaintClassifier(config).fit_features(vectorizer, fit, given)
    finally:
        fit.close()
