"""Which model version each worker serves, and which one the service switched to, shared by the supervisor and
its forked workers.

A folder made by the supervisor holds one small JSON file per worker (named by its pid: the version it serves
and since when) and ``target``: the version the service switched to, written by the worker whose reload
succeeded.  Every file is replaced whole (written aside, then renamed), so a reader never sees half of one, and
no lock is held that a killed worker could leave locked.  The supervisor forgets a worker when it reaps it and
removes the folder when it stops.

- ``POST /admin/reload`` answers once every worker reports the new version (``wait_for``), or 202 with each
  worker's version when they have not switched within ``HOTLINE_RELOAD_TIMEOUT_SECONDS``.
- A replacement for a dead worker serves ``target``, not the version the service started with.
- ``GET /ready`` lists every worker's version.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["WorkerState", "WorkerVersions"]

_TARGET = "target"


@dataclass(frozen=True)
class WorkerState:
    pid: int
    version: str
    since: float  # Unix time it started serving this version


class WorkerVersions:
    """The shared record of the service's version (``target``) and each worker's."""

    def __init__(self, path: Path, workers: int) -> None:
        self.path = path
        self.workers = workers

    @classmethod
    def create(cls, workers: int) -> WorkerVersions:
        return cls(Path(tempfile.mkdtemp(prefix="hotline-workers-")), workers)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    # -- writing (each file whole, by rename) ---------------------------------------------------------------
    def _write(self, name: str, content: dict[str, object]) -> None:
        aside = self.path / f".{name}.{os.getpid()}.{time.monotonic_ns()}"
        aside.write_text(json.dumps(content), encoding="utf-8")
        os.replace(aside, self.path / name)

    def set_target(self, version: str) -> None:
        """The version the service switched to (a worker's reload succeeded)."""
        self._write(_TARGET, {"version": version})

    def report(self, version: str, pid: int | None = None) -> None:
        """This worker serves ``version`` from now on."""
        pid = os.getpid() if pid is None else pid
        self._write(str(pid), asdict(WorkerState(pid=pid, version=version, since=time.time())))

    def forget(self, pid: int) -> None:
        (self.path / str(pid)).unlink(missing_ok=True)

    # -- reading --------------------------------------------------------------------------------------------
    def target(self) -> str | None:
        content = self._read(_TARGET)
        return str(content["version"]) if content else None

    def states(self) -> list[WorkerState]:
        """The live workers' versions, by pid."""
        out = []
        for entry in sorted(self.path.iterdir()) if self.path.is_dir() else []:
            if not entry.name.isdigit() or not _alive(int(entry.name)):
                continue
            content = self._read(entry.name)
            if content:
                out.append(WorkerState(pid=int(entry.name), version=str(content["version"]),
                                       since=float(str(content["since"]))))
        return sorted(out, key=lambda s: s.pid)

    def wait_for(self, version: str, timeout: float, poll: float = 0.02) -> tuple[bool, list[WorkerState]]:
        """Wait until all ``workers`` serve ``version``: (whether they do, their states)."""
        deadline = time.monotonic() + timeout
        while True:
            states = self.states()
            if len(states) >= self.workers and all(s.version == version for s in states):
                return True, states
            if time.monotonic() >= deadline:
                return False, states
            time.sleep(poll)

    def _read(self, name: str) -> dict[str, object] | None:
        try:
            content = json.loads((self.path / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):  # gone (a worker reaped), or never written
            return None
        return content if isinstance(content, dict) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - another user's process under a reused pid
        return False
    return True
