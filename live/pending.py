"""Cases still waiting for their truth: decisions of the log that no correction (or confirmation) has reached.

``hotline select --from-log`` chooses among them the ones worth labeling.  A case's text is in the log only when
the service stores texts (``HOTLINE_DECISION_LOG_TEXTS``, masked); without it a case cannot be shown to the
person who would label it, so ``uncorrected_cases`` says how many lack one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from live.log import DecisionLog
from live.schema import corrections, decisions

__all__ = ["uncorrected_cases"]


def uncorrected_cases(decision_log: DecisionLog, since: datetime | None = None,
                      until: datetime | None = None) -> pd.DataFrame:
    """One row per case predicted in [since, until) that has no correction from any source: ``case_id``,
    ``text`` (the latest stored masked text among its decisions, or None), ``time`` (its latest decision),
    ``model_version`` (of that decision), oldest first."""
    d = decisions.c
    cond: list[Any] = [d.case_id.not_in(select(corrections.c.case_id))]
    if since is not None:
        cond.append(d.created_at >= since)
    if until is not None:
        cond.append(d.created_at < until)
    query = select(d.case_id, d.text, d.created_at, d.model_version, d.id).where(*cond).order_by(d.created_at, d.id)
    try:
        with decision_log.engine.connect() as conn:
            rows = pd.DataFrame(conn.execute(query).all(),
                                columns=["case_id", "text", "time", "model_version", "id"])
    except SQLAlchemyError as exc:
        raise decision_log._fail("read", exc) from None
    columns = ["case_id", "text", "time", "model_version"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    # SQLite hands back naive datetimes: every time in the log is UTC
    rows["time"] = [t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC) for t in rows["time"]]
    texts = rows.dropna(subset=["text"]).groupby("case_id")["text"].last()
    latest = rows.groupby("case_id", sort=False).tail(1).set_index("case_id")
    out = pd.DataFrame({"case_id": latest.index, "text": [texts.get(c) for c in latest.index],
                        "time": latest["time"].to_numpy(), "model_version": latest["model_version"].to_numpy()})
    return out.sort_values(["time", "case_id"], kind="stable").reset_index(drop=True)[columns]
