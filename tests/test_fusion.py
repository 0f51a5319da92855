"""Fused heads: word-block SVM + char-block SVM + naive Bayes, weighted on out-of-fold scores, folded into one
linear model; used only where the median class has enough cases."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest

from classifier.config import TrainingConfig
from classifier.model import FUSION_MIN_MEDIAN_CLASS, ComplaintClassifier, TargetHead
from classifier.store import ModelStore
from training.demo import DEMO_CORPUS
from training.train import save_model, train


@pytest.fixture(scope="module")
def corpus() -> pd.DataFrame:
    """Eight demo categories with 40+ cases each: above the fusion threshold."""
    df = pd.read_csv(DEMO_CORPUS)
    keep = df["category"].value_counts().index[:8]
    return df[df["category"].isin(keep)].reset_index(drop=True)


@pytest.fixture(scope="module")
def split(corpus):
    rng = np.random.default_rng(0)
    test = rng.random(len(corpus)) < 0.25
    return corpus[~test], corpus[test]


def _fit(train_df: pd.DataFrame, fusion: str) -> ComplaintClassifier:
    config = TrainingConfig(min_class_count=1).with_updates(**{"model.fusion": fusion})
    return ComplaintClassifier(config).fit(train_df["text"].tolist(), {"category": train_df["category"].tolist()})


@pytest.fixture(scope="module")
def fused(split) -> ComplaintClassifier:
    return _fit(split[0], "auto")


@pytest.fixture(scope="module")
def single(split) -> ComplaintClassifier:
    return _fit(split[0], "off")


def test_auto_fuses_when_classes_are_large_and_the_weights_are_non_negative(fused, single, split):
    assert split[0]["category"].value_counts().median() >= FUSION_MIN_MEDIAN_CLASS
    head = fused.heads_["category"]
    assert head.fusion_weights_ is not None and set(head.fusion_weights_) == {"word_svm", "char_svm", "nb"}
    assert all(w >= 0 for w in head.fusion_weights_.values()) and sum(head.fusion_weights_.values()) > 0
    assert head.temperature_ == 1.0  # the weights are the calibration
    assert single.heads_["category"].fusion_weights_ is None and single.heads_["category"].temperature_ != 1.0
    # one linear model either way: the same shapes, the same prediction cost
    assert head.coef_.shape == single.heads_["category"].coef_.shape and head.coef_.dtype == np.float32


def test_fused_probabilities_are_calibrated_and_at_least_as_good_on_held_out_cases(fused, single, split):
    test = split[1]
    truth = test["category"].to_numpy()
    results = {}
    for name, model in (("fused", fused), ("single", single)):
        P = model.predict_proba(test["text"].tolist(), "category")
        classes = np.array(model.classes("category"))
        col = np.searchsorted(classes, truth)
        assert np.allclose(P.sum(axis=1), 1.0)
        results[name] = ((classes[P.argmax(1)] == truth).mean(), -np.log(P[np.arange(len(truth)), col]).mean())
    (acc_f, nll_f), (acc_s, nll_s) = results["fused"], results["single"]
    assert acc_f >= 0.9 and acc_f >= acc_s - 0.02
    assert nll_f < 0.5 and nll_f <= nll_s + 0.05


def test_fused_single_text_path_batch_path_and_explanations_agree(fused):
    texts = ["解放东街红绿灯坏了两天，路口堵车", "小区暖气片一直不热，屋里才十几度"]
    batch = fused.predict_details(texts, top_k=3, explain=True)
    for text, expected in zip(texts, batch, strict=True):
        one = fused.predict_details([text], top_k=3, explain=True)[0]
        assert one["category"]["label"] == expected["category"]["label"]
        assert one["category"]["score"] == pytest.approx(expected["category"]["score"], abs=1e-5)
    terms = [t["term"] for t in batch[1]["category"]["explanation"]]
    assert batch[1]["category"]["label"] == "供暖供热"
    assert any("暖" in t or "热" in t for t in terms[:5]), terms


def test_auto_keeps_a_single_svm_for_many_small_classes_and_on_forces_fusion():
    rng = np.random.default_rng(1)
    words = ["路灯", "暖气", "噪音", "垃圾", "公交", "学校", "医院", "物业", "工资", "自来水"]
    texts, labels = [], []
    for i, w in enumerate(words):
        for k in range(6):  # 6 cases per class: median 6 < 20
            texts.append(f"{w}问题第{k}次反映{rng.integers(100)}")
            labels.append(f"c{i}")
    from classifier.features import ComplaintVectorizer

    vec = ComplaintVectorizer(min_df=1)
    X = vec.fit_transform(texts)
    auto = TargetHead(fusion="auto").fit(X, labels, char_columns=vec.is_char_)
    assert auto.fusion_weights_ is None
    forced = TargetHead(fusion="on").fit(X, labels, char_columns=vec.is_char_)
    assert forced.fusion_weights_ is not None
    no_blocks = TargetHead(fusion="on").fit(X, labels)  # no char mask: nothing to fuse
    assert no_blocks.fusion_weights_ is None
    uncalibrated = TargetHead(fusion="on", calibration="none").fit(X, labels, char_columns=vec.is_char_)
    assert uncalibrated.fusion_weights_ is None
    with pytest.raises(ValueError, match="fusion must be 'auto', 'on' or 'off'"):
        TargetHead(fusion="maybe").fit(X, labels, char_columns=vec.is_char_)


def test_manifest_and_model_card_say_how_each_head_was_built(corpus, tmp_path):
    model = train(corpus, text="text", targets={"category": "category", "agency": "agency"},
                  config=TrainingConfig(min_class_count=1))
    version = save_model(model, tmp_path)
    manifest = json.loads((ModelStore(tmp_path).path / version / "manifest.json").read_text("utf-8"))
    heads = manifest["heads"]
    assert heads["category"]["kind"] == "fused" and heads["category"]["fusion_weights"]["char_svm"] >= 0
    assert heads["agency"]["kind"] == "svm" and heads["agency"]["temperature"] > 0  # many small agencies
    assert manifest["config"]["model"]["fusion"] == "auto"


def test_a_head_saved_before_fusion_existed_still_loads_describes_and_predicts(single, split):
    import pickle

    old = pickle.loads(pickle.dumps(single.heads_["category"]))
    for attribute in ("fusion", "fusion_weights_"):  # what a session-1 head does not have
        old.__dict__.pop(attribute, None)
    old = pickle.loads(pickle.dumps(old))
    assert old.get_params()["fusion"] == "off" and "TargetHead" in repr(old)
    assert old.describe()["kind"] == "svm"
    X = single.vectorizer_.transform(split[1]["text"].tolist()[:5])
    assert np.allclose(old.predict_proba(X), single.heads_["category"].predict_proba(X))


# -- the lead: the first characters of a text as blocks of their own ----------------------------------------------
def test_lead_blocks_are_the_first_characters_normalised_on_their_own(fused):
    from classifier.features import LEAD_PREFIX, WORD_PREFIX

    vec = fused.vectorizer_
    assert vec.lead_chars == TrainingConfig().features.lead_chars == 20
    text = "路灯坏了，" * 3 + "晚上出门很不方便，已经反映过好几次了"
    feats = vec.analyze(text)
    lead = [f[1:] for f in feats if f.startswith(LEAD_PREFIX)]
    # the lead is the normalised text's first 20 characters: "路灯坏了," x 3 and "晚上出门很" (NFKC comma)
    assert "出门很" in lead and "门很" in lead and "很不" not in lead and "方" not in "".join(lead)
    assert {WORD_PREFIX + w for w in ("路灯", "晚上", "出门")} <= set(lead)
    idx, val = vec.transform_one(text)
    blocks = vec.block_[idx]
    assert set(blocks) == {0, 1, 2, 3}
    for b in range(4):  # words, chars, lead words, lead chars: each l2-normalised
        assert np.linalg.norm(val[blocks == b]) == pytest.approx(1.0, rel=1e-5)
    assert not vec.is_char_[vec.is_lead_].any()  # lead chars are not the whole text's char block
    # the fast path looks the lead up without building prefixed strings: the same columns as the names say
    by_name = sorted({vec.vocabulary_[f] for f in feats if f in vec.vocabulary_})
    assert idx.tolist() == by_name
    np.testing.assert_allclose(vec.transform([text]).toarray()[0][idx], val, rtol=1e-6)
    short = "路灯坏了没人修"  # no longer than the lead: its features again, from one segmentation
    short_feats = vec.analyze(short)
    assert [f for f in short_feats if f.startswith(LEAD_PREFIX)] == [
        LEAD_PREFIX + f for f in short_feats if not f.startswith(LEAD_PREFIX)]


def test_a_fused_head_weighs_the_lead_with_its_word_view_and_a_single_svm_leaves_it_out(fused, single):
    lead = fused.vectorizer_.is_lead_
    assert lead.any()
    assert np.abs(fused.heads_["category"].coef_[lead]).sum() > 0  # word-view SVM weights on lead features
    assert np.abs(single.heads_["category"].coef_[lead]).max() == 0.0  # never learned: a caller's greeting
    explanation = fused.explain("路灯不亮，晚上出门摔了一跤", "category", label="道路设施", n_terms=30)
    # the lead's copies of a term are merged into the text's own term (explanations list each term once) ...
    assert {e["kind"] for e in explanation} <= {"word", "char"}
    assert all(not e["term"].startswith(("\x01", "\x02")) for e in explanation)
    # ... and their push is in its weight
    without = copy.deepcopy(fused)
    without.heads_["category"].coef_[lead] = 0.0
    weights = {e["term"]: e["weight"] for e in without.explain("路灯不亮，晚上出门摔了一跤", "category",
                                                                 label="道路设施", n_terms=30)}
    assert any(e["weight"] != weights.get(e["term"]) for e in explanation)


def test_lead_chars_zero_gives_the_two_block_model():
    texts = ["路灯不亮了", "暖气不热了", "路灯坏了很久", "暖气片冰凉"]
    config = TrainingConfig(min_class_count=1).with_updates(**{"features.lead_chars": 0, "features.min_df": 1})
    model = ComplaintClassifier(config).fit(texts, {"category": ["道路", "供暖", "道路", "供暖"]})
    assert not model.vectorizer_.is_lead_.any() and set(model.vectorizer_.block_) == {0, 1}


def test_a_vectorizer_saved_before_lead_blocks_existed_reads_text_as_it_did(single):
    import pickle

    vec = pickle.loads(pickle.dumps(single.vectorizer_))
    no_lead = pickle.loads(pickle.dumps(vec))
    for attribute in ("lead_chars", "is_lead_", "block_"):  # what a session-3 vectorizer does not have
        no_lead.__dict__.pop(attribute, None)
    assert no_lead.lead_chars == 0 and no_lead.get_params()["lead_chars"] == 0
    text = "小区暖气片一直不热，屋里才十几度"
    feats = no_lead.analyze(text)
    assert not any(f.startswith("\x02") for f in feats)
    idx, val = no_lead.transform_one(text)
    assert np.allclose(no_lead.transform([text]).data, val)
    assert set(no_lead._blocks()[idx]) == {0, 1}
