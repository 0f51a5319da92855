"""Renamed and merged agencies: ``--relabel`` in training, and the renames the decision log's corrections show."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from classifier.config import TrainingConfig
from classifier.errors import ConfigError
from classifier.store import ModelStore
from live.log import Correction, Decision, DecisionLog, TargetDecision
from live.renames import as_relabel, suggest_renames, suggestions_frame
from training.cli import main
from training.demo import DEMO_CORPUS
from training.relabel import parse_relabel, read_relabel_file, relabel, resolve
from training.train import train

CONFIG = TrainingConfig(min_class_count=1, n_jobs=1, seed=3, test_size=0.0)
START = datetime(2018, 1, 1, tzinfo=UTC)


def _renamed() -> tuple[pd.DataFrame, list[str]]:
    """Road cases: 50 under the old name 市政局, 3 under its new name 城管局; traffic cases to 交警队."""
    corpus = pd.read_csv(DEMO_CORPUS)
    road = corpus[corpus["category"] == "道路设施"]["text"].tolist()
    traffic = corpus[corpus["category"] == "交通秩序"]["text"].tolist()[:40]
    held_out, road = road[:10], road[10:63]
    agency = ["市政局"] * 50 + ["城管局"] * 3
    return pd.DataFrame({"text": road + traffic, "agency": agency + ["交警队"] * len(traffic)}), held_out


def test_relabel_teaches_every_old_case_the_new_name_and_the_report_counts_them():
    df, held_out = _renamed()
    plain = train(df, text="text", targets={"agency": "agency"}, config=CONFIG)
    # three corrections under the new name cannot outvote fifty old cases: the road texts still go to 市政局
    assert np.mean([p == "市政局" for p in plain.predict(held_out)["agency"]]) >= 0.8
    renamed = train(df, text="text", targets={"agency": "agency"},
                    config=CONFIG.with_updates(relabel={"agency": {"市政局": "城管局"}}))
    assert set(renamed.classes("agency")) == {"城管局", "交警队"}
    assert np.mean([p == "城管局" for p in renamed.predict(held_out)["agency"]]) >= 0.8
    assert renamed.validation_report.relabeled == {"agency": {"市政局": {"new": "城管局", "cases": 50}}}
    assert "relabeled 50 agency cases of 市政局 as 城管局" in str(renamed.validation_report)
    assert renamed.training_data["relabeled"]["agency"]["市政局"]["cases"] == 50
    assert renamed.config.relabel == {"agency": {"市政局": "城管局"}}
    # a name no case has is said (a typo?), not an error
    typo = train(df, text="text", targets={"agency": "agency"},
                 config=CONFIG.with_updates(relabel={"agency": {"市正局": "城管局"}}))
    assert "relabel agency 市正局 -> 城管局: no case has the label 市正局 (check the spelling)" in \
        str(typo.validation_report)
    with pytest.raises(ConfigError, match=r"--relabel names targets \['category'\]"):
        train(df, text="text", targets={"agency": "agency"},
              config=CONFIG.with_updates(relabel={"category": {"a": "b"}}))


def test_merges_chains_and_bad_mappings():
    frame = pd.DataFrame({"agency": ["A", "B", "C", "D", None], "category": ["x", "y", "x", "y", "x"]})
    out, moved = relabel(frame, {"agency": "agency", "category": "category"},
                         {"agency": {"A": "B", "B": "C"}, "category": {"x": "z"}})
    assert out["agency"].tolist()[:4] == ["C", "C", "C", "D"] and out["agency"].isna().tolist()[4]
    assert out["category"].tolist() == ["z", "y", "z", "y", "z"]
    assert moved == {"agency": {"A": {"new": "C", "cases": 1}, "B": {"new": "C", "cases": 1}},
                     "category": {"x": {"new": "z", "cases": 3}}}
    assert frame["agency"].tolist()[0] == "A"  # the caller's frame is left alone
    assert resolve({"agency": {"甲": "乙", "丙": "乙"}}) == {"agency": {"甲": "乙", "丙": "乙"}}  # a merge
    with pytest.raises(ConfigError, match="goes round in a circle: A -> B -> A"):
        resolve({"agency": {"A": "B", "B": "A"}})
    with pytest.raises(ConfigError, match="leads back to itself"):
        CONFIG.with_updates(relabel={"agency": {"A": "B", "B": "A"}})
    assert parse_relabel(["黄岛区政府=西海岸新区政府", "category:旧类=新类"]) == {
        "agency": {"黄岛区政府": "西海岸新区政府"}, "category": {"旧类": "新类"}}
    for bad in ("黄岛区政府", "=新", "旧=", "category:=新"):
        with pytest.raises(ConfigError, match=r"--relabel expects \[TARGET:\]OLD=NEW"):
            parse_relabel([bad])
    with pytest.raises(ConfigError, match="cannot be relabeled as itself"):
        parse_relabel(["甲=甲"])
    with pytest.raises(ConfigError, match="relabeled twice, as '乙' and as '丙'; a split is not a relabeling"):
        parse_relabel(["甲=乙", "甲=丙"])


def test_relabel_file_in_gbk_and_its_errors(tmp_path):
    path = tmp_path / "renames.csv"
    pd.DataFrame({"target": ["agency", ""], "old": ["黄岛区政府", "中国移动青岛分公司"],
                  "new": ["西海岸新区政府", "中国移动通信集团山东有限公司青岛分公司"]}).to_csv(
        path, index=False, encoding="gbk")
    assert read_relabel_file(path) == {"agency": {"黄岛区政府": "西海岸新区政府",
                                                  "中国移动青岛分公司": "中国移动通信集团山东有限公司青岛分公司"}}
    bad = tmp_path / "bad.csv"
    bad.write_text("before,after\na,b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"needs the columns target \(optional\), old, new; missing \['old', 'new'\]"):
        read_relabel_file(bad)
    bad.write_text("old,new\na,\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="line 2: old and new must both be given"):
        read_relabel_file(bad)
    with pytest.raises(ConfigError, match="relabel file not found"):
        read_relabel_file(tmp_path / "none.csv")


def _decide(log: DecisionLog, case: str, predicted: str, when: datetime) -> None:
    log.write_decisions([Decision(case, case, "v1", False, (TargetDecision("agency", predicted, 0.9, False),),
                                  created_at=when)])


def _renamed_log(url: str, known: frozenset[str] = frozenset({"旧局", "城管局", "交警队"})) -> DecisionLog:
    """Thirty days of 旧局 cases confirmed; then its cases come back as 新局 (4 of 5 had been routed to 旧局) and
    旧局 only once more; 交警队 confused with 城管局 all along (both keep coming back: no rename)."""
    log = DecisionLog(url)
    corrections = []
    for i in range(10):
        when = START + timedelta(days=i)
        _decide(log, f"old{i}", "旧局", when)
        corrections.append(Correction(f"old{i}", {"agency": "旧局"}, "dispatcher", when + timedelta(hours=1)))
    for i in range(5):
        when = START + timedelta(days=40 + i)
        _decide(log, f"new{i}", "旧局" if i else "交警队", when)
        corrections.append(Correction(f"new{i}", {"agency": "新局"}, "dispatcher", when + timedelta(hours=1)))
    _decide(log, "late-old", "旧局", START + timedelta(days=46))
    corrections.append(Correction("late-old", {"agency": "旧局"}, "dispatcher", START + timedelta(days=46, hours=1)))
    for i in range(12):  # two live agencies the model mixes up: 城管局 often predicted for 交警队's cases
        when = START + timedelta(days=3 * i)
        _decide(log, f"mix{i}", "城管局", when)
        truth = "交警队" if i % 2 else "城管局"
        corrections.append(Correction(f"mix{i}", {"agency": truth}, "dispatcher", when + timedelta(hours=1)))
    log.add_corrections(corrections, {"agency": known})
    return log


def test_the_log_shows_a_rename_and_not_a_confusion(tmp_path):
    log = _renamed_log(f"sqlite:///{tmp_path / 'decisions.sqlite'}")
    found = suggest_renames(log)
    assert [(s.target, s.old, s.new) for s in found] == [("agency", "旧局", "新局")]
    s = found[0]
    assert (s.new_cases, s.taken_for_old, s.old_since_new) == (5, 4, 1)
    assert (s.new_first_seen, s.old_last_seen) == ("2018-02-10", "2018-02-16")
    assert s.reason() == ("4 of the 5 cases corrected to 新局 (first on 2018-02-10) had been routed to 旧局, which "
                          "came back only 1 time(s) since")
    assert as_relabel(found) == {"agency": {"旧局": "新局"}}
    # stricter evidence: not enough cases, or the old name still too alive
    assert suggest_renames(log, min_cases=5) == []
    assert suggest_renames(log, max_old_ratio=0.1) == []
    # a window after the rename sees no old cases confirmed (still a rename), one before it sees nothing
    assert [s.old for s in suggest_renames(log, since=START + timedelta(days=39))] == ["旧局"]
    assert suggest_renames(log, since=START + timedelta(days=60)) == []
    with pytest.raises(ConfigError, match="min_share must be in"):
        suggest_renames(log, min_share=0)
    # a label the model already knew taking another's cases is two agencies it confuses, not a rename
    known = _renamed_log(f"sqlite:///{tmp_path / 'known.sqlite'}", frozenset({"旧局", "新局", "城管局", "交警队"}))
    assert suggest_renames(known) == []
    known.close()
    frame = suggestions_frame(found)
    assert frame.columns.tolist()[:3] == ["target", "old", "new"] and frame["new"].tolist() == ["新局"]
    log.close()


def test_cli_writes_the_renames_and_train_reads_them(tmp_path, capsys):
    db = tmp_path / "decisions.sqlite"
    url = f"sqlite:///{db}"
    _renamed_log(url).close()
    out = tmp_path / "renames.csv"
    assert main(["feedback", "renames", "--log", url, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "agency: 旧局 -> 新局 (4 of the 5 cases corrected to 新局" in printed
    assert f"wrote 1 rename to {out}" in printed and "--relabel-file" in printed
    assert read_relabel_file(out) == {"agency": {"旧局": "新局"}}
    assert main(["feedback", "renames", "--log", url, "--min-cases", "9", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["renames"] == [] and shown["out"] is None
    # train with the file and one more on the command line: both in the saved config
    df, _ = _renamed()
    data = tmp_path / "export.csv"
    df.assign(agency=df["agency"].replace({"市政局": "旧局", "城管局": "新局"})).to_csv(data, index=False)
    store = tmp_path / "store"
    assert main(["train", str(data), "--text", "text", "--agency", "agency", "--relabel-file", str(out),
                 "--relabel", "交警队=交警支队", "--min-class-count", "1", "--store", str(store), "--quiet"]) == 0
    manifest = ModelStore(store).verify(ModelStore(store).current())
    assert manifest["config"]["relabel"] == {"agency": {"旧局": "新局", "交警队": "交警支队"}}
    assert main(["train", str(data), "--text", "text", "--agency", "agency", "--relabel", "旧局",
                 "--store", str(store)]) == 2
    assert "--relabel expects [TARGET:]OLD=NEW" in capsys.readouterr().err
