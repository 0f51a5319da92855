"""The retraining cycle's decisions (training.retraining): the newest cases held out, the current version's
settings (and saying so), cases neither model learned from, promotion on the verdict."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pandas as pd
import pytest

from classifier.config import TrainingConfig
from classifier.errors import ConfigError, MissingColumnError
from classifier.store import ModelStore
from training.retraining import (
    find_date_column,
    newest_holdout,
    promotion_decision,
    training_settings,
    unseen_cases,
)


@pytest.fixture()
def dated() -> pd.DataFrame:
    days = ["2018-01-03", "2018-01-01", None, "2018-01-05", "2018-01-05", "2018-01-02", "2018-01-04",
            "2018-01-05", "2018-01-01", "2018-01-02"]
    return pd.DataFrame({"诉求内容": [f"case {i}" for i in range(10)], "受理日期": days, "编号": list(range(10))})


def test_the_date_column_is_found_by_name_and_checked(dated):
    assert find_date_column(dated) == "受理日期"  # a case without a date does not disqualify the column
    full = dated.fillna({"受理日期": "2017-12-31"})
    assert find_date_column(full, "受理日期") == "受理日期"
    noisy = dated.assign(受理日期=["昨天"] * 2 + dated["受理日期"].tolist()[2:])
    assert find_date_column(noisy) is None  # 2 of 9 filled values are not dates
    with pytest.raises(MissingColumnError, match="date column '日期' not in the export"):
        find_date_column(full, "日期")
    with pytest.raises(ConfigError, match="only 0% of its values are dates"):
        find_date_column(full, "诉求内容")


def test_the_newest_cases_are_held_out_and_a_day_is_never_split(dated):
    learn, new, how = newest_holdout(dated, 0.2, "受理日期")
    # the newest 20 % is 2 cases, but 2018-01-05 has three: all three are held out; the undated row is oldest
    assert sorted(new["编号"]) == [3, 4, 7] and len(learn) == 7 and 2 in set(learn["编号"])
    assert list(learn["编号"]) == sorted(learn["编号"])  # the export's order is kept
    assert how == ("held out the newest 3 cases (30%, 受理日期 from 2018-01-05 to 2018-01-05); learning from the "
                   "7 before them")
    learn, new, how = newest_holdout(dated, 0.2, None, seed=1)
    assert len(new) == 2 and how.startswith("no date column: held out a random 20% (2 cases, seed 1)")
    with pytest.raises(ConfigError, match="between 0 and 1"):
        newest_holdout(dated, 1.0)


def test_settings_come_from_a_file_else_the_current_version_else_the_defaults(gbk_store, tmp_path):
    empty = ModelStore(tmp_path / "empty")
    config, said = training_settings(empty, default=TrainingConfig(min_class_count=7))
    assert config.min_class_count == 7 and said.startswith("default settings (the store has no current version")
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"rare_policy": "other"}), encoding="utf-8")
    config, said = training_settings(empty, path)
    assert config.rare_policy == "other" and said == f"settings from the config file {path}"
    # the current version's own settings, with its copy of a dictionary whose original file is gone
    store = ModelStore(tmp_path / "store")
    shutil.copytree(gbk_store, store.path)
    current = store.current()
    manifest_path = store.path / current / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["config"]["user_dict"] = "/nowhere/userdict.txt"
    manifest["config"]["min_class_count"] = 4
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    (store.path / current / "user_dict.txt").write_text("兴庆区 ns\n", encoding="utf-8")
    config, said = training_settings(store)
    assert said == f"settings of the current version {current}" and config.min_class_count == 4
    assert config.user_dict == str(store.path / current / "user_dict.txt")


def test_cases_a_model_learned_from_are_left_out(gbk_store, gbk_export):
    stored = ModelStore(gbk_store).load()
    trained = pd.read_csv(gbk_export, encoding="gbk")
    new = pd.DataFrame({"留言详情": ["一条从没见过的投诉：小区门口的井盖丢了三天", *trained["留言详情"].iloc[:4]]})
    fair, notes = unseen_cases(new, "留言详情", [stored])
    assert fair["留言详情"].tolist() == [new["留言详情"].iloc[0]]
    assert notes == [f"left out 4 held-out cases version {stored.version} learned from (its row fingerprint has "
                     "them; about 1 case in 10,000 matches it by chance)"]
    old = SimpleNamespace(model=stored.model, path=None, manifest={}, version="old")
    fair, notes = unseen_cases(new, "留言详情", [old])
    assert len(fair) == 5 and notes == ["version old has no row fingerprint: cannot tell which held-out cases it "
                                        "learned from"]


def _report(*verdicts: str, warnings: tuple[str, ...] = ()) -> SimpleNamespace:
    comparisons = {f"t{i}": SimpleNamespace(paired={"verdict": v}) for i, v in enumerate(verdicts)}
    return SimpleNamespace(comparisons=comparisons, overlap_warnings=lambda: list(warnings))


@pytest.mark.parametrize(("verdicts", "promote", "why"), [
    (("better", "better"), True, "t0: better; t1: better"),
    (("better", "no significant difference"), True, "t0: better; t1: no significant difference"),
    (("no significant difference",), False, "no target is significantly better: keep what works"),
    (("better", "worse"), False, "worse on t1"),
])
def test_promotion_follows_the_verdict(verdicts, promote, why):
    decision = promotion_decision(_report(*verdicts))
    assert decision.promote is promote and why in str(decision)


def test_no_promotion_on_an_unfair_comparison():
    decision = promotion_decision(_report("better", warnings=("60 of the 60 evaluated cases ...",)))
    assert not decision.promote and "the comparison is unfair: 60 of the 60" in str(decision)
