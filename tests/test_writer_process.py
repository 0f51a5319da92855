"""The decision log's writer process (``live.writer_process``): a real child process writing a real SQLite file,
locked, killed and signalled."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from live.log import Decision, DecisionLog, TargetDecision
from live.schema import decisions
from live.writer import Pending
from live.writer_process import DecisionWriterProcess, WriterConfig

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
PHONE_TEXT = "兴庆区解放东街红绿灯坏了，我的电话13912345678"


def decision(case_id: str) -> Decision:
    return Decision(case_id=case_id, request_id="req", model_version="v1", needs_review=False, created_at=T0,
                    labels=(TargetDecision("category", "交通秩序", 0.9, False),
                            TargetDecision("agency", "兴庆区交警一大队", 0.8, False)))


def until(condition: Callable[[], bool], seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


@pytest.fixture
def path(tmp_path):
    path = tmp_path / "log.sqlite"
    DecisionLog(f"sqlite:///{path}")  # migrated, as the service does before it starts its writer
    return path


def writer(path, written: list[int] | None = None, lost: list[int] | None = None, **config) -> DecisionWriterProcess:
    settings = {"interval_s": 0.05, "max_backoff_s": 0.2, "busy_timeout_s": 0.2, **config}
    return DecisionWriterProcess(WriterConfig(url=f"sqlite:///{path}", **settings),
                                 on_written=None if written is None else written.append,
                                 on_lost=None if lost is None else lost.append, restart_after_s=0.1).start()


def test_the_child_writes_masks_counts_and_reports_back(path):
    written: list[int] = []
    w = writer(path, written, store_texts=True, drift_sample=1.0)
    try:
        w.record([Pending(decision(f"A-{i}"), text=PHONE_TEXT, tokens=(12, 3)) for i in range(40)])
        assert w.flush(10)
        assert w._child is not None and w._child.proc.pid != os.getpid()  # written by another process
        assert w.stats.written == 40 and sum(written) == 40 and w.stats.pending == 0 and w.stats.lost == 0
    finally:
        w.close()
    with DecisionLog(f"sqlite:///{path}").engine.connect() as conn:
        rows = conn.execute(select(decisions.c.case_id, decisions.c.text, decisions.c.n_tokens,
                                   decisions.c.n_unseen)).all()
    assert len(rows) == 40 and {r[0] for r in rows} == {f"A-{i}" for i in range(40)}
    assert {r[1] for r in rows} == {"兴庆区解放东街红绿灯坏了，我的电话<PHONE>"}  # masked in the child
    assert {(r[2], r[3]) for r in rows} == {(12, 3)}  # the drift sample of 1.0 keeps every count


def test_no_child_starts_before_there_is_a_decision_and_close_writes_the_rest(path):
    w = writer(path, interval_s=10.0)  # the sender would wait 10 s: only close hands them over
    time.sleep(0.1)
    assert w._child is None and w.flush(1)  # nothing to write: no process for it
    w.record([Pending(decision(f"B-{i}")) for i in range(30)])
    assert w.stats.pending == 30
    w.close()
    assert w.stats.written == 30 and w.stats.lost == 0 and w.stats.pending == 0
    assert DecisionLog(f"sqlite:///{path}").counts()["decisions"] == 30


def test_a_locked_database_degrades_the_writer_and_nothing_is_lost(path):
    lost: list[int] = []
    w = writer(path, lost=lost)
    blocker = sqlite3.connect(path, timeout=1)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holds the database
    try:
        w.record([Pending(decision(f"C-{i}")) for i in range(50)])
        assert until(lambda: w.stats.degraded)
        assert w.stats.pending == 50 and w.stats.written == 0
        assert "database is locked" in (w.stats.last_error or "")
    finally:
        blocker.rollback()
        blocker.close()
    assert until(lambda: w.stats.written == 50)
    assert not w.stats.degraded and w.stats.last_error is None
    w.close()
    assert lost == [] and DecisionLog(f"sqlite:///{path}").counts()["decisions"] == 50


def test_a_killed_child_counts_what_it_held_as_lost_and_a_new_one_takes_over(path):
    lost: list[int] = []
    w = writer(path, lost=lost)
    blocker = sqlite3.connect(path, timeout=1)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        w.record([Pending(decision(f"D-{i}")) for i in range(20)])
        assert until(lambda: w.stats.degraded)  # the child holds the 20 and cannot write them
        first = w._child
        assert first is not None
        os.kill(first.proc.pid, signal.SIGKILL)
        assert until(lambda: w.stats.lost == 20)
        assert sum(lost) == 20 and w.stats.pending == 0 and w.stats.degraded
        assert "writer process exited (code -9)" in (w.stats.last_error or "")
    finally:
        blocker.rollback()
        blocker.close()
    w.record([Pending(decision(f"E-{i}")) for i in range(10)])
    assert w.flush(10)
    second = w._child
    assert second is not None and second is not first and second.proc.pid != first.proc.pid
    assert w.stats.written == 10 and w.stats.lost == 20 and not w.stats.degraded
    w.close()
    assert DecisionLog(f"sqlite:///{path}").counts()["decisions"] == 10


def test_the_child_runs_apart_below_the_services_priority_and_stops_only_when_the_service_closes_it(path):
    w = writer(path)
    w.record([Pending(decision(f"F-{i}")) for i in range(5)])
    assert w.flush(10)
    child = w._child
    assert child is not None
    stat = Path(f"/proc/{child.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    assert int(stat[16]) == os.nice(0) + 10  # niceness: below the service's CPU priority
    assert os.getpgid(child.proc.pid) != os.getpgid(0)  # a group of its own: Ctrl-C goes to the service only
    argv = Path(f"/proc/{child.proc.pid}/cmdline").read_bytes().decode()
    assert "sqlite" not in argv  # the database URL (a password, on PostgreSQL) is not on its command line
    for sig in (signal.SIGTERM, signal.SIGINT):  # systemd's stop of the whole group; a terminal's Ctrl-C
        os.kill(child.proc.pid, sig)
    time.sleep(0.3)
    assert child.proc.poll() is None
    w.record([Pending(decision(f"G-{i}")) for i in range(5)])
    w.close()
    assert child.proc.poll() == 0 and w.stats.written == 10 and w.stats.lost == 0
    assert DecisionLog(f"sqlite:///{path}").counts()["decisions"] == 10


def test_a_full_buffer_on_the_service_side_counts_what_it_gives_up(path):
    lost: list[int] = []
    w = DecisionWriterProcess(WriterConfig(url=f"sqlite:///{path}", max_pending=100), on_lost=lost.append)
    w.record([Pending(decision(f"H-{i}")) for i in range(130)])  # not started: nothing is handed over
    assert w.stats.lost == 30 and sum(lost) == 30 and w.stats.pending == 100
    w.close()
    assert w.stats.written == 100 and DecisionLog(f"sqlite:///{path}").counts()["decisions"] == 100


def test_a_queued_decision_is_one_untracked_tuple_that_the_child_turns_into_the_same_decision():
    import gc

    from live.writer_process import _pending, queued_decision

    record = {"needs_review": True,
              "targets": {"category": {"label": "交通秩序", "score": 0.91, "needs_review": False, "top": []},
                          "agency": {"label": "兴庆区交警一大队", "score": 0.42, "needs_review": True}},
              "routing": {"path": "directory", "place": {"name": "兴庆区", "source": "text"}}}
    before = datetime.now(UTC)
    row = queued_decision(record, case_id="WO-1", request_id="rid-1", model_version="v1", text=PHONE_TEXT,
                          coverage=(12, 3))
    gc.collect()
    assert not gc.is_tracked(row)  # plain values only: the collector no longer walks it while it waits
    pending = _pending(row)
    expected = Decision.from_prediction(record, case_id="WO-1", request_id="rid-1", model_version="v1",
                                        created_at=pending.decision.created_at)
    assert pending.decision == expected
    assert before <= pending.decision.created_at <= datetime.now(UTC)
    assert pending.decision.created_at.tzinfo is UTC
    assert (pending.text, pending.tokens) == (PHONE_TEXT, (12, 3))
    bare = _pending(queued_decision({"needs_review": False, "targets": {}}, case_id="WO-2", request_id="r",
                                    model_version="v1"))
    assert bare.decision.labels == () and bare.decision.routing_path is None and bare.tokens is None
    assert bare.text is None
