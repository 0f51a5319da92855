"""Would more labeled cases help?  Cross-validated learning curves: ``hotline learning-curve``.

    hotline learning-curve cases.csv --text 留言详情 --category 一级标签 --agency 承办单位 --folds 3

``learning_curve(data, text, targets)`` is the pure function; the command only parses, calls and prints.  The
rows are validated as ``train`` validates them and split into the same k folds as ``hotline tune`` (stratified
by the first target; ``--group`` keeps a caller's cases in one fold).  In every fold the training part is cut
to each fraction (each class of the first target in proportion, at least one case), the whole product is
fitted on it, as ``train`` fits it, and scored on the fold's held-out part, which never changes.  So the rows
differ only in how many labeled cases the model had, and the last two rows say what the last doubling of the
data bought: the next doubling usually buys less (learning curves flatten).  On the benchmark's data sets
(BENCHMARKS.md, learning curves) a gain of 3-5 points per doubling went on growing; one of 1-2 had
flattened.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np
import pandas as pd

from classifier.config import TrainingConfig
from classifier.errors import ConfigError
from classifier.model import ComplaintClassifier
from classifier.text import ComplaintTokenizer

from .metrics import classification_metrics
from .tune import _MemoTokenizer, cv_folds

__all__ = ["DEFAULT_FRACTIONS", "CurveResult", "learning_curve", "parse_fractions", "subsample", "add_command"]

DEFAULT_FRACTIONS = (0.125, 0.25, 0.5, 1.0)
METRICS = ("accuracy", "macro_f1", "top3_accuracy")


def subsample(labels: Sequence[Any] | np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Positions of about ``fraction`` of the cases of each class (at least one per class), in their order."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return np.arange(len(labels))
    # classes by code, not by comparing labels: numpy compares a label like "\x00" (a row without this target's
    # label) as "" and would find no row of it; missing labels (None, NaN) are one class of their own
    codes, _ = pd.factorize(pd.Series(np.asarray(labels, dtype=object)), sort=True, use_na_sentinel=True)
    rng = np.random.default_rng(seed)
    keep: list[np.ndarray] = []
    for c in np.unique(codes):  # sorted: the same draws whatever the rows' order
        idx = np.flatnonzero(codes == c)
        keep.append(rng.choice(idx, size=max(1, round(fraction * len(idx))), replace=False))
    return np.sort(np.concatenate(keep))


@dataclass
class CurveResult:
    """One row per fraction, smallest first: ``{"fraction", "cases", "scores": {target: {metric: mean}}}``."""

    folds: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    classes: dict[str, int] = field(default_factory=dict)  # target -> classes (top-3 shown with more than 3)

    def last_doubling(self) -> dict[str, dict[str, float]]:
        """Per target and metric: the change from the second-to-last row to the last, per doubling of cases."""
        if len(self.rows) < 2:
            return {}
        a, b = self.rows[-2], self.rows[-1]
        doublings = math.log2(b["cases"] / a["cases"]) if a["cases"] and b["cases"] > a["cases"] else 0.0
        if doublings <= 0:
            return {}
        return {t: {m: (b["scores"][t][m] - a["scores"][t][m]) / doublings for m in METRICS} for t in b["scores"]}

    def table(self) -> str:
        if not self.rows:
            return "(no results)"
        targets = list(self.rows[0]["scores"])
        top3 = {t: self.classes.get(t, 4) > 3 for t in targets}  # with 3 classes or fewer top-3 is always 1
        head = ["fraction", "cases"]
        for t in targets:
            head += [f"{t} acc", f"{t} macro-F1"] + ([f"{t} top-3"] if top3[t] else [])
        lines = [head]
        for r in self.rows:
            cells = [f"{r['fraction']:g}", f"{r['cases']:,.0f}"]
            for t in targets:
                s = r["scores"][t]
                cells += [f"{s['accuracy']:.4f}", f"{s['macro_f1']:.4f}"]
                cells += [f"{s['top3_accuracy']:.4f}"] if top3[t] else []
            lines.append(cells)
        widths = [max(len(row[j]) for row in lines) for j in range(len(head))]
        out = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in lines]
        for t, g in self.last_doubling().items():
            out.append(f"{t}: the last doubling of the cases gained {g['accuracy'] * 100:+.1f} points of accuracy, "
                       f"{g['macro_f1'] * 100:+.1f} of macro-F1 (the next one usually gains less)")
        return "\n".join(out)

    def to_json(self) -> dict[str, Any]:
        return {"folds": self.folds, "rows": self.rows, "classes": self.classes, "last_doubling": self.last_doubling()}


def learning_curve(
    data: pd.DataFrame | str | Path,
    text: str = "text",
    targets: Mapping[str, str] | None = None,
    config: TrainingConfig | None = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    folds: int = 3,
    log: Callable[[str], None] | None = None,
    encoding: str | None = None,
    group: str | None = None,
    time: str | None = None,
) -> CurveResult:
    """Fit the product on each fraction of every fold's training part and score it on the fold's held-out part;
    the means over folds, one row per fraction.  ``fractions``: in (0, 1], at least two, no repeats.  ``time``:
    forward-chaining folds in time order (``training.splits.time_folds``), as ``tune`` makes them."""
    config = config or TrainingConfig()
    fractions = _check_fractions(fractions)
    say = log or (lambda _msg: None)
    clean, names, splits = cv_folds(data, text, targets, config, folds, encoding, group, time)
    texts = clean["text"].tolist()
    strat = clean[names[0]].fillna("\x00").to_numpy()
    labels = {n: clean[n].to_numpy() for n in names}
    tokenizer = _MemoTokenizer(ComplaintTokenizer.from_files(
        config.user_dict, config.stop_words, hmm=config.features.hmm, segmenter=config.features.segmenter))
    scores: list[dict[str, dict[str, list[float]]]] = [{n: {m: [] for m in METRICS} for n in names} for _ in fractions]
    cases: list[list[int]] = [[] for _ in fractions]
    total, done = len(fractions) * len(splits), 0
    for k, (train_idx, test_idx) in enumerate(splits):
        for j, fraction in enumerate(fractions):
            t0 = perf_counter()
            part = train_idx[subsample(strat[train_idx], fraction, seed=config.seed + k)]
            model = ComplaintClassifier(config, tokenizer=tokenizer).fit(
                [texts[i] for i in part], {n: labels[n][part].tolist() for n in names})
            for n in names:
                y = labels[n]
                te = test_idx[pd.notna(y[test_idx])]
                if not len(te):
                    continue
                m = classification_metrics(y[te].astype(str), model.predict_proba([texts[i] for i in te], n),
                                           model.classes(n))
                for key in METRICS:
                    scores[j][n][key].append(m[key])
            cases[j].append(len(part))
            done += 1
            say(f"[{done}/{total}] fold {k + 1}/{len(splits)} fraction {fraction:g}: {len(part):,} cases, "
                f"{perf_counter() - t0:.1f} s  "
                + " ".join(f"{n} acc {scores[j][n]['accuracy'][-1]:.4f}" for n in names if scores[j][n]['accuracy']))
    rows = [{"fraction": f, "cases": float(np.mean(cases[j])),
             "scores": {n: {m: float(np.mean(v)) if v else float("nan") for m, v in scores[j][n].items()}
                        for n in names}}
            for j, f in enumerate(fractions)]
    classes = {n: int(pd.Series(labels[n]).dropna().nunique()) for n in names}
    return CurveResult(folds=len(splits), rows=rows, classes=classes)


def _check_fractions(fractions: Sequence[float]) -> list[float]:
    values = [float(f) for f in fractions]
    if len(values) < 2:
        raise ConfigError(f"give at least two fractions to draw a curve, got {values}")
    bad = [f for f in values if not 0 < f <= 1]
    if bad:
        raise ConfigError(f"fractions must be in (0, 1], got {bad}")
    if len(set(values)) != len(values):
        raise ConfigError(f"fractions repeat: {values}")
    return sorted(values)


def parse_fractions(raw: str) -> list[float]:
    """``"0.25,0.5,1"`` -> [0.25, 0.5, 1.0], validated."""
    try:
        values = [float(v) for v in raw.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--fractions takes comma-separated numbers in (0, 1], e.g. 0.25,0.5,1; got {raw!r}") \
            from None
    return _check_fractions(values)


# -- command line ---------------------------------------------------------------------------------------------
def add_command(sub: Any) -> None:
    p = sub.add_parser(
        "learning-curve", help="would more labeled cases help? accuracy against the amount of training data",
        description="Cross-validate the product trained on growing fractions of each fold's training part "
                    "(the held-out parts stay the same) and print a table, smallest first, with what the last "
                    "doubling of the cases gained.")
    from .cli import add_data_arguments

    add_data_arguments(p)
    p.add_argument("--folds", type=int, default=3, help="cross-validation folds (default 3)")
    p.add_argument("--fractions", default=",".join(f"{f:g}" for f in DEFAULT_FRACTIONS),
                   help="fractions of each fold's training part (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_learning_curve)


def cmd_learning_curve(args: argparse.Namespace) -> int:
    from .cli import parse_targets, training_config

    fractions = parse_fractions(args.fractions)
    log = None if (args.quiet or args.json) else (lambda m: print(m, file=sys.stderr, flush=True))
    result = learning_curve(args.data, text=args.text, targets=parse_targets(args), config=training_config(args),
                            fractions=fractions, folds=args.folds, log=log, encoding=args.encoding,
                            group=args.group, time=args.time)
    if args.json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
    else:
        print(f"{result.folds}-fold cross-validation, the training part cut to each fraction:")
        print(result.table())
    return 0
