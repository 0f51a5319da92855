"""Shared fixtures.  Models are trained once per session: the demo model takes ~20 s."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from classifier.config import TrainingConfig
from classifier.model import ComplaintClassifier
from classifier.store import ModelStore

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# a dozen hotline cases: enough to overfit, small enough to read
TINY_CASES = [
    ("兴庆区解放东街红绿灯坏了，路口堵车严重", "交通秩序", "兴庆区交警一大队"),
    ("北京东路上天天有人乱停车，车都过不去", "交通秩序", "兴庆区交警一大队"),
    ("清和街施工占道，早高峰堵得走不动", "交通秩序", "兴庆区交警一大队"),
    ("朝阳西街路面塌了一个大坑，晚上很危险", "道路设施", "大武口区住建局"),
    ("人民路井盖丢了好几天没人管", "道路设施", "大武口区住建局"),
    ("青山路的路灯一到晚上就不亮", "道路设施", "大武口区住建局"),
    ("同心县的出租车拒载，还骂乘客", "公共交通", "同心县交通运输局"),
    ("同心县客运站的班车老是晚点", "公共交通", "同心县交通运输局"),
    ("豫海镇打车司机故意绕路多收钱", "公共交通", "同心县交通运输局"),
    ("李旺镇村里的空气能坏了，家里冻得不行", "供暖供热", "海原县李旺镇政府"),
    ("李旺镇电采暖不热，老人受不了", "供暖供热", "海原县李旺镇政府"),
    ("李旺镇煤改电以后屋里温度上不去", "供暖供热", "海原县李旺镇政府"),
]


@pytest.fixture(autouse=True)
def _decision_log_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's service writes its decision log to its own temporary SQLite file, never into ``models/``
    (tests of the default location unset this)."""
    monkeypatch.setenv("HOTLINE_DECISION_LOG_URL", f"sqlite:///{tmp_path / 'decisions.sqlite'}")


def tiny_config(**updates: object) -> TrainingConfig:
    base = TrainingConfig(min_class_count=1, test_size=0.0, seed=7)
    # hyperparameters pinned so that tuning the shipped defaults does not move these tests' scores
    return base.with_updates(**{"features.min_df": 1, "model.C": 0.5, "model.calibration_folds": 3, **updates})


@pytest.fixture(scope="session")
def demo_slice(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, str]:
    """Six demo categories x 20 complaints (with their agencies), as a frame and as a CSV file: a few seconds
    per fit, for the cross-validating commands (tune, learning-curve)."""
    from training.demo import DEMO_CORPUS

    df = pd.read_csv(DEMO_CORPUS)
    keep = df["category"].value_counts().index[:6]
    df = df[df["category"].isin(keep)].groupby("category").head(20).reset_index(drop=True)
    path = tmp_path_factory.mktemp("demo-slice") / "cases.csv"
    df.to_csv(path, index=False)
    return df, str(path)


@pytest.fixture(scope="session")
def gbk_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GBK-encoded CSV export with Chinese column names, like the ones data staff bring: four demo categories
    (留言详情, 一级标签, 承办单位)."""
    from training.demo import DEMO_CORPUS

    corpus = pd.read_csv(DEMO_CORPUS)
    small = corpus[corpus["category"].isin(["交通秩序", "供暖供热", "公共交通", "教育"])]
    small = small.rename(columns={"text": "留言详情", "category": "一级标签", "agency": "承办单位"})
    path = tmp_path_factory.mktemp("export") / "cases.csv"
    small.to_csv(path, index=False, encoding="gbk", errors="replace")
    return path


@pytest.fixture(scope="session")
def gbk_store(gbk_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with one version trained by `hotline train` on ``gbk_export`` (category only).  Shared by the
    session: a test that changes a store works on a copy (``shutil.copytree``)."""
    from training.cli import main

    store = tmp_path_factory.mktemp("cli-store")
    code = main(["train", str(gbk_export), "--text", "留言详情", "--category", "一级标签", "--quiet",
                 "--store", str(store)])
    assert code == 0
    return store


@pytest.fixture(scope="session")
def tiny_model() -> ComplaintClassifier:
    texts = [t for t, _, _ in TINY_CASES]
    return ComplaintClassifier(tiny_config()).fit(
        texts, {"category": [c for _, c, _ in TINY_CASES], "agency": [a for _, _, a in TINY_CASES]}
    )


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    """A store holding the trained demo model as its current version (trained once per test session)."""
    from training.demo import ensure_demo_model

    store = ModelStore(tmp_path_factory.mktemp("demo-store"))
    ensure_demo_model(store)
    return store


@pytest.fixture(scope="session")
def demo_model(demo_store: ModelStore):  # noqa: ANN201
    return demo_store.load().model


def shared_data(relative: str) -> Path:
    """A file under ../shared/data, or skip the test with a clear reason when it is absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"{path} not present (real data lives in ../shared/data beside the checkout)")
    return path
