"""Train a ComplaintClassifier from labeled cases: validate, hold out, fit, measure, save.

``train(df, text=..., targets=..., config=...)`` is what both the command line and notebooks call; the model
it returns carries ``validation_report`` and ``metrics``.  ``save_model`` writes it as a new store version.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from classifier.config import TrainingConfig
from classifier.errors import ConfigError, MissingColumnError, TrainingDataError
from classifier.jurisdiction import RoutingDirectory
from classifier.model import ComplaintClassifier
from classifier.progress import progress_default
from classifier.routing import RoutedClassifier
from classifier.store import ModelStore
from classifier.text import ComplaintTokenizer

from .data import ValidationReport, default_targets, fingerprint, read_table, validate
from .metrics import classification_metrics
from .overlap import ROW_FILTER_FILE, RowFilter
from .recency import describe, format_days, half_life_weights, retire
from .relabel import describe as describe_relabel
from .relabel import relabel
from .splits import (
    group_values,
    holdout_split,
    kfold_splits,
    parse_times,
    time_folds,
    time_holdout_split,
    time_values,
)

__all__ = ["train", "save_model", "fit_and_measure"]


def train(
    data: pd.DataFrame | str | Path | None,
    text: str = "text",
    targets: Mapping[str, str] | None = None,
    config: TrainingConfig | None = None,
    progress: bool | None = None,
    log: Any = None,
    encoding: str | None = None,
    directory: RoutingDirectory | None = None,
    group: str | None = None,
    time: str | None = None,
    feedback: Any = None,
    id_column: str | None = None,
) -> ComplaintClassifier:
    """Validate ``data``, measure on a seeded stratified hold-out (and optional k-fold CV), fit, and return
    the model with ``validation_report``, ``metrics`` and ``training_data`` attached.

    ``targets`` maps target names to columns, e.g. ``{"category": "一级标签", "agency": "承办单位"}``; a data
    set with only one of them trains only that one.  ``progress``: tqdm bars (default: in a terminal or a
    notebook, ``classifier.progress``).  ``log``: a callable for one line per step (default: none); the
    validation report is ``model.validation_report``.  ``directory``: a
    ``RoutingDirectory``; the model is then a ``RoutedClassifier`` that routes agencies by (place, function),
    and the hold-out agency metrics measure that routing.  ``group``: a column (caller, work-order thread)
    whose rows stay together on one side of the hold-out and of each CV fold (``training.splits``), so repeat
    calls about one problem do not make the metrics look better than they are.  ``time``: a column with each
    case's date; the hold-out is then the latest cases and the CV folds are forward-chaining (a model is always
    used on cases newer than the ones it learned from; ``training.splits``).

    ``feedback``: the live loop's corrected cases beside (or, with ``data=None``, instead of) the export: a
    decision log (URL, SQLite file or ``DecisionLog``) or a file from ``hotline feedback export``
    (``training.loop_data``).  A correction overrides the export's label of the same case, matched by the
    export's ``id_column``.  ``config.recency`` (half-life, retiring labels) needs each case's date: ``time``,
    or with feedback alone the corrections' times.
    """
    config = config or TrainingConfig()
    say = log or (lambda _msg: None)
    export = read_table(data, encoding=encoding) if isinstance(data, (str, Path)) else data
    sources = None
    dates = time  # the column with each case's date, for the recency settings
    if feedback is not None:
        from .loop_data import combine, feedback_targets, read_feedback

        fb, where = read_feedback(feedback, targets=list(targets) if targets is not None else None)
        if targets is None:
            targets = default_targets(export) if export is not None else feedback_targets(fb)
        frame, sources = combine(export, fb, text, targets, id_column, time, where)
        if export is None:
            text, targets, dates = "text", {n: n for n in targets}, time or "time"
    elif export is None:
        raise TrainingDataError("no training data: give an export (data) and/or the corrections (feedback)")
    else:
        frame = export
    if targets is None:
        targets = default_targets(frame)
    if progress is None:
        progress = progress_default()
    recency = config.recency
    if (recency.half_life_days or recency.retire_after_days) and dates is None:
        raise ConfigError("the half-life and retiring labels need each case's date: name the export's date column "
                          "with --time COLUMN (train(..., time=...))")
    notes = sources.lines() if sources is not None else []
    relabeled: dict[str, dict[str, dict[str, Any]]] = {}
    if config.relabel:
        frame, relabeled = relabel(frame, targets, config.relabel)
        notes += describe_relabel(relabeled)
    retired: dict[str, dict[str, str]] = {}
    if recency.retire_after_days:
        assert dates is not None
        if dates not in frame.columns:
            raise MissingColumnError(f"time column {dates!r} not in the data; its columns are {list(frame.columns)}")
        frame, retired, rows_left = retire(frame, targets, parse_times(frame[dates]), recency.retire_after_days)
        notes += describe(retired, recency.retire_after_days, rows_left)
    clean, report = validate(
        frame,
        text,
        targets,
        min_class_count=config.min_class_count,
        rare_policy=config.rare_policy,
        other_label=config.other_label,
        drop_duplicates=config.drop_duplicates,
        max_text_length=config.max_text_length,
    )
    times = time_values(frame, time, clean) if time is not None else None
    weights = None
    if recency.half_life_days:
        assert dates is not None
        dated = times if times is not None and dates == time else time_values(frame, dates, clean)
        weights = half_life_weights(dated, recency.half_life_days)
        notes.append(f"recent cases weigh more: half-life {format_days(recency.half_life_days)}; the oldest case "
                     f"counts {weights.min():.3g} of the newest")
    report.sources = sources.to_dict() if sources is not None else {}
    report.retired = retired
    report.relabeled = relabeled
    report.notes = notes
    say(f"validated: {report.rows_used:,} of {len(frame):,} rows usable")
    for note in notes:
        say(note)
    groups = group_values(frame, group, clean) if group is not None else None
    if groups is not None:
        say(f"groups: column {group!r}, {len(set(groups.tolist()))} groups; each stays on one side of every split")
    tokenizer = ComplaintTokenizer.from_files(
        config.user_dict, config.stop_words, hmm=config.features.hmm, segmenter=config.features.segmenter
    )
    names = list(targets)
    metrics: dict[str, Any] = {}
    if config.test_size > 0:
        period = None
        if times is not None:
            train_idx, test_idx = time_holdout_split(times, config.test_size, groups, report.warnings)
            period = _period(times, train_idx, test_idx, time)
            say(f"measuring on the newest cases: training on the {len(train_idx):,} up to "
                f"{period['train_until'][:10]}, testing on the {len(test_idx):,} from {period['test_from'][:10]} to "
                f"{period['test_until'][:10]}")
        else:
            train_idx, test_idx = holdout_split(_stratify_labels(clean, names), config.test_size, config.seed,
                                                groups, report.warnings)
            say(f"measuring: training on {len(train_idx):,} rows, testing on the {len(test_idx):,} held out")
        model, metrics = fit_and_measure(clean, train_idx, test_idx, names, config, tokenizer, progress, directory,
                                         weights)
        for name in names:
            metrics[name]["split"] = "time" if period is not None else "holdout"
            metrics[name]["group"] = group
            if period is not None:
                metrics[name]["time"] = period
    if config.cv_folds >= 2:
        say(f"{config.cv_folds}-fold {'forward-chaining (time-ordered) ' if times is not None else ''}"
            f"cross-validation ({config.cv_folds} more fits)")
        for name, scores in _cross_validate(clean, names, config, tokenizer, directory, groups, times,
                                            weights).items():
            metrics.setdefault(name, {})["cv"] = scores
    learned = clean["text"]
    if config.test_size == 0 or config.refit_full:
        say(f"fitting the model on all {len(clean):,} rows")
        model = _new_model(config, tokenizer, progress, directory)
        model.fit(clean["text"].tolist(), {n: clean[n].tolist() for n in names}, sample_weight=weights)
    else:
        learned = clean["text"].iloc[train_idx]
    _fitted_quietly(model)
    # what the model learned from, for the overlap check of every later evaluation (training.overlap)
    model.training_rows = RowFilter.build(learned.tolist())
    model.validation_report = report
    model.metrics = metrics
    model.training_data = {
        **getattr(model, "training_data", {}),  # a routed model has put its directory summary here
        "source": frame.attrs.get("source", "DataFrame"),
        "encoding": frame.attrs.get("encoding"),
        "file_sha256": frame.attrs.get("sha256"),
        "sha256": fingerprint(frame, [text, *targets.values()]),
        "rows": int(len(frame)),
        "rows_used": int(len(clean)),
        "columns": {"text": text, **dict(targets), **({"group": group} if group is not None else {}),
                    **({"time": time} if time is not None else {}),
                    **({"id": id_column} if id_column is not None else {})},
        **({"sources": sources.to_dict()} if sources is not None else {}),
        **({"retired": retired} if retired else {}),
        **({"relabeled": relabeled} if relabeled else {}),
    }
    return model


def _fitted_quietly(model: ComplaintClassifier) -> None:
    """Progress bars are for fitting: the saved model must not draw them when it predicts (in the service, in
    ``hotline predict``)."""
    model.progress = False
    vectorizer = getattr(model, "vectorizer_", None)
    if vectorizer is not None:
        vectorizer.progress = False


def fit_and_measure(
    clean: pd.DataFrame,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    names: list[str],
    config: TrainingConfig,
    tokenizer: ComplaintTokenizer | None = None,
    progress: bool = False,
    directory: RoutingDirectory | None = None,
    weights: np.ndarray | None = None,
) -> tuple[ComplaintClassifier, dict[str, Any]]:
    """Fit on ``train_idx`` rows (weighted by ``weights``, one per row of ``clean``, when given) and measure
    every target on the ``test_idx`` rows that carry its label (through the model's own ``predict_proba``, so a
    routed model is measured as it routes)."""
    part = clean.iloc[train_idx]
    model = _new_model(config, tokenizer, progress, directory)
    model.fit(part["text"].tolist(), {n: part[n].tolist() for n in names},
              sample_weight=None if weights is None else weights[train_idx])
    test = clean.iloc[test_idx]
    metrics = {}
    for name in names:
        has = test[name].notna().to_numpy()
        proba = model.predict_proba(test.loc[has, "text"].tolist(), name)
        metrics[name] = classification_metrics(test.loc[has, name].tolist(), proba, model.classes(name))
    return model, metrics


def _new_model(
    config: TrainingConfig, tokenizer: ComplaintTokenizer | None, progress: bool,
    directory: RoutingDirectory | None,
) -> ComplaintClassifier:
    if directory is None:
        return ComplaintClassifier(config, tokenizer=tokenizer, progress=progress)
    return RoutedClassifier(config, tokenizer=tokenizer, progress=progress, directory=directory)


def _period(times: np.ndarray, train_idx: np.ndarray, test_idx: np.ndarray, column: str | None) -> dict[str, Any]:
    """The time hold-out's periods, for the manifest and the output."""
    def iso(t: np.datetime64) -> str:
        return str(np.datetime_as_string(t, unit="s"))

    return {"column": column, "train_from": iso(times[train_idx].min()), "train_until": iso(times[train_idx].max()),
            "test_from": iso(times[test_idx].min()), "test_until": iso(times[test_idx].max())}


def _stratify_labels(clean: pd.DataFrame, names: list[str]) -> pd.Series:
    return clean[names[0]].fillna("\x00")


def _cross_validate(
    clean: pd.DataFrame, names: list[str], config: TrainingConfig, tokenizer: ComplaintTokenizer,
    directory: RoutingDirectory | None = None, groups: np.ndarray | None = None, times: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> dict[str, dict[str, Any]]:
    per: dict[str, dict[str, list[float]]] = {n: {"accuracy": [], "macro_f1": [], "top3_accuracy": []} for n in names}
    try:
        splits = (time_folds(times, config.cv_folds, groups) if times is not None
                  else kfold_splits(_stratify_labels(clean, names), config.cv_folds, config.seed, groups))
    except TrainingDataError as exc:
        raise TrainingDataError(f"{exc}; lower --cv or raise --min-class-count") from None
    for train_idx, test_idx in splits:
        _, m = fit_and_measure(clean, train_idx, test_idx, names, config, tokenizer, directory=directory,
                               weights=weights)
        for n in names:
            for k in per[n]:
                per[n][k].append(m[n][k])
    return {
        n: {k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "folds": v} for k, v in scores.items()}
        for n, scores in per.items()
    }


def save_model(model: ComplaintClassifier, store: ModelStore | str | Path | None = None,
               promote: bool | None = None, note: str | None = None) -> str:
    """Write a trained model as a new version of ``store``; return the version id.

    The first version of an empty store becomes current; later ones only with ``promote=True`` (compare
    first, then ``hotline models promote``).  ``note``: a note stored with the version (``models list``).
    """
    store = store if isinstance(store, ModelStore) else ModelStore(store)
    tokenizer = model.vectorizer_.tokenizer
    report: ValidationReport | None = getattr(model, "validation_report", None)
    config = model._config()
    extra = {}
    if report is not None:
        extra["validation_report.json"] = report.to_json()
    if tokenizer is not None and tokenizer.user_dict:
        extra["user_dict.txt"] = tokenizer.user_dict
    if tokenizer is not None and tokenizer.stop_words:
        extra["stop_words.txt"] = tokenizer.stop_words
    rows: RowFilter | None = getattr(model, "training_rows", None)
    data = dict(getattr(model, "training_data", {}) or {})
    if rows is not None:
        extra[ROW_FILTER_FILE] = rows.to_json()
        data["row_fingerprint"] = rows.manifest_entry()
    manifest: dict[str, Any] = {
        "data": data,
        "config": config.model_dump(mode="json"),
        "targets": list(model.targets_),
        "labels": {
            t: (report.class_counts.get(t) if report is not None else None)
            or dict.fromkeys(model.classes(t))
            for t in model.targets_
        },
        "metrics": getattr(model, "metrics", {}),
        "review_threshold": model.review_threshold,
        "dictionaries": {
            "user_dict_sha256": tokenizer.user_dict_sha256 if tokenizer else None,
            "stop_words_sha256": tokenizer.stop_words_sha256 if tokenizer else None,
            "hmm": tokenizer.hmm if tokenizer else None,
            "segmenter": tokenizer.segmenter if tokenizer else None,
        },
        "n_features": len(model.vectorizer_.vocabulary_),
        # the text.normalize version the model reads text with (2: Excel escapes and invisible characters too)
        "normalization": model.vectorizer_.normalization,
        # how each head turns features into probabilities (every head the model has, routing ones included)
        "heads": {name: head.describe() for name, head in model.heads_.items()},
    }
    # the row fingerprint is a file of the version, not part of the pickle
    if rows is not None:
        del model.training_rows
    try:
        version = store.save(model, manifest, extra_files=extra, promote=promote)
    finally:
        if rows is not None:
            model.training_rows = rows
    if note:
        store.set_note(version, note)
    return version
