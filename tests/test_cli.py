"""The `hotline` command line: train from a GBK export, predict (text, --json, stdin, file), manage the store."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys

import pytest

from training.cli import main


@pytest.fixture(scope="module")
def export(gbk_export):
    return gbk_export


@pytest.fixture(scope="module")
def trained_store(gbk_store):
    return gbk_store


def run(args, capsys, stdin=None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_train_prints_metrics_and_makes_the_first_version_current(export, tmp_path, capsys):
    code, out, err = run(["train", str(export), "--text", "留言详情", "--category", "一级标签",
                          "--store", str(tmp_path), "--json", "--seed", "3"], capsys)
    assert code == 0
    result = json.loads(out)
    assert result["current"] is True
    assert 0.7 <= result["metrics"]["category"]["accuracy"] <= 1.0
    assert result["heads"]["category"]["kind"] in ("fused", "svm") and result["heads"]["category"]["classes"] == 4
    assert result["heads"]["category"]["features_used"] > 0


def test_train_phases_say_where_the_time_went(export, tmp_path, capsys):
    code, _, err = run(["train", str(export), "--text", "留言详情", "--category", "一级标签", "--quiet",
                        "--store", str(tmp_path), "--test-size", "0", "--phases"], capsys)
    assert code == 0
    names = [line.split(":")[0].strip() for line in err.splitlines() if " s CPU), peak " in line]
    assert names[:3] == ["analysis and counting", "vocabulary", "feature matrix"]
    assert "head category" in names and names[-1] == "saving"


def test_predict_json_has_the_service_shape(trained_store, capsys):
    code, out, _ = run(["predict", "--json", "--store", str(trained_store),
                        "同心县出租车司机拒载绕路", "学校乱收费"], capsys)
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [r["targets"]["category"]["label"] for r in lines] == ["公共交通", "教育"]
    first = lines[0]["targets"]["category"]
    assert set(first) == {"label", "score", "alternatives", "threshold", "needs_review"}
    assert first["threshold"] == 0.5 and first["needs_review"] == (first["score"] < 0.5)
    assert len(first["alternatives"]) == 3 and first["alternatives"][0]["label"] == first["label"]
    assert isinstance(lines[0]["needs_review"], bool) and lines[0]["model_version"]


def test_predict_reads_stdin_and_files(trained_store, tmp_path, capsys, monkeypatch):
    code, out, err = run(["predict", "--json", "--store", str(trained_store)], capsys,
                         stdin="同心县出租车司机拒载绕路\n\n学校乱收费\n", monkeypatch=monkeypatch)
    records = [json.loads(line) for line in out.splitlines()]
    # every line gives a record with its number; the blank one is an error record, not a silent skip
    assert code == 0 and [r["line"] for r in records] == [1, 2, 3]
    labels = [r["targets"]["category"]["label"] if "targets" in r else None for r in records]
    assert labels == ["公共交通", None, "教育"]
    assert records[1] == {"line": 2, "error": "empty text: no complaint to classify"}
    assert "1 of 3 lines empty (line 2)" in err
    f = tmp_path / "texts.txt"
    f.write_text("学校乱收费\n", encoding="utf-8")
    code, out, _ = run(["predict", "--store", str(trained_store), "--file", str(f), "--explain"], capsys)
    assert code == 0 and out.startswith("category: 教育") and "because:" in out


def test_models_list_show_promote_rollback(gbk_store, export, capsys, tmp_path):
    trained_store = tmp_path / "store"
    shutil.copytree(gbk_store, trained_store)
    _, out, _ = run(["models", "list", "--json", "--store", str(trained_store)], capsys)
    listing = json.loads(out)
    first = listing["current"]
    assert [v["version"] for v in listing["versions"]] == [first]
    run(["train", str(export), "--text", "留言详情", "--category", "一级标签", "--quiet", "--store",
         str(trained_store)], capsys)
    versions = [v["version"] for v in json.loads(run(["models", "list", "--json", "--store",
                                                      str(trained_store)], capsys)[1])["versions"]]
    second = versions[-1]
    _, out, _ = run(["models", "show", second, "--json", "--store", str(trained_store)], capsys)
    assert json.loads(out)["version"] == second
    code, out, _ = run(["models", "promote", second, "--store", str(trained_store)], capsys)
    assert code == 0 and second in out
    code, out, _ = run(["models", "rollback", "--store", str(trained_store)], capsys)
    assert code == 0 and first in out


@pytest.mark.parametrize(
    "args,message",
    [
        (["predict", "路灯不亮", "--store", "{empty}"], "does not exist; train a model first"),
        (["train", "{export}", "--text", "内容", "--category", "一级标签"], r"column(s) ['内容'] not in the data"),
        (["train", "{export}", "--text", "留言详情"], "name at least one label column"),
        (["train", "{export}", "--text", "留言详情", "--category", "承办单位"], "fewer than 3 examples"),
        (["train", "{export}", "--text", "留言详情", "--target", "nocolumn"], "--target expects NAME=COLUMN"),
        (["models", "promote", "nope", "--store", "{store}"], "model version 'nope' not found"),
        (["predict", "   ", "--store", "{store}"], "text #0 is empty"),
    ],
)
def test_user_errors_print_one_line_and_exit_2(args, message, export, trained_store, tmp_path, capsys):
    args = [a.format(empty=tmp_path / "none", export=export, store=trained_store) for a in args]
    code, out, err = run(args, capsys)
    assert code == 2
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err


def test_console_script_runs(trained_store):
    proc = subprocess.run(
        [sys.executable, "-m", "training.cli", "predict", "学校乱收费", "--store", str(trained_store)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("category: 教育")


def test_store_comes_from_the_environment(trained_store, capsys, monkeypatch):
    monkeypatch.setenv("HOTLINE_MODEL_STORE", str(trained_store))
    code, out, _ = run(["predict", "--json", "学校乱收费"], capsys)
    assert code == 0 and json.loads(out)["targets"]["category"]["label"] == "教育"


def test_train_with_a_routing_directory_routes_agencies(export, tmp_path, capsys):
    from training.demo import DEMO_DIR

    code, out, err = run(["train", str(export), "--text", "留言详情", "--category", "一级标签", "--agency", "承办单位",
                          "--min-class-count", "1", "--directory", str(DEMO_DIR), "--store", str(tmp_path),
                          "--json"], capsys)
    assert code == 0, err
    routing = json.loads(out)["routing"]
    assert routing["agencies"] == 575 and routing["agencies_not_in_directory"] == 0
    assert routing["category_function_pairs"] >= 2
    code, out, _ = run(["train", str(export), "--text", "留言详情", "--category", "一级标签", "--agency", "承办单位",
                        "--min-class-count", "1", "--directory", str(DEMO_DIR), "--store", str(tmp_path), "--quiet"],
                       capsys)
    assert code == 0
    assert (f"routing: 575 agencies in the directory, {routing['function_cases']} cases taught the function; "
            f"category and function decided together ({routing['category_function_pairs']} pairs)") in out
    code, out, _ = run(["predict", "--json", "--store", str(tmp_path), "大武口区朝阳西街的路灯坏了好几天"], capsys)
    result = json.loads(out)
    assert result["routing"]["path"] == "directory"
    assert result["targets"]["agency"]["label"].startswith("大武口区")


def test_bad_routing_directory_is_a_clear_error(export, tmp_path, capsys):
    code, _, err = run(["train", str(export), "--text", "留言详情", "--agency", "承办单位", "--min-class-count", "1",
                        "--directory", str(tmp_path / "nowhere"), "--store", str(tmp_path)], capsys)
    assert code == 2 and "routing directory folder" in err and "does not exist" in err


def test_cli_json_has_the_same_shape_as_the_service(trained_store, capsys):
    from fastapi.testclient import TestClient

    from serve import ServiceSettings, create_app

    text = "同心县出租车司机拒载绕路"
    _, out, _ = run(["predict", "--json", "--store", str(trained_store), text], capsys)
    from_cli = json.loads(out)
    with TestClient(create_app(ServiceSettings(model_store=trained_store, train_demo_if_empty=False))) as client:
        from_service = client.post("/predict", json={"text": text, "top_k": 3}).json()
    # one shape: the service adds only its request id; absent optional fields are absent in both
    assert from_service.pop("request_id")
    assert from_service == from_cli
    assert "routing" not in from_cli and all("explanation" not in e for e in from_cli["targets"].values())


def test_cli_json_equals_the_service_response_for_the_routing_demo_model(demo_store, capsys):
    from fastapi.testclient import TestClient

    from serve import ServiceSettings, create_app

    text = "海原县李旺镇杨堡村的空气能坏了，屋里冷得很"
    _, out, _ = run(["predict", "--json", "--store", str(demo_store.path), text], capsys)
    from_cli = json.loads(out)
    with TestClient(create_app(ServiceSettings(model_store=demo_store.path, train_demo_if_empty=False))) as client:
        from_service = client.post("/predict", json={"text": text, "top_k": 3}).json()
    assert from_service.pop("request_id")
    assert from_service == from_cli
    assert from_cli["routing"]["place"]["town"] == "李旺镇"
    assert from_cli["targets"]["agency"]["label"] == "海原县李旺镇政府"


def test_the_routing_line_says_how_county_guesses_were_calibrated():
    from training.cli import _routing_line

    line = _routing_line({"agencies": 575, "function_cases": 2531, "agencies_not_in_directory": 2,
                          "category_function_pairs": 30,
                          "county_calibration": {"unnamed_cases": 431, "temperature": 2.07,
                                                 "out_of_fold_accuracy": 0.1555}})
    assert line == ("routing: 575 agencies in the directory, 2531 cases taught the function; 2 training agencies "
                    "not in the directory; category and function decided together (30 pairs); county guesses "
                    "calibrated on 431 cases that name no place (right 16% of the time)")
