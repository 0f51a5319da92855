"""benchmarks/experiments.py: every variant runs, the table says which beat the shipped model, the section is
rewritten in place."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.datasets import Task
from benchmarks.experiments import END, START, render, run, write_section

TOPICS = {
    "交通": ["路口红绿灯坏了车辆拥堵", "公交车晚点司机态度差", "道路施工占道交通堵塞", "出租车拒载乱收费"],
    "环境": ["工厂排放废气气味刺鼻", "河道垃圾堆积污水横流", "夜间施工噪音扰民", "餐馆油烟直排居民楼"],
    "教育": ["学校乱收补课费", "幼儿园收费过高", "学生课业负担太重", "学校食堂卫生差"],
}


def _task() -> Task:
    rng = np.random.default_rng(0)
    texts, labels = [], []
    for label, phrases in TOPICS.items():
        for i in range(16):
            texts.append(f"{phrases[i % 4]}，{phrases[(i + 1) % 4]}，第{rng.integers(1, 99)}次反映")
            labels.append(label)
    test = [f"{p}，请处理" for ps in TOPICS.values() for p in ps]
    return Task("toy", "three topics", texts, labels, test, [t for t, ps in TOPICS.items() for _ in ps])


def test_every_variant_is_scored_and_the_shipped_model_is_not_marked_as_beating_itself():
    task = _task()
    table = run([task])
    assert set(table) >= {"shipped head (fusion auto)", "single LinearSVC", "Crammer-Singer SVM",
                          "stacking: 3 SVM views + LR",
                          "late fusion: 3 SVM views",
                          "class weights, power 0.5", "labels cleaned (confident learning)", "ridge classifier",
                          "LSA (300 dims) appended", "per-class offsets tuned out-of-fold"}
    assert all(set(row) == {"toy"} for row in table.values())
    assert table["shipped head (fusion auto)"]["toy"] == (1.0, 1.0)  # the topics are separable
    body = render(table, ["toy"], "cmd")
    assert body.startswith(START) and body.rstrip().endswith(END)
    assert "| shipped head (fusion auto) | 1.0000 / 1.0000 |" in body and "| **" not in body  # nothing beats 1.0


def test_write_section_replaces_only_its_own_section(tmp_path: Path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\nother section\n", encoding="utf-8")
    write_section(path, f"{START}\nfirst\n{END}\n")
    write_section(path, f"{START}\nsecond\n{END}\n")
    text = path.read_text(encoding="utf-8")
    assert "second" in text and "first" not in text and text.count(START) == 1 and "other section" in text


def test_cv_defaults_scores_every_candidate_on_every_fold_and_writes_its_own_section(tmp_path: Path):
    from benchmarks import cv_defaults

    task = _task()
    results = cv_defaults.cross_validate(task, folds=2)
    assert set(results) == set(cv_defaults.CANDIDATES)
    assert all(len(folds) == 2 for folds in results.values())
    assert results[cv_defaults.SHIPPED] == [(1.0, 1.0), (1.0, 1.0)]  # the topics are separable
    body = cv_defaults.render({"toy": results}, 2, "cmd")
    assert "| shipped defaults | 1.0000 / 1.0000 |" in body
    assert "| no lead blocks (lead_chars=0) | 1.0000 / 1.0000 (0 of 2) |" in body  # a tie is not a win
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(f"# Benchmarks\n\n{START}\nexperiments\n{END}\n", encoding="utf-8")
    write_section(path, body, cv_defaults.START, cv_defaults.END)
    text = path.read_text(encoding="utf-8")
    assert "experiments" in text and text.count(cv_defaults.START) == 1 and "shipped defaults" in text


def test_learning_curve_line_and_the_cases_it_needs_for_a_target():
    from benchmarks.learning_curve import cases_for, line

    # 0.80 at 1,000 cases, +0.02 per doubling
    points = [{"n": n, "accuracy": 0.80 + 0.02 * np.log2(n / 1000)} for n in (250, 500, 1000, 2000)]
    intercept, slope = line(points, "accuracy")
    assert abs(slope - 0.02) < 1e-9
    assert abs(cases_for(0.84, intercept, slope) - 4000) < 1e-6  # two more doublings
    assert cases_for(0.84, intercept, 0.0) == float("inf")  # a flat curve never gets there


def test_learning_curve_scores_every_point_and_writes_the_targets_of_known_data_sets():
    from benchmarks.learning_curve import END as LC_END
    from benchmarks.learning_curve import FRACTIONS, curve, render
    from benchmarks.learning_curve import START as LC_START

    task = _task()
    r = curve(task)
    assert FRACTIONS == (0.125, 0.25, 0.5, 1.0)
    assert [p["n"] for p in r["points"]] == [6, 12, 24, 48]  # 2, 4, 8 and 16 of each topic's 16
    assert r["points"][-1]["accuracy"] == 1.0  # all of train: separable topics
    assert r["extended"]["n"] == 48 + 6  # train + half of the 12 evaluation texts
    assert r["extended"]["paired"]["n"] == 12  # every evaluation text scored once
    body = render({"tipdm": r}, "cmd", 1.0)
    assert body.startswith(LC_START) and body.rstrip().endswith(LC_END)
    assert "| tipdm | 48 (1 of train) | 1.0000 | 1.0000 | 1.0000 |" in body
    assert "| tipdm | accuracy | 0.935 | 1.0000 |" in body  # the target, against the current figure


def test_joint_targets_scores_the_three_ways_on_test_and_in_cv():
    import pandas as pd

    from benchmarks import joint_targets as jt

    rows = []
    rng = np.random.default_rng(1)
    agency_of = {"交通": "交通局", "环境": "环保局", "教育": "教育局"}
    for split, n in (("train", 12), ("test", 4)):
        for label, phrases in TOPICS.items():
            for i in range(n):
                forwarded = i % 3 != 0  # a third of the cases are not forwarded: no agency
                rows.append({"text": f"{phrases[i % 4]}，第{rng.integers(1, 99)}次反映", "category": label,
                             "agency": agency_of[label] if forwarded or split == "test" else None,
                             "split": split})
    r = jt.run(pd.DataFrame(rows), folds=2)
    assert r["n_train"] == 36 and r["n_forwarded"] == 24 and r["n_test"] == 12
    assert r["test"] == {jt.ALONE: 1.0, jt.BEFORE: 1.0, jt.SHIPPED: 1.0}  # separable topics
    assert set(r["paired"]) == {jt.BEFORE, jt.SHIPPED} and r["paired"][jt.SHIPPED]["only_other_right"] == 0
    assert all(len(v) == 2 for v in r["cv"].values())
    body = jt.render(r, "cmd", 1.0)
    assert body.startswith(jt.START) and body.rstrip().endswith(jt.END)
    assert f"| {jt.SHIPPED} | 1.0000 | 0 / 0 cases right only here / only alone, p = 1: no significant difference |" \
        in body


def test_joint_targets_without_data_says_so(tmp_path: Path, capsys):
    from benchmarks import joint_targets as jt

    assert jt.main(["--data", str(tmp_path), "--no-write"]) == 1
    assert "not found" in capsys.readouterr().err
