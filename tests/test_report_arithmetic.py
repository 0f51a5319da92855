"""Property tests for the report's arithmetic: confusion counts, row shares, confused-pair ranking, the
grouped heatmap, and the confident-joint rule for disputed labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import confusion_matrix

from training.metrics import paired_accuracy_test, paired_sentence
from training.report import (
    OTHER_GROUP,
    confused_pairs,
    confusion_counts,
    disputed_labels,
    heatmap_order,
    reliability_table,
    review_table,
    row_normalize,
)
from training.report_html import svg_heatmap

LABELS = ["交通秩序", "道路设施", "公共交通", "供暖供热", "其他", "a", "b"]

cases = st.lists(st.tuples(st.sampled_from(LABELS), st.sampled_from(LABELS)), min_size=1, max_size=80)


def _labels(pairs: list[tuple[str, str]]) -> list[str]:
    return sorted({t for t, _ in pairs} | {p for _, p in pairs})


@pytest.mark.filterwarnings("ignore:A single label was found:UserWarning")
@given(cases)
def test_confusion_counts_equal_sklearn(pairs):
    y_true, y_pred = [t for t, _ in pairs], [p for _, p in pairs]
    labels = _labels(pairs)
    m = confusion_counts(y_true, y_pred, labels)
    assert (m == confusion_matrix(y_true, y_pred, labels=labels)).all()
    assert m.sum() == len(pairs)
    support = pd.Series(y_true).value_counts()
    for i, label in enumerate(labels):
        assert m[i].sum() == support.get(label, 0)
    assert np.trace(m) == sum(t == p for t, p in pairs)


@given(arrays(np.int64, st.tuples(st.integers(1, 8), st.just(0)).map(lambda s: (s[0], s[0])),
              elements=st.integers(0, 50)))
def test_row_normalize_rows_sum_to_one_or_zero(m):
    shares = row_normalize(m)
    sums = shares.sum(axis=1)
    for i in range(len(m)):
        assert np.isclose(sums[i], 1.0) if m[i].sum() else sums[i] == 0
    assert ((shares >= 0) & (shares <= 1)).all()
    nz = m.sum(axis=1) > 0
    assert np.allclose(shares[nz] * m[nz].sum(axis=1, keepdims=True), m[nz])


@given(cases)
def test_confused_pairs_are_every_error_ranked(pairs):
    y_true, y_pred = [t for t, _ in pairs], [p for _, p in pairs]
    labels = _labels(pairs)
    m = confusion_counts(y_true, y_pred, labels)
    ranked = confused_pairs(m, labels)
    errors = sum(t != p for t, p in pairs)
    assert ranked["count"].sum() == errors
    assert (ranked["true"] != ranked["predicted"]).all()
    keys = list(zip(-ranked["count"], -ranked["share_of_true"]))
    assert keys == sorted(keys)  # most cases first, then the larger share of the true class
    for r in ranked.itertuples():
        i, j = labels.index(r.true), labels.index(r.predicted)
        assert r.count == m[i, j]
        assert r.reverse == m[j, i]
        assert np.isclose(r.share_of_true, m[i, j] / m[i].sum())
    if len(ranked) > 1:
        assert len(confused_pairs(m, labels, limit=1)) == 1


@given(arrays(np.int64, st.integers(2, 40).map(lambda n: (n, n)), elements=st.integers(0, 9)),
       st.integers(2, 30))
@settings(max_examples=60)
def test_heatmap_keeps_every_case(m, top_n):
    labels = [f"class-{i}" for i in range(len(m))]
    names, grouped = heatmap_order(m, labels, top_n=top_n)
    assert grouped.sum() == m.sum()
    assert len(names) == grouped.shape[0] <= max(top_n, 2)
    if len(m) <= top_n:
        assert sorted(names) == sorted(labels)
        assert np.trace(grouped) == np.trace(m)  # a permutation of the same classes
    else:
        assert names[-1] == OTHER_GROUP.format(n=len(m) - len(names) + 1)
        for a, name in enumerate(names[:-1]):  # kept classes keep their own cells
            for b, other in enumerate(names[:-1]):
                assert grouped[a, b] == m[labels.index(name), labels.index(other)]


def test_heatmap_puts_the_most_confused_classes_first_and_chains_them():
    m = np.diag([50, 40, 30, 20, 10]).astype(np.int64)
    m[3, 1] = 7  # d <-> b confused most
    m[1, 3] = 2
    m[4, 0] = 1
    names, _ = heatmap_order(m, list("abcde"), top_n=10)
    assert names[:2] == ["b", "d"] or names[:2] == ["d", "b"]
    assert set(names[2:4]) == {"a", "e"}


def test_heatmap_for_sixty_agencies_is_readable():
    rng = np.random.default_rng(3)
    m = np.diag(rng.integers(1, 20, 70)) + (rng.random((70, 70)) < 0.03) * rng.integers(1, 4, (70, 70))
    labels = [f"县{i}局" for i in range(70)]
    names, grouped = heatmap_order(m, labels, top_n=25)
    assert len(names) == 25 and names[-1] == OTHER_GROUP.format(n=46)
    svg = svg_heatmap(names, grouped, normalized=True, title="agency")
    assert svg.count("<rect") == 25 * 25
    assert svg.startswith("<svg") and "http://" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=60), st.data())
def test_reliability_and_review_tables_count_every_case(scores, data):
    correct = data.draw(st.lists(st.booleans(), min_size=len(scores), max_size=len(scores)))
    table = reliability_table(np.array(scores), np.array(correct))
    assert table["cases"].sum() == len(scores)
    hits = sum(r.cases * r.accuracy for r in table.itertuples() if r.cases)
    assert np.isclose(hits, sum(correct))
    review = review_table(np.array(scores), np.array(correct), 0.5)
    assert review["cases"].tolist() == [sum(s < 0.5 for s in scores), sum(s >= 0.5 for s in scores)]
    assert np.isclose(review["share"].sum(), 1.0)


@given(st.integers(2, 5).flatmap(lambda k: st.tuples(
    arrays(np.float64, st.integers(2, 30).map(lambda n: (n, k)), elements=st.floats(0.01, 1.0)),
    st.just(k))), st.data())
def test_disputed_labels_follow_the_confident_joint(pk, data):
    raw, k = pk
    proba = raw / raw.sum(axis=1, keepdims=True)
    given_ = np.array(data.draw(st.lists(st.integers(0, k - 1), min_size=len(proba), max_size=len(proba))))
    found = disputed_labels(proba, given_, min_confidence=0.5)
    thresholds = {j: proba[given_ == j, j].mean() for j in range(k) if (given_ == j).any()}
    flagged = set(found["position"])
    for i in range(len(proba)):
        above = [j for j in thresholds if proba[i, j] >= thresholds[j]]
        best = max(above, key=lambda j: (proba[i, j], -j)) if above else None
        low = proba[i, given_[i]] < thresholds[given_[i]]
        confident = best is not None and proba[i, best] >= 0.5
        assert (i in flagged) == (best is not None and best != given_[i] and low and confident)
    for r in found.itertuples():
        assert r.suggested != given_[r.position]
        assert np.isclose(r.margin, proba[r.position, r.suggested] - proba[r.position, given_[r.position]])
    assert list(found["margin"]) == sorted(found["margin"], reverse=True)


def test_a_case_whose_label_is_the_confident_top_is_never_disputed():
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.1, 0.9], [0.95, 0.05]])
    given_ = np.array([0, 0, 1, 1, 1])  # the last one is labeled 1 but looks like 0
    found = disputed_labels(proba, given_)
    assert found["position"].tolist() == [4]
    assert found["suggested"].tolist() == [0]
    assert np.isclose(found["given_probability"].iloc[0], 0.05)


def test_an_unsure_suggestion_is_not_a_dispute():
    proba = np.array([[0.4, 0.35, 0.25], [0.3, 0.45, 0.25], [0.2, 0.3, 0.5], [0.45, 0.3, 0.25]])
    given_ = np.array([0, 1, 2, 1])  # the last looks like class 0, but only at 0.45
    assert disputed_labels(proba, given_)["position"].tolist() == []
    assert disputed_labels(proba, given_, min_confidence=0.4)["position"].tolist() == [3]


def test_unscorable_cases_are_not_judged():
    proba = np.array([[0.9, 0.1], [0.1, 0.9], [0.95, 0.05]])
    found = disputed_labels(proba, np.array([0, 1, 1]), scorable=np.array([True, True, False]))
    assert found.empty


def _right(only_this: int, only_other: int, both: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    this = np.r_[np.ones(only_this), np.zeros(only_other), np.ones(both), np.zeros(neither)].astype(bool)
    other = np.r_[np.zeros(only_this), np.ones(only_other), np.ones(both), np.zeros(neither)].astype(bool)
    return this, other


def test_paired_test_of_a_clear_gain_says_better_with_the_exact_mcnemar_p():
    this, other = _right(only_this=10, only_other=2, both=900, neither=88)
    r = paired_accuracy_test(this, other)
    assert (r["n"], r["only_this_right"], r["only_other_right"], r["both_right"], r["both_wrong"]) == (
        1000, 10, 2, 900, 88)
    assert r["accuracy_delta"] == pytest.approx(0.008)
    # two-sided binomial: P(X <= 2) + P(X >= 10) for X ~ Bin(12, 1/2) = 2 * 79 / 4096
    assert r["p_value"] == pytest.approx(2 * 79 / 4096)
    assert r["verdict"] == "better"
    assert 0.0 < r["ci95_low"] < 0.008 < r["ci95_high"] < 0.02


def test_paired_test_of_a_few_cases_either_way_is_no_significant_difference():
    this, other = _right(only_this=6, only_other=3, both=1100, neither=172)  # +3 cases of 1,281
    r = paired_accuracy_test(this, other)
    assert r["p_value"] == pytest.approx(0.5078125)  # 2 * P(X <= 3), X ~ Bin(9, 1/2) = 2 * 130 / 512
    assert r["verdict"] == "no significant difference"
    assert r["ci95_low"] < 0 < r["ci95_high"]
    worse = paired_accuracy_test(other, this)
    assert worse["accuracy_delta"] == pytest.approx(-r["accuracy_delta"])
    assert worse["p_value"] == pytest.approx(r["p_value"])


def test_paired_test_of_a_clear_loss_says_worse_and_identical_models_are_equal():
    this, other = _right(only_this=1, only_other=15, both=400, neither=84)
    assert paired_accuracy_test(this, other)["verdict"] == "worse"
    same = paired_accuracy_test(other, other)
    assert (same["p_value"], same["accuracy_delta"], same["ci95_low"], same["ci95_high"]) == (1.0, 0.0, 0.0, 0.0)
    assert same["verdict"] == "no significant difference"


def test_paired_test_refuses_cases_of_two_lengths():
    with pytest.raises(ValueError, match="must be 1-d and of one length"):
        paired_accuracy_test(np.ones(3, bool), np.ones(4, bool))


def test_paired_sentence_names_the_flips_the_interval_and_the_verdict():
    r = paired_accuracy_test(*_right(only_this=10, only_other=2, both=900, neither=88))
    s = paired_sentence(r)
    assert s.startswith("right->wrong 2, wrong->right 10; accuracy +0.80 points (95 % CI +")
    assert s.endswith(f"McNemar p = {r['p_value']:.3g}: better")


def test_class_changes_put_the_surest_change_first_not_the_largest():
    """A class of 4 that lost 3 cases (-75 points of recall) is noise; a class of 400 that gained 40 is not."""
    from scipy.stats import binomtest

    from training.report import class_changes

    given = np.array(["small"] * 4 + ["large"] * 400 + ["same"] * 50, dtype=object)
    right_other = np.ones(len(given), dtype=bool)
    right_this = right_other.copy()
    right_this[:3] = False  # small: 3 broken
    right_other[4:44] = False  # large: 40 fixed (the other model got them wrong)
    per = {c: {"recall": 0.0, "f1": 0.0, "precision": 0.0} for c in ("small", "large", "same")}
    df = class_changes(given, right_this, right_other, per, per)
    assert df["label"].tolist() == ["large", "small", "same"]
    large, small, same = (df.set_index("label").loc[c] for c in ("large", "small", "same"))
    assert (large["wrong_to_right"], large["right_to_wrong"], large["change"]) == (40, 0, "real")
    assert large["p_value"] == pytest.approx(binomtest(40, 40).pvalue)
    assert (small["wrong_to_right"], small["right_to_wrong"], small["change"]) == (0, 3, "could be noise")
    assert small["p_value"] == pytest.approx(0.25) and same["change"] == "none" and same["p_value"] == 1.0
    assert large["support"] == 400 and small["support"] == 4
