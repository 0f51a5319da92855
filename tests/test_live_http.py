"""The live loop through real HTTP against real server processes: predictions with case ids, corrections,
``/quality`` and ``/metrics`` checked against a direct count; a restart keeps every answered correction; a
PostgreSQL outage in the middle of a load fails no prediction and loses no correction."""

from __future__ import annotations

import re
import threading
import time

import httpx
import pytest

from live.log import DecisionLog
from tests.conftest import TINY_CASES
from tests.postgres_support import PostgresCluster, system_url
from tests.serve_support import server_process, tiny_store


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def loop_through(url: str, prefix: str) -> tuple[int, int]:
    """Predict the tiny cases, correct the first eight (two of them to another category); (right, labeled)."""
    answers = {}
    with httpx.Client(base_url=url, timeout=30) as c:
        for i, (text, _, _) in enumerate(TINY_CASES):
            r = c.post("/predict", json={"text": text, "case_id": f"{prefix}-{i}"})
            assert r.status_code == 200
            answers[i] = r.json()["targets"]["category"]["label"]
        items, right = [], 0
        for i, (_, category, _) in enumerate(TINY_CASES[:8]):
            truth = "道路设施" if i in (0, 1) else category
            items.append({"case_id": f"{prefix}-{i}", "labels": {"category": truth}, "source": "dispatcher"})
            right += answers[i] == truth
        deadline = time.monotonic() + 30
        while True:  # the decisions are written off the request path: a correction may arrive first
            r = c.post("/feedback/batch", json={"items": items})
            assert r.status_code == 200
            if r.json()["failed"] == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert r.json()["stored"] + r.json()["unchanged"] == 8, r.json()
    return right, 8


def test_the_loop_over_http_and_a_restart_keeps_every_answered_correction(tiny_model, tmp_path):
    store, version = tiny_store(tmp_path / "store", tiny_model)
    log_url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    env = {"HOTLINE_DECISION_LOG_URL": log_url, "HOTLINE_QUALITY_REFRESH_SECONDS": "5"}
    with server_process(store.path, tmp_path / "server.log", **env) as (url, _):
        right, labeled = loop_through(url, "WO")
        q = httpx.get(url + "/quality", timeout=30).json()
        cat = q["windows"]["7d"]["versions"][version]["targets"]["category"]
        assert (cat["labeled"], cat["accuracy"]) == (labeled, pytest.approx(right / labeled))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the gauges follow within HOTLINE_QUALITY_REFRESH_SECONDS
            text = httpx.get(url + "/metrics", timeout=10).text
            if metric(text, 'hotline_live_labeled{scope="all",target="category",window="7d"}') == labeled:
                break
            time.sleep(0.5)
        assert metric(text, 'hotline_live_accuracy{scope="all",target="category",window="7d"}') == \
            pytest.approx(right / labeled)
    # stopped (SIGTERM flushes the buffer): every decision and every answered correction is in the file
    counts = DecisionLog(log_url).counts()
    assert (counts["decisions"], counts["corrections"]) == (len(TINY_CASES), 8)
    with server_process(store.path, tmp_path / "server2.log", **env) as (url, _):
        q = httpx.get(url + "/quality", timeout=30).json()
        assert q["windows"]["30d"]["versions"][version]["targets"]["category"]["labeled"] == 8


def test_postgres_log_round_trip():
    dlog = DecisionLog(system_url())
    from live.log import Correction, Decision, TargetDecision
    from live.quality import live_quality

    case = f"PG-{time.time_ns()}"
    dlog.write_decisions([Decision(case_id=case, request_id="r", model_version="pg-test", needs_review=False,
                                   labels=(TargetDecision("category", "交通秩序", 0.9, False),))])
    out = dlog.add_corrections([Correction(case, {"category": "道路设施"}, "audit")], {"category": {"交通秩序"}})
    assert out[0].status == "stored" and out[0].new_labels == ["category"]  # type: ignore[union-attr]
    again = dlog.add_corrections([Correction(case, {"category": "道路设施"}, "audit")], {"category": {"交通秩序"}})
    assert again[0].status == "unchanged"  # type: ignore[union-attr]
    cases = dlog.labeled_cases()
    assert cases.set_index("case_id").loc[case, "category"] == "道路设施"
    version = live_quality(dlog)["windows"]["7d"]["versions"]["pg-test"]["targets"]["category"]
    assert version["labeled"] >= 1 and version["new_label_share"] == 1.0


@pytest.fixture
def cluster():
    c = PostgresCluster()
    yield c
    c.destroy()


def test_a_postgres_outage_fails_no_prediction_and_loses_no_answered_correction(tiny_model, tmp_path, cluster):
    store, version = tiny_store(tmp_path / "store", tiny_model)
    env = {"HOTLINE_DECISION_LOG_URL": cluster.url, "HOTLINE_DECISION_LOG_TIMEOUT_SECONDS": "1"}
    statuses: list[int] = []
    stop = threading.Event()

    def load(url: str, worker: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as c:
            i = 0
            while not stop.is_set():
                text = TINY_CASES[i % len(TINY_CASES)][0]
                statuses.append(c.post("/predict", json={"text": text, "case_id": f"LOAD-{worker}-{i}"})
                                .status_code)
                i += 1

    with server_process(store.path, tmp_path / "server.log", **env) as (url, _):
        right, labeled = loop_through(url, "BEFORE")  # 8 corrections answered 200 before the outage
        threads = [threading.Thread(target=load, args=(url, w)) for w in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        cluster.stop()  # the database goes down in the middle of the load
        deadline = time.monotonic() + 30
        while httpx.get(url + "/ready", timeout=10).json()["decision_log"] != "degraded":
            assert time.monotonic() < deadline, "the log never said it was degraded"
            time.sleep(0.2)
        r = httpx.post(url + "/feedback", json={"case_id": "BEFORE-1", "labels": {"category": "交通秩序"},
                                                "source": "audit"}, timeout=30)
        assert r.status_code == 503 and "corrections cannot be stored now" in r.json()["detail"]
        time.sleep(1.0)
        cluster.start()
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join()
        sent = len(statuses)
        assert sent > 50 and set(statuses) == {200}  # no prediction failed
        deadline = time.monotonic() + 60
        while True:  # every decision is written or counted as lost
            text = httpx.get(url + "/metrics", timeout=10).text
            written, lost = metric(text, "hotline_decision_log_written_total"), metric(text,
                                                                                      "hotline_decision_log_lost_total")
            if written + lost >= sent + len(TINY_CASES) or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert written + lost == sent + len(TINY_CASES)
        assert httpx.get(url + "/ready", timeout=10).json()["decision_log"] == "ok"
    # the service stopped and the database restarted: the answered corrections are all there
    dlog = DecisionLog(cluster.url)
    cases = dlog.labeled_cases()
    assert sorted(cases["case_id"]) == sorted(f"BEFORE-{i}" for i in range(8))
    assert dlog.counts()["decisions"] == written
    with server_process(store.path, tmp_path / "server2.log", **env) as (url, _):
        q = httpx.get(url + "/quality", timeout=30).json()
        cat = q["windows"]["7d"]["versions"][version]["targets"]["category"]
        assert (cat["labeled"], cat["accuracy"]) == (labeled, pytest.approx(right / labeled))


def test_two_workers_share_one_sqlite_log(tiny_model, tmp_path):
    store, _ = tiny_store(tmp_path / "store", tiny_model)
    log_url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    with server_process(store.path, tmp_path / "server.log", workers=2, HOTLINE_DECISION_LOG_URL=log_url) as (url, _):
        with httpx.Client(base_url=url, timeout=30) as c:
            for i in range(40):
                assert c.post("/predict", json={"text": TINY_CASES[i % 12][0], "case_id": f"W-{i}"}).status_code == 200
    counts = DecisionLog(log_url).counts()
    assert counts["decisions"] == 40 and counts["predictions"] == 80
