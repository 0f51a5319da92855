"""The decision log on a real SQLite file: migrations, corrections, final labels, quality numbers, retention,
and the background writer when the database is locked."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from classifier.errors import CorrectionError, DecisionLogError, UnknownCaseError
from live.db import migrate, open_engine, schema_revision
from live.drift import population_stability_index, token_coverage
from live.log import Correction, CorrectionResult, Decision, DecisionLog, TargetDecision
from live.quality import live_quality, training_mix
from live.schema import SCHEMA_REVISION, correction_history, predictions
from live.writer import DecisionWriter, Pending
from tests.live_support import write_old_decision

KNOWN = {"category": {"交通秩序", "道路设施"}, "agency": {"兴庆区交警一大队", "大武口区住建局"}}
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def decision(case_id: str, category: str = "交通秩序", agency: str = "兴庆区交警一大队", review: bool = False,
             at: datetime = T0, version: str = "v1") -> Decision:
    return Decision(case_id=case_id, request_id="req", model_version=version, needs_review=review, created_at=at,
                    labels=(TargetDecision("category", category, 0.9, False),
                            TargetDecision("agency", agency, 0.4 if review else 0.8, review)))


@pytest.fixture
def dlog(tmp_path) -> DecisionLog:
    return DecisionLog(f"sqlite:///{tmp_path / 'log.sqlite'}")


def test_an_upgrade_keeps_every_decision(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = open_engine(url)
    migrate(engine, "0001")  # a log written by the first schema
    write_old_decision(engine)
    assert schema_revision(engine) == "0001"
    dlog = DecisionLog(url)  # opening migrates to the head
    assert schema_revision(dlog.engine) == SCHEMA_REVISION
    assert dlog.counts()["decisions"] == 1
    out = dlog.add_corrections([Correction("A-1", {"category": "道路设施"}, "dispatcher")], KNOWN)
    assert isinstance(out[0], CorrectionResult) and out[0].status == "stored"
    with dlog.engine.connect() as conn:
        assert conn.execute(select(predictions.c.truth)).scalar_one() == "道路设施"


def test_a_large_batch_is_written_whole_in_several_statements(dlog):
    # 250 decisions: three multi-row statements for the decisions (11 columns, 90 rows each), five for the
    # 500 predictions; every row lands with its own values
    batch = [decision(f"B-{i}", agency="大武口区住建局" if i % 5 == 0 else "兴庆区交警一大队", review=i % 5 == 0,
                      at=T0 + timedelta(seconds=i)) for i in range(250)]
    assert dlog.write_decisions(batch) == 250
    assert dlog.counts()["decisions"] == 250
    with dlog.engine.connect() as conn:
        rows = conn.execute(select(predictions.c.case_id, predictions.c.label, predictions.c.score)
                            .where(predictions.c.target == "agency")).all()
    assert len(rows) == 250
    by_case = {case: (label, score) for case, label, score in rows}
    assert by_case["B-0"] == ("大武口区住建局", 0.4)
    assert by_case["B-249"] == ("兴庆区交警一大队", 0.8)
    assert sum(label == "大武口区住建局" for label, _ in by_case.values()) == 50


def test_ids_run_consecutively_and_two_replicas_whose_runs_meet_lose_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    one, two = DecisionLog(url), DecisionLog(url)
    assert one._next_id != two._next_id  # each replica starts its own run at random
    start = one._next_id
    assert one.write_decisions([decision(f"one-{i}") for i in range(5)]) == 5
    two._next_id = start + 2  # the other replica's run meets this one's ids: a primary-key clash, retried
    assert two.write_decisions([decision(f"two-{i}") for i in range(5)]) == 5
    assert two._next_id != start + 7  # it moved to a new run
    with one.engine.connect() as conn:
        ids = dict(conn.exec_driver_sql("SELECT case_id, id FROM decisions").all())
        linked = conn.exec_driver_sql("SELECT count(*) FROM predictions p JOIN decisions d ON d.id = p.decision_id "
                                      "AND d.case_id = p.case_id").scalar_one()
    assert [ids[f"one-{i}"] for i in range(5)] == list(range(start, start + 5))  # consecutive: appended
    assert len(ids) == 10 and linked == 20  # every decision once, each prediction under its own decision
    one.close()
    two.close()


def test_corrections_are_idempotent_replaced_with_history_and_final_by_time(dlog):
    dlog.write_decisions([decision("A-1"), decision("A-2")])
    first = dlog.add_corrections([Correction("A-1", {"agency": "大武口区住建局"}, "dispatcher",
                                             corrected_at=T0 + timedelta(hours=1))], KNOWN)
    assert first[0].status == "stored"  # type: ignore[union-attr]
    again = dlog.add_corrections([Correction("A-1", {"agency": "大武口区住建局"}, "dispatcher",
                                             corrected_at=T0 + timedelta(hours=1))], KNOWN)
    assert again[0].status == "unchanged"  # type: ignore[union-attr]
    assert dlog.counts()["corrections"] == 1
    later = dlog.add_corrections([Correction("A-1", {"agency": "兴庆区交警一大队"}, "dispatcher",
                                             corrected_at=T0 + timedelta(hours=2))], KNOWN)
    assert later[0].status == "replaced"  # type: ignore[union-attr]
    with dlog.engine.connect() as conn:
        history = conn.execute(select(correction_history.c.label, correction_history.c.source)).all()
        assert history == [("大武口区住建局", "dispatcher")]
    # an agency's return dated later wins; an older audit does not
    dlog.add_corrections([Correction("A-1", {"agency": "大武口区住建局"}, "agency_return",
                                     corrected_at=T0 + timedelta(hours=3)),
                          Correction("A-1", {"agency": "兴庆区交警一大队"}, "audit",
                                     corrected_at=T0 + timedelta(hours=1, minutes=30))], KNOWN)
    with dlog.engine.connect() as conn:
        truth = conn.execute(select(predictions.c.truth, predictions.c.truth_source)
                             .where(predictions.c.case_id == "A-1", predictions.c.target == "agency")).one()
    assert tuple(truth) == ("大武口区住建局", "agency_return")
    cases = dlog.labeled_cases()
    assert list(cases["case_id"]) == ["A-1"] and cases.loc[0, "agency"] == "大武口区住建局"
    assert cases.loc[0, "source"] == "agency_return"


def test_bad_corrections_fail_alone_with_their_reason(dlog):
    dlog.write_decisions([decision("A-1", at=T0)])
    out = dlog.add_corrections([
        Correction("A-1", {"agency": "新成立的局"}, "dispatcher", corrected_at=T0 + timedelta(minutes=1)),
        Correction("NEVER-SEEN", {"agency": "兴庆区交警一大队"}, "dispatcher"),
        Correction("WITH-TEXT", {"agency": "兴庆区交警一大队"}, "audit", text="路口红绿灯坏了"),
        Correction("A-1", {"severity": "high"}, "dispatcher"),
        Correction("A-1", {"agency": "兴庆区交警一大队"}, "hotline"),
        Correction("A-1", {"agency": "兴庆区交警一大队"}, "audit", corrected_at=T0 - timedelta(days=1)),
        Correction("A-1", {}, "audit"),
        Correction("x" * 201, {"agency": "兴庆区交警一大队"}, "audit"),
    ], KNOWN)
    assert isinstance(out[0], CorrectionResult) and out[0].new_labels == ["agency"]
    assert isinstance(out[1], UnknownCaseError) and "never predicted" in str(out[1])
    assert isinstance(out[2], CorrectionResult) and out[2].case_seen is False
    assert isinstance(out[3], CorrectionError) and "unknown targets ['severity']" in str(out[3])
    assert isinstance(out[4], CorrectionError) and "source must be one of" in str(out[4])
    assert isinstance(out[5], CorrectionError) and "before the prediction it corrects" in str(out[5])
    assert isinstance(out[6], CorrectionError) and "no labels" in str(out[6])
    assert isinstance(out[7], CorrectionError) and "1 to 200 characters" in str(out[7])
    assert dlog.counts()["corrections"] == 2
    with pytest.raises(CorrectionError, match="10,001 corrections in one batch; the limit is 10,000"):
        dlog.add_corrections([Correction("A-1", {"agency": "x"}, "audit")] * 10_001, KNOWN)


def test_live_quality_equals_a_direct_count(dlog):
    # 40 cases: every 4th sent to review; categories right on even cases; agencies all corrected to a new label
    dlog.write_decisions([decision(f"C-{i}", review=i % 4 == 0, at=T0 + timedelta(minutes=i)) for i in range(40)])
    dlog.write_decisions([decision("OLD", at=T0 - timedelta(days=20))])
    corrections = [Correction(f"C-{i}", {"category": "交通秩序" if i % 2 == 0 else "道路设施"}, "dispatcher",
                              corrected_at=T0 + timedelta(hours=2)) for i in range(20)]
    corrections += [Correction(f"C-{i}", {"agency": "新成立的局"}, "agency_return",
                               corrected_at=T0 + timedelta(hours=3)) for i in range(10)]
    dlog.add_corrections(corrections, KNOWN)
    q = live_quality(dlog, now=T0 + timedelta(days=1), windows=(7, 30),
                     mixes={"v1": {"category": {"交通秩序": 50, "道路设施": 50}}})
    week = q["windows"]["7d"]["versions"]["v1"]
    assert week["decisions"] == 40 and week["review_rate"] == 10 / 40
    cat = week["targets"]["category"]
    assert (cat["predictions"], cat["labeled"], cat["accuracy"]) == (40, 20, 10 / 20)
    # review cases among 0..19: 0, 4, 8, 12, 16 (all even: right); auto: 15 labeled, 5 right
    assert cat["review_rate"] == 0.0 and cat["auto"] == {"labeled": 20, "accuracy": 0.5}
    agency = week["targets"]["agency"]
    assert agency["review"] == {"labeled": 3, "accuracy": 0.0} and agency["auto"]["labeled"] == 7
    assert agency["new_label_share"] == 1.0 and agency["label_psi"] is None
    # every prediction says 交通秩序 against a 50/50 training mix
    assert cat["label_psi"] == pytest.approx(population_stability_index({"交通秩序": 40}, {"交通秩序": 50,
                                                                                         "道路设施": 50}))
    assert q["windows"]["30d"]["versions"]["v1"]["decisions"] == 41
    assert training_mix({"labels": {"category": {"a": 3, "b": None}}}) == {"category": {"a": 3.0, "b": 1.0}}


def test_psi_is_zero_for_the_same_mix_and_grows_with_the_shift():
    same = population_stability_index({"a": 10, "b": 30}, {"a": 100, "b": 300})
    moved = population_stability_index({"a": 30, "b": 10}, {"a": 100, "b": 300})
    assert same == pytest.approx(0.0, abs=1e-3) and moved is not None and moved > 0.25
    assert population_stability_index({}, {"a": 1}) is None


def test_unseen_tokens_are_counted_by_the_models_own_segmentation(tiny_model):
    n, unseen = token_coverage(tiny_model, "兴庆区解放东街红绿灯坏了")
    assert n >= 3 and unseen == 0
    n2, unseen2 = token_coverage(tiny_model, "量子计算机的超导芯片散热")
    assert n2 == 6 and unseen2 == 5  # all but 的, which the training cases have


def test_purge_removes_old_decisions_and_texts_but_keeps_labels(tmp_path):
    dlog = DecisionLog(f"sqlite:///{tmp_path / 'log.sqlite'}", store_texts=True)
    now = datetime.now(UTC)
    old, new = decision("OLD", at=now - timedelta(days=200)), decision("NEW", at=now - timedelta(days=1))
    old.text, new.text = "旧的投诉 <PHONE>", "新的投诉"
    dlog.write_decisions([old, new])
    dlog.add_corrections([Correction("OLD", {"category": "道路设施"}, "audit")], KNOWN,
                         now=now - timedelta(days=190))
    removed = dlog.purge(timedelta(days=180))
    assert removed["decisions"] == 1 and removed["predictions"] == 2
    assert dlog.counts() == {"decisions": 1, "predictions": 2, "corrections": 1, "correction_history": 0}
    cases = dlog.labeled_cases()
    assert cases.loc[0, "category"] == "道路设施" and cases.loc[0, "text"] == ""
    assert dlog.purge_texts(timedelta(hours=1)) == 1  # NEW's text
    assert dlog.labeled_cases().loc[0, "text"] == ""


def test_texts_are_stored_masked_and_only_when_asked(tmp_path, tiny_model):
    phone_text = "兴庆区解放东街红绿灯坏了，我的电话13912345678"
    for store_texts, expected in ((False, None), (True, "<PHONE>")):
        dlog = DecisionLog(f"sqlite:///{tmp_path / f'log-{store_texts}.sqlite'}", store_texts=store_texts)
        writer = DecisionWriter(dlog, drift_sample=1.0)
        writer.record([Pending(decision("A-1"), text=phone_text, tokens=token_coverage(tiny_model, phone_text))])
        assert writer.flush()
        with dlog.engine.connect() as conn:
            text, n_tokens = conn.exec_driver_sql("SELECT text, n_tokens FROM decisions").one()
        assert n_tokens > 0
        if expected is None:
            assert text is None
        else:
            assert expected in text and "13912345678" not in text


def test_the_writer_waits_out_a_locked_database_counts_nothing_lost_and_flushes(tmp_path):
    path = tmp_path / "log.sqlite"
    dlog = DecisionLog(f"sqlite:///{path}", busy_timeout_s=0.2)
    lost: list[int] = []
    pending: list[int] = []  # what the writer reports to the hotline_decision_log_pending gauge
    writer = DecisionWriter(dlog, interval_s=0.05, max_backoff_s=0.2, on_lost=lost.append,
                            on_pending=pending.append).start()
    blocker = sqlite3.connect(path, timeout=1)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holds the database
    try:
        writer.record([Pending(decision(f"A-{i}")) for i in range(50)])
        deadline = time.monotonic() + 10
        while not writer.stats.degraded and time.monotonic() < deadline:
            time.sleep(0.05)
        assert writer.stats.degraded and writer.stats.pending == 50 and writer.stats.written == 0
        assert pending and pending[-1] == 50  # the gauge shows the backlog while the database is locked
        with pytest.raises(DecisionLogError, match="cannot store corrections in the decision log"):
            dlog.add_corrections([Correction("A-1", {"category": "交通秩序"}, "audit", text="x")], KNOWN)
    finally:
        blocker.rollback()
        blocker.close()
    deadline = time.monotonic() + 10
    while writer.stats.written < 50 and time.monotonic() < deadline:
        time.sleep(0.05)
    writer.close()
    assert writer.stats.written == 50 and not writer.stats.degraded and lost == []
    assert dlog.counts()["decisions"] == 50 and pending[-1] == 0


def test_a_full_buffer_counts_what_it_gives_up(tmp_path):
    dlog = DecisionLog(f"sqlite:///{tmp_path / 'log.sqlite'}")
    lost: list[int] = []
    writer = DecisionWriter(dlog, max_pending=100, on_lost=lost.append)  # not started: nothing drains
    writer.record([Pending(decision(f"A-{i}")) for i in range(130)])
    assert writer.stats.lost == 30 and sum(lost) == 30 and writer.stats.pending == 100
    writer.close()
    assert writer.stats.written == 100 and dlog.counts()["decisions"] == 100


def test_a_bad_url_is_a_clear_error():
    with pytest.raises(DecisionLogError, match="is not a database URL"):
        DecisionLog("not a url")


DRIFT_TEXTS = ["兴庆区解放东街红绿灯坏了", "量子计算机的超导芯片散热", "出租车拒载，还骂乘客 13912345678",
               "Ｗｉｆｉ信号差，小区物业不管"]


@pytest.mark.parametrize("word_ngram_range", [(1, 2), (2, 2)])
def test_a_prediction_counts_unseen_tokens_as_the_drift_reference_does(word_ngram_range):
    from classifier.model import ComplaintClassifier
    from classifier.routing import RoutedClassifier
    from tests.conftest import TINY_CASES, tiny_config
    from training.demo import demo_directory

    texts = [t for t, _, _ in TINY_CASES]
    targets = {"category": [c for _, c, _ in TINY_CASES], "agency": [a for _, _, a in TINY_CASES]}
    config = tiny_config(**{"features.word_ngram_range": word_ngram_range})
    for model in (ComplaintClassifier(config).fit(texts, targets),
                  RoutedClassifier(config, directory=demo_directory()).fit(texts, targets)):
        expected = [token_coverage(model, t) for t in DRIFT_TEXTS]
        assert expected[1] == ((6, 5) if word_ngram_range[0] == 1 else (6, 6))  # only 的 is a known unigram
        batch: list[tuple[int, int]] = []
        plain = model.predict_details(DRIFT_TEXTS, coverage=batch)
        assert batch == expected
        assert plain == model.predict_details(DRIFT_TEXTS)  # counting changes no answer
        for text, want in zip(DRIFT_TEXTS, expected, strict=True):
            one: list[tuple[int, int]] = []
            model.predict_details([text], coverage=one)
            assert one == [want]
        only_category: list[tuple[int, int]] = []
        model.predict_details(DRIFT_TEXTS[:2], targets=["category"], coverage=only_category)
        assert only_category == expected[:2]
