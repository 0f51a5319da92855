"""``hotline select``: the cases whose labels would help the model most, spread over classes and texts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from classifier.config import TrainingConfig
from classifier.errors import ConfigError, TrainingDataError
from classifier.model import ComplaintClassifier, prediction_record
from classifier.store import ModelStore
from live.log import Correction, Decision, DecisionLog
from live.pending import uncorrected_cases
from training.cli import main
from training.select import select_cases, select_from_log, uncertainty
from training.train import save_model


class StubModel:
    """A model whose probabilities and features are given: case ``i`` is the text ``"case i"``."""

    max_text_length = 1000

    def __init__(self, proba: np.ndarray, classes: list[str], features: np.ndarray | None = None) -> None:
        self.targets_ = ["category"]
        self._proba = np.asarray(proba, dtype=float)
        self._classes = classes
        self._features = np.eye(len(proba)) if features is None else np.asarray(features, dtype=float)

    def _rows(self, texts: list[str]) -> list[int]:
        return [int(t.split()[1]) for t in texts]

    def classes(self, target: str) -> list[str]:
        return self._classes

    def predict_proba(self, texts: list[str], target: str) -> np.ndarray:
        return self._proba[self._rows(texts)]

    def transform(self, texts: list[str]) -> sp.csr_matrix:
        return sp.csr_matrix(self._features[self._rows(texts)])


def texts(n: int) -> list[str]:
    return [f"case {i}" for i in range(n)]


def test_uncertainty_by_margin_and_by_entropy():
    P = np.array([[0.5, 0.3, 0.2], [1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_allclose(uncertainty(P), [0.8, 0.0, 1.0])
    np.testing.assert_allclose(uncertainty(P, "entropy")[1:], [0.0, 1.0])
    with pytest.raises(ConfigError, match="measure must be one of"):
        uncertainty(P, "variance")


def test_the_budget_is_shared_by_expected_errors_not_taken_by_the_most_unsure_class():
    """10 cases predicted A (p1 0.40, 6 errors expected) are each less certain than 3 predicted B (p1 0.45, 1.65
    expected): plain uncertainty sampling would spend all 4 labels on A; the shares give B the fourth."""
    proba = [[0.40, 0.35, 0.25]] * 10 + [[0.25, 0.45, 0.30]] * 3 + [[0.98, 0.01, 0.01]] * 5
    sel = select_cases(StubModel(proba, ["A", "B", "C"]), texts(18), 4)
    assert sel.picks["category_predicted"].tolist() == ["A", "A", "A", "B"]
    assert sel.picks["position"].tolist() == [0, 1, 2, 10]  # the least certain first, ties in input order
    assert sel.picks["uncertainty"].tolist() == [0.95, 0.95, 0.95, 0.85]
    assert sel.picks["reason"].iloc[3] == ("least sure about the category: B 0.45 vs C 0.30; pick 1 of 1 among the "
                                           "3 cases predicted category B (about 1.7 errors expected there)")
    assert sel.candidates == 18 and sel.collapsed == 0


def test_near_duplicates_collapse_into_one_pick_that_says_how_many_it_stands_for():
    features = np.eye(8)
    features[1:5] = features[0] + 0.1 * np.eye(8)[1:5]  # four near-copies of case 0 (cosine ~0.995)
    proba = [[0.5, 0.5]] * 5 + [[0.6, 0.4]] * 3
    sel = select_cases(StubModel(proba, ["A", "B"], features), texts(8), 3)
    assert sel.picks["position"].tolist() == [0, 5, 6]
    assert sel.picks["near_duplicates"].tolist() == [4, 0, 0] and sel.collapsed == 4
    assert sel.picks["reason"].iloc[0].endswith("; stands for 4 near-duplicate texts")
    # a budget larger than what is left once they collapse: every distinct case, and a note
    everything = select_cases(StubModel(proba, ["A", "B"], features), texts(8), 10)
    assert len(everything.picks) == 4
    assert everything.notes == ["only 4 cases are left once near-duplicates collapse: fewer than the budget of 10"]
    # similarity 1: only identical texts collapse
    assert len(select_cases(StubModel(proba, ["A", "B"], features), texts(8), 10, similarity=1.0).picks) == 8


def test_a_complaint_many_callers_repeat_comes_before_a_slightly_less_certain_one_off():
    """Three near-copies, each with uncertainty 0.5, are worth 1.5 errors fixed by one label; a one-off with 0.9
    is worth 0.9.  Without density the one-off wins."""
    features = np.eye(4)
    features[1:3] = features[0] + 0.1 * np.eye(4)[1:3]
    proba = [[0.75, 0.25]] * 3 + [[0.55, 0.45]]
    model = StubModel(proba, ["A", "B"], features)
    assert select_cases(model, texts(4), 1).picks["position"].tolist() == [0]
    assert select_cases(model, texts(4), 1, density=False).picks["position"].tolist() == [3]


def test_bad_arguments_are_refused():
    model = StubModel([[0.5, 0.5]] * 2, ["A", "B"])
    for budget in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match="budget must be a whole number of cases >= 1"):
            select_cases(model, texts(2), budget)
    with pytest.raises(ConfigError, match="similarity must be in"):
        select_cases(model, texts(2), 1, similarity=0)
    with pytest.raises(ConfigError, match=r"unknown target\(s\) \['agency'\]"):
        select_cases(model, texts(2), 1, targets=["agency"])
    with pytest.raises(ConfigError, match="3 ids for 2 texts"):
        select_cases(model, texts(2), 1, ids=["a", "b", "c"])


VAGUE = ["今天天气不错，想问问", "今天天气不错，想问问。", "今天天气不错，想问一问", "我有个事情想反映一下"]


@pytest.fixture(scope="module")
def slice_model(demo_slice) -> ComplaintClassifier:
    df = demo_slice[0]
    return ComplaintClassifier(TrainingConfig(min_class_count=1, n_jobs=1)).fit(
        df["text"].tolist(), {"category": df["category"].tolist(), "agency": df["agency"].tolist()})


def test_with_the_real_model_vague_texts_are_chosen_and_their_copies_collapse(demo_slice, slice_model):
    known = demo_slice[0]["text"].tolist()[:20]
    sel = select_cases(slice_model, known + VAGUE, 2, ids=[f"k{i}" for i in range(20)] + ["v0", "v1", "v2", "v3"])
    assert sorted(sel.picks["case_id"]) == ["v0", "v3"]
    assert sel.picks.set_index("case_id").loc["v0", "near_duplicates"] == 2  # v1 and v2 are the same question
    assert set(sel.picks["unsure_target"]) <= {"category", "agency"}
    assert (sel.picks["uncertainty"] > 0.2).all()


@pytest.fixture()
def pending_log(tmp_path, slice_model) -> DecisionLog:
    log = DecisionLog(f"sqlite:///{tmp_path / 'decisions.sqlite'}", store_texts=True)
    cases = {"a": VAGUE[0], "b": VAGUE[3], "c": "兴庆区解放东街红绿灯坏了", "d": VAGUE[1]}
    when = datetime(2018, 3, 1, tzinfo=UTC)
    decisions = []
    for i, (case_id, text) in enumerate(cases.items()):
        record = prediction_record(slice_model.predict_details([text])[0], ["category", "agency"])
        d = Decision.from_prediction(record, case_id=case_id, request_id=f"r{i}", model_version="v1",
                                     created_at=when + timedelta(hours=i))
        d.text = None if case_id == "d" else text  # d was predicted while texts were not stored
        decisions.append(d)
    log.write_decisions(decisions)
    log.add_corrections([Correction("b", {"category": "交通秩序"}, "dispatcher", when + timedelta(days=1))],
                        {t: slice_model.classes(t) for t in ("category", "agency")})
    return log


def test_from_the_log_only_uncorrected_cases_with_a_stored_text_are_offered(pending_log, slice_model):
    pending = uncorrected_cases(pending_log)
    assert pending["case_id"].tolist() == ["a", "c", "d"] and pending["text"].isna().tolist() == [False, False, True]
    sel = select_from_log(slice_model, pending_log, 1)
    assert sel.picks["case_id"].tolist() == ["a"] and sel.candidates == 2
    assert sel.notes == ["1 of the 3 uncorrected cases have no stored text and were not considered "
                         "(HOTLINE_DECISION_LOG_TEXTS was off when they were predicted, or their text was purged)"]
    later = datetime(2018, 3, 1, 2, 30, tzinfo=UTC)  # after c (02:00), before d (03:00)
    assert uncorrected_cases(pending_log, since=later)["case_id"].tolist() == ["d"]
    with pytest.raises(TrainingDataError, match="none of the 1 uncorrected cases in the decision log has a stored"):
        select_from_log(slice_model, pending_log, 1, since=later)
    with pytest.raises(TrainingDataError, match="no predicted case without a correction in that period"):
        select_from_log(slice_model, pending_log, 1, since=datetime(2019, 1, 1, tzinfo=UTC))


def test_cli_writes_the_picks_with_reasons_and_empty_label_columns(demo_slice, slice_model, pending_log, tmp_path,
                                                                  capsys, monkeypatch):
    store = ModelStore(tmp_path / "store")
    slice_model.validation_report = None
    save_model(slice_model, store)
    data = tmp_path / "unlabeled.csv"
    frame = pd.DataFrame({"编号": [f"k{i}" for i in range(20)] + ["v0", "v1", "v2", "v3", "blank"],
                          "内容": demo_slice[0]["text"].tolist()[:20] + VAGUE + [""]})
    frame.to_csv(data, index=False, encoding="gbk")
    out = tmp_path / "to_label.csv"
    assert main(["select", "--data", str(data), "--text", "内容", "--id", "编号", "--budget", "2", "--out", str(out),
                 "--store", str(store.path)]) == 0
    printed = capsys.readouterr().out
    assert "chose 2 of 24 cases for a budget of 2 (2 near-duplicates collapsed into the picks)" in printed
    assert "1 rows without text were not considered" in printed and "今天" not in printed  # no complaint text
    picks = pd.read_csv(out, encoding="utf-8-sig", keep_default_na=False)
    assert list(picks.columns[:4]) == ["rank", "row", "case_id", "text"]
    assert sorted(picks["case_id"]) == ["v0", "v3"] and sorted(picks["row"]) == [22, 25]
    assert (picks["category"] == "").all() and (picks["agency"] == "").all()
    assert main(["select", "--from-log", pending_log.url.removeprefix("sqlite:///"), "--budget", "5", "--out",
                 str(out), "--store", str(store.path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["picks"] == 2
    # alone, --from-log reads the service's log: $HOTLINE_DECISION_LOG_URL
    monkeypatch.setenv("HOTLINE_DECISION_LOG_URL", pending_log.url)
    assert main(["select", "--from-log", "--budget", "5", "--out", str(out), "--store", str(store.path)]) == 0
    assert "chose 2 of 2 cases" in capsys.readouterr().out
    for args, message in ((["--data", str(data), "--budget", "2"], "--data needs --text COLUMN"),
                          (["--data", str(data), "--text", "x", "--budget", "2"], "--text: column 'x' not in"),
                          (["--data", str(data), "--text", "内容", "--budget", "0"], "budget must be a whole number"),
                          (["--from-log", str(tmp_path / "none.sqlite"), "--budget", "2"], "no decision log at")):
        assert main(["select", *args, "--out", str(out), "--store", str(store.path)]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
