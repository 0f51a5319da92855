"""Masking names and addresses: the accuracy of normalization 3 against 2, side by side in one run.

    .venv/bin/python -m benchmarks.normalization [--tasks tipdm,thucnews,...] [--no-write]

Normalization 3 (issue 15) masks person names, house/building/unit/room numbers, licence plates and card numbers
on top of what 2 masks (phones, ID numbers, e-mail addresses).  On every data set of the accuracy run, the
product with the shipped defaults is fitted on the train split twice, reading text with each version, and scored
on the evaluation split; McNemar's exact test on the cases only one of the two gets right says whether the
difference is real.  The section also counts how many placeholders of each kind version 3 puts into the train
texts (counts only: no text is printed).  Written between the ``normalization`` markers of BENCHMARKS.md.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.datasets import Task, tasks_for_command  # noqa: E402
from benchmarks.experiments import command_line, publish, section_parser  # noqa: E402
from classifier.config import TrainingConfig  # noqa: E402
from classifier.model import ComplaintClassifier  # noqa: E402
from classifier.text import ADDRESS, CARD, NAME, PLATE, normalize  # noqa: E402
from training.metrics import classification_metrics, paired_accuracy_test  # noqa: E402

START, END = "<!-- normalization:start -->", "<!-- normalization:end -->"
VERSIONS = (2, 3)
NEW_MASKS = (NAME, ADDRESS, PLATE, CARD)


def mask_counts(texts: list[str]) -> dict[str, int]:
    """How many of each new placeholder normalization 3 writes into ``texts``, and how many texts get any."""
    counts: Counter[str] = Counter()
    for t in texts:
        norm = normalize(t, 3)
        found = False
        for ph in NEW_MASKS:
            k = norm.count(ph)
            counts[ph] += k
            found = found or k > 0
        counts["texts"] += found
    return dict(counts)


def run_task(task: Task) -> dict[str, Any]:
    out: dict[str, Any] = {"task": task.name, "n_train": len(task.train_texts), "n_test": len(task.test_texts),
                           "masks": mask_counts(task.train_texts), "versions": {}}
    right = {}
    for version in VERSIONS:
        config = TrainingConfig().with_updates(**{"features.normalization": version})
        t0 = time.perf_counter()
        model = ComplaintClassifier(config).fit(task.train_texts, {"category": task.train_labels})
        proba = model.predict_proba(task.test_texts, "category")
        m = classification_metrics(task.test_labels, proba, model.classes("category"))
        classes = np.asarray(model.classes("category"), dtype=object)
        right[version] = classes[np.argmax(proba, axis=1)] == np.asarray(task.test_labels, dtype=object)
        out["versions"][version] = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                                    "n_features": len(model.vectorizer_.vocabulary_),
                                    "seconds": time.perf_counter() - t0}
    out["paired"] = paired_accuracy_test(right[3], right[2])
    return out


def render(results: list[dict[str, Any]], command: str, seconds: float) -> str:
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [START, "## Masking names and addresses: normalization 3 against 2 (issue 15)", "",
             f"Command: `{command}` · {date} · {seconds:.0f} s on 2 cores (shared) · the product with the shipped "
             "defaults, fitted on each train split reading text with normalization 2 (phones, IDs, e-mails masked) "
             "and 3 (also names, house/unit/room numbers, plates, card numbers), scored on the evaluation split. "
             "McNemar: cases only version 3 / only version 2 gets right.", "",
             "| data set | train / test | accuracy 2 → 3 | macro-F1 2 → 3 | features 2 → 3 | McNemar | "
             "train texts with a new mask | names / addresses / plates / cards masked |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        v2, v3 = r["versions"][2], r["versions"][3]
        p = r["paired"]
        masks = r["masks"]
        lines.append(
            f"| {r['task']} | {r['n_train']:,} / {r['n_test']:,} | {v2['accuracy']:.4f} → {v3['accuracy']:.4f} | "
            f"{v2['macro_f1']:.4f} → {v3['macro_f1']:.4f} | {v2['n_features']:,} → {v3['n_features']:,} | "
            f"{p['only_this_right']} / {p['only_other_right']}, p = {p['p_value']:.3g}: {p['verdict']} | "
            f"{masks.get('texts', 0):,} ({masks.get('texts', 0) / max(r['n_train'], 1):.1%}) | "
            + " / ".join(f"{masks.get(ph, 0):,}" for ph in NEW_MASKS) + " |")
    lines.append(END)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = section_parser(__doc__)
    args = p.parse_args(argv)
    tasks, _ = tasks_for_command(p, args.data, args.tasks, "the normalization benchmark")
    if not tasks:
        return 1
    t0 = time.perf_counter()
    results = []
    for task in tasks:
        print(f"{task.name} ...", file=sys.stderr, flush=True)
        results.append(run_task(task))
        acc = {v: round(results[-1]["versions"][v]["accuracy"], 4) for v in VERSIONS}
        print(f"  accuracy {acc}", file=sys.stderr, flush=True)
    body = render(results, command_line("benchmarks.normalization", argv), time.perf_counter() - t0)
    publish(body, args, START, END, "normalization")
    return 0


if __name__ == "__main__":
    sys.exit(main())
