"""Past one machine: batch scoring of a history on a Dask cluster (``hotline predict --scheduler``).

    hotline predict --data cases/ --text 留言详情 --id 工单编号 --out scored/ --scheduler tcp://10.0.0.5:8786
    hotline predict --data cases.parquet --text text --id id --out scored/ --scheduler     # a LocalCluster here

The input is a CSV, Parquet or JSONL file, a directory of them, or a glob, on a path every worker can read: a
shared folder, or object storage through fsspec (``s3://bucket/cases/*.parquet`` with s3fs installed).  Dask
splits it into partitions (CSV in 64 MB blocks, Parquet by row group); the model is shipped to each worker
once (``Client.scatter(broadcast=True)``), each worker scores its partitions exactly as ``hotline predict
--data`` does in one process (``batch_predict.predict_frame``: the same records, row numbers and ids) and
writes them as ``OUT/part-00000.csv`` (or ``.parquet`` when OUT ends in ``.parquet``): one file per
partition, in input order.  A row that cannot be scored (an empty text) is an error record: no row is
dropped.  What runs where: the client (this
command) lists the partitions and collects one row count per partition; reading, normalization, segmentation,
features and the heads run on the workers; nothing else passes through the client.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from classifier.errors import ComplaintInputError

__all__ = ["cluster_client", "read_partitions", "score_frame", "predict_on_cluster", "ClusterScoring",
           "add_scheduler_option", "check_cluster_args"]

CSV_BLOCK = "64MB"


@contextmanager
def cluster_client(scheduler: str | None, n_workers: int | None = None) -> Iterator[Any]:
    """A ``distributed.Client`` of the scheduler at ``scheduler`` (``tcp://host:8786``), or of a LocalCluster of
    ``n_workers`` single-threaded worker processes (default: one per core) when it is None or "local"."""
    from distributed import Client, LocalCluster

    if scheduler and scheduler != "local":
        with Client(scheduler) as client:
            yield client
        return
    workers = n_workers or os.cpu_count() or 1
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        yield client


def _kind(path: str) -> str:
    lower = path.lower().rstrip("/")
    for kind, suffixes in (("parquet", (".parquet", ".pq")), ("csv", (".csv", ".csv.gz")),
                           ("jsonl", (".jsonl", ".json"))):
        if lower.endswith(suffixes):
            return kind
    raise ComplaintInputError(f"cannot tell the format of {path!r}: expected .csv, .parquet or .jsonl files "
                              "(or a directory of them)")


def _expand(path: str) -> tuple[str, str]:
    """(what dask reads, its format) for a file, a glob or a directory."""
    import fsspec

    fs, _, paths = fsspec.get_fs_token_paths(path)
    if not paths:
        raise ComplaintInputError(f"no data at {path!r}: expected a file, a directory of files or a glob "
                                  "that every worker can read")
    if len(paths) == 1 and fs.isdir(paths[0]):
        files = sorted(p for p in fs.ls(paths[0], detail=False) if not os.path.basename(p).startswith((".", "_")))
        kinds = {_kind(p) for p in files}
        if len(kinds) != 1:
            raise ComplaintInputError(f"{path!r} holds {sorted(kinds) or 'no'} data files; expected one format "
                                      "(.csv, .parquet or .jsonl)")
        kind = kinds.pop()
        glob = {"parquet": "*.parquet", "csv": "*.csv", "jsonl": "*.jsonl"}[kind]
        if kind == "parquet" and not any(p.endswith(".parquet") for p in files):
            glob = "*.pq"
        return path.rstrip("/") + "/" + glob, kind
    return path, _kind(paths[0])


def read_partitions(path: str, columns: list[str]) -> Any:
    """A dask DataFrame of ``columns`` of ``path`` (see the module docstring); a missing column is named."""
    import dask.dataframe as dd

    source, kind = _expand(str(path))
    columns = list(dict.fromkeys(columns))
    if kind == "parquet":
        ddf = dd.read_parquet(source)
    elif kind == "csv":
        ddf = dd.read_csv(source, dtype=str, blocksize=CSV_BLOCK, keep_default_na=False)
    else:
        ddf = dd.read_json(source, lines=True, blocksize=CSV_BLOCK, dtype=False)
    missing = [c for c in columns if c not in ddf.columns]
    if missing:
        raise ComplaintInputError(f"column(s) {missing} not in {path!r}; it has {list(ddf.columns)}")
    return ddf[columns]


def score_frame(model: Any, frame: pd.DataFrame, text: str, id_column: str | None, *, first_row: int = 1,
                version: str | None = None, top_k: int = 3, place_column: str | None = None,
                place: str | None = None) -> pd.DataFrame:
    """The rows of one partition as ``hotline predict --data`` writes them in one process
    (``batch_predict.predict_frame`` and ``predictions_table``: row number, id, each target's label, score and
    alternatives, needs_review, error), ``first_row`` being the partition's first row number."""
    from .batch_predict import predict_frame, predictions_table

    records = predict_frame(model, frame, text, id_column=id_column, place_column=place_column, place=place,
                            version=version, top_k=top_k, first_row=first_row)
    return predictions_table(records, list(model.targets_))


def _write(frame: pd.DataFrame, path: str) -> None:
    import fsspec

    with fsspec.open(path, "wb") as fh:
        if path.endswith(".parquet"):
            frame.to_parquet(fh, index=False)
        else:
            fh.write(frame.to_csv(index=False).encode("utf-8"))


def _score_partition(frame: pd.DataFrame, model: Any, path: str, options: dict[str, Any]) -> int:
    """On a worker: score one partition and write it; the row count goes back to the client."""
    scored = score_frame(model, frame, **options)
    _write(scored, path)
    return len(scored)


@dataclass
class ClusterScoring:
    """What ``predict_on_cluster`` did: rows scored, partitions (= output files), where, on how many workers."""

    rows: int
    partitions: int
    out: str
    workers: int
    files: list[str]


def predict_on_cluster(model: Any, data: str, text: str, id_column: str | None, out: str, client: Any, *,
                       version: str | None = None, top_k: int = 3, place_column: str | None = None,
                       place: str | None = None) -> ClusterScoring:
    """Score every row of ``data`` on the cluster behind ``client`` and write one output file per partition,
    with the row numbers one process gives (``batch_predict.first_row_number``)."""
    import fsspec

    from .batch_predict import first_row_number

    columns = [c for c in (id_column, text, place_column) if c]
    ddf = read_partitions(data, columns)
    suffix = ".parquet" if str(out).rstrip("/").endswith(".parquet") else ".csv"
    fs, _, (root,) = fsspec.get_fs_token_paths(str(out))
    fs.makedirs(root, exist_ok=True)
    # each partition's first row number: one pass that only counts rows (cheap next to scoring them)
    lengths = ddf.map_partitions(len).compute().tolist()
    first = first_row_number(_first_file(data)) + np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int)
    shipped = client.scatter(model, broadcast=True, hash=False)  # once per worker, not once per partition
    parts = ddf.to_delayed()
    files = [f"{str(out).rstrip('/')}/part-{i:05d}{suffix}" for i in range(len(parts))]
    futures = []
    for part, path, row in zip(parts, files, first.tolist()):
        options = {"text": text, "id_column": id_column, "first_row": int(row), "version": version,
                   "top_k": top_k, "place_column": place_column, "place": place}
        futures.append(client.submit(_score_partition, client.compute(part), shipped, path, options, pure=False))
    counts = client.gather(futures)
    return ClusterScoring(int(sum(counts)), len(parts), str(out), len(client.scheduler_info()["workers"]), files)


def _first_file(data: str) -> str:
    source, kind = _expand(str(data))
    return {"csv": "x.csv", "parquet": "x.parquet", "jsonl": "x.jsonl"}[kind]


def add_scheduler_option(p: Any) -> None:
    """``--scheduler [ADDRESS]`` for ``hotline predict`` (whose ``--data``, ``--text``, ``--id`` and ``--out``
    it uses)."""
    p.add_argument("--scheduler", nargs="?", const="local", metavar="ADDRESS",
                   help="score --data on a Dask cluster: the scheduler's address (tcp://host:8786), or nothing for "
                        "a LocalCluster of one worker per core. --data may then be a directory or glob of CSV, "
                        "Parquet or JSONL files on a path every worker reads (or s3://... via fsspec); --out is "
                        "a folder that gets one file per partition (.parquet when it ends in .parquet, else CSV)")


def check_cluster_args(args: Any) -> None:
    if getattr(args, "data", None) is None or getattr(args, "out", None) is None:
        raise ComplaintInputError("--scheduler scores a data file on a cluster: give --data PATH and --out FOLDER "
                                  "(and --text COLUMN, --id COLUMN)")
    if getattr(args, "texts", None) or getattr(args, "file", None) is not None:
        raise ComplaintInputError("--scheduler scores --data; give no texts or --file with it")
