"""Cross-validated search over a small grid of training settings: ``hotline tune``.

    hotline tune cases.csv --text 留言详情 --category 一级标签 --agency 承办单位 \\
        --C 0.5,1,2 --min-df 1,2 --word-ngrams 1-1,1-2 --class-weight none,balanced --folds 3

``tune(data, text, targets, grid)`` is the pure function; the command only parses, calls and prints.  Every
grid point is scored on the same stratified folds.  The jieba tokens of each text are computed once and
reused by every grid point (segmentation is most of the cost), and grid points that share their feature
settings share the fitted features of each fold, so a grid of model settings costs little more than one fit.
The score that ranks grid points is the mean macro-F1 over the targets (then accuracy): hotline classes are
imbalanced, and a rare agency matters as much as a frequent one.  ``nll`` (mean negative log-likelihood of
the true class) judges the calibration settings.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np
import pandas as pd

from classifier.config import TrainingConfig
from classifier.errors import ConfigError, TrainingDataError
from classifier.features import ComplaintVectorizer
from classifier.model import TargetHead, head_rows
from classifier.text import ComplaintTokenizer

from .data import default_targets, read_table, validate
from .metrics import classification_metrics
from .splits import Split, group_values, kfold_splits, time_folds, time_values

__all__ = ["GRID_KEYS", "DEFAULT_GRID", "TuneResult", "tune", "parse_grid", "add_command"]

# command-line flag -> config key, and how to read one value of it
GRID_KEYS: dict[str, str] = {
    "C": "model.C",
    "class_weight": "model.class_weight",
    "calibration": "model.calibration",
    "min_df": "features.min_df",
    "word_ngrams": "features.word_ngram_range",
    "char_ngrams": "features.char_ngram_range",
    "char_weight": "features.char_weight",
    "lead_chars": "features.lead_chars",
    "fusion": "model.fusion",
}
DEFAULT_GRID: dict[str, list[Any]] = {
    "model.C": [0.5, 1.0, 2.0],
    "features.min_df": [1, 2],
    "features.word_ngram_range": [(1, 1), (1, 2)],
    "model.class_weight": [None, "balanced"],
}
MAX_GRID_POINTS = 200
METRICS = ("accuracy", "macro_f1", "top3_accuracy", "nll")


@dataclass
class TuneResult:
    """One row per grid point, best first; ``best`` is the winning config, ready for ``hotline train --config``."""

    grid: dict[str, list[Any]]
    folds: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    best: TrainingConfig | None = None

    def table(self) -> str:
        """The results as a fixed-width text table (the varying settings, then each target's means)."""
        if not self.rows:
            return "(no results)"
        keys = [k for k, v in self.grid.items() if len(v) > 1] or list(self.grid)
        targets = list(self.rows[0]["scores"])
        head = ["rank", *[k.split(".")[-1] for k in keys]]
        for t in targets:
            head += [f"{t} acc", f"{t} macro-F1", f"{t} top-3", f"{t} nll"]
        head.append("fit s")
        lines = [head]
        for i, r in enumerate(self.rows, 1):
            cells = [str(i), *[_show(r["params"][k]) for k in keys]]
            for t in targets:
                s = r["scores"][t]
                cells += [f"{s['accuracy']:.4f}", f"{s['macro_f1']:.4f}", f"{s['top3_accuracy']:.4f}",
                          f"{s['nll']:.3f}"]
            cells.append(f"{r['fit_s']:.1f}")
            lines.append(cells)
        widths = [max(len(row[j]) for row in lines) for j in range(len(head))]
        return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "folds": self.folds,
            "grid": {k: [_show(v) for v in vs] for k, vs in self.grid.items()},
            "rows": [{**r, "params": {k: _show(v) for k, v in r["params"].items()}} for r in self.rows],
            "best_config": self.best.model_dump(mode="json") if self.best else None,
        }


def _show(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, (tuple, list)):
        return "-".join(str(x) for x in v)
    return str(v)


class _MemoTokenizer(ComplaintTokenizer):
    """A tokenizer that remembers the tokens of each normalized text: every grid point and fold of one search
    segments the same texts, and segmentation is most of the cost.  Used only inside ``tune``."""

    def __init__(self, base: ComplaintTokenizer) -> None:
        super().__init__(base.user_dict, base.stop_words, hmm=base.hmm, segmenter=base.segmenter)
        self._memo: dict[str, list[str]] = {}

    def cut(self, normalized: str) -> list[str]:
        tokens = self._memo.get(normalized)
        if tokens is None:
            tokens = self._memo[normalized] = super().cut(normalized)
        return tokens


def grid_points(base: TrainingConfig, grid: Mapping[str, Sequence[Any]]) -> list[TrainingConfig]:
    """Every combination of the grid's values applied to ``base`` (validated strictly)."""
    if not grid:
        raise ConfigError("the grid is empty: give at least one setting to vary, e.g. --C 0.5,1,2")
    for key, values in grid.items():
        if not values:
            raise ConfigError(f"grid setting {key!r} has no values")
    n = int(np.prod([len(v) for v in grid.values()]))
    if n > MAX_GRID_POINTS:
        raise ConfigError(f"the grid has {n} points; the limit is {MAX_GRID_POINTS}. Vary fewer settings")
    keys = list(grid)
    return [base.with_updates(**dict(zip(keys, combo))) for combo in itertools.product(*grid.values())]


def cv_folds(data: pd.DataFrame | str | Path, text: str, targets: Mapping[str, str] | None, config: TrainingConfig,
             folds: int, encoding: str | None = None, group: str | None = None, time: str | None = None,
             ) -> tuple[pd.DataFrame, list[str], list[Split]]:
    """The validated rows (as ``train`` validates them), the target names and the k folds (stratified by the
    first target, ``group``'s rows kept together; with ``time``, forward-chaining folds in time order:
    ``training.splits.time_folds``) that ``tune`` and ``learning_curve`` score on."""
    if isinstance(folds, bool) or not isinstance(folds, int) or not 2 <= folds <= 20:
        raise ConfigError(f"folds must be an integer from 2 to 20, got {folds!r}")
    if isinstance(data, (str, Path)):
        data = read_table(data, encoding=encoding)
    if targets is None:
        targets = default_targets(data)
    clean, _ = validate(data, text, targets, min_class_count=config.min_class_count,
                        rare_policy=config.rare_policy, other_label=config.other_label,
                        drop_duplicates=config.drop_duplicates, max_text_length=config.max_text_length)
    names = list(targets)
    strat = clean[names[0]].fillna("\x00").to_numpy()
    groups = group_values(data, group, clean) if group is not None else None
    try:
        if time is not None:
            splits = time_folds(time_values(data, time, clean), folds, groups)
        else:
            splits = kfold_splits(strat, folds, config.seed, groups)
    except TrainingDataError as exc:
        raise TrainingDataError(f"{exc}. Lower --folds") from None
    return clean, names, splits


def tune(
    data: pd.DataFrame | str | Path,
    text: str = "text",
    targets: Mapping[str, str] | None = None,
    grid: Mapping[str, Sequence[Any]] | None = None,
    config: TrainingConfig | None = None,
    folds: int = 3,
    log: Callable[[str], None] | None = None,
    encoding: str | None = None,
    group: str | None = None,
    time: str | None = None,
) -> TuneResult:
    """Score every grid point by ``folds``-fold stratified cross-validation; rows best first.  ``group``: a
    column whose rows stay in one fold; ``time``: a date column, for forward-chaining folds in time order
    instead (see ``training.splits``).

    ``grid`` maps config keys (``"model.C"``, ``"features.min_df"``...) to the values to try (default:
    ``DEFAULT_GRID``); ``config`` gives every other setting.  ``log`` receives one progress line per fit.
    """
    config = config or TrainingConfig()
    grid = {k: list(v) for k, v in (grid if grid is not None else DEFAULT_GRID).items()}
    say = log or (lambda _msg: None)
    points = grid_points(config, grid)
    clean, names, splits = cv_folds(data, text, targets, config, folds, encoding, group, time)
    texts = clean["text"].tolist()
    tokenizer = _MemoTokenizer(ComplaintTokenizer.from_files(
        config.user_dict, config.stop_words, hmm=config.features.hmm, segmenter=config.features.segmenter))

    # group grid points by their feature settings: features are fitted once per group and fold
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(points):
        groups.setdefault(p.features.model_dump_json(), []).append(i)
    sums: list[dict[str, dict[str, list[float]]]] = [
        {n: {m: [] for m in METRICS} for n in names} for _ in points]
    fit_s = [0.0] * len(points)
    labels = [" ".join(f"{key.split('.')[-1]}={_show(_get(p.model_dump(), key))}" for key in grid) for p in points]
    total, done = len(points) * folds, 0
    for members in groups.values():
        f = points[members[0]].features
        for k, (train_idx, test_idx) in enumerate(splits):
            t0 = perf_counter()
            vec = ComplaintVectorizer(
                tokenizer=tokenizer, word_ngram_range=f.word_ngram_range, char_ngram_range=f.char_ngram_range,
                min_df=f.min_df, max_df=f.max_df, max_features=f.max_features, sublinear_tf=f.sublinear_tf,
                char_weight=f.char_weight, n_jobs=1,  # in-process: the token memo lives here
                lead_chars=f.lead_chars, normalization=f.normalization,
            )
            X_train = vec.fit_transform([texts[i] for i in train_idx])
            X_test = vec.transform([texts[i] for i in test_idx])
            feature_s = (perf_counter() - t0) / len(members)
            for i in members:
                t1 = perf_counter()
                for n in names:
                    y = clean[n].to_numpy()
                    has = pd.notna(y[train_idx])
                    tr = train_idx[has]
                    te = test_idx[pd.notna(y[test_idx])]
                    head = TargetHead.from_config(points[i].model, random_state=config.seed, n_jobs=config.n_jobs)
                    # the same rows (and, for a partly labeled target, the same features) train would fit on
                    head.fit(head_rows(X_train, has, f.min_df), y[tr].astype(str),
                             char_columns=vec.is_char_, lead_columns=vec.is_lead_)
                    proba = head.predict_proba(X_test[np.searchsorted(test_idx, te)])
                    m = classification_metrics(y[te].astype(str), proba, list(head.classes_))
                    m["nll"] = _nll(y[te].astype(str), proba, head.classes_)
                    for key in METRICS:
                        sums[i][n][key].append(m[key])
                fit_s[i] += feature_s + perf_counter() - t1
                done += 1
                say(f"[{done}/{total}] fold {k + 1}/{folds} {labels[i]}  "
                    + " ".join(f"{n} macro-F1 {sums[i][n]['macro_f1'][-1]:.4f}" for n in names))
    rows = []
    for i, p in enumerate(points):
        dumped = p.model_dump()
        params = {key: _get(dumped, key) for key in grid}
        scores = {n: {m: float(np.mean(v)) for m, v in sums[i][n].items()} for n in names}
        rows.append({"params": params, "scores": scores, "fit_s": fit_s[i] / folds, "_i": i})
    rows.sort(key=lambda r: (-np.mean([s["macro_f1"] for s in r["scores"].values()]),
                             -np.mean([s["accuracy"] for s in r["scores"].values()]), r["fit_s"]))
    best = points[rows[0]["_i"]]
    for r in rows:
        del r["_i"]
    return TuneResult(grid=grid, folds=folds, rows=rows, best=best)


def _get(dumped: dict[str, Any], key: str) -> Any:
    node: Any = dumped
    for part in key.split("."):
        node = node[part]
    return tuple(node) if isinstance(node, list) else node


def _nll(y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class (a class the fold never saw counts as p = 1e-6)."""
    pos = np.searchsorted(classes, y)
    pos = np.clip(pos, 0, len(classes) - 1)
    known = classes[pos] == y
    p = np.where(known, proba[np.arange(len(y)), pos], 1e-6)
    return float(-np.log(np.clip(p, 1e-6, 1.0)).mean())


# -- parsing the grid from the command line --------------------------------------------------------------------
def _parse_value(flag: str, raw: str) -> Any:
    raw = raw.strip()
    key = GRID_KEYS[flag]
    try:
        if key.endswith("ngram_range"):
            lo, sep, hi = raw.partition("-")
            return (int(lo), int(hi if sep else lo))
        if key == "model.class_weight":
            if raw not in ("none", "balanced"):
                raise ValueError
            return None if raw == "none" else raw
        if key == "model.calibration":
            if raw not in ("temperature", "none"):
                raise ValueError
            return raw
        if key == "model.fusion":
            if raw not in ("auto", "on", "off"):
                raise ValueError
            return raw
        if key in ("features.min_df", "features.lead_chars"):
            return int(raw)
        return float(raw)
    except ValueError:
        expected = {
            "features.word_ngram_range": "ranges like 1-2", "features.char_ngram_range": "ranges like 1-3",
            "model.class_weight": "none or balanced", "model.calibration": "temperature or none",
            "model.fusion": "auto, on or off",
            "features.min_df": "integers", "features.lead_chars": "integers",
        }.get(key, "numbers")
        raise ConfigError(f"--{flag.replace('_', '-')}: expected comma-separated {expected}, got {raw!r}") from None


def parse_grid(specs: Mapping[str, str | None]) -> dict[str, list[Any]]:
    """``{"C": "0.5,1", "min_df": None, ...}`` (flag -> comma-separated values) to a grid of config keys;
    with no flag given, ``DEFAULT_GRID``."""
    grid: dict[str, list[Any]] = {}
    for flag, raw in specs.items():
        if raw is None:
            continue
        if flag not in GRID_KEYS:
            raise ConfigError(f"unknown grid setting {flag!r}; known: {sorted(GRID_KEYS)}")
        values = [_parse_value(flag, v) for v in raw.split(",") if v.strip()]
        if not values:
            raise ConfigError(f"--{flag.replace('_', '-')}: give at least one value")
        grid[GRID_KEYS[flag]] = list(dict.fromkeys(values))
    return grid or {k: list(v) for k, v in DEFAULT_GRID.items()}


# -- command line ---------------------------------------------------------------------------------------------
def add_command(sub: Any) -> None:
    p = sub.add_parser(
        "tune", help="cross-validated search over training settings",
        description="Score a small grid of settings by k-fold cross-validation and print a results table, "
                    "best first (ranked by mean macro-F1 over the targets). Without grid flags: "
                    + ", ".join(f"{k}={[_show(v) for v in vs]}" for k, vs in DEFAULT_GRID.items()) + ".")
    from .cli import add_data_arguments

    add_data_arguments(p)
    p.add_argument("--folds", type=int, default=3, help="cross-validation folds (default 3)")
    grid = p.add_argument_group("grid (comma-separated values to try)")
    grid.add_argument("--C", dest="grid_C", metavar="VALUES", help="regularization, e.g. 0.5,1,2")
    grid.add_argument("--class-weight", dest="grid_class_weight", metavar="VALUES", help="none,balanced")
    grid.add_argument("--calibration", dest="grid_calibration", metavar="VALUES", help="temperature,none")
    grid.add_argument("--min-df", dest="grid_min_df", metavar="VALUES", help="e.g. 1,2,3")
    grid.add_argument("--word-ngrams", dest="grid_word_ngrams", metavar="RANGES", help="e.g. 1-1,1-2")
    grid.add_argument("--char-ngrams", dest="grid_char_ngrams", metavar="RANGES", help="e.g. 1-3,2-3")
    grid.add_argument("--char-weight", dest="grid_char_weight", metavar="VALUES", help="e.g. 0.5,1")
    grid.add_argument("--lead-chars", dest="grid_lead_chars", metavar="VALUES",
                      help="characters of the text's start given blocks of their own, e.g. 0,20,40")
    grid.add_argument("--fusion", dest="grid_fusion", metavar="VALUES",
                      help="auto,on,off: fused word/char SVM + naive Bayes heads (see TargetHead)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--save-config", type=Path, metavar="PATH",
                   help="write the best settings as a JSON config for `hotline train --config`")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_tune)


def cmd_tune(args: argparse.Namespace) -> int:
    from .cli import parse_targets, training_config

    grid = parse_grid({flag: getattr(args, f"grid_{flag}") for flag in GRID_KEYS})
    log = None if (args.quiet or args.json) else (lambda m: print(m, file=sys.stderr, flush=True))
    result = tune(args.data, text=args.text, targets=parse_targets(args), grid=grid,
                  config=training_config(args), folds=args.folds, log=log, encoding=args.encoding,
                  group=args.group, time=args.time)
    if args.save_config is not None and result.best is not None:
        args.save_config.write_text(result.best.model_dump_json(indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
    else:
        print(f"{result.folds}-fold cross-validation, {len(result.rows)} grid points, best first:")
        print(result.table())
        if args.save_config is not None:
            print(f"best settings written to {args.save_config} (use: hotline train --config {args.save_config})")
    return 0
