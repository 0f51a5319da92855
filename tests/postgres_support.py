"""Real PostgreSQL servers for the tests.

``system_url()``: the server ``.ci/run`` starts (Debian's ``postgresql``), from ``HOTLINE_TEST_POSTGRES_URL``.
``PostgresCluster``: a throwaway cluster of the test's own (``initdb`` into a temporary folder, on a free port),
which a test may stop and start again to see the service through an outage.  Where neither is possible the test
skips with the reason, unless ``HOTLINE_REQUIRE_POSTGRES=1`` (CI) makes that a failure.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.serve_support import free_port


def _unavailable(reason: str) -> None:
    if os.environ.get("HOTLINE_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL is required here (HOTLINE_REQUIRE_POSTGRES=1) but {reason}")
    pytest.skip(f"no PostgreSQL: {reason} (.ci/run installs and starts one)")


def system_url() -> str:
    url = os.environ.get("HOTLINE_TEST_POSTGRES_URL")
    if not url:
        _unavailable("HOTLINE_TEST_POSTGRES_URL is not set")
    return str(url)


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class PostgresCluster:
    """A PostgreSQL cluster of this test's own; ``url`` points at its database ``hotline``."""

    def __init__(self) -> None:
        bin_dir = _bin_dir()
        if bin_dir is None:
            _unavailable("no initdb under /usr/lib/postgresql/*/bin (Debian's postgresql package)")
        self.bin = bin_dir
        self.root = os.geteuid() == 0
        if self.root:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                _unavailable("running as root and there is no 'postgres' user to run the server as")
        self.dir = Path(tempfile.mkdtemp(prefix="hotline-pg-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        if self.root:
            shutil.chown(self.dir, "postgres", "postgres")
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/hotline"
        self._run("initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--no-sync")
        self.start()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "hotline")

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self.root:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr or done.stdout}")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "server.log"), "-w", "-t", "60",
                  "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        try:
            self.stop()
        except RuntimeError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
