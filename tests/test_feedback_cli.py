"""`hotline feedback import | export` and `hotline decisions purge | stats` on real SQLite files: every export
row is stored, replaced, unchanged or refused with its spreadsheet row number; new labels are counted; the
exported cases train; bad input is a clear error."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from live.db import default_url
from live.log import Correction, Decision, DecisionLog, TargetDecision, utc_now
from tests.live_support import AGENCIES, CATEGORIES, NEW_AGENCY
from training.cli import main
from training.feedback import FeedbackImport, ImportColumns, import_corrections
from training.periods import parse_duration, parse_when, time_zone
from training.train import save_model


@pytest.fixture(autouse=True)
def _no_log_setting(monkeypatch):
    monkeypatch.delenv("HOTLINE_DECISION_LOG_URL", raising=False)


@pytest.fixture
def store(tmp_path, tiny_model):
    path = tmp_path / "store"
    save_model(tiny_model, path)
    return path


def _predicted(store, n: int = 6, when: datetime | None = None, text: str | None = None) -> DecisionLog:
    """The service predicted cases WO001..WO00n (agency AGENCIES[i % 4], category CATEGORIES[i % 4])."""
    decision_log = DecisionLog(default_url(store), store_texts=text is not None)
    when = when or utc_now() - timedelta(hours=2)
    decision_log.write_decisions([
        Decision(case_id=f"WO{i:03d}", request_id=f"r{i}", model_version="v1", needs_review=False,
                 labels=(TargetDecision("category", CATEGORIES[i % 4], 0.9, False),
                         TargetDecision("agency", AGENCIES[i % 4], 0.8, False)),
                 created_at=when, text=text) for i in range(1, n + 1)])
    return decision_log


def run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def export_file(tmp_path, rows, name="orders.csv", encoding="utf-8"):
    df = pd.DataFrame(rows)
    path = tmp_path / name
    if name.endswith(".xlsx"):
        df.to_excel(path, index=False)
    else:
        df.to_csv(path, index=False, encoding=encoding)
    return path


def test_import_counts_every_row_with_its_spreadsheet_row_number(store, tmp_path, capsys):
    decision_log = _predicted(store)
    path = export_file(tmp_path, {
        "工单编号": ["WO001", "WO002", "", "WO003", "WO999", "WO004", "WO005"],
        "承办单位": [AGENCIES[1], AGENCIES[0], AGENCIES[0], NEW_AGENCY, AGENCIES[2], "", AGENCIES[3]],
        "一级标签": [CATEGORIES[1], "", CATEGORIES[0], CATEGORIES[3], CATEGORIES[2], "", "不存在的类别"],
    }, encoding="gbk")
    code, out, err = run(["feedback", "import", path, "--case-id", "工单编号", "--agency", "承办单位",
                          "--category", "一级标签", "--store", store, "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["rows_read"] == 7
    assert (result["stored"], result["replaced"], result["unchanged"], result["refused"]) == (4, 0, 0, 3)
    refused = {r["row"]: r["reason"] for r in result["refused_rows"]}
    assert set(refused) == {4, 6, 7}  # header is row 1
    assert "no case id" in refused[4]
    assert "WO999" in refused[6] and "never predicted" in refused[6]
    assert "no final label" in refused[7]
    assert result["new_labels"] == {"agency": {NEW_AGENCY: 1}, "category": {"不存在的类别": 1}}
    assert result["labels"] == {"agency": 4, "category": 3}  # WO002 gave only the agency
    # the final labels reached the predictions
    cases = decision_log.labeled_cases()
    assert dict(zip(cases["case_id"], cases["agency"])) == {"WO001": AGENCIES[1], "WO002": AGENCIES[0],
                                                           "WO003": NEW_AGENCY, "WO005": AGENCIES[3]}
    assert set(cases["source"]) == {"dispatcher"}

    # the same file again: nothing new; a changed row replaces the earlier label and keeps it in the history
    code, out, _ = run(["feedback", "import", path, "--case-id", "工单编号", "--agency", "承办单位",
                        "--category", "一级标签", "--store", store, "--json"], capsys)
    assert json.loads(out)["unchanged"] == 4
    changed = export_file(tmp_path, {"工单编号": ["WO001"], "承办单位": [AGENCIES[2]]}, name="again.xlsx")
    code, out, _ = run(["feedback", "import", changed, "--case-id", "工单编号", "--agency", "承办单位",
                        "--store", store], capsys)
    assert code == 0
    assert "stored 0, replaced 1, unchanged 0, refused 0" in out
    assert decision_log.counts()["correction_history"] == 1


def test_import_in_small_batches_with_sources_times_and_texts(store, tmp_path, capsys):
    decision_log = _predicted(store, when=datetime(2026, 11, 3, 0, 0, tzinfo=UTC))
    path = export_file(tmp_path, {
        "id": ["WO001", "WO002", "WO003", "WO004", "NEW01"],
        "agency": [AGENCIES[0], AGENCIES[1], AGENCIES[2], AGENCIES[3], AGENCIES[0]],
        "who": ["dispatcher", "audit", "boss", "agency_return", "dispatcher"],
        "at": ["2026-11-03 09:00", "2026-11-03 10:00", "2026-11-03 10:00", "not a time", ""],
        "text": ["", "", "", "", "兴庆区解放东街红绿灯坏了，电话13912345678"],
    })
    code, out, err = run(["feedback", "import", path, "--case-id", "id", "--agency", "agency", "--source-column",
                          "who", "--time", "at", "--timezone", "Asia/Shanghai", "--text", "text", "--batch-size",
                          "2", "--store", store, "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["batches"] == 2 and result["stored"] == 3 and result["refused"] == 2
    reasons = {r["row"]: r["reason"] for r in result["refused_rows"]}
    assert "source must be one of" in reasons[4] and "'not a time'" in reasons[5]
    assert result["untimed_rows"] == 1 and result["rows_with_text"] == 1
    cases = decision_log.labeled_cases().set_index("case_id")
    # 09:00 in Shanghai is 01:00 UTC
    assert cases.loc["WO001", "time"] == pd.Timestamp("2026-11-03 01:00", tz="UTC")
    assert cases.loc["WO002", "source"] == "audit"
    assert cases.loc["NEW01", "text"] == "兴庆区解放东街红绿灯坏了，电话<PHONE>"  # stored masked


def test_import_refuses_a_correction_dated_before_its_prediction(store, tmp_path, capsys):
    _predicted(store, when=datetime(2026, 11, 3, 12, 0, tzinfo=UTC))
    path = export_file(tmp_path, {"id": ["WO001"], "agency": [AGENCIES[0]], "at": ["2026-11-01T00:00+00:00"]})
    code, out, _ = run(["feedback", "import", path, "--case-id", "id", "--agency", "agency", "--time", "at",
                        "--store", store], capsys)
    assert code == 0
    assert "refused row 2: case 'WO001': the correction is dated" in out


@pytest.mark.parametrize("args, message", [
    (["--agency", "承办"], "has no column '承办' \\(agency \\(label\\)\\)"),
    (["--target", "subcategory=agency"], "has no target \\['subcategory'\\]"),
    (["--target", "subcategory"], "--target expects NAME=COLUMN"),
    ([], "name at least one label column"),
    (["--agency", "agency", "--batch-size", "10001"], "--batch-size must be 1 to 10,000"),
    (["--agency", "agency", "--log", "not a url"], "is not a database URL"),
    (["--agency", "agency", "--log", "nosuchdb://x"], "cannot use the decision log URL"),
    (["--agency", "agency", "--timezone", "Mars/Olympus"], "unknown time zone 'Mars/Olympus'"),
])
def test_import_errors_are_one_clear_line(store, tmp_path, capsys, args, message):
    path = export_file(tmp_path, {"id": ["WO001"], "agency": [AGENCIES[0]]})
    code, _, err = run(["feedback", "import", path, "--case-id", "id", *args, "--store", store], capsys)
    assert code == 2
    assert err.startswith("error: ")
    assert len(err.strip().splitlines()) == 1
    assert re.search(message, err), err


def test_import_stops_at_a_failing_database_and_says_which_rows_were_stored(tmp_path):
    class Failing(DecisionLog):
        calls = 0

        def add_corrections(self, batch, known_labels, now=None):
            Failing.calls += 1
            if Failing.calls == 2:
                from classifier.errors import DecisionLogError

                raise DecisionLogError("cannot store corrections in the decision log at sqlite:///x: gone")
            return super().add_corrections(batch, known_labels, now=now)

    decision_log = Failing(f"sqlite:///{tmp_path / 'd.sqlite'}")
    df = pd.DataFrame({"id": [f"N{i}" for i in range(5)], "agency": [AGENCIES[0]] * 5, "text": ["文本"] * 5})
    from classifier.errors import DecisionLogError

    with pytest.raises(DecisionLogError, match="rows before row 4 were stored \\(2 stored.*import the file again"):
        import_corrections(df, decision_log, ImportColumns(case_id="id", targets={"agency": "agency"}, text="text"),
                           {"agency": set(AGENCIES)}, batch_size=2)
    assert decision_log.counts()["corrections"] == 2


def test_summary_lists_refused_rows_and_points_to_json_for_the_rest():
    result = FeedbackImport(rows_read=40, stored=5,
                            refused=[{"row": i, "case_id": None, "reason": "no case id"} for i in range(2, 37)])
    text = result.summary(shown_refusals=30)
    assert text.splitlines()[0] == "rows read 40: stored 5, replaced 0, unchanged 0, refused 35"
    assert "refused row 31: no case id" in text and "refused row 32" not in text
    assert "... and 5 more refused rows (--json lists them all)" in text


def test_export_writes_trainable_cases_and_counts_those_without_text(store, tmp_path, capsys):
    decision_log = _predicted(store, n=8, when=datetime(2026, 11, 3, tzinfo=UTC), text="同心县的出租车拒载")
    texts_off = DecisionLog(default_url(store))  # the same log, texts off: this case has none
    texts_off.write_decisions([Decision(case_id="WO100", request_id="r", model_version="v1",
                                              needs_review=True, labels=(), created_at=datetime(2026, 11, 3,
                                                                                                tzinfo=UTC))])
    decision_log.add_corrections(
        [Correction(f"WO{i:03d}", {"agency": AGENCIES[i % 4], "category": CATEGORIES[i % 4]}, "dispatcher",
                    corrected_at=datetime(2026, 11, i + 3, tzinfo=UTC)) for i in range(1, 9)]
        + [Correction("WO100", {"agency": AGENCIES[0]}, "audit", corrected_at=datetime(2026, 11, 5, tzinfo=UTC))],
        {"agency": set(AGENCIES), "category": set(CATEGORIES)})
    out_file = tmp_path / "out" / "cases.csv"
    code, out, err = run(["feedback", "export", "--since", "2026-11-05", "--until", "2026-11-09", "--timezone",
                          "UTC", "--out", out_file, "--store", store], capsys)
    assert code == 0, err
    # corrected on Nov 5..9 (until includes the 9th): WO002..WO006 and WO100
    assert "wrote 6 labeled cases" in out
    assert "1 of them have no text" in out
    assert "hotline train" in out
    from training.data import read_table

    cases = read_table(out_file)
    assert list(cases.columns) == ["case_id", "text", "agency", "category", "source", "time"]
    assert sorted(cases["case_id"]) == ["WO002", "WO003", "WO004", "WO005", "WO006", "WO100"]
    assert cases.set_index("case_id").loc["WO100", "source"] == "audit"
    code, out, _ = run(["feedback", "export", "--since", "2026-11-05", "--out", tmp_path / "c.jsonl",
                        "--store", store, "--json", "--timezone", "UTC"], capsys)
    summary = json.loads(out)
    assert summary["cases"] == 8 and summary["without_text"] == 1
    assert summary["labels"] == {"agency": 8, "category": 7}


@pytest.mark.parametrize("args, message", [
    (["--since", "yesterday", "--out", "x.csv"], "--since must be a date"),
    (["--since", "2026-11-05", "--until", "2026-11-01", "--out", "x.csv"], "must be after --since"),
    (["--since", "2026-11-05", "--out", "x.txt"], "write cases as .csv, .xlsx, .jsonl, .parquet"),
])
def test_export_errors(store, tmp_path, capsys, args, message):
    _predicted(store)
    code, _, err = run(["feedback", "export", *[a if a != "x.csv" and a != "x.txt" else tmp_path / a for a in args],
                        "--store", store], capsys)
    assert code == 2
    assert message in err


def test_reading_a_log_that_does_not_exist_is_an_error_not_an_empty_log(tmp_path, capsys):
    code, _, err = run(["decisions", "stats", "--store", tmp_path / "nowhere"], capsys)
    assert code == 2
    assert "no decision log at sqlite:///" in err and "--log URL" in err
    assert not (tmp_path / "nowhere" / "decisions.sqlite").exists()


def test_purge_removes_what_is_older_and_prints_it(store, capsys, monkeypatch):
    decision_log = _predicted(store, n=3, when=utc_now() - timedelta(days=200), text="old")
    _predicted(store, n=2, when=utc_now() - timedelta(days=10))
    monkeypatch.setenv("HOTLINE_DECISION_LOG_URL", decision_log.url)  # the service's setting is the default
    code, out, _ = run(["decisions", "stats", "--json"], capsys)
    stats = json.loads(out)
    assert stats["tables"]["decisions"] == 5 and stats["texts_stored"]["decisions"] == 3
    code, out, _ = run(["decisions", "purge", "--older-than", "180d", "--texts-only"], capsys)
    assert "blanked 3 stored texts" in out
    code, out, _ = run(["decisions", "purge", "--older-than", "26w", "--json"], capsys)
    removed = json.loads(out)["removed"]
    assert removed["decisions"] == 3 and removed["predictions"] == 6
    code, out, _ = run(["decisions", "stats"], capsys)
    assert code == 0 and "decisions: 2 (4 per-target predictions)" in out


@pytest.mark.parametrize("text, hours", [("180d", 180 * 24), ("12h", 12), ("4w", 4 * 7 * 24), (" 2D ", 48)])
def test_durations(text, hours):
    assert parse_duration(text) == timedelta(hours=hours)


@pytest.mark.parametrize("text", ["180", "6m", "0d", "-3d", "1.5d", "d"])
def test_bad_durations_are_refused(text, store, capsys):
    from classifier.errors import ConfigError

    with pytest.raises(ConfigError, match="whole number above 0 followed by h \\(hours\\), d \\(days\\) or w"):
        parse_duration(text)
    _predicted(store, n=1)
    code, _, err = run(["decisions", "purge", f"--older-than={text}", "--store", store], capsys)
    assert code == 2 and "e.g. 180d, 12h, 4w" in err


def test_dates_are_read_in_the_given_zone_and_until_includes_its_day():
    shanghai = time_zone("Asia/Shanghai")
    assert parse_when("2026-11-05", shanghai) == datetime(2026, 11, 4, 16, tzinfo=UTC)
    assert parse_when("2026-11-05", shanghai, end_of_day=True) == datetime(2026, 11, 5, 16, tzinfo=UTC)
    assert parse_when("2026-11-05T08:30+00:00", shanghai) == datetime(2026, 11, 5, 8, 30, tzinfo=UTC)
    assert parse_when("2026-11-05 08:30", time_zone("+08:00")) == datetime(2026, 11, 5, 0, 30, tzinfo=UTC)


def test_exported_cases_train_a_model(tmp_path, capsys):
    """The export is `hotline train`'s input as it is: masked text, final labels, extra columns ignored."""
    from tests.conftest import TINY_CASES, tiny_config
    from training.train import train

    decision_log = DecisionLog(f"sqlite:///{tmp_path / 'd.sqlite'}", store_texts=True)
    when = datetime(2026, 11, 3, tzinfo=UTC)
    decision_log.write_decisions([
        Decision(case_id=f"T{i}", request_id=f"r{i}", model_version="v1", needs_review=False,
                 labels=(TargetDecision("category", "交通秩序", 0.5, False),), created_at=when, text=text)
        for i, (text, _, _) in enumerate(TINY_CASES)])
    decision_log.add_corrections([Correction(f"T{i}", {"category": c, "agency": a}, "dispatcher")
                                  for i, (_, c, a) in enumerate(TINY_CASES)],
                                 {"category": set(CATEGORIES), "agency": set(AGENCIES)})
    out_file = tmp_path / "cases.csv"
    code, out, _ = run(["feedback", "export", "--since", "2026-11-01", "--out", out_file, "--log",
                        decision_log.url], capsys)
    assert code == 0 and "wrote 12 labeled cases" in out and "no text" not in out
    model = train(out_file, text="text", targets={"category": "category", "agency": "agency"}, config=tiny_config(),
                  progress=False)
    predicted = model.predict_details([TINY_CASES[6][0]])[0]
    assert predicted["category"]["label"] == "公共交通" and predicted["agency"]["label"] == "同心县交通运输局"
