"""Explanations list the words and n-grams a person reads, each once (issue 15, section 1)."""

from __future__ import annotations

import pytest

from classifier.explanations import readable_terms
from classifier.features import LEAD_PREFIX as LEAD
from classifier.features import WORD_PREFIX as WORD
from training.demo import SAMPLE_COMPLAINTS


def test_a_string_is_one_term_and_its_characters_fold_into_the_word():
    terms = readable_terms([
        (WORD + "停水", 0.5), ("停水", 2.0), ("水", 5.0), ("停", 1.0),   # the word, its char n-grams
        (LEAD + WORD + "停水", 0.4), (LEAD + "水", 0.6),                 # the same from the lead
        ("水三天", 0.7), ("水三", 0.7), ("三天", 0.3),                     # across a word boundary: no word holds them
    ])
    assert terms == [{"term": "停水", "kind": "word", "weight": 9.5},
                     {"term": "水三天", "kind": "char", "weight": 1.7}]


def test_a_character_in_two_words_is_shared_and_a_word_bigram_gathers_what_crosses_its_words():
    terms = readable_terms([(WORD + "停水", 1.0), (WORD + "水路", 1.0), ("水", 2.0),
                            (WORD + "路灯 坏了", 1.0), (WORD + "路灯", 3.0), ("灯坏", 0.5)])
    assert {t["term"]: t["weight"] for t in terms} == {"路灯": 3.0, "停水": 2.0, "水路": 2.0, "路灯坏了": 1.5}
    assert [t["term"] for t in terms] == ["路灯", "停水", "水路", "路灯坏了"]  # ties by term
    assert {t["kind"] for t in terms} == {"word"}


def test_punctuation_is_not_a_term():
    terms = readable_terms([("陷,", 0.3), (",", 5.0), ("，导", 0.2), (WORD + "导致", 0.1)])
    assert terms == [{"term": "导致", "kind": "word", "weight": 0.3}, {"term": "陷", "kind": "char", "weight": 0.3}]


def test_a_term_weighs_its_net_push_and_only_positive_terms_are_listed():
    terms = readable_terms([(WORD + "九水路", -1.0), ("水", 0.5), (WORD + "停", 0.2), (LEAD + WORD + "你好", 0.1)])
    assert terms == [{"term": "停", "kind": "word", "weight": 0.2},
                     {"term": "你好", "kind": "lead word", "weight": 0.1}]  # found among the first characters only
    assert readable_terms([("水", -1.0)]) == []
    assert len(readable_terms([(WORD + f"词{i}", 1.0 + i) for i in range(20)], n_terms=5)) == 5


@pytest.mark.parametrize("text", [*SAMPLE_COMPLAINTS, "九水路停水了", "利通区九水路停水三天了"])
def test_demo_explanations_lead_with_words_and_name_each_term_once(demo_model, text):
    result = demo_model.predict_details([text], explain=True)[0]
    for target in ("category", "agency"):
        explanation = result[target]["explanation"]
        terms = [e["term"] for e in explanation]
        assert explanation and len(terms) == len(set(terms)), terms
        assert len(terms[0]) >= 2, terms  # not a single character first (水 from 九水路)
        # the lead's copies are merged into the text's own terms
        assert all(not e["kind"].startswith("lead ") for e in explanation), explanation
        weights = [e["weight"] for e in explanation]
        assert weights == sorted(weights, reverse=True) and all(w > 0 for w in weights)
