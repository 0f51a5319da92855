"""Ideas tried against the shipped head, on the benchmark's splits: what made the defaults or did not, and by how much.

    .venv/bin/python -m benchmarks.experiments [--tasks tipdm,thucnews] [--no-write]

Every variant sees the same TF-IDF matrix as the shipped model (``TrainingConfig()`` features, fitted on the
train split) and is scored on the evaluation split; only the classifier on top changes:

- the shipped head (``TargetHead`` with the default ``ModelConfig``: fused views where the median class has
  20+ cases, else one calibrated SVM), the reference every other row is compared with;
- one ``LinearSVC`` over all features (the head before fusion; calibration does not change the argmax);
- Crammer-Singer multi-class SVM instead of one-vs-rest;
- stacking: out-of-fold (5) decision scores of three SVMs (all features, word block only, char block only),
  optionally with a multinomial naive Bayes, combined by a logistic regression;
- late fusion: the same out-of-fold scores summed with one weight per view (3-4 parameters, fitted by
  minimizing the out-of-fold log-loss), which cannot overfit many classes the way stacking can;
- a nearest-neighbour override: the label of the most similar training text when the cosine similarity is at
  least 0.9 (hotline data repeat callers; the Qingdao orders hold many near-copies);
- class weights ``(n / (k * n_c)) ** power`` for power 0.25 and 0.5 (1.0 is sklearn's "balanced");
- label cleaning (confident learning): drop the training cases whose out-of-fold SVM score for another class
  beats their own label's by 1 or more (likely mislabeled), refit;
- a ridge classifier (squared loss) instead of the SVM;
- LSA: 300 truncated-SVD dimensions of the TF-IDF appended to it (half weight), for synonyms the n-grams miss;
- per-class score offsets fitted on the out-of-fold scores to maximize accuracy (a threshold per class).

The results are written between the ``experiments`` markers of BENCHMARKS.md.  Takes ~4 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize
from sklearn.decomposition import TruncatedSVD
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.naive_bayes import MultinomialNB
from sklearn.preprocessing import normalize
from sklearn.svm import LinearSVC

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.datasets import DEFAULT_DATA, TASK_NAMES, Task, tasks_for_command  # noqa: E402
from classifier.config import TrainingConfig  # noqa: E402
from classifier.features import ComplaintVectorizer  # noqa: E402
from classifier.model import TargetHead  # noqa: E402
from classifier.text import ComplaintTokenizer  # noqa: E402

START, END = "<!-- experiments:start -->", "<!-- experiments:end -->"
NEIGHBOUR_SIMILARITY = 0.9
SHIPPED = "shipped head (fusion auto)"


def features(task: Task) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray, np.ndarray]:
    f = TrainingConfig().features
    vec = ComplaintVectorizer(ComplaintTokenizer(hmm=f.hmm, segmenter=f.segmenter),
                              word_ngram_range=f.word_ngram_range, char_ngram_range=f.char_ngram_range,
                              min_df=f.min_df, max_df=f.max_df, sublinear_tf=f.sublinear_tf,
                              char_weight=f.char_weight, lead_chars=f.lead_chars, normalization=f.normalization)
    return vec.fit_transform(task.train_texts), vec.transform(task.test_texts), vec.is_char_, vec.is_lead_


def _svm(**kw: Any) -> LinearSVC:
    return LinearSVC(C=TrainingConfig().model.C, max_iter=3000, **kw)


def _oof_scores(make: Callable[[], Any], X: sp.csr_matrix, y: np.ndarray, X_test: sp.csr_matrix,
                n_classes: int, log_proba: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold scores on the training rows and the full model's scores on the test rows; labels are
    0..n_classes-1, and a class missing from a fold's training part scores as impossible."""
    method = "predict_log_proba" if log_proba else "decision_function"
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    oof = np.full((X.shape[0], n_classes), -30.0 if log_proba else -10.0)
    counts = np.bincount(y, minlength=n_classes)
    strat = np.where(counts[y] >= 5, y, -1)  # classes too rare to stratify share one stratum
    def scores(m: Any, rows: sp.csr_matrix) -> np.ndarray:
        s = getattr(m, method)(rows)
        return np.c_[-s, s] if s.ndim == 1 else s  # binary decision_function: one column

    for train, val in folds.split(X, strat):
        m = make().fit(X[train], y[train])
        oof[np.ix_(val, m.classes_)] = scores(m, X[val])
    test = scores(make().fit(X, y), X_test)
    if log_proba:  # per-row shift: only the differences between classes carry information
        oof, test = oof - oof.max(1, keepdims=True), test - test.max(1, keepdims=True)
    return oof, test


def variants(X: sp.csr_matrix, X_test: sp.csr_matrix, is_char: np.ndarray, y: np.ndarray,
             n_classes: int, is_lead: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Test-set predictions (class indices) of every variant.  The shipped head sees every block; the others
    the word and char blocks of the whole text (not the lead blocks, which only the shipped head knows how
    to weigh)."""
    out: dict[str, np.ndarray] = {}
    head = TargetHead.from_config(TrainingConfig().model, random_state=TrainingConfig().seed)
    # the head takes string labels, as in training (its folds need a classification target type)
    out[SHIPPED] = head.fit(X, y.astype(str), char_columns=is_char, lead_columns=is_lead).predict(X_test).astype(int)
    if is_lead is not None and is_lead.any():
        whole = np.flatnonzero(~is_lead)
        X, X_test, is_char = X[:, whole], X_test[:, whole], is_char[whole]
    out["single LinearSVC"] = _svm().fit(X, y).predict(X_test)
    out["Crammer-Singer SVM"] = _svm(multi_class="crammer_singer").fit(X, y).predict(X_test)
    words, chars = np.flatnonzero(~is_char), np.flatnonzero(is_char)
    views = [(X, X_test), (X[:, words], X_test[:, words]), (X[:, chars], X_test[:, chars])]
    scores = [_oof_scores(_svm, a, y, b, n_classes) for a, b in views]
    nb = _oof_scores(lambda: MultinomialNB(alpha=0.05), X, y, X_test, n_classes, log_proba=True)
    for name, parts in (("stacking: 3 SVM views + LR", scores), ("stacking: 3 SVM views + NB + LR", scores + [nb])):
        meta = LogisticRegression(C=3.0, max_iter=3000).fit(np.hstack([p[0] for p in parts]), y)
        out[name] = meta.predict(np.hstack([p[1] for p in parts]))
    for name, parts in (("late fusion: 3 SVM views", scores), ("late fusion: 3 SVM views + NB", scores + [nb])):
        weights = _fusion_weights(np.stack([np.maximum(p[0], -5.0) for p in parts], 1), y)
        out[name] = np.einsum("nvk,v->nk", np.stack([np.maximum(p[1], -5.0) for p in parts], 1), weights).argmax(1)
    sim = (X_test @ X.T).toarray() / (1.0 + float(is_char.any()))  # two l2 blocks: self-similarity is 2
    nearest = sim.argmax(1)
    close = sim[np.arange(len(nearest)), nearest] >= NEIGHBOUR_SIMILARITY
    shipped = out["single LinearSVC"]
    out[f"nearest neighbour when cosine ≥ {NEIGHBOUR_SIMILARITY}"] = np.where(close, y[nearest], shipped)
    oof_all = scores[0][0]
    own = oof_all[np.arange(len(y)), y]
    others = oof_all.copy()
    others[np.arange(len(y)), y] = -np.inf
    keep = others.max(1) - own < 1.0
    out["labels cleaned (confident learning)"] = _svm().fit(X[keep], y[keep]).predict(X_test)
    out["ridge classifier"] = RidgeClassifier(alpha=1.0, solver="sparse_cg").fit(X, y).predict(X_test)
    k = min(300, X.shape[1] - 1, X.shape[0] - 1)
    svd = TruncatedSVD(k, random_state=0).fit(X)
    def lsa(rows: sp.csr_matrix) -> sp.csr_matrix:
        return sp.hstack([rows, sp.csr_matrix(0.5 * normalize(svd.transform(rows)))]).tocsr()
    out["LSA (300 dims) appended"] = _svm().fit(lsa(X), y).predict(lsa(X_test))
    out["per-class offsets tuned out-of-fold"] = (scores[0][1] + _class_offsets(oof_all, y)).argmax(1)
    counts = np.bincount(y, minlength=n_classes)
    for power in (0.25, 0.5):
        weights = (len(y) / (n_classes * np.maximum(counts, 1))) ** power
        m = _svm(class_weight={i: float(w) for i, w in enumerate(weights)}).fit(X, y)
        out[f"class weights, power {power}"] = m.predict(X_test)
    return out


def _class_offsets(oof: np.ndarray, y: np.ndarray, rounds: int = 3) -> np.ndarray:
    """Per-class additive score offsets maximizing out-of-fold accuracy (coordinate search, steps of 0.05)."""
    offsets = np.zeros(oof.shape[1])
    best = float(np.mean(oof.argmax(1) == y))
    for _ in range(rounds):
        for k in range(oof.shape[1]):
            for step in np.linspace(-0.5, 0.5, 21):
                trial = offsets.copy()
                trial[k] += step
                acc = float(np.mean((oof + trial).argmax(1) == y))
                if acc > best + 1e-12:
                    best, offsets = acc, trial
    return offsets


def _fusion_weights(S: np.ndarray, y: np.ndarray) -> np.ndarray:
    """One weight per view (S: rows x views x classes) minimizing the softmax log-loss of the weighted sum."""
    onehot = np.zeros((S.shape[0], S.shape[2]))
    onehot[np.arange(len(y)), y] = 1.0

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = np.einsum("nvk,v->nk", S, w)
        z -= z.max(1, keepdims=True)
        lse = np.log(np.exp(z).sum(1))
        grad = (np.exp(z - lse[:, None]) - onehot) / len(y)
        return float((lse - (z * onehot).sum(1)).mean()), np.einsum("nvk,nk->v", S, grad)

    return minimize(loss, np.ones(S.shape[1]), jac=True, method="L-BFGS-B").x


def run(tasks: list[Task]) -> dict[str, dict[str, tuple[float, float]]]:
    table: dict[str, dict[str, tuple[float, float]]] = {}
    warnings.filterwarnings("ignore")  # liblinear convergence chatter on the rare-class folds
    for task in tasks:
        t0 = time.perf_counter()
        X, X_test, is_char, is_lead = features(task)
        classes, y = np.unique(np.asarray(task.train_labels, dtype=str), return_inverse=True)
        truth = np.asarray(task.test_labels, dtype=str)
        for name, pred in variants(X, X_test, is_char, y, len(classes), is_lead).items():
            labels = classes[pred]
            table.setdefault(name, {})[task.name] = (accuracy_score(truth, labels),
                                                     f1_score(truth, labels, average="macro"))
        print(f"{task.name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return table


def render(table: dict[str, dict[str, tuple[float, float]]], task_names: list[str], command: str) -> str:
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [START, "## Ideas tried against the shipped model (issue 5)", "",
             f"Command: `{command}` · {date} · the features of `TrainingConfig()` fitted on each train split; only "
             "the classifier on top changes (see the script's docstring). Accuracy / macro-F1 on the evaluation "
             "split; **bold** where a variant beats the shipped head on both.", "",
             "| variant | " + " | ".join(task_names) + " |", "| --- |" + " --- |" * len(task_names)]
    shipped = table[SHIPPED]
    for name, row in table.items():
        cells = []
        for t in task_names:
            acc, f1 = row[t]
            better = name != SHIPPED and acc > shipped[t][0] and f1 > shipped[t][1]
            cell = f"{acc:.4f} / {f1:.4f}"
            cells.append(f"**{cell}**" if better else cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append(END)
    return "\n".join(lines) + "\n"


def write_section(path: Path, body: str, start: str = START, end: str = END) -> None:
    """Replace the section between ``start`` and ``end`` in ``path`` with ``body`` (appended if absent)."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + body.rstrip("\n") + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + body
    path.write_text(text, encoding="utf-8")


def section_parser(doc: str, tasks: bool = True) -> argparse.ArgumentParser:
    """The options every script that writes a BENCHMARKS.md section takes: --data, [--tasks,] --out, --no-write."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    if tasks:
        p.add_argument("--tasks", default=",".join(TASK_NAMES))
    p.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    p.add_argument("--no-write", action="store_true", help="print the section instead of writing BENCHMARKS.md")
    return p


def command_line(module: str, argv: list[str] | None) -> str:
    """The command that ran ``module`` with these arguments, as its section quotes it."""
    given = argv if argv is not None else sys.argv[1:]
    return f".venv/bin/python -m {module}" + (" " + " ".join(given) if given else "")


def publish(body: str, args: argparse.Namespace, start: str, end: str, name: str) -> None:
    """Print ``body`` (``--no-write``) or write it between its markers in ``args.out``."""
    if args.no_write:
        print(body)
    else:
        write_section(args.out, body, start, end)
        print(f"wrote the {name} section of {args.out}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    p = section_parser(__doc__)
    args = p.parse_args(argv)
    tasks, _ = tasks_for_command(p, args.data, args.tasks, "the experiments script")
    if not tasks:
        return 1
    body = render(run(tasks), [t.name for t in tasks], command_line("benchmarks.experiments", argv))
    publish(body, args, START, END, "experiments")
    return 0


if __name__ == "__main__":
    sys.exit(main())
