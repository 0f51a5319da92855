"""A target labeled on part of the texts: Qingdao agencies trained alone or beside the categories.

    .venv/bin/python -m benchmarks.joint_targets [--no-write]

A hotline's export has a category on every case and an agency only on the forwarded ones, and data staff train
one model on it (``hotline train`` with both columns).  The vectorizer is then fitted on every case, and the
agency head sees features that were admitted because of cases it has no label for.  Three ways, the same
Qingdao work orders:

- alone: the product fitted on the forwarded cases with their agencies only (the accuracy run's task);
- beside categories, as before session 5: the product fitted on every train case with both targets, the agency
  head learning from all of the vectorizer's features;
- beside categories, shipped: the same, the agency head learning only from features in ``min_df`` of its own
  cases (``ComplaintClassifier._head_rows``).

Scored on the test split's forwarded cases (with McNemar's test against "alone") and by 5-fold CV on the train
split (folds stratified by agency, unforwarded cases a stratum of their own; each fold's forwarded cases
scored).  Written between the ``joint-targets`` markers of BENCHMARKS.md.  ~4 minutes on 2 cores.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.model_selection import StratifiedKFold

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.experiments import command_line, publish, section_parser  # noqa: E402
from classifier.config import TrainingConfig  # noqa: E402
from classifier.model import ComplaintClassifier  # noqa: E402
from training.metrics import paired_accuracy_test  # noqa: E402

START, END = "<!-- joint-targets:start -->", "<!-- joint-targets:end -->"
ALONE, BEFORE, SHIPPED = "alone (forwarded cases only)", "beside categories, every feature", \
    "beside categories, own features (shipped)"


class _EveryFeature(ComplaintClassifier):
    """The product as before session 5: a partly labeled head learns from every feature of its rows."""

    def _head_rows(self, X: sp.csr_matrix, has: np.ndarray,
                   document_frequency: np.ndarray | None = None) -> sp.csr_matrix:
        return X[np.flatnonzero(np.asarray(has, dtype=bool))]


def _label(v: Any) -> str | None:
    return str(v) if isinstance(v, str) and v.strip() else None


def fit_and_score(way: str, texts: Sequence[str], categories: Sequence[str | None],
                  agencies: Sequence[str | None], test_texts: list[str]) -> np.ndarray:
    """The agency predicted for ``test_texts`` by a model fitted the given way."""
    if way == ALONE:
        keep = [i for i, a in enumerate(agencies) if a is not None]
        model: ComplaintClassifier = ComplaintClassifier(TrainingConfig()).fit(
            [texts[i] for i in keep], {"agency": [agencies[i] for i in keep]})
    else:
        cls = _EveryFeature if way == BEFORE else ComplaintClassifier
        model = cls(TrainingConfig()).fit(list(texts), {"category": list(categories), "agency": list(agencies)})
    return np.asarray(model.predict(test_texts, ["agency"])["agency"], dtype=str)


def run(df: pd.DataFrame, folds: int = 5) -> dict[str, Any]:
    df = df[df["text"].notna()]
    train, test = df[df["split"] == "train"], df[df["split"] == "test"]
    texts = train["text"].astype(str).tolist()
    categories = [_label(c) for c in train["category"]]
    agencies = [_label(a) for a in train["agency"]]
    forwarded = test[test["agency"].map(_label).notna()]
    test_texts = forwarded["text"].astype(str).tolist()
    truth = forwarded["agency"].astype(str).to_numpy()
    ways = (ALONE, BEFORE, SHIPPED)
    right = {w: fit_and_score(w, texts, categories, agencies, test_texts) == truth for w in ways}
    strata = np.array([a if a is not None else "\x00unforwarded" for a in agencies], dtype=object)
    counts = pd.Series(strata).value_counts()
    strata = np.array([s if counts[s] >= folds else "\x00rare" for s in strata], dtype=object)
    cv: dict[str, list[float]] = {w: [] for w in ways}
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=7).split(texts, strata):
        scored = [i for i in te if agencies[i] is not None]
        fold_truth = np.asarray([agencies[i] for i in scored], dtype=str)
        for w in ways:
            pred = fit_and_score(w, [texts[i] for i in tr], [categories[i] for i in tr],
                                 [agencies[i] for i in tr], [texts[i] for i in scored])
            cv[w].append(float((pred == fold_truth).mean()))
    return {"n_train": len(texts), "n_forwarded": sum(a is not None for a in agencies), "n_test": len(truth),
            "test": {w: float(r.mean()) for w, r in right.items()},
            "paired": {w: paired_accuracy_test(right[w], right[ALONE]) for w in ways if w != ALONE},
            "cv": cv, "folds": folds}


def render(r: dict[str, Any], command: str, seconds: float) -> str:
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [START, "## A target labeled on part of the texts: agencies beside categories (issue 5)", "",
             f"Command: `{command}` · {date} · {seconds:.0f} s · Qingdao work orders: {r['n_train']:,} train cases, "
             f"{r['n_forwarded']:,} of them forwarded (with an agency); agency accuracy on the {r['n_test']} forwarded "
             f"test cases and by {r['folds']}-fold CV on the train split (see the script's docstring).", "",
             "| agency head | test accuracy | vs alone (McNemar) | CV accuracy (mean) | CV folds |",
             "| --- | --- | --- | --- | --- |"]
    for w, acc in r["test"].items():
        pr = r["paired"].get(w)
        vs = "—" if pr is None else (f"{pr['only_this_right']} / {pr['only_other_right']} cases right only here / "
                                     f"only alone, p = {pr['p_value']:.3g}: {pr['verdict']}")
        folds = ", ".join(f"{v:.4f}" for v in r["cv"][w])
        lines.append(f"| {w} | {acc:.4f} | {vs} | {np.mean(r['cv'][w]):.4f} | {folds} |")
    lines.append(END)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = section_parser(__doc__, tasks=False)
    p.add_argument("--folds", type=int, default=5)
    args = p.parse_args(argv)
    if args.folds < 2:
        p.error(f"--folds must be at least 2, got {args.folds}")
    path = args.data / "qingdao12345" / "work_orders.csv"
    if not path.exists():
        print(f"nothing to run: {path} not found (the real data lives in ../shared/data beside the checkout)",
              file=sys.stderr)
        return 1
    warnings.filterwarnings("ignore")  # liblinear convergence chatter on rare-class folds
    t0 = time.perf_counter()
    result = run(pd.read_csv(path), args.folds)
    command = command_line("benchmarks.joint_targets", argv)
    body = render(result, command, time.perf_counter() - t0)
    publish(body, args, START, END, "joint-targets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
