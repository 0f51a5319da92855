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

The parts live in modules of their own: ``confusion`` (matrix arithmetic), ``calibration`` (reliability,
review threshold, operating points), ``disputed`` (labels the model disputes, out of fold), ``report_routing``
(a routing model's agency errors), ``overlap`` (did the model learn from these cases?), ``report_html`` (the
page and the model card) and ``report_cli`` (``hotline report``).  This module evaluates and holds the
results.  The disputed-labels check judges the labels from the text alone (a routed model's directory does not
take part in it); the metrics, matrices and case lists use the model's own ``predict_proba`` / ``classes``.

With ``compare=other_model``: both models on the same rows, per-class deltas (this model minus the other),
and the cases that flipped right->wrong (regressions) and wrong->right (fixes).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from classifier.errors import MissingColumnError, TrainingDataError
from classifier.progress import progress_bar
from classifier.routing import routes
from classifier.text import mask_pii

from .calibration import (
    OPERATING_THRESHOLDS,
    expected_calibration_error,
    operating_points,
    reliability_table,
    review_table,
)
from .confusion import OTHER_GROUP, confused_pairs, confusion_counts, heatmap_order, row_normalize
from .disputed import DISPUTE_CONFIDENCE, disputed_labels, out_of_fold_disputes
from .metrics import SIGNIFICANCE, classification_metrics, paired_accuracy_test
from .overlap import Overlap, check_overlap
from .report_routing import PLACE_SOURCES, ROUTING_CAUSES, place_calibration, routing_tables

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
    "expected_calibration_error",
    "routing_tables",
    "OPERATING_THRESHOLDS",
    "OTHER_GROUP",
    "DISPUTE_CONFIDENCE",
    "PLACE_SOURCES",
    "ROUTING_CAUSES",
    "place_calibration",
]

EXAMPLE_CHARS = 160  # example texts are masked and cut to this length
WIDE_MATRIX_LIMIT = 60  # above this many classes the matrix is saved only as non-zero cells (long format)


class EvaluationDataError(TrainingDataError):
    """Labeled data cannot be evaluated as it is (empty, one class only, no usable rows)."""


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
    # did each model learn from the evaluated cases? (training.overlap)
    overlap: Overlap | None = None
    compare_overlap: Overlap | None = None

    def overlap_warnings(self) -> list[str]:
        """One sentence per model whose training data overlaps the evaluated cases (empty: none does)."""
        return [o.sentence() for o in (self.overlap, self.compare_overlap) if o is not None and o.warns]

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
            "overlap": {role: o.to_dict() for role, o in (("model", self.overlap), ("compare", self.compare_overlap))
                        if o is not None},
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
        """In a notebook, the first screen only (the whole report is tens of thousands of pixels tall):
        ``summary(link=...)`` to point at the saved page, ``full()`` to show everything."""
        from .report_html import render_summary

        return render_summary(self)

    def summary(self, link: str | Path | None = None) -> _Html:
        """The first screen (what was evaluated, overlap warnings, headline numbers, verdicts) with a link to
        the full report (``link``: the saved report.html); displays itself in a notebook."""
        from .report_html import render_summary

        return _Html(render_summary(self, link=link))

    def full(self) -> _Html:
        """The whole report, displayed in a notebook (sortable tables)."""
        from .report_html import render_notebook

        return _Html(render_notebook(self))

    def model_card(self) -> str:
        from .model_card import render_model_card

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


class _Html(str):
    """HTML that a notebook displays as HTML (``_repr_html_``) and a program uses as the string it is."""

    def _repr_html_(self) -> str:
        return str(self)


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
def _folder(model: Any) -> Path | None:
    """A ``StoredModel``'s version folder (where its row fingerprint is)."""
    path = getattr(model, "path", None)
    return Path(path) if path is not None and hasattr(model, "manifest") else None


def _overlap(model: Any, data: pd.DataFrame, prepared: _Rows) -> Overlap:
    """Check the evaluated cases against what ``model`` (a classifier or ``StoredModel``) learned from."""
    from .data import fingerprint

    clf, version, manifest = _unwrap(model)
    columns = list(((manifest.get("data") or {}).get("columns") or {}).values())
    columns = [c for c in columns if c != (manifest.get("data") or {}).get("columns", {}).get("group")]
    content = fingerprint(data, columns) if columns and all(c in data.columns for c in columns) else None
    return check_overlap(clf, prepared.texts, version=version, folder=_folder(model), manifest=manifest,
                         content_sha256=content, file_sha256=data.attrs.get("sha256"))


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
    progress: bool = False,
) -> Report:
    """Measure ``model`` on labeled ``data`` and return a ``Report`` (nothing is written or printed).

    ``model``/``compare``: a ``ComplaintClassifier`` or a ``StoredModel`` (``store.load(v)``: gives version
    and manifest).  ``targets``: target name -> label column (default: the model's target names that are
    columns of the data).  ``threshold``: the review threshold (default: the model's, 0.5).  ``oof_folds``:
    folds for the disputed-labels check (0: skip it).  ``top_n``: heatmap size.  ``max_cases``: rows kept
    in the misrouted / disputed / flipped tables (most certain first).  ``id_column``: a case id column
    (e.g. the work-order number) copied into the case tables next to the spreadsheet row.  ``place_column``:
    a column of place hints (the export's district field) passed to a routing model as the service would.
    ``progress``: a progress bar over the steps (each target's predictions and disputed-labels check, each
    comparison).
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
    steps = len(chosen) + (len(chosen) if compare is not None else 0)
    bar = progress_bar(total=steps, desc="report", unit="step", enabled=progress)
    try:
        bar.set_description("report: features")
        X = clf.transform(prepared.texts) if oof_folds >= 2 else None
        reports: dict[str, TargetReport] = {}
        for name in chosen:
            bar.set_description(f"report: {name}")
            t = threshold.get(name, clf.review_threshold) if isinstance(threshold, Mapping) else threshold
            reports[name] = _evaluate_target(clf, X, prepared, name, chosen[name],
                                             clf.review_threshold if t is None else float(t),
                                             oof_folds, top_n, n_examples, max_cases, seed)
            bar.update(1)
        report = Report(model_version=version, manifest=manifest, data=prepared.summary, targets=reports,
                        skipped_targets=skipped, top_n=top_n, overlap=_overlap(model, data, prepared))
        if report.overlap is not None and report.overlap.version is None:
            report.overlap.version = version
        if compare is not None:
            other, other_version, other_manifest = _unwrap(compare)
            report.compare_version = compare_version or other_version
            report.compare_manifest = other_manifest
            report.compare_overlap = _overlap(compare, data, prepared)
            report.compare_overlap.version = report.compare_version
            for name in chosen:
                bar.set_description(f"report: {name} comparison")
                if name not in other.targets_:
                    report.skipped_targets[f"{name} (comparison)"] = "the other model does not predict it"
                else:
                    report.comparisons[name] = _compare_target(reports[name], other, prepared, name, max_cases)
                bar.update(1)
    finally:
        bar.close()
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
    disputed, note = out_of_fold_disputes(clf, None if X is None else X[pos], given, name, oof_folds, seed, max_cases)
    if note:
        notes.append(note)
    if len(disputed):
        at = disputed.pop("position").to_numpy()
        disputed.insert(0, "row", rows[at])
        disputed.insert(1, "text", [_example_text(texts[int(k)]) for k in at])
    routing_errors = routing_places = required = None
    if routes(clf) and name == "agency":
        details = clf.predict_details(texts, top_k=1, targets=["agency"], thresholds={"agency": threshold},
                                      **places)
        # a routed agency whose place the text and the hint do not decide goes to review whatever its score
        required = np.array(["review_reason" in d["agency"] for d in details], dtype=bool)
        routing_errors, routing_places = routing_tables(clf, texts, given, predicted, (score < threshold) | required,
                                                        places.get("places"), details=details, score=score,
                                                        threshold=threshold)
    return TargetReport(
        routing_errors=routing_errors, routing_places=routing_places,
        target=name, column=column, metrics=metrics, labels=labels, confusion=counts, per_class=per_class,
        pairs=pairs, calibration=reliability_table(score, correct),
        review=review_table(score, correct, threshold, required),
        operating_points=operating_points(score, correct, required=required),
        misrouted=prepared.with_ids(misrouted), disputed=prepared.with_ids(disputed),
        unseen_labels=unseen_labels, predictions=predictions,
        threshold=threshold, notes=notes,
    )


def _places(clf: Any, prepared: _Rows, pos: np.ndarray) -> dict[str, Any]:
    """The ``places`` keyword for ``clf``'s predictions of the rows at ``pos``: empty unless the data has a
    place column and the model routes (a compared model without routing is measured without hints)."""
    if prepared.places is None or not routes(clf):
        return {}
    return {"places": [prepared.places[int(i)] for i in pos]}


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


def class_changes(given: np.ndarray, right_this: np.ndarray, right_other: np.ndarray,
                  this: Mapping[str, Any], other: Mapping[str, Any]) -> pd.DataFrame:
    """Per class, this model against the other on the same cases, most certain change first.

    A class's recall changes only through its own cases that flipped: ``wrong_to_right`` (fixed by this model)
    and ``right_to_wrong`` (broken).  McNemar's exact test on those two counts says how sure the change is:
    three cases of a class with 4 is noise however large the delta looks, forty of a class with 400 is not.
    Sorted by that p-value, then by support.  ``change``: "real" (p < 0.05), "could be noise" or "none".
    """
    from scipy.stats import binomtest

    labels = sorted(set(this) | set(other) | {str(g) for g in given})
    rows = []
    for c in labels:
        sel = given == c
        fixed = int((sel & right_this & ~right_other).sum())
        broken = int((sel & ~right_this & right_other).sum())
        p = float(binomtest(fixed, fixed + broken, 0.5).pvalue) if fixed + broken else 1.0
        a, b = this.get(c, {}), other.get(c, {})
        rows.append({"label": c, "support": int(sel.sum()),
                     "recall_this": a.get("recall", 0.0), "recall_other": b.get("recall", 0.0),
                     "delta_recall": a.get("recall", 0.0) - b.get("recall", 0.0),
                     "wrong_to_right": fixed, "right_to_wrong": broken, "p_value": p,
                     "change": "none" if not fixed + broken else "real" if p < SIGNIFICANCE else "could be noise",
                     "f1_this": a.get("f1", 0.0), "f1_other": b.get("f1", 0.0),
                     "delta_f1": a.get("f1", 0.0) - b.get("f1", 0.0),
                     "precision_this": a.get("precision", 0.0), "precision_other": b.get("precision", 0.0)})
    df = pd.DataFrame(rows)
    return df.sort_values(["p_value", "support", "label"], ascending=[True, False, True]).reset_index(drop=True)


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
    right_this = this.predictions["correct"].to_numpy()
    right_other = pred_other == given
    per_class = class_changes(given, right_this, right_other, this.metrics["per_class"], m_other["per_class"])
    flips = []
    for k in np.flatnonzero(right_this != right_other):
        flips.append({"row": int(this.predictions["row"].iloc[k]),
                      "text": _example_text(prepared.texts[int(pos[k])]), "given": given[k],
                      "this": this.predictions["predicted"].iloc[k], "other": pred_other[k],
                      "direction": "wrong->right" if right_this[k] else "right->wrong"})
    flips_df = pd.DataFrame(flips, columns=["row", "text", "given", "this", "other", "direction"])
    flips_df = flips_df.sort_values(["direction", "row"], ascending=[False, True]).head(max_cases)
    return Comparison(target=name, metrics=metrics, per_class=per_class,
                      flips=prepared.with_ids(flips_df.reset_index(drop=True)),
                      paired=paired_accuracy_test(right_this, right_other))
