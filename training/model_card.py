"""The model card (markdown) of a confusion report: what the model is, what it was trained on, how it scored
(at training and in this report), what it is for, its limits and known confusions.  No complaint text."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .metrics import paired_sentence

if TYPE_CHECKING:
    from .report import Report

__all__ = ["render_model_card"]


def _used(head: dict[str, Any]) -> str:
    """", N features used" when the manifest says (models saved before session 5 do not)."""
    used = head.get("features_used")
    return f", {used:,} features used" if isinstance(used, int) else ""


def render_model_card(report: Report) -> str:
    """Markdown model card from the manifest and this evaluation (no complaint text in it)."""
    m = report.manifest or {}
    data = m.get("data", {}) or {}
    lines = [f"# Model card: hotline classifier {report.model_version or '(unsaved model)'}", ""]
    lines += ["## Model", "",
              f"- version: {report.model_version or 'not saved in a store'}",
              f"- created: {m.get('created', 'unknown')}",
              f"- targets: {', '.join(m.get('targets', list(report.targets)))}",
              "- method: jieba-segmented word 1-2-grams + char 1-3-grams, TF-IDF, one linear model per target: "
              "a linear SVM with temperature-scaled probabilities, or, where the median class has enough cases, a "
              "word-block SVM, a char-block SVM and naive Bayes summed with weights fitted on out-of-fold scores",
              f"- review threshold: {m.get('review_threshold', next(iter(report.targets.values())).threshold)}"]
    for name, head in (m.get("heads") or {}).items():
        if isinstance(head, dict) and head.get("kind") == "fused":
            weights = ", ".join(f"{k} {v:.3g}" for k, v in (head.get("fusion_weights") or {}).items())
            lines.append(f"- head {name}: fused views ({weights}), {head.get('classes')} classes{_used(head)}")
        elif isinstance(head, dict):
            lines.append(f"- head {name}: linear SVM, temperature {head.get('temperature')}, "
                         f"{head.get('classes')} classes{_used(head)}")
    directory = data.get("directory") if isinstance(data, dict) else None
    if isinstance(directory, dict):
        facts = ", ".join(f"{k} {v}" for k, v in directory.items() if isinstance(v, (int, str)) and k != "source")
        lines.append(f"- agency routing: place + function through a jurisdiction directory ({facts})")
        if directory.get("category_function_pairs"):
            lines.append(f"- category and function decided together over the {directory['category_function_pairs']} "
                         "category-function pairs seen in training")
        calibration = directory.get("county_calibration")
        if isinstance(calibration, dict):
            lines.append(f"- county model (for texts that name no place) calibrated on the "
                         f"{calibration.get('unnamed_cases')} training cases that name none: temperature "
                         f"{calibration.get('temperature')}, out-of-fold accuracy "
                         f"{calibration.get('out_of_fold_accuracy')}")
        check = directory.get("place_guess_check")
        lines.append(f"- county-model guesses: {check.get('reason')}" if isinstance(check, dict)
                     else "- county-model guesses: not checked on held-out cases, so they always ask for review")
    versions = m.get("versions") or {}
    if versions:
        lines.append("- libraries: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    lines += ["", "## Training data", ""]
    if data:
        lines += [f"- rows read: {data.get('rows', '?')}, used: {data.get('rows_used', '?')}",
                  f"- columns: {data.get('columns', {})}",
                  f"- content fingerprint (sha256): {data.get('sha256', '?')}"]
    for target, labels in (m.get("labels") or {}).items():
        counts = [v for v in (labels or {}).values() if isinstance(v, int)]
        size = f", {min(counts)}-{max(counts)} cases per class" if counts else ""
        lines.append(f"- {target}: {len(labels or {})} classes{size}")
    if not data and not m.get("labels"):
        lines.append("- not recorded (the model was not loaded from the store)")
    lines += ["", "## Metrics", "", "| target | measured on | cases | accuracy | macro-F1 | top-3 accuracy |",
              "|---|---|---|---|---|---|"]
    for target, tm in (m.get("metrics") or {}).items():
        if tm and "accuracy" in tm:
            lines.append(f"| {target} | training hold-out | {tm.get('n', '?')} | {tm['accuracy']:.4f} | "
                         f"{tm['macro_f1']:.4f} | {tm['top3_accuracy']:.4f} |")
    src = str(report.data.get("source") or "DataFrame").replace("\\", "/").rsplit("/", 1)[-1]
    for target, t in report.targets.items():
        lines.append(f"| {target} | this report ({src}) | {t.metrics['n']} | {t.metrics['accuracy']:.4f} | "
                     f"{t.metrics['macro_f1']:.4f} | {t.metrics['top3_accuracy']:.4f} |")
    if report.overlap is not None:
        seen = "**Warning**: " if report.overlap.warns else ""
        said = report.overlap.sentence().rstrip(".")
        lines += ["", f"{seen}{said[0].upper()}{said[1:]}."]
    lines += ["", "## Intended use", "",
              "Suggest a category and a handling agency for a 12345 hotline complaint so that an operator can "
              "confirm or correct it. Cases whose score is under the review threshold are flagged for a person "
              "to decide. Not for deciding a case without a person where the score is low, and not for any "
              "use beyond routing (e.g. judging the complainant).", "",
              "## Limitations", "",
              "- Learns only the categories and agencies present in its training data; a new or renamed agency "
              "is always wrong until the model is retrained.",
              "- Agencies with one or two training cases are rarely predicted; routing by jurisdiction (place "
              "names) matters more for them than the text model.",
              "- Trained on one city's or region's wording; other regions' place names and dialect are unseen.",
              "- Scores are calibrated on the training data; check the reliability table on new data.",
              "- With routing, a complaint that names no county or town gets its county from a guess; such cases "
              "are always flagged for review, unless `hotline check-guesses` showed on real held-out cases that the "
              "guesses earn the threshold (send the caller's district as a place hint where it is known).", "",
              "## Known confusions (this report)", ""]
    compared = [f"- {name}: {paired_sentence(c.paired)}" for name, c in report.comparisons.items() if c.paired]
    for target, t in report.targets.items():
        pairs = t.pairs.head(5)
        if not len(pairs):
            lines.append(f"- {target}: none")
        for r in pairs.itertuples():
            lines.append(f"- {target}: {r.true} → {r.predicted}: {r.count} case(s), {r.share_of_true:.1%} of "
                         f"{r.true}")
        for note in t.notes:
            lines.append(f"- {target}: {note}")
    if compared:
        lines += ["", f"## Compared with version {report.compare_version or 'other'} (this report)", "", *compared]
    return "\n".join(lines) + "\n"
