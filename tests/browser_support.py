"""Headless Chromium (Debian's ``chromium``, driven by Playwright) for the tests that open a report page."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

# skipped where chromium is missing, except under CI (CI=true): there a missing browser fails the tests
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists() and shutil.which("chromium") is None and not os.environ.get("CI"),
    reason="Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)",
)


def executable() -> str:
    return str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium"))


@dataclass
class PageEvents:
    """What a page reported while a test used it: console errors and warnings, uncaught errors, requests."""

    problems: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


def watch(page: Any) -> PageEvents:
    events = PageEvents()
    page.on("console", lambda m: events.problems.append(f"{m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: events.problems.append(f"pageerror: {e}"))
    page.on("request", lambda r: events.requests.append(r.url))
    return events


@contextmanager
def chromium() -> Iterator[Any]:
    """A launched headless Chromium (Playwright's sync API), closed afterwards."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable(), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()
