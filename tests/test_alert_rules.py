"""The shipped Prometheus alert rules parse and name only metrics the service exposes."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from fastapi.testclient import TestClient

from serve import ServiceSettings, create_app
from tests.serve_support import tiny_store

RULES = Path(__file__).resolve().parents[1] / "deploy" / "prometheus" / "hotline-alerts.yml"


def test_every_alert_names_metrics_the_service_exposes(tiny_model, tmp_path):
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) >= 8 and all({"alert", "expr", "annotations"} <= set(r) for r in rules)
    store, _ = tiny_store(tmp_path / "store", tiny_model)
    with TestClient(create_app(ServiceSettings(model_store=store.path))) as c:
        exposition = c.get("/metrics").text
    exposed = set(re.findall(r"^# TYPE (\S+)", exposition, re.M))
    exposed |= {n + "_total" for n in exposed}
    for rule in rules:
        names = {n for n in re.findall(r"\b(hotline_[a-z_]+)", rule["expr"])}
        assert names, rule["alert"]
        assert names <= exposed, f"{rule['alert']} names {sorted(names - exposed)}, not in /metrics"
