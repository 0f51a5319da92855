"""Two real worker processes (``HOTLINE_WORKERS=2``): a reload answers only once both serve the new version, and
a worker that dies is replaced by one serving the version the service switched to (issue 15, 2.1 and 2.2)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.conftest import TINY_CASES
from tests.serve_support import ADMIN_KEY, server_process, slow_to_load, tiny_classifier, tiny_store
from tests.test_serve_http import worker_pids
from training.train import save_model

TEXT = TINY_CASES[6][0]


@pytest.fixture(scope="module")
def service(tiny_model, tmp_path_factory) -> Any:
    """Two workers on v1; more versions in the store, not promoted."""
    store, v1 = tiny_store(tmp_path_factory.mktemp("workers-store"), tiny_model)
    # the first takes a second to load, as a real model does: long enough to see a worker that has not switched
    spare = [save_model(slow_to_load(tiny_classifier(seed=3), 1.0), store, promote=False)]
    spare += [save_model(tiny_classifier(seed=seed), store, promote=False) for seed in (5, 9)]
    log_path = tmp_path_factory.mktemp("workers-log") / "server.log"
    with server_process(store.path, log_path, workers=2, HOTLINE_ADMIN_API_KEY=ADMIN_KEY) as (url, proc):
        yield url, proc, store, v1, spare, log_path


def loaded_by(log_path: Any, pid: int) -> str | None:
    """The version a worker's app loaded when it started (its "model_loaded" log line), or None yet."""
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("{") and '"model_loaded"' in line:
            event = json.loads(line)
            if event.get("event") == "model_loaded" and event.get("pid") == pid:
                return str(event["version"])
    return None


def answered_by(url: str, n: int) -> list[str]:
    """The model version of ``n`` predictions sent 8 at a time, each on a new connection (either worker)."""
    def one(_: int) -> str:
        r = httpx.post(url + "/predict", json={"text": TEXT}, timeout=30)
        assert r.status_code == 200
        return str(r.json()["model_version"])

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


class Stream(threading.Thread):
    """Sends /predict back to back on new connections, recording (when sent, model version) of each answer."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.answers: list[tuple[float, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            sent = time.monotonic()
            r = httpx.post(self.url + "/predict", json={"text": TEXT}, timeout=30)
            self.answers.append((sent, str(r.json()["model_version"])))


def reload(url: str) -> httpx.Response:
    return httpx.post(url + "/admin/reload", headers={"x-api-key": ADMIN_KEY}, timeout=120)


def test_after_a_reload_answers_no_request_gets_the_old_version(service):
    url, proc, store, v1, spare, _ = service
    new = spare[0]
    store.promote(new)
    streams = [Stream(url) for _ in range(6)]
    for s in streams:
        s.start()
    time.sleep(0.5)
    r = reload(url)
    answered = time.monotonic()
    assert r.status_code == 200, r.text
    time.sleep(1.0)
    for s in streams:
        s.stop.set()
    for s in streams:
        s.join(timeout=30)
    after = [v for s in streams for sent, v in s.answers if sent > answered]
    assert len(after) >= 6 and after.count(new) == len(after), (
        f"{len(after) - after.count(new)} of {len(after)} requests sent after the reload's answer were answered "
        "by the old version")
    body = r.json()
    assert body["complete"] is True and body["version"] == new
    assert sorted(w["pid"] for w in body["workers"]) == sorted(worker_pids(proc.pid))
    assert {w["version"] for w in body["workers"]} == {new}
    ready = httpx.get(url + "/ready", timeout=10).json()
    assert {w["version"] for w in ready["workers"]} == {new} and len(ready["workers"]) == 2


def test_a_replacement_worker_serves_the_version_the_service_switched_to(service):
    url, proc, store, v1, spare, log_path = service
    new = spare[1]
    store.promote(new)
    assert reload(url).status_code == 200
    before = worker_pids(proc.pid)
    os.kill(before[0], signal.SIGKILL)
    deadline = time.monotonic() + 60
    replacement, version = None, None
    while version is None and time.monotonic() < deadline:
        time.sleep(0.1)
        replacement = next((pid for pid in worker_pids(proc.pid) if pid not in before), None)
        version = loaded_by(log_path, replacement) if replacement is not None else None
    assert version is not None, "the dead worker was not replaced"
    assert version == new, f"the replacement loaded {version}, not {new} (the service started with {v1})"
    time.sleep(0.5)  # its server starts listening
    assert answered_by(url, 32) == [new] * 32
    ready = httpx.get(url + "/ready", timeout=10).json()
    assert {w["pid"]: w["version"] for w in ready["workers"]} == {before[1]: new, replacement: new}
    assert "detail" not in ready

    # the operator's signal: the supervisor has one worker reload the store's current version, the other follows
    latest = spare[2]
    store.promote(latest)
    os.kill(proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready = httpx.get(url + "/ready", timeout=10).json()
        if {w["version"] for w in ready["workers"]} == {latest} and len(ready["workers"]) == 2:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"after SIGHUP the workers serve {ready['workers']}")
    assert answered_by(url, 16) == [latest] * 16
