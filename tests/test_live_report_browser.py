"""The live report in headless Chromium (Debian's ``chromium``): it opens offline with no console errors and no
request but its own, and the headline numbers it shows equal a count by hand over the decisions and corrections
the log was built from."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from live.db import default_url
from live.log import DecisionLog
from tests.browser_support import chromium, needs_chromium, watch
from tests.live_support import SINCE, V1, direct_counts, fill, scenario
from training.cli import main

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def page_and_scenario(tmp_path_factory, tiny_model):
    store = tmp_path_factory.mktemp("live-browser-store")
    (store / V1).mkdir()
    labels = {t: dict.fromkeys(tiny_model.classes(t), 3) for t in ("category", "agency")}
    (store / V1 / "manifest.json").write_text(json.dumps({"files": {}, "labels": labels}, ensure_ascii=False),
                                              encoding="utf-8")
    decision_log = DecisionLog(default_url(store))
    s = scenario()
    fill(decision_log, s)
    decision_log.close()
    out = tmp_path_factory.mktemp("live-browser")
    assert main(["report", "--live", "--since", "2026-11-02", "--until", "2026-11-29", "--timezone", "UTC",
                 "--store", str(store), "--out", str(out)]) == 0
    return out / "live.html", s


def test_live_report_shows_the_counted_numbers_offline(page_and_scenario):
    page_file, s = page_and_scenario
    url = page_file.resolve().as_uri()
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        events = watch(page)
        page.goto(url, wait_until="load")
        assert page.title() == "Live quality 2026-11-02 to 2026-11-30"
        inside = [d for d in s.decisions if SINCE <= d.created_at < SINCE + timedelta(weeks=4)]
        assert page.locator('[data-live="decisions"]').inner_text() == f"{len(inside)}"
        review = sum(d.needs_review for d in inside) / len(inside)
        assert page.locator('[data-live="review-rate"]').inner_text() == f"{100 * review:.1f}%"
        for target in ("category", "agency"):
            want = direct_counts(s, target)
            shown = page.locator(f'[data-target="{target}"][data-metric="accuracy"]').inner_text()
            assert shown == f"{want['accuracy']:.4f}"
            auto = page.locator(f'[data-target="{target}"][data-metric="auto-accuracy"]').inner_text()
            assert auto == f"{want['auto_accuracy']:.4f}"
            # the overview table: labeled and auto-routed labeled cases of the target's row
            row = page.locator("#headline tbody tr", has_text=target).first.locator("td")
            assert row.nth(1).inner_text() == str(want["predictions"])
            assert row.nth(3).inner_text() == str(want["labeled"])
            assert row.nth(5).inner_text() == str(want["auto_labeled"])
            # accuracy by week: each week's labeled predictions and accuracy
            weekly = [direct_counts(s, target, since=SINCE + timedelta(weeks=k),
                                    until=SINCE + timedelta(weeks=k + 1)) for k in range(4)]
            rows = page.locator(f"#weekly-{target} tbody tr")
            assert rows.count() == 4
            for k, w in enumerate(weekly):
                cells = rows.nth(k).locator("td")
                assert cells.nth(5).inner_text() == str(w["labeled"])
                assert cells.nth(6).inner_text() == f"{w['accuracy']:.4f}"
            # a point per week and line that has a value there: accuracy, auto-routed, sent to review (only
            # where some reviewed case got a final label), review rate
            points = sum(2 + (w["auto_labeled"] > 0) + (w["labeled"] > w["auto_labeled"]) for w in weekly)
            assert page.locator(f"section#live-{target} svg").first.locator("circle").count() == points
        # the changes table sorts: "cases" ascending after one click
        header = page.locator("#changes-agency th", has_text="cases").first
        header.click()
        cases = [int(v) for v in page.locator("#changes-agency tbody tr td:nth-child(3)").all_inner_texts()]
        assert cases == sorted(cases) and len(cases) > 2
    assert events.problems == []
    assert events.requests == [url]
