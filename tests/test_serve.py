"""The prediction service through TestClient: every route, every bad input (status + message), settings."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

import service.loading
import service.metrics
import service.model_info
import service.predicting
import service.runner
from classifier.errors import ComplaintInputError, NoCurrentModelError
from classifier.store import ModelStore
from serve import LoadedModel, ServiceSettings, create_app, load_model
from tests.conftest import TINY_CASES
from tests.serve_support import ADMIN_KEY, corrupt, tiny_classifier, tiny_store

TRAFFIC = TINY_CASES[0][0]  # 兴庆区解放东街红绿灯坏了，路口堵车严重 -> 交通秩序 / 兴庆区交警一大队


@pytest.fixture(scope="module")
def store(tiny_model, tmp_path_factory) -> tuple[ModelStore, str]:
    return tiny_store(tmp_path_factory.mktemp("serve-store"), tiny_model)


def make_client(store: ModelStore, **settings: Any) -> TestClient:
    return TestClient(create_app(ServiceSettings(model_store=store.path, **settings)))


@pytest.fixture(scope="module")
def client(store) -> Any:
    with make_client(store[0]) as c:
        yield c


def post_raw(client: TestClient, body: bytes, content_type: str | None = "application/json") -> Any:
    headers = {"content-type": content_type} if content_type else {}
    return client.post("/predict", content=body, headers=headers)


# -- /predict ---------------------------------------------------------------------------------------------------
def test_predict_returns_each_target_with_calibrated_scores(client, store):
    r = client.post("/predict", json={"text": TRAFFIC, "top_k": 3})
    assert r.status_code == 200
    body = r.json()
    assert set(body["targets"]) == {"category", "agency"}
    category, agency = body["targets"]["category"], body["targets"]["agency"]
    assert category["label"] == "交通秩序"
    assert agency["label"] == "兴庆区交警一大队"
    for entry in (category, agency):
        scores = [a["score"] for a in entry["alternatives"]]
        assert len(scores) == 3
        assert scores == sorted(scores, reverse=True)
        assert entry["alternatives"][0] == {"label": entry["label"], "score": entry["score"]}
        assert 0 < entry["score"] <= 1 and sum(scores) <= 1 + 1e-6
        assert entry["threshold"] == 0.5
        assert entry["needs_review"] == (entry["score"] < 0.5)
        assert "explanation" not in entry  # only when asked for, as in `hotline predict --json`
    assert body["needs_review"] == (category["needs_review"] or agency["needs_review"])
    assert body["model_version"] == store[1]
    assert body["request_id"] == r.headers["x-request-id"]
    assert "routing" not in body  # a plain (not routing) model


def test_predict_matches_the_library(client, tiny_model):
    r = client.post("/predict", json={"text": TINY_CASES[7][0], "top_k": 2})
    expected = tiny_model.predict_details([TINY_CASES[7][0]], top_k=2)[0]
    for target in ("category", "agency"):
        got = r.json()["targets"][target]
        assert got["label"] == expected[target]["label"]
        assert got["alternatives"] == expected[target]["alternatives"]


def test_predict_explain_and_target_subset(client):
    r = client.post("/predict", json={"text": TRAFFIC, "explain": True, "targets": ["category"], "top_k": 1})
    assert r.status_code == 200
    body = r.json()
    assert list(body["targets"]) == ["category"]
    explanation = body["targets"]["category"]["explanation"]
    kinds = ("word", "char", "lead word", "lead char")
    assert explanation and all(e["weight"] > 0 and e["kind"] in kinds for e in explanation)
    # 堵 (堵车, 堵得) is in two of the traffic cases; 红绿灯 and 路口 are in one training case only, and an
    # explanation never names such a term (issue 15)
    assert any("堵" in e["term"] for e in explanation)
    assert not any("红绿灯" in e["term"] or "路口" in e["term"] for e in explanation)
    assert len(body["targets"]["category"]["alternatives"]) == 1


def test_request_id_is_echoed_when_well_formed(client):
    r = client.post("/predict", json={"text": TRAFFIC}, headers={"x-request-id": "case-2026-0001"})
    assert r.json()["request_id"] == "case-2026-0001" == r.headers["x-request-id"]
    r = client.post("/predict", json={"text": TRAFFIC}, headers={"x-request-id": "bad id\twith spaces"})
    assert r.json()["request_id"] != "bad id\twith spaces"
    assert len(r.json()["request_id"]) == 32


@pytest.fixture(scope="module")
def soft_store(tmp_path_factory) -> ModelStore:
    """A tiny model without calibration: its scores sit near 0.56 on the training texts, so thresholds bite."""
    return tiny_store(tmp_path_factory.mktemp("soft-store"), tiny_classifier(calibration="none"))[0]


def test_thresholds_come_from_settings(soft_store):
    with make_client(soft_store) as c:
        default = c.post("/predict", json={"text": TRAFFIC}).json()
    score = default["targets"]["category"]["score"]
    assert 0.52 < score < 0.6
    assert default["needs_review"] is False
    with make_client(soft_store, thresholds={"category": 0.6}) as c:
        body = c.post("/predict", json={"text": TRAFFIC}).json()
    assert body["targets"]["category"]["threshold"] == 0.6
    assert body["targets"]["category"]["needs_review"] is True
    assert body["targets"]["agency"]["threshold"] == 0.5
    assert body["targets"]["agency"]["needs_review"] is False
    assert body["needs_review"] is True
    assert body["targets"]["category"]["score"] == score


# -- /predict: bad input --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"text": ""}, "text: String should have at least 1 character"),
        ({"text": "   \n\t "}, "text is empty or whitespace only"),
        ({"top_k": 3}, "text: field required"),
        ({"text": 12345}, "text: Input should be a valid string"),
        ({"text": ["a", "b"]}, "text: Input should be a valid string"),
        ({"text": TRAFFIC, "top_k": 0}, "top_k: Input should be greater than or equal to 1"),
        ({"text": TRAFFIC, "top_k": 51}, "top_k: Input should be less than or equal to 50"),
        ({"text": TRAFFIC, "top_k": "three"}, "top_k: Input should be a valid integer"),
        ({"text": TRAFFIC, "targets": ["category", "subcategory"]}, "unknown target 'subcategory'"),
        ({"text": TRAFFIC, "targets": []}, "targets: List should have at least 1 item"),
        ({"text": TRAFFIC, "explain": "maybe"}, "explain: Input should be a valid boolean"),
        ({"text": TRAFFIC, "txt": "typo"}, "txt: Extra inputs are not permitted"),
    ],
)
def test_predict_bad_input_is_422_with_a_clear_message(client, payload, message):
    r = client.post("/predict", json=payload)
    assert r.status_code == 422
    assert message in r.json()["detail"]


def test_text_over_the_limit_names_the_limit(store):
    with make_client(store[0], max_text_length=40) as c:
        r = c.post("/predict", json={"text": "路灯" * 21})
        assert r.status_code == 422
        assert r.json()["detail"] == "text has 42 characters; the limit is 40"
        assert "路灯" not in r.text  # the text is not echoed back
        assert c.get("/model").json()["max_text_length"] == 40
        assert c.post("/predict", json={"text": "路灯" * 20}).status_code == 200


def test_served_models_tokenize_in_the_worker_not_a_process_pool(store, monkeypatch):
    import joblib

    from classifier import features

    loaded = load_model(ServiceSettings(model_store=store[0].path))
    monkeypatch.setattr(features, "_PARALLEL_MIN_CHARS", 1)
    monkeypatch.setattr(features, "_PARALLEL_MIN_TEXTS", 1)

    def no_pool(*args, **kwargs):
        raise AssertionError("a process pool was started while predicting")

    monkeypatch.setattr(joblib, "Parallel", no_pool)
    results = loaded.model.predict_details(["同心县出租车拒载"] * 300)
    assert len(results) == 300


def test_the_model_limit_applies_when_it_is_lower(tiny_model, store):
    loaded = load_model(ServiceSettings(model_store=store[0].path))
    assert loaded.max_text_length == min(10_000, tiny_model.max_text_length)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b'{"text": ', 422, "request body is not valid JSON: Expecting value at character 9"),
        (b'{"text": "a",}', 422, "request body is not valid JSON"),
        (b"text=hello", 422, "request body is not valid JSON"),
        (b'{"text": "\xc3\x28 broken"}', 400, "request body is not UTF-8 (invalid continuation byte at byte 10)"),
        ('{"text": "红绿灯"}'.encode("gbk"), 400, "request body is not UTF-8"),
        (b"[]", 422, "Input should be a valid dictionary"),
        (b"null", 422, "Input should be a valid dictionary"),
    ],
)
def test_unparsable_bodies_get_4xx_with_a_message(client, body, status, message):
    r = post_raw(client, body)
    assert r.status_code == status
    assert message in r.json()["detail"]


def test_missing_or_wrong_content_type_is_a_422(client):
    r = post_raw(client, json.dumps({"text": TRAFFIC}).encode(), content_type="text/plain")
    assert r.status_code == 422
    assert "Input should be a valid dictionary" in r.json()["detail"]


def test_oversized_body_is_413_before_it_is_read(store):
    with make_client(store[0], max_request_bytes=2048) as c:
        r = c.post("/predict", json={"text": "井盖" * 2000})
    assert r.status_code == 413
    assert "the limit is 2,048 (HOTLINE_MAX_REQUEST_BYTES)" in r.json()["detail"]


def test_validation_errors_do_not_echo_the_input(client):
    r = client.post("/predict", json={"text": TRAFFIC, "top_k": "many", "extra_field": TRAFFIC})
    assert r.status_code == 422
    assert TRAFFIC not in r.text
    assert {e["loc"][0] for e in r.json()["errors"]} == {"top_k", "extra_field"}


# -- /predict/batch ---------------------------------------------------------------------------------------------
def test_batch_keeps_order_and_ids_and_equals_single_predictions(client):
    items = [{"id": f"c{i}", "text": t} for i, (t, _, _) in enumerate(TINY_CASES)][::-1]
    r = client.post("/predict/batch", json={"items": items, "top_k": 2})
    assert r.status_code == 200
    body = r.json()
    assert [res["id"] for res in body["results"]] == [it["id"] for it in items]
    assert body["failed"] == 0
    for it, res in zip(items, body["results"], strict=True):
        single = client.post("/predict", json={"text": it["text"], "top_k": 2}).json()
        for target in ("category", "agency"):
            assert res["prediction"]["targets"][target]["label"] == single["targets"][target]["label"]
            assert res["prediction"]["targets"][target]["score"] == pytest.approx(
                single["targets"][target]["score"], abs=1e-5)
        assert "error" not in res  # absent, not null
    expected = {f"c{i}": c for i, (_, c, _) in enumerate(TINY_CASES)}
    assert sum(res["prediction"]["targets"]["category"]["label"] == expected[res["id"]]
               for res in body["results"]) == len(items)


def test_one_bad_item_fails_alone_with_its_reason(store):
    with make_client(store[0], max_text_length=30) as c:
        items = [{"id": "ok-1", "text": TRAFFIC}, {"id": "blank", "text": "  "}, {"id": "long", "text": "水" * 31},
                 {"id": "ok-2", "text": TINY_CASES[9][0]}]
        body = c.post("/predict/batch", json={"items": items}).json()
    results = {res["id"]: res for res in body["results"]}
    assert body["failed"] == 2
    assert results["ok-1"]["prediction"]["targets"]["category"]["label"] == "交通秩序"
    assert results["ok-2"]["prediction"]["targets"]["category"]["label"] == "供暖供热"
    assert "prediction" not in results["blank"]
    assert results["blank"]["error"] == {"type": "empty_text", "message": "item 'blank': text is empty or "
                                         "whitespace only (invisible and control characters count as whitespace); "
                                         "send the complaint's text"}
    assert results["long"]["error"] == {"type": "text_too_long",
                                        "message": "item 'long': text has 31 characters; the limit is 30"}


def test_batch_where_every_item_is_bad_still_answers_per_item(client):
    body = client.post("/predict/batch", json={"items": [{"id": "a", "text": " "}, {"id": "b", "text": "\n"}]}).json()
    assert body["failed"] == 2
    assert [r["error"]["type"] for r in body["results"]] == ["empty_text", "empty_text"]


def test_batch_explain_and_targets(client):
    body = client.post("/predict/batch", json={"items": [{"id": "1", "text": TRAFFIC}, {"id": "2", "text":
                       TINY_CASES[6][0]}], "explain": True, "targets": ["agency"]}).json()
    for res in body["results"]:
        assert list(res["prediction"]["targets"]) == ["agency"]
        assert res["prediction"]["targets"]["agency"]["explanation"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"items": []}, "items: List should have at least 1 item"),
        ({}, "items: field required"),
        ({"items": [{"id": "a"}]}, "items.0.text: field required"),
        ({"items": [{"text": TRAFFIC}]}, "items.0.id: field required"),
        ({"items": [{"id": "", "text": TRAFFIC}]}, "items.0.id: String should have at least 1 character"),
        ({"items": [{"id": 7, "text": TRAFFIC}]}, "items.0.id: Input should be a valid string"),
        ({"items": "not a list"}, "items: Input should be a valid list"),
        ({"items": [{"id": "a", "text": TRAFFIC}], "targets": ["nope"]}, "unknown target 'nope'"),
        ({"items": [{"id": "a", "text": TRAFFIC}], "top_k": 99}, "top_k: Input should be less than or equal to 50"),
        ({"items": [{"id": "a", "text": TRAFFIC}, {"id": "b", "text": TRAFFIC}, {"id": "a", "text": TRAFFIC}]},
         "duplicate ids in the batch: 'a' (items 0 and 2); each item needs its own id"),
    ],
)
def test_batch_bad_requests_are_422(client, payload, message):
    r = client.post("/predict/batch", json=payload)
    assert r.status_code == 422
    assert message in r.json()["detail"]


def test_batch_over_the_limit_is_refused_with_the_limit(store):
    with make_client(store[0], max_batch_size=3) as c:
        items = [{"id": str(i), "text": TRAFFIC} for i in range(4)]
        r = c.post("/predict/batch", json={"items": items})
        assert r.status_code == 422
        assert r.json()["detail"] == "the batch has 4 items; the limit is 3 (HOTLINE_MAX_BATCH_SIZE); split it"
        assert c.post("/predict/batch", json={"items": items[:3]}).status_code == 200


# -- health, ready, model, metrics --------------------------------------------------------------------------------
def test_health_ready_and_model(client, store, tiny_model):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready == {"ready": True, "model_version": store[1], "decision_log": "ok",
                     "workers": [{"pid": os.getpid(), "version": store[1], "since": ready["workers"][0]["since"]}]}
    assert ready["workers"][0]["since"].endswith("Z") or "+00:00" in ready["workers"][0]["since"]
    info = client.get("/model").json()
    assert info["version"] == store[1]
    trained = dt.datetime.fromisoformat(store[0].manifest(store[1])["created"])
    assert dt.datetime.fromisoformat(info["trained_at"]) == trained  # ISO 8601, as every time
    loaded = dt.datetime.fromisoformat(info["loaded_at"])
    assert loaded.tzinfo is not None and abs((dt.datetime.now(dt.UTC) - loaded).total_seconds()) < 600
    assert info["targets"]["category"]["labels"] == tiny_model.classes("category")
    assert info["targets"]["agency"]["labels"] == tiny_model.classes("agency")
    assert info["targets"]["agency"]["threshold"] == 0.5
    assert info["max_batch_size"] == 1000 and info["max_top_k"] == 50
    assert "routing" not in info and "default_place" not in info  # the tiny model does not route: absent
    # the tiny model's classes have a handful of cases each: one SVM with its temperature per target
    head = info["targets"]["category"]["head"]
    assert head["kind"] == "svm" and "fusion_weights" not in head
    assert head["temperature"] == pytest.approx(tiny_model.heads_["category"].temperature_, abs=1e-6)
    assert head["classes"] == len(tiny_model.classes("category"))
    assert head["features_used"] == tiny_model.heads_["category"].describe()["features_used"] > 0


def test_demo_model_reports_hold_out_metrics_and_routing(demo_store):
    with make_client(demo_store) as c:
        info = c.get("/model").json()
        routed = c.post("/predict", json={"text": "同心县客运站的班车老是晚点，没人管"}).json()
    assert routed["routing"]["path"] in ("directory", "flat")  # the demo model routes by jurisdiction
    assert routed["targets"]["agency"]["label"].startswith("同心县")
    manifest = demo_store.manifest(demo_store.current())
    assert info["targets"]["category"]["metrics"]["accuracy"] == pytest.approx(
        manifest["metrics"]["category"]["accuracy"])
    assert 0.5 < info["targets"]["category"]["metrics"]["accuracy"] <= 1
    assert info["training_rows"] == manifest["data"]["rows_used"]
    # the demo's 20 categories have 46+ cases each: a fused head, as the manifest says
    assert info["targets"]["category"]["head"]["kind"] == manifest["heads"]["category"]["kind"] == "fused"
    assert info["targets"]["category"]["head"]["fusion_weights"] == manifest["heads"]["category"]["fusion_weights"]
    assert "per_class" not in info["targets"]["category"]["metrics"]


def test_ready_is_503_when_no_model_is_loaded(store):
    app = create_app(ServiceSettings(model_store=store[0].path))
    client = TestClient(app)  # no `with`: the lifespan does not run, nothing is loaded
    r = client.get("/ready")
    assert r.status_code == 503
    assert r.json() == {"ready": False, "detail": "no model loaded", "decision_log": "off"}
    r = client.post("/predict", json={"text": TRAFFIC})
    assert r.status_code == 503
    assert r.json()["detail"] == "no model is loaded yet; retry shortly"


def test_metrics_count_requests_labels_reviews_and_version(soft_store):
    store = (soft_store, soft_store.current())
    with make_client(store[0], thresholds={"agency": 0.6}) as c:
        c.post("/predict", json={"text": TRAFFIC})
        c.post("/predict", json={"text": TRAFFIC})
        c.post("/predict", json={"text": " "})
        c.post("/predict/batch", json={"items": [{"id": "1", "text": TINY_CASES[9][0]}, {"id": "2", "text": ""}]})
        c.get("/nowhere")
        text = c.get("/metrics").text
    lines = set(text.splitlines())
    assert 'hotline_requests_total{method="POST",route="/predict",status="200"} 2.0' in lines
    assert 'hotline_requests_total{method="POST",route="/predict",status="422"} 1.0' in lines
    assert 'hotline_requests_total{method="POST",route="/predict/batch",status="200"} 1.0' in lines
    assert 'hotline_requests_total{method="GET",route="unmatched",status="404"} 1.0' in lines
    # per target only: a per-label counter would tell a scraper the label of a lone night-time complaint
    assert 'hotline_predictions_total{target="category"} 3.0' in lines
    assert 'hotline_predictions_total{target="agency"} 3.0' in lines
    assert "交通秩序" not in text and "供暖供热" not in text
    assert "hotline_texts_classified_total 3.0" in lines
    assert "hotline_texts_needing_review_total 3.0" in lines  # agency scores ~0.56 < 0.6: all need review
    assert "hotline_review_rate 1.0" in lines
    assert f'hotline_model_info{{version="{store[1]}"}} 1.0' in lines
    assert 'hotline_request_duration_seconds_count{route="/predict"} 3.0' in lines


# -- logs -------------------------------------------------------------------------------------------------------
def request_lines(caplog) -> list[dict[str, Any]]:
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "hotline.serve"]
    return [line for line in lines if line.get("event") == "request"]


def test_one_json_log_line_per_request_without_the_text(client, caplog):
    caplog.set_level(logging.INFO, logger="hotline.serve")
    client.post("/predict", json={"text": TRAFFIC}, headers={"x-request-id": "log-test-1"})
    client.post("/predict", json={"text": " " * 3})
    client.post("/predict/batch", json={"items": [{"id": "x", "text": TINY_CASES[3][0]}]})
    lines = request_lines(caplog)
    assert len(lines) == 3
    first = lines[0]
    assert first["request_id"] == "log-test-1"
    assert first["route"] == "/predict" and first["status"] == 200 and first["method"] == "POST"
    assert first["text_length"] == len(TRAFFIC)
    assert first["labels"] == {"category": "交通秩序", "agency": "兴庆区交警一大队"}
    assert first["latency_ms"] > 0
    assert lines[1]["status"] == 422
    assert lines[2]["items"] == 1 and lines[2]["failed"] == 0
    assert lines[2]["labels"] == {"category": {"道路设施": 1}, "agency": {"大武口区住建局": 1}}
    everything = caplog.text
    assert TRAFFIC not in everything and TINY_CASES[3][0] not in everything
    assert "text" not in first and "texts" not in lines[2]


def test_log_texts_debug_setting_puts_the_text_in_the_log(store, caplog):
    caplog.set_level(logging.INFO, logger="hotline.serve")
    with make_client(store[0], log_texts=True) as c:
        c.post("/predict", json={"text": TRAFFIC})
    assert request_lines(caplog)[-1]["text"] == TRAFFIC


# -- admin ------------------------------------------------------------------------------------------------------
@pytest.fixture
def two_version_store(tiny_model, tmp_path) -> tuple[ModelStore, str, str]:
    store, v1 = tiny_store(tmp_path / "store", tiny_model)
    v2 = serve_second_version(store)
    return store, v1, v2


def serve_second_version(store: ModelStore) -> str:
    from training.train import save_model

    return save_model(tiny_classifier(seed=11), store, promote=False)


def test_admin_routes_are_off_without_a_key(client):
    assert client.post("/admin/reload").status_code == 404
    assert "/admin/reload" not in client.get("/openapi.json").json()["paths"]


def test_admin_reload_needs_the_key(two_version_store):
    store, v1, _ = two_version_store
    with make_client(store, admin_api_key=ADMIN_KEY) as c:
        for headers in ({}, {"x-api-key": "wrong-key-wrong-key"}):
            r = c.post("/admin/reload", headers=headers)
            assert r.status_code == 401
            assert r.json()["detail"] == "missing or wrong admin API key: send it in the X-API-Key header"
        assert c.get("/model").json()["version"] == v1


def test_admin_reload_swaps_in_the_current_version(two_version_store):
    store, v1, v2 = two_version_store
    with make_client(store, admin_api_key=ADMIN_KEY) as c:
        assert c.post("/predict", json={"text": TRAFFIC}).json()["model_version"] == v1
        store.promote(v2)
        r = c.post("/admin/reload", headers={"x-api-key": ADMIN_KEY})
        assert r.status_code == 200
        assert r.json() == {"reloaded": True, "version": v2, "previous_version": v1, "complete": True,
                            "workers": [{"pid": os.getpid(), "version": v2, "since": r.json()["workers"][0]["since"]}]}
        assert c.post("/predict", json={"text": TRAFFIC}).json()["model_version"] == v2
        assert c.get("/model").json()["version"] == v2
        assert f'hotline_model_info{{version="{v2}"}} 1.0' in c.get("/metrics").text
        assert v1 not in c.get("/metrics").text


def test_failed_reload_keeps_the_old_model_and_says_why(two_version_store):
    store, v1, v2 = two_version_store
    with make_client(store, admin_api_key=ADMIN_KEY) as c:
        store.promote(v2)
        corrupt(store, v2)
        r = c.post("/admin/reload", headers={"x-api-key": ADMIN_KEY})
        assert r.status_code == 409
        body = r.json()
        assert body["reloaded"] is False and body["version"] == v1
        assert body["detail"].startswith(f"reload failed, still serving {v1}: ModelIntegrityError")
        assert "refusing to load it" in body["detail"]
        assert c.post("/predict", json={"text": TRAFFIC}).json()["model_version"] == v1
        assert 'hotline_model_reloads_total{outcome="failed"} 1.0' in c.get("/metrics").text


def test_reload_refuses_a_model_without_a_thresholded_target(tiny_model, tmp_path):
    store, v1 = tiny_store(tmp_path / "s", tiny_model)
    from classifier.model import ComplaintClassifier
    from tests.conftest import tiny_config
    from training.train import save_model

    texts, categories = [t for t, _, _ in TINY_CASES], [c for _, c, _ in TINY_CASES]
    m = ComplaintClassifier(tiny_config()).fit(texts, {"category": categories})
    with make_client(store, admin_api_key=ADMIN_KEY, thresholds={"agency": 0.2}) as c:
        save_model(m, store, promote=True)
        r = c.post("/admin/reload", headers={"x-api-key": ADMIN_KEY})
        assert r.status_code == 409
        assert "HOTLINE_THRESHOLDS names targets ['agency'] that model version" in r.json()["detail"]
        assert c.get("/model").json()["version"] == v1


def test_predict_api_key_when_configured(store):
    with make_client(store[0], api_key="client-key-0123456789") as c:
        r = c.post("/predict", json={"text": TRAFFIC})
        assert r.status_code == 401
        assert r.json()["detail"] == "missing or wrong API key: send it in the X-API-Key header"
        assert c.post("/predict/batch", json={"items": [{"id": "1", "text": TRAFFIC}]}).status_code == 401
        assert c.get("/model").status_code == 401
        headers = {"x-api-key": "client-key-0123456789"}
        assert c.post("/predict", json={"text": TRAFFIC}, headers=headers).status_code == 200
        assert c.get("/health").status_code == 200 and c.get("/ready").status_code == 200
        assert c.get("/metrics").status_code == 401  # protected like the other routes
        assert c.get("/metrics", headers=headers).status_code == 200


# -- a routing model's extra result keys pass through --------------------------------------------------------------
class RoutingWrapper:
    """Stands in for the jurisdiction-routing model: the documented API, plus a "routing" key per result."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.targets_ = inner.targets_
        self.max_text_length = inner.max_text_length

    def classes(self, target: str) -> list[str]:
        return self.inner.classes(target)

    def warm_up(self) -> RoutingWrapper:
        self.inner.warm_up()
        return self

    def predict_details(self, texts: list[str], **kw: Any) -> list[dict[str, Any]]:
        results = self.inner.predict_details(texts, **kw)
        return [{**r, "routing": ROUTED, "route_note": 1} for r in results]


# the routing object's documented shape (service.schemas.Routing), with a key a newer router may add
ROUTED = {"path": "directory", "place": {"name": "兴庆区", "level": "county", "city": "银川市", "county": "兴庆区",
                                         "town": None, "score": 1.0, "mentions": ["兴庆区"], "ambiguous": [],
                                         "source": "gazetteer"},
          "function": {"label": "traffic_police", "score": 0.9}, "reason": None, "checked": True}


def test_routing_keys_pass_through(tiny_model):
    wrapper = RoutingWrapper(tiny_model)
    loaded = LoadedModel(version="routing-v1", model=wrapper, manifest={}, thresholds={"category": 0.5,
                         "agency": 0.5}, max_text_length=10_000)
    with TestClient(create_app(ServiceSettings(), loaded=loaded)) as c:
        body = c.post("/predict", json={"text": TRAFFIC}).json()
        place = {k: v for k, v in ROUTED["place"].items() if v is not None}  # absent, not null
        assert body["routing"] == {"path": "directory", "place": place, "function": ROUTED["function"],
                                   "checked": True}
        assert body["route_note"] == 1
        assert body["targets"]["agency"]["label"] == "兴庆区交警一大队"
        assert body["model_version"] == "routing-v1"
        batch = c.post("/predict/batch", json={"items": [{"id": "1", "text": TRAFFIC}]}).json()
        assert batch["results"][0]["prediction"]["routing"]["path"] == "directory"
        assert c.get("/model").json()["targets"]["agency"]["metrics"] == {}


# -- settings and start-up ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"admin_api_key": "short"}, "HOTLINE_ADMIN_API_KEY is 5 characters; use at least 16"),
        ({"api_key": "x" * 8}, "HOTLINE_API_KEY is 8 characters; use at least 16"),
        ({"admin_api_key": "same-key-8f3Kq2xZ", "api_key": "same-key-8f3Kq2xZ"},
         "HOTLINE_ADMIN_API_KEY equals HOTLINE_API_KEY"),
        ({"log_texts": True, "host": "0.0.0.0"}, "only allowed on a loopback host, not '0.0.0.0'"),
        ({"thresholds": {"agency": 1.5}}, "review thresholds must be probabilities from 0 to 1"),
        ({"default_threshold": -0.1}, "Input should be greater than or equal to 0"),
        ({"workers": 0}, "Input should be greater than or equal to 1"),
        ({"max_batch_size": 0}, "Input should be greater than or equal to 1"),
        ({"port": 70000}, "Input should be less than or equal to 65535"),
    ],
)
def test_unsafe_settings_are_refused(settings, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace("[", r"\[")):
        ServiceSettings(**settings)


def test_settings_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HOTLINE_MODEL_STORE", str(tmp_path))
    monkeypatch.setenv("HOTLINE_THRESHOLDS", '{"agency": 0.3}')
    monkeypatch.setenv("HOTLINE_MAX_BATCH_SIZE", "50")
    monkeypatch.setenv("HOTLINE_WORKERS", "2")
    s = ServiceSettings()
    assert (s.model_store, s.thresholds, s.max_batch_size, s.workers) == (tmp_path, {"agency": 0.3}, 50, 2)
    assert s.host == "127.0.0.1" and s.max_text_length == 10_000 and s.default_threshold == 0.5


def test_log_texts_on_loopback_is_allowed():
    assert ServiceSettings(log_texts=True, host="::1").log_texts is True
    assert ServiceSettings(log_texts=True, host="localhost").log_texts is True


def test_unknown_threshold_target_is_refused_at_load(store):
    with pytest.raises(ComplaintInputError, match=r"HOTLINE_THRESHOLDS names targets \['subcategory'\]"):
        load_model(ServiceSettings(model_store=store[0].path, thresholds={"subcategory": 0.4}))


def test_empty_store_fails_at_start_up_with_how_to_train(tmp_path):
    app = create_app(ServiceSettings(model_store=tmp_path / "empty"))
    with pytest.raises(NoCurrentModelError, match="train a model first"):
        with TestClient(app):
            pass
    settings = ServiceSettings(model_store=tmp_path / "empty", train_demo_if_empty=False)
    with pytest.raises(SystemExit, match=r"has no current model\. Train one with `hotline train"):
        service.runner.prepare_store(settings, print)


def test_empty_store_trains_the_demo_default(tmp_path, monkeypatch, tiny_model):
    import training.demo
    from training.train import save_model

    calls = []

    def fake_demo(store: ModelStore, retrain: bool = False, log: Any = None) -> tuple[str, bool]:
        calls.append(store.path)
        return save_model(tiny_model, store, promote=True), True

    monkeypatch.setattr(training.demo, "ensure_demo_model", fake_demo)
    said: list[str] = []
    store = service.runner.prepare_store(ServiceSettings(model_store=tmp_path / "fresh"), said.append)
    assert calls == [tmp_path / "fresh"]
    assert store.current() is not None
    assert said[0].startswith(f"model store {tmp_path / 'fresh'} is empty: training the Ningxia demo model")


def test_hotline_serve_is_a_cli_command():
    from training.cli import build_parser

    args = build_parser().parse_args(["serve", "--port", "9001", "--workers", "2", "--store", "/tmp/x"])
    assert args.func is service.runner.cmd_serve
    s = service.runner._settings_from(args)
    assert (s.port, s.workers, str(s.model_store)) == (9001, 2, "/tmp/x")


def test_bad_cli_settings_exit_with_a_message():
    from training.cli import build_parser

    args = build_parser().parse_args(["serve", "--port", "0"])
    with pytest.raises(SystemExit, match="refusing to start with these settings:\n  port: Input should be greater"):
        service.runner._settings_from(args)


def test_prediction_threads_per_worker_come_from_settings(store):
    import anyio.to_thread

    with make_client(store[0], threads=2) as c:
        assert c.portal.call(lambda: anyio.to_thread.current_default_thread_limiter().total_tokens) == 2
        assert c.post("/predict", json={"text": TRAFFIC}).status_code == 200


class PickyModel(RoutingWrapper):
    """A model that refuses some texts itself (beyond the service's own checks)."""

    def predict_details(self, texts: list[str], **kw: Any) -> list[dict[str, Any]]:
        for i, t in enumerate(texts):
            if "乱码" in t:
                raise ComplaintInputError(f"text #{i} is unreadable")
        return self.inner.predict_details(texts, **kw)


def test_an_item_the_model_refuses_fails_alone(tiny_model):
    loaded = LoadedModel(version="picky", model=PickyModel(tiny_model), manifest={},
                         thresholds={"category": 0.5, "agency": 0.5}, max_text_length=10_000)
    with TestClient(create_app(ServiceSettings(), loaded=loaded)) as c:
        items = [{"id": "a", "text": TRAFFIC}, {"id": "b", "text": "乱码乱码"}, {"id": "c", "text": TINY_CASES[9][0]}]
        body = c.post("/predict/batch", json={"items": items}).json()
        assert body["failed"] == 1
        assert [r.get("error") for r in body["results"]] == [  # absent where there is none
            None, {"type": "invalid_text", "message": "item 'b': text #0 is unreadable"}, None]
        assert body["results"][2]["prediction"]["targets"]["category"]["label"] == "供暖供热"
        r = c.post("/predict", json={"text": "乱码"})
        assert r.status_code == 422 and r.json()["detail"] == "text #0 is unreadable"


def test_reload_refreezes_the_heap_only_when_start_up_froze_it(two_version_store, monkeypatch):
    store, _, v2 = two_version_store
    calls: list[bool] = []
    monkeypatch.setattr(service.loading, "freeze_heap", lambda refreeze=False: calls.append(refreeze))
    with make_client(store, admin_api_key=ADMIN_KEY) as c:
        store.promote(v2)
        monkeypatch.setattr(service.loading.gc, "get_freeze_count", lambda: 0)  # a test process: nothing frozen
        assert c.post("/admin/reload", headers={"x-api-key": ADMIN_KEY}).status_code == 200
        assert calls == []
        monkeypatch.setattr(service.loading.gc, "get_freeze_count", lambda: 170_000)  # `serve()` froze the first model
        assert c.post("/admin/reload", headers={"x-api-key": ADMIN_KEY}).status_code == 200
        assert calls == [True]


def test_freeze_heap_takes_live_objects_out_of_collection():
    import gc

    try:
        service.loading.freeze_heap()
        assert gc.get_freeze_count() > 10_000  # pytest, FastAPI, the models of this session...
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0


# -- concurrent single requests are predicted together ------------------------------------------------------------
def _coalesce(calls: list[tuple[LoadedModel, str, int, list[str] | None]]) -> list[Any]:
    """Run the calls as concurrent /predict requests would: queued in one event-loop turn."""
    import asyncio

    metrics = service.metrics.ServiceMetrics()
    coalescer = service.predicting.Coalescer(metrics)

    async def run() -> list[Any]:
        return await asyncio.gather(*(coalescer.predict(m, t, None, k, targets, False) for m, t, k, targets in calls),
                                    return_exceptions=True)

    results = asyncio.run(run())
    sizes = metrics.registry.get_sample_value("hotline_predict_coalesced_sum")
    calls_made = metrics.registry.get_sample_value("hotline_predict_coalesced_count")
    return [results, sizes, calls_made]


def test_concurrent_requests_are_predicted_in_one_call_with_each_ones_own_answer(tiny_model):
    loaded = LoadedModel(version="v1", model=tiny_model, manifest={}, thresholds={"category": 0.5, "agency": 0.5},
                         max_text_length=10_000)
    texts = [t for t, _, _ in TINY_CASES[:6]]
    results, sizes, calls_made = _coalesce([(loaded, t, 3, None) for t in texts])
    assert (sizes, calls_made) == (6, 1)  # six requests, one model call
    for text, got in zip(texts, results, strict=True):
        assert got == service.predicting.predict_records(loaded, [text], [None], 3, None, False)[0]


def test_coalesced_requests_keep_their_model_version_top_k_and_targets(tiny_model):
    other = tiny_classifier(calibration="none")  # another "version" that scores differently
    v1 = LoadedModel(version="v1", model=tiny_model, manifest={}, thresholds={"category": 0.5, "agency": 0.5},
                     max_text_length=10_000)
    v2 = LoadedModel(version="v2", model=other, manifest={}, thresholds={"category": 0.5, "agency": 0.5},
                     max_text_length=10_000)
    calls = [(v1, TRAFFIC, 3, None), (v2, TRAFFIC, 3, None), (v1, TRAFFIC, 1, None), (v1, TRAFFIC, 3, ["agency"]),
             (v1, TRAFFIC, 3, ["nope"])]
    results, sizes, calls_made = _coalesce(calls)
    assert (sizes, calls_made) == (5, 1)
    for (m, text, k, targets), got in zip(calls[:4], results[:4], strict=True):
        assert got == service.predicting.predict_records(m, [text], [None], k, targets, False)[0]
    assert len(results[2]["targets"]["category"]["alternatives"]) == 1 and set(results[3]["targets"]) == {"agency"}
    assert results[0] != results[1]  # each answered by its own model
    unknown_target = results[4]  # fails alone
    assert isinstance(unknown_target, service.predicting.HTTPException) and unknown_target.status_code == 422


def test_a_text_the_model_refuses_fails_only_its_own_coalesced_request(tiny_model):
    loaded = LoadedModel(version="picky", model=PickyModel(tiny_model), manifest={},
                         thresholds={"category": 0.5, "agency": 0.5}, max_text_length=10_000)
    results, _, _ = _coalesce([(loaded, TRAFFIC, 3, None), (loaded, "乱码乱码", 3, None),
                               (loaded, TINY_CASES[9][0], 3, None)])
    assert results[0]["targets"]["category"]["label"] == "交通秩序"
    assert isinstance(results[1], service.predicting.HTTPException) and results[1].detail == "text #0 is unreadable"
    assert results[2]["targets"]["category"]["label"] == "供暖供热"


def test_concurrent_http_requests_through_the_app_are_coalesced(store):
    import asyncio

    import httpx

    app = create_app(ServiceSettings(model_store=store[0].path))
    texts = [t for t, _, _ in TINY_CASES[:12]]

    async def run() -> tuple[list[Any], str]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                responses = await asyncio.gather(*(c.post("/predict", json={"text": t}) for t in texts))
                return responses, (await c.get("/metrics")).text

    responses, exposition = asyncio.run(run())
    assert [r.status_code for r in responses] == [200] * len(texts)
    with make_client(store[0]) as c:  # one at a time: the same answers
        for text, r in zip(texts, responses, strict=True):
            alone = c.post("/predict", json={"text": text}).json()
            assert r.json()["targets"] == alone["targets"]
    # twelve requests in flight at once: fewer model calls than requests (here the ASGI transport runs them
    # all up to the queue in one turn: one call)
    assert "hotline_predict_coalesced_sum 12.0" in exposition
    calls = float(next(line.split()[-1] for line in exposition.splitlines()
                       if line.startswith("hotline_predict_coalesced_count")))
    assert 1 <= calls < 12


# -- place hints ------------------------------------------------------------------------------------------------
def test_a_place_hint_routes_a_complaint_that_names_no_place(demo_store):
    text = "出租车司机拒载，还绕路多收钱"
    with make_client(demo_store) as c:
        r = c.post("/predict", json={"text": text, "place": "隆德县"})
        batch = c.post("/predict/batch", json={"items": [{"id": "a", "text": text, "place": "泾源县"},
                                                         {"id": "b", "text": text}]}).json()
    assert r.status_code == 200
    body = r.json()
    assert body["targets"]["agency"]["label"] == "隆德县交通运输局"
    assert body["routing"]["place"]["source"] == "hint"
    a, b = batch["results"]
    assert a["prediction"]["targets"]["agency"]["label"] == "泾源县交通运输局"
    assert a["prediction"]["routing"]["place"]["source"] == "hint"
    assert b["prediction"]["routing"]["place"]["source"] == "model"  # no hint: the county model guesses


def test_place_hints_to_a_model_without_routing_are_refused_clearly(store):
    with make_client(store[0]) as c:
        r = c.post("/predict", json={"text": TRAFFIC, "place": "兴庆区"})
        assert r.status_code == 422
        assert r.json()["detail"].startswith("place hints need a routing model")
        items = [{"id": "a", "text": TRAFFIC, "place": "兴庆区"}, {"id": "b", "text": TRAFFIC}]
        batch = c.post("/predict/batch", json={"items": items}).json()
        assert batch["failed"] == 1
        assert batch["results"][0]["error"]["type"] == "invalid_place"
        assert "place hints need a routing model" in batch["results"][0]["error"]["message"]
        assert batch["results"][1]["prediction"]["targets"]["category"]["label"] == "交通秩序"
        too_long = c.post("/predict", json={"text": TRAFFIC, "place": "县" * 201})
        assert too_long.status_code == 422 and too_long.json()["detail"].startswith("place:")


def test_a_model_without_place_hints_in_its_api_still_serves():
    # a model or wrapper written before place hints (its predict_details has no `places`): requests without a
    # place are answered as before (the bench's zero-cost model is such a model)
    from benchmarks.serve_null_model import NullModel

    loaded = LoadedModel(version="null", model=NullModel(), manifest={}, thresholds={"category": 0.5, "agency": 0.5},
                         max_text_length=10_000)
    with TestClient(create_app(ServiceSettings(), loaded=loaded)) as c:
        r = c.post("/predict", json={"text": TRAFFIC})
        batch = c.post("/predict/batch", json={"items": [{"id": "a", "text": TRAFFIC}]})
    assert r.status_code == 200 and r.json()["targets"]["category"]["label"] == "甲"
    assert batch.status_code == 200 and batch.json()["failed"] == 0


def test_a_default_place_routes_requests_that_send_none(demo_store):
    text = "出租车司机拒载，还绕路多收钱"
    with make_client(demo_store, default_place="隆德县") as c:
        assert c.get("/model").json()["default_place"] == "隆德县"
        default = c.post("/predict", json={"text": text}).json()
        own = c.post("/predict", json={"text": text, "place": "泾源县"}).json()
        named = c.post("/predict", json={"text": "同心县" + text}).json()
        batch = c.post("/predict/batch", json={"items": [{"id": "a", "text": text}]}).json()
    assert default["targets"]["agency"]["label"] == "隆德县交通运输局"
    assert default["routing"]["place"]["source"] == "hint"
    assert own["targets"]["agency"]["label"] == "泾源县交通运输局"  # the request's own hint comes first
    assert named["targets"]["agency"]["label"] == "同心县交通运输局"  # and the text before any hint
    assert batch["results"][0]["prediction"]["targets"]["agency"]["label"] == "隆德县交通运输局"
    with make_client(demo_store) as c:
        info = c.get("/model").json()
    assert "default_place" not in info
    routing = info["routing"]  # the demo model routes: its directory and how it decides
    summary = demo_store.manifest(demo_store.current())["data"]["directory"]
    assert routing["agencies"] == 575 and routing["sha256"] == summary["sha256"]
    assert routing["category_function_pairs"] == summary["category_function_pairs"] > 0
    assert routing["county_calibration"] == summary["county_calibration"]


def test_a_default_place_the_model_cannot_use_is_refused_at_load(store, demo_store):
    with pytest.raises(ComplaintInputError, match="HOTLINE_DEFAULT_PLACE='隆德县' needs a routing model"):
        load_model(ServiceSettings(model_store=store[0].path, default_place="隆德县"))
    with pytest.raises(ComplaintInputError, match="HOTLINE_DEFAULT_PLACE='北京市' names no county, town or city"):
        load_model(ServiceSettings(model_store=demo_store.path, default_place="北京市"))
    assert load_model(ServiceSettings(model_store=demo_store.path, default_place="银川市")).default_place == "银川市"


def test_a_heads_description_is_computed_once_per_loaded_head(tiny_model, monkeypatch):

    head = tiny_model.heads_["category"]
    service.model_info._HEAD_INFO.pop(head, None)
    calls = []
    real = type(head).describe
    monkeypatch.setattr(type(head), "describe", lambda self: calls.append(self) or real(self))
    first = service.model_info.head_info(tiny_model, "category")
    again = service.model_info.head_info(tiny_model, "category")
    assert first == again == real(head) and len(calls) == 1
    assert service.model_info.head_info(tiny_model, "no-such-target") is None


def test_generated_request_ids_are_unique_and_sort_by_time(client):
    import time

    from service.middleware import new_request_id

    ids = []
    for _ in range(3):
        ids.append(client.post("/predict", json={"text": TRAFFIC}).json()["request_id"])
        time.sleep(0.002)
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    before_ms = time.time_ns() // 1_000_000
    fresh = new_request_id()
    assert int(fresh[:12], 16) >= before_ms  # the leading 12 digits are the time in milliseconds
    assert len({new_request_id() for _ in range(1000)}) == 1000
