"""The fitted vocabulary: char n-grams looked up by code, words by name; a mapping like the dict it replaced,
pickled as arrays and two strings, and read from the older pickles (classifier.vocabulary)."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from classifier.features import LEAD_PREFIX, WORD_PREFIX, ComplaintVectorizer
from classifier.vocabulary import Vocabulary
from training.demo import DEMO_CORPUS

NAMES = [WORD_PREFIX + "路灯", "路", "路灯", "灯坏了", WORD_PREFIX + "路灯 坏了", "😀", LEAD_PREFIX + "路",
         LEAD_PREFIX + WORD_PREFIX + "路灯", "路灯坏了", LEAD_PREFIX + "路灯坏了", "\u4e00", LEAD_PREFIX + "路灯"]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return pd.read_csv(DEMO_CORPUS)["text"].tolist()


def test_every_name_maps_to_its_column_and_nothing_else_does():
    vocab = Vocabulary(NAMES)
    assert len(vocab) == len(NAMES) and vocab == dict(zip(NAMES, range(len(NAMES))))
    for i, name in enumerate(NAMES):
        assert vocab[name] == i and name in vocab
    assert list(vocab) == NAMES and vocab.names().tolist() == NAMES  # column order
    assert dict(vocab.items()) == {n: i for i, n in enumerate(NAMES)}
    for unknown in ("灯", WORD_PREFIX + "路", LEAD_PREFIX + "灯坏了", "坏了路灯", "", LEAD_PREFIX, 3):
        assert unknown not in vocab and vocab.get(unknown) is None
    with pytest.raises(KeyError):
        vocab["灯"]
    assert Vocabulary([]).names().tolist() == [] and len(Vocabulary([])) == 0


def test_a_texts_columns_are_what_looking_each_feature_up_by_name_gives(texts):
    """The bulk lookup (code arrays for chars up to 3, names for the rest) against the dict it replaced, for
    every demo text, char n-grams up to 4 (longer than a code holds) and the lead."""
    vec = ComplaintVectorizer(lead_chars=20, char_ngram_range=(1, 4), min_df=2).fit(texts[:1500])
    assert isinstance(vec.vocabulary_, Vocabulary)
    by_name = dict(vec.vocabulary_.items())
    assert any(len(f) == 4 and f[0] not in (WORD_PREFIX, LEAD_PREFIX) for f in by_name)
    n = len(by_name)
    for text in texts[1400:1700]:  # seen and unseen texts
        feats = vec.analyze(text)
        expected = sorted(by_name.get(f, n) for f in feats)
        assert sorted(vec._columns(text, missing=n).tolist()) == expected


def test_the_vocabulary_pickles_as_arrays_and_comes_back_whole(texts):
    vec = ComplaintVectorizer(lead_chars=20).fit(texts[:300])
    state = vec.vocabulary_.__getstate__()
    assert isinstance(state["words"], str) and isinstance(state["lead_words"], str)
    assert all(codes.dtype == np.int64 and cols.dtype == np.int32 for codes, cols in state["tables"].values())
    # the char n-grams are the arrays: the strings hold only the words
    assert len(state["words"].split("\n")) + len(state["lead_words"].split("\n")) < 0.6 * len(vec.vocabulary_)
    back = pickle.loads(pickle.dumps(vec))
    assert back.vocabulary_ == vec.vocabulary_
    assert (back.transform(texts[300:310]) != vec.transform(texts[300:310])).nnz == 0


@pytest.mark.parametrize("older", ["one string", "dict"])
def test_vectorizers_pickled_before_read_the_same_columns(texts, older):
    """Models saved with every name in one string (sessions 7-) or as a dict of names (before) load into the
    same vocabulary and featurize the same."""
    vec = ComplaintVectorizer(lead_chars=20).fit(texts[:300])
    state = dict(vec.__dict__)
    names = vec.get_feature_names_out().tolist()
    if older == "one string":
        del state["vocabulary_"]
        state["_vocabulary_lines"], state["_vocabulary_size"] = "\n".join(names), len(names)
    else:
        shuffled = np.random.default_rng(0).permutation(len(names))
        state["vocabulary_"] = {names[i]: i for i in shuffled.tolist()}
    old = ComplaintVectorizer.__new__(ComplaintVectorizer)
    old.__setstate__(state)
    assert isinstance(old.vocabulary_, Vocabulary) and old.vocabulary_ == vec.vocabulary_
    assert old.get_feature_names_out().tolist() == names
    for text in texts[300:320]:
        idx, val = old.transform_one(text)
        idx2, val2 = vec.transform_one(text)
        assert np.array_equal(idx, idx2) and np.array_equal(val, val2)
