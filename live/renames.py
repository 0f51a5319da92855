"""Renamed agencies, seen in the corrections: a new label that takes over an old label's cases.

When an agency is renamed or merged, dispatchers start correcting the model's old name to the new one, and the
old name stops coming back as a final label.  ``suggest_renames`` finds that pattern in the decision log, per
target, for ``hotline feedback renames`` (which writes the ``target,old,new`` file ``hotline train
--relabel-file`` reads, ``training.relabel``):

- the new label ``new`` was one the model did not know when it first came back (a new name, not one of the
  model's agencies: two agencies the model knows are never merged by this);
- ``new`` was the final label of at least ``min_cases`` predicted cases, and on at least
  ``min_share`` of those the model had not said ``new`` it had said ``old`` (the new name takes the old name's
  cases, not a mix of many agencies': that is a new agency, not a rename);
- since ``new`` first came back, ``old`` came back as a final label at most ``max_old_ratio`` times as often
  as ``new`` (the old name is fading: two live agencies the model confuses both keep coming back).

Each suggestion carries its evidence (counts and dates, never a text); a person decides, or the loop applies
them (the month-by-month benchmark measures what that buys: BENCHMARKS.md, "The live loop").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from classifier.errors import ConfigError
from live.log import DecisionLog, _utc
from live.schema import predictions

__all__ = ["RenameSuggestion", "suggest_renames", "suggestions_frame", "as_relabel"]


@dataclass(frozen=True)
class RenameSuggestion:
    target: str
    old: str
    new: str
    new_cases: int           # predicted cases whose final label is ``new``
    taken_for_old: int       # ... of which the model had routed to ``old``
    old_since_new: int       # cases whose final label was ``old`` since ``new`` first came back
    new_first_seen: str      # the day ``new`` first came back as a final label
    old_last_seen: str | None

    def reason(self) -> str:
        return (f"{self.taken_for_old} of the {self.new_cases} cases corrected to {self.new} (first on "
                f"{self.new_first_seen}) had been routed to {self.old}, which came back only {self.old_since_new} "
                "time(s) since")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reason": self.reason()}


def _corrected_predictions(log: DecisionLog, target: str | None, since: datetime | None) -> pd.DataFrame:
    p = predictions.c
    query = select(p.case_id, p.target, p.label, p.truth, p.truth_known, p.created_at).where(p.truth.is_not(None))
    if target is not None:
        query = query.where(p.target == target)
    if since is not None:
        query = query.where(p.created_at >= since)
    try:
        with log.engine.connect() as conn:
            rows = conn.execute(query.order_by(p.created_at, p.id)).all()
    except SQLAlchemyError as exc:
        raise log._fail("read", exc) from None
    frame = pd.DataFrame(rows, columns=["case_id", "target", "predicted", "truth", "known", "when"])
    frame["when"] = [_utc(w) for w in frame["when"]]
    # a case predicted twice counts once: its first prediction, what the model said before anyone corrected it
    return frame.drop_duplicates(["case_id", "target"], keep="first")


def suggest_renames(log: DecisionLog, *, target: str | None = None, since: datetime | None = None,
                    min_cases: int = 3, min_share: float = 0.5, max_old_ratio: float = 0.5
                    ) -> list[RenameSuggestion]:
    """Old -> new label pairs the log's corrections show (see the module's docstring), strongest first."""
    if min_cases < 1:
        raise ConfigError(f"min_cases must be at least 1, got {min_cases}")
    if not 0 < min_share <= 1:
        raise ConfigError(f"min_share must be in (0, 1], got {min_share}")
    if max_old_ratio < 0:
        raise ConfigError(f"max_old_ratio must be at least 0, got {max_old_ratio}")
    frame = _corrected_predictions(log, target, since)
    out: list[RenameSuggestion] = []
    for name, rows in frame.groupby("target", sort=True):
        first_seen = rows.groupby("truth")["when"].min()
        last_seen = rows.groupby("truth")["when"].max()
        for new, cases in rows.groupby("truth", sort=True):
            if len(cases) < min_cases or cases["known"].iloc[0] is True or cases["known"].iloc[0] == 1:
                continue  # too few, or a label the model already knew when it first came back
            missed = cases[cases["predicted"] != new]
            if missed.empty:
                continue
            counts = missed["predicted"].value_counts()
            old, taken = str(counts.index[0]), int(counts.iloc[0])
            if taken < min_cases or taken < min_share * len(missed):
                continue
            since_new = int(((rows["truth"] == old) & (rows["when"] >= first_seen[new])).sum())
            if since_new > max_old_ratio * len(cases):
                continue
            out.append(RenameSuggestion(
                target=str(name), old=old, new=str(new), new_cases=len(cases), taken_for_old=taken,
                old_since_new=since_new, new_first_seen=first_seen[new].date().isoformat(),
                old_last_seen=last_seen[old].date().isoformat() if old in last_seen.index else None))
    # one old name goes to one new name: the strongest claim wins (a merge is several old names, one new)
    best: dict[tuple[str, str], RenameSuggestion] = {}
    for s in sorted(out, key=lambda s: (-s.taken_for_old, -s.new_cases, s.new)):
        best.setdefault((s.target, s.old), s)
    return sorted(best.values(), key=lambda s: (s.target, -s.taken_for_old, s.old))


def suggestions_frame(suggestions: list[RenameSuggestion]) -> pd.DataFrame:
    """``target, old, new`` first (what ``--relabel-file`` reads), then the evidence."""
    columns = ["target", "old", "new", "new_cases", "taken_for_old", "old_since_new", "new_first_seen",
               "old_last_seen", "reason"]
    return pd.DataFrame([s.to_dict() for s in suggestions], columns=columns)


def as_relabel(suggestions: list[RenameSuggestion]) -> dict[str, dict[str, str]]:
    """The suggestions as ``TrainingConfig.relabel``."""
    out: dict[str, dict[str, str]] = {}
    for s in suggestions:
        out.setdefault(s.target, {})[s.old] = s.new
    return out
