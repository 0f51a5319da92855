"""Versions by prefix, tag, current / previous / latest; notes; `models list` and `show` for people; promote
says the service keeps its version until reloaded; one spelling per option (old ones kept); help on every
option; training output in a data person's words."""

from __future__ import annotations

import argparse
import json
import shutil

import pandas as pd
import pytest

from classifier.errors import AmbiguousVersionError, ModelNotFoundError, ModelStoreError
from classifier.store import ModelStore
from training.cli import build_parser, main
from training.train import save_model


def run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def three_versions(gbk_store, tmp_path) -> tuple[ModelStore, list[str]]:
    """A copy of the CLI store with two more versions of the same model (re-saved: no training)."""
    path = tmp_path / "store"
    shutil.copytree(gbk_store, path)
    store = ModelStore(path)
    model = store.load().model
    versions = [store.current(), save_model(model, store), save_model(model, store, note="balanced classes")]
    return store, versions


def test_versions_by_prefix_tag_and_words(three_versions):
    store, (v1, v2, v3) = three_versions
    assert store.resolve("latest") == v3 and store.resolve("current") == v1
    assert store.resolve(v3[:-2]) == v3  # a unique prefix
    with pytest.raises(AmbiguousVersionError, match=r"is the start of 3 versions .* give more of the version id"):
        store.resolve(v1[:4])
    with pytest.raises(ModelNotFoundError, match="has no previous version"):
        store.resolve("previous")
    assert store.tag(v2, "2024-winter") == v2 and store.resolve("2024-winter") == v2
    assert store.promote("2024-winter") == v2 and store.resolve("previous") == v1
    assert store.notes() == {v3: "balanced classes"}
    with pytest.raises(ModelStoreError, match="already names version"):
        store.tag(v3, "2024-winter")
    assert store.tag(v3, "2024-winter", force=True) == v3
    for bad, message in (("previous", "already means a version"), (v1, "is a version id"),
                         ("a/b", "not a usable name"), ("", "not a usable name")):
        with pytest.raises(ModelStoreError, match=message):
            store.tag(v1, bad)
    assert store.untag("2024-winter") == v3 and store.tags() == {}
    shutil.rmtree(store.path / v2)
    store.tag(v1, "gone")
    shutil.rmtree(store.path / v1)
    with pytest.raises(ModelNotFoundError, match="tag 'gone' names version .* no longer in store"):
        store.resolve("gone")


def test_cli_tag_note_list_show_promote(three_versions, capsys):
    store, (v1, v2, v3) = three_versions
    s = ["--store", store.path]
    assert run(["models", "tag", v2[:-2], "2024-winter", *s], capsys)[1] == f"tagged {v2} as 2024-winter\n"
    code, out, _ = run(["models", "note", "2024-winter", "winter export, agencies merged", *s], capsys)
    assert code == 0 and out == f"note of {v2}: winter export, agencies merged\n"
    # predict by tag (--model) and by the older spelling (--version)
    for flag in ("--model", "--version"):
        _, out, _ = run(["predict", "学校乱收费", "--json", flag, "2024-winter", *s], capsys)
        assert json.loads(out)["model_version"] == v2
    code, out, _ = run(["models", "promote", "2024-winter", *s], capsys)
    assert code == 0 and out.splitlines()[0] == f"current version is now {v2} (was {v1})"
    assert (f"A running service keeps serving version {v1} until it reloads: POST /admin/reload with the header "
            "X-API-Key") in out and "kill -HUP" in out
    _, out, _ = run(["models", "list", *s], capsys)
    lines = out.splitlines()
    assert lines[0].split() == ["version", "created", "data", "(file,", "rows,", "content", "fingerprint)",
                                "hold-out", "accuracy", "/", "macro-F1", "tags", "note"]
    row = {line.split()[1] if line.startswith(("*", "^")) else line.split()[0]: line for line in lines[1:-1]}
    assert row[v2].startswith("*") and row[v1].startswith("^")
    assert "cases.csv, 520 rows, sha256 " in row[v2] and "2024-winter" in row[v2]
    assert row[v2].rstrip().endswith("winter export, agencies merged") and "balanced classes" in row[v3]
    assert "category 0.9" in row[v1] or "category 1.000" in row[v1]
    _, out, _ = run(["models", "show", "previous", *s], capsys)
    assert out.startswith(f"version {v1}\ncreated ") and "data: cases.csv (gb18030), 520 rows read" in out
    assert "  category: 4 classes; hold-out (104 cases): accuracy " in out and "{" not in out
    _, out, _ = run(["models", "show", "current", "--json", *s], capsys)
    assert json.loads(out)["version"] == v2
    code, out, _ = run(["models", "rollback", *s], capsys)
    assert out.splitlines()[0] == f"rolled back: current version is now {v1} (was {v2})"
    assert "keeps serving version " + v2 in out


def test_every_option_has_help_text():
    parser = build_parser()
    missing = []

    def walk(p: argparse.ArgumentParser, path: str) -> None:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, f"{path} {name}")
            elif not isinstance(action, argparse._HelpAction) and not action.help:
                missing.append(f"{path}: {'/'.join(action.option_strings) or action.dest}")

    walk(parser, "hotline")
    assert missing == []


def test_data_is_one_option_everywhere_with_the_old_spelling_kept(gbk_export, tmp_path, capsys):
    other = tmp_path / "other.csv"
    code, _, err = run(["train", gbk_export, "--data", other, "--text", "留言详情", "--category", "一级标签",
                        "--store", tmp_path], capsys)
    assert code == 2 and err.startswith("error: two data files given")
    code, _, err = run(["tune", "--text", "留言详情", "--category", "一级标签"], capsys)
    assert code == 2 and err.startswith("error: give the data file: --data FILE")


def test_training_output_speaks_of_cases_and_labels(gbk_export, tmp_path, capsys):
    """Two categories (no top-3), agencies on part of the rows (an agency label), rare agencies merged into the
    other class by its real name, more than 20 of them (and N more + the file)."""
    df = pd.read_csv(gbk_export, encoding="gbk")
    df = df[df["一级标签"].isin(["交通秩序", "教育"])].reset_index(drop=True)
    df.loc[df.index % 4 == 0, "承办单位"] = None
    path = tmp_path / "two.csv"
    df.to_csv(path, index=False, encoding="gbk")
    code, out, err = run(["train", "--data", path, "--text", "留言详情", "--category", "一级标签", "--agency",
                          "承办单位", "--rare-policy", "other", "--min-class-count", "5", "--store",
                          tmp_path / "s"], capsys)
    assert code == 0, err
    assert out.startswith(f"Trained on {len(df)} of the {len(df)} rows of two.csv (gb18030).")
    category = next(line for line in out.splitlines() if line.startswith("  On ") and "category" not in line)
    assert "right" in category and "3 best guesses" not in out.split("agency (column")[0]
    assert "category (column 一级标签): 2 classes, learned from" in out
    missing = int((df["承办单位"].isna()).sum())
    assert f"  {missing} rows have no agency label; they taught the other targets only." in out
    assert "agency classes with fewer than 5 cases merged into the class \"其他\": " in out
    assert "more (every one is listed in validation_report.json, saved with the model)." in out
    assert "features used" not in out and "fused" not in out  # the insides: --verbose only
    assert "Saved as version " in out and ": the current version." in out
    assert "measuring: training on" in err  # steps on stderr
    code, out, _ = run(["train", path, "--text", "留言详情", "--category", "一级标签", "--agency", "承办单位",
                        "--rare-policy", "other", "--min-class-count", "5", "--store", tmp_path / "s", "--verbose",
                        "--quiet"], capsys)
    assert code == 0 and out.startswith("Validation report") and "head category: " in out
    assert "features used" in out and "not current. Compare it with the current version" in out
    report = json.loads((tmp_path / "s" / ModelStore(tmp_path / "s").resolve("latest")
                         / "validation_report.json").read_text(encoding="utf-8"))
    assert len(report["rare_classes"]["agency"]) > 20
