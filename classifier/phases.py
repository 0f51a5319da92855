"""Where training spends its time and memory: named phases that a caller may record.

Training marks its phases (``with phase("vocabulary"): ...``); marking costs nothing unless a caller records
them with ``record_phases()``, which notes each phase's wall time and the peak resident memory of this process
and its worker processes while it ran (sampled every 50 ms from /proc; Linux).  The scaling benchmark
(``benchmarks/scale.py``) and ``hotline train --phases`` use it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

__all__ = ["phase", "record_phases", "PhaseLog", "tree_rss_bytes", "tree_cpu_seconds"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:
                out.extend(int(c) for c in fh.read().split())
        except (OSError, ValueError):
            continue
    return out


def tree_rss_bytes(pid: int | None = None) -> int:
    """Resident memory of a process and all its descendants (joblib's worker processes), in bytes."""
    pid = os.getpid() if pid is None else pid
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += _rss(p)
        stack.extend(_children(p))
    return total


def tree_cpu_seconds(pid: int | None = None) -> float:
    """CPU seconds (user + system) used so far by a process, its live descendants and the children it reaped."""
    pid = os.getpid() if pid is None else pid
    tick = os.sysconf("SC_CLK_TCK")
    total, stack = 0.0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
            # utime, stime, cutime, cstime (fields 14-17): the reaped children's too
            total += sum(int(x) for x in fields[11:15]) / tick
        except (OSError, IndexError, ValueError):
            pass
        stack.extend(_children(p))
    return total


@dataclass
class _Phase:
    name: str
    depth: int
    start: float
    cpu_start: float = 0.0
    end: float | None = None
    cpu: float | None = None
    peak: int = 0


@dataclass
class PhaseLog:
    """The phases recorded so far, in the order they started (a nested phase has a larger ``depth``)."""

    phases: list[_Phase] = field(default_factory=list)
    peak: int = 0
    _open: list[_Phase] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _sample(self) -> None:
        rss = tree_rss_bytes()
        with self._lock:
            self.peak = max(self.peak, rss)
            for p in self._open:
                p.peak = max(p.peak, rss)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per phase: name, depth, seconds, cpu_seconds and peak_gib (of this process and its
        workers: CPU time says what a phase costs whatever else the machine was doing)."""
        return [{"phase": p.name, "depth": p.depth, "seconds": round((p.end or time.perf_counter()) - p.start, 3),
                 "cpu_seconds": None if p.cpu is None else round(p.cpu, 2),
                 "peak_gib": round(p.peak / 2**30, 3)} for p in self.phases]


_LOG: ContextVar[PhaseLog | None] = ContextVar("hotline_phase_log", default=None)


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Mark a phase of training; recorded only inside ``record_phases()``."""
    log = _LOG.get()
    if log is None:
        yield
        return
    cpu = tree_cpu_seconds()
    with log._lock:
        p = _Phase(name, len(log._open), time.perf_counter(), cpu)
        log.phases.append(p)
        log._open.append(p)
    log._sample()
    try:
        yield
    finally:
        log._sample()
        cpu = tree_cpu_seconds()
        with log._lock:
            p.end = time.perf_counter()
            p.cpu = cpu - p.cpu_start
            log._open.remove(p)


@contextmanager
def record_phases(interval: float = 0.05) -> Iterator[PhaseLog]:
    """Record the phases marked inside this block (in this thread and the code it calls)."""
    log = PhaseLog()
    token = _LOG.set(log)
    stop = threading.Event()

    def sampler() -> None:
        while not stop.wait(interval):
            log._sample()

    thread = threading.Thread(target=sampler, name="phase-memory", daemon=True)
    thread.start()
    try:
        yield log
    finally:
        stop.set()
        thread.join()
        log._sample()
        _LOG.reset(token)
