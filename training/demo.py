"""The bundled Ningxia demo: domain tables, a sample corpus, a user dictionary, and the demo model.

``hotline demo`` (the README's quick start) trains the demo model into the store if it has none, then
predicts.  The data lives in ``data/ningxia/`` of the repository:

- ``places.csv``, ``agencies.csv``, ``functions.csv``, ``categories.csv``: the demo jurisdiction;
- ``complaints.csv``: hand-written sample complaints (text, category, agency), the training corpus;
- ``heldout.csv``: 300 more, written by a writer who saw nothing of the corpus and never trained on or looked
  at while the corpus grew (operator notes, app messages, one-liners; 10 % name no place): how the demo model
  does on wording it has not seen (``benchmarks/bench_routing.py``, ``tests/test_demo.py``,
  ``hotline report --data``);
- ``dev.csv``: 400 written the same way earlier; never trained on, but its errors chose what the corpus's
  last 800 cases cover, so its scores are optimistic;
- ``userdict.txt``: place and agency names plus hotline words for jieba, built by ``build_user_dictionary``;
- ``stopwords.txt``: greetings and fillers that carry no routing signal.

The demo model is a ``RoutedClassifier``: the flat category and agency heads plus a function head, routed
through the directory built from the domain tables (``demo_directory()``).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

from classifier.config import TrainingConfig
from classifier.jurisdiction import RoutingDirectory
from classifier.store import ModelStore

__all__ = [
    "DEMO_DIR",
    "DEMO_CORPUS",
    "DEMO_HELDOUT",
    "DEMO_DEV",
    "SAMPLE_COMPLAINTS",
    "build_user_dictionary",
    "demo_config",
    "demo_directory",
    "ensure_demo_model",
    "train_demo",
]

DEMO_DIR = Path(__file__).resolve().parents[1] / "data" / "ningxia"
DEMO_CORPUS = DEMO_DIR / "complaints.csv"
DEMO_HELDOUT = DEMO_DIR / "heldout.csv"
DEMO_DEV = DEMO_DIR / "dev.csv"
USER_DICT = DEMO_DIR / "userdict.txt"
STOP_WORDS = DEMO_DIR / "stopwords.txt"

SAMPLE_COMPLAINTS = [
    "兴庆区六盘山中路与凤凰南街交叉口施工，导致交通拥堵。",
    "大武口区永乐南路路面塌陷，无人处理。",
    "同心县出租车司机存在不文明驾驶行为。",
    "海原县李旺镇杨堡村6队空气能故障，影响村民正常生活。",
]

# words of the trade that jieba's general dictionary splits apart
HOTLINE_WORDS = [
    "12345", "空气能", "电采暖", "煤改电", "清洁取暖", "网约车", "拒载", "绕路", "占道经营", "违章停车",
    "乱停乱放", "路面塌陷", "井盖", "路灯不亮", "下水道", "污水外溢", "物业费", "维修基金", "拖欠工资",
    "农民工", "社保", "医保报销", "异地就医", "低保", "临时救助", "特困供养", "高龄津贴", "两项补贴",
    "残疾证", "落户", "户口迁移", "宅基地", "不动产证", "村务公开", "人居环境", "小广告", "违法搭建",
    "扬尘", "异味", "噪声扰民", "校外培训", "校车", "老旧小区", "暖气不热", "供暖费", "水压低",
]


def build_user_dictionary(domain_dir: Path = DEMO_DIR) -> str:
    """A jieba user dictionary from the domain tables: cities, counties, towns, agencies, hotline words.

    No frequencies: jieba then gives each word just enough weight to be cut out whole.
    """
    words: dict[str, str] = {}
    with (domain_dir / "places.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            for name in (row["city"], row["county"], row["town"]):
                if name:
                    words.setdefault(name, "ns")
    with (domain_dir / "agencies.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            words.setdefault(row["agency"], "nt")
    for w in HOTLINE_WORDS:
        words.setdefault(w, "n")
    return "".join(f"{w} {tag}\n" for w, tag in words.items())


def demo_config(**updates: object) -> TrainingConfig:
    # the demo corpus has about 1,300 cases for 400 agencies: most agencies have one or two examples, so
    # every class is kept (the flat agency model's weakness, which jurisdiction routing addresses)
    config = TrainingConfig(user_dict=str(USER_DICT), stop_words=str(STOP_WORDS), min_class_count=1)
    return config.with_updates(**updates) if updates else config


def demo_directory() -> RoutingDirectory:
    """The demo's routing directory: ``places.csv``, ``agencies.csv`` and ``functions.csv`` of ``DEMO_DIR``."""
    return RoutingDirectory.from_dir(DEMO_DIR)


def train_demo(config: TrainingConfig | None = None, log: Callable[[str], None] | None = None):  # noqa: ANN201
    """Train the demo router on the bundled corpus (category and agency, routed through ``demo_directory()``)
    and return it (not saved).  Its hold-out agency metrics measure the routing, not the flat head."""
    from .train import train

    return train(DEMO_CORPUS, text="text", targets={"category": "category", "agency": "agency"},
                 config=config or demo_config(), progress=False, log=log, directory=demo_directory())


def ensure_demo_model(
    store: ModelStore, retrain: bool = False, log: Callable[[str], None] | None = None
) -> tuple[str, bool]:
    """The store's current version, training and promoting the demo model first if there is none.

    Returns (version, trained_now).
    """
    from .train import save_model

    current = store.current()
    if current is not None and not retrain:
        return current, False
    if log:
        log(f"training the Ningxia demo model from {DEMO_CORPUS} ...")
    model = train_demo(log=None)
    return save_model(model, store, promote=True), True
