"""Time-ordered hold-out and folds (``--time``): a model is always used on cases newer than the ones it learned
from, so the hold-out is the latest cases and the folds chain forward in time."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from classifier.config import TrainingConfig
from classifier.errors import MissingColumnError, TimeColumnError, TrainingDataError
from training.cli import main
from training.data import validate
from training.splits import parse_times, time_folds, time_holdout_split, time_values
from training.train import train

CONFIG = TrainingConfig(min_class_count=1, n_jobs=1, seed=3)


def days(*offsets: int) -> np.ndarray:
    return (np.datetime64("2018-01-01") + np.asarray(offsets, dtype="timedelta64[D]")).astype("datetime64[ns]")


def dated(df: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """The cases on distinct days in a shuffled order (the file's order is not the time order)."""
    out = df.copy()
    order = np.random.default_rng(seed).permutation(len(out))
    out["date"] = [str(d)[:10] for d in days(*order)]
    return out


def test_the_holdout_is_the_latest_share_and_an_instant_stays_on_one_side():
    times = days(5, 1, 9, 3, 7, 2, 8, 0, 6, 4)
    train_idx, test_idx = time_holdout_split(times, 0.2)
    assert sorted(times[test_idx].tolist()) == sorted(days(8, 9).tolist())
    assert times[train_idx].max() < times[test_idx].min() and len(train_idx) == 8
    # the cut falls inside day 8's cases: all of them go to the test part (3 of 10, not 2)
    tied = days(0, 1, 2, 3, 4, 5, 6, 8, 8, 9)
    train_idx, test_idx = time_holdout_split(tied, 0.2)
    assert sorted(test_idx.tolist()) == [7, 8, 9] and len(train_idx) == 7


def test_a_group_with_calls_in_the_held_out_period_is_purged_from_training():
    times = days(0, 1, 2, 3, 4, 5, 6, 7, 8, 9)
    groups = np.array(["a", "b", "c", "d", "e", "f", "g", "h", "a", "i"], dtype=object)
    notes: list[str] = []
    train_idx, test_idx = time_holdout_split(times, 0.2, groups, notes)
    assert test_idx.tolist() == [8, 9] and 0 not in train_idx and len(train_idx) == 7
    assert notes == ["time hold-out: 1 training rows left out because their group also has calls in the held-out "
                     "period"]


def test_forward_chaining_folds_never_learn_from_the_future():
    times = days(*np.random.default_rng(1).permutation(40))
    folds = time_folds(times, 3)
    assert len(folds) == 3
    scored = np.concatenate([test for _, test in folds])
    assert len(scored) == len(set(scored.tolist())) == 30  # periods 1-3 are each scored once; period 0 only trains
    for i, (train_idx, test_idx) in enumerate(folds, 1):
        assert times[train_idx].max() < times[test_idx].min()
        assert len(train_idx) == 10 * i and len(test_idx) == 10
    with pytest.raises(TrainingDataError, match="2 distinct times, too few for 4 periods; lower the number of folds"):
        time_folds(days(0, 0, 0, 1, 1, 1), 3)
    # a caller with calls in a fold's scored period has none of them in that fold's training part
    groups = np.array([f"g{i % 7}" for i in range(40)], dtype=object)
    for train_idx, test_idx in time_folds(times, 3, groups):
        assert set(groups[train_idx]).isdisjoint(groups[test_idx])


def test_time_values_read_common_spellings_and_name_the_rows_without_a_date():
    assert parse_times(["2018-01-31", "2018/2/1 08:30", "2018-02-01T10:00:00+08:00"]).dt.hour.tolist() == [0, 8, 2]
    df = pd.DataFrame({"text": ["路灯坏了", "井盖丢了", "公交晚点", "噪音扰民"], "category": ["a", "a", "b", "b"],
                       "date": ["2018-01-01", "", "昨天", "2018-01-04"]})
    clean, _ = validate(df, "text", {"category": "category"}, min_class_count=1)
    with pytest.raises(TimeColumnError, match=r"2 of 4 rows have no readable date \(rows 3, 4; e.g. a blank\)"):
        time_values(df, "date", clean)
    with pytest.raises(MissingColumnError, match="time column '日期' not in the data"):
        time_values(df, "日期", clean)
    df["date"] = ["2018-01-01", "2018-01-02", "2018-01-03", "2018-01-04"]
    assert time_values(df, "date", clean).tolist() == days(0, 1, 2, 3).tolist()


def test_a_renamed_label_shows_in_the_time_holdout_and_hides_in_a_random_one(demo_slice):
    """The newest cases of one category get a new label (an agency renamed): a random hold-out mixes old and
    new and barely notices; the time hold-out, like production, meets the new name it never learned."""
    df = dated(demo_slice[0])
    renamed = (df["category"] == df["category"].iloc[0]) & (df["date"] >= sorted(df["date"])[-30])
    df.loc[renamed, "category"] = "改名后的类别"
    targets = {"category": "category"}
    at_random = train(df, text="text", targets=targets, config=CONFIG)
    lines: list[str] = []
    in_time = train(df, text="text", targets=targets, config=CONFIG, time="date", log=lines.append)
    m = in_time.metrics["category"]
    assert m["split"] == "time" and m["time"]["column"] == "date"
    newest = sorted(df["date"])
    assert m["time"]["test_from"][:10] == newest[-24] and m["time"]["test_until"][:10] == newest[-1]
    assert m["time"]["train_until"][:10] == newest[-25] and m["n"] == 24
    assert any(ln.startswith("measuring on the newest cases: training on the 96 up to " + newest[-25]) for ln in lines)
    assert "改名后的类别" in in_time.classes("category")  # the saved model is refitted on every row
    # every renamed case in the held-out latest 24 is one the model could not know
    n_new = int(renamed[df["date"] >= newest[-24]].sum())
    assert n_new >= 3 and m["accuracy"] <= 1 - n_new / 24
    assert at_random.metrics["category"]["accuracy"] - m["accuracy"] >= 0.05
    assert in_time.training_data["columns"]["time"] == "date"


def test_cv_with_time_uses_forward_chaining_folds(demo_slice):
    df = dated(demo_slice[0])
    model = train(df, text="text", targets={"category": "category"}, config=CONFIG.with_updates(cv_folds=3,
                                                                                                  test_size=0.0),
                  time="date")
    folds = model.metrics["category"]["cv"]["accuracy"]["folds"]
    assert len(folds) == 3 and all(0.3 <= a <= 1 for a in folds)


def test_tune_and_learning_curve_score_forward_chaining_folds(demo_slice):
    from training.curve import learning_curve
    from training.tune import cv_folds, tune

    df = dated(demo_slice[0])
    clean, _, splits = cv_folds(df, "text", {"category": "category"}, CONFIG, 3, time="date")
    times = time_values(df, "date", clean)
    assert [len(te) for _, te in splits] == [30, 30, 30]
    assert all(times[tr].max() < times[te].min() for tr, te in splits)
    tuned = tune(df, text="text", targets={"category": "category"}, grid={"model.C": [1.0]}, config=CONFIG, folds=3,
                 time="date")
    curve = learning_curve(df, text="text", targets={"category": "category"}, config=CONFIG, fractions=(0.5, 1.0),
                           folds=3, time="date")
    full = curve.rows[-1]["scores"]["category"]["accuracy"]
    assert full == pytest.approx(tuned.rows[0]["scores"]["category"]["accuracy"], abs=1e-12)
    assert curve.rows[-1]["cases"] == 60.0  # mean of 30, 60 and 90 training cases


def test_cli_time_option_in_train_tune_and_learning_curve(demo_slice, tmp_path, capsys):
    path = tmp_path / "dated.csv"
    dated(demo_slice[0]).to_csv(path, index=False)
    common = [str(path), "--text", "text", "--category", "category", "--min-class-count", "1", "--time", "date"]
    assert main(["train", *common, "--quiet", "--store", str(tmp_path / "store")]) == 0
    assert re.search(r"On the 24 newest cases \(\d{4}-\d\d-\d\d to \d{4}-\d\d-\d\d\), held out from training",
                     capsys.readouterr().out)
    assert main(["tune", *common, "--C", "1", "--folds", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["folds"] == 2
    assert main(["learning-curve", *common, "--fractions", "0.5,1", "--folds", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"][-1]["cases"] == 60.0  # 40 and 80 training cases
    assert main(["train", *common[:-1], "日期", "--quiet", "--store", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert "time column '日期' not in the data" in err and "Traceback" not in err
