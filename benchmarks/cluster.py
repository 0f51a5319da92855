"""Dask: texts/s of batch scoring and of training's featurization at 1 and 2 workers, and what training on the
cluster costs in accuracy against one machine (issue 17).

    .venv/bin/python -m benchmarks.cluster --size 20000          # writes BENCHMARKS.md's cluster section

The corpus is the scaling benchmark's (``benchmarks/scale_corpus.py``) written as 8 Parquet files, the real test
set the same.  Each worker count gets a fresh LocalCluster of single-threaded worker processes on this machine
(2 cores: two workers is the most it can show).  Scoring: ``predict_on_cluster`` with a model trained on the
first 5,000 texts.  Featurization: ``featurize_on_cluster`` (analysis, counting, vocabulary, weighted features
and the heads' statistics).  Accuracy: the product trained on the corpus by one process (its defaults), by one
process streamed (``exact_fit_rows`` below the corpus: the single-machine path for large data) and on the
2-worker cluster (``train_on_cluster``).  Complaint text is never printed.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.experiments import command_line, publish, section_parser
from benchmarks.scale_corpus import DEFAULT_OUT, corpus_path, ensure_corpora, test_path

START, END = "<!-- cluster:start -->", "<!-- cluster:end -->"
PARTS = 8


def _accuracy(model: Any, test: pd.DataFrame) -> float:
    got = np.asarray(model.predict(test["text"].tolist())["category"], dtype=object)
    return float(np.mean(got == test["label"].to_numpy(dtype=object)))


def run(size: int, out: Path) -> dict[str, Any]:
    from classifier.config import TrainingConfig
    from classifier.model import ComplaintClassifier
    from training.cluster_training import featurize_on_cluster, train_on_cluster
    from training.distributed import cluster_client, predict_on_cluster, read_partitions

    ensure_corpora([size], out)
    corpus = pd.read_parquet(corpus_path(out, size))
    test = pd.read_parquet(test_path(out))
    result: dict[str, Any] = {"size": size, "scoring": {}, "featurization": {}}
    with tempfile.TemporaryDirectory(prefix="hotline-cluster-") as tmp:
        folder = Path(tmp) / "corpus"
        folder.mkdir()
        corpus = corpus.assign(case_id=[f"C{i}" for i in range(len(corpus))])
        for k, part in enumerate(np.array_split(np.arange(len(corpus)), PARTS)):
            corpus.iloc[part].to_parquet(folder / f"part-{k}.parquet", index=False)
        scorer = ComplaintClassifier(TrainingConfig()).fit(corpus["text"].tolist()[:5000],
                                                           {"category": corpus["label"].tolist()[:5000]})
        labels = {"category": corpus["label"].to_numpy(dtype=object)}
        for workers in (1, 2):
            with cluster_client(None, n_workers=workers) as client:
                t0 = time.perf_counter()
                done = predict_on_cluster(scorer, str(folder), "text", "case_id", f"{tmp}/scored-{workers}", client)
                result["scoring"][workers] = done.rows / (time.perf_counter() - t0)
                t0 = time.perf_counter()
                ddf = read_partitions(str(folder), ["text"])
                _, fit = featurize_on_cluster(client, ddf.to_delayed(), "text", labels, TrainingConfig())
                result["featurization"][workers] = size / (time.perf_counter() - t0)
                fit.close()
            print(f"{workers} worker(s): scoring {result['scoring'][workers]:,.0f} texts/s, featurization "
                  f"{result['featurization'][workers]:,.0f} texts/s", file=sys.stderr, flush=True)
        texts, y = corpus["text"].tolist(), {"category": corpus["label"].tolist()}
        t0 = time.perf_counter()
        result["one process"] = _accuracy(ComplaintClassifier(TrainingConfig()).fit(texts, y), test)
        result["one process s"] = time.perf_counter() - t0
        streamed = TrainingConfig().with_updates(**{"model.exact_fit_rows": 100})
        t0 = time.perf_counter()
        result["one process, streamed"] = _accuracy(ComplaintClassifier(streamed).fit(texts, y), test)
        result["one process, streamed s"] = time.perf_counter() - t0
        with cluster_client(None, n_workers=2) as client:
            t0 = time.perf_counter()
            model = train_on_cluster(client, str(folder), "text", {"category": "label"}, TrainingConfig())
            result["2-worker cluster s"] = time.perf_counter() - t0
        result["2-worker cluster"] = _accuracy(model, test)
    return result


def render(r: dict[str, Any], command: str) -> str:
    from benchmarks.scale import _cpu, _versions

    lines = [
        START, "## Dask: scoring and featurization on workers, training on a cluster (issue 17)", "",
        f"Command: `{command}` · {_cpu()}, LocalCluster on this 2-core machine (shared, noisy) · {_versions()}", "",
        f"Corpus: the scaling benchmark's {r['size']:,} texts as {PARTS} Parquet files; accuracy on its real test "
        "set (12,531 texts).", "",
        "| workers | batch scoring texts/s | featurization texts/s |", "| --- | --- | --- |",
    ]
    for w in (1, 2):
        lines.append(f"| {w} | {r['scoring'][w]:,.0f} | {r['featurization'][w]:,.0f} |")
    lines += ["", "| trained by | accuracy | wall s |", "| --- | --- | --- |"]
    for key in ("one process", "one process, streamed", "2-worker cluster"):
        lines.append(f"| {key} | {r[key]:.4f} | {r[key + ' s']:,.0f} |")
    lines += ["", END]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = section_parser(__doc__, tasks=False)
    p.add_argument("--size", type=int, default=20_000)
    p.add_argument("--corpora", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    try:
        result = run(args.size, args.corpora)
    except FileNotFoundError as exc:
        print(f"nothing to run: {exc}", file=sys.stderr)
        return 1
    publish(render(result, command_line("benchmarks.cluster", argv)), args, START, END, "cluster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
