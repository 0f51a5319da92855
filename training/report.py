"""Confusion reports for auditors: where a model goes wrong, which labels to re-check, and whether a new
version is better than the current one.

``evaluate(model, df, text=..., targets={...})`` is a pure function returning a ``Report``; the report
renders itself (``to_html``, ``_repr_html_`` in a notebook) and saves HTML + CSV + JSON of every table + a
model card (``save``).  ``hotline report --model VERSION --data FILE ... --out DIR`` is the same from the
command line.  For each target (category, agency):

- accuracy, macro-F1, top-3 accuracy, per-class precision / recall / F1 / support;
- the confusion matrix (counts and row-normalized), the most-confused pairs with masked example texts;
- calibration: a reliability table, review rate and accuracy below / above the review threshold, and the
  operating points of other thresholds (share routed directly, its accuracy, share left for review);
- cases to re-check: misrouted cases (wrong predictions, most confident first) and cases whose given label
  the model confidently disputes (cleanlab's confident learning on out-of-fold probabilities).

Out-of-fold probabilities, the cheaper choice: the model's own vectorizer (TF-IDF is label-free) turns the
data into features once; per fold only the linear heads are refit with the model's config (``C``,
``class_weight``) as single SVMs, and one temperature fitted on the pooled out-of-fold scores turns them
into probabilities.  This costs a few linear fits instead of k full trainings (jieba + TF-IDF + calibration).
The check judges the labels from the text alone (a routed model's directory does not take part in it);
the metrics, matrices and case lists use the model's own ``predict_proba`` / ``classes``.

With ``compare=other_model``: both models on the same rows, per-class deltas (this model minus the other),
and the cases that flipped right->wrong (regressions) and wrong->right (fixes).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from classifier.errors import MissingColumnError, TrainingDataError
from classifier.routing import routes
from classifier.text import mask_pii

from .metrics import classification_metrics, paired_accuracy_test, paired_sentence

__all__ = [
    "EvaluationDataError",
    "Report",
    "TargetReport",
    "Comparison",
    "evaluate",
    "compare",
    "confusion_counts",
    "row_normalize",
    "confused_pairs",
    "heatmap_order",
    "reliability_table",
    "review_table",
    "operating_points",
    "disputed_labels",
    "add_command",
]

EXAMPLE_CHARS = 160  # example texts are masked and cut to this length
DISPUTE_CONFIDENCE = 0.5  # the suggested label must be at least this probable (out of fold)
WIDE_MATRIX_LIMIT = 60  # above this many classes the matrix is saved only as non-zero cells (long format)
OTHER_GROUP = "（其余 {n} 类）"  # the heatmap's group of classes beyond the top N ("the other N classes")


class EvaluationDataError(TrainingDataError):
    """Labeled data cannot be evaluated as it is (empty, one class only, no usable rows)."""


# -- arithmetic -------------------------------------------------------------------------------------------------
def confusion_counts(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Counts[i, j] = cases with true label ``labels[i]`` predicted as ``labels[j]`` (rows: truth)."""
    index = {label: i for i, label in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)), dtype=np.int64)
    if len(y_true):
        rows = np.fromiter((index[t] for t in y_true), dtype=np.int64, count=len(y_true))
        cols = np.fromiter((index[p] for p in y_pred), dtype=np.int64, count=len(y_pred))
        np.add.at(m, (rows, cols), 1)
    return m


def row_normalize(counts: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (the share of a true class going to each prediction); empty rows stay 0."""
    sums = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, sums, out=np.zeros(counts.shape, dtype=np.float64), where=sums > 0)


def confused_pairs(counts: np.ndarray, labels: Sequence[str], limit: int | None = None) -> pd.DataFrame:
    """Off-diagonal cells, most cases first (ties: larger share of the true class, then label order).

    Columns: true, predicted, count, share_of_true (count / support of the true class), reverse (cases going
    the other way, predicted -> true), pair_total (both directions).
    """
    counts = np.asarray(counts)
    support = counts.sum(axis=1)
    rows = []
    for i, j in zip(*np.nonzero(counts)):
        if i == j:
            continue
        c = int(counts[i, j])
        rows.append({
            "true": str(labels[i]),
            "predicted": str(labels[j]),
            "count": c,
            "share_of_true": c / int(support[i]),
            "reverse": int(counts[j, i]),
            "pair_total": c + int(counts[j, i]),
            "_i": int(i),
            "_j": int(j),
        })
    columns = ["true", "predicted", "count", "share_of_true", "reverse", "pair_total"]
    if not rows:
        return pd.DataFrame(columns=columns)
    df = pd.DataFrame(rows).sort_values(["count", "share_of_true", "_i", "_j"], ascending=[False, False, True, True])
    df = df[columns].reset_index(drop=True)
    return df.head(limit) if limit is not None else df


def heatmap_order(counts: np.ndarray, labels: Sequence[str], top_n: int = 25) -> tuple[list[str], np.ndarray]:
    """Labels and counts for a readable heatmap: at most ``top_n`` classes, ordered by confusion.

    The classes most involved in errors (then the largest) are kept; they are chained so that classes
    confused with each other sit side by side.  Everything else is summed into one "other N classes" row and
    column, so the matrix still adds up to every case.
    """
    counts = np.asarray(counts, dtype=np.int64)
    n = len(labels)
    off = counts - np.diag(np.diag(counts))
    sym = off + off.T
    involvement = off.sum(axis=0) + off.sum(axis=1)
    size = counts.sum(axis=0) + counts.sum(axis=1)
    rank = sorted(range(n), key=lambda i: (-involvement[i], -size[i], str(labels[i])))
    keep = rank if n <= top_n else rank[: max(top_n - 1, 1)]
    # greedy chaining: start from the most confused class, append the class most confused with the last one
    order: list[int] = []
    remaining = list(keep)
    while remaining:
        if order:
            last = order[-1]
            best = max(remaining, key=lambda i: (sym[last, i], involvement[i], -keep.index(i)))
            if sym[last, best] == 0:
                best = remaining[0]
        else:
            best = remaining[0]
        order.append(best)
        remaining.remove(best)
    names = [str(labels[i]) for i in order]
    if len(order) == n:
        return names, counts[np.ix_(order, order)]
    rest = [i for i in range(n) if i not in set(order)]
    idx = order + [rest]
    m = np.zeros((len(order) + 1, len(order) + 1), dtype=np.int64)
    for a, ia in enumerate(idx):
        for b, ib in enumerate(idx):
            ra = ia if isinstance(ia, list) else [ia]
            rb = ib if isinstance(ib, list) else [ib]
            m[a, b] = counts[np.ix_(ra, rb)].sum()
    return names + [OTHER_GROUP.format(n=len(rest))], m


def reliability_table(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Cases binned by the top label's probability: how often the model is right at each confidence."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        sel = which == b
        k = int(sel.sum())
        mean_conf = float(confidence[sel].mean()) if k else float("nan")
        acc = float(correct[sel].mean()) if k else float("nan")
        rows.append({"bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}", "low": float(edges[b]), "high": float(edges[b + 1]),
                     "cases": k, "mean_score": mean_conf, "accuracy": acc,
                     "gap": (acc - mean_conf) if k else float("nan")})
    return pd.DataFrame(rows)


def expected_calibration_error(table: pd.DataFrame) -> float:
    total = int(table["cases"].sum())
    if not total:
        return float("nan")
    used = table[table["cases"] > 0]
    return float((used["cases"] * (used["accuracy"] - used["mean_score"]).abs()).sum() / total)


def review_table(confidence: np.ndarray, correct: np.ndarray, threshold: float) -> pd.DataFrame:
    """Cases the service would send to review (score under the threshold) and those it would route directly."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    n = len(confidence)
    rows = []
    for side, sel in (("needs review (score < threshold)", confidence < threshold),
                      ("routed directly (score >= threshold)", confidence >= threshold)):
        k = int(sel.sum())
        rows.append({"side": side, "threshold": threshold, "cases": k, "share": k / n if n else float("nan"),
                     "accuracy": float(correct[sel].mean()) if k else float("nan")})
    return pd.DataFrame(rows)


OPERATING_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def operating_points(confidence: np.ndarray, correct: np.ndarray,
                     thresholds: Sequence[float] = OPERATING_THRESHOLDS) -> pd.DataFrame:
    """For each candidate review threshold: the share of cases routed directly, their accuracy, and the share
    sent to review; what a dispatcher needs to choose a threshold (``HOTLINE_THRESHOLDS``)."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    n = len(confidence)
    rows = []
    for t in thresholds:
        direct = confidence >= t
        k = int(direct.sum())
        rows.append({"threshold": float(t), "routed_directly": k / n if n else float("nan"),
                     "accuracy_routed_directly": float(correct[direct].mean()) if k else float("nan"),
                     "errors_routed_directly": int((direct & ~correct).sum()),
                     "sent_to_review": (n - k) / n if n else float("nan")})
    return pd.DataFrame(rows)


def disputed_labels(proba: np.ndarray, given: np.ndarray, scorable: np.ndarray | None = None,
                    min_confidence: float = DISPUTE_CONFIDENCE) -> pd.DataFrame:
    """Cases whose given label the out-of-fold probabilities confidently dispute (cleanlab's confident joint).

    ``proba``: (n, k) out-of-fold probabilities; ``given``: the given label's column (or -1 when the model
    cannot score it).  Per class j, the threshold t_j is the mean probability of j over cases labeled j.  A
    case is disputed when some other class j has p_j >= t_j and is the most probable of those classes
    (cleanlab's confident joint, off the diagonal), its given label i has p_i < t_i, and p_j is at least
    ``min_confidence``: with few cases per class the out-of-fold models are unsure, their per-class
    thresholds low, and without a floor a third of a long-tailed agency column gets flagged.
    Returns positions, suggested class column, given-label and suggested probabilities, margin; most
    certain first (largest margin p_suggested - p_given).
    """
    proba = np.asarray(proba, dtype=np.float64)
    given = np.asarray(given, dtype=np.int64)
    n, k = proba.shape
    ok = given >= 0 if scorable is None else (np.asarray(scorable, dtype=bool) & (given >= 0))
    thresholds = np.full(k, np.inf)
    for j in range(k):
        sel = ok & (given == j)
        if sel.any():
            thresholds[j] = proba[sel, j].mean()
    above = proba >= thresholds[None, :]
    masked = np.where(above, proba, -np.inf)
    suggested = np.argmax(masked, axis=1)
    has = np.isfinite(masked[np.arange(n), suggested])
    # and the given label is itself unconvincing: under its own class's typical probability
    low_given = proba[np.arange(n), np.maximum(given, 0)] < thresholds[np.maximum(given, 0)]
    confident = proba[np.arange(n), suggested] >= min_confidence
    disputed = ok & has & (suggested != given) & low_given & confident
    pos = np.flatnonzero(disputed)
    p_given = proba[pos, given[pos]]
    p_sugg = proba[pos, suggested[pos]]
    out = pd.DataFrame({"position": pos, "suggested": suggested[pos], "given_probability": p_given,
                        "suggested_probability": p_sugg, "margin": p_sugg - p_given})
    return out.sort_values(["margin", "position"], ascending=[False, True]).reset_index(drop=True)


# -- the report's parts ------------------------------------------------------------------------------------------
@dataclass
class TargetReport:
    """Everything measured for one target (category or agency) on one data set."""

    target: str
    column: str
    metrics: dict[str, Any]
    labels: list[str]
    confusion: np.ndarray
    per_class: pd.DataFrame
    pairs: pd.DataFrame
    calibration: pd.DataFrame
    review: pd.DataFrame
    operating_points: pd.DataFrame
    misrouted: pd.DataFrame
    disputed: pd.DataFrame
    unseen_labels: pd.DataFrame
    predictions: pd.DataFrame  # position, row, given, predicted, score, given_score, correct
    threshold: float
    notes: list[str] = field(default_factory=list)
    # a routing model's agency only: why the wrong agencies were wrong, and accuracy by where the place came from
    routing_errors: pd.DataFrame | None = None
    routing_places: pd.DataFrame | None = None

    def confusion_cells(self) -> pd.DataFrame:
        """The matrix's non-zero cells, long format: true, predicted, count, share_of_true (row-normalized)."""
        shares = row_normalize(self.confusion)
        i, j = np.nonzero(self.confusion)
        return pd.DataFrame({"true": [self.labels[k] for k in i], "predicted": [self.labels[k] for k in j],
                             "count": self.confusion[i, j].astype(int), "share_of_true": shares[i, j]})

    def confusion_frame(self, normalized: bool = False) -> pd.DataFrame:
        m = row_normalize(self.confusion) if normalized else self.confusion
        return pd.DataFrame(m, index=pd.Index(self.labels, name="true \\ predicted"), columns=self.labels)


@dataclass
class Comparison:
    """This model against another on the same rows, for one target: deltas are this minus the other."""

    target: str
    metrics: pd.DataFrame  # metric, this, other, delta
    per_class: pd.DataFrame  # label, support, f1_this, f1_other, delta_f1, recall_this, recall_other
    flips: pd.DataFrame  # row, text, given, this, other, direction (the first ``max_cases``)
    # every case counted, not only the flips kept: n, both_right, both_wrong, only_this_right,
    # only_other_right, accuracy_delta, ci95_low, ci95_high, p_value, verdict (metrics.paired_accuracy_test)
    paired: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    """A confusion report: ``to_html(path)``, ``save(out_dir)``, ``tables()``, ``model_card()``."""

    model_version: str | None
    manifest: dict[str, Any]
    data: dict[str, Any]
    targets: dict[str, TargetReport]
    skipped_targets: dict[str, str]
    compare_version: str | None = None
    compare_manifest: dict[str, Any] | None = None
    comparisons: dict[str, Comparison] = field(default_factory=dict)
    top_n: int = 25  # classes shown in a heatmap before the rest are grouped

    # tables: every one is written as CSV and JSON by ``save``
    def tables(self) -> dict[str, pd.DataFrame]:
        out: dict[str, pd.DataFrame] = {}
        summary = []
        for name, t in self.targets.items():
            summary.append({"target": name, "column": t.column, **{k: t.metrics[k] for k in _HEADLINE},
                            "cases": t.metrics["n"], "unseen_label_cases": int(t.unseen_labels["cases"].sum()),
                            "review_threshold": t.threshold})
            out[f"{name}_per_class"] = t.per_class
            out[f"{name}_confusion_cells"] = t.confusion_cells()
            if len(t.labels) <= WIDE_MATRIX_LIMIT:
                out[f"{name}_confusion"] = t.confusion_frame().reset_index()
                out[f"{name}_confusion_normalized"] = t.confusion_frame(normalized=True).reset_index()
            out[f"{name}_confused_pairs"] = _pairs_for_table(t.pairs)
            out[f"{name}_calibration"] = t.calibration
            out[f"{name}_review"] = t.review
            out[f"{name}_operating_points"] = t.operating_points
            out[f"{name}_misrouted"] = t.misrouted
            out[f"{name}_disputed_labels"] = t.disputed
            out[f"{name}_unseen_labels"] = t.unseen_labels
            if t.routing_errors is not None and t.routing_places is not None:
                out[f"{name}_routing_errors"] = t.routing_errors
                out[f"{name}_routing_places"] = t.routing_places
        out["summary"] = pd.DataFrame(summary)
        for name, c in self.comparisons.items():
            out[f"{name}_compare_metrics"] = c.metrics
            out[f"{name}_compare_per_class"] = c.per_class
            out[f"{name}_compare_flips"] = c.flips
            out[f"{name}_compare_paired"] = pd.DataFrame([c.paired])
        return {"summary": out.pop("summary"), **out}

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "compare_version": self.compare_version,
            "data": self.data,
            "skipped_targets": self.skipped_targets,
            "targets": {
                n: {"column": t.column, "metrics": t.metrics, "review_threshold": t.threshold, "notes": t.notes,
                    "expected_calibration_error": expected_calibration_error(t.calibration)}
                for n, t in self.targets.items()
            },
            "tables": {name: _records(df) for name, df in self.tables().items()},
        }

    def to_json(self) -> str:
        return json.dumps(_jsonable(self.to_dict()), ensure_ascii=False, indent=1)

    def to_html(self, path: str | Path | None = None) -> str:
        """The self-contained HTML page (inline CSS and SVG, no network); written to ``path`` if given."""
        from .report_html import render_page

        page = render_page(self)
        if path is not None:
            Path(path).write_text(page, encoding="utf-8")
        return page

    def _repr_html_(self) -> str:
        from .report_html import render_notebook

        return render_notebook(self)

    def model_card(self) -> str:
        from .report_html import render_model_card

        return render_model_card(self)

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``report.html``, ``report.json``, ``model_card.md`` and ``tables/NAME.csv`` + ``.json``."""
        out = Path(out_dir)
        (out / "tables").mkdir(parents=True, exist_ok=True)
        written = {"html": out / "report.html", "json": out / "report.json", "model_card": out / "model_card.md"}
        self.to_html(written["html"])
        written["json"].write_text(self.to_json(), encoding="utf-8")
        written["model_card"].write_text(self.model_card(), encoding="utf-8")
        for name, df in self.tables().items():
            df.to_csv(out / "tables" / f"{name}.csv", index=False, encoding="utf-8-sig")  # BOM: Excel reads UTF-8
            (out / "tables" / f"{name}.json").write_text(
                json.dumps(_jsonable(_records(df)), ensure_ascii=False, indent=1), encoding="utf-8")
            written[name] = out / "tables" / f"{name}.csv"
        return written


_HEADLINE = ("accuracy", "macro_f1", "top3_accuracy")


def _pairs_for_table(pairs: pd.DataFrame) -> pd.DataFrame:
    df = pairs.copy()
    if "examples" in df:
        df["examples"] = df["examples"].map(lambda ex: " | ".join(f"{e['text']} ({e['score']:.2f})" for e in ex))
    return df


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in row.items()} for row in df.to_dict(orient="records")]


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    return obj


def _example_text(text: str) -> str:
    masked = " ".join(mask_pii(str(text)).split())
    return masked if len(masked) <= EXAMPLE_CHARS else masked[: EXAMPLE_CHARS - 1] + "…"


# -- evaluation ---------------------------------------------------------------------------------------------------
def _unwrap(model: Any) -> tuple[Any, str | None, dict[str, Any]]:
    """A ComplaintClassifier, or a ``StoredModel`` from the store (which also gives version and manifest)."""
    if hasattr(model, "model") and hasattr(model, "manifest"):
        return model.model, getattr(model, "version", None), dict(model.manifest or {})
    return model, None, {}


@dataclass
class _Rows:
    texts: list[str]
    rows: np.ndarray  # spreadsheet row numbers (header = row 1)
    labels: dict[str, list[str | None]]
    summary: dict[str, Any]
    ids: dict[int, str] | None = None  # spreadsheet row -> the case's id (``id_column``)
    places: list[str | None] | None = None  # each row's place hint (``place_column``)

    def with_ids(self, df: pd.DataFrame) -> pd.DataFrame:
        """``df`` (with a ``row`` column) plus an ``id`` column after it, when the data has an id column."""
        if self.ids is None or "row" not in df:
            return df
        out = df.copy()
        out.insert(int(list(out.columns).index("row")) + 1, "id", [self.ids.get(int(r)) for r in out["row"]])
        return out


def _prepare(df: pd.DataFrame, text: str, targets: Mapping[str, str], max_length: int,
             id_column: str | None = None, place_column: str | None = None) -> _Rows:
    if not isinstance(df, pd.DataFrame):
        raise EvaluationDataError(f"expected a pandas DataFrame (or a data file path), got {type(df).__name__}")
    if df.shape[0] == 0:
        raise EvaluationDataError("the data has no rows; give a file with labeled cases")
    extra = [c for c in (id_column, place_column) if c]
    missing = [c for c in [text, *targets.values(), *extra] if c not in df.columns]
    if missing:
        raise MissingColumnError(
            f"column(s) {missing} not in the data; its columns are {list(df.columns)}. "
            "Name the right ones with --text / --category / --agency / --id / --place"
        )
    raw = df[text].tolist()
    texts, rows, keep = [], [], []
    empty = too_long = 0
    for i, v in enumerate(raw):
        s = "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
        if not s.strip():
            empty += 1
        elif len(s) > max_length:
            too_long += 1
        else:
            texts.append(s)
            rows.append(i + 2)
            keep.append(i)
    if not texts:
        raise EvaluationDataError(f"no usable complaint text in column {text!r} ({empty} empty, {too_long} too long)")
    labels = {}
    for name, col in targets.items():
        values = df[col].tolist()
        labels[name] = [_label(values[i]) for i in keep]
    summary = {"source": df.attrs.get("source", "DataFrame"), "rows": int(len(df)), "rows_evaluated": len(texts),
               "skipped_empty_text": empty, "skipped_too_long": too_long, "text_column": text,
               "target_columns": dict(targets), "file_sha256": df.attrs.get("sha256")}
    ids = None
    if id_column:
        values = df[id_column].tolist()
        ids = {r: ("" if _label(values[r - 2]) is None else str(values[r - 2]).strip()) for r in rows}
    places = None
    if place_column:
        values = df[place_column].tolist()
        places = [_label(values[i]) for i in keep]
        summary["place_column"] = place_column
    return _Rows(texts, np.asarray(rows), labels, summary, ids, places)


def _label(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    s = str(v).strip()
    return s or None


def _resolve_targets(model: Any, df: pd.DataFrame, targets: Mapping[str, str | None] | None
                     ) -> tuple[dict[str, str], dict[str, str]]:
    """The targets to evaluate (name -> column) and those skipped (name -> why)."""
    model_targets = list(model.targets_)
    skipped: dict[str, str] = {}
    if targets is None:
        chosen = {t: t for t in model_targets if t in df.columns}
        skipped = {t: f"no column named {t!r} in the data" for t in model_targets if t not in df.columns}
        if not chosen:
            raise MissingColumnError(
                f"the data has none of the model's target columns {model_targets}; its columns are "
                f"{list(df.columns)}. Name them, e.g. targets={{'category': '一级标签'}} / --category COLUMN"
            )
        return chosen, skipped
    chosen = {}
    for name, col in targets.items():
        if name not in model_targets:
            skipped[name] = f"the model does not predict {name!r} (it predicts {model_targets})"
        elif col:
            chosen[name] = col
    for t in model_targets:
        if t not in chosen and t not in skipped:
            skipped[t] = "no label column given for it"
    if not chosen:
        raise EvaluationDataError(
            f"nothing to evaluate: the model predicts {model_targets}; give a label column for at least one "
            f"(got {dict(targets)})"
        )
    return chosen, skipped


def evaluate(
    model: Any,
    data: pd.DataFrame | str | Path,
    text: str = "text",
    targets: Mapping[str, str | None] | None = None,
    *,
    compare: Any = None,
    version: str | None = None,
    compare_version: str | None = None,
    threshold: float | Mapping[str, float] | None = None,
    oof_folds: int = 3,
    top_n: int = 25,
    n_examples: int = 3,
    max_cases: int = 1000,
    seed: int = 0,
    encoding: str | None = None,
    id_column: str | None = None,
    place_column: str | None = None,
) -> Report:
    """Measure ``model`` on labeled ``data`` and return a ``Report`` (nothing is written or printed).

    ``model``/``compare``: a ``ComplaintClassifier`` or a ``StoredModel`` (``store.load(v)``: gives version
    and manifest).  ``targets``: target name -> label column (default: the model's target names that are
    columns of the data).  ``threshold``: the review threshold (default: the model's, 0.5).  ``oof_folds``:
    folds for the disputed-labels check (0: skip it).  ``top_n``: heatmap size.  ``max_cases``: rows kept
    in the misrouted / disputed / flipped tables (most certain first).  ``id_column``: a case id column
    (e.g. the work-order number) copied into the case tables next to the spreadsheet row.  ``place_column``:
    a column of place hints (the export's district field) passed to a routing model as the service would.
    """
    from .data import read_table

    _check_options(threshold, oof_folds, top_n, n_examples, max_cases)
    clf, found_version, manifest = _unwrap(model)
    if not hasattr(clf, "predict_proba") or not hasattr(clf, "targets_"):
        raise EvaluationDataError(f"expected a trained ComplaintClassifier or a StoredModel, got {type(clf).__name__}")
    version = version or found_version
    if isinstance(data, (str, Path)):
        data = read_table(data, encoding=encoding)
    if not isinstance(data, pd.DataFrame):
        raise EvaluationDataError(f"expected a pandas DataFrame or a data file path, got {type(data).__name__}")
    chosen, skipped = _resolve_targets(clf, data, targets)
    if place_column and not routes(clf):
        raise EvaluationDataError(f"place hints (column {place_column!r}) need a routing model; this model "
                                  "has no routing directory")
    prepared = _prepare(data, text, chosen, clf.max_text_length, id_column, place_column)
    # features once, for the out-of-fold refits; predictions go through the model's own predict_proba
    X = clf.transform(prepared.texts) if oof_folds >= 2 else None
    reports: dict[str, TargetReport] = {}
    for name in chosen:
        t = threshold.get(name, clf.review_threshold) if isinstance(threshold, Mapping) else threshold
        reports[name] = _evaluate_target(clf, X, prepared, name, chosen[name],
                                         clf.review_threshold if t is None else float(t),
                                         oof_folds, top_n, n_examples, max_cases, seed)
    report = Report(model_version=version, manifest=manifest, data=prepared.summary, targets=reports,
                    skipped_targets=skipped, top_n=top_n)
    if compare is not None:
        other, other_version, other_manifest = _unwrap(compare)
        report.compare_version = compare_version or other_version
        report.compare_manifest = other_manifest
        for name in chosen:
            if name not in other.targets_:
                report.skipped_targets[f"{name} (comparison)"] = "the other model does not predict it"
                continue
            report.comparisons[name] = _compare_target(reports[name], other, prepared, name, max_cases)
    return report


def _check_options(threshold: Any, oof_folds: Any, top_n: Any, n_examples: Any, max_cases: Any) -> None:
    from classifier.errors import ConfigError

    values = threshold.values() if isinstance(threshold, Mapping) else [] if threshold is None else [threshold]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
            raise ConfigError(f"threshold must be a number from 0 to 1, got {v!r}")
    for name, v, low in (("oof_folds", oof_folds, 0), ("top_n", top_n, 2), ("n_examples", n_examples, 0),
                         ("max_cases", max_cases, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ConfigError(f"{name} must be an integer >= {low}, got {v!r}")


def compare(model: Any, other: Any, data: pd.DataFrame | str | Path, **kw: Any) -> Report:
    """``evaluate(model, data, compare=other)``: deltas are ``model`` minus ``other`` (e.g. new minus current)."""
    return evaluate(model, data, compare=other, **kw)


def _evaluate_target(clf: Any, X: Any, prepared: _Rows, name: str, column: str, threshold: float,
                     oof_folds: int, top_n: int, n_examples: int, max_cases: int, seed: int) -> TargetReport:
    given_all = prepared.labels[name]
    has = np.array([g is not None for g in given_all], dtype=bool)
    pos = np.flatnonzero(has)
    given = np.asarray([given_all[i] for i in pos], dtype=object)
    if len(given) == 0:
        raise EvaluationDataError(f"column {column!r} ({name}) has no labels in the evaluated rows")
    distinct = sorted(set(given))
    if len(distinct) < 2:
        raise EvaluationDataError(
            f"column {column!r} ({name}) holds a single class ({distinct[0]!r}) in all {len(given)} labeled rows; "
            "a confusion report needs cases of at least 2 classes"
        )
    texts = [prepared.texts[i] for i in pos]
    places = _places(clf, prepared, pos)
    classes = np.asarray(clf.classes(name), dtype=object)
    proba = clf.predict_proba(texts, name, **places)
    metrics = classification_metrics(given.tolist(), proba, classes.tolist())
    top = np.argmax(proba, axis=1)
    predicted = classes[top]
    score = proba[np.arange(len(pos)), top]
    class_index = {c: i for i, c in enumerate(classes)}
    given_col = np.asarray([class_index.get(g, -1) for g in given], dtype=np.int64)
    given_score = np.where(given_col >= 0, proba[np.arange(len(pos)), np.maximum(given_col, 0)], 0.0)
    correct = predicted == given
    labels = sorted(set(given) | set(predicted))
    counts = confusion_counts(given.tolist(), predicted.tolist(), labels)
    per_class = pd.DataFrame([
        {"label": c, **v, "predicted": int(counts[:, labels.index(c)].sum()), "known_to_model": c in class_index}
        for c, v in metrics["per_class"].items()
    ])
    rows = prepared.rows[pos]
    predictions = pd.DataFrame({"position": pos, "row": rows, "given": given, "predicted": predicted,
                                "score": score, "given_score": given_score, "correct": correct})
    pairs = confused_pairs(counts, labels)
    examples = _examples(predictions, texts, n_examples)
    pairs["examples"] = [examples.get((t, p), []) for t, p in zip(pairs["true"], pairs["predicted"])]
    notes: list[str] = []
    unseen = pd.Series([g for g in given if g not in class_index], dtype=object).value_counts()
    unseen_labels = pd.DataFrame({"label": [str(k) for k in unseen.index], "cases": unseen.to_numpy(dtype=int)})
    if len(unseen_labels):
        notes.append(f"{int(unseen_labels['cases'].sum())} case(s) carry {len(unseen_labels)} label(s) the model "
                     "never saw in training; they always count as errors")
    absent = [c for c in classes if c not in set(given)]
    if absent:
        notes.append(f"{len(absent)} of the model's {len(classes)} classes have no case in this data")
    wrong = predictions[~correct].sort_values(["score", "row"], ascending=[False, True]).head(max_cases)
    misrouted = pd.DataFrame({
        "row": wrong["row"].to_numpy(), "text": [_example_text(texts[i]) for i in wrong.index],
        "given": wrong["given"].to_numpy(), "predicted": wrong["predicted"].to_numpy(),
        "score": wrong["score"].to_numpy(), "given_score": wrong["given_score"].to_numpy(),
    })
    disputed, note = _disputed(clf, None if X is None else X[pos], given, name, oof_folds, seed, max_cases)
    if note:
        notes.append(note)
    if len(disputed):
        at = disputed.pop("position").to_numpy()
        disputed.insert(0, "row", rows[at])
        disputed.insert(1, "text", [_example_text(texts[int(k)]) for k in at])
    routing_errors = routing_places = None
    if routes(clf) and name == "agency":
        routing_errors, routing_places = routing_tables(clf, texts, given, predicted, score < threshold,
                                                        places.get("places"))
    return TargetReport(
        routing_errors=routing_errors, routing_places=routing_places,
        target=name, column=column, metrics=metrics, labels=labels, confusion=counts, per_class=per_class,
        pairs=pairs, calibration=reliability_table(score, correct), review=review_table(score, correct, threshold),
        operating_points=operating_points(score, correct),
        misrouted=prepared.with_ids(misrouted), disputed=prepared.with_ids(disputed),
        unseen_labels=unseen_labels, predictions=predictions,
        threshold=threshold, notes=notes,
    )


ROUTING_CAUSES = {
    "place": "right function, wrong county",
    "town": "right county and function, wrong town or street office",
    "function": "right place, wrong function (department)",
    "place and function": "wrong county and wrong function",
    "outside the directory": "the given or the predicted agency is not in the routing directory",
}
PLACE_SOURCES = {
    "gazetteer": "named in the text",
    "hint": "from the request's place hint",
    "model": "guessed by the county model",
    "none": "not decided (flat agency model)",
}


def _places(clf: Any, prepared: _Rows, pos: np.ndarray) -> dict[str, Any]:
    """The ``places`` keyword for ``clf``'s predictions of the rows at ``pos``: empty unless the data has a
    place column and the model routes (a compared model without routing is measured without hints)."""
    if prepared.places is None or not routes(clf):
        return {}
    return {"places": [prepared.places[int(i)] for i in pos]}


def routing_tables(clf: Any, texts: list[str], given: np.ndarray, predicted: np.ndarray,
                   flagged: np.ndarray, places: list[str | None] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For a routing model's agency: each wrong agency's cause (by comparing the given and the predicted
    agency's county, town and function in the directory), and accuracy by where the place came from."""
    directory = clf.directory_
    details = clf.predict_details(texts, top_k=1, targets=["agency"], places=places)
    sources = []
    for d in details:
        place = d["routing"]["place"]
        sources.append(place["source"] if place.get("county") else "none")
    causes = []
    for g, p in zip(given, predicted):
        a, b = directory.agencies.get(str(g)), directory.agencies.get(str(p))
        if g == p:
            causes.append(None)
        elif a is None or b is None:
            causes.append("outside the directory")
        elif a.county != b.county:
            causes.append("place" if a.function == b.function else "place and function")
        elif a.function != b.function:
            causes.append("function")
        else:
            causes.append("town")
    wrong = np.array([c is not None for c in causes], dtype=bool)
    n_wrong = int(wrong.sum())
    error_rows = []
    for cause, meaning in ROUTING_CAUSES.items():
        m = np.array([c == cause for c in causes], dtype=bool)
        error_rows.append({"cause": cause, "meaning": meaning, "errors": int(m.sum()),
                           "share_of_errors": float(m.sum() / n_wrong) if n_wrong else 0.0,
                           "flagged_for_review": float(flagged[m].mean()) if m.any() else None})
    place_rows = []
    src = np.asarray(sources, dtype=object)
    for source, meaning in PLACE_SOURCES.items():
        m = src == source
        place_rows.append({"place": source, "meaning": meaning, "cases": int(m.sum()),
                           "accuracy": float((~wrong[m]).mean()) if m.any() else None,
                           "flagged_for_review": float(flagged[m].mean()) if m.any() else None,
                           "accuracy_not_flagged": float((~wrong[m & ~flagged]).mean()) if (m & ~flagged).any()
                           else None})
    return pd.DataFrame(error_rows), pd.DataFrame(place_rows)


def _examples(predictions: pd.DataFrame, texts: list[str], n: int) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Up to ``n`` masked example texts per (true, predicted) error pair, the most confident first."""
    wrong = predictions[~predictions["correct"]].sort_values(["score", "row"], ascending=[False, True])
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for (true, pred), group in wrong.groupby(["given", "predicted"], sort=False):
        out[(str(true), str(pred))] = [
            {"row": int(r.row), "text": _example_text(texts[i]), "score": float(r.score),
             "given_score": float(r.given_score)} for i, r in zip(group.index[:n], group.head(n).itertuples())
        ]
    return out


def _disputed(clf: Any, X: Any, given: np.ndarray, name: str, folds: int, seed: int,
              max_cases: int) -> tuple[pd.DataFrame, str | None]:
    """Out-of-fold probabilities on the evaluated rows, then the confident-joint check."""
    columns = ["position", "given", "suggested", "given_probability", "suggested_probability", "margin"]
    empty = pd.DataFrame(columns=columns)
    if folds < 2 or X is None:
        return empty, "disputed labels not computed (oof_folds < 2)"
    from sklearn.model_selection import KFold, StratifiedKFold

    from classifier.model import TargetHead, _fit_temperature, _softmax

    labels, counts = np.unique(given, return_counts=True)
    count_of = dict(zip(labels, counts))
    # a class with one case here can neither be judged out of fold nor be suggested with any confidence:
    # leaving it out of the refits keeps them fast (a linear SVM is one-vs-rest: its cost grows with classes)
    idx = np.flatnonzero([count_of[g] >= 2 for g in given])
    if len(np.unique(given[idx])) < 2:
        return empty, "disputed labels not computed: fewer than 2 classes have 2 or more cases"
    folds = min(folds, len(idx))
    stratify = int(counts[counts >= 2].min()) >= folds
    splitter: Any = (StratifiedKFold if stratify else KFold)(n_splits=folds, shuffle=True, random_state=seed)
    cfg = clf._config().model.model_copy(update={"calibration": "none"})
    lead = clf.vectorizer_.is_lead_  # a single SVM leaves the lead blocks out, as in training
    scores = np.full((len(given), len(labels)), -np.inf)
    scorable = np.zeros(len(given), dtype=bool)
    for train, test in splitter.split(idx, given[idx] if stratify else None):
        train, test = idx[train], idx[test]
        fold_classes = np.unique(given[train])
        if len(fold_classes) < 2:
            continue
        h = TargetHead.from_config(cfg, random_state=seed).fit(X[train], given[train], lead_columns=lead)
        scores[np.ix_(test, np.searchsorted(labels, fold_classes))] = h.decision_function(X[test])
        # a case whose class is missing from the fold's training part cannot be judged
        scorable[test] = np.isin(given[test], fold_classes)
    given_col = np.searchsorted(labels, given)
    # one temperature for these out-of-fold scores, fitted on them (the model's own calibration belongs to
    # its own heads, which may be fused views rather than this single SVM)
    finite = np.where(np.isfinite(scores), scores, np.nan)
    floor = np.nanmin(finite) - 10.0 if np.isfinite(finite).any() else -10.0
    scores = np.where(np.isfinite(scores), scores, floor)
    temperature = _fit_temperature(scores[scorable], given_col[scorable]) if scorable.any() else 1.0
    proba = _softmax(scores / temperature)
    proba[~scorable] = 0.0
    found = disputed_labels(proba, given_col, scorable)
    note = None
    if (~scorable).any():
        note = (f"{int((~scorable).sum())} case(s) not checked for disputed labels: their class has too few "
                f"cases here to be judged out of fold ({folds} folds)")
    if not len(found):
        return empty, note
    found = found.head(max_cases)
    found.insert(1, "given", given[found["position"].to_numpy()])
    found["suggested"] = labels[found["suggested"].to_numpy()]
    return found[columns], note


def _compare_target(this: TargetReport, other: Any, prepared: _Rows, name: str,
                    max_cases: int) -> Comparison:
    pos = this.predictions["position"].to_numpy()
    given = this.predictions["given"].to_numpy()
    classes = other.classes(name)
    proba = other.predict_proba([prepared.texts[int(i)] for i in pos], name, **_places(other, prepared, pos))
    m_other = classification_metrics(given.tolist(), proba, classes)
    pred_other = np.asarray(classes, dtype=object)[np.argmax(proba, axis=1)]
    metrics = pd.DataFrame([{"metric": k, "this": this.metrics[k], "other": m_other[k],
                             "delta": this.metrics[k] - m_other[k]} for k in _HEADLINE])
    labels = sorted(set(this.metrics["per_class"]) | set(m_other["per_class"]))
    support = pd.Series(given).value_counts()
    rows = []
    for c in labels:
        a = this.metrics["per_class"].get(c, {})
        b = m_other["per_class"].get(c, {})
        rows.append({"label": c, "support": int(support.get(c, 0)),
                     "f1_this": a.get("f1", 0.0), "f1_other": b.get("f1", 0.0),
                     "delta_f1": a.get("f1", 0.0) - b.get("f1", 0.0),
                     "recall_this": a.get("recall", 0.0), "recall_other": b.get("recall", 0.0),
                     "precision_this": a.get("precision", 0.0), "precision_other": b.get("precision", 0.0)})
    per_class = pd.DataFrame(rows).sort_values(["delta_f1", "support", "label"], ascending=[True, False, True])
    right_this = this.predictions["correct"].to_numpy()
    right_other = pred_other == given
    flips = []
    for k in np.flatnonzero(right_this != right_other):
        flips.append({"row": int(this.predictions["row"].iloc[k]),
                      "text": _example_text(prepared.texts[int(pos[k])]), "given": given[k],
                      "this": this.predictions["predicted"].iloc[k], "other": pred_other[k],
                      "direction": "wrong->right" if right_this[k] else "right->wrong"})
    flips_df = pd.DataFrame(flips, columns=["row", "text", "given", "this", "other", "direction"])
    flips_df = flips_df.sort_values(["direction", "row"], ascending=[False, True]).head(max_cases)
    return Comparison(target=name, metrics=metrics, per_class=per_class.reset_index(drop=True),
                      flips=prepared.with_ids(flips_df.reset_index(drop=True)),
                      paired=paired_accuracy_test(right_this, right_other))


# -- command line -------------------------------------------------------------------------------------------------
def add_command(sub: Any) -> None:
    from .cli import _store_arg

    p = sub.add_parser("report", help="confusion report of a model version on labeled data (HTML + CSV + JSON)",
                       description="Evaluate a stored model on labeled cases and write report.html, report.json, "
                                   "model_card.md and tables/*.csv|json to --out.")
    p.add_argument("--model", default="current", help="model version (default: the current one)")
    p.add_argument("--data", type=Path, help="labeled cases: CSV (UTF-8/GBK), XLSX, JSONL, Parquet")
    p.add_argument("--text", default="text", help="column holding the complaint text (default: text)")
    p.add_argument("--category", help="column holding the category label")
    p.add_argument("--agency", help="column holding the agency label")
    p.add_argument("--target", action="append", default=[], metavar="NAME=COLUMN", help="any other target")
    p.add_argument("--compare", metavar="OTHER_VERSION", help="also evaluate this version; deltas are --model minus it")
    p.add_argument("--out", type=Path, required=True, help="folder for the report files")
    p.add_argument("--id", dest="id_column", metavar="COLUMN",
                   help="case id column (e.g. the work-order number) to copy into the case tables")
    p.add_argument("--place", dest="place_column", metavar="COLUMN",
                   help="column of place hints (the export's district field) for a routing model, as the service "
                        "takes them")
    p.add_argument("--encoding", help="CSV encoding (default: detect UTF-8 / GBK)")
    p.add_argument("--threshold", type=float, help="review threshold (default: the model's, 0.5)")
    p.add_argument("--folds", type=int, default=3, help="folds for the disputed-labels check (0: skip)")
    p.add_argument("--top-n", type=int, default=25, help="classes shown in a heatmap before grouping the rest")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    _store_arg(p)
    from .live_report import add_live_arguments

    add_live_arguments(p)
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from classifier.errors import ConfigError

    from .cli import _print_json, _store, parse_targets
    from .live_report import cmd_live_report, refuse_live_options

    if args.live:
        return cmd_live_report(args)
    refuse_live_options(args)
    if args.data is None:
        raise ConfigError("--data is required: the labeled cases to evaluate on (or --live --since DATE: the "
                          "served model's quality from the decision log)")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise ConfigError(f"--threshold must be between 0 and 1, got {args.threshold}")
    if args.top_n < 2:
        raise ConfigError(f"--top-n must be at least 2, got {args.top_n}")
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out} is a file; give a folder for the report files")
    if args.folds < 0:
        raise ConfigError(f"--folds must be 0 (skip the disputed-labels check) or more, got {args.folds}")
    targets = parse_targets(args) if (args.category or args.agency or args.target) else None
    store = _store(args)
    stored = store.load(store.resolve(args.model))
    other = store.load(store.resolve(args.compare)) if args.compare else None
    report = evaluate(stored, args.data, text=args.text, targets=targets, compare=other, threshold=args.threshold,
                      oof_folds=args.folds, top_n=args.top_n, encoding=args.encoding,
                      id_column=args.id_column, place_column=args.place_column)
    written = report.save(args.out)
    summary = {name: {k: round(t.metrics[k], 4) for k in _HEADLINE} for name, t in report.targets.items()}
    if args.json:
        _print_json({"model_version": report.model_version, "compare_version": report.compare_version,
                     "metrics": summary, "skipped_targets": report.skipped_targets,
                     "comparisons": {name: c.paired for name, c in report.comparisons.items()},
                     "html": str(written["html"]), "out": str(args.out)})
        return 0
    for name, m in summary.items():
        print(f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in m.items()))
    for name, c in report.comparisons.items():
        d = {r.metric: r.delta for r in c.metrics.itertuples()}
        print(f"{name} vs {report.compare_version}: " + ", ".join(f"{k} {v:+.4f}" for k, v in d.items())
              + f"; {paired_sentence(c.paired)}")
    for name, why in report.skipped_targets.items():
        print(f"skipped {name}: {why}")
    print(f"wrote {written['html']} (+ report.json, model_card.md, tables/)")
    return 0
