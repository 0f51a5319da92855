"""`hotline predict` on files: a data file's column (CSV GBK, XLSX, JSONL, Parquet in; CSV, XLSX, JSONL out) with
row numbers and ids carried through, a text file's lines (GBK too) with blank lines as error records, progress
bars only when asked for, and the batch function another runner (Dask) calls per partition."""

from __future__ import annotations

import io
import json
import sys

import pandas as pd
import pytest

from classifier.store import ModelStore
from training.batch_predict import EMPTY_TEXT, predict_frame, predictions_table
from training.cli import main

CASES = ["同心县出租车司机拒载绕路", "", "学校乱收费", "兴庆区解放东街红绿灯坏了，路口堵车严重", "   "]
IDS = ["A-001", "A-002", "A-003", "A-004", "A-005"]


def run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def cases() -> pd.DataFrame:
    return pd.DataFrame({"工单编号": IDS, "诉求内容": CASES, "区县": ["同心县"] * 5})


def _check_table(df: pd.DataFrame) -> None:
    """Every input row is in the output, in order, with its spreadsheet row number and id; the blank ones are
    error records."""
    assert df["row"].tolist() == [2, 3, 4, 5, 6]
    assert df["id"].astype(str).tolist() == IDS
    assert df["category"].tolist()[0] == "公共交通" and df["category"].tolist()[2] == "教育"
    assert df["category"].tolist()[3] == "交通秩序"
    errors = df["error"].tolist()
    assert [e if isinstance(e, str) else None for e in errors] == [None, EMPTY_TEXT, None, None, EMPTY_TEXT]
    assert (df["category_score"].dropna() > 0.3).all()
    assert df["category_alternatives"].iloc[0].startswith("公共交通 ")


def test_predict_a_gbk_csv_column_to_csv_with_ids_and_row_numbers(gbk_store, cases, tmp_path, capsys):
    data = tmp_path / "new.csv"
    cases.to_csv(data, index=False, encoding="gbk")
    out = tmp_path / "pred.csv"
    code, stdout, err = run(["predict", "--data", data, "--text", "诉求内容", "--id", "工单编号", "--out", out,
                             "--store", gbk_store], capsys)
    assert code == 0 and stdout == ""
    assert "predicted 3 of 5 rows; 2 error records (rows 3 (empty text), 6 (empty text))" in err
    df = pd.read_csv(out, encoding="utf-8-sig", dtype={"id": str})
    _check_table(df)
    assert df["model_version"].nunique() == 1 and df["model_version"].iloc[0] == ModelStore(gbk_store).current()


@pytest.mark.parametrize("src,dst", [(".xlsx", ".xlsx"), (".jsonl", ".xlsx"), (".parquet", ".csv")])
def test_predict_other_formats(gbk_store, cases, tmp_path, capsys, src, dst):
    data = tmp_path / f"new{src}"
    if src == ".xlsx":
        cases.to_excel(data, index=False)
    elif src == ".jsonl":
        cases.to_json(data, orient="records", lines=True, force_ascii=False)
    else:
        cases.to_parquet(data)
    out = tmp_path / f"pred{dst}"
    code, _, _ = run(["predict", "--data", data, "--text", "诉求内容", "--id", "工单编号", "--out", out, "--quiet",
                      "--store", gbk_store], capsys)
    assert code == 0
    df = pd.read_excel(out, dtype={"id": str}) if dst == ".xlsx" else pd.read_csv(out, dtype={"id": str})
    if src == ".xlsx":
        _check_table(df)
    else:  # JSONL: the line number; Parquet: the position from 1
        assert df["row"].tolist() == [1, 2, 3, 4, 5] and df["id"].tolist() == IDS
        assert df["error"].notna().tolist() == [False, True, False, False, True]


def test_predict_data_to_jsonl_keeps_the_service_shape(gbk_store, cases, tmp_path, capsys):
    data = tmp_path / "new.csv"
    cases.to_csv(data, index=False)
    code, out, _ = run(["predict", "--data", data, "--text", "诉求内容", "--id", "工单编号", "--quiet",
                        "--store", gbk_store], capsys)  # no --out: JSON lines on stdout
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["row"] for r in records] == [2, 3, 4, 5, 6] and [r["id"] for r in records] == IDS
    assert records[1] == {"row": 3, "id": "A-002", "error": EMPTY_TEXT}
    first = records[0]
    assert set(first) == {"row", "id", "targets", "needs_review", "model_version"}
    assert set(first["targets"]["category"]) == {"label", "score", "alternatives", "threshold", "needs_review"}
    out_file = tmp_path / "pred.jsonl"
    run(["predict", "--data", data, "--text", "诉求内容", "--id", "工单编号", "--out", out_file, "--quiet",
         "--store", gbk_store], capsys)
    assert [json.loads(line) for line in out_file.read_text(encoding="utf-8").splitlines()] == records


def test_predict_frame_is_the_single_process_batch_function(gbk_store, cases):
    """What a distributed runner calls per partition: its own first row number, the same records."""
    stored = ModelStore(gbk_store).load()
    part = cases.iloc[2:].reset_index(drop=True)
    records = predict_frame(stored.model, part, "诉求内容", id_column="工单编号", first_row=4, version=stored.version)
    assert [r["row"] for r in records] == [4, 5, 6] and [r["id"] for r in records] == IDS[2:]
    whole = predict_frame(stored.model, cases, "诉求内容", id_column="工单编号", version=stored.version)
    assert records == whole[2:]
    table = predictions_table(records, stored.model.targets_)
    assert list(table.columns)[:6] == ["row", "id", "category", "category_score", "category_needs_review",
                                       "category_alternatives"]


def test_file_lines_in_gbk_with_blank_lines_are_error_records(gbk_store, tmp_path, capsys):
    f = tmp_path / "texts.txt"
    f.write_bytes("同心县出租车司机拒载绕路\n\n学校乱收费\n  \n".encode("gbk"))
    code, out, err = run(["predict", "--json", "--file", f, "--store", gbk_store], capsys)
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["line"] for r in records] == [1, 2, 3, 4]
    assert [r.get("error") for r in records] == [None, EMPTY_TEXT, None, EMPTY_TEXT]
    assert records[2]["targets"]["category"]["label"] == "教育"
    assert "2 of 4 lines empty (line 2, 4)" in err
    code, out, _ = run(["predict", "--file", f, "--store", gbk_store], capsys)  # human-readable: in place
    assert code == 0 and out.startswith("category: 公共交通") and "line 2: error: empty text" in out


@pytest.mark.parametrize("args,message", [
    (["predict", "--data", "{data}", "--text", "诉求内容", "--out", "{tmp}/p.txt"], "write predictions to a"),
    (["predict", "--data", "{data}", "--text", "诉求内容", "--out", "{data}"], "is the input file"),
    (["predict", "--data", "{data}", "--text", "内容"], "column(s) ['内容'] not in the data"),
    (["predict", "--data", "{data}", "--text", "诉求内容", "--id", "编号"], "column(s) ['编号'] not in the data"),
    (["predict", "学校乱收费", "--out", "{tmp}/p.csv"], "--out goes with --data FILE"),
    (["predict", "--file", "{tmp}/empty.txt"], "no complaint text in"),
    (["predict", "--file", "{tmp}/nowhere.txt"], "file not found"),
    (["predict", "--data", "{data}", "--text", "诉求内容", "--place-column", "区县"], "place hints need a routing"),
])
def test_file_mistakes_are_one_line_errors(gbk_store, cases, tmp_path, capsys, args, message):
    data = tmp_path / "new.csv"
    cases.to_csv(data, index=False)
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    args = [a.format(data=data, tmp=tmp_path) for a in args] + ["--store", str(gbk_store)]
    code, _, err = run(args, capsys)
    assert code == 2 and err.startswith("error: ") and message in err, err
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "p.txt").exists()


def test_progress_bar_only_in_a_terminal_and_not_with_quiet(gbk_store, cases, tmp_path, capsys, monkeypatch):
    import classifier.progress as progress

    data = tmp_path / "new.csv"
    cases.to_csv(data, index=False)
    args = ["predict", "--data", data, "--text", "诉求内容", "--out", tmp_path / "p.csv", "--store", gbk_store]
    _, _, err = run(args, capsys)  # pytest's stderr is not a terminal: no bar, only the summary line
    assert "predicting" not in err and err.startswith("predicted 3 of 5 rows")
    assert progress.progress_default() is False
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert progress.progress_default() is True
    main([str(a) for a in args])
    bar = sys.stderr.getvalue()  # a bar, cleared when done
    assert "\rpredicting:   0%| " in bar and "/5 [" in bar
    monkeypatch.setattr(sys, "stderr", _Terminal())
    main([str(a) for a in [*args, "--quiet"]])
    assert sys.stderr.getvalue() == ""


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True
