"""ComplaintClassifier: overfit, round-trip, batch == single, calibrated output, every bad input."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from classifier.config import TrainingConfig
from classifier.errors import (
    ComplaintInputError,
    EmptyTextError,
    NotAListError,
    TextTooLongError,
    TrainingDataError,
    UnknownTargetError,
)
from classifier.features import WORD_PREFIX, ComplaintVectorizer
from classifier.model import ComplaintClassifier, TargetHead
from classifier.store import ModelStore
from tests.conftest import TINY_CASES, tiny_config
from training.train import save_model

TEXTS = [t for t, _, _ in TINY_CASES]


def test_overfits_a_dozen_cases(tiny_model):
    pred = tiny_model.predict(TEXTS)
    assert pred["category"] == [c for _, c, _ in TINY_CASES]
    assert pred["agency"] == [a for _, _, a in TINY_CASES]


def test_unseen_complaints_route_by_their_words(tiny_model):
    result = tiny_model.predict_one("李旺镇的空气能又坏了")
    assert result["category"]["label"] == "供暖供热"
    assert result["agency"]["label"] == "海原县李旺镇政府"


def test_probabilities_are_a_distribution_and_alternatives_are_ranked(tiny_model):
    proba = tiny_model.predict_proba(TEXTS, "category")
    assert proba.shape == (12, 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    result = tiny_model.predict_one(TEXTS[0], top_k=3)
    alts = result["category"]["alternatives"]
    assert [a["label"] for a in alts][0] == result["category"]["label"] == "交通秩序"
    assert len(alts) == 3
    assert alts[0]["score"] >= alts[1]["score"] >= alts[2]["score"]
    assert result["category"]["score"] == pytest.approx(float(proba[0].max()), abs=1e-6)


def test_top_k_larger_than_the_classes_returns_all_classes(tiny_model):
    assert len(tiny_model.predict_one(TEXTS[0], top_k=10)["category"]["alternatives"]) == 4


def test_round_trip_through_the_store_gives_identical_probabilities(tiny_model, tmp_path):
    store = ModelStore(tmp_path)
    version = save_model(tiny_model, store)
    loaded = store.load(version).model
    for target in ("category", "agency"):
        np.testing.assert_array_equal(
            loaded.predict_proba(TEXTS, target), tiny_model.predict_proba(TEXTS, target)
        )


def test_batch_equals_one_by_one(tiny_model):
    texts = TEXTS + ["同心县的公交车很久才来一趟", "人民路晚上黑漆漆的"]
    batch = tiny_model.predict_details(texts, top_k=3)
    for text, from_batch in zip(texts, batch):
        single = tiny_model.predict_one(text, top_k=3)
        for target in ("category", "agency"):
            assert single[target]["label"] == from_batch[target]["label"]
            for a, b in zip(single[target]["alternatives"], from_batch[target]["alternatives"]):
                assert a["label"] == b["label"]
                assert a["score"] == pytest.approx(b["score"], abs=1e-5)


def test_single_text_fast_path_equals_the_batch_matrix(tiny_model):
    vec = tiny_model.vectorizer_
    X = vec.transform(TEXTS)
    for i, text in enumerate(TEXTS):
        idx, val = vec.transform_one(text)
        np.testing.assert_array_equal(idx, X[i].indices)
        np.testing.assert_allclose(val, X[i].data, rtol=1e-6)


def test_excel_escapes_and_invisible_characters_do_not_change_a_prediction(tiny_model):
    """Training data from a spreadsheet export and text typed into the service read the same."""
    typed = "朝阳西街路面塌了一个大坑\r\n晚上很危险"
    exported = "\u200b朝阳西街路面塌了一个大坑_x000D_\n晚上很危险"
    vec = tiny_model.vectorizer_
    assert vec.normalization >= 2
    assert vec.analyze(exported) == vec.analyze(typed)
    np.testing.assert_array_equal(tiny_model.predict_proba([exported], "category"),
                                  tiny_model.predict_proba([typed], "category"))


def test_a_model_pickled_before_normalization_versions_reads_text_as_it_was_trained(tiny_model):
    import pickle

    old = pickle.loads(pickle.dumps(tiny_model))
    del old.vectorizer_.__dict__["normalization"]  # what an older release pickled
    assert old.vectorizer_.normalization == 1
    assert old.vectorizer_.get_params()["normalization"] == 1
    assert old.tokens("路面塌了_x000D_很危险") == ["路面", "塌", "了", "x000d", "很", "危险"]
    assert tiny_model.tokens("路面塌了_x000D_很危险") == ["路面", "塌", "了", "很", "危险"]


def test_features_are_float32_and_l2_normalised_per_block(tiny_model):
    X = tiny_model.transform(TEXTS)
    assert X.dtype == np.float32
    blocks = tiny_model.vectorizer_.block_
    row = X[0].toarray()[0]
    for b in range(4):  # words, chars, and the same of the first 20 characters
        assert np.linalg.norm(row[blocks == b]) == pytest.approx(1.0, rel=1e-5)


def test_explanation_names_the_terms_that_pushed_the_label(tiny_model):
    result = tiny_model.predict_one("李旺镇的空气能坏了", explain=True)
    terms = [e["term"] for e in result["agency"]["explanation"]]
    # without the demo's user dictionary jieba cuts 李旺镇 into single characters: the town's pieces lead
    assert all("李" in t or "旺" in t or "镇" in t for t in terms[:4]), terms
    weights = [e["weight"] for e in result["agency"]["explanation"]]
    assert weights == sorted(weights, reverse=True) and all(w > 0 for w in weights)
    assert tiny_model.explain("李旺镇的空气能坏了", "category")[0]["kind"] in ("word", "char", "lead word", "lead char")


def test_needs_review_follows_thresholds(tiny_model):
    text = "有个事情想反映一下"
    assert tiny_model.predict_one(text, thresholds={"category": 0.0, "agency": 0.0})["needs_review"] is False
    assert tiny_model.predict_one(text, thresholds={"category": 1.01})["needs_review"] is True


@pytest.mark.parametrize(
    "bad,error,message",
    [
        (None, NotAListError, "expected a list of texts, got None"),
        ("路灯不亮", NotAListError, "got a single str"),
        ([""], EmptyTextError, r"text #0 is empty"),
        (["路灯不亮", "  \u3000\n"], EmptyTextError, r"text #1 is empty or whitespace only"),
        ([None], ComplaintInputError, r"text #0 is NoneType, expected str"),
        ([123], ComplaintInputError, r"text #0 is int, expected str"),
        (["路" * 100_000], TextTooLongError, r"text #0 has 100,000 characters; the limit is 10,000"),
    ],
)
def test_bad_input_gets_its_own_clear_error(tiny_model, bad, error, message):
    with pytest.raises(error, match=message):
        tiny_model.predict_details(bad)
    with pytest.raises(error, match=message):
        tiny_model.predict_proba(bad, "category")


def test_unknown_target_and_bad_top_k(tiny_model):
    expected = r"unknown target 'subcategory'; this model predicts \['category', 'agency'\]"
    with pytest.raises(UnknownTargetError, match=expected):
        tiny_model.predict_proba(TEXTS, "subcategory")
    with pytest.raises(ComplaintInputError, match="top_k must be an integer from 1 to 50, got 0"):
        tiny_model.predict_details(TEXTS, top_k=0)
    with pytest.raises(ComplaintInputError, match="expected one text"):
        tiny_model.predict_one(["路灯"])


def test_unfitted_model_raises_not_fitted():
    with pytest.raises(NotFittedError):
        ComplaintClassifier().predict(["路灯不亮"])
    with pytest.raises(NotFittedError):
        ComplaintVectorizer().transform(["路灯不亮"])


def test_training_errors_are_clear():
    with pytest.raises(TrainingDataError, match="at least 2 classes"):
        ComplaintClassifier(tiny_config()).fit(TEXTS[:3], {"category": ["交通秩序"] * 3})
    with pytest.raises(TrainingDataError, match="has 2 labels for 3 texts"):
        ComplaintClassifier(tiny_config()).fit(TEXTS[:3], {"category": ["a", "b"]})
    with pytest.raises(TrainingDataError, match="non-empty mapping"):
        ComplaintClassifier(tiny_config()).fit(TEXTS[:3], {})


def test_one_target_only_trains_only_that_target():
    model = ComplaintClassifier(tiny_config()).fit(TEXTS, {"category": [c for _, c, _ in TINY_CASES]})
    assert model.targets_ == ["category"]
    assert set(model.predict_one(TEXTS[0])) == {"category", "needs_review"}


def test_rows_without_a_label_train_only_the_other_target():
    agencies = [a for _, _, a in TINY_CASES]
    agencies[0] = None
    model = ComplaintClassifier(tiny_config()).fit(
        TEXTS, {"category": [c for _, c, _ in TINY_CASES], "agency": agencies}
    )
    assert model.predict(TEXTS[:1])["category"] == ["交通秩序"]


def test_estimator_contract():
    vec = ComplaintVectorizer(min_df=2)
    assert clone(vec).get_params()["min_df"] == 2
    assert not hasattr(clone(vec), "vocabulary_")
    head = TargetHead(C=2.0)
    assert clone(head).C == 2.0
    model = ComplaintClassifier(tiny_config())
    assert model.get_params()["config"] is model.config
    fitted = model.fit(TEXTS, {"category": [c for _, c, _ in TINY_CASES]})
    assert fitted is model


def test_temperature_is_fitted_from_out_of_fold_scores_and_keeps_the_ranking(tiny_model):
    head = tiny_model.heads_["category"]
    assert head.temperature_ > 0 and head.temperature_ != 1.0
    X = tiny_model.transform(TEXTS)
    np.testing.assert_array_equal(
        np.argmax(head.decision_function(X), axis=1), np.argmax(head.predict_proba(X), axis=1)
    )


def test_a_target_labeled_on_some_texts_learns_only_from_features_of_its_own_texts():
    """An agency is set on the forwarded cases only: a word the vectorizer admitted because of the other texts,
    seen in one of the agency's cases, must not become that agency's name-like cue (weight exactly zero),
    while the category head, labeled everywhere, learns it."""

    forwarded = [("小区路灯不亮", "路灯", "城管局"), ("路灯坏了晚上很黑", "路灯", "城管局"),
                 ("路灯一直闪", "路灯", "城管局"), ("供水管道漏水", "供水", "水务集团"),
                 ("停水三天没人管", "供水", "水务集团"), ("水管爆裂漏水", "供水", "水务集团"),
                 ("红星社区路灯不亮", "路灯", "城管局")]
    # "红星社区" occurs in one forwarded case and in unforwarded ones, all about water
    unforwarded = [("红星社区停水", "供水", None), ("红星社区水压低", "供水", None), ("红星社区水管漏水", "供水", None)]
    cases = forwarded + unforwarded
    texts = [t for t, _, _ in cases]
    model = ComplaintClassifier(TrainingConfig(min_class_count=1)).fit(
        texts, {"category": [c for _, c, _ in cases], "agency": [a for _, _, a in cases]})
    tokens = model.tokens("红星社区")
    assert "红星" in tokens or "红星社区" in tokens
    word = WORD_PREFIX + next(t for t in tokens if t.startswith("红星"))
    col = model.vectorizer_.vocabulary_[word]  # admitted: in 4 texts, min_df 2
    assert np.abs(model.heads_["agency"].coef_[col]).max() == 0.0
    assert np.abs(model.heads_["category"].coef_[col]).max() > 0.0
    # the manifest says how many features each head learned from
    used = {name: head.describe()["features_used"] for name, head in model.heads_.items()}
    assert used["agency"] < used["category"] <= len(model.vectorizer_.vocabulary_)
    assert used["agency"] == int(np.count_nonzero(np.any(model.heads_["agency"].coef_ != 0, axis=1)))
    # the agency head is the one an agency-only model would learn on its own vocabulary: same answers
    alone = ComplaintClassifier(TrainingConfig(min_class_count=1)).fit(
        [t for t, _, a in forwarded], {"agency": [a for _, _, a in forwarded]})
    probe = ["红星社区路灯坏了", "停水了", "路灯不亮"]
    expected = ["城管局", "水务集团", "城管局"]
    assert model.predict(probe, ["agency"])["agency"] == alone.predict(probe)["agency"] == expected
