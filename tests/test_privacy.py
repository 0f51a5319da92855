"""Personal data in the model (issue 15, section 4): a trained model holds no caller's name, room number or plate,
one-off tokens stay out of the vocabulary, and an explanation never names a term from a single training case."""

from __future__ import annotations

import io
import pickle

import joblib
import numpy as np
import pytest

from classifier.config import TrainingConfig
from classifier.features import LEAD_PREFIX, WORD_PREFIX, ComplaintVectorizer
from classifier.model import ComplaintClassifier
from classifier.store import ModelStore
from classifier.text import ComplaintTokenizer
from tests.conftest import TINY_CASES, tiny_config
from training.train import save_model

CALLER = "覃嘉懿"
# one repeat caller, six calls: her name, building/unit/room, plate and card are in every one
PLANTED = [
    (f"我叫{CALLER}，住滨河家园7号楼3单元302室，楼下烧烤油烟太大", "环境保护", "兴庆区生态环境局"),
    (f"联系人{CALLER}，滨河家园7号楼3单元302室，楼下烧烤半夜还在营业", "环境保护", "兴庆区生态环境局"),
    (f"{CALLER}女士反映滨河家园7号楼3单元302室楼下油烟直冲窗户", "环境保护", "兴庆区生态环境局"),
    (f"本人{CALLER}，7号楼3单元302室，车牌宁A·37215的车被烧烤摊堵住", "环境保护", "兴庆区生态环境局"),
    (f"来电人{CALLER}：滨河家园7号楼3单元302室，烧烤摊油烟扰民，退款请打到卡号6222021381234567",
     "环境保护", "兴庆区生态环境局"),
    (f"我叫{CALLER}，7号楼3单元302室，第六次反映楼下烧烤油烟，车牌宁A·37215，卡号6222021381234567",
     "环境保护", "兴庆区生态环境局"),
]
SECRETS = (CALLER, "嘉懿", "302", "37215", "6222")


def _fit(normalization: int | None = None) -> ComplaintClassifier:
    cases = TINY_CASES + PLANTED
    config = TrainingConfig(min_class_count=1, test_size=0.0, seed=7, n_jobs=1)  # the shipped min_df (2)
    if normalization is not None:
        config = config.with_updates(**{"features.normalization": normalization})
    return ComplaintClassifier(config).fit([t for t, _, _ in cases], {"category": [c for _, c, _ in cases],
                                                                     "agency": [a for _, _, a in cases]})


@pytest.fixture(scope="module")
def planted_models() -> tuple[ComplaintClassifier, ComplaintClassifier]:
    return _fit(), _fit(normalization=2)


def _saved_bytes(model: ComplaintClassifier, tmp_path) -> bytes:  # noqa: ANN001
    """The model as the store holds it, decompressed, and its feature names (char n-grams are stored as their
    code points, which anyone who copies model.joblib can read as text): what such a reader learns."""
    store = ModelStore(tmp_path / "models")
    version = save_model(model, store)
    loaded = joblib.load(io.BytesIO((store.path / version / "model.joblib").read_bytes()))
    return pickle.dumps(loaded) + "\n".join(loaded.vectorizer_.get_feature_names_out()).encode("utf-8")


def test_a_trained_model_holds_no_callers_name_room_plate_or_card(planted_models, tmp_path):
    masked, unmasked = planted_models
    vocabulary = list(masked.vectorizer_.vocabulary_)
    assert [f for f in vocabulary if any(s in f for s in SECRETS)] == []
    assert CALLER.encode("utf-8") not in _saved_bytes(masked, tmp_path / "v3")
    # what normalization 2 kept: the test would see a leak if there were one
    old_vocabulary = list(unmasked.vectorizer_.vocabulary_)
    assert {s for s in SECRETS if any(s in f for f in old_vocabulary)} == set(SECRETS)
    assert CALLER.encode("utf-8") in _saved_bytes(unmasked, tmp_path / "v2")
    # and the masked model still learned the complaint
    assert masked.predict([f"我叫{CALLER}，楼下烧烤油烟"])["agency"] == ["兴庆区生态环境局"]


def test_an_older_normalization_keeps_reading_text_its_own_way(planted_models):
    masked, unmasked = planted_models
    assert masked.vectorizer_.normalization == 3 and unmasked.vectorizer_.normalization == 2
    text = "我叫王小明，住7号楼"
    assert unmasked.tokens(text)[:2] == ["我", "叫"] and "<NAME>" not in unmasked.tokens(text)
    assert "王小明" in "".join(unmasked.tokens(text)) and "7" in unmasked.tokens(text)
    assert masked.tokens(text) == ["我", "叫", "<NAME>", "住", "<ADDRESS>"]
    pickled = pickle.loads(pickle.dumps(unmasked))
    assert pickled.tokens(text) == unmasked.tokens(text)


def test_a_token_in_fewer_than_min_df_distinct_cases_stays_out_of_the_vocabulary():
    """A nickname no mask knows ("阿福"): once, or once copied twice, it is no feature; in two cases it is (its
    char bigram; jieba cuts it in two)."""

    def vocabulary(texts: list[str]) -> dict[str, int]:
        vec = ComplaintVectorizer(ComplaintTokenizer(), min_df=2, lead_chars=0)
        vec.fit(texts)
        return vec.vocabulary_

    base = ["路灯坏了没人修", "路灯一直不亮", "井盖丢了没人修", "井盖坏了"]
    assert "阿福" not in vocabulary([*base, "阿福家门口路灯坏了"])
    assert "阿福" not in vocabulary([*base, "阿福家门口路灯坏了", "阿福家门口路灯坏了"])
    assert "福" not in vocabulary([*base, "阿福家门口路灯坏了", "阿福家门口路灯坏了"])
    assert "阿福" in vocabulary([*base, "阿福家门口路灯坏了", "阿福说井盖丢了"])


def _features(entry: dict[str, str]) -> list[str]:
    """The features an explanation term can stand for: a word, or two words shown without their space."""
    kind, term = entry["kind"], entry["term"]
    names = ([WORD_PREFIX + term] + [f"{WORD_PREFIX}{term[:i]} {term[i:]}" for i in range(1, len(term))]
             if kind.endswith("word") else [term])
    return [LEAD_PREFIX + n for n in names] if kind.startswith("lead") else names


def test_an_explanation_never_names_a_term_from_a_single_training_case():
    """With min_df=1 a one-off term is a feature; an explanation would tell that it was in the training data."""
    texts = [t for t, _, _ in TINY_CASES]
    model = ComplaintClassifier(tiny_config()).fit(texts, {"agency": [a for _, _, a in TINY_CASES]})
    vec = model.vectorizer_
    cases = {}
    for t in texts:
        for f in set(vec.analyze(t)):
            cases[f] = cases.get(f, 0) + 1
    assert min(cases[f] for f in vec.vocabulary_) == 1  # one-off features are in this vocabulary
    shown = 0
    for text in ["豫海镇打车司机故意绕路多收钱", "清和街施工占道", "李旺镇煤改电以后屋里温度上不去"]:
        for entry in model.explain(text, "agency", n_terms=30):
            assert max(cases.get(f, 0) for f in _features(entry)) >= 2, entry
            shown += 1
    assert shown > 10
    assert np.all(vec.explainable(np.arange(len(vec.vocabulary_))) == np.array(
        [cases[f] >= 2 for f in vec.get_feature_names_out()]))
