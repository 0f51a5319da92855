"""schemathesis against the service's OpenAPI schema: whatever a client sends, never a 5xx.

Each operation is fuzzed with schema-valid (positive) and schema-breaking (negative) requests.  The operations
are driven through ``APIOperation.as_strategy`` with hypothesis rather than ``schemathesis.pytest.from_fixture``,
whose lazy loader does not work with pytest 9 (``Function._nodeid``).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance

from serve import ServiceSettings, create_app, load_model
from tests.serve_support import ADMIN_KEY, tiny_store

OPERATIONS = [
    ("POST", "/predict"),
    ("POST", "/predict/batch"),
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/model"),
    ("GET", "/metrics"),
    ("POST", "/admin/reload"),
    ("POST", "/feedback"),
    ("POST", "/feedback/batch"),
    ("GET", "/quality"),
]


@pytest.fixture(scope="module")
def api_schema(tiny_model, tmp_path_factory):
    store, _ = tiny_store(tmp_path_factory.mktemp("schema-store"), tiny_model)
    config = ServiceSettings(model_store=store.path, admin_api_key=ADMIN_KEY, max_text_length=2_000,
                             max_batch_size=50)
    app = create_app(config, loaded=load_model(config))
    app.state.recorder.open()  # the lifespan does not run under schemathesis: open the decision log here
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_every_operation_is_fuzzed(api_schema):
    found = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert found == set(OPERATIONS)


# operations without a body or parameters have no schema-breaking request to generate
CASES = [(m, p, GenerationMode.POSITIVE) for m, p in OPERATIONS] + [
    (m, p, GenerationMode.NEGATIVE) for m, p in OPERATIONS if m == "POST"
]


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=[f"{m} {p} {g.value}" for m, p, g in CASES])
def test_no_server_errors(api_schema, method, path, mode):
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def fuzz(case) -> None:
        case.call_and_validate(checks=[not_a_server_error, status_code_conformance, response_schema_conformance])

    fuzz()
