"""Live quality: how the served models do on the cases that came back with a correction or a confirmation.

Per window (7 and 30 days by default), per model version and per target:

- ``predictions``, ``review_rate``: how many cases, and the share sent to a person (the target's score under
  its threshold);
- ``labeled``, ``accuracy``: predictions whose case got a final label (a correction, or a confirmation: the
  same label), and the share the model had right; split into ``auto`` (went out without review) and
  ``review`` (sent to a person): the auto-routed accuracy is the promise the service makes;
- ``new_label_share``: of the labeled ones, the share whose final label the model does not know (a new or
  renamed agency: retrain);
- ``label_psi``: the predicted label mix against the training mix (``live.drift``);

and per version ``unseen_token_share``: the share of incoming tokens the model never saw (a sample).
Accuracy is computed only from cases that got a final label: cases nobody confirmed or corrected are not
assumed right.  The numbers are what ``GET /quality``, ``/metrics`` and ``hotline report --live`` show.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, case, cast, func, select
from sqlalchemy.exc import SQLAlchemyError

from live.drift import population_stability_index
from live.log import DecisionLog, utc_now
from live.schema import decisions, predictions

__all__ = ["live_quality", "DEFAULT_WINDOWS", "training_mix"]

DEFAULT_WINDOWS = (7, 30)


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def training_mix(manifest: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """A version's training label counts per target, from its manifest (None counts, as old manifests have
    for labels without a validation report, count as 1 each)."""
    out: dict[str, dict[str, float]] = {}
    for target, counts in (manifest.get("labels") or {}).items():
        if isinstance(counts, dict):
            out[target] = {str(k): float(v) if isinstance(v, (int, float)) else 1.0 for k, v in counts.items()}
    return out


def live_quality(decision_log: DecisionLog, *, windows: Sequence[int] = DEFAULT_WINDOWS,
                 now: datetime | None = None,
                 mixes: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None) -> dict[str, Any]:
    """The live quality of every model version that decided in the windows (days).  ``mixes``: per version,
    its training label mix per target (``training_mix(manifest)``), for the PSI; versions without one get
    ``label_psi: null``.  One scan of each table over the longest window."""
    now = now or utc_now()
    windows = sorted({int(w) for w in windows})
    if not windows or windows[0] < 1:
        raise ValueError(f"windows must be whole days >= 1, got {list(windows)}")
    since = {w: now - timedelta(days=w) for w in windows}
    longest = since[windows[-1]]
    p = predictions.c
    d = decisions.c

    def in_window(col: Any, w: int) -> Any:
        return col >= since[w]

    def count_if(cond: Any) -> Any:
        return func.sum(case((cond, 1), else_=0))

    review = cast(p.needs_review, Integer) == 1
    labeled = p.truth.is_not(None)
    right = labeled & (p.truth == p.label)
    pred_cols: list[Any] = []
    for w in windows:
        inw = in_window(p.created_at, w)
        pred_cols += [count_if(inw), count_if(inw & review), count_if(inw & labeled), count_if(inw & right),
                      count_if(inw & labeled & ~review), count_if(inw & right & ~review),
                      count_if(inw & labeled & (cast(p.truth_known, Integer) == 0))]
    pred_query = (select(p.model_version, p.target, p.label, *pred_cols).where(p.created_at >= longest)
                  .group_by(p.model_version, p.target, p.label))
    dec_cols: list[Any] = []
    for w in windows:
        inw = in_window(d.created_at, w)
        dec_cols += [count_if(inw), count_if(inw & (cast(d.needs_review, Integer) == 1)),
                     func.sum(case((inw, d.n_tokens), else_=0)), func.sum(case((inw, d.n_unseen), else_=0)),
                     count_if(inw & d.n_tokens.is_not(None))]
    dec_query = select(d.model_version, *dec_cols).where(d.created_at >= longest).group_by(d.model_version)
    try:
        with decision_log.engine.connect() as conn:
            pred_rows = conn.execute(pred_query).all()
            dec_rows = conn.execute(dec_query).all()
    except SQLAlchemyError as exc:
        raise decision_log._fail("read", exc) from None

    out: dict[str, Any] = {"generated_at": now.isoformat(), "windows": {}}
    for k, w in enumerate(windows):
        versions: dict[str, Any] = {}
        for row in dec_rows:
            version = row[0]
            n, n_review, tokens, unseen, sampled = (int(x or 0) for x in row[1 + 5 * k: 6 + 5 * k])
            if not n:
                continue
            versions[version] = {"decisions": n, "review_rate": _ratio(n_review, n),
                                 "unseen_token_share": _ratio(unseen, tokens), "drift_sample": sampled,
                                 "targets": {}}
        per_target: dict[tuple[str, str], dict[str, Any]] = {}
        for row in pred_rows:
            version, target, label = row[0], row[1], row[2]
            vals = [int(x or 0) for x in row[3 + 7 * k: 10 + 7 * k]]
            if not vals[0] or version not in versions:
                continue
            acc = per_target.setdefault((version, target), {"mix": {}, "sums": [0] * 7})
            acc["mix"][label] = vals[0]
            acc["sums"] = [a + b for a, b in zip(acc["sums"], vals, strict=True)]
        for (version, target), acc in sorted(per_target.items()):
            n, n_review, n_lab, n_right, n_lab_auto, n_right_auto, n_new = acc["sums"]
            mix = (mixes or {}).get(version, {}).get(target)
            versions[version]["targets"][target] = {
                "predictions": n,
                "review_rate": _ratio(n_review, n),
                "labeled": n_lab,
                "accuracy": _ratio(n_right, n_lab),
                "auto": {"labeled": n_lab_auto, "accuracy": _ratio(n_right_auto, n_lab_auto)},
                "review": {"labeled": n_lab - n_lab_auto, "accuracy": _ratio(n_right - n_right_auto,
                                                                              n_lab - n_lab_auto)},
                "new_label_share": _ratio(n_new, n_lab),
                "label_psi": population_stability_index(acc["mix"], mix) if mix else None,
            }
        out["windows"][f"{w}d"] = {"days": w, "since": since[w].isoformat(), "versions": versions}
    return out
