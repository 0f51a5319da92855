"""Writing decisions off the request path: a bounded buffer drained in batches by one background thread.

A request only appends to a list (``record``: no I/O, no lock held while the database works).  The thread
writes what is pending every ``interval_s`` (or as soon as ``batch_size`` are waiting) in one transaction.  When
the database is slow or down the records stay pending and the thread retries with a growing pause (up to
``max_backoff_s``); the log is *degraded* until a write succeeds.  Past ``max_pending`` records, the oldest
are given up and counted as lost: memory stays bounded and no record disappears without being counted.
``close`` flushes what is buffered (the service's shutdown) within a deadline, counting what it could not.
The service runs this writer inside a process of its own by default (``live.writer_process``: its Python work
then holds no interpreter lock a request waits for); ``HOTLINE_DECISION_LOG_WRITER=thread`` runs it in the worker.

The drift signal "share of the text's tokens the model never saw" is counted by the prediction itself, from its
own segmentation (``predict_details(coverage=...)``: no text is segmented twice, no tokenizer runs in this
thread); the thread keeps the counts of a sample of the decisions (``drift_sample``).  A raw text reaches the
thread only when the log stores texts (``DecisionLog.store_texts``), which it masks here and then forgets.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from classifier.errors import DecisionLogError
from classifier.text import mask_pii
from live.log import Decision, DecisionLog

# the thread gives the GIL up after this many decisions of Python work (masking, building rows):
# otherwise a request thread waiting for it can wait out the interpreter's whole switch interval (5 ms), which
# showed as +4 ms on the service's p99 with the log on (BENCHMARKS.md, issue 13)
YIELD_EVERY = 16

__all__ = ["DecisionWriter", "WriterStats", "Pending", "append_bounded"]

log = logging.getLogger("hotline.decisions")


@dataclass
class Pending:
    """A decision waiting to be written, with what the thread needs to finish it (then dropped)."""

    decision: Decision
    text: str | None = None  # raw, for the masked copy (when the log stores texts); never written as is
    tokens: tuple[int, int] | None = None  # (tokens, unseen tokens) from the prediction, for the drift sample


@dataclass
class WriterStats:
    written: int = 0
    lost: int = 0
    failed_writes: int = 0
    pending: int = 0
    degraded: bool = False
    last_error: str | None = None


class DecisionWriter:
    def __init__(self, decision_log: DecisionLog, *, batch_size: int = 500, interval_s: float = 0.2,
                 max_pending: int = 100_000, max_backoff_s: float = 5.0, drift_sample: float = 0.1,
                 text_retention: timedelta | None = None, purge_every_s: float = 3600.0,
                 on_written: Callable[[int], None] | None = None,
                 on_lost: Callable[[int], None] | None = None,
                 on_pending: Callable[[int], None] | None = None,
                 before_write: Callable[[], None] | None = None) -> None:
        self.log = decision_log
        self.batch_size = batch_size
        self.interval_s = interval_s
        self.max_pending = max_pending
        self.max_backoff_s = max_backoff_s
        self.drift_every = max(1, round(1 / drift_sample)) if drift_sample > 0 else 0
        self.text_retention = text_retention
        self.purge_every_s = purge_every_s
        self.on_written = on_written
        self.on_lost = on_lost
        self.on_pending = on_pending  # told how many wait after each write (a gauge: never on the request path)
        self.before_write = before_write  # e.g. migrate the schema once the database is back
        self.stats = WriterStats()
        self._pending: deque[Pending] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._seen = 0
        self._thread: threading.Thread | None = None
        self._last_purge = 0.0

    # -- the request side ---------------------------------------------------------------------------------
    def record(self, items: list[Pending]) -> None:
        """Queue decisions; never blocks on the database."""
        with self._lock:
            lost = append_bounded(self._pending, items, self.max_pending)
            self.stats.pending = len(self._pending)
            if lost:
                self.stats.lost += lost
        if lost:
            self._count_lost(lost, "buffer full")
        if len(self._pending) >= self.batch_size:
            self._wake.set()

    def wake(self) -> None:
        """Write what is pending now rather than at the end of the interval (``live.writer_process``: decisions
        reach the child after the service's own interval)."""
        self._wake.set()

    # -- the thread -----------------------------------------------------------------------------------------
    def start(self) -> DecisionWriter:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="hotline-decision-log", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        backoff = 0.0
        while not self._stop:
            self._wake.wait(self.interval_s if backoff == 0 else backoff)
            self._wake.clear()
            if self._stop:
                break
            ok = self._drain()
            backoff = 0.0 if ok else min(self.max_backoff_s, max(0.1, backoff * 2 or self.interval_s))
            if ok:
                self._maybe_purge()

    def _take(self) -> list[Pending]:
        with self._lock:
            n = min(self.batch_size, len(self._pending))
            return [self._pending.popleft() for _ in range(n)]

    def _give_back(self, batch: list[Pending]) -> None:
        with self._lock:
            self._pending.extendleft(reversed(batch))
            lost = 0
            while len(self._pending) > self.max_pending:
                self._pending.pop()  # the newest: the oldest are already in order to be written
                lost += 1
            self.stats.lost += lost
            self.stats.pending = len(self._pending)
        if lost:
            self._count_lost(lost, "buffer full while the database is unavailable")

    def _drain(self) -> bool:
        """Write everything pending; False when the database refused (the batch waits for the retry)."""
        try:
            return self._drain_batches()
        finally:
            if self.on_pending is not None:
                self.on_pending(self.stats.pending)

    def _drain_batches(self) -> bool:
        while True:
            batch = self._take()
            if not batch:
                return True
            for i, p in enumerate(batch):
                self._finish(p)
                if i % YIELD_EVERY == YIELD_EVERY - 1:
                    time.sleep(0)  # let a waiting request thread have the GIL (see YIELD_EVERY)
            try:
                if self.before_write is not None:
                    self.before_write()
                self.log.write_decisions([p.decision for p in batch])
            except DecisionLogError as exc:
                self._give_back(batch)
                with self._lock:
                    self.stats.failed_writes += 1
                    first = not self.stats.degraded
                    self.stats.degraded = True
                    self.stats.last_error = str(exc)
                if first:
                    log.error('{"event": "decision_log_degraded", "error": %s}', _json_str(str(exc)))
                return False
            except Exception as exc:  # a bug: never kill the thread; count the batch as lost
                with self._lock:
                    self.stats.lost += len(batch)
                self._count_lost(len(batch), f"{type(exc).__name__}: {exc}")
                continue
            with self._lock:
                self.stats.written += len(batch)
                self.stats.pending = len(self._pending)
                recovered = self.stats.degraded
                self.stats.degraded = False
                self.stats.last_error = None
            if recovered:
                log.warning('{"event": "decision_log_recovered"}')
            if self.on_written is not None:
                self.on_written(len(batch))

    def _finish(self, p: Pending) -> None:
        """Drift sample and masked text, then forget the raw text."""
        if p.tokens is not None:
            self._seen += 1
            if self.drift_every and self._seen % self.drift_every == 0:
                p.decision.n_tokens, p.decision.n_unseen = p.tokens
            p.tokens = None
        if p.text is not None:
            if self.log.store_texts and p.decision.text is None:
                p.decision.text = mask_pii(p.text)
            p.text = None

    def _maybe_purge(self) -> None:
        if self.text_retention is None or not self.log.store_texts:
            return
        now = time.monotonic()
        if now - self._last_purge < self.purge_every_s:
            return
        self._last_purge = now
        try:
            self.log.purge_texts(self.text_retention)
        except DecisionLogError as exc:
            log.error('{"event": "decision_log_purge_failed", "error": %s}', _json_str(str(exc)))

    def _count_lost(self, n: int, why: str) -> None:
        if self.on_lost is not None:
            self.on_lost(n)
        log.error('{"event": "decision_log_lost", "records": %d, "reason": %s}', n, _json_str(why))

    # -- stopping -------------------------------------------------------------------------------------------
    def flush(self, timeout_s: float = 10.0) -> bool:
        """Write what is pending now (in the caller's thread); True when nothing is left."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._drain():
                return True
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        return False

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the thread, then flush; what cannot be written by the deadline is counted as lost."""
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
        if not self.flush(timeout_s):
            with self._lock:
                n = len(self._pending)
                self._pending.clear()
                self.stats.lost += n
                self.stats.pending = 0
            if n:
                self._count_lost(n, "service stopped while the database was unavailable")


def append_bounded(queue: deque[Any], items: Iterable[Any], limit: int) -> int:
    """Append ``items`` to ``queue``, then give up its oldest beyond ``limit``; returns how many were given up
    (for the caller to count as lost)."""
    queue.extend(items)
    lost = 0
    while len(queue) > limit:
        queue.popleft()
        lost += 1
    return lost


def _json_str(s: str) -> str:
    import json

    return json.dumps(s, ensure_ascii=False)
