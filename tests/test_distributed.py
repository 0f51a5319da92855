"""Batch scoring on a Dask cluster (a real 2-worker LocalCluster): the same predictions as one process."""

from __future__ import annotations

import glob

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("distributed")

from classifier.errors import ComplaintInputError  # noqa: E402
from training.cli import main  # noqa: E402
from training.demo import DEMO_CORPUS  # noqa: E402
from training.distributed import cluster_client, predict_on_cluster  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with cluster_client(None, n_workers=2) as c:
        yield c


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> tuple[pd.DataFrame, str]:
    df = pd.read_csv(DEMO_CORPUS).head(240)[["text"]].reset_index(drop=True)
    df.insert(0, "case_id", [f"WO-{i:04d}" for i in range(len(df))])
    df.loc[7, "text"] = "   "  # cannot be scored: reported, not dropped
    folder = tmp_path_factory.mktemp("cases") / "history"
    folder.mkdir()
    df.iloc[:130].to_parquet(folder / "a.parquet", index=False)
    df.iloc[130:].to_parquet(folder / "b.parquet", index=False)
    return df, str(folder)


def _read(files: list[str]) -> pd.DataFrame:
    return pd.concat([pd.read_csv(f, keep_default_na=False) if f.endswith(".csv") else pd.read_parquet(f)
                      for f in files], ignore_index=True)


def _one_process(model, frame, first_row):
    from training.batch_predict import predict_frame, predictions_table

    records = predict_frame(model, frame, "text", id_column="case_id", first_row=first_row)
    return predictions_table(records, list(model.targets_))


def test_cluster_scoring_equals_one_process_and_keeps_every_row(client, cases, tiny_model, tmp_path):
    df, folder = cases
    done = predict_on_cluster(tiny_model, folder, "text", "case_id", str(tmp_path / "scored.parquet"), client)
    assert done.rows == 240 and done.partitions == 2 and done.workers == 2
    got = _read(sorted(glob.glob(str(tmp_path / "scored.parquet" / "part-*.parquet"))))
    expected = _one_process(tiny_model, df, first_row=1)  # what `hotline predict --data` writes
    assert got["id"].tolist() == df["case_id"].tolist()  # in input order, with ids
    assert got["row"].tolist() == list(range(1, 241))  # row numbers run on across partitions
    assert list(got.columns) == list(expected.columns)
    for target in tiny_model.targets_:
        assert got[target].tolist() == expected[target].tolist()
        np.testing.assert_array_equal(got[f"{target}_score"].to_numpy(), expected[f"{target}_score"].to_numpy())
    assert got.loc[7, "error"] == expected.loc[7, "error"] and pd.isna(got.loc[7, "category"])
    single = tiny_model.predict_details([df.loc[0, "text"]], top_k=1)[0]
    assert got.loc[0, "category"] == single["category"]["label"]
    assert got.loc[0, "category_score"] == single["category"]["score"]


def test_the_model_is_shipped_to_each_worker_once(client, tiny_model):
    shipped = client.scatter(tiny_model, broadcast=True, hash=False)
    assert len(client.who_has([shipped])[shipped.key]) == 2


def test_hotline_predict_with_a_scheduler_address(client, cases, tiny_model, tmp_path, capsys):
    from training.train import save_model

    df, folder = cases
    csv = tmp_path / "history.csv"
    df.to_csv(csv, index=False)
    store = tmp_path / "store"
    save_model(tiny_model, store)
    out = tmp_path / "scored"
    code = main(["predict", "--store", str(store), "--data", str(csv), "--text", "text", "--id", "case_id",
                 "--out", str(out), "--scheduler", client.scheduler.address])
    assert code == 0
    assert "scored 240 rows" in capsys.readouterr().err
    got = _read(sorted(glob.glob(str(out / "part-*.csv"))))
    expected = _one_process(tiny_model, pd.read_csv(csv, dtype=str, keep_default_na=False), first_row=2)
    assert got["id"].tolist() == df["case_id"].tolist() and got["row"].tolist() == list(range(2, 242))
    assert got["category"].fillna("").tolist() == expected["category"].fillna("").tolist()


def test_cluster_scoring_names_a_missing_column(client, cases, tiny_model, tmp_path):
    _, folder = cases
    with pytest.raises(ComplaintInputError, match=r"column\(s\) \['留言详情'\] not in"):
        predict_on_cluster(tiny_model, folder, "留言详情", "case_id", str(tmp_path / "x"), client)


def test_scheduler_needs_the_file_options(tmp_path, capsys):
    code = main(["predict", "--store", str(tmp_path), "--data", "cases.csv", "--scheduler"])
    assert code == 2
    assert "give --data PATH and --out FOLDER" in capsys.readouterr().err


def test_training_on_the_cluster_matches_one_machine(client, tmp_path):
    from classifier.config import TrainingConfig
    from classifier.model import ComplaintClassifier
    from training.cluster_training import train_on_cluster

    df = pd.read_csv(DEMO_CORPUS).sample(frac=1.0, random_state=1).reset_index(drop=True)
    train, test = df.iloc[:1200], df.iloc[1200:1600]
    folder = tmp_path / "history"
    folder.mkdir()
    for k in range(3):
        train.iloc[k * 400:(k + 1) * 400][["text", "category"]].to_parquet(folder / f"{k}.parquet", index=False)
    config = TrainingConfig(min_class_count=1, n_jobs=1).with_updates(
        **{"model.exact_fit_rows": 100, "model.calibration_rows": 300})
    on_cluster = train_on_cluster(client, str(folder), "text", {"category": "category"}, config)
    local = ComplaintClassifier(config).fit(train["text"].tolist(), {"category": train["category"].tolist()})
    # the same vocabulary, idf and naive Bayes statistics; SGD saw the rows in other chunks
    assert on_cluster.vectorizer_.vocabulary_ == local.vectorizer_.vocabulary_
    np.testing.assert_array_equal(on_cluster.vectorizer_.idf_, local.vectorizer_.idf_)
    truth = test["category"].to_numpy(dtype=str)
    got = np.asarray(on_cluster.predict(test["text"].tolist())["category"])
    expected = np.asarray(local.predict(test["text"].tolist())["category"])
    assert np.mean(got == truth) >= np.mean(expected == truth) - 0.03
    assert np.mean(got == expected) >= 0.9
