"""The product with its defaults on each real data set: accuracy and a hash of the predicted probabilities.

    .venv/bin/python -m benchmarks.fingerprint /tmp/after.json     # run once per code version, compare the files

A quick before/after check for changes that should not move the accuracy benchmark (BENCHMARKS.md,
"Accuracy"): each task's ``ComplaintClassifier(TrainingConfig())`` fitted on its train split, scored on its
evaluation split.  The hash is of the probabilities; it can differ in the last bits between runs of the same
code (liblinear's seed comes from NumPy's global generator in whichever fitting thread starts first), the
accuracy does not.  Complaint text is never printed.
"""

from __future__ import annotations

import hashlib
import json
import sys

import numpy as np

from benchmarks.datasets import load_tasks
from classifier.config import TrainingConfig
from classifier.model import ComplaintClassifier


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    tasks, skipped = load_tasks()
    for s in skipped:
        print(f"skipped {s}", file=sys.stderr)
    out = {}
    for t in tasks:
        m = ComplaintClassifier(TrainingConfig()).fit(t.train_texts, {"category": t.train_labels})
        P = m.predict_proba(t.test_texts, "category")
        acc = float(np.mean(np.asarray(m.classes("category"))[P.argmax(1)] == np.asarray(t.test_labels)))
        out[t.name] = {"accuracy": round(acc, 4), "features": len(m.vectorizer_.vocabulary_),
                       "proba_sha256": hashlib.sha256(P.astype(np.float64).tobytes()).hexdigest()[:16]}
        print(t.name, out[t.name], flush=True)
    if args:
        with open(args[0], "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
