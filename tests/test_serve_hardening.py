"""Service hardening through TestClient and in-process start-up: keys, /metrics, settings refusals, blank texts,
junk place hints, bodies sent in chunks, and a reload that waits for every worker (issue 15, section 2)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

import service.runner
from classifier.errors import EmptyTextError
from classifier.store import ModelStore
from classifier.text import is_blank
from serve import ServiceSettings, create_app, load_model
from service.hints import PLACE_HINT_IGNORED
from service.worker_versions import WorkerVersions
from tests.conftest import TINY_CASES
from tests.serve_support import ADMIN_KEY, tiny_classifier, tiny_store
from training.data import validate
from training.train import save_model

TRAFFIC = TINY_CASES[0][0]
CLIENT_KEY = "client-key-0123456789"
METRICS_KEY = "metrics-key-9f8e7d6c5b"


@pytest.fixture(scope="module")
def store(tiny_model, tmp_path_factory) -> ModelStore:
    return tiny_store(tmp_path_factory.mktemp("hardening-store"), tiny_model)[0]


def client(store: ModelStore, **settings: Any) -> TestClient:
    return TestClient(create_app(ServiceSettings(model_store=store.path, **settings)))


# -- 2.5 /metrics: protected, and no label of a single complaint ----------------------------------------------
def test_metrics_need_the_api_key_and_name_no_labels(store):
    with client(store, api_key=CLIENT_KEY) as c:
        assert c.post("/predict", json={"text": TRAFFIC}, headers={"x-api-key": CLIENT_KEY}).status_code == 200
        refused = c.get("/metrics")
        assert refused.status_code == 401
        assert refused.json()["detail"] == ("missing or wrong API key: send it in the X-API-Key header or as "
                                            "Authorization: Bearer")
        assert c.get("/metrics", headers={"x-api-key": "wrong-key-0123456789"}).status_code == 401
        text = c.get("/metrics", headers={"x-api-key": CLIENT_KEY}).text
        assert c.get("/metrics", headers={"authorization": f"Bearer {CLIENT_KEY}"}).status_code == 200
        assert "401" in c.get("/openapi.json").json()["paths"]["/metrics"]["get"]["responses"]
    assert 'hotline_predictions_total{target="agency"} 1.0' in text.splitlines()
    assert "交通秩序" not in text and "兴庆区交警一大队" not in text  # the one complaint's labels


def test_a_metrics_key_is_the_only_key_for_metrics(store):
    with client(store, api_key=CLIENT_KEY, metrics_api_key=METRICS_KEY) as c:
        assert c.get("/metrics", headers={"x-api-key": CLIENT_KEY}).status_code == 401
        assert c.get("/metrics", headers={"authorization": f"Bearer {METRICS_KEY}"}).status_code == 200
        assert c.get("/metrics", headers={"x-api-key": METRICS_KEY}).status_code == 200
        assert c.post("/predict", json={"text": TRAFFIC}, headers={"x-api-key": METRICS_KEY}).status_code == 401
    with client(store, metrics_api_key=METRICS_KEY) as c:  # no client key: predictions open, metrics not
        assert c.post("/predict", json={"text": TRAFFIC}).status_code == 200
        assert c.get("/metrics").status_code == 401
    with client(store) as c:  # no key at all (loopback): open, as before
        assert c.get("/metrics").status_code == 200


# -- 2.6 malformed JSON settings: a clear refusal --------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("HOTLINE_THRESHOLDS", "{agency", r"HOTLINE_THRESHOLDS is not valid JSON \(Expecting property name enclosed "
         r"in double quotes at character 1\); expected an object such as \{\"agency\": 0.3\}"),
        ("HOTLINE_THRESHOLDS", "[0.3]", r"HOTLINE_THRESHOLDS is an array; expected an object"),
        ("HOTLINE_QUALITY_WINDOWS", "[7,", r"HOTLINE_QUALITY_WINDOWS is not valid JSON \(Expecting value at character "
         r"3\); expected an array of days such as \[7, 30\]"),
        ("HOTLINE_QUALITY_WINDOWS", "7", r"HOTLINE_QUALITY_WINDOWS is a number; expected an array"),
    ],
)
def test_malformed_json_settings_refuse_to_start_without_a_traceback(monkeypatch, tmp_path, name, value, message):
    monkeypatch.setenv("HOTLINE_MODEL_STORE", str(tmp_path))
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit, match=r"error: refusing to start with these settings:\n  .*" + message):
        service.runner.main([])


def test_json_settings_still_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("HOTLINE_THRESHOLDS", '{"agency": 0.3}')
    monkeypatch.setenv("HOTLINE_QUALITY_WINDOWS", "[30, 7]")
    s = ServiceSettings()
    assert (s.thresholds, s.quality_windows) == ({"agency": 0.3}, [7, 30])


# -- 2.7 no key on a reachable host, weak keys -------------------------------------------------------------------
def test_a_reachable_host_without_an_api_key_is_refused_unless_allowed(monkeypatch, tmp_path):
    monkeypatch.setenv("HOTLINE_MODEL_STORE", str(tmp_path))
    with pytest.raises(SystemExit, match=r"HOTLINE_HOST='0.0.0.0' is reachable from other machines and "
                       r"HOTLINE_API_KEY is not set.*HOTLINE_ALLOW_UNAUTHENTICATED=true"):
        service.runner.main(["--host", "0.0.0.0"])
    with pytest.raises(ValidationError, match="HOTLINE_HOST='hotline.internal' is reachable"):
        ServiceSettings(host="hotline.internal", admin_api_key=ADMIN_KEY)  # the admin key protects no predictions
    allowed = ServiceSettings(host="0.0.0.0", allow_unauthenticated=True)
    assert allowed.security_warnings()[0].startswith("UNAUTHENTICATED: listening on '0.0.0.0' without "
                                                     "HOTLINE_API_KEY")
    assert ServiceSettings(host="0.0.0.0", api_key=CLIENT_KEY).security_warnings() == []
    assert ServiceSettings(host="::1").security_warnings() == []


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("a" * 16, "has only 1 different character(s) in 16; use at least 6"),
        ("abababababababababab", "has only 2 different character(s) in 20"),
        ("0123456789abcdefghij", "is mostly repeated or consecutive characters (18 of 19 neighbours"),
        ("changeme-Xq81-pz0_Lk", "contains the placeholder 'changeme'"),
        ("short", "is 5 characters; use at least 16"),
    ],
)
def test_weak_keys_are_refused_without_repeating_them(key, message):
    for name in ("api_key", "admin_api_key", "metrics_api_key"):
        with pytest.raises(ValidationError, match=re.escape(f"HOTLINE_{name.upper()} {message}")) as err:
            ServiceSettings(**{name: key})
        assert key not in str(err.value)


def test_random_keys_are_accepted():
    import secrets

    for _ in range(200):
        ServiceSettings(api_key=secrets.token_urlsafe(32), admin_api_key=secrets.token_hex(16))


# -- 2.8 blank texts: zero-width, NUL and markup only are empty, in the service, the library and training --------
BLANKS = ["\u200b\u200b", "\x00\x00\x00", "\ufeff \u200d\t", " <br><br> ", "_x000D_\u200c"]


@pytest.mark.parametrize("text", BLANKS)
def test_invisible_only_texts_get_the_same_422_as_whitespace(store, text):
    with client(store) as c:
        whitespace = c.post("/predict", json={"text": "   "})
        r = c.post("/predict", json={"text": text})
        batch = c.post("/predict/batch", json={"items": [{"id": "x", "text": text}, {"id": "ok", "text": TRAFFIC}]})
    assert r.status_code == whitespace.status_code == 422
    assert r.json()["detail"] == whitespace.json()["detail"] == (
        "text is empty or whitespace only (invisible and control characters count as whitespace); send the "
        "complaint's text")
    assert batch.json()["results"][0]["error"]["type"] == "empty_text"
    assert batch.json()["results"][1]["prediction"]["targets"]["category"]["label"] == "交通秩序"


def test_blank_is_defined_once_for_library_and_training(tiny_model):
    assert all(is_blank(t) for t in BLANKS) and not any(is_blank(t) for t in ("a", "\u200b路灯", "<b>路灯</b>", "0"))
    with pytest.raises(EmptyTextError, match=r"text #1 is empty or whitespace only \(invisible and control"):
        tiny_model.predict_details(["路灯不亮", "\u200b\x00"])
    df = pd.DataFrame({"text": [t for t, _, _ in TINY_CASES] + ["\u200b\u200b", "\x00"],
                       "category": [c for _, c, _ in TINY_CASES] + ["交通秩序"] * 2})
    clean, report = validate(df, "text", {"category": "category"}, min_class_count=1)
    assert report.dropped["empty text"] == 2
    assert report.dropped_rows["empty text"] == [len(TINY_CASES) + 2, len(TINY_CASES) + 3]  # spreadsheet rows
    assert len(clean) == len(TINY_CASES)


def test_a_correction_with_an_invisible_only_text_is_refused(store):
    with client(store) as c:
        r = c.post("/feedback", json={"case_id": "WO-blank", "labels": {"category": "交通秩序"},
                                      "source": "dispatcher", "text": "\u200b\x00"})
    assert r.status_code == 422
    assert "not only whitespace or invisible characters" in r.json()["detail"]


# -- 2.8 a place hint the directory does not know is reported, not silently ignored ------------------------------
def test_a_junk_place_hint_is_reported_in_the_response(demo_store):
    with client(demo_store) as c:
        unnamed = c.post("/predict", json={"text": "路灯坏了一个月没人修", "place": "asdf 123"}).json()
        named = c.post("/predict", json={"text": "兴庆区路灯坏了", "place": "不知道"}).json()
        good = c.post("/predict", json={"text": "路灯坏了一个月没人修", "place": "海原县"}).json()
        city = c.post("/predict", json={"text": "路灯坏了一个月没人修", "place": "银川市"}).json()
        none = c.post("/predict", json={"text": "路灯坏了一个月没人修"}).json()
        batch = c.post("/predict/batch", json={"items": [{"id": "a", "text": "路灯坏了", "place": "asdf"},
                                                         {"id": "b", "text": "路灯坏了", "place": "海原县"}]}).json()
        schema = c.get("/openapi.json").json()["components"]["schemas"]
    for body in (unnamed, named):
        assert [w["type"] for w in body["warnings"]] == [PLACE_HINT_IGNORED]
        assert "names no county, town or city of the model's routing directory" in body["warnings"][0]["message"]
        assert body["routing"]["place"]["source"] != "hint"
    assert unnamed["needs_review"] is True  # the place was only guessed
    assert named["routing"]["place"]["name"] == "兴庆区"  # the text decides, as without a hint
    for body in (good, city, none):
        assert "warnings" not in body
    assert good["routing"]["place"]["source"] == "hint"
    assert batch["results"][0]["prediction"]["warnings"][0]["type"] == PLACE_HINT_IGNORED
    assert "warnings" not in batch["results"][1]["prediction"]
    assert "warnings" in schema["Prediction"]["properties"]
    assert schema["PredictionWarning"]["properties"]["type"]["const"] == PLACE_HINT_IGNORED


# -- 2.3 a chunked body over the limit, in process (the real server: test_serve_limits.py) -----------------------
def test_a_chunked_body_over_the_limit_is_413(store):
    def body() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield b'{"text": "'
        for _ in range(64):
            yield b"a" * 1024
        yield b'"}'

    with client(store, max_request_bytes=4096) as c:
        r = c.post("/predict", content=body(), headers={"content-type": "application/json"})
        small = c.post("/predict", content=iter([b'{"text": "', TRAFFIC.encode(), b'"}']),
                       headers={"content-type": "application/json"})
    assert r.status_code == 413
    # TestClient hands the app the whole body at once; the real server's chunks: test_serve_limits.py
    assert r.json()["detail"] == ("request body is 65,548 bytes; the limit is 4,096 (HOTLINE_MAX_REQUEST_BYTES); "
                                  "split the batch")
    assert small.status_code == 200 and small.json()["targets"]["category"]["label"] == "交通秩序"


# -- 2.2 a reload answers once every worker has switched, or says it is in progress ------------------------------
def test_a_reload_waits_for_the_other_workers_and_says_when_they_lag(tiny_model, tmp_path):
    store, v1 = tiny_store(tmp_path / "store", tiny_model)
    v2 = save_model(tiny_classifier(seed=11), store, promote=False)
    versions = WorkerVersions(tmp_path / "workers", workers=2)
    versions.path.mkdir()
    sibling = os.getppid()  # a live process standing in for the other worker, still on v1
    versions.report(v1, pid=sibling)
    settings = ServiceSettings(model_store=store.path, admin_api_key=ADMIN_KEY, reload_timeout_seconds=0.3)
    app = create_app(settings, load_model(settings), versions=versions)
    with TestClient(app) as c:
        store.promote(v2)
        lagging = c.post("/admin/reload", headers={"x-api-key": ADMIN_KEY})
        assert lagging.status_code == 202
        body = lagging.json()
        assert (body["reloaded"], body["complete"], body["version"]) == (True, False, v2)
        assert {w["pid"]: w["version"] for w in body["workers"]} == {os.getpid(): v2, sibling: v1}
        assert body["detail"].startswith(f"switch in progress: 1 of 2 workers serve {v2} after 0.3 s")
        assert versions.target() == v2
        ready = c.get("/ready").json()
        assert ready["ready"] is True and ready["detail"] == f"switching to {v2}: 1 of 2 workers serve it"
        versions.report(v2, pid=sibling)  # the sibling switched
        done = c.post("/admin/reload", headers={"x-api-key": ADMIN_KEY})
        assert done.status_code == 200 and done.json()["complete"] is True
        assert "detail" not in c.get("/ready").json()
