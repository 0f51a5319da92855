"""``hotline learning-curve``: the product cross-validated on growing fractions of each fold's training part."""

from __future__ import annotations

import json

import numpy as np
import pytest

from classifier.config import TrainingConfig
from classifier.errors import ConfigError
from training.cli import main
from training.curve import CurveResult, learning_curve, parse_fractions, subsample
from training.tune import tune

CONFIG = TrainingConfig(min_class_count=1, n_jobs=1)


@pytest.fixture(scope="module")
def curve(demo_slice):
    lines: list[str] = []
    res = learning_curve(demo_slice[0], text="text", targets={"category": "category"}, config=CONFIG,
                         fractions=(1.0, 0.25, 0.5), folds=2, log=lines.append)
    return res, lines


def test_rows_grow_in_cases_and_the_full_row_is_what_tune_scores(demo_slice, curve):
    res, lines = curve
    assert [r["fraction"] for r in res.rows] == [0.25, 0.5, 1.0]  # sorted
    # 2 folds of 120 cases: 60 training cases per fold, 10 per category; a quarter is round(2.5) = 2 per class
    assert [r["cases"] for r in res.rows] == [12.0, 30.0, 60.0]
    assert len(lines) == 6 and lines[0].startswith("[1/6] fold 1/2 fraction 0.25: 12 cases")
    # all of each fold's training part: the same folds and the same model as tune's single grid point
    tuned = tune(demo_slice[0], text="text", targets={"category": "category"}, grid={"model.C": [1.0]},
                 config=CONFIG, folds=2)
    full = res.rows[-1]["scores"]["category"]
    for metric in ("accuracy", "macro_f1", "top3_accuracy"):
        assert full[metric] == pytest.approx(tuned.rows[0]["scores"]["category"][metric], abs=1e-12)
    assert full["accuracy"] > res.rows[0]["scores"]["category"]["accuracy"]  # 10 cases per class beat 2


def test_table_and_json_say_what_the_last_doubling_gained(curve):
    res, _ = curve
    gain = res.last_doubling()["category"]["accuracy"]
    expected = res.rows[2]["scores"]["category"]["accuracy"] - res.rows[1]["scores"]["category"]["accuracy"]
    assert gain == pytest.approx(expected)  # 30 -> 60 cases: one doubling
    table = res.table()
    assert table.splitlines()[0].split() == ["fraction", "cases", "category", "acc", "category", "macro-F1",
                                             "category", "top-3"]
    assert f"category: the last doubling of the cases gained {gain * 100:+.1f} points of accuracy" in table
    body = res.to_json()
    assert body["folds"] == 2 and len(body["rows"]) == 3
    assert body["last_doubling"]["category"]["accuracy"] == pytest.approx(gain)


def test_last_doubling_is_per_doubling_of_the_cases():
    row = lambda cases, acc: {"fraction": 0, "cases": cases,  # noqa: E731
                              "scores": {"y": {"accuracy": acc, "macro_f1": acc, "top3_accuracy": acc}}}
    res = CurveResult(folds=3, rows=[row(100, 0.70), row(400, 0.80)])  # two doublings, +0.10
    assert res.last_doubling()["y"]["accuracy"] == pytest.approx(0.05)
    assert CurveResult(folds=3, rows=[row(100, 0.7)]).last_doubling() == {}


def test_a_partly_labeled_target_is_scored_on_its_labeled_cases_only(demo_slice):
    df = demo_slice[0].copy()
    df.loc[df.index % 3 == 0, "agency"] = None  # not forwarded
    res = learning_curve(df, text="text", targets={"category": "category", "agency": "agency"}, config=CONFIG,
                         fractions=(0.5, 1.0), folds=2)
    assert set(res.rows[-1]["scores"]) == {"category", "agency"}
    assert 0.0 <= res.rows[-1]["scores"]["agency"]["accuracy"] <= 1.0


def test_a_row_without_the_first_targets_label_does_not_break_the_curve(demo_slice):
    """The retraining notebook's crash: a blank category on a row labeled for another target (handling: 直办 /
    转办) left a class numpy could not find ("a cannot be empty"); a 2-class target has no top-3 column."""
    df = demo_slice[0].copy()
    df["handling"] = np.where(df.index % 2 == 0, "直办", "转办")
    df.loc[[3, 10, 50], "category"] = None
    res = learning_curve(df, text="text", targets={"category": "category", "handling": "handling"},
                         config=CONFIG.with_updates(rare_policy="other"), fractions=(0.5, 1.0), folds=2)
    assert res.rows[-1]["cases"] == 60.0 and 28 <= res.rows[0]["cases"] <= 32  # 2 folds of 120 rows
    assert res.classes == {"category": 6, "handling": 2}
    head = res.table().splitlines()[0].split()
    assert "handling" in head and head.count("top-3") == 1  # the category's only
    labels = np.array(["a", "\x00", "b", "\x00", None, "a"], dtype=object)
    assert sorted(labels[subsample(labels, 0.5)].tolist(), key=str) == sorted(["\x00", None, "a", "b"], key=str)


def test_subsample_keeps_each_class_in_proportion_and_at_least_one_case():
    labels = np.array(["a"] * 40 + ["b"] * 8 + ["c"])
    idx = subsample(labels, 0.25)
    kept = labels[idx]
    assert (kept == "a").sum() == 10 and (kept == "b").sum() == 2 and (kept == "c").sum() == 1
    assert list(idx) == sorted(set(idx))
    assert list(subsample(labels, 1.0)) == list(range(len(labels)))
    with pytest.raises(ConfigError, match=r"fraction must be in \(0, 1\], got 0.0"):
        subsample(labels, 0.0)


@pytest.mark.parametrize(("raw", "match"), [
    ("x", "comma-separated numbers"),
    ("0.5", "at least two fractions"),
    ("0,1", r"fractions must be in \(0, 1\], got \[0.0\]"),
    ("0.5,0.5,1", "fractions repeat"),
    ("1.5,1", r"got \[1.5\]"),
])
def test_bad_fractions_are_refused(raw, match):
    with pytest.raises(ConfigError, match=match):
        parse_fractions(raw)


def test_parse_fractions_sorts():
    assert parse_fractions("1, 0.25,0.5") == [0.25, 0.5, 1.0]


def test_cli_json_and_an_error_line_for_bad_fractions(demo_slice, capsys):
    code = main(["learning-curve", demo_slice[1], "--text", "text", "--category", "category", "--min-class-count", "1",
                 "--folds", "2", "--fractions", "0.5,1", "--json"])
    assert code == 0
    body = json.loads(capsys.readouterr().out)
    assert [r["fraction"] for r in body["rows"]] == [0.5, 1.0] and body["folds"] == 2
    code = main(["learning-curve", demo_slice[1], "--text", "text", "--category", "category", "--fractions", "1"])
    assert code == 2
    assert capsys.readouterr().err.strip() == "error: give at least two fractions to draw a curve, got [1.0]"


def test_cli_table(demo_slice, capsys):
    code = main(["learning-curve", demo_slice[1], "--text", "text", "--category", "category", "--min-class-count", "1",
                 "--folds", "2", "--fractions", "0.5,1", "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith("2-fold cross-validation, the training part cut to each fraction:")
    assert "category: the last doubling of the cases gained" in out
