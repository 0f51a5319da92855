"""Reload under load: clients stream requests while the model is reloaded three times, once refused."""

from __future__ import annotations

import threading
import time
from itertools import groupby

import httpx
import pytest
import uvicorn

from serve import ServiceSettings, create_app
from tests.conftest import TINY_CASES
from tests.serve_support import ADMIN_KEY, corrupt, free_port, tiny_classifier, tiny_store
from training.train import save_model


@pytest.fixture
def running(tiny_model, tmp_path):
    """An in-process uvicorn server (real HTTP over loopback) on a store with two good versions."""
    store, v1 = tiny_store(tmp_path / "store", tiny_model)
    v2 = save_model(tiny_classifier(seed=5), store, promote=False)
    app = create_app(ServiceSettings(model_store=store.path, admin_api_key=ADMIN_KEY))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "the server did not start"
    yield f"http://127.0.0.1:{port}", store, v1, v2
    server.should_exit = True
    thread.join(timeout=20)


class Stream(threading.Thread):
    """Sends /predict requests back to back, recording (status, model_version) of each answer."""

    def __init__(self, url: str, text: str) -> None:
        super().__init__(daemon=True)
        self.url, self.text = url, text
        self.answers: list[tuple[int, str | None]] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not self.stop.is_set():
                try:
                    r = http.post("/predict", json={"text": self.text})
                    self.answers.append((r.status_code, r.json().get("model_version")))
                except Exception as exc:  # a dropped connection is a failed request: record it
                    self.errors.append(f"{type(exc).__name__}: {exc}")

    def wait_for(self, n: int) -> None:
        target = len(self.answers) + n
        deadline = time.monotonic() + 30
        while len(self.answers) < target and time.monotonic() < deadline:
            time.sleep(0.01)


def test_reloads_under_load_never_fail_a_request(running):
    url, store, v1, v2 = running
    streams = [Stream(url, TINY_CASES[i][0]) for i in (0, 9)]
    for s in streams:
        s.start()
        s.wait_for(10)

    def reload() -> httpx.Response:
        return httpx.post(url + "/admin/reload", headers={"x-api-key": ADMIN_KEY}, timeout=60)

    store.promote(v2)
    first = reload()
    assert first.status_code == 200 and first.json()["version"] == v2
    for s in streams:
        s.wait_for(10)

    v3 = save_model(tiny_classifier(seed=9), store, promote=True)
    corrupt(store, v3)
    refused = reload()
    assert refused.status_code == 409
    assert refused.json()["version"] == v2 and "ModelIntegrityError" in refused.json()["detail"]
    for s in streams:
        s.wait_for(10)

    store.promote(v1)
    third = reload()
    assert third.status_code == 200
    assert {k: v for k, v in third.json().items() if k != "workers"} == {
        "reloaded": True, "version": v1, "previous_version": v2, "complete": True}
    for s in streams:
        s.wait_for(10)
        s.stop.set()
        s.join(timeout=30)

    for s in streams:
        assert s.errors == []
        assert {status for status, _ in s.answers} == {200}
        # every answer names the version that answered it, and versions change only at the two good reloads
        assert [version for version, _ in groupby(v for _, v in s.answers)] == [v1, v2, v1]
        assert v3 not in {v for _, v in s.answers}
        assert len(s.answers) >= 40
