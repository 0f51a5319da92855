"""The service's docs work offline, and its OpenAPI schema says what the responses are: /docs (Swagger UI) and
/redoc render in headless Chromium with the network off (every asset from the service itself); ``routing`` is a
typed object; optional parts are absent rather than null, in the schema and in the JSON; times are ISO 8601."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serve import ServiceSettings, create_app
from service.docs import ASSETS_URL, CONTENT_SECURITY_POLICY, assets_dir
from tests.serve_support import server_process, tiny_store
from training.cli import main

CHROMIUM = Path("/usr/bin/chromium")
RESPONSES = ["PredictResponse", "Prediction", "TargetPrediction", "Alternative", "ExplanationTerm", "Routing",
             "RoutingPlace", "RoutingFunction", "BatchResponse", "BatchResult", "ItemError", "HealthResponse",
             "ReadyResponse", "ModelInfo", "TargetInfo", "HeadInfo", "ReloadResponse", "ErrorResponse", "FieldError"]


@pytest.fixture(scope="module")
def tiny(tiny_model, tmp_path_factory):
    return tiny_store(tmp_path_factory.mktemp("docs-store"), tiny_model)


def _client(store_path: Path, **kw) -> TestClient:  # noqa: ANN003
    return TestClient(create_app(ServiceSettings(model_store=store_path, train_demo_if_empty=False, **kw)))


def test_the_schema_types_routing_and_never_says_null_in_a_response(tiny):
    with _client(tiny[0].path, admin_api_key="admin-key-for-tests-0123456789") as c:
        spec = c.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    prediction = schemas["PredictResponse"]["properties"]
    assert prediction["routing"]["$ref"] == "#/components/schemas/Routing"
    assert "routing" not in schemas["PredictResponse"]["required"]
    routing = schemas["Routing"]
    assert routing["properties"]["path"]["enum"] == ["directory", "flat"]
    assert routing["properties"]["place"] == {"$ref": "#/components/schemas/RoutingPlace"}
    assert routing["properties"]["function"] == {"$ref": "#/components/schemas/RoutingFunction"}
    assert sorted(routing["required"]) == ["function", "path", "place"]
    assert routing["properties"]["reason"]["type"] == "string"
    place = schemas["RoutingPlace"]
    assert place["properties"]["town"]["type"] == "string" and "town" not in place["required"]
    assert {"level", "score", "source"} <= set(place["required"])
    nullable = [f"{name}.{prop}" for name in RESPONSES for prop, s in schemas[name].get("properties", {}).items()
                if "null" in json.dumps(s)]
    assert nullable == []  # an optional part is absent, never null
    model = schemas["ModelInfo"]["properties"]
    assert model["loaded_at"]["format"] == "date-time" and model["trained_at"]["format"] == "date-time"


def test_responses_leave_optional_parts_out_and_times_are_iso(demo_store, capsys):
    with _client(demo_store.path) as c:
        info = c.get("/model").json()
        guessed = c.post("/predict", json={"text": "路灯坏了好几天了"}).json()
        named = c.post("/predict", json={"text": "海原县李旺镇杨堡村的空气能坏了"}).json()
        batch = c.post("/predict/batch", json={"items": [{"id": "a", "text": " "}]}).json()
        ready = c.get("/ready").json()
    for stamp in (info["loaded_at"], info["trained_at"]):
        assert dt.datetime.fromisoformat(stamp).tzinfo is not None  # ISO 8601 with a time zone
    assert isinstance(info["loaded_at"], str) and "T" in info["loaded_at"]
    # a county guessed by the county model: a reason, no town; a named town: a town, no reason
    assert guessed["routing"]["place"]["source"] == "model" and "town" not in guessed["routing"]["place"]
    assert "county model inferred" in guessed["routing"]["reason"]
    assert named["routing"]["place"]["town"] == "李旺镇" and "reason" not in named["routing"]
    assert batch["results"] == [{"id": "a", "error": {"type": "empty_text", "message": "item 'a': text is empty or "
                                                      "whitespace only (invisible and control characters count "
                                                      "as whitespace); send the complaint's text"}}]
    assert "detail" not in ready and "null" not in json.dumps([info, guessed, named, batch, ready])
    # `hotline predict --json` gives the same shape, optional parts left out the same way
    main(["predict", "--json", "--store", str(demo_store.path), "路灯坏了好几天了"])
    from_cli = json.loads(capsys.readouterr().out)
    assert from_cli["routing"] == guessed["routing"]


def test_the_docs_assets_ship_with_the_service(tiny):
    with _client(tiny[0].path) as c:
        page = c.get("/docs").text
        redoc = c.get("/redoc").text
        for name in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"):
            r = c.get(f"{ASSETS_URL}/{name}")
            assert r.status_code == 200 and len(r.content) == (assets_dir() / name).stat().st_size
    for html in (page, redoc):
        assert "http://" not in html and "https://" not in html  # nothing from a CDN, no fonts
    assert f'src="{ASSETS_URL}/swagger-ui-bundle.js"' in page and '"validatorUrl": null' in page
    assert f'src="{ASSETS_URL}/redoc.standalone.js"' in redoc
    with _client(tiny[0].path) as c:
        for route in ("/docs", "/redoc"):
            assert c.get(route).headers["content-security-policy"] == CONTENT_SECURITY_POLICY


@pytest.mark.skipif(not CHROMIUM.exists() and shutil.which("chromium") is None,
                    reason="Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)")
def test_docs_render_in_a_browser_with_the_network_off(tiny, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium"))
    # no name resolves but the loopback: the network is off for the page
    args = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
    with server_process(tiny[0].path, tmp_path / "server.log") as (url, _proc):
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=executable, args=args)
            try:
                page = browser.new_page()
                outside: list[str] = []  # requests for anything not served by the service
                answered: list[str] = []  # responses from elsewhere: the network reached (must stay empty)
                failed: list[tuple[str, str | None]] = []
                problems: list[str] = []
                local = (url, "blob:" + url, "data:")
                page.on("request", lambda r: None if r.url.startswith(local) else outside.append(r.url))
                page.on("response", lambda r: None if r.url.startswith(local) else answered.append(r.url))
                page.on("requestfailed", lambda r: failed.append((r.url, r.failure)))
                page.on("pageerror", lambda e: problems.append(str(e)))
                page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
                page.goto(f"{url}/docs", wait_until="networkidle")
                title = page.locator(".swagger-ui .info .title")
                title.wait_for(timeout=20_000)
                assert title.inner_text().startswith("12345 hotline complaint classifier")
                page.locator(".opblock-summary-path", has_text="/predict/batch").first.wait_for(timeout=10_000)
                assert page.locator(".opblock").count() >= 6
                page.goto(f"{url}/redoc", wait_until="networkidle")
                heading = page.locator("h1", has_text="12345 hotline complaint classifier")
                heading.wait_for(timeout=20_000)
                assert page.get_by_text("Classify one complaint").first.is_visible()
                # nothing came from elsewhere; the one outside address (ReDoc's sidebar logo on its vendor's CDN)
                # was refused by the page's security policy before any network use, and ReDoc hid the image
                logo = "https://cdn.redoc.ly/redoc/logo-mini.svg"
                assert answered == [] and outside == [logo] and failed == [(logo, "csp")]
                assert [m for m in problems if logo not in m] == [], problems
            finally:
                browser.close()
