"""benchmarks/live_loop.py on a tiny stream of demo cases: every system replays the months through a real
decision log, the loop learns a label that appears later, and the section and chart say what happened."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.live_loop import (
    END,
    START,
    Stream,
    budget_ratio,
    new_agencies,
    render,
    run_stream,
    svg_chart,
    systems_for,
)
from training.demo import DEMO_CORPUS


def _stream() -> Stream:
    """Four demo categories: 60 cases to start, then 3 months of 24; a fifth category (with its own agency)
    appears from the first month on."""
    corpus = pd.read_csv(DEMO_CORPUS)
    cats = corpus["category"].value_counts().index[:5]
    old, new = list(cats[:4]), cats[4]
    rng = np.random.default_rng(0)
    base = corpus[corpus["category"].isin(old)].groupby("category").head(30).sample(frac=1, random_state=0)
    fresh = corpus[corpus["category"] == new].head(12)
    frame = pd.concat([base.iloc[:60], pd.concat([base.iloc[60:], fresh]).sample(frac=1, random_state=1)])
    frame = frame.reset_index(drop=True)
    frame["case_id"] = [f"t{i}" for i in range(len(frame))]
    frame.loc[frame["category"] == new, "agency"] = "新成立的办公室"
    start = datetime(2018, 1, 1, tzinfo=UTC)
    frame["when"] = [start + timedelta(days=int(i // 24) * 31, minutes=int(m))
                     for i, m in zip(range(len(frame)), rng.permutation(len(frame)))]
    cols = ["case_id", "text", "category", "agency", "when"]
    initial = frame.iloc[:60][cols].reset_index(drop=True)
    months = []
    for k in range(3):
        part = frame.iloc[60 + 24 * k: 84 + 24 * k][cols].copy()
        first = datetime(2018, 3 + k, 2, tzinfo=UTC)
        part["when"] = [first + timedelta(minutes=i) for i in range(len(part))]
        months.append((f"2018-0{3 + k}", part.reset_index(drop=True)))
    return Stream("qingdao", ["category", "agency"], initial, months, "demo cases standing in for Qingdao")


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    stream = _stream()
    work = tmp_path_factory.mktemp("live-loop")
    systems = systems_for(stream, seeds=1, share=0.25)
    assert [s.name for s in systems] == ["a", "b", "bh90", "bh180", "br", "brb", "c", "cu", "d0",
                                              "d2x0"]
    lines: list[str] = []
    return stream, run_stream(stream, systems, work, resume=False, say=lines.append), lines, work


def test_every_system_is_scored_on_the_same_cases_and_labels_its_share(replay):
    stream, results, lines, work = replay
    for name, result in results.items():
        assert [e["month"] for e in result["months"]] == ["2018-03", "2018-04", "2018-05"]
        labeled = [e["labeled"] for e in result["months"]]
        assert labeled == {"a": [0, 0, 0], "b": [24, 24, 24], "bh90": [24, 24, 24], "bh180": [24, 24, 24],
                           "br": [24, 24, 24], "brb": [24, 24, 24], "c": [6, 6, 6], "cu": [6, 6, 6], "d0": [6, 6, 6],
                           "d2x0": [12, 12, 12]}[name]
        first = result["months"][0]
        assert first["truth"] == results["a"]["months"][0]["truth"]  # the same cases for every system
    # the renames system asked the log each month (a new agency that takes no old one's cases is no rename)
    assert [e["renames"] for e in results["br"]["months"][:2]] == [[], []]
    # the first month is predicted by the same initial model in every system
    assert len({tuple(r["months"][0]["pred"]["category"]) for r in results.values()}) == 1
    # (b) learns the new category from its corrections; (a) never can
    new = stream.months[0][1]["category"][stream.months[0][1]["agency"] == "新成立的办公室"].iloc[0]
    last_b = results["b"]["months"][-1]
    assert new not in results["a"]["months"][-1]["pred"]["category"]
    assert any(p == t == new for p, t in zip(last_b["pred"]["category"], last_b["truth"]["category"]))
    # the log's live accuracy is the benchmark's own count
    for e in results["b"]["months"]:
        for t in ("category", "agency"):
            right = [p == y for p, y in zip(e["pred"][t], e["truth"][t]) if y is not None]
            assert e["live_accuracy"][t] == pytest.approx(np.mean(right))
    assert e["psi"]["category"] is not None and 0 <= e["unseen_token_share"] <= 1
    assert len(lines) == 1 + 10 * 3 and (work / "qingdao-results.json").exists()
    assert all("的" not in ln for ln in lines)  # progress lines carry numbers and labels, never complaint text


def test_resume_reuses_cached_systems(replay):
    stream, results, _, work = replay
    lines: list[str] = []
    again = run_stream(stream, systems_for(stream, seeds=1, share=0.25), work, resume=True, say=lines.append)
    assert lines == [] and again["c"]["months"][1]["pred"] == results["c"]["months"][1]["pred"]


def test_new_agencies_count_cases_routed_after_the_first_correction(replay):
    stream, results, _, _ = replay
    rows = new_agencies(stream, results["b"])
    assert not {r["agency"] for r in rows} & set(stream.initial["agency"])  # only agencies the export lacks
    row = next(r for r in rows if r["agency"] == "新成立的办公室")
    assert row["first_seen"] == row["first_corrected"] == "2018-03"
    assert row["cases"] == 12 and row["cases_after"] == row["cases"] - sum(
        1 for t in results["b"]["months"][0]["truth"]["agency"] if t == "新成立的办公室")
    assert row["routed_right_after"] >= 1
    assert row["cases_later"] == row["cases_after"] and row["routed_right_later"] == row["routed_right_after"]


def test_the_section_and_the_chart(replay, tmp_path: Path):
    stream, results, _, _ = replay
    body = render([stream], {"qingdao": results}, "cmd", 60.0, 0.25)
    assert body.startswith(START) and body.rstrip().endswith(END)
    assert "| 2018-03 | 24 |" in body and "(b) against (a):" in body and "(c) against (d2x):" in body
    assert "(b) with --half-life 90d against (b):" in body
    assert "equals the benchmark's own count in 6 of 6 month-targets." in body
    assert "target \"(c) at least as accurate as (d) with twice the budget\"" in body
    svg = svg_chart(stream, results)
    assert svg.startswith("<svg") and svg.count("<polyline") == 2 * 5 and "category accuracy" in svg


def test_budget_ratio_interpolates_in_log_budget():
    ratio, _ = budget_ratio(0.80, 0.78, 0.82, 0.90, 0.25)
    assert ratio == pytest.approx(2 ** 0.5)  # halfway between 1x and 2x in log2
    assert budget_ratio(0.86, 0.78, 0.82, 0.90, 0.25)[0] == pytest.approx(2 ** 1.5)
    assert budget_ratio(0.77, 0.78, 0.82, None, 0.25) == (None, "(c) is no better than (d)")
    assert budget_ratio(0.95, 0.78, 0.82, 0.90, 0.25)[1].startswith("(c) is above every random budget measured")
