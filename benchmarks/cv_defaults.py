"""Cross-validated evidence for a default: ours with one setting changed, by k-fold CV on each train split.

    .venv/bin/python -m benchmarks.cv_defaults [--folds 5] [--tasks tipdm,thucnews] [--no-write]

The accuracy section (``benchmarks.run``) scores each candidate on one evaluation split: 1,281 tipdm messages
or 539 Qingdao work orders, where a few cases either way decide a row.  Here every candidate is the whole
product (``ComplaintClassifier``: the vectorizer is refitted in every fold) trained on k-1 folds of the
*train* split and scored on the remaining fold, so each of a data set's training cases is scored once and the
evaluation splits stay untouched.  Per candidate: mean accuracy / macro-F1 over the folds, and the number of
folds it beats the shipped defaults in.  The folds are the same for every candidate (stratified, seed 7;
classes with fewer cases than folds share one stratum).

The results are written between the ``cv-defaults`` markers of BENCHMARKS.md.  ~11 minutes on 2 cores.
"""

from __future__ import annotations

import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.datasets import Task, tasks_for_command  # noqa: E402
from benchmarks.experiments import command_line, publish, section_parser  # noqa: E402
from classifier.config import TrainingConfig  # noqa: E402
from classifier.model import ComplaintClassifier  # noqa: E402

START, END = "<!-- cv-defaults:start -->", "<!-- cv-defaults:end -->"
SHIPPED = "shipped defaults"
# one change each against TrainingConfig()
CANDIDATES: dict[str, dict[str, Any]] = {
    SHIPPED: {},
    "no lead blocks (lead_chars=0)": {"features.lead_chars": 0},
    "lead_chars=40": {"features.lead_chars": 40},
    "char 1-2-grams": {"features.char_ngram_range": (1, 2)},
    "C=2": {"model.C": 2.0},
}


def cross_validate(task: Task, folds: int) -> dict[str, list[tuple[float, float]]]:
    """(accuracy, macro-F1) per fold of each candidate on the task's train split."""
    texts = np.asarray(task.train_texts, dtype=object)
    labels = np.asarray(task.train_labels, dtype=str)
    classes, counts = np.unique(labels, return_counts=True)
    count_of = dict(zip(classes, counts, strict=True))
    strata = np.array([y if count_of[y] >= folds else "\x00rare" for y in labels], dtype=object)
    splitter = StratifiedKFold(folds, shuffle=True, random_state=7)
    out: dict[str, list[tuple[float, float]]] = {name: [] for name in CANDIDATES}
    for train, test in splitter.split(texts, strata):
        for name, updates in CANDIDATES.items():
            config = TrainingConfig().with_updates(**updates)
            model = ComplaintClassifier(config).fit(texts[train].tolist(), {"y": labels[train].tolist()})
            pred = np.asarray(model.predict(texts[test].tolist())["y"], dtype=str)
            truth = labels[test]
            out[name].append((float(accuracy_score(truth, pred)), float(f1_score(truth, pred, average="macro"))))
    return out


def render(results: dict[str, dict[str, list[tuple[float, float]]]], folds: int, command: str) -> str:
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    names = list(results)
    lines = [START, "## Defaults by cross-validation on the train splits (issue 5)", "",
             f"Command: `{command}` · {date} · {folds}-fold CV of the whole product on each data set's train "
             "split (the evaluation splits are not used). Mean accuracy / macro-F1 over the folds; in brackets, "
             "the folds where the candidate's accuracy beats the shipped defaults' (ties not counted).", "",
             "| candidate | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for cand in CANDIDATES:
        cells = []
        for task in names:
            scores = np.asarray(results[task][cand])
            cell = f"{scores[:, 0].mean():.4f} / {scores[:, 1].mean():.4f}"
            if cand != SHIPPED:
                base = np.asarray(results[task][SHIPPED])[:, 0]
                cell += f" ({int((scores[:, 0] > base + 1e-12).sum())} of {folds})"
            cells.append(cell)
        lines.append(f"| {cand} | " + " | ".join(cells) + " |")
    lines.append(END)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = section_parser(__doc__)
    p.add_argument("--folds", type=int, default=5)
    args = p.parse_args(argv)
    if args.folds < 2:
        p.error(f"--folds must be at least 2, got {args.folds}")
    tasks, _ = tasks_for_command(p, args.data, args.tasks, "the cross-validation script")
    if not tasks:
        return 1
    warnings.filterwarnings("ignore")  # liblinear convergence chatter on rare-class folds
    results = {}
    for task in tasks:
        t0 = time.perf_counter()
        results[task.name] = cross_validate(task, args.folds)
        print(f"{task.name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    command = command_line("benchmarks.cv_defaults", argv)
    body = render(results, args.folds, command)
    publish(body, args, START, END, "cv-defaults")
    return 0


if __name__ == "__main__":
    sys.exit(main())
