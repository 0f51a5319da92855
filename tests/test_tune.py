"""``hotline tune``: a cross-validated grid search with a results table, on a demo_slice slice of the demo corpus."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from classifier.config import TrainingConfig
from classifier.errors import ConfigError, TrainingDataError
from training.cli import main
from training.tune import DEFAULT_GRID, MAX_GRID_POINTS, grid_points, parse_grid, tune

SMALL_GRID = {"model.C": [0.5, 2.0], "features.word_ngram_range": [(1, 1)], "model.calibration": ["temperature"]}


@pytest.fixture(scope="module")
def result(demo_slice):
    lines: list[str] = []
    res = tune(demo_slice[0], text="text", targets={"category": "category"}, grid=SMALL_GRID,
               config=TrainingConfig(min_class_count=1, n_jobs=1), folds=2, log=lines.append)
    return res, lines


def test_every_grid_point_is_scored_on_every_fold_best_first(result):
    res, lines = result
    assert len(res.rows) == 2
    assert {r["params"]["model.C"] for r in res.rows} == {0.5, 2.0}
    assert len(lines) == 2 * 2 and lines[0].startswith("[1/4] fold 1/2 C=")
    f1 = [r["scores"]["category"]["macro_f1"] for r in res.rows]
    assert f1 == sorted(f1, reverse=True)
    for r in res.rows:
        s = r["scores"]["category"]
        assert 0.5 < s["accuracy"] <= 1.0 and 0.0 <= s["macro_f1"] <= 1.0
        assert s["top3_accuracy"] >= s["accuracy"]
        assert 0.0 < s["nll"] < 5.0 and r["fit_s"] > 0
    assert res.best is not None and res.best.model.C == res.rows[0]["params"]["model.C"]
    assert res.best.features.word_ngram_range == (1, 1) and res.best.min_class_count == 1


def test_the_table_names_the_varying_settings_and_each_metric(result):
    table = result[0].table().splitlines()
    assert table[0].split()[:2] == ["rank", "C"]
    assert "category macro-F1" in table[0] and "fit s" in table[0]
    assert len(table) == 3 and table[1].split()[0] == "1"


def test_the_same_grid_gives_the_same_scores(demo_slice, result):
    again = tune(demo_slice[0], text="text", targets={"category": "category"}, grid={"model.C": [2.0]},
                 config=TrainingConfig(min_class_count=1, n_jobs=1, features={"word_ngram_range": (1, 1)}), folds=2)
    before = next(r for r in result[0].rows if r["params"]["model.C"] == 2.0)
    assert again.rows[0]["scores"]["category"]["macro_f1"] == pytest.approx(before["scores"]["category"]["macro_f1"])


def test_cli_prints_a_table_and_saves_the_best_config(demo_slice, tmp_path, capsys):
    out = tmp_path / "best.json"
    code = main(["tune", demo_slice[1], "--text", "text", "--category", "category", "--min-class-count", "1",
                 "--folds", "2", "--C", "1", "--word-ngrams", "1-1", "--save-config", str(out), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "2-fold cross-validation, 1 grid points" in printed and "category acc" in printed
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert saved["model"]["C"] == 1.0 and saved["features"]["word_ngram_range"] == [1, 1]


def test_cli_json_output(demo_slice, capsys):
    code = main(["tune", demo_slice[1], "--text", "text", "--category", "category", "--min-class-count", "1",
                 "--folds", "2", "--C", "1", "--word-ngrams", "1-1", "--json"])
    assert code == 0
    body = json.loads(capsys.readouterr().out)
    assert body["folds"] == 2 and body["rows"][0]["params"] == {"model.C": "1.0", "features.word_ngram_range": "1-1"}
    assert body["best_config"]["model"]["C"] == 1.0


def test_parse_grid_reads_each_kind_of_value():
    grid = parse_grid({"C": "0.5, 1", "class_weight": "none,balanced", "word_ngrams": "1-1,1-2", "min_df": "2",
                       "char_ngrams": None, "calibration": "temperature,none", "fusion": "auto,off"})
    assert grid == {"model.C": [0.5, 1.0], "model.class_weight": [None, "balanced"],
                    "features.word_ngram_range": [(1, 1), (1, 2)], "features.min_df": [2],
                    "model.calibration": ["temperature", "none"], "model.fusion": ["auto", "off"]}
    assert parse_grid({"C": None}) == DEFAULT_GRID


@pytest.mark.parametrize(("specs", "match"), [
    ({"C": "abc"}, r"--C: expected comma-separated numbers, got 'abc'"),
    ({"word_ngrams": "1to2"}, r"--word-ngrams: expected comma-separated ranges like 1-2"),
    ({"class_weight": "heavy"}, r"--class-weight: expected comma-separated none or balanced"),
    ({"fusion": "sometimes"}, r"--fusion: expected comma-separated auto, on or off, got 'sometimes'"),
    ({"min_df": "1.5"}, r"--min-df: expected comma-separated integers"),
    ({"C": ","}, r"--C: give at least one value"),
    ({"alpha": "1"}, r"unknown grid setting 'alpha'"),
])
def test_bad_grid_values_are_refused(specs, match):
    with pytest.raises(ConfigError, match=match):
        parse_grid(specs)


def test_grid_points_are_validated_and_bounded():
    with pytest.raises(ConfigError, match="invalid training config"):
        grid_points(TrainingConfig(), {"model.C": [-1.0]})
    with pytest.raises(ConfigError, match="unknown config key"):
        grid_points(TrainingConfig(), {"model.alpha": [1.0]})
    with pytest.raises(ConfigError, match=f"the limit is {MAX_GRID_POINTS}"):
        grid_points(TrainingConfig(), {"model.C": list(range(1, 21)), "features.min_df": list(range(1, 12))})
    with pytest.raises(ConfigError, match="the grid is empty"):
        grid_points(TrainingConfig(), {})


def test_bad_folds_and_data_are_refused(demo_slice):
    with pytest.raises(ConfigError, match="folds must be an integer from 2 to 20, got 1"):
        tune(demo_slice[0], text="text", targets={"category": "category"}, grid=SMALL_GRID, folds=1)
    tiny = demo_slice[0].groupby("category").head(3)
    with pytest.raises(TrainingDataError, match="cannot make 5 stratified folds: .* Lower --folds"):
        tune(tiny, text="text", targets={"category": "category"}, grid={"model.C": [1.0]},
             config=TrainingConfig(min_class_count=1), folds=5)
    with pytest.raises(TrainingDataError, match="no targets given"):
        tune(demo_slice[0][["text"]], text="text", grid={"model.C": [1.0]})


def test_cli_reports_a_bad_grid_as_an_error_line(demo_slice, capsys):
    code = main(["tune", demo_slice[1], "--text", "text", "--category", "category", "--C", "x"])
    assert code == 2
    assert capsys.readouterr().err.strip() == "error: --C: expected comma-separated numbers, got 'x'"


def test_a_partly_labeled_target_is_scored_as_train_would_fit_it(demo_slice):
    """tune fits its heads itself (features shared across grid points): an agency labeled on part of the cases
    must learn from the same rows and features as ``ComplaintClassifier.fit`` would, or tune would rank
    settings by a model train never makes."""
    import numpy as np

    from classifier.model import ComplaintClassifier
    from training.data import validate
    from training.metrics import classification_metrics
    from training.splits import kfold_splits

    df = demo_slice[0].copy()
    df.loc[df.index % 3 == 0, "agency"] = None  # a third not forwarded
    config = TrainingConfig(min_class_count=1, n_jobs=1).with_updates(**{"model.C": 1.0})
    targets = {"category": "category", "agency": "agency"}
    res = tune(df, text="text", targets=targets, grid={"model.C": [1.0]}, config=config, folds=2)
    clean, _ = validate(df, "text", targets, min_class_count=1)
    texts = np.asarray(clean["text"].tolist(), dtype=object)
    agency = clean["agency"].to_numpy()
    accuracy, macro_f1 = [], []
    for train_idx, test_idx in kfold_splits(clean["category"].fillna("\x00").to_numpy(), 2, config.seed):
        model = ComplaintClassifier(config).fit(
            texts[train_idx].tolist(), {"category": clean["category"].to_numpy()[train_idx].tolist(),
                                        "agency": agency[train_idx].tolist()})
        te = test_idx[pd.notna(agency[test_idx])]
        m = classification_metrics(agency[te].astype(str), model.predict_proba(texts[te].tolist(), "agency"),
                                   model.classes("agency"))
        accuracy.append(m["accuracy"])
        macro_f1.append(m["macro_f1"])
    scores = res.rows[0]["scores"]["agency"]
    assert scores["accuracy"] == pytest.approx(np.mean(accuracy), abs=1e-12)
    assert scores["macro_f1"] == pytest.approx(np.mean(macro_f1), abs=1e-12)
