"""live.quality's scans: the numbers equal a count by hand, a period can end in the past (``until``), a week is
the difference of two starts' counts, and the scans stream over their covering indexes (migration 0003) instead
of sorting every prediction of the window (BENCHMARKS.md, "Decision log": 19 s -> 4 s at a million)."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest
from sqlalchemy import event

from live.db import migrate, open_engine, schema_revision
from live.log import DecisionLog
from live.quality import decision_counts, live_quality, prediction_counts
from tests.live_support import SINCE, UNTIL, V1, V2, direct_counts, fill, scenario


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    path = tmp_path_factory.mktemp("quality") / "decisions.sqlite"
    decision_log = DecisionLog(f"sqlite:///{path}")
    s = scenario()
    fill(decision_log, s)
    yield decision_log, s, path
    decision_log.close()


def test_a_period_that_ends_in_the_past_equals_a_count_by_hand(filled):
    decision_log, s, _ = filled
    q = live_quality(decision_log, windows=[28], now=UNTIL, until=UNTIL)
    window = q["windows"]["28d"]
    assert window["since"] == SINCE.isoformat()
    for target in ("category", "agency"):
        want = direct_counts(s, target)
        per_version = [window["versions"][v]["targets"][target] for v in (V1, V2)]
        assert sum(t["predictions"] for t in per_version) == want["predictions"] == 56
        assert sum(t["labeled"] for t in per_version) == want["labeled"] > 40
        assert sum(round(t["accuracy"] * t["labeled"]) for t in per_version) == want["right"]
    # without until, the two decisions after the period count too
    later = live_quality(decision_log, windows=[28], now=UNTIL)["windows"]["28d"]["versions"][V2]
    assert later["decisions"] == window["versions"][V2]["decisions"] + 2


def test_one_version_window_matches_its_own_cases(filled):
    decision_log, s, _ = filled
    q = live_quality(decision_log, windows=[7, 14], now=UNTIL, until=UNTIL)
    v2 = q["windows"]["14d"]["versions"][V2]["targets"]["agency"]
    want = direct_counts(s, "agency", since=UNTIL - timedelta(days=14))
    assert v2["predictions"] == want["predictions"] == 28
    assert v2["accuracy"] == pytest.approx(want["accuracy"])
    assert v2["auto"]["accuracy"] == pytest.approx(want["auto_accuracy"])
    assert v2["review_rate"] == pytest.approx(want["review_rate"])
    assert v2["new_label_share"] == pytest.approx(want["new"] / want["labeled"])
    assert V1 not in q["windows"]["7d"]["versions"]  # v1 stopped deciding two weeks before


def test_a_week_is_the_difference_of_two_starts(filled):
    decision_log, s, _ = filled
    starts = [SINCE + timedelta(weeks=k) for k in range(4)]
    rows = prediction_counts(decision_log, starts, UNTIL)
    for k in range(4):
        week = sum(r.since[k] - (r.since[k + 1] if k < 3 else 0) for r in rows if r.target == "category")
        assert week == 14  # two decisions a day
    decisions = decision_counts(decision_log, starts, UNTIL)
    assert sum(d.since[0][0] for d in decisions) == 56
    assert sum(d.since[0][3] for d in decisions) == sum(
        1 for d in s.decisions if SINCE <= d.created_at < UNTIL and d.n_tokens is not None)
    with pytest.raises(ValueError, match="oldest first"):
        prediction_counts(decision_log, starts[::-1], UNTIL)


def test_migration_0003_adds_the_covering_indexes_and_keeps_every_row(tmp_path):
    from tests.live_support import fill as fill_log

    path = tmp_path / "old.sqlite"
    engine = open_engine(f"sqlite:///{path}")
    migrate(engine, "0002")
    old = DecisionLog(f"sqlite:///{path}", migrate_schema=False)
    fill_log(old, scenario())
    before = old.counts()
    old.close()
    upgraded = DecisionLog(f"sqlite:///{path}")
    assert schema_revision(upgraded.engine) == "0003"
    assert upgraded.counts() == before
    with sqlite3.connect(path) as conn:
        indexes = {r[1] for r in conn.execute("SELECT type, name FROM sqlite_master WHERE type = 'index'")}
    assert {"ix_predictions_quality", "ix_decisions_quality"} <= indexes
    upgraded.close()


@pytest.mark.parametrize("which", ["predictions", "decisions"])
@pytest.mark.parametrize("period", ["windows", "weeks of a past period"])
def test_the_scans_stream_over_their_index_without_sorting(filled, which, period):
    """The plan SQLite picks for the exact statements that run: a covering-index scan, no temp b-tree (sorting
    two million predictions for the GROUP BY was most of the 19 s live_quality took before; with an end to the
    period the planner took the created_at index instead, 13 s, unless kept off it)."""
    decision_log, _, path = filled
    captured: list[tuple[str, tuple]] = []

    def grab(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and f"FROM {which}" in statement:
            captured.append((statement, parameters))

    event.listen(decision_log.engine, "before_cursor_execute", grab)
    try:
        if period == "windows":
            live_quality(decision_log, now=UNTIL)
        else:
            starts = [SINCE + timedelta(weeks=k) for k in range(4)]
            (prediction_counts if which == "predictions" else decision_counts)(decision_log, starts, UNTIL)
    finally:
        event.remove(decision_log.engine, "before_cursor_execute", grab)
    assert len(captured) == 1
    statement, parameters = captured[0]
    with sqlite3.connect(path) as conn:
        plan = " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + statement, parameters))
    assert f"COVERING INDEX ix_{which}_quality" in plan
    assert "TEMP B-TREE" not in plan
