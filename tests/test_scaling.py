"""Training with memory bounded by settings: chunked counting, a bounded vocabulary, sampled fits (issue 17)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.naive_bayes import MultinomialNB

from classifier import corpus
from classifier.config import TrainingConfig
from classifier.corpus import DocumentFrequencies, analyze_corpus
from classifier.features import ComplaintVectorizer
from classifier.model import ComplaintClassifier, TargetHead, _naive_bayes
from classifier.phases import phase, record_phases
from classifier.sampling import MIN_ROWS_PER_CLASS, HeadStatistics, collect_rows, stratified_sample
from training.demo import DEMO_CORPUS


@pytest.fixture(scope="module")
def demo() -> pd.DataFrame:
    return pd.read_csv(DEMO_CORPUS)


def test_the_count_table_drops_the_rarest_half_when_full_and_maps_old_ids():
    table = DocumentFrequencies(capacity=4)
    first = table.add(["a", "b", "c"], np.array([5, 1, 3]))
    assert first.tolist() == [0, 1, 2] and table.epoch == 0
    table.prune_if_full()
    assert len(table) == 3  # not over capacity yet
    second = table.add(["c", "d", "e"], np.array([1, 1, 1]))
    table.prune_if_full()  # 5 > 4: keep the 2 most frequent (a: 5, c: 4), in order of first appearance
    assert table.names() == ["a", "c"] and table.frequencies().tolist() == [5, 4]
    assert table.pruned == 3 and table.epoch == 1
    assert table.resolve(first, 0).tolist() == [0, -1, 1]
    assert table.resolve(second, 0).tolist() == [1, -1, -1]
    assert table.add(["b"], np.array([2])).tolist() == [2]  # seen again after being dropped: counted anew


def test_chunked_spilled_and_parallel_counting_give_the_same_matrix(demo, monkeypatch):
    texts = demo["text"].tolist()[:900]
    whole = ComplaintVectorizer(n_jobs=1, lead_chars=20)
    X = whole.fit_transform(texts)
    monkeypatch.setattr(corpus, "CHUNK_TEXTS", 200)
    monkeypatch.setattr(corpus, "SPILL_BYTES", 0)  # every chunk goes to disk
    monkeypatch.setattr(corpus, "PARALLEL_MIN_CHARS", 1)
    chunked = ComplaintVectorizer(n_jobs=2, lead_chars=20)
    Y = chunked.fit_transform(texts)
    assert chunked.vocabulary_ == whole.vocabulary_
    assert (X != Y).nnz == 0


def test_max_features_keeps_the_most_frequent(demo):
    texts = demo["text"].tolist()[:400]
    full = ComplaintVectorizer(min_df=1).fit(texts)
    capped = ComplaintVectorizer(min_df=1, max_features=500).fit(texts)
    assert len(capped.vocabulary_) == 500
    counts = {f: 0 for f in full.vocabulary_}
    for t in texts:
        for f in set(full.analyze(t)):
            counts[f] += 1
    kept_min = min(counts[f] for f in capped.vocabulary_)
    assert sum(c > kept_min for c in counts.values()) <= 500  # nothing more frequent was dropped
    assert capped.transform(texts[:3]).shape == (3, 500)


def test_temporary_files_are_removed(demo, monkeypatch, tmp_path):
    monkeypatch.setattr(corpus, "SPILL_BYTES", 0)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    vec = ComplaintVectorizer()
    with analyze_corpus(vec, demo["text"].tolist()[:50]) as analyzed:
        assert len(list(tmp_path.iterdir())) == 1
        analyzed.select(vec)
    assert list(tmp_path.iterdir()) == []


def test_the_sample_keeps_each_class_share_and_a_floor():
    labels = np.array(["big"] * 900 + ["mid"] * 90 + ["rare"] * 4, dtype=object)
    assert stratified_sample(labels, 1000, seed=0) is None  # under the limit: every row
    rows = stratified_sample(labels, 100, seed=0)
    picked = labels[rows]
    assert (picked == "big").sum() == 91  # ceil(900 * 100 / 994)
    assert (picked == "mid").sum() == MIN_ROWS_PER_CLASS  # ceil(9.05) = 10, and the floor is 10
    assert (picked == "rare").sum() == 4  # all it has
    assert np.array_equal(rows, stratified_sample(labels, 100, seed=0))  # seeded
    assert np.all(np.diff(rows) > 0)


def test_naive_bayes_from_chunk_sums_equals_fitting_on_every_row(demo):
    texts = demo["text"].tolist()[:600]
    labels = demo["category"].astype(str).to_numpy()[:600]
    vec = ComplaintVectorizer(lead_chars=20)
    X = vec.fit_transform(texts)
    classes, inverse = np.unique(labels, return_inverse=True)
    stats = HeadStatistics.empty(classes, X.shape[1])
    for start in range(0, 600, 250):  # three chunks
        stats.add(X[start:start + 250], inverse[start:start + 250])
    columns = np.flatnonzero(~vec.is_lead_)
    log_prob, log_prior = _naive_bayes(stats, classes, columns)
    nb = MultinomialNB(alpha=0.05).fit(X[:, columns], labels)
    np.testing.assert_allclose(log_prob, nb.feature_log_prob_.T, rtol=1e-5)
    np.testing.assert_allclose(log_prior, nb.class_log_prior_, rtol=1e-9)
    assert stats.document_frequency.tolist() == np.bincount(X.indices, minlength=X.shape[1]).tolist()


def test_collect_rows_streams_a_large_target_and_keeps_its_calibration_sample(demo):
    texts = demo["text"].tolist()[:500]
    labels = demo["category"].astype(str).to_numpy(dtype=object)[:500]
    vec = ComplaintVectorizer()
    with analyze_corpus(vec, texts) as analyzed:
        analyzed.select(vec)
        exact = collect_rows(analyzed.features(vec), 500, {"category": labels}, 500, 100, seed=3)
        assert exact.rows is None and exact.X.shape[0] == 500 and exact.chunks is None
        fit = collect_rows(analyzed.features(vec), 500, {"category": labels}, 200, 100, seed=3)
    try:
        sample = fit.calibration["category"]
        n_classes = len(set(labels))
        assert fit.rows is not None and 100 <= len(fit.rows) <= 100 + MIN_ROWS_PER_CLASS * n_classes < 500
        assert np.array_equal(fit.rows[sample], fit.rows)
        full = vec.transform(texts)
        assert (fit.X != full[fit.rows]).nnz == 0
        assert fit.statistics["category"].class_count.sum() == 500  # naive Bayes counts every row
        streamed = [fit.chunks.read(i) for i in range(len(fit.chunks))]
        assert sum(X.shape[0] for X, _ in streamed) == 500 and streamed[0][1] == 0
    finally:
        fit.close()


def test_a_model_over_the_exact_limit_is_streamed_and_still_classifies(demo):
    df = demo.sample(frac=1.0, random_state=0)
    train, test = df.iloc[:1500], df.iloc[1500:2000]
    base = TrainingConfig(min_class_count=1, n_jobs=1)
    full = ComplaintClassifier(base).fit(train["text"].tolist(), {"category": train["category"].tolist()})
    limited = base.with_updates(**{"model.exact_fit_rows": 600, "model.calibration_rows": 300})
    with record_phases() as log:
        streamed = ComplaintClassifier(limited).fit(train["text"].tolist(), {"category": train["category"].tolist()})
    assert "sgd epochs" in [r["phase"] for r in log.rows()]
    assert streamed.heads_["category"].describe()["kind"] == full.heads_["category"].describe()["kind"]
    truth = test["category"].to_numpy(dtype=str)
    acc_full = np.mean(np.asarray(full.predict(test["text"].tolist())["category"]) == truth)
    acc_streamed = np.mean(np.asarray(streamed.predict(test["text"].tolist())["category"]) == truth)
    assert acc_full > 0.8
    assert acc_streamed >= acc_full - 0.05


def test_calibration_folds_come_from_a_sample_over_the_limit():
    y = np.array(["a"] * 600 + ["b"] * 400, dtype=object)
    head = TargetHead(calibration_rows=300, random_state=0)
    folds = head._calibration_folds(y)
    used = np.concatenate([test for _, test in folds])
    assert len(folds) == 3 and len(used) == 300 and len(np.unique(used)) == 300
    assert len(TargetHead(random_state=0)._calibration_folds(y)) == 3  # no limit: every row in some fold
    assert sum(len(t) for _, t in TargetHead(random_state=0)._calibration_folds(y)) == 1000


def test_phases_record_time_and_memory_only_when_asked():
    with phase("nobody listens"):
        pass
    with record_phases() as log:
        with phase("outer"):
            with phase("inner"):
                np.ones(10**6).sum()
    rows = log.rows()
    assert [(r["phase"], r["depth"]) for r in rows] == [("outer", 0), ("inner", 1)]
    assert rows[0]["seconds"] >= rows[1]["seconds"] >= 0 and rows[0]["peak_gib"] > 0
    assert rows[0]["cpu_seconds"] >= rows[1]["cpu_seconds"] >= 0


def test_case_weights_reach_the_streamed_heads_sums_and_sgd(demo):
    texts = demo["text"].tolist()[:500]
    labels = demo["category"].astype(str).to_numpy(dtype=object)[:500]
    weight = np.where(np.arange(500) < 250, 3.0, 1.0)  # the first half counts three times
    vec = ComplaintVectorizer()
    with analyze_corpus(vec, texts) as analyzed:
        analyzed.select(vec)
        fit = collect_rows(analyzed.features(vec), 500, {"category": labels}, 200, 100, seed=3,
                           sample_weight=weight)
    try:
        w = fit.weights["category"]
        assert w.mean() == pytest.approx(1.0) and w[0] == pytest.approx(3 * w[-1])
        stats = fit.statistics["category"]
        assert stats.class_count.sum() == pytest.approx(500) and stats.class_rows.sum() == 500
    finally:
        fit.close()
    config = TrainingConfig(min_class_count=1, n_jobs=1).with_updates(
        **{"model.exact_fit_rows": 200, "model.calibration_rows": 150})
    weighted = ComplaintClassifier(config).fit(texts, {"category": list(labels)}, sample_weight=weight)
    plain = ComplaintClassifier(config).fit(texts, {"category": list(labels)})
    assert not np.allclose(weighted.heads_["category"].coef_, plain.heads_["category"].coef_)


def test_a_streamed_fused_head_fits_its_weights_on_rows_its_final_views_never_saw(demo, monkeypatch):
    from classifier import partial_fit

    df = demo.sample(frac=1.0, random_state=0).iloc[:1500]
    config = TrainingConfig(min_class_count=1, n_jobs=1).with_updates(
        **{"model.exact_fit_rows": 600, "model.calibration_rows": 300, "model.fusion": "on"})
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    call = partial_fit.FinalViews.__call__

    def spy(self, views, held_out=None):
        seen.append((self.sample_rows.copy(), np.asarray(held_out)))
        return call(self, views, held_out)

    monkeypatch.setattr(partial_fit.FinalViews, "__call__", spy)
    model = ComplaintClassifier(config).fit(df["text"].tolist(), {"category": df["category"].tolist()})
    head = model.heads_["category"]
    assert head.describe()["kind"] == "fused" and sum(head.fusion_weights_.values()) > 0
    assert set(head.fusion_weights_) == {"all_svm", "nb"}  # one SGD view over every feature, and naive Bayes
    (sample, held_out), = seen
    # a stratified tenth of the 1,500 labeled rows (a floor of 10 a class), all from the calibration sample
    assert 150 <= len(held_out) <= 150 + 10 * len(head.classes_) and set(held_out) <= set(sample)
    assert len(sample) >= 300


def test_statistics_without_a_sample_are_the_statistics_of_the_other_rows(demo):
    vec = ComplaintVectorizer()
    X = vec.fit_transform(demo["text"].tolist()[:300])
    y = np.searchsorted(np.unique(demo["category"][:300]), demo["category"][:300].to_numpy())
    classes = np.unique(demo["category"][:300])
    every, part, rest = (HeadStatistics.empty(classes, X.shape[1]) for _ in range(3))
    every.add(X, y)
    part.add(X[:100], y[:100])
    rest.add(X[100:], y[100:])
    less = every.without(part)
    np.testing.assert_allclose(less.feature_count, rest.feature_count, atol=1e-9)
    np.testing.assert_array_equal(less.class_rows, rest.class_rows)
    np.testing.assert_allclose(less.feature_squares, rest.feature_squares, atol=1e-9)


def test_a_rare_class_keeps_at_least_half_its_rows_in_the_final_views():
    from classifier.model import _at_most_half_a_class

    labels = np.array(["a"] * 30 + ["b"] * 10 + ["c"] * 1, dtype=object)
    stats = HeadStatistics.empty(np.array(["a", "b", "c"], dtype=object), 4)
    stats.class_rows[:] = [300, 10, 1]  # the whole corpus's rows per class
    held = _at_most_half_a_class(np.arange(len(labels)), labels, stats)
    # every sampled row of "a" (30 <= 150), 5 of b's 10, none of c's single row
    assert (labels[held] == "a").sum() == 30 and (labels[held] == "b").sum() == 5 and "c" not in labels[held]
    assert held.tolist() == sorted(held.tolist())


def test_naive_bayes_and_the_fused_sum_a_block_of_features_at_a_time_equal_the_whole_matrix_arithmetic(monkeypatch):
    """The held-out fusion's views are built in blocks (memory at 400,000 texts): the same numbers as before."""
    import scipy.sparse as sp

    from classifier import scores
    from classifier.model import _nb_view

    monkeypatch.setattr(scores, "FEATURE_BLOCK", 1000)
    rng = np.random.default_rng(0)
    classes = np.array(["a", "b", "c", "d"])
    X = sp.random(600, 5000, density=0.01, format="csr", random_state=0, dtype=np.float32)
    y = rng.integers(0, 4, 600)
    stats = HeadStatistics.empty(classes, 5000)
    stats.add(X, y)
    columns = np.sort(rng.choice(5000, 4200, replace=False))
    expected = _nb_view(*_naive_bayes(stats, classes[::-1], columns), columns, 5000)
    got = scores.naive_bayes_view(stats, classes[::-1], columns, 5000)
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(got[1], expected[1])
    held = np.arange(100)
    sums = HeadStatistics.empty(classes, 5000)
    sums.add(X[held], y[held])
    expected = _nb_view(*_naive_bayes(stats.without(sums), classes, columns), columns, 5000)
    onehot = sp.csr_matrix((np.ones(100), (y[held], held)), shape=(4, 100))
    got = scores.naive_bayes_view(stats, classes, columns, 5000,
                                  held_out=(onehot @ X[held].astype(np.float64), np.bincount(y[held], minlength=4)))
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-12)
    coefs = [rng.normal(size=(5000, 4)).astype(np.float32) for _ in range(3)]
    weights = np.array([0.5, 2.0, 0.0])
    np.testing.assert_array_equal(scores.combine_views(weights, coefs),
                                  sum(w * c for w, c in zip(weights, coefs)).astype(np.float32))
