"""Did a model learn from the cases it is evaluated on?  The row fingerprint saved with every version, and the
loud warning in `evaluate`, `hotline report` and its HTML when the evaluated cases overlap a model's training
data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from classifier.config import TrainingConfig
from classifier.store import ModelStore
from training.cli import main
from training.overlap import ROW_FILTER_FILE, RowFilter
from training.report import evaluate
from training.train import save_model, train

CONFIG = TrainingConfig(min_class_count=1, n_jobs=1, test_size=0.0)


def test_row_filter_finds_every_training_row_and_few_others():
    rng = np.random.default_rng(0)
    seen = [f"投诉{i}号：" + "".join(rng.choice(list("路灯坏了暖气不热噪声扰民"), 12)) for i in range(3000)]
    unseen = [f"来电{i}：" + "".join(rng.choice(list("物业收费学校乱收费停水"), 12)) for i in range(3000)]
    f = RowFilter.build(seen)
    assert f.contains(seen).all()  # no false negatives, ever
    assert f.contains(["  " + seen[5].replace("：", "： ") + "\n"])[0] == f.contains([seen[5].replace("：", "： ")])[0]
    assert f.contains([" ".join(seen[7].split()) + "  "])[0]  # whitespace does not make a new case
    assert f.contains(unseen).mean() < 0.002  # ~0.01 % by design
    assert f.chance_rate() < 0.0005
    again = RowFilter.from_json(f.to_json())
    assert (again.contains(unseen[:500]) == f.contains(unseen[:500])).all() and again.rows == 3000
    assert RowFilter.build(seen[:10]).salt != RowFilter.build(seen[:10]).salt  # salted per version
    assert len(f.to_json()) < 3000 * 3.5  # about 2.4 bytes per row, base64


@pytest.fixture(scope="module")
def split(demo_slice) -> tuple[pd.DataFrame, pd.DataFrame]:
    df = demo_slice[0]
    return df.iloc[::2].reset_index(drop=True), df.iloc[1::2].reset_index(drop=True)


@pytest.fixture(scope="module")
def store(split, tmp_path_factory) -> tuple[ModelStore, str]:
    train_part, _ = split
    store = ModelStore(tmp_path_factory.mktemp("overlap-store"))
    model = train(train_part, text="text", targets={"category": "category"}, config=CONFIG)
    return store, save_model(model, store)


def test_every_version_carries_its_training_rows_fingerprint(store, split):
    store, version = store
    m = store.manifest(version)
    assert m["data"]["row_fingerprint"] == {"file": ROW_FILTER_FILE, "rows": 60, "false_positive_rate": 0.0001}
    assert ROW_FILTER_FILE in m["files"]  # hashed like every file of the version
    loaded = store.load(version)
    assert not hasattr(loaded.model, "training_rows")  # a file of the version, not part of the pickle
    text = (store.path / version / ROW_FILTER_FILE).read_text(encoding="utf-8")
    assert not any(t[:6] in text for t in split[0]["text"])  # no complaint text in it


def test_evaluate_says_how_many_cases_the_model_learned_from(store, split):
    store, version = store
    train_part, new = split
    mixed = pd.concat([new.iloc[:40], train_part.iloc[:20]], ignore_index=True)
    report = evaluate(store.load(version), mixed, targets={"category": "category"}, oof_folds=0)
    o = report.overlap
    assert (o.status, o.method, o.rows_checked, o.rows_seen) == ("overlap", "row fingerprint", 60, 20)
    assert report.overlap_warnings() == [f"20 of the 60 evaluated cases (33%) were in the training data of model "
                                         f"{version}: its scores here are too good (it has seen these answers). "
                                         "Evaluate on cases it did not learn from (e.g. the newest, labeled after "
                                         "it was trained)."]
    clean = evaluate(store.load(version), new, targets={"category": "category"}, oof_folds=0,
                     compare=store.load(version))
    assert clean.overlap.status == "none" and clean.overlap.rows_seen == 0 and clean.overlap_warnings() == []
    assert clean.compare_overlap.status == "none"
    saved = json.loads(clean.to_json())["overlap"]
    assert saved["model"]["status"] == "none" and saved["model"]["rows_checked"] == 60


def test_an_older_version_is_checked_by_the_whole_datas_fingerprint(store, split, tmp_path):
    """Versions saved before row fingerprints: the same export (content or file) is still caught."""
    store, version = store
    train_part, new = split
    manifest = store.manifest(version)
    data = dict(manifest["data"])
    data.pop("row_fingerprint")
    old = {**manifest, "data": data}

    class Old:  # a StoredModel of an older version: no fingerprint file to find
        model = store.load(version).model
        path = tmp_path
        manifest = old

    Old.version = version
    same = evaluate(Old, train_part, targets={"category": "category"}, oof_folds=0)
    assert same.overlap.status == "same data" and same.overlap.method == "the same content fingerprint"
    assert "this is the data model " in same.overlap_warnings()[0]
    other = evaluate(Old, new, targets={"category": "category"}, oof_folds=0)
    assert other.overlap.status == "unknown" and other.overlap_warnings() == []
    assert "has no row fingerprint" in other.overlap.sentence()


def test_hotline_report_warns_loudly_on_its_own_training_data(store, split, tmp_path, capsys):
    store, version = store
    data = tmp_path / "export.csv"
    split[0].to_csv(data, index=False)
    code = main(["report", "--data", str(data), "--category", "category", "--out", str(tmp_path / "r"), "--folds",
                 "0", "--store", str(store.path)])
    out, err = capsys.readouterr()
    assert code == 0
    assert err.startswith(f"WARNING: 60 of the 60 evaluated cases (100%) were in the training data of model {version}")
    html = (tmp_path / "r" / "report.html").read_text(encoding="utf-8")
    assert 'class="overlap warn"' in html and "were in the training data of model" in html
    code = main(["report", "--data", str(data), "--category", "category", "--out", str(tmp_path / "r"), "--folds",
                 "0", "--json", "--store", str(store.path)])
    body = json.loads(capsys.readouterr().out)
    assert body["overlap"]["model"]["rows_seen"] == 60 and body["overlap"]["model"]["warns"] is True
