"""Training from the live loop: corrections beside (or instead of) an export, recent cases weighing more, and
labels nobody has used for a long time retired."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from classifier.config import TrainingConfig
from classifier.errors import ConfigError, DataFormatError, MissingColumnError, TrainingDataError
from classifier.model import ComplaintClassifier, TargetHead, prediction_record
from classifier.store import ModelStore
from live.log import Correction, Decision, DecisionLog
from training.cli import main
from training.demo import DEMO_CORPUS
from training.loop_data import combine, read_feedback
from training.recency import half_life_weights, labels_to_retire, parse_duration, parse_retire_after
from training.train import train

CONFIG = TrainingConfig(min_class_count=1, n_jobs=1, seed=3, test_size=0.0)
START = datetime(2018, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def export(demo_slice) -> pd.DataFrame:
    df = demo_slice[0].copy()
    df.insert(0, "工单编号", [f"c{i:03d}" for i in range(len(df))])
    df["受理日期"] = [(START + timedelta(days=i)).strftime("%Y-%m-%d") for i in range(len(df))]
    return df


@pytest.fixture(scope="module")
def newcomers(demo_slice) -> pd.DataFrame:
    """Ten demo cases of the same categories that the export does not have."""
    corpus = pd.read_csv(DEMO_CORPUS)
    corpus = corpus[corpus["category"].isin(set(demo_slice[0]["category"])) & ~corpus["text"].isin(
        set(demo_slice[0]["text"]))]
    return corpus.groupby("category").head(2).head(10).reset_index(drop=True)


def _log_with_corrections(url: str, export: pd.DataFrame, newcomers: pd.DataFrame, model: ComplaintClassifier,
                          ) -> DecisionLog:
    """The service's record of 20 cases (10 from the export, 10 new; two new ones without a stored text) and
    the dispatchers' corrections: 5 export cases relabeled, 5 confirmed, the 10 new ones labeled."""
    log = DecisionLog(url, store_texts=True)
    texts = export["text"].tolist()[:10] + newcomers["text"].tolist()
    ids = export["工单编号"].tolist()[:10] + [f"n{i:03d}" for i in range(10)]
    records = [prediction_record(r, ["category", "agency"]) for r in model.predict_details(texts)]
    when = START + timedelta(days=200)
    decisions = []
    for i, (case_id, text, record) in enumerate(zip(ids, texts, records, strict=True)):
        d = Decision.from_prediction(record, case_id=case_id, request_id=f"r{i}", model_version="v1", created_at=when)
        d.text = None if case_id in ("n008", "n009") else text
        decisions.append(d)
    log.write_decisions(decisions)
    categories = sorted(set(export["category"]))
    corrections = []
    for i in range(5):  # relabeled: the category moves to the next one
        row = export.iloc[i]
        other = categories[(categories.index(row["category"]) + 1) % len(categories)]
        corrections.append(Correction(row["工单编号"], {"category": other}, "dispatcher", when + timedelta(hours=1)))
    for i in range(5, 10):  # confirmed
        row = export.iloc[i]
        corrections.append(Correction(row["工单编号"], {"category": row["category"], "agency": row["agency"]}, "audit",
                                      when + timedelta(hours=1)))
    for i, row in newcomers.iterrows():
        corrections.append(Correction(f"n{i:03d}", {"category": row["category"], "agency": row["agency"]},
                                      "dispatcher", when + timedelta(days=1)))
    known = {t: model.classes(t) for t in ("category", "agency")}
    results = log.add_corrections(corrections, known)
    assert all(not isinstance(r, Exception) for r in results)
    return log


@pytest.fixture(scope="module")
def decision_log(tmp_path_factory, export, newcomers, tiny_model) -> DecisionLog:
    url = f"sqlite:///{tmp_path_factory.mktemp('log') / 'decisions.sqlite'}"
    return _log_with_corrections(url, export, newcomers, tiny_model)


TARGETS = {"category": "category", "agency": "agency"}


def test_corrections_override_the_export_and_the_report_says_where_cases_came_from(export, newcomers, decision_log):
    lines: list[str] = []
    model = train(export, text="text", targets=TARGETS, config=CONFIG, feedback=decision_log, id_column="工单编号",
                  log=lines.append)
    report = model.validation_report
    s = report.sources
    assert (s["export_rows"], s["feedback_cases"], s["relabeled"], s["confirmed"], s["added"], s["without_text"]) \
        == (120, 20, 5, 5, 8, 2)
    assert s["labels_changed"] == {"category": 5, "agency": 0}
    # duplicates counted once: 120 export cases + 8 new ones, every category count moved by the corrections
    assert report.rows_used == 128
    counts = export["category"].value_counts().to_dict()
    categories = sorted(counts)
    for i in range(5):
        old = export["category"].iloc[i]
        counts[old] -= 1
        counts[categories[(categories.index(old) + 1) % len(categories)]] += 1
    for label, n in newcomers["category"].iloc[:8].value_counts().items():  # n008 and n009 have no text
        counts[label] += n
    assert report.class_counts["category"] == {k: v for k, v in counts.items() if v}
    text = str(report)
    assert "from the export: 120 rows" in text
    assert "20 cases: 5 relabeled export cases, 5 confirmed export cases, 8 cases the export does not have" in text
    assert "left out 2 corrected cases the export does not have and whose text the log did not keep" in text
    assert any("relabeled export cases" in ln for ln in lines)
    assert model.training_data["sources"]["relabeled"] == 5 and model.training_data["columns"]["id"] == "工单编号"


def test_corrections_alone_train_a_model_from_the_log_or_its_export_file(decision_log, tmp_path):
    model = train(None, config=CONFIG, feedback=decision_log)
    assert model.validation_report.rows_used == 18  # 20 corrected cases, two without a stored text
    assert set(model.targets_) == {"agency", "category"}
    path = tmp_path / "cases.csv"
    read_feedback(decision_log)[0].to_csv(path, index=False)  # what `hotline feedback export` writes
    from_file = train(None, config=CONFIG, feedback=str(path), targets={"category": "category"})
    assert from_file.validation_report.rows_used == 18 and from_file.targets_ == ["category"]
    assert from_file.validation_report.sources["without_text"] == 2


def test_bad_feedback_is_refused_with_a_clear_error(export, decision_log, tmp_path):
    with pytest.raises(ConfigError, match="name the export's id column with --id COLUMN"):
        train(export, text="text", targets=TARGETS, config=CONFIG, feedback=decision_log)
    with pytest.raises(MissingColumnError, match="id column '编号' not in the export"):
        train(export, text="text", targets=TARGETS, config=CONFIG, feedback=decision_log, id_column="编号")
    with pytest.raises(DataFormatError, match="decision log not found"):
        read_feedback(tmp_path / "missing.sqlite")
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    with pytest.raises(DataFormatError, match="is not a decision log"):
        read_feedback(empty)
    path = tmp_path / "wrong.csv"
    pd.DataFrame({"id": ["a"], "label": ["x"]}).to_csv(path, index=False)
    with pytest.raises(MissingColumnError, match=r"has no column\(s\) \['case_id', 'text'\]"):
        read_feedback(path)
    texts_gone = pd.DataFrame({"case_id": ["a", "b"], "text": ["", None], "category": ["x", "y"]})
    with pytest.raises(TrainingDataError, match="none of the 2 corrected cases in feedback has a stored text"):
        combine(None, texts_gone, "text", {"category": "category"})
    with pytest.raises(TrainingDataError, match="no training data"):
        train(None, config=CONFIG)


def test_case_weights_scale_to_a_mean_of_one_and_equal_weights_change_nothing(tiny_model):
    from tests.conftest import TINY_CASES

    X = tiny_model.transform([t for t, _, _ in TINY_CASES])
    y = [c for _, c, _ in TINY_CASES]
    for fusion in ("off", "on"):
        plain = TargetHead(fusion=fusion).fit(X, y, char_columns=tiny_model.vectorizer_.is_char_)
        ones = TargetHead(fusion=fusion).fit(X, y, char_columns=tiny_model.vectorizer_.is_char_,
                                             sample_weight=np.full(len(y), 3.0))
        np.testing.assert_allclose(ones.predict_proba(X), plain.predict_proba(X), atol=1e-6)
    with pytest.raises(TrainingDataError, match="give one weight per case"):
        TargetHead().fit(X, y, sample_weight=[1.0, 2.0])
    with pytest.raises(TrainingDataError, match="finite, non-negative and not all zero"):
        TargetHead().fit(X, y, sample_weight=np.zeros(len(y)))


def _renamed_agency() -> tuple[pd.DataFrame, list[str]]:
    """Road-facility cases go to 市政局 until mid-2018 and to 城管局 after (the same kind of texts); traffic
    cases always to 交警队.  Returns the cases and a few road texts held out."""
    corpus = pd.read_csv(DEMO_CORPUS)
    road = corpus[corpus["category"] == "道路设施"]["text"].tolist()
    traffic = corpus[corpus["category"] == "交通秩序"]["text"].tolist()[:40]
    held_out, road = road[:10], road[10:70]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(road))
    rows = []
    for rank, i in enumerate(order):  # a random half of the road texts is old, the other half new
        old = rank < len(road) // 2
        day = START + timedelta(days=int(rng.integers(0, 150)) + (0 if old else 400))
        rows.append({"text": road[i], "agency": "市政局" if old else "城管局", "date": day.strftime("%Y-%m-%d")})
    for text in traffic:
        rows.append({"text": text, "agency": "交警队",
                     "date": (START + timedelta(days=int(rng.integers(0, 550)))).strftime("%Y-%m-%d")})
    return pd.DataFrame(rows), held_out


def test_with_a_half_life_the_new_agency_wins_over_the_old_name():
    df, held_out = _renamed_agency()
    targets = {"agency": "agency"}
    plain = train(df, text="text", targets=targets, config=CONFIG, time="date")
    recent = train(df, text="text", targets=targets, config=CONFIG.with_updates(**{"recency.half_life_days": 60.0}),
                   time="date")
    col = recent.classes("agency").index("城管局")
    p_plain = plain.predict_proba(held_out, "agency")[:, col]
    p_recent = recent.predict_proba(held_out, "agency")[:, col]
    # without weights the two names split the road cases (4 of 10 to the new one); with them 9 of 10 go there
    assert np.mean(p_recent > 0.5) >= 0.8 and np.mean(p_plain > 0.5) <= 0.6
    assert np.mean(p_recent) - np.mean(p_plain) >= 0.3
    assert "recent cases weigh more: half-life 60d; the oldest case counts" in str(recent.validation_report)
    assert recent.config.recency.half_life_days == 60.0
    with pytest.raises(ConfigError, match="need each case's date: name the export's date column with --time"):
        train(df, text="text", targets=targets, config=CONFIG.with_updates(**{"recency.half_life_days": 60.0}))


def test_an_agency_no_case_has_named_for_a_year_is_retired_and_the_report_says_so():
    df, _ = _renamed_agency()
    config = CONFIG.with_updates(**{"recency.retire_after_days": {"agency": 365.0}})
    model = train(df, text="text", targets={"agency": "agency"}, config=config, time="date")
    assert "市政局" not in model.classes("agency") and set(model.classes("agency")) == {"城管局", "交警队"}
    last = df.loc[df["agency"] == "市政局", "date"].max()
    assert model.validation_report.retired == {"agency": {"市政局": last}}
    text = str(model.validation_report)
    assert f"retired 1 agency label(s) no case has named for 365d: 市政局 (last {last})" in text
    assert "30 rows had only a retired label (among the rows dropped for a missing label)" in text
    assert model.training_data["retired"] == {"agency": {"市政局": last}}
    with pytest.raises(ConfigError, match=r"--retire-after names targets \['category'\]"):
        train(df, text="text", targets={"agency": "agency"}, time="date",
              config=CONFIG.with_updates(**{"recency.retire_after_days": {"category": 30.0}}))


def test_durations_weights_and_retirement_arithmetic():
    assert [parse_duration(s) for s in ("180d", "2w", "6m", "1y", "7", "1.5d")] == [180, 14, 180, 365, 7, 1.5]
    for bad in ("soon", "-3d", "0d", "3h"):
        with pytest.raises(ConfigError, match="duration"):
            parse_duration(bad)
    assert parse_retire_after(["365d", "category=2y"]) == {"agency": 365.0, "category": 730.0}
    times = np.array(["2018-01-01", "2018-07-01", "2018-12-28"], dtype="datetime64[ns]")
    np.testing.assert_allclose(half_life_weights(times, 180.0), [0.5 ** (361 / 180), 0.5 ** (180 / 180), 1.0])
    labels = pd.Series(["a", "b", None])
    assert labels_to_retire(labels, times, 300) == {"a": "2018-01-01"}
    assert labels_to_retire(labels, times, 400) == {}


def test_cli_trains_from_export_and_log_with_recency(export, decision_log, tmp_path, capsys):
    path = tmp_path / "export.csv"
    export.to_csv(path, index=False)
    db = decision_log.url.removeprefix("sqlite:///")
    store = tmp_path / "store"
    args = ["train", str(path), "--text", "text", "--category", "category", "--agency", "agency", "--id", "工单编号",
            "--feedback", db, "--time", "受理日期", "--half-life", "90d", "--retire-after", "2y", "--min-class-count",
            "1", "--store", str(store), "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "rows of export.csv + corrections from decisions.sqlite." in out
    assert "  From the corrections (" in out and "5 relabeled export cases" in out
    manifest = ModelStore(store).verify(ModelStore(store).current())
    assert manifest["data"]["sources"]["relabeled"] == 5
    assert manifest["config"]["recency"] == {"half_life_days": 90.0, "retire_after_days": {"agency": 730.0}}
    assert main(["train", "--feedback", db, "--text", "text", "--category", "category", "--min-class-count", "1",
                 "--store", str(store), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["category"]["accuracy"] >= 0
    assert main(["train", "--text", "text", "--category", "category", "--store", str(store)]) == 2
    assert "give the data file: --data FILE (CSV, XLSX, JSONL or Parquet), and/or --feedback" in \
        capsys.readouterr().err
    assert main([*args, "--half-life", "soon"]) == 2
    assert "--half-life: expected a duration such as 180d" in capsys.readouterr().err
    assert main(["train", str(path), "--text", "text", "--category", "category", "--feedback",
                 "postgresql+psycopg://nobody@127.0.0.1:1/none", "--id", "工单编号", "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert "error: cannot" in err and "Traceback" not in err


def test_corrections_of_cases_the_export_lacks_are_added_after_its_rows():
    export = pd.DataFrame({"id": ["e1", "e2"], "内容": ["路灯坏了", "公交晚点"], "类别": ["道路", "交通"],
                           "日期": ["2018-01-01", "2018-01-02"]})
    fb = pd.DataFrame({"case_id": ["n1", "n2"], "text": ["井盖丢了", ""], "category": ["道路", "道路"],
                       "time": pd.to_datetime(["2018-02-01", "2018-02-02"], utc=True)})
    out, report = combine(export, fb, "内容", {"category": "类别"}, id_column="id", time="日期")
    assert out["内容"].tolist() == ["路灯坏了", "公交晚点", "井盖丢了"] and out["id"].tolist() == ["e1", "e2", "n1"]
    assert out["日期"].tolist()[2].startswith("2018-02-01") and out["类别"].tolist() == ["道路", "交通", "道路"]
    assert (report.relabeled, report.confirmed, report.added, report.without_text) == (0, 0, 1, 1)
    assert report.labels_changed == {"category": 0}
