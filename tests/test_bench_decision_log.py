"""benchmarks/bench_decision_log.py: the synthetic log has the shape the benchmark claims (two versions, the
second in the last third of the days, corrections for the asked share, one agency the model does not know), and
the write-cost part runs end to end on a small log."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from benchmarks.bench_decision_log import NEW_AGENCY, VERSIONS, main, synthesize
from live.log import DecisionLog
from live.quality import live_quality


def test_synthetic_log_shape(tmp_path):
    decision_log = DecisionLog(f"sqlite:///{tmp_path / 'd.sqlite'}")
    now = datetime(2026, 12, 1, tzinfo=UTC)
    facts = synthesize(decision_log, 3000, days=30, corrected=0.3, now=now)
    counts = decision_log.counts()
    assert counts["decisions"] == 3000 and counts["predictions"] == 6000
    assert facts["corrections"] == counts["corrections"] // 2  # both targets per corrected case
    assert 0.25 < facts["corrections"] / 3000 < 0.35
    window = live_quality(decision_log, now=now)["windows"]["30d"]["versions"]
    assert set(window) == set(VERSIONS)
    assert window[VERSIONS[1]]["decisions"] == pytest.approx(1000, rel=0.1)
    agency = window[VERSIONS[0]]["targets"]["agency"]
    assert 0.75 < agency["accuracy"] < 0.95 and 0 < agency["new_label_share"] < 0.05
    assert NEW_AGENCY in set(decision_log.labeled_cases()["agency"])
    assert window[VERSIONS[0]]["drift_sample"] == pytest.approx(0.1 * window[VERSIONS[0]]["decisions"], rel=0.3)
    decision_log.close()


def test_write_cost_part_prints_its_table(capsys):
    assert main(["--parts", "write-cost", "--write-decisions", "300", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "| 0004 + 0003's ix_predictions_quality over every prediction | " in out
    assert "| no quality index (floor) | " in out and "(1.00) |" in out and "Machine: " in out
