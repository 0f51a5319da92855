"""Group-aware hold-out and folds: repeat calls about one problem must not sit on both sides of a split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from classifier.config import TrainingConfig
from classifier.errors import MissingColumnError, TrainingDataError
from training.cli import main
from training.data import validate
from training.splits import group_values, holdout_split, kfold_splits
from training.train import train as train_model

SYLLABLES = list("甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未申酉戌亥金木水火土日月星山川")


def repeat_callers(n_groups: int = 60, calls: int = 5, seed: int = 0) -> pd.DataFrame:
    """Each caller repeats one made-up complaint (random characters) a few times with a random label: the label
    is learnable only by remembering a caller's earlier calls, never from the words themselves."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        core = "".join(rng.choice(SYLLABLES, 14))
        label = ["交通秩序", "供暖供热"][g % 2]
        for c in range(calls):
            rows.append({"text": f"{core}第{c + 1}次来电", "category": label, "caller": f"c{g:03d}"})
    return pd.DataFrame(rows)


def test_group_values_follow_the_validated_rows_and_missing_groups_stand_alone():
    df = pd.DataFrame({"text": ["路灯坏了", "", "路灯坏了", "公交晚点", "噪音扰民"],
                       "category": ["a", "a", "a", "b", "b"], "caller": ["x", "y", "x", None, " "]})
    clean, report = validate(df, "text", {"category": "category"}, min_class_count=1)
    assert report.rows_used == 3  # the empty text and the exact duplicate are gone
    groups = group_values(df, "caller", clean)
    assert groups[0] == "x" and groups[1] != groups[2]  # missing and blank groups: each its own
    assert len(set(groups.tolist())) == 3
    with pytest.raises(MissingColumnError, match="group column 'phone' not in the data"):
        group_values(df, "phone", clean)


def test_holdout_keeps_each_group_on_one_side_with_about_the_asked_share():
    df = repeat_callers()
    groups = df["caller"].to_numpy(dtype=object)
    fit_rows, test = holdout_split(df["category"], 0.2, seed=3, groups=groups)
    assert set(groups[fit_rows]).isdisjoint(groups[test])
    assert len(fit_rows) + len(test) == len(df) and 0.15 <= len(test) / len(df) <= 0.25
    assert set(df["category"].iloc[test]) == {"交通秩序", "供暖供热"}  # stratified: both classes tested
    again = holdout_split(df["category"], 0.2, seed=3, groups=groups)
    assert np.array_equal(again[1], test)  # seeded


def test_kfold_puts_every_group_in_exactly_one_test_fold():
    df = repeat_callers(n_groups=30)
    groups = df["caller"].to_numpy(dtype=object)
    folds = kfold_splits(df["category"], 5, seed=0, groups=groups)
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested.tolist()) == list(range(len(df)))
    for fit_rows, test in folds:
        assert set(groups[fit_rows]).isdisjoint(groups[test])
    with pytest.raises(TrainingDataError, match="3 groups cannot fill 5 folds"):
        kfold_splits(["a", "b"] * 3, 5, seed=0, groups=np.array(["g1", "g2", "g3"] * 2, dtype=object))


def test_grouped_holdout_measures_generalization_not_memory():
    """On repeat callers the random hold-out rewards remembering earlier calls (near-perfect accuracy); the
    grouped one shows the model cannot predict a new caller's label (about chance)."""
    df = repeat_callers()
    config = TrainingConfig(min_class_count=1, seed=5).with_updates(**{"features.min_df": 1})
    random_split = train_model(df, text="text", targets={"category": "category"}, config=config)
    grouped = train_model(df, text="text", targets={"category": "category"}, config=config, group="caller")
    assert random_split.metrics["category"]["accuracy"] >= 0.95
    assert grouped.metrics["category"]["accuracy"] <= 0.75
    assert grouped.metrics["category"]["group"] == "caller"
    assert grouped.training_data["columns"]["group"] == "caller"


def test_cli_group_option_and_its_error(tmp_path, capsys):
    path = tmp_path / "calls.csv"
    repeat_callers().to_csv(path, index=False, encoding="gbk")
    args = ["train", str(path), "--text", "text", "--category", "category", "--quiet", "--json",
            "--store", str(tmp_path / "store"), "--min-class-count", "1"]
    assert main([*args, "--group", "caller", "--cv", "3"]) == 0
    assert main([*args, "--group", "电话"]) == 2
    err = capsys.readouterr().err
    assert "group column '电话' not in the data" in err and "Traceback" not in err


def test_tune_with_groups_scores_new_callers_not_remembered_ones():
    from training.tune import tune

    df = repeat_callers(n_groups=40)
    kwargs = dict(text="text", targets={"category": "category"}, grid={"model.C": [1.0]},
                  config=TrainingConfig(min_class_count=1, n_jobs=1).with_updates(**{"features.min_df": 1}), folds=3)
    remembered = tune(df, **kwargs).rows[0]["scores"]["category"]["accuracy"]
    new_callers = tune(df, group="caller", **kwargs).rows[0]["scores"]["category"]["accuracy"]
    assert remembered >= 0.95 and new_callers <= 0.75


def test_a_group_column_with_a_handful_of_groups_is_refused_with_the_reason(tmp_path, capsys):
    """5 callers over hundreds of cases: the hold-out would be one caller, whose labels the others never showed
    (on the Qingdao export: agency accuracy 0.0000)."""
    df = repeat_callers(n_groups=60)
    df["caller"] = [f"第{i % 5 + 1}人" for i in range(len(df))]
    config = TrainingConfig(min_class_count=1, seed=5).with_updates(**{"features.min_df": 1})
    with pytest.raises(TrainingDataError, match=r"the group column has 5 groups over 300 rows \(the largest holds "
                                                r"60\): a group hold-out keeps each group whole .* about 1.0 groups.*"
                                                r"at least 5 groups per test part \(25 here\)"):
        train_model(df, text="text", targets={"category": "category"}, config=config, group="caller")
    with pytest.raises(TrainingDataError, match=r"has 5 groups .* 3-fold group cross-validation .*\(15 here\)"):
        kfold_splits(df["category"], 3, seed=0, groups=df["caller"].to_numpy(dtype=object))
    path = tmp_path / "calls.csv"
    df.to_csv(path, index=False)
    assert main(["train", str(path), "--text", "text", "--category", "category", "--quiet", "--store",
                 str(tmp_path / "store"), "--min-class-count", "1", "--group", "caller"]) == 2
    assert "the group column has 5 groups" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()  # no model saved with metrics that mean nothing
