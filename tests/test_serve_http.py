"""The real server: ``python serve.py`` as a process on 127.0.0.1 and a free port, spoken to over HTTP."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import TINY_CASES
from tests.serve_support import ADMIN_KEY, REPO, server_process, tiny_classifier, tiny_store
from training.train import save_model

TEXT = TINY_CASES[6][0]  # 同心县的出租车拒载，还骂乘客 -> 公共交通 / 同心县交通运输局


@pytest.fixture(scope="module")
def store(tiny_model, tmp_path_factory):
    return tiny_store(tmp_path_factory.mktemp("http-store"), tiny_model)


def test_real_server_answers_over_http_and_logs_json(store, tmp_path):
    log_path = tmp_path / "server.log"
    with server_process(store[0].path, log_path) as (url, proc):
        with httpx.Client(base_url=url, timeout=10) as http:
            assert http.get("/health").json() == {"status": "ok"}
            r = http.post("/predict", json={"text": TEXT}, headers={"x-request-id": "http-1"})
            assert r.status_code == 200
            body = r.json()
            assert body["targets"]["category"]["label"] == "公共交通"
            assert body["targets"]["agency"]["label"] == "同心县交通运输局"
            assert body["model_version"] == store[1] and body["request_id"] == "http-1"
            batch = http.post("/predict/batch", json={"items": [{"id": "a", "text": TEXT}, {"id": "b", "text": ""}]})
            assert [res["id"] for res in batch.json()["results"]] == ["a", "b"]
            assert batch.json()["failed"] == 1
            bad = http.post("/predict", content=b'{"text": "\xff"}', headers={"content-type": "application/json"})
            assert bad.status_code == 400 and "not UTF-8" in bad.json()["detail"]
            bad = http.post("/predict", content=b"{", headers={"content-type": "application/json"})
            assert bad.status_code == 422 and "not valid JSON" in bad.json()["detail"]
            hinted = http.post("/predict", json={"text": TEXT, "place": "同心县"})  # the tiny model does not route
            assert hinted.status_code == 422 and "place hints need a routing model" in hinted.json()["detail"]
            metrics = http.get("/metrics")
            assert metrics.headers["content-type"].startswith("text/plain")
            assert 'hotline_requests_total{method="POST",route="/predict",status="200"} 1.0' in metrics.text
            assert http.get("/docs").status_code == 200
            assert "/predict/batch" in http.get("/openapi.json").json()["paths"]
            assert http.post("/admin/reload").status_code == 404  # no admin key configured
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught, as a shell expects
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in log_path.read_text(encoding="utf-8")
    lines = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("event") == "request"]
    predict = next(line for line in requests if line["request_id"] == "http-1")
    assert predict["status"] == 200 and predict["text_length"] == len(TEXT)
    assert predict["labels"] == {"category": "公共交通", "agency": "同心县交通运输局"}
    assert any(line.get("event") == "model_loaded" and line["version"] == store[1] for line in lines)
    assert TEXT not in log_path.read_text(encoding="utf-8")


def test_two_workers_all_reload_when_one_is_asked(tiny_model, tmp_path):
    store, v1 = tiny_store(tmp_path / "store", tiny_model)
    v2 = save_model(tiny_classifier(seed=3), store, promote=False)
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_99999.db").write_bytes(b"stale")  # a previous run's file: the supervisor clears it
    with server_process(store.path, tmp_path / "server.log", workers=2, HOTLINE_ADMIN_API_KEY=ADMIN_KEY,
                        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir)) as (url, proc):
        assert len(worker_pids(proc.pid)) == 2
        assert httpx.post(url + "/predict", json={"text": TEXT}).json()["model_version"] == v1
        store.promote(v2)
        r = httpx.post(url + "/admin/reload", headers={"x-api-key": ADMIN_KEY}, timeout=30)
        assert r.status_code == 200 and r.json()["version"] == v2
        # the other worker reloads on the supervisor's SIGHUP; new connections may land on either worker
        deadline = time.monotonic() + 30
        streak, sent = 0, 1
        while streak < 20 and time.monotonic() < deadline:
            version = httpx.post(url + "/predict", json={"text": TEXT}).json()["model_version"]
            streak, sent = (streak + 1 if version == v2 else 0), sent + 1
        assert streak == 20, "a worker still answers with the old version"
        # /metrics sums both workers: every /predict so far is counted, whichever worker answers the scrape
        text = httpx.get(url + "/metrics").text
        counted = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                      if line.startswith('hotline_requests_total{method="POST",route="/predict"'))
        assert counted == sent
        serving = [line for line in text.splitlines() if line.startswith("hotline_model_info{") and
                   line.endswith(" 1.0")]
        assert len(serving) == 2 and all(f'version="{v2}"' in line for line in serving)  # one sample per worker


def worker_pids(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_empty_store_without_demo_exits_with_how_to_train(tmp_path):
    env = {"HOTLINE_MODEL_STORE": str(tmp_path / "empty"), "HOTLINE_TRAIN_DEMO_IF_EMPTY": "false", "PATH": ""}
    proc = subprocess.run([sys.executable, str(REPO / "serve.py")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1
    assert "has no current model. Train one with `hotline train" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unsafe_settings_refuse_to_start(tmp_path):
    env = {"HOTLINE_MODEL_STORE": str(tmp_path), "HOTLINE_ADMIN_API_KEY": "short", "PATH": ""}
    proc = subprocess.run([sys.executable, str(REPO / "serve.py")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1
    assert "refusing to start with these settings" in proc.stderr
    assert "HOTLINE_ADMIN_API_KEY is 5 characters; use at least 16" in proc.stderr
