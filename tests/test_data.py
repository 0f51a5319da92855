"""Reading exports in every format and encoding, and the validation report (nothing silently lost)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from classifier.errors import DataFormatError, MissingColumnError, RareClassError, TrainingDataError
from training.data import read_table, validate

ROWS = [
    {"留言详情": "兴庆区解放东街红绿灯坏了", "一级标签": "交通秩序", "承办单位": "兴庆区交警一大队"},
    {"留言详情": "朝阳西街路面塌了一个大坑", "一级标签": "道路设施", "承办单位": "大武口区住建局"},
    {"留言详情": "李旺镇的空气能坏了", "一级标签": "供暖供热", "承办单位": "海原县李旺镇政府"},
]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030"])
def test_csv_encodings_are_detected(tmp_path, encoding):
    path = tmp_path / "cases.csv"
    pd.DataFrame(ROWS).to_csv(path, index=False, encoding=encoding)
    df = read_table(path)
    assert df["留言详情"].tolist() == [r["留言详情"] for r in ROWS]
    assert df.attrs["encoding"] == ("gb18030" if encoding.startswith("gb") else "utf-8")


def test_xlsx_jsonl_parquet_read_the_same_rows(tmp_path):
    frame = pd.DataFrame(ROWS)
    frame.to_excel(tmp_path / "c.xlsx", index=False)
    (tmp_path / "c.jsonl").write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS), encoding="utf-8"
    )
    frame.to_parquet(tmp_path / "c.parquet")
    for name in ("c.xlsx", "c.jsonl", "c.parquet"):
        df = read_table(tmp_path / name)
        assert df["承办单位"].tolist() == [r["承办单位"] for r in ROWS], name


def test_unreadable_files_are_clear_errors(tmp_path):
    with pytest.raises(DataFormatError, match="data file not found"):
        read_table(tmp_path / "missing.csv")
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(DataFormatError, match=r"is empty \(0 bytes\)"):
        read_table(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("text,category\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="has a header but no rows"):
        read_table(tmp_path / "header.csv")
    (tmp_path / "x.docx").write_text("x", encoding="utf-8")
    with pytest.raises(DataFormatError, match="unsupported file type '.docx'"):
        read_table(tmp_path / "x.docx")
    (tmp_path / "bad.xlsx").write_text("not a zip", encoding="utf-8")
    with pytest.raises(DataFormatError, match="cannot read .*bad.xlsx as xlsx"):
        read_table(tmp_path / "bad.xlsx")
    (tmp_path / "gbk.csv").write_bytes("text\n路灯\n".encode("gbk"))
    with pytest.raises(DataFormatError, match="cannot be decoded as utf-8"):
        read_table(tmp_path / "gbk.csv", encoding="utf-8")


def _frame(rows):
    return pd.DataFrame(rows, columns=["text", "category", "agency"])


def test_validation_reports_every_dropped_row_with_its_reason():
    df = _frame([
        ["路灯不亮", "道路设施", "a局"],
        ["  ", "道路设施", "a局"],  # empty text -> row 3
        [None, "道路设施", "a局"],  # empty text -> row 4
        ["井盖丢了", None, None],  # no label at all -> row 5
        ["路灯不亮", "道路设施", "a局"],  # exact duplicate -> row 6
        ["红绿灯坏了", "交通秩序", None],  # kept, agency missing
        ["红绿灯坏了", "道路设施", "a局"],  # conflicting category for the same text
        ["乱停车", "交通秩序", "b队"],
        ["堵车", "交通秩序", "b队"],
    ])
    clean, report = validate(df, "text", {"category": "category", "agency": "agency"}, min_class_count=1)
    assert report.rows_read == 9
    assert report.dropped == {"empty text": 2, "no label for any target": 1,
                              "exact duplicate (same text and labels)": 1}
    assert report.dropped_rows["empty text"] == [3, 4]
    assert report.dropped_rows["no label for any target"] == [5]
    assert report.exact_duplicates == 1
    assert report.conflicting_texts["category"] == 1
    assert report.conflict_examples["category"][0]["labels"] == ["交通秩序", "道路设施"]
    assert report.missing_labels == {"category": 0, "agency": 1}
    assert report.rows_used == len(clean) == 5
    assert report.rows_used + sum(report.dropped.values()) == report.rows_read
    text = str(report)
    assert "dropped 2 rows: empty text (rows 3, 4)" in text and "rows used: 5" in text


def test_rare_classes_error_names_them():
    df = _frame([["a", "x", None], ["b", "x", None], ["c", "x", None], ["d", "y", None]])
    with pytest.raises(RareClassError, match=r"fewer than 3 examples: category \(1 classes\): y \(1\)"):
        validate(df, "text", {"category": "category"})


def test_rare_policy_other_and_drop():
    df = _frame([["a", "x", None], ["b", "x", None], ["c", "x", None], ["d", "y", None], ["e", "z", None],
                 ["f", "z", None], ["g", "z", None]])
    clean, report = validate(df, "text", {"category": "category"}, rare_policy="other")
    assert sorted(clean["category"].unique()) == ["x", "z", "其他"]
    assert report.rare_classes == {"category": {"y": 1}}
    clean, report = validate(df, "text", {"category": "category"}, rare_policy="drop")
    assert "d" not in clean["text"].tolist()
    assert report.dropped == {"rare category class (< 3)": 1}


def test_missing_column_single_class_and_nothing_left():
    df = _frame([["a", "x", None], ["b", "x", None]])
    with pytest.raises(MissingColumnError, match=r"column\(s\) \['一级标签'\] not in the data; its columns are"):
        validate(df, "text", {"category": "一级标签"})
    with pytest.raises(TrainingDataError, match=r"target 'category' has 1 class\(es\)"):
        validate(df, "text", {"category": "category"}, min_class_count=1)
    with pytest.raises(TrainingDataError, match="name at least one target"):
        validate(df, "text", {})
    with pytest.raises(TrainingDataError, match="expected a pandas DataFrame"):
        validate([["a"]], "text", {"category": "category"})


# -- issue 15, section 5: training input ------------------------------------------------------------------------
def test_a_csv_cell_over_the_csv_field_limit_is_read_and_its_row_dropped_with_its_number(tmp_path):
    """Python's csv module refuses a field over 131,072 characters and with it the whole file."""
    from classifier.config import TrainingConfig
    from training.train import train

    rows = [["路灯不亮", "道路设施"], ["井盖丢了", "道路设施"], ["路面塌了", "道路设施"],
            ["堵车", "交通秩序"], ["乱停车", "交通秩序"], ["红绿灯坏了", "交通秩序"]]
    rows.insert(3, ["噪音" * 70_001, "交通秩序"])  # 140,002 characters, spreadsheet row 5
    path = tmp_path / "cases.csv"
    pd.DataFrame(rows, columns=["text", "category"]).to_csv(path, index=False)
    df = read_table(path)
    assert len(df) == 7 and len(df["text"].iloc[3]) == 140_002
    clean, report = validate(df, "text", {"category": "category"}, max_text_length=10_000)
    assert report.dropped == {"text longer than 10,000 characters": 1}
    assert report.dropped_rows["text longer than 10,000 characters"] == [5]
    assert "dropped 1 rows: text longer than 10,000 characters (rows 5)" in str(report)
    assert report.rows_used == len(clean) == 6
    config = TrainingConfig(test_size=0.0, min_class_count=1).with_updates(**{"features.min_df": 1})
    model = train(path, text="text", targets={"category": "category"}, config=config)
    assert model.validation_report.dropped_rows == {"text longer than 10,000 characters": [5]}
    assert model.predict(["红绿灯坏了"])["category"] == ["交通秩序"]


def test_the_error_for_a_too_small_class_first_says_how_many_duplicates_were_dropped():
    df = pd.DataFrame({"text": ["小区门口路灯坏了"] * 50_000, "category": ["道路设施"] * 50_000})
    with pytest.raises(RareClassError) as caught:
        validate(df, "text", {"category": "category"})
    message = str(caught.value)
    assert message.startswith("of 50,000 rows read, validation dropped 49,999 rows: exact duplicate "
                              "(same text and labels). After that: classes with fewer than 3 examples")
    df = pd.DataFrame({"text": ["小区门口路灯坏了"] * 50_000, "category": ["道路设施"] * 50_000})
    with pytest.raises(TrainingDataError, match=r"^of 50,000 rows read, validation dropped 49,999 rows: exact "
                                                r"duplicate .*After that: target 'category' has 1 class\(es\)"):
        validate(df, "text", {"category": "category"}, min_class_count=1)
