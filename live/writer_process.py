"""The decision log's writer in a process of its own: the service's default (``HOTLINE_DECISION_LOG_WRITER``).

With the writer as a thread of the service (``live.writer.DecisionWriter``), the log cost the service's p99 4-5 ms
at concurrency 16 although its thread used only ~50 µs of CPU per request: the thread's Python work (building
rows, SQLAlchemy, the SQLite calls that give the interpreter lock away and take it back) made the request thread
wait for the lock, and its objects made the garbage collector run more often.  In a process of its own the same
work holds no lock a request needs (BENCHMARKS.md, issue 13).

The service side (``DecisionWriterProcess``) has the thread writer's interface (``record``, ``flush``, ``close``,
``stats``).  A request appends its decisions to a list, as before.  A sender thread hands what is pending to
the child every ``interval_s`` as one pickled frame through the child's stdin (the pickling is C code; writing to
the pipe releases the lock).  The child (``python -m live.writer_process``) runs the thread writer itself: it
masks the texts (when the log stores them), keeps the drift sample, writes in batches, retries while the
database is down and keeps at most ``max_pending`` decisions, counting what it gives up.  After each write it
sends its counts back on its stdout, so ``/ready``, ``/metrics`` and ``stats`` say what the child did.

Nothing is lost uncounted: the service side counts what it handed over, and when the child dies, whatever it had
neither written nor counted is counted lost (``hotline_decision_log_lost``) and a new child takes the next
decisions.  ``close`` hands over the rest, closes the child's stdin, and the child flushes and exits.  The child
runs in a session of its own and ignores SIGINT and SIGTERM (a terminal's Ctrl-C, systemd stopping the whole
cgroup): it stops when the service closes its stdin, or when the service dies (its stdin ends then too), so a
stop flushes through the service's own shutdown.  It runs at a lower CPU priority than the service (``nice``).

The pipe carries the service's own objects only, never anything from outside, so pickle is safe here; raw texts
cross it only when the log stores texts, and are masked in the child before they are written.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from live.writer import Pending, WriterStats, append_bounded

__all__ = ["DecisionWriterProcess", "WriterConfig", "queued_decision"]

log = logging.getLogger("hotline.decisions")

_FRAME = struct.Struct("<I")  # a frame: its length, then a pickle
CONFIG_ENV = "HOTLINE_DECISION_LOG_WRITER_CONFIG"


@dataclass(frozen=True)
class WriterConfig:
    """What the child needs to open the log and run its writer.  It reaches the child as JSON in its environment
    (``CONFIG_ENV``), not on its command line, which any user of the machine can read (``ps``): the URL may
    hold a database password."""

    url: str
    store_texts: bool = False
    busy_timeout_s: float = 5.0
    batch_size: int = 500
    interval_s: float = 0.2
    max_pending: int = 100_000
    max_backoff_s: float = 5.0
    drift_sample: float = 0.1
    text_retention_days: float | None = None
    purge_every_s: float = 3600.0
    close_timeout_s: float = 10.0
    nice: int = 10  # the child's CPU priority below the workers': on busy cores predictions come first (the log
    # can lag, within max_pending); at nice 10 Linux still gives it about a tenth of a contended core, and it
    # needs ~5 % of one at 800 requests/s (BENCHMARKS.md)


class DecisionWriterProcess:
    """Decisions written by a child process (see the module's docstring); the interface of ``DecisionWriter``."""

    def __init__(self, config: WriterConfig, *, on_written: Callable[[int], None] | None = None,
                 on_lost: Callable[[int], None] | None = None,
                 on_pending: Callable[[int], None] | None = None, restart_after_s: float = 1.0) -> None:
        self.config = config
        self.interval_s = config.interval_s
        self.max_pending = config.max_pending
        self.drift_every = max(1, round(1 / config.drift_sample)) if config.drift_sample > 0 else 0
        self.on_written = on_written
        self.on_lost = on_lost
        self.on_pending = on_pending
        self.restart_after_s = restart_after_s
        self.stats = WriterStats()
        self._pending: deque[Pending | tuple[Any, ...]] = deque()
        self._lock = threading.Lock()  # the pending list and the counts
        self._send_lock = threading.Lock()  # one frame at a time into the child's stdin
        self._replies = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._stop = False
        self._sender: threading.Thread | None = None
        self._child: _Child | None = None
        self._next_start = 0.0
        self._lost_here = 0  # given up on this side (buffer full, a child that died)
        self._done = _Counts()  # what the children before the current one wrote and lost
        self._flush_token = 0

    # -- the request side ---------------------------------------------------------------------------------
    def record(self, items: Sequence[Pending | tuple[Any, ...]]) -> None:
        """Queue decisions (``queued_decision`` tuples, or ``Pending``); never blocks on the child or the
        database."""
        with self._lock:
            lost = append_bounded(self._pending, items, self.max_pending)
            self._lost_here += lost
            self._update_stats()
        if lost:
            self._count_lost(lost, "buffer full")
        if len(self._pending) >= self.config.batch_size:
            self._wake.set()

    # -- the sender thread ----------------------------------------------------------------------------------
    def start(self) -> DecisionWriterProcess:
        if self._sender is None:
            self._sender = threading.Thread(target=self._run, name="hotline-decision-log-sender", daemon=True)
            self._sender.start()
        return self

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stop:
                break
            self._send_pending()

    def _send_pending(self) -> bool:
        """Hand everything pending to the child; False when there is no child to take it (yet)."""
        with self._send_lock:
            if not self._pending:
                return True  # nothing to hand over: no child is started for it
            child = self._running_child()
            if child is None:
                return False
            with self._lock:
                batch = list(self._pending)
                self._pending.clear()
            try:
                child.send(("decisions", batch))
            except OSError as exc:  # the child is gone: its reader counts what it had; these wait for the next
                with self._lock:
                    self._pending.extendleft(reversed(batch))
                child.broken(f"{type(exc).__name__}: {exc}")
                return False
            with self._lock:
                child.counts.sent += len(batch)
                self._update_stats()
            return True

    def _running_child(self) -> _Child | None:
        """The child, started when there is none (at most once per ``restart_after_s`` after a failure)."""
        child = self._child
        if child is not None and child.alive:
            return child
        now = time.monotonic()
        if now < self._next_start:
            return None
        self._next_start = now + self.restart_after_s
        try:
            self._child = _Child(self)
        except OSError as exc:
            with self._lock:
                self.stats.degraded = True
                self.stats.last_error = f"cannot start the decision log's writer process: {exc}"
            log.error(json.dumps({"event": "decision_log_degraded", "error": self.stats.last_error}))
            return None
        return self._child

    # -- what the child reports -----------------------------------------------------------------------------
    def _reported(self, child: _Child, report: dict[str, Any]) -> None:
        """A report from the child (its reader thread): new counts, maybe the answer to a flush."""
        with self._lock:
            before = child.counts
            now = _Counts(sent=before.sent, written=report["written"], lost=report["lost"])
            child.counts = now
            self.stats.failed_writes = self._done.failed_writes + report["failed_writes"]
            self.stats.degraded = report["degraded"]
            self.stats.last_error = report["last_error"]
            self._update_stats()
            if "flushed" in report:
                child.flushed[report["flushed"]] = report["ok"]
                self._replies.notify_all()
            pending = self.stats.pending
        if self.on_written is not None and now.written > before.written:
            self.on_written(now.written - before.written)
        if self.on_lost is not None and now.lost > before.lost:
            self.on_lost(now.lost - before.lost)
        if self.on_pending is not None:
            self.on_pending(pending)

    def _ended(self, child: _Child, code: int | None) -> None:
        """The child's stdout closed: it exited (a stop) or died.  What it neither wrote nor counted is lost."""
        with self._lock:
            c = child.counts
            unaccounted = max(0, c.sent - c.written - c.lost)
            self._done.written += c.written
            self._done.lost += c.lost
            self._done.failed_writes = self.stats.failed_writes
            child.counts = _Counts()
            self._lost_here += unaccounted
            if not self._stop:
                self.stats.degraded = True
                self.stats.last_error = (f"the decision log's writer process exited (code {code}); a new one "
                                         "starts with the next decisions")
            self._update_stats()
            self._replies.notify_all()
        if not self._stop:
            log.error(json.dumps({"event": "decision_log_writer_exited", "code": code, "lost": unaccounted}))
        if unaccounted:
            self._count_lost(unaccounted, "the writer process ended before writing them")
        if self._child is child:
            self._child = None

    def _update_stats(self) -> None:  # under self._lock
        c = self._child.counts if self._child is not None else _Counts()
        self.stats.written = self._done.written + c.written
        self.stats.lost = self._lost_here + self._done.lost + c.lost
        in_child = max(0, c.sent - c.written - c.lost)  # sent, not yet written or given up
        self.stats.pending = len(self._pending) + in_child

    def _count_lost(self, n: int, why: str) -> None:
        if self.on_lost is not None:
            self.on_lost(n)
        log.error(json.dumps({"event": "decision_log_lost", "records": n, "reason": why}, ensure_ascii=False))

    # -- flushing and stopping ------------------------------------------------------------------------------
    def flush(self, timeout_s: float = 10.0) -> bool:
        """Hand over what is pending and wait until the child has written it; True when nothing is left."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._send_pending():
                child = self._child
                if child is None or not child.alive:
                    with self._lock:
                        if not self._pending and self.stats.pending == 0:
                            return True  # nothing was ever handed over, or all of it is accounted for
                    continue
                with self._send_lock:
                    self._flush_token += 1
                    token = self._flush_token
                    try:
                        child.send(("flush", token, max(0.0, deadline - time.monotonic())))
                    except OSError as exc:
                        child.broken(f"{type(exc).__name__}: {exc}")
                        continue
                with self._lock:
                    while token not in child.flushed and child.alive and time.monotonic() < deadline:
                        self._replies.wait(max(0.0, deadline - time.monotonic()) + 0.05)
                    if child.flushed.get(token) and not self._pending:
                        return True
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        return False

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop sending, hand over the rest, and let the child flush and exit (what it cannot write by the
        deadline is counted lost, there or here)."""
        self._stop = True
        self._wake.set()
        if self._sender is not None:
            self._sender.join(timeout=timeout_s)
        self._next_start = 0.0  # a child that died just now is replaced to take the rest
        self._send_pending()
        child = self._child
        if child is not None:
            child.finish(timeout_s)
        with self._lock:
            n = len(self._pending)
            self._pending.clear()
            self._lost_here += n
            self._update_stats()
        if n:
            self._count_lost(n, "service stopped while the decision log's writer process was unavailable")


def queued_decision(record: Mapping[str, Any], *, case_id: str, request_id: str, model_version: str,
                    text: str | None = None, coverage: tuple[int, int] | None = None) -> tuple[Any, ...]:
    """One decision as a request queues it for the writer process: a flat tuple of plain values, built straight
    from the prediction record (``classifier.model.prediction_record``).  No object per decision and target (a
    ``Decision`` with its ``TargetDecision``s is ~10 objects the garbage collector tracks while they wait; such
    a tuple it stops tracking at its first look), and it pickles ~15x faster.  The child rebuilds the
    ``Decision`` (``_pending``).  Layout: case id, request id, time (UTC seconds), version, review, routing
    path, place source, text, tokens, unseen tokens, then (target, label, score, review) for each target."""
    routing = record.get("routing") or {}
    place = routing.get("place") if isinstance(routing, dict) else None
    source = place.get("source") if isinstance(place, dict) else None
    row = [case_id, request_id, time.time(), model_version, bool(record["needs_review"]),
           routing.get("path") if isinstance(routing, dict) else None, None if source is None else str(source),
           text, *(coverage if coverage is not None else (None, None))]
    for target, e in record["targets"].items():
        row += (target, str(e["label"]), float(e["score"]), bool(e["needs_review"]))
    return tuple(row)


def _pending(item: Pending | tuple[Any, ...]) -> Pending:
    """What the thread writer takes, from what the service queued (``queued_decision``, or a ``Pending``)."""
    if isinstance(item, Pending):
        return item
    from live.log import Decision, TargetDecision

    labels = tuple(TargetDecision(item[i], item[i + 1], item[i + 2], item[i + 3]) for i in range(10, len(item), 4))
    decision = Decision(case_id=item[0], request_id=item[1], model_version=item[3], needs_review=item[4],
                        labels=labels, created_at=datetime.fromtimestamp(item[2], UTC), routing_path=item[5],
                        place_source=item[6])
    return Pending(decision, text=item[7], tokens=None if item[8] is None else (item[8], item[9]))


@dataclass
class _Counts:
    sent: int = 0
    written: int = 0
    lost: int = 0
    failed_writes: int = 0


class _Child:
    """One writer process, its stdin (frames of decisions) and a thread reading its reports."""

    def __init__(self, owner: DecisionWriterProcess) -> None:
        self.owner = owner
        self.counts = _Counts()
        self.flushed: dict[int, bool] = {}
        self.alive = True
        env = {**os.environ, CONFIG_ENV: json.dumps(asdict(owner.config)), "PYTHONPATH": os.pathsep.join(
            p for p in (str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH")) if p)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "live.writer_process"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True,
            start_new_session=True)  # a terminal's Ctrl-C or a signal to the service's group does not reach it
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._stdin = self.proc.stdin
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,),
                                        name="hotline-decision-log-reports", daemon=True)
        self._reader.start()

    def send(self, message: tuple[Any, ...]) -> None:
        _write_frame(self._stdin.fileno(), message)

    def broken(self, why: str) -> None:
        log.error(json.dumps({"event": "decision_log_writer_unreachable", "error": why}))
        self.alive = False
        self.proc.kill()  # its reader sees the end and counts what it had

    def _read(self, stdout: IO[bytes]) -> None:
        try:
            while True:
                report = _read_frame(stdout)
                if report is None:
                    break
                self.owner._reported(self, report)
        finally:
            self.alive = False
            try:
                code = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait()
            self.owner._ended(self, code)

    def finish(self, timeout_s: float) -> None:
        """Close its stdin (it flushes and exits), wait for its last report; kill it past the deadline."""
        try:
            self._stdin.close()
        except OSError:
            pass
        # the child's own close waits up to twice its timeout (its thread, then its flush)
        self._reader.join(timeout=2 * self.owner.config.close_timeout_s + timeout_s)
        if self._reader.is_alive():
            self.proc.kill()
            self._reader.join(timeout=10)


def _write_frame(fd: int, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_FRAME.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _read_frame(stream: IO[bytes]) -> Any:
    head = stream.read(_FRAME.size)
    if len(head) < _FRAME.size:
        return None
    (n,) = _FRAME.unpack(head)
    data = stream.read(n)
    if len(data) < n:
        return None
    return pickle.loads(data)


# -- the child ----------------------------------------------------------------------------------------------------
def main() -> int:
    """The writer process: its configuration in ``CONFIG_ENV``, decisions in on stdin, reports out on stdout,
    logs (JSON lines) on stderr."""
    from datetime import timedelta

    from classifier.errors import DecisionLogError
    from live.db import migrate
    from live.log import DecisionLog
    from live.writer import DecisionWriter

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # the service logs its own migrations at start
    config = WriterConfig(**json.loads(os.environ.pop(CONFIG_ENV)))
    if config.nice:
        os.nice(config.nice)
    out = sys.stdout.buffer.fileno()
    sys.stdout = sys.stderr  # nothing else may write into the report pipe
    out_lock = threading.Lock()
    last: list[tuple[Any, ...]] = []

    decision_log = DecisionLog(config.url, store_texts=config.store_texts, migrate_schema=False,
                               busy_timeout_s=config.busy_timeout_s)
    migrated = threading.Event()

    def ensure_schema() -> None:
        if not migrated.is_set():
            migrate(decision_log.engine)
            migrated.set()

    def report(**extra: Any) -> None:
        s = writer.stats
        counts = (s.written, s.lost, s.failed_writes, s.pending, s.degraded, s.last_error)
        if not extra and last and last[0] == counts:
            return  # nothing new: no frame every interval of an idle service
        with out_lock:
            last[:] = [counts]
            _write_frame(out, {"written": s.written, "lost": s.lost, "failed_writes": s.failed_writes,
                               "pending": s.pending, "degraded": s.degraded, "last_error": s.last_error, **extra})

    retention = timedelta(days=config.text_retention_days) if config.text_retention_days is not None else None
    writer = DecisionWriter(decision_log, batch_size=config.batch_size, interval_s=config.interval_s,
                            max_pending=config.max_pending, max_backoff_s=config.max_backoff_s,
                            drift_sample=config.drift_sample, text_retention=retention,
                            purge_every_s=config.purge_every_s, on_pending=lambda _n: report(),
                            before_write=ensure_schema)
    writer.start()
    stdin = sys.stdin.buffer
    try:
        while True:
            message = _read_frame(stdin)
            if message is None:
                break
            if message[0] == "decisions":
                writer.record([_pending(item) for item in message[1]])
                if not writer.stats.degraded:
                    writer.wake()  # write now: the service already waited out its interval
            elif message[0] == "flush":
                ok = writer.flush(message[2])
                report(flushed=message[1], ok=ok)
    finally:
        writer.close(config.close_timeout_s)
        report(final=True)
        try:
            decision_log.close()
        except DecisionLogError:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
