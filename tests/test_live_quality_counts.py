"""live.quality's scans: the numbers equal a count by hand, a period can end in the past (``until``), a week is
the difference of two starts' counts, the hourly tallies plus the part-hours at the edges equal a plain count of
the predictions for any period, and the scans stream over their covering indexes (migrations 0003 and 0004)
instead of sorting every prediction of the window (BENCHMARKS.md, "Decision log": 19 s -> 4 s at a million)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import case, event, func, select

from live.db import migrate, open_engine, schema_revision
from live.log import DecisionLog
from live.quality import PredictionCount, decision_counts, live_quality, prediction_counts
from live.schema import prediction_tallies, predictions
from tests.live_support import SINCE, UNTIL, V1, V2, direct_counts, fill, scenario, write_old_decision


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


def _indexes_and_tables(path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('index', 'table')")}


def _tallies(decision_log: DecisionLog) -> list[tuple]:
    with decision_log.engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(select(prediction_tallies)))


def test_migration_0004_counts_the_tallies_of_the_predictions_already_in_the_log(tmp_path):
    from alembic import command

    from live.db import _alembic_config

    path = tmp_path / "log.sqlite"
    written = DecisionLog(f"sqlite:///{path}")
    fill(written, scenario())
    by_writer, before = _tallies(written), written.counts()
    assert sum(r[-1] for r in by_writer) == 120  # 60 decisions x 2 targets, counted as they were written
    with written.engine.begin() as conn:  # back to 0003: a log from before the tallies
        command.downgrade(_alembic_config(conn), "0003")
    written.close()
    assert schema_revision(open_engine(f"sqlite:///{path}")) == "0003"
    assert "prediction_tallies" not in _indexes_and_tables(path)
    assert "ix_predictions_quality" in _indexes_and_tables(path)
    upgraded = DecisionLog(f"sqlite:///{path}")
    assert schema_revision(upgraded.engine) == "0004"
    assert upgraded.counts() == before
    assert _tallies(upgraded) == by_writer  # the migration counted what the writer had
    names = _indexes_and_tables(path)
    assert {"ix_predictions_corrected", "ix_decisions_quality", "prediction_tallies"} <= names
    assert "ix_predictions_quality" not in names
    upgraded.close()


def test_migration_0003_from_0002_keeps_every_row(tmp_path):
    path = tmp_path / "old.sqlite"
    engine = open_engine(f"sqlite:///{path}")
    migrate(engine, "0002")
    write_old_decision(engine)
    migrate(engine, "0003")
    assert schema_revision(engine) == "0003"
    assert "ix_predictions_quality" in _indexes_and_tables(path)
    upgraded = DecisionLog(f"sqlite:///{path}")
    assert upgraded.counts()["predictions"] == 1
    hour = int(datetime(2026, 11, 1, 8, tzinfo=UTC).timestamp()) // 3600  # 498,200 hours since 1970
    assert _tallies(upgraded) == [(hour, "v0", "category", "交通秩序", False, 1)]
    upgraded.close()


def _plain_counts(decision_log: DecisionLog, starts, until) -> list[PredictionCount]:
    """What prediction_counts returned before the tallies: one GROUP BY over every prediction of the period."""
    p = predictions.c
    keys = [p.model_version, p.target, p.label, p.needs_review, p.truth_known, p.truth, p.truth_source]
    cols = [func.sum(case((p.created_at >= s, 1), else_=0)) for s in starts]
    cond = [p.created_at >= starts[0]] + ([p.created_at < until] if until is not None else [])
    with decision_log.engine.connect() as conn:
        rows = conn.execute(select(*keys, *cols).where(*cond).group_by(*keys)).all()
    return _sorted(PredictionCount(r[0], r[1], r[2], bool(r[3]), None if r[4] is None else bool(r[4]), r[5], r[6],
                                   tuple(int(x) for x in r[7:])) for r in rows)


def _sorted(rows) -> list[PredictionCount]:  # noqa: ANN001
    return sorted(rows, key=repr)


@pytest.fixture(scope="module")
def scattered(tmp_path_factory):
    """The scenario with its decisions spread over their hours (minutes and seconds), so that the part-hours at
    a period's edges hold some."""
    s = scenario()
    for i, d in enumerate(s.decisions):
        d.created_at += timedelta(minutes=(i * 17) % 60, seconds=i % 7, microseconds=i * 1000)
    decision_log = DecisionLog(f"sqlite:///{tmp_path_factory.mktemp('scattered') / 'log.sqlite'}")
    fill(decision_log, s)
    yield decision_log
    decision_log.close()


@pytest.mark.parametrize("shift", [timedelta(0), timedelta(minutes=30), timedelta(hours=5, minutes=59, seconds=59.5)])
@pytest.mark.parametrize("ends", [True, False])
def test_tallies_and_edges_equal_a_plain_count_of_any_period(scattered, shift, ends):
    decision_log = scattered
    until = UNTIL - shift if ends else None
    for starts in ([SINCE + shift + timedelta(days=k) for k in (0, 3, 10, 27)],  # part-hours at both edges
                   [SINCE + timedelta(days=9, hours=8, minutes=10)],              # a start inside a decision's hour
                   [SINCE + timedelta(days=9, hours=8, minutes=10), SINCE + timedelta(days=9, hours=8, minutes=40)],
                   [UNTIL - shift - timedelta(minutes=50)]):                      # a period inside one hour
        got = _sorted(prediction_counts(decision_log, starts, until))
        assert got == _plain_counts(decision_log, starts, until)
    # inside one hour: the decision of 08:40 on day 9, only from the predictions themselves
    starts, end = [SINCE + timedelta(days=9, hours=8, minutes=10)], SINCE + timedelta(days=9, hours=8, minutes=50)
    got = _sorted(prediction_counts(decision_log, starts, end))
    assert got == _plain_counts(decision_log, starts, end) and sum(r.since[0] for r in got) == 2
    # a period given in another time zone is the same period
    shanghai = timezone(timedelta(hours=8))
    local = [(SINCE + shift).astimezone(shanghai), (SINCE + timedelta(days=5)).astimezone(shanghai)]
    assert _sorted(prediction_counts(decision_log, local, until.astimezone(shanghai) if until else None)) == \
        _plain_counts(decision_log, [SINCE + shift, SINCE + timedelta(days=5)], until)


def test_purge_takes_the_tallies_of_the_hours_it_empties(tmp_path):
    decision_log = DecisionLog(f"sqlite:///{tmp_path / 'log.sqlite'}")
    fill(decision_log, scenario())
    # the cutoff, SINCE 08:30, goes up to 09:00: the two decisions of the day before and SINCE's 08:00 go
    removed = decision_log.purge(timedelta(days=180), now=SINCE + timedelta(days=180, hours=8, minutes=30))
    assert removed == {"decisions": 3, "predictions": 6, "replaced_corrections": 0, "correction_texts": 0}
    tallies = _tallies(decision_log)
    assert sum(r[-1] for r in tallies) == decision_log.counts()["predictions"] == 114
    assert min(r[0] for r in tallies) == int((SINCE + timedelta(hours=14)).timestamp()) // 3600
    decision_log.close()


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
    index = "ix_predictions_corrected" if which == "predictions" else "ix_decisions_quality"
    assert f"COVERING INDEX {index}" in plan
    assert "TEMP B-TREE" not in plan
