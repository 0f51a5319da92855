"""Synthetic training corpora of any size, built from the real texts in ``../shared/data``, for the scaling benchmark.

    .venv/bin/python -m benchmarks.scale_corpus --sizes 25000,100000,400000     # -> benchmarks/out/scale/

The recipe (issue 17): the pool is the training splits of the three data sets (tipdm's 5,124 messages,
THUCNews's 10,000 titles, Qingdao's 3,813 work orders), one target "category" with 26 classes (7 + 10 + 9, each
label prefixed by its data set: ``tipdm/城乡建设``).  Text ``i`` of a corpus is a real pool text, drawn uniformly
with replacement, with its label, followed by 0, 1 or 2 fragments (equally likely) of other pool texts drawn the
same way: a fragment is a contiguous run of 5 to 60 characters (uniform, at a uniform start) joined by "。".
A real text seen again with other fragments brings new character n-grams and word bigrams at the joins, so the
vocabulary keeps growing with the corpus as it does with real data (without fragments a corpus of 400,000
would only repeat 18,937 texts).  Seeded: a size's corpus is the same on every run; a smaller corpus is not
a prefix of a larger one.

The test set is fixed and real: the evaluation splits (tipdm dev 1,281, THUCNews test 10,000, Qingdao test
1,250), untouched, with the same prefixed labels.  None of its texts is in the pool.

Files are Parquet (``text``, ``label``) under ``benchmarks/out/scale/`` (ignored by git: the texts are real
complaints, and Qingdao's are SENSITIVE).  Nothing here prints a text.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.datasets import DEFAULT_DATA

__all__ = ["POOL_SOURCES", "load_pool", "build_corpus", "corpus_path", "test_path", "ensure_corpora",
           "DEFAULT_OUT"]

DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "scale"
# (data set, file under data/, label column, training split, evaluation split)
POOL_SOURCES = (
    ("tipdm", "tipdm2020/messages.csv", "label", "train", "dev"),
    ("thucnews", "thucnews/titles.csv", "label", "train", "test"),
    ("qingdao", "qingdao12345/work_orders.csv", "category", "train", "test"),
)
FRAGMENT_CHARS = (5, 60)
MAX_FRAGMENTS = 2
SEED = 17


def load_pool(data: Path = DEFAULT_DATA) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training pool, real test set), each with ``text`` and ``label`` (prefixed by the data set)."""
    pools, tests = [], []
    for name, rel, label, train_split, test_split in POOL_SOURCES:
        path = data / rel
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: the scaling corpora are built from ../shared/data")
        df = pd.read_csv(path)
        df = df[df["text"].notna() & df[label].notna()]
        for split, out in ((train_split, pools), (test_split, tests)):
            part = df[df["split"] == split]
            out.append(pd.DataFrame({"text": part["text"].astype(str).to_numpy(),
                                     "label": (name + "/" + part[label].astype(str)).to_numpy()}))
    return pd.concat(pools, ignore_index=True), pd.concat(tests, ignore_index=True)


def build_corpus(pool: pd.DataFrame, n: int, seed: int = SEED) -> pd.DataFrame:
    """``n`` texts by the recipe in the module docstring."""
    rng = np.random.default_rng([seed, n])
    texts = pool["text"].to_numpy(dtype=object)
    labels = pool["label"].to_numpy(dtype=object)
    base = rng.integers(0, len(texts), n)
    n_frag = rng.integers(0, MAX_FRAGMENTS + 1, n)
    donors = rng.integers(0, len(texts), (n, MAX_FRAGMENTS))
    lengths = rng.integers(FRAGMENT_CHARS[0], FRAGMENT_CHARS[1] + 1, (n, MAX_FRAGMENTS))
    starts = rng.random((n, MAX_FRAGMENTS))
    out = []
    for i in range(n):
        parts = [texts[base[i]]]
        for k in range(n_frag[i]):
            donor = texts[donors[i, k]]
            length = min(int(lengths[i, k]), len(donor))
            start = int(starts[i, k] * (len(donor) - length + 1))
            parts.append(donor[start:start + length])
        out.append("。".join(parts))
    return pd.DataFrame({"text": out, "label": labels[base]})


def corpus_path(out: Path, n: int) -> Path:
    return out / f"corpus-{n}.parquet"


def test_path(out: Path) -> Path:
    return out / "test.parquet"


def ensure_corpora(sizes: list[int], out: Path = DEFAULT_OUT, data: Path = DEFAULT_DATA,
                   log: bool = True) -> None:
    """Write the test set and each size's corpus unless it is already there."""
    out.mkdir(parents=True, exist_ok=True)
    missing = [n for n in sizes if not corpus_path(out, n).exists()]
    if not missing and test_path(out).exists():
        return
    pool, test = load_pool(data)
    if not test_path(out).exists():
        test.to_parquet(test_path(out), index=False)
    for n in missing:
        corpus = build_corpus(pool, n)
        corpus.to_parquet(corpus_path(out, n), index=False)
        if log:
            print(f"corpus {n:,}: {corpus['text'].str.len().mean():.0f} characters a text on average, "
                  f"{corpus['label'].nunique()} classes -> {corpus_path(out, n)}", file=sys.stderr)


def parse_sizes(spec: str) -> list[int]:
    sizes = [int(float(s)) for s in spec.split(",") if s.strip()]
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected sizes such as 25000,100000, got {spec!r}")
    return sizes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=parse_sizes, default=parse_sizes("25000,100000"))
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = p.parse_args(argv)
    try:
        ensure_corpora(args.sizes, args.out, args.data)
    except FileNotFoundError as exc:
        print(f"nothing to build: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
