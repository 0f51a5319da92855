"""How accuracy grows with labeled data: would more labeled cases reach issue 5's targets?

    .venv/bin/python -m benchmarks.learning_curve [--tasks tipdm,thucnews] [--no-write]

For each data set the whole product (``ComplaintClassifier(TrainingConfig())``) is fitted on

- 1/8, 1/4, 1/2 and all of the train split (``training.curve.subsample``: each class in proportion, at least
  one case; seed 0) and
  scored on the whole evaluation split;
- the train split *plus half of the evaluation split*, scored on the other half, both ways round (a stratified
  2-fold split of the evaluation split), so every evaluation case is scored once by a model that never saw it:
  what 50 % more labeled data (from the evaluation split's own distribution) buys.  Against the train-only
  model on the same cases, McNemar's exact test says whether that gain is real.

A straight line of the metric against log2(training cases) through those points gives the gain per doubling
of the data and, for the issue's targets, how many labeled cases the line reaches the target at.  Learning
curves flatten as data grows, so that figure is a lower bound on the data a target needs, not a promise.

The results are written between the ``learning-curve`` markers of BENCHMARKS.md.  ~5 minutes on 2 cores.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.datasets import Task, tasks_for_command  # noqa: E402
from benchmarks.experiments import command_line, publish, section_parser  # noqa: E402
from benchmarks.run import TARGETS  # noqa: E402
from classifier.config import TrainingConfig  # noqa: E402
from classifier.model import ComplaintClassifier  # noqa: E402
from training.curve import subsample  # noqa: E402
from training.metrics import classification_metrics, paired_accuracy_test  # noqa: E402

START, END = "<!-- learning-curve:start -->", "<!-- learning-curve:end -->"
FRACTIONS = (0.125, 0.25, 0.5, 1.0)
METRICS = ("accuracy", "macro_f1", "top3_accuracy")


def _fit(texts: list[str], labels: list[str]) -> ComplaintClassifier:
    return ComplaintClassifier(TrainingConfig()).fit(texts, {"y": labels})


def _scores(model: ComplaintClassifier, texts: list[str]) -> np.ndarray:
    return model.predict_proba(texts, "y")


def curve(task: Task) -> dict[str, Any]:
    """The points of one data set: ``{"points": [{"n", metric...}], "extended": {...}}``."""
    train_texts = np.asarray(task.train_texts, dtype=object)
    train_labels = np.asarray(task.train_labels, dtype=str)
    test_texts = list(task.test_texts)
    truth = np.asarray(task.test_labels, dtype=str)
    points: list[dict[str, Any]] = []
    full_right: np.ndarray | None = None
    for fraction in FRACTIONS:
        idx = subsample(train_labels, fraction) if fraction < 1 else np.arange(len(train_labels))
        model = _fit(train_texts[idx].tolist(), train_labels[idx].tolist())
        proba = _scores(model, test_texts)
        m = classification_metrics(list(truth), proba, model.classes("y"))
        points.append({"n": int(len(idx)), "fraction": fraction, **{k: m[k] for k in METRICS}})
        if fraction == 1.0:
            full_right = np.asarray(model.classes("y"), dtype=str)[proba.argmax(1)] == truth
    assert full_right is not None
    # train + one half of the evaluation split, scored on the other half; classes with a single evaluation
    # case share one stratum so the split is defined for every class
    classes, counts = np.unique(truth, return_counts=True)
    count_of = dict(zip(classes, counts, strict=True))
    strata = np.array([y if count_of[y] >= 2 else "\x00rare" for y in truth], dtype=object)
    ext_classes = sorted(set(train_labels) | set(truth))
    proba_ext = np.zeros((len(truth), len(ext_classes)))
    sizes = []
    for added, scored in StratifiedKFold(2, shuffle=True, random_state=0).split(test_texts, strata):
        texts = train_texts.tolist() + [test_texts[i] for i in added]
        labels = train_labels.tolist() + truth[added].tolist()
        model = _fit(texts, labels)
        cols = [ext_classes.index(c) for c in model.classes("y")]
        proba_ext[np.ix_(scored, cols)] = _scores(model, [test_texts[i] for i in scored])
        sizes.append(len(texts))
    m = classification_metrics(list(truth), proba_ext, ext_classes)
    ext_right = np.asarray(ext_classes, dtype=str)[proba_ext.argmax(1)] == truth
    extended = {"n": int(round(float(np.mean(sizes)))), "fraction": None, **{k: m[k] for k in METRICS},
                "paired": paired_accuracy_test(ext_right, full_right)}
    return {"points": points, "extended": extended}


def line(points: list[dict[str, Any]], metric: str) -> tuple[float, float]:
    """(intercept, gain per doubling) of the least-squares line of ``metric`` against log2(n)."""
    x = np.log2([p["n"] for p in points])
    y = np.asarray([p[metric] for p in points])
    slope, intercept = np.polyfit(x, y, 1)
    return float(intercept), float(slope)


def cases_for(target: float, intercept: float, slope: float) -> float:
    """Training cases at which the line reaches ``target`` (inf if it never rises)."""
    if slope <= 0:
        return math.inf
    return float(2 ** ((target - intercept) / slope))


def render(results: dict[str, dict[str, Any]], command: str, seconds: float) -> str:
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [START, "## Learning curves: what more labeled data would buy (issue 5)", "",
             f"Command: `{command}` · {date} · {seconds:.0f} s · the whole product with its defaults, fitted on part "
             "of each train split (scored on the whole evaluation split) and on the train split plus half of the "
             "evaluation split (scored on the other half, both ways round; see the script's docstring). "
             "Accuracy / macro-F1 / top-3.", ""]
    lines += ["| data set | training cases | accuracy | macro-F1 | top-3 |", "| --- | --- | --- | --- | --- |"]
    for name, r in results.items():
        for p in r["points"] + [r["extended"]]:
            what = (f"{p['n']:,} (train + half of evaluation)" if p["fraction"] is None
                    else f"{p['n']:,} ({p['fraction']:g} of train)")
            lines.append(f"| {name} | {what} | {p['accuracy']:.4f} | {p['macro_f1']:.4f} | {p['top3_accuracy']:.4f} |")
    lines += ["", "Train + half of the evaluation split against the train split alone, on the same evaluation cases "
              "(McNemar's exact test):", ""]
    for name, r in results.items():
        pr = r["extended"]["paired"]
        lines.append(f"- {name}: {pr['only_this_right']} cases right only with the added data, "
                     f"{pr['only_other_right']} only without; delta {pr['accuracy_delta']:+.4f} "
                     f"(95 % interval {pr['ci95_low']:+.4f} to {pr['ci95_high']:+.4f}), "
                     f"p = {pr['p_value']:.3g}: {pr['verdict']}")
    lines += ["", "Each target against the line through all five points (metric against log2 of the training cases): "
              "the gain per doubling of the labeled data and the cases at which the line reaches the target "
              "(a lower bound: curves flatten).", "",
              "| data set | metric | target | now (all of train) | gain per doubling | cases the line needs |",
              "| --- | --- | --- | --- | --- | --- |"]
    for (name, metric), target in TARGETS.items():
        if name not in results:
            continue
        r = results[name]
        pts = r["points"] + [r["extended"]]
        intercept, slope = line(pts, metric)
        need = cases_for(target, intercept, slope)
        full = r["points"][-1]
        need_s = "never (flat)" if math.isinf(need) else f"{need:,.0f} ({need / full['n']:.1f}x train)"
        lines.append(f"| {name} | {metric} | {target} | {full[metric]:.4f} | {slope:+.4f} | {need_s} |")
    lines.append(END)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = section_parser(__doc__)
    args = p.parse_args(argv)
    tasks, _ = tasks_for_command(p, args.data, args.tasks, "the learning-curve script")
    if not tasks:
        return 1
    warnings.filterwarnings("ignore")  # liblinear convergence chatter on the small subsamples
    t0 = time.perf_counter()
    results = {}
    for task in tasks:
        t1 = time.perf_counter()
        results[task.name] = curve(task)
        print(f"{task.name}: {time.perf_counter() - t1:.0f} s", file=sys.stderr, flush=True)
    command = command_line("benchmarks.learning_curve", argv)
    body = render(results, command, time.perf_counter() - t0)
    publish(body, args, START, END, "learning-curve")
    return 0


if __name__ == "__main__":
    sys.exit(main())
