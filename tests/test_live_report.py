"""`hotline report --live`: every number of the live report equals a count by hand over the decisions and
corrections the log was built from; the JSON holds the same numbers as the page; bad options are clear errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from live.db import default_url
from live.log import DecisionLog
from live.quality import live_quality
from tests.live_support import (
    AGENCIES,
    CATEGORIES,
    NEW_AGENCY,
    SINCE,
    UNTIL,
    V1,
    V2,
    direct_counts,
    fill,
    finals,
    scenario,
)
from training.cli import main
from training.live_report import live_report, psi_verdict
from training.periods import time_zone

MIX = {"category": dict.fromkeys(CATEGORIES, 10), "agency": {AGENCIES[0]: 30, AGENCIES[1]: 5, AGENCIES[2]: 5,
                                                               AGENCIES[3]: 5}}


@pytest.fixture(autouse=True)
def _no_log_setting(monkeypatch):
    monkeypatch.delenv("HOTLINE_DECISION_LOG_URL", raising=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store folder with v1's manifest only (v2 was deleted: no training mix), and the log beside it."""
    path = tmp_path_factory.mktemp("live-store")
    (path / V1).mkdir()
    (path / V1 / "manifest.json").write_text(json.dumps({"files": {}, "labels": MIX}, ensure_ascii=False),
                                             encoding="utf-8")
    decision_log = DecisionLog(default_url(path))
    s = scenario()
    fill(decision_log, s)
    decision_log.close()
    return path, s


@pytest.fixture(scope="module")
def report(store):
    path, s = store
    decision_log = DecisionLog(default_url(path))
    try:
        yield live_report(decision_log, SINCE, UNTIL, mixes={V1: MIX}, tz=time_zone("UTC"), time_zone_name="UTC"), s
    finally:
        decision_log.close()


@pytest.mark.parametrize("target", ["category", "agency"])
def test_headline_and_weeks_equal_a_count_by_hand(report, target):
    r, s = report
    want = direct_counts(s, target)
    h = r.headline[target]
    assert (h["predictions"], h["labeled"], h["right"], h["auto_labeled"], h["auto_right"]) == (
        want["predictions"], want["labeled"], want["right"], want["auto_labeled"], want["auto_right"])
    assert h["accuracy"] == pytest.approx(want["accuracy"])
    assert h["review_rate"] == pytest.approx(want["review_rate"])
    assert h["new_label_share"] == pytest.approx(want["new"] / want["labeled"])
    weekly = r.weekly[target]
    assert list(weekly["week"]) == ["2026-11-02", "2026-11-09", "2026-11-16", "2026-11-23"]
    for k, row in enumerate(weekly.itertuples()):
        w = direct_counts(s, target, since=SINCE + timedelta(weeks=k), until=SINCE + timedelta(weeks=k + 1))
        assert (row.predictions, row.labeled, row.right) == (w["predictions"], w["labeled"], w["right"]) != (0, 0, 0)
        assert row.versions == (V1 if k < 2 else V2)
    assert weekly["labeled"].sum() == h["labeled"]


def test_per_version_numbers_are_what_live_quality_answers(report, store):
    r, _ = report
    path, _ = store
    decision_log = DecisionLog(default_url(path))
    q = live_quality(decision_log, windows=[28], now=UNTIL, until=UNTIL, mixes={V1: MIX})
    decision_log.close()
    assert r.versions == q["windows"]["28d"]["versions"]
    assert r.versions[V1]["targets"]["agency"]["label_psi"] > 0.1  # trained on a mix heavy in one agency
    assert r.versions[V2]["targets"]["agency"]["label_psi"] is None
    assert any("20261115-000000.000-bbbbbb" in n and "PSI is not shown" in n for n in r.notes)


def test_changes_confusion_and_new_labels_add_up(report):
    r, s = report
    final = finals(s.corrections)
    inside = [d for d in s.decisions if SINCE <= d.created_at < UNTIL]
    want: dict[tuple[str, str, str], int] = {}
    for d in inside:
        td = next(t for t in d.labels if t.target == "agency")
        if (d.case_id, "agency") in final:
            truth, source = final[(d.case_id, "agency")]
            if truth != td.label:
                want[(td.label, truth, source)] = want.get((td.label, truth, source), 0) + 1
    changes = r.changes["agency"]
    got = {(row.predicted, row.final, src): getattr(row, src) for row in changes.itertuples()
           for src in ("dispatcher", "agency_return", "audit") if getattr(row, src)}
    assert got == want
    assert list(changes["cases"]) == sorted(changes["cases"], reverse=True)
    h = r.headline["agency"]
    assert changes["cases"].sum() == h["labeled"] - h["right"]
    labels, m = r.confusion["agency"]
    assert m.sum() == h["labeled"] and m.trace() == h["right"]
    assert NEW_AGENCY in labels
    new = r.new_labels["agency"]
    assert list(new["label"]) == [NEW_AGENCY]
    assert new["cases"].iloc[0] == direct_counts(s, "agency")["new"]
    assert bool(changes.loc[changes["final"] == NEW_AGENCY, "new_label"].all())
    # the audit that overruled an agency's return on case C010 is the final label
    assert final[("C010", "agency")] == (AGENCIES[0], "audit")


def test_drift_signals(report):
    r, s = report
    d = r.decisions
    inside = [x for x in s.decisions if SINCE <= x.created_at < UNTIL]
    sampled = [x for x in inside if x.n_tokens is not None]
    assert d["decisions"] == len(inside) == 56
    assert d["drift_sample"] == len(sampled)
    assert d["unseen_token_share"] == pytest.approx(sum(x.n_unseen for x in sampled) / sum(x.n_tokens
                                                                                          for x in sampled))
    psi = r.weekly_psi["agency"]
    assert set(psi["model_version"]) == {V1, V2}
    assert psi.loc[psi["model_version"] == V2, "reading"].eq("no training mix").all()
    assert psi_verdict(0.05) == "stable" and psi_verdict(0.2) == "moving" and psi_verdict(0.3) == "shifted"


def test_weeks_start_on_monday_in_the_report_zone(store):
    path, _ = store
    decision_log = DecisionLog(default_url(path))
    r = live_report(decision_log, SINCE, UNTIL, tz=time_zone("Asia/Shanghai"))
    decision_log.close()
    weekly = r.weekly["category"]
    # Monday 00:00 in Shanghai is Sunday 16:00 UTC: the period starts inside the week of 11-02, so five weeks
    assert list(weekly["week"]) == ["2026-11-02", "2026-11-09", "2026-11-16", "2026-11-23", "2026-11-30"]
    assert weekly["to"].iloc[0] == datetime(2026, 11, 8, 16, tzinfo=UTC)
    assert weekly["predictions"].sum() == 56
    assert list(weekly["days"]) == pytest.approx([6 + 16 / 24, 7, 7, 7, 8 / 24], abs=1e-3)


def test_the_command_writes_page_json_and_tables_with_the_same_numbers(store, tmp_path, capsys):
    path, s = store
    out = tmp_path / "live"
    code = main(["report", "--live", "--since", "2026-11-02", "--until", "2026-11-29", "--timezone", "UTC",
                 "--store", str(path), "--out", str(out)])
    printed, err = capsys.readouterr()
    assert code == 0, err
    want = direct_counts(s, "agency")
    assert f"agency: accuracy {want['accuracy']:.4f} on {want['labeled']} labeled predictions" in printed
    data = json.loads((out / "live.json").read_text(encoding="utf-8"))
    assert data["window"] == {"since": SINCE.isoformat(), "until": UNTIL.isoformat(), "days": 28.0,
                              "time_zone": "UTC"}
    assert data["headline"]["agency"]["labeled"] == want["labeled"]
    assert sum(w["labeled"] for w in data["weekly"]["agency"]) == want["labeled"]
    page = (out / "live.html").read_text(encoding="utf-8")
    assert f'data-target="agency" data-metric="accuracy">{want["accuracy"]:.4f}<' in page
    assert "<script src" not in page and "<link" not in page and "<img" not in page  # nothing to fetch
    assert (out / "tables" / "agency_changes.csv").exists() and (out / "tables" / "weekly_decisions.csv").exists()


def test_an_empty_period_says_so(store, tmp_path, capsys):
    path, _ = store
    code = main(["report", "--live", "--since", "2025-01-01", "--until", "2025-01-31", "--store", str(path),
                 "--out", str(tmp_path / "empty")])
    printed, _ = capsys.readouterr()
    assert code == 0
    assert "0 decisions" in printed and "note: The log has no decisions" in printed
    assert "The log has no decisions" in (tmp_path / "empty" / "live.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("args, message", [
    (["--live", "--out", "OUT"], "--live needs --since DATE"),
    (["--live", "--since", "2026-11-02", "--data", "x.csv", "--out", "OUT"], "--data belong\\(s\\) to the confusion"),
    (["--since", "2026-11-02", "--out", "OUT"], "--since go\\(es\\) with --live"),
    (["--out", "OUT"], "--data is required"),
    (["--live", "--since", "2026-11-09", "--until", "2026-11-01", "--out", "OUT"], "must be after --since"),
    (["--live", "--since", "soon", "--out", "OUT"], "--since must be a date"),
    (["--live", "--since", "2026-11-02", "--log", "sqlite:////nowhere/decisions.sqlite", "--out", "OUT"],
     "no decision log at sqlite:////nowhere/decisions.sqlite"),
    (["--live", "--since", "2026-11-02", "--log", "postgresql+psycopg://u:secret@127.0.0.1:1/db", "--out", "OUT"],
     "cannot prepare the decision log at postgresql\\+psycopg://u:\\*\\*\\*@127.0.0.1:1/db"),
])
def test_bad_options_are_clear_errors(store, tmp_path, capsys, args, message):
    import re

    path, _ = store
    code = main(["report", *[str(tmp_path / "out") if a == "OUT" else a for a in args], "--store", str(path)])
    _, err = capsys.readouterr()
    assert code == 2
    assert re.search(message, err), err
    assert "secret" not in err


def test_the_report_on_postgresql_equals_the_count():
    """The same log in PostgreSQL (the CI server; a schema of this test's own): migrations 0001-0004, the scans
    and the report's numbers as on SQLite."""
    import secrets

    from sqlalchemy import create_engine

    from tests.postgres_support import system_url

    base = system_url()
    schema = f"live_report_{secrets.token_hex(4)}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    url = base + ("&" if "?" in base else "?") + f"options=-csearch_path%3D{schema}"
    try:
        decision_log = DecisionLog(url)
        s = scenario()
        fill(decision_log, s)
        r = live_report(decision_log, SINCE, UNTIL, mixes={V1: MIX}, tz=time_zone("UTC"))
        decision_log.close()
        for target in ("category", "agency"):
            want = direct_counts(s, target)
            h = r.headline[target]
            assert (h["predictions"], h["labeled"], h["right"], h["auto_right"]) == (
                want["predictions"], want["labeled"], want["right"], want["auto_right"])
            assert list(r.weekly[target]["predictions"]) == [14, 14, 14, 14]
        assert r.new_labels["agency"]["label"].tolist() == [NEW_AGENCY]
        assert r.versions[V1]["targets"]["agency"]["label_psi"] > 0.1
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()
