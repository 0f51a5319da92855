"""Training counts n-grams as integer codes (classifier/codes.py); serving still reads feature names.  These tests
hold the two to each other: training's matrix must be serving's featurization of the same texts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from classifier import codes, corpus
from classifier.codes import Kind, TokenTable, decode, encode_chunk, kinds_of
from classifier.corpus import CodedCorpus, KindFrequencies, analyze_corpus
from classifier.features import LEAD_PREFIX, WORD_PREFIX, ComplaintVectorizer
from training.demo import DEMO_CORPUS

# short texts (no longer than the lead), spaces, a character outside the BMP, a masked phone number, Latin
ODD = [
    "路灯坏了",
    "小区 楼下 的路灯坏了一个多月，晚上出行很不方便",
    "噪音扰民𠀋𠀋严重，请处理 😀",
    "请联系13812345678 处理 WiFi 信号问题",
    "a",
    "兴庆区六盘山中路与凤凰南街交叉口施工，导致交通拥堵" * 3,
]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return pd.read_csv(DEMO_CORPUS)["text"].tolist()[:1500] + ODD


def by_names(vectorizer: ComplaintVectorizer, texts: list[str], monkeypatch) -> ComplaintVectorizer:
    monkeypatch.setattr(codes, "fits", lambda v: False)
    vectorizer.fit(texts)
    monkeypatch.undo()
    return vectorizer


@pytest.mark.parametrize("lead_chars", [0, 20])
def test_training_features_equal_servings_and_the_vocabulary_counting_by_name(texts, lead_chars, monkeypatch):
    trained = ComplaintVectorizer(min_df=2, lead_chars=lead_chars)
    X = trained.fit_transform(texts)
    assert codes.fits(trained)
    # the matrix training learns from is, entry for entry, what serving computes from the text
    Y = trained.transform(texts)
    assert X.shape == Y.shape and (X != Y).nnz == 0
    # the same vocabulary, document frequencies and blocks as counting the names
    named = by_names(ComplaintVectorizer(min_df=2, lead_chars=lead_chars), texts, monkeypatch)
    assert set(trained.vocabulary_) == set(named.vocabulary_)
    columns = np.array([named.vocabulary_[f] for f in trained.get_feature_names_out()])
    np.testing.assert_allclose(trained.idf_, named.idf_[columns], rtol=1e-6)
    np.testing.assert_array_equal(trained.block_, named.block_[columns])
    assert (trained.transform(ODD) != named.transform(ODD)[:, columns]).nnz == 0


def test_names_decode_from_codes_with_prefixes_and_characters_outside_the_bmp():
    vec = ComplaintVectorizer(lead_chars=4)
    chunk = encode_chunk(vec, ["𠀋路灯坏了", "路灯"])
    kinds = kinds_of(vec)
    tokens = TokenTable(codes.word_bits(vec))
    tokens.globalize(chunk, kinds)
    names = {name for kind, c in zip(kinds, chunk.codes) for name in decode(kind, c, tokens)}
    expected = {f for t in ["𠀋路灯坏了", "路灯"] for f in vec.analyze(t)}
    assert names == expected
    assert "𠀋路灯" in names and LEAD_PREFIX + "𠀋路灯" in names and WORD_PREFIX + "路灯" in names
    assert decode(Kind(word=False, n=2, lead=False), np.array([(ord("路") << 21) | ord("灯")]), tokens) == ["路灯"]


def test_a_kinds_table_merges_counts_and_keeps_the_more_frequent_half_when_full(monkeypatch):
    monkeypatch.setattr(corpus, "MERGE_MIN", 1)
    table = KindFrequencies(capacity=4)
    table.add(np.array([10, 20, 30]), np.array([5, 1, 3]), np.array([5, 1, 3]), np.array([0, 0, 1]))
    table.add(np.array([30, 40, 50]), np.array([1, 1, 2]), np.array([1, 1, 1]), np.array([7, 8, 9]))
    # 5 codes > 4: the 2 most frequent stay (10: 5, 30: 4), each with its earliest row
    assert table.codes.tolist() == [10, 30] and table.df.tolist() == [5, 4] and table.first.tolist() == [0, 1]
    assert table.cases.tolist() == [5, 4] and table.pruned == 3


def test_longer_n_grams_than_codes_hold_are_counted_by_name(texts):
    vec = ComplaintVectorizer(char_ngram_range=(2, 4), min_df=2)
    assert not codes.fits(vec)
    with analyze_corpus(vec, texts[:300]) as analyzed:
        assert not isinstance(analyzed, CodedCorpus)
    X = vec.fit_transform(texts[:300])
    assert (X != vec.transform(texts[:300])).nnz == 0
    assert any(len(f) == 4 and not f.startswith(WORD_PREFIX) for f in vec.vocabulary_)


def test_too_many_tokens_for_the_word_codes_is_a_clear_error():
    table = TokenTable(bits=2)
    with pytest.raises(ValueError, match="distinct tokens do not fit word codes of 2 bits"):
        table.ids_of(["甲", "乙", "丙", "丁"])
