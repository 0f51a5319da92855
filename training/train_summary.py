"""What ``hotline train`` says when it is done, in the words of the person who brought the data: what was
trained from what, how good it is on cases it did not learn from, and what to check.  The model's insides
(fused views, temperatures, feature counts) only with ``--verbose``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .data import ValidationReport, rare_list

__all__ = ["training_summary", "headline", "shows_top3", "routing_line", "model_details"]

WEAKEST_SHOWN = 3  # classes named as the weakest of a target


def shows_top3(n_classes: int) -> bool:
    """Top-3 accuracy says something only when a target has more than 3 classes (else it is always 1)."""
    return n_classes > 3


def headline(metrics: dict[str, Any], n_classes: int) -> dict[str, float]:
    """accuracy, macro-F1 and (with more than 3 classes) top-3 accuracy, rounded for printing and JSON."""
    keys = ["accuracy", "macro_f1"] + (["top3_accuracy"] if shows_top3(n_classes) else [])
    return {k: round(float(metrics[k]), 4) for k in keys if k in metrics}


def _rows(rows: list[int], limit: int = 8) -> str:
    shown = ", ".join(str(r) for r in rows[:limit])
    return shown + (", ..." if len(rows) > limit else "")


def _data_lines(report: ValidationReport | None, data: dict[str, Any]) -> list[str]:
    source = Path(str(data.get("source") or "the data")).name
    encoding = f" ({data['encoding']})" if data.get("encoding") and data["encoding"] != "utf-8" else ""
    if report is None:
        return [f"Trained on {data.get('rows_used', '?')} rows of {source}{encoding}."]
    lines = [f"Trained on {report.rows_used:,} of the {report.rows_read:,} rows of {source}{encoding}."]
    lines += [f"  {note[:1].upper()}{note[1:]}." for note in getattr(report, "notes", [])]  # the live loop's sources
    for reason, n in report.dropped.items():
        rows = report.dropped_rows.get(reason, [])
        where = f" ({'rows' if len(rows) > 1 else 'row'} {_rows(rows)})" if rows else ""
        lines.append(f"  Left out {n:,} row{'s' if n != 1 else ''}: {reason}{where}.")
    return lines


def _target_lines(name: str, model: Any, report: ValidationReport | None, metrics: dict[str, Any],
                  first: bool = True) -> list[str]:
    column = (report.target_columns.get(name) if report else None) or name
    counts = report.class_counts.get(name, {}) if report else {}
    n_classes = len(counts) or len(model.classes(name))  # a router can also name directory agencies: not counted
    labeled = sum(counts.values())
    lines = [f"{name} (column {column}): {n_classes} classes, learned from {labeled:,} labeled rows."
             if labeled else f"{name} (column {column}): {n_classes} classes."]
    m = metrics.get(name) or {}
    if "accuracy" in m:
        held = f"{m['n']:,} cases held out from training" if "n" in m else "the held-out cases"
        if m.get("split") == "time" and m.get("time") and "n" in m:  # --time: the newest cases
            held = (f"the {m['n']:,} newest cases ({m['time']['test_from'][:10]} to {m['time']['test_until'][:10]}), "
                    "held out from training")
        line = f"  On {held} it is right {m['accuracy']:.1%} of the time; macro-F1 {m['macro_f1']:.3f}"
        if first:
            line += " (the average over classes: small classes count as much as large ones)"
        if shows_top3(n_classes) and "top3_accuracy" in m:
            line += f"; the right {name} is among its 3 best guesses for {m['top3_accuracy']:.1%}"
        lines.append(line + ".")
        weakest = sorted(((c, v) for c, v in (m.get("per_class") or {}).items() if v.get("support")),
                         key=lambda cv: (cv[1]["f1"], -cv[1]["support"], cv[0]))[:WEAKEST_SHOWN]
        if weakest and weakest[0][1]["f1"] < 0.8:
            lines.append("  Weakest classes (F1 on the held-out cases): " + ", ".join(
                f"{c} {v['f1']:.2f} ({v['support']} case{'s' if v['support'] != 1 else ''})" for c, v in weakest)
                + ".")
    elif m.get("cv") is None:
        lines.append("  Not measured: no cases were held out (test_size 0).")
    cv = m.get("cv")
    if cv and "accuracy" in cv:
        folds = len(cv["accuracy"].get("folds", []))
        lines.append(f"  {folds}-fold cross-validation: right {cv['accuracy']['mean']:.1%} of the time "
                     f"(± {cv['accuracy']['std']:.1%} between folds), macro-F1 {cv['macro_f1']['mean']:.3f}.")
    if report is not None:
        missing = report.missing_labels.get(name, 0)
        if missing:
            lines.append(f"  {missing:,} rows have no {name} label; they taught the other targets only.")
        if report.rare_classes.get(name):
            lines.append(f"  {report.rare_sentence(name)}: {rare_list(report.rare_classes[name])}.")
    return lines


def _checks(report: ValidationReport | None) -> list[str]:
    if report is None:
        return []
    out = []
    for target, n in report.conflicting_texts.items():
        if n:
            rows = [r for ex in report.conflict_examples.get(target, []) for r in ex.get("rows", [])[:2]]
            out.append(f"  {n:,} text{'s' if n != 1 else ''} carry conflicting {target} labels (e.g. rows "
                       f"{_rows(rows, 6)}): give each one label, or the model learns both.")
    if report.exact_duplicates:
        out.append(f"  {report.exact_duplicates:,} exact duplicates (same text and labels) were counted once.")
    out.extend(f"  {w}" for w in report.warnings)
    return ["To check:", *out] if out else []


def routing_line(summary: dict[str, Any]) -> str:
    """What a routing model was trained with, from its ``routing_summary_``."""
    parts = [f"routing: {summary.get('agencies')} agencies in the directory, "
             f"{summary.get('function_cases')} cases taught the function"]
    if summary.get("agencies_not_in_directory"):
        parts.append(f"{summary['agencies_not_in_directory']} training agencies not in the directory")
    if summary.get("category_function_pairs"):
        parts.append(f"category and function decided together ({summary['category_function_pairs']} pairs)")
    calibration = summary.get("county_calibration")
    if calibration:
        parts.append(f"county guesses calibrated on {calibration['unnamed_cases']} cases that name no place "
                     f"(right {calibration['out_of_fold_accuracy']:.0%} of the time)")
    return "; ".join(parts)


def model_details(model: Any) -> list[str]:
    """The heads' insides (``--verbose``): how each turns features into probabilities."""
    lines = []
    for name, head in ((n, h.describe()) for n, h in model.heads_.items()):
        how = (", ".join(f"{k} {w:.3g}" for k, w in head["fusion_weights"].items()) if head["kind"] == "fused"
               else f"temperature {head['temperature']:.3g}")
        if head["kind"] == "fused" and head["temperature"] != 1.0:  # recalibrated (the routing county head)
            how += f"; temperature {head['temperature']:.3g}"
        lines.append(f"head {name}: {head['kind']} ({how}), {head['classes']} classes, "
                     f"{head['features_used']:,} features used")
    return lines


def training_summary(model: Any, version: str, store_path: str | Path, current: bool,
                     previous_current: str | None = None, verbose: bool = False) -> str:
    """The lines ``hotline train`` prints after saving ``model`` as ``version``."""
    report: ValidationReport | None = getattr(model, "validation_report", None)
    data = getattr(model, "training_data", {}) or {}
    metrics = getattr(model, "metrics", {}) or {}
    lines: list[str] = []
    if verbose and report is not None:
        lines += [str(report), ""]
    lines += _data_lines(report, data)
    for k, name in enumerate(model.targets_):
        lines += _target_lines(name, model, report, metrics, first=k == 0)
    routing = getattr(model, "routing_summary_", None)
    if routing:
        lines.append(routing_line(routing))
    lines += _checks(report)
    if verbose:
        lines += model_details(model)
    if current:
        state = "the current version" + (f" (was {previous_current})" if previous_current else "")
        lines.append(f"Saved as version {version} in {store_path}: {state}.")
        if previous_current:
            lines.append("A running service keeps serving its version until it reloads (see `hotline models "
                         "promote --help`).")
    else:
        lines.append(f"Saved as version {version} in {store_path}; not current. Compare it with the current version "
                     f"on cases neither learned from (hotline report --model {version} --compare current --data "
                     f"NEW_CASES ...), then `hotline models promote {version}`.")
    return "\n".join(lines)
