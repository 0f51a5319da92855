"""Decisions, corrections and live quality through the service (TestClient; real HTTP in test_live_http.py)."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from live.log import DecisionLog
from live.schema import decisions, predictions
from serve import ServiceSettings, create_app
from tests.conftest import TINY_CASES
from tests.serve_support import tiny_store

TRAFFIC, ROAD = TINY_CASES[0][0], TINY_CASES[3][0]
API_KEY = "client-key-for-tests-0123456789"


@pytest.fixture(scope="module")
def store(tiny_model, tmp_path_factory):
    return tiny_store(tmp_path_factory.mktemp("feedback-store"), tiny_model)


def make_app(store, log_path: Path, **settings):
    config = ServiceSettings(model_store=store[0].path, decision_log_url=f"sqlite:///{log_path}", **settings)
    return create_app(config)


def test_every_prediction_is_recorded_with_its_case_id(store, tmp_path):
    log_path = tmp_path / "log.sqlite"
    with TestClient(make_app(store, log_path)) as c:
        one = c.post("/predict", json={"text": TRAFFIC, "case_id": "WO-1"})
        anon = c.post("/predict", json={"text": ROAD})
        batch = c.post("/predict/batch", json={"items": [{"id": "a", "text": TRAFFIC, "case_id": "WO-2"},
                                                         {"id": "b", "text": ROAD}, {"id": "c", "text": " "}]})
        assert one.status_code == anon.status_code == batch.status_code == 200
    # leaving the client stops the service, which flushes the log
    dlog = DecisionLog(f"sqlite:///{log_path}")
    with dlog.engine.connect() as conn:
        rows = conn.execute(select(decisions.c.case_id, decisions.c.request_id, decisions.c.model_version,
                                   decisions.c.text).order_by(decisions.c.created_at)).all()
        labels = conn.execute(select(predictions.c.case_id, predictions.c.target, predictions.c.label,
                                     predictions.c.score)).all()
    batch_rid = batch.json()["request_id"]
    assert [r[0] for r in rows] == ["WO-1", anon.json()["request_id"], "WO-2", f"{batch_rid}:b"]
    assert {r[2] for r in rows} == {store[1]} and {r[3] for r in rows} == {None}  # no text without the setting
    agency = one.json()["targets"]["agency"]
    assert ("WO-1", "agency", agency["label"], agency["score"]) in labels
    assert len(labels) == 8  # 4 decisions x 2 targets; the empty item is not a decision


def test_corrections_round_trip(store, tmp_path):
    with TestClient(make_app(store, tmp_path / "log.sqlite")) as c:
        c.post("/predict", json={"text": TRAFFIC, "case_id": "WO-1"})
        c.app.state.recorder.writer.flush()
        body = {"case_id": "WO-1", "labels": {"agency": "大武口区住建局"}, "source": "dispatcher"}
        r = c.post("/feedback", json=body)
        assert r.status_code == 200
        assert r.json() == {"case_id": "WO-1", "status": "stored", "targets": {"agency": "stored"},
                            "new_labels": [], "case_seen": True}
        assert c.post("/feedback", json=body).json()["status"] == "unchanged"
        new = c.post("/feedback", json={**body, "labels": {"agency": "新区交通运输局"}})
        assert new.json()["status"] == "replaced" and new.json()["new_labels"] == ["agency"]
        unseen = c.post("/feedback", json={"case_id": "PHONE-9", "labels": {"category": "交通秩序"},
                                           "source": "audit", "text": "路口红绿灯坏了"})
        assert unseen.status_code == 200 and unseen.json()["case_seen"] is False
        r = c.post("/feedback", json={"case_id": "NEVER", "labels": {"agency": "大武口区住建局"},
                                      "source": "dispatcher"})
        assert r.status_code == 404 and "never predicted by the service" in r.json()["detail"]
        batch = c.post("/feedback/batch", json={"items": [
            {"case_id": "WO-1", "labels": {"category": "交通秩序"}, "source": "audit"},
            {"case_id": "NEVER", "labels": {"category": "交通秩序"}, "source": "audit"},
            {"case_id": "WO-1", "labels": {"severity": "high"}, "source": "audit"}]}).json()
        assert (batch["stored"], batch["failed"]) == (1, 2)
        assert batch["results"][1]["error"]["type"] == "unknown_case"
        assert "unknown targets ['severity']" in batch["results"][2]["error"]["message"]
        metrics = c.get("/metrics").text
        assert 'hotline_corrections_total{source="dispatcher",status="replaced"} 1.0' in metrics
        assert 'hotline_correction_new_labels_total{target="agency"} 1.0' in metrics


@pytest.mark.parametrize(("body", "message"), [
    ({"case_id": "WO-1", "labels": {"severity": "high"}, "source": "audit"}, "unknown targets ['severity']"),
    ({"case_id": "WO-1", "labels": {"agency": 12}, "source": "audit"}, "labels.agency: Input should be a valid "
                                                                       "string"),
    ({"case_id": "W" * 201, "labels": {"agency": "x"}, "source": "audit"}, "case_id: String should have at most "
                                                                            "200 characters"),
    ({"case_id": "WO-1", "labels": {}, "source": "audit"}, "labels: Dictionary should have at least 1 item"),
    ({"case_id": "WO-1", "labels": {"agency": "x"}, "source": "hotline"}, "source: Input should be 'dispatcher'"),
    ({"case_id": "WO-1", "labels": {"agency": "x"}, "source": "audit", "time": "2020-01-01T00:00:00+08:00"},
     "before the prediction it corrects"),
    ({"case_id": "WO-1", "labels": {"agency": "x"}, "source": "audit", "time": "2026-01-01T00:00:00"},
     "time: Input should have timezone info"),
    ({"case_id": "WO\n1", "labels": {"agency": "x"}, "source": "audit"}, "case_id: String should match pattern"),
])
def test_bad_corrections_are_clear_422s(store, tmp_path, body, message):
    with TestClient(make_app(store, tmp_path / "log.sqlite")) as c:
        c.post("/predict", json={"text": TRAFFIC, "case_id": "WO-1"})
        c.app.state.recorder.writer.flush()
        r = c.post("/feedback", json=body)
        assert r.status_code == 422 and message in r.json()["detail"]


def test_a_batch_over_10000_corrections_is_refused(store, tmp_path):
    item = {"case_id": "WO-1", "labels": {"agency": "x"}, "source": "audit"}
    with TestClient(make_app(store, tmp_path / "log.sqlite")) as c:
        r = c.post("/feedback/batch", json={"items": [item] * 10_001})
        assert r.status_code == 422 and "items: List should have at most 10000 items" in r.json()["detail"]


def test_feedback_needs_the_client_key_when_one_is_set(store, tmp_path):
    with TestClient(make_app(store, tmp_path / "log.sqlite", api_key=API_KEY)) as c:
        body = {"case_id": "X", "labels": {"agency": "x"}, "source": "audit", "text": "路灯坏了"}
        assert c.post("/feedback", json=body).status_code == 401
        assert c.get("/quality").status_code == 401
        assert c.post("/feedback", json=body, headers={"x-api-key": API_KEY}).status_code == 200


def test_quality_and_its_gauges_equal_a_direct_count(store, tmp_path):
    with TestClient(make_app(store, tmp_path / "log.sqlite", thresholds={"agency": 0.0})) as c:
        answers = {}
        for i, (text, _, _) in enumerate(TINY_CASES):
            answers[f"WO-{i}"] = c.post("/predict", json={"text": text, "case_id": f"WO-{i}"}).json()
        c.app.state.recorder.writer.flush()
        # the truth: the tiny cases' own labels for the first 8 cases, a wrong category for two of them
        items, right = [], 0
        for i, (_, category, _) in enumerate(TINY_CASES[:8]):
            truth = "道路设施" if i in (0, 1) else category
            items.append({"case_id": f"WO-{i}", "labels": {"category": truth}, "source": "dispatcher"})
            right += answers[f"WO-{i}"]["targets"]["category"]["label"] == truth
        assert c.post("/feedback/batch", json={"items": items}).json()["stored"] == 8
        q = c.get("/quality").json()
        assert q["serving_version"] == store[1]
        week = q["windows"]["7d"]["versions"][store[1]]
        assert week["decisions"] == len(TINY_CASES)
        cat = week["targets"]["category"]
        assert (cat["predictions"], cat["labeled"]) == (len(TINY_CASES), 8)
        assert cat["accuracy"] == pytest.approx(right / 8)
        reviews = sum(a["targets"]["category"]["needs_review"] for a in answers.values())
        assert cat["review_rate"] == pytest.approx(reviews / len(TINY_CASES))
        assert cat["label_psi"] is not None  # against the version's training mix
        c.app.state.quality_refresher.refresh()
        metrics = c.get("/metrics").text
        assert (f'hotline_live_accuracy{{scope="all",target="category",window="7d"}} {right / 8}' in metrics)
        assert 'hotline_live_labeled{scope="all",target="category",window="30d"} 8.0' in metrics


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_a_locked_database_degrades_the_log_but_never_a_prediction(store, tmp_path, writer):
    path = tmp_path / "log.sqlite"
    with TestClient(make_app(store, path, decision_log_timeout_seconds=0.3, decision_log_interval_seconds=0.05,
                             decision_log_writer=writer)) as c:
        recorder = c.app.state.recorder
        expected = {"process": "DecisionWriterProcess", "thread": "DecisionWriter"}[writer]
        assert type(recorder.writer).__name__ == expected
        blocker = sqlite3.connect(path, timeout=1)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            codes = [c.post("/predict", json={"text": TRAFFIC, "case_id": f"L-{i}"}).status_code for i in range(20)]
            assert codes == [200] * 20
            deadline = time.monotonic() + 30
            while recorder.status()[0] != "degraded" and time.monotonic() < deadline:
                time.sleep(0.05)
            ready = c.get("/ready").json()
            assert ready["ready"] is True and ready["decision_log"] == "degraded"
            assert "decisions wait in memory" in ready["detail"]
            r = c.post("/feedback", json={"case_id": "L-1", "labels": {"agency": "x"}, "source": "audit",
                                          "text": "路灯坏了"})
            assert r.status_code == 503 and r.headers["retry-after"] == "5"
            assert "hotline_decision_log_degraded 1.0" in c.get("/metrics").text
        finally:
            blocker.rollback()
            blocker.close()
        deadline = time.monotonic() + 30
        while recorder.writer.stats.written < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.get("/ready").json()["decision_log"] == "ok"
        assert "hotline_decision_log_lost_total 0.0" in c.get("/metrics").text
    assert DecisionLog(f"sqlite:///{path}").counts()["decisions"] == 20


def test_without_the_log_there_are_no_feedback_routes(store, tmp_path):
    with TestClient(make_app(store, tmp_path / "log.sqlite", decision_log=False)) as c:
        assert c.post("/predict", json={"text": TRAFFIC}).status_code == 200
        assert c.post("/feedback", json={}).status_code == 404
        assert c.get("/ready").json()["decision_log"] == "off"
    assert not (tmp_path / "log.sqlite").exists()


def test_the_default_log_is_a_sqlite_file_in_the_store(store, monkeypatch, tmp_path):
    monkeypatch.delenv("HOTLINE_DECISION_LOG_URL")
    settings = ServiceSettings(model_store=store[0].path)
    assert settings.decision_log_address() == f"sqlite:///{Path(store[0].path).resolve() / 'decisions.sqlite'}"
    assert store[0].versions() == [store[1]]  # the log file is never taken for a model version


def test_stored_texts_are_masked_and_purged_after_their_retention(store, tmp_path):
    path = tmp_path / "log.sqlite"
    with TestClient(make_app(store, path, decision_log_texts=True, decision_log_text_retention_days=1)) as c:
        c.post("/predict", json={"text": TRAFFIC + "，电话13912345678", "case_id": "WO-1"})
    dlog = DecisionLog(f"sqlite:///{path}")
    with dlog.engine.connect() as conn:
        (text,) = conn.execute(select(decisions.c.text)).one()
    assert "<PHONE>" in text and "13912345678" not in text
    assert dlog.purge_texts(timedelta(days=1), now=datetime.now(UTC) + timedelta(days=2)) == 1


def test_the_drift_sample_stores_the_predictions_own_token_counts(store, tmp_path, tiny_model):
    from live.drift import token_coverage

    odd = "量子计算机的超导芯片散热"
    log_path = tmp_path / "log.sqlite"
    with TestClient(make_app(store, log_path, decision_log_drift_sample=1.0)) as c:
        assert c.post("/predict", json={"text": odd, "case_id": "D-1"}).status_code == 200
        batch = c.post("/predict/batch", json={"items": [{"id": "a", "text": TRAFFIC, "case_id": "D-2"},
                                                         {"id": "b", "text": " "},
                                                         {"id": "c", "text": ROAD, "case_id": "D-3"}]})
        assert batch.status_code == 200 and batch.json()["failed"] == 1
    with DecisionLog(f"sqlite:///{log_path}").engine.connect() as conn:
        got = {case: (n, unseen) for case, n, unseen in conn.execute(
            select(decisions.c.case_id, decisions.c.n_tokens, decisions.c.n_unseen))}
    assert got == {"D-1": token_coverage(tiny_model, odd), "D-2": token_coverage(tiny_model, TRAFFIC),
                   "D-3": token_coverage(tiny_model, ROAD)}
    assert got["D-1"] == (6, 5)
    # a sample of 0: nothing counted, nothing stored
    off_path = tmp_path / "off.sqlite"
    with TestClient(make_app(store, off_path, decision_log_drift_sample=0.0)) as c:
        assert c.app.state.recorder.counts_drift is False
        assert c.post("/predict", json={"text": odd, "case_id": "D-4"}).status_code == 200
    with DecisionLog(f"sqlite:///{off_path}").engine.connect() as conn:
        assert conn.execute(select(decisions.c.n_tokens, decisions.c.n_unseen)).all() == [(None, None)]


def test_the_write_interval_setting_reaches_the_writer_and_bad_values_are_refused(store, tmp_path, monkeypatch):
    from pydantic import ValidationError

    with TestClient(make_app(store, tmp_path / "log.sqlite", decision_log_interval_seconds=0.5)) as c:
        assert c.app.state.recorder.writer.interval_s == 0.5
    monkeypatch.setenv("HOTLINE_DECISION_LOG_INTERVAL_SECONDS", "0.75")
    assert ServiceSettings().decision_log_interval_seconds == 0.75
    assert ServiceSettings.model_fields["decision_log_interval_seconds"].default == 0.2
    for bad in (0, -1, 11):
        with pytest.raises(ValidationError, match="decision_log_interval_seconds"):
            ServiceSettings(decision_log_interval_seconds=bad)


def test_the_writer_setting_defaults_to_a_child_process_and_refuses_other_values(monkeypatch):
    from pydantic import ValidationError

    assert ServiceSettings.model_fields["decision_log_writer"].default == "process"
    monkeypatch.setenv("HOTLINE_DECISION_LOG_WRITER", "thread")
    assert ServiceSettings().decision_log_writer == "thread"
    with pytest.raises(ValidationError, match="decision_log_writer"):
        ServiceSettings(decision_log_writer="fork")
