"""The confusion report on the demo model: numbers equal scikit-learn's in every output, personal data is
masked, labels the model never saw are reported, comparisons add up, bad data gets a clear error."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from classifier.errors import ConfigError, DataFormatError, MissingColumnError
from training.cli import main
from training.demo import DEMO_CORPUS
from training.report import EvaluationDataError, compare, evaluate

PHONE = "13912345678"
PII_TEXT = f"兴庆区解放东街红绿灯坏了路口堵车，联系电话{PHONE}，我家暖气一直不热"
NEW_AGENCY = "新成立的市数据局"
TARGETS = {"category": "category", "agency": "agency"}


@pytest.fixture(scope="module")
def noisy() -> tuple[pd.DataFrame, np.ndarray]:
    """240 demo cases, 40 of them with their category shuffled, one unseen agency, one with a phone number."""
    df = pd.read_csv(DEMO_CORPUS).sample(240, random_state=5).reset_index(drop=True)
    rng = np.random.default_rng(0)
    noisy_rows = rng.choice(np.arange(2, len(df)), 40, replace=False)
    df.loc[noisy_rows, "category"] = np.roll(df.loc[noisy_rows, "category"].to_numpy(), 1)
    df.loc[0, ["text", "category"]] = [PII_TEXT, "供暖供热"]
    df.loc[1, "agency"] = NEW_AGENCY
    return df, noisy_rows


@pytest.fixture(scope="module")
def report(demo_store, tiny_model, noisy):
    df, _ = noisy
    return evaluate(demo_store.load(), df, text="text", targets=TARGETS, compare=tiny_model, compare_version="tiny")


@pytest.fixture(scope="module")
def saved(report, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    report.save(out)
    return out


def _sklearn(model, df: pd.DataFrame, target: str) -> dict:
    y_true = df[target].tolist()
    y_pred = model.predict(df["text"].tolist(), targets=[target])[target]
    labels = sorted(set(y_true) | set(y_pred))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {"y_true": y_true, "y_pred": y_pred, "labels": labels, "accuracy": accuracy_score(y_true, y_pred),
            "macro_f1": f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
            "per_class": pd.DataFrame({"label": labels, "precision": p, "recall": r, "f1": f, "support": s})}


@pytest.mark.parametrize("target", ["category", "agency"])
def test_numbers_in_html_csv_json_equal_sklearn(report, saved, demo_model, noisy, target):
    df, _ = noisy
    sk = _sklearn(demo_model, df, target)
    t = report.targets[target]
    assert t.metrics["n"] == len(df)
    assert t.metrics["accuracy"] == pytest.approx(sk["accuracy"])
    assert t.metrics["macro_f1"] == pytest.approx(sk["macro_f1"])
    assert 0.5 < sk["accuracy"] < 1.0  # the noise makes real errors

    # CSV and JSON tables
    summary = pd.read_csv(saved / "tables" / "summary.csv", encoding="utf-8-sig").set_index("target")
    assert summary.loc[target, "accuracy"] == pytest.approx(sk["accuracy"])
    assert summary.loc[target, "macro_f1"] == pytest.approx(sk["macro_f1"])
    for frame in (pd.read_csv(saved / "tables" / f"{target}_per_class.csv", encoding="utf-8-sig"),
                  pd.DataFrame(json.loads((saved / "tables" / f"{target}_per_class.json").read_text("utf-8")))):
        got = frame.set_index("label").loc[sk["labels"]]
        want = sk["per_class"].set_index("label")
        for col in ("precision", "recall", "f1"):
            np.testing.assert_allclose(got[col].to_numpy(float), want[col].to_numpy(float), atol=1e-12)
        assert got["support"].tolist() == want["support"].tolist()
    full = json.loads((saved / "report.json").read_text("utf-8"))
    assert full["targets"][target]["metrics"]["accuracy"] == pytest.approx(sk["accuracy"])
    assert full["targets"][target]["metrics"]["macro_f1"] == pytest.approx(sk["macro_f1"])

    cells = pd.read_csv(saved / "tables" / f"{target}_confusion_cells.csv", encoding="utf-8-sig")
    cm = confusion_matrix(sk["y_true"], sk["y_pred"], labels=sk["labels"])
    rebuilt = np.zeros_like(cm)
    for r in cells.itertuples():
        rebuilt[sk["labels"].index(r.true), sk["labels"].index(r.predicted)] = r.count
    assert (rebuilt == cm).all()

    # HTML: the headline cards (4 decimals) and the per-class table's raw values
    page = (saved / "report.html").read_text("utf-8")
    section = page.split(f'id="target-{target}"', 1)[1]
    for key in ("accuracy", "macro_f1"):
        shown = re.search(rf'data-metric="{key}">([0-9.]+)<', section).group(1)
        assert shown == f"{sk[key]:.4f}"
    table = section.split(f'id="per-class-{target}"', 1)[1].split("</table>", 1)[0]
    first = sk["per_class"].sort_values(["f1", "support"], ascending=[True, False]).iloc[0]
    row = re.search(rf'<td data-v="{re.escape(first["label"])}">.*?</tr>', table).group(0)
    values = [float(v) for v in re.findall(r'class=num data-v="([-0-9.e]+)"', row)]
    assert values[:4] == pytest.approx([first["precision"], first["recall"], first["f1"], first["support"]])
    # the operating-points table is in the page with the report's own numbers
    points = section.split("Operating points", 1)[1].split("</table>", 1)[0]
    shares = [float(v) for v in re.findall(r'class=num data-v="([-0-9.e]+)"', points)]
    expected = report.targets[target].operating_points.iloc[0]
    assert shares[:3] == pytest.approx([expected["threshold"], expected["routed_directly"],
                                        expected["accuracy_routed_directly"]])


def test_top3_accuracy_counts_the_true_label_among_the_three_best(report, demo_model, noisy):
    df, _ = noisy
    proba = demo_model.predict_proba(df["text"].tolist(), "category")
    classes = np.asarray(demo_model.classes("category"))
    top3 = classes[np.argsort(-proba, axis=1)[:, :3]]
    expected = np.mean([y in row for y, row in zip(df["category"], top3)])
    assert report.targets["category"].metrics["top3_accuracy"] == pytest.approx(expected)


def test_labels_the_model_never_saw_are_reported_not_crashed_on(report):
    t = report.targets["agency"]
    assert t.unseen_labels.set_index("label").loc[NEW_AGENCY, "cases"] == 1
    assert any("never saw" in n for n in t.notes)
    row = t.per_class.set_index("label").loc[NEW_AGENCY]
    assert row["recall"] == 0.0 and not row["known_to_model"]


def test_personal_data_is_masked_everywhere(report, saved):
    t = report.targets["category"]
    assert 2 in t.misrouted["row"].tolist()  # the phone-number case (spreadsheet row 2) is misrouted
    assert "<PHONE>" in t.misrouted.set_index("row").loc[2, "text"]
    for path in [saved / "report.html", saved / "report.json", saved / "model_card.md",
                 *sorted((saved / "tables").iterdir())]:
        assert PHONE not in path.read_text("utf-8"), path.name
    assert "&lt;PHONE&gt;" in (saved / "report.html").read_text("utf-8")


def test_confused_pairs_carry_examples_with_scores(report):
    pairs = report.targets["category"].pairs
    assert len(pairs) > 0
    top = pairs.iloc[0]
    assert top["count"] == pairs["count"].max()
    assert 1 <= len(top["examples"]) <= 3
    for ex in top["examples"]:
        assert 0.0 <= ex["score"] <= 1.0 and ex["given_score"] <= ex["score"]
        assert len(ex["text"]) <= 160


def test_disputed_labels_find_the_shuffled_ones(report, noisy):
    _, noisy_rows = noisy
    disputed = report.targets["category"].disputed
    found = set(disputed["row"] - 2)  # spreadsheet rows -> positions
    hits = found & set(noisy_rows.tolist())
    # 3-fold heads on 240 cases of 20 classes are weak judges, and a dispute needs a suggestion >= 50%: about
    # a quarter of the 40 shuffled labels are caught (11 at seed 0), and most flagged cases are shuffled ones,
    # far above the base rate of 40 / 240 = 17% (11 of 17 at seed 0)
    assert len(hits) >= 8
    assert len(hits) / len(found) >= 0.5
    assert (disputed["given"] != disputed["suggested"]).all()
    assert (disputed["margin"].diff().dropna() <= 1e-12).all()


def test_calibration_and_review_tables(report):
    t = report.targets["category"]
    assert t.calibration["cases"].sum() == t.metrics["n"]
    correct = t.predictions["correct"].to_numpy()
    score = t.predictions["score"].to_numpy()
    below = score < 0.5
    review = t.review.set_index("side")
    assert review["cases"].tolist() == [int(below.sum()), int((~below).sum())]
    assert review["accuracy"].iloc[1] == pytest.approx(correct[~below].mean())
    # the operating points at 0.5 agree with the review table, and every row with a direct count
    points = t.operating_points.set_index("threshold")
    assert points.loc[0.5, "routed_directly"] == pytest.approx(review["share"].iloc[1])
    assert points.loc[0.5, "accuracy_routed_directly"] == pytest.approx(review["accuracy"].iloc[1])
    for threshold, row in points.iterrows():
        direct = score >= threshold
        assert row["routed_directly"] == pytest.approx(direct.mean())
        assert row["errors_routed_directly"] == int((direct & ~correct).sum())
        assert row["sent_to_review"] == pytest.approx(1 - direct.mean())
    assert points["routed_directly"].is_monotonic_decreasing


def test_comparison_deltas_and_flips(report, tiny_model, noisy):
    df, _ = noisy
    c = report.comparisons["category"]
    alone = evaluate(tiny_model, df, targets={"category": "category"}, oof_folds=0)
    m = c.metrics.set_index("metric")
    for key in ("accuracy", "macro_f1", "top3_accuracy"):
        assert m.loc[key, "other"] == pytest.approx(alone.targets["category"].metrics[key])
        assert m.loc[key, "delta"] == pytest.approx(m.loc[key, "this"] - m.loc[key, "other"])
    this_right = report.targets["category"].predictions["correct"].to_numpy()
    other_right = alone.targets["category"].predictions["correct"].to_numpy()
    counts = c.flips["direction"].value_counts()
    assert counts.get("wrong->right", 0) == int((this_right & ~other_right).sum())
    assert counts.get("right->wrong", 0) == int((~this_right & other_right).sum())
    assert report.compare_version == "tiny"
    p = c.paired
    assert p["only_this_right"] == int((this_right & ~other_right).sum())
    assert p["only_other_right"] == int((~this_right & other_right).sum())
    assert p["n"] == len(df) and p["both_right"] == int((this_right & other_right).sum())
    assert p["accuracy_delta"] == pytest.approx(m.loc["accuracy", "delta"])
    # the demo model against a dozen-case toy on 240 cases: a real difference
    assert p["verdict"] == "better" and p["p_value"] < 1e-6


def test_comparison_counts_every_case_when_the_flip_table_is_cut(demo_store, tiny_model, noisy):
    df, _ = noisy
    r = evaluate(demo_store.load(), df, targets={"category": "category"}, compare=tiny_model, oof_folds=0,
                 max_cases=3)
    c = r.comparisons["category"]
    assert len(c.flips) == 3
    assert c.paired["only_this_right"] + c.paired["only_other_right"] > 3
    assert r.tables()["category_compare_paired"].loc[0, "only_this_right"] == c.paired["only_this_right"]


def test_compare_is_evaluate_with_compare(demo_model, noisy):
    df, _ = noisy
    small = df.head(60)
    r = compare(demo_model, demo_model, small, targets={"category": "category"}, oof_folds=0)
    assert (r.comparisons["category"].metrics["delta"] == 0).all()
    assert r.comparisons["category"].flips.empty
    assert r.comparisons["category"].paired["verdict"] == "no significant difference"
    assert "## Compared with version" in r.model_card()


def test_model_card_and_notebook_view(report, saved):
    card = (saved / "model_card.md").read_text("utf-8")
    assert card.startswith(f"# Model card: hotline classifier {report.model_version}")
    for heading in ("## Training data", "## Metrics", "## Intended use", "## Limitations", "## Known confusions"):
        assert heading in card
    assert "- agency routing: place + function through a jurisdiction directory (" in card  # the demo is routed
    summary = report.manifest["data"]["directory"]
    assert (f"- category and function decided together over the {summary['category_function_pairs']} "
            "category-function pairs seen in training") in card
    calibration = summary["county_calibration"]
    assert (f"calibrated on the {calibration['unnamed_cases']} training cases that name none: temperature "
            f"{calibration['temperature']}") in card
    used = report.manifest["heads"]["category"]["features_used"]
    assert used > 0 and f"classes, {used:,} features used" in card
    top = report.targets["category"].pairs.iloc[0]
    assert f"{top['true']} → {top['predicted']}: {top['count']} case(s)" in card
    fragment = report.full()._repr_html_()
    assert fragment.startswith('<div class="hr-report">') and "<html" not in fragment
    assert fragment.count("<svg") == 2 * 2 + 2  # two heatmaps and one reliability diagram per target
    # a notebook shows the first screen only, with a link to the saved page
    inline = report._repr_html_()
    assert inline.startswith('<div class="hr-report">') and "<svg" not in inline and 'id="headline"' in inline
    assert len(inline) < 20_000 and 'id="verdicts"' in inline and "tiny" in inline
    linked = report.summary(link="report/report.html")
    assert 'href="report/report.html"' in linked and linked._repr_html_() == str(linked)


def test_the_page_is_self_contained(saved):
    page = (saved / "report.html").read_text("utf-8")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page
    assert "<script src" not in page


def test_every_table_is_saved_as_csv_and_json(report, saved):
    names = set(report.tables())
    assert {"summary", "category_per_class", "agency_confusion_cells", "category_confused_pairs",
            "category_calibration", "category_review", "category_operating_points", "agency_misrouted",
            "category_disputed_labels",
            "agency_unseen_labels", "category_compare_per_class", "agency_compare_flips"} <= names
    assert "category_confusion" in names and "agency_confusion" not in names  # > 60 agencies: long format only
    for name in names:
        assert (saved / "tables" / f"{name}.csv").exists() and (saved / "tables" / f"{name}.json").exists()


# -- bad data ------------------------------------------------------------------------------------------------------
def test_data_without_the_target_column(demo_model, noisy):
    df, _ = noisy
    with pytest.raises(MissingColumnError, match=r"column\(s\) \['一级标签'\] not in the data"):
        evaluate(demo_model, df, targets={"category": "一级标签"})
    with pytest.raises(MissingColumnError, match="none of the model's target columns"):
        evaluate(demo_model, df.rename(columns={"category": "c", "agency": "a"}))


def test_model_targets_missing_from_the_data_are_reported(demo_model, noisy):
    df, _ = noisy
    r = evaluate(demo_model, df.drop(columns=["agency"]).head(80), oof_folds=0)
    assert list(r.targets) == ["category"]
    assert r.skipped_targets == {"agency": "no column named 'agency' in the data"}
    assert "agency not evaluated" in r.to_html()


def test_a_single_class(demo_model, noisy):
    df, _ = noisy
    one = df[df["category"] == "供暖供热"]
    with pytest.raises(EvaluationDataError, match=r"single class \('供暖供热'\)"):
        evaluate(demo_model, one, targets={"category": "category"})


def test_empty_inputs(demo_model, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(DataFormatError, match="is empty"):
        evaluate(demo_model, empty)
    header = tmp_path / "header.csv"
    header.write_text("text,category\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="header but no rows"):
        evaluate(demo_model, header)
    with pytest.raises(EvaluationDataError, match="no rows"):
        evaluate(demo_model, pd.DataFrame({"text": [], "category": []}))
    with pytest.raises(EvaluationDataError, match="no usable complaint text"):
        evaluate(demo_model, pd.DataFrame({"text": ["", " "], "category": ["a", "b"]}))
    with pytest.raises(EvaluationDataError, match="expected a pandas DataFrame"):
        evaluate(demo_model, [{"text": "x"}])


def test_case_ids_travel_into_the_case_tables(tiny_model):
    df = pd.DataFrame({"工单编号": ["NX-1", "NX-2", "NX-3", "NX-4"],
                       "text": ["解放东街红绿灯坏了，路口堵车", "人民路井盖丢了", "李旺镇电采暖不热",
                                "同心县出租车拒载"],
                       "category": ["供暖供热", "道路设施", "供暖供热", "公共交通"]})
    r = evaluate(tiny_model, df, targets={"category": "category"}, id_column="工单编号", oof_folds=0,
                 compare=tiny_model)
    wrong = r.targets["category"].misrouted
    assert list(wrong.columns[:3]) == ["row", "id", "text"]
    assert wrong[["row", "id", "given", "predicted"]].values.tolist() == [[2, "NX-1", "供暖供热", "交通秩序"]]
    with pytest.raises(MissingColumnError, match=r"\['编号'\] not in the data"):
        evaluate(tiny_model, df, targets={"category": "category"}, id_column="编号")


@pytest.mark.parametrize("option, message", [
    ({"threshold": 1.5}, "threshold must be a number from 0 to 1, got 1.5"),
    ({"threshold": {"category": "high"}}, "threshold must be a number from 0 to 1, got 'high'"),
    ({"top_n": 1}, "top_n must be an integer >= 2, got 1"),
    ({"oof_folds": -1}, "oof_folds must be an integer >= 0, got -1"),
])
def test_bad_options(tiny_model, option, message):
    df = pd.DataFrame({"text": ["路灯不亮", "暖气不热"], "category": ["道路设施", "供暖供热"]})
    with pytest.raises(ConfigError, match=re.escape(message)):
        evaluate(tiny_model, df, **option)


def test_not_a_model():
    with pytest.raises(EvaluationDataError, match="expected a trained ComplaintClassifier or a StoredModel, got dict"):
        evaluate({}, pd.DataFrame({"text": ["x"], "category": ["a"]}))


def test_empty_texts_are_skipped_and_counted(demo_model, noisy):
    df, _ = noisy
    part = df.head(50).copy()
    part.loc[3, "text"] = "  "
    r = evaluate(demo_model, part, targets={"category": "category"}, oof_folds=0)
    assert r.data["skipped_empty_text"] == 1 and r.targets["category"].metrics["n"] == 49
    # spreadsheet rows (header = row 1): position 3 is row 5
    assert r.targets["category"].predictions["row"].tolist() == [2, 3, 4, *range(6, 52)]


# -- command line --------------------------------------------------------------------------------------------------
def test_cli_writes_the_report(demo_store, noisy, tmp_path, capsys):
    df, _ = noisy
    data = tmp_path / "labeled.csv"
    df.head(120).to_csv(data, index=False)
    version = demo_store.current()
    out = tmp_path / "out"
    rc = main(["report", "--model", version, "--data", str(data), "--text", "text", "--category", "category",
               "--agency", "agency", "--compare", version, "--out", str(out), "--store", str(demo_store.path),
               "--json"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["model_version"] == printed["compare_version"] == version
    assert set(printed["metrics"]) == {"category", "agency"}
    for name in ("report.html", "report.json", "model_card.md", "tables/category_per_class.csv"):
        assert (out / name).exists()
    same = printed["comparisons"]["category"]
    assert (same["n"], same["only_this_right"], same["only_other_right"]) == (120, 0, 0)
    assert same["verdict"] == "no significant difference"
    # people read one line per target: the flips, the interval and the verdict
    assert main(["report", "--data", str(data), "--category", "category", "--compare", version, "--folds", "0",
                 "--out", str(tmp_path / "out2"), "--store", str(demo_store.path)]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith(f"category vs {version}")][0]
    assert line.endswith("right->wrong 0, wrong->right 0; accuracy +0.00 points (95 % CI +0.00 to +0.00), "
                         "McNemar p = 1: no significant difference")


def test_cli_report_takes_a_place_column(demo_store, tmp_path, capsys):
    data = tmp_path / "with_district.csv"
    pd.DataFrame({"text": ["出租车司机拒载，还绕路多收钱", "路灯坏了一个月没人修"],
                  "category": ["公共交通", "道路设施"], "agency": ["隆德县交通运输局", "泾源县住建局"],
                  "区县": ["隆德县", "泾源县"]}).to_csv(data, index=False)
    out = tmp_path / "out"
    assert main(["report", "--data", str(data), "--category", "category", "--agency", "agency", "--place", "区县",
                 "--folds", "0", "--out", str(out), "--store", str(demo_store.path)]) == 0
    places = pd.read_csv(out / "tables" / "agency_routing_places.csv", encoding="utf-8-sig").set_index("place")
    assert places.loc["hint", "cases"] == 2 and places.loc["hint", "accuracy"] == 1.0
    assert json.loads((out / "report.json").read_text("utf-8"))["data"]["place_column"] == "区县"


@pytest.mark.parametrize("args, message", [
    (["--category", "一级标签"], "column(s) ['一级标签'] not in the data"),
    (["--threshold", "1.5"], "--threshold must be between 0 and 1"),
    (["--model", "nope"], "nope"),
])
def test_cli_errors(demo_store, noisy, tmp_path, capsys, args, message):
    df, _ = noisy
    data = tmp_path / "labeled.csv"
    df.head(30).to_csv(data, index=False)
    rc = main(["report", "--data", str(data), "--out", str(tmp_path / "o"), "--store", str(demo_store.path), *args])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_cli_out_is_a_file(demo_store, noisy, tmp_path, capsys):
    data = tmp_path / "labeled.csv"
    noisy[0].head(30).to_csv(data, index=False)
    (tmp_path / "o").write_text("x")
    rc = main(["report", "--data", str(data), "--out", str(tmp_path / "o"), "--store", str(demo_store.path)])
    assert rc == 2
    assert "is a file; give a folder" in capsys.readouterr().err


def test_cli_empty_file(demo_store, tmp_path, capsys):
    data = tmp_path / "empty.xlsx"
    data.write_bytes(b"")
    rc = main(["report", "--data", str(data), "--out", str(tmp_path / "o"), "--store", str(demo_store.path)])
    assert rc == 2
    assert "is empty" in capsys.readouterr().err


def test_a_routing_models_agency_errors_are_split_by_cause_and_place(demo_model, tiny_model):
    from training.demo import DEMO_HELDOUT

    held = pd.read_csv(DEMO_HELDOUT)
    report = evaluate(demo_model, held, targets=TARGETS, oof_folds=0)
    t = report.targets["agency"]
    errors, places = t.routing_errors.set_index("cause"), t.routing_places.set_index("place")
    wrong = t.predictions[~t.predictions["correct"]]
    assert errors["errors"].sum() == len(wrong)
    agencies = demo_model.directory_.agencies
    pairs = [(agencies[g], agencies[p]) for g, p in zip(wrong["given"], wrong["predicted"])]
    assert errors.loc["function", "errors"] == sum(a.county == b.county and a.function != b.function for a, b in pairs)
    assert errors.loc["place", "errors"] == sum(a.county != b.county and a.function == b.function for a, b in pairs)
    # where the place came from: every case once; accuracy by a direct count
    assert places["cases"].sum() == len(held)
    details = demo_model.predict_details(held["text"].tolist(), targets=["agency"])
    named = np.array([d["routing"]["place"]["source"] == "gazetteer" and d["routing"]["place"]["county"] is not None
                      for d in details])
    right = np.array([d["agency"]["label"] for d in details]) == held["agency"].to_numpy()
    assert places.loc["gazetteer", "cases"] == named.sum()
    assert places.loc["gazetteer", "accuracy"] == pytest.approx(right[named].mean())
    assert places.loc["hint", "cases"] == 0
    tables = report.tables()
    assert "agency_routing_errors" in tables and "category_routing_errors" not in tables
    assert "Routing: why agencies were missed" in report.to_html()
    plain = evaluate(tiny_model, held.head(60), targets=TARGETS, oof_folds=0)
    assert plain.targets["agency"].routing_errors is None
    assert "Routing: why agencies were missed" not in plain.to_html()


def test_a_place_column_is_passed_to_a_routing_model_as_hints(demo_model, tiny_model, tmp_path, capsys):
    from training.demo import DEMO_HELDOUT

    held = pd.read_csv(DEMO_HELDOUT)
    agencies = demo_model.directory_.agencies
    unnamed = [demo_model.resolve_place(t).county is None for t in held["text"]]
    # the export's district field, filled where the text names no place (as a web form would)
    held["district"] = [agencies[a].county if u else None for a, u in zip(held["agency"], unnamed)]
    plain = evaluate(demo_model, held, targets=TARGETS, oof_folds=0)
    hinted = evaluate(demo_model, held, targets=TARGETS, oof_folds=0, place_column="district")
    places = hinted.targets["agency"].routing_places.set_index("place")
    assert places.loc["hint", "cases"] == sum(unnamed) >= 25
    assert places.loc["hint", "accuracy"] >= 0.8
    assert places.loc["model", "cases"] == 0
    assert hinted.targets["agency"].metrics["accuracy"] > plain.targets["agency"].metrics["accuracy"] + 0.05
    assert hinted.targets["category"].metrics == plain.targets["category"].metrics  # the place changes no category
    assert hinted.data["place_column"] == "district"
    with pytest.raises(EvaluationDataError, match="place hints \\(column 'district'\\) need a routing model"):
        evaluate(tiny_model, held, targets=TARGETS, oof_folds=0, place_column="district")
    with pytest.raises(MissingColumnError, match="column\\(s\\) \\['區'\\] not in the data"):
        evaluate(demo_model, held, targets=TARGETS, oof_folds=0, place_column="區")
