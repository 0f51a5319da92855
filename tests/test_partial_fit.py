"""The streamed heads' SGD views (classifier.partial_fit): column lookup, feature scales, fits over chunks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from classifier.corpus import ChunkStore
from classifier.features import ComplaintVectorizer
from classifier.partial_fit import ViewColumns, feature_scales, fit_views_on_chunks
from classifier.sampling import HeadStatistics
from training.demo import DEMO_CORPUS


@pytest.fixture(scope="module")
def demo_features() -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    demo = pd.read_csv(DEMO_CORPUS).sample(frac=1.0, random_state=0).iloc[:1200]
    vec = ComplaintVectorizer(lead_chars=0)
    X = vec.fit_transform(demo["text"].tolist())
    return X, demo["category"].astype(str).to_numpy(), vec.is_char_


def test_a_view_taken_by_lookup_equals_column_indexing_and_drops_what_is_not_allowed():
    rng = np.random.default_rng(0)
    X = sp.random(40, 30, density=0.3, format="csr", dtype=np.float32, random_state=1)
    columns = np.sort(rng.choice(30, 12, replace=False))
    taken = ViewColumns(columns, 30).take(X)
    assert taken.dtype == np.float64 and taken.shape == (40, 12)
    np.testing.assert_array_equal(taken.toarray(), X[:, columns].toarray())
    allowed = np.ones(30, dtype=bool)
    allowed[columns[:3]] = False
    scale = np.arange(1.0, 13.0)
    view = ViewColumns(columns, 30, allowed, scale).take(X).toarray()
    expected = X[:, columns].toarray() * scale
    expected[:, :3] = 0.0
    np.testing.assert_allclose(view, expected, rtol=1e-6)


def test_feature_scales_shrink_frequent_columns_and_keep_the_mean_row_norm(demo_features):
    X, labels, _ = demo_features
    classes, inverse = np.unique(labels, return_inverse=True)
    stats = HeadStatistics.empty(classes, X.shape[1])
    stats.add(X[:700], inverse[:700])
    other = HeadStatistics.empty(classes, X.shape[1])
    other.add(X[700:], inverse[700:])
    stats.merge(other)
    assert stats.feature_squares is not None
    np.testing.assert_allclose(stats.feature_squares, np.asarray(X.multiply(X).sum(axis=0)).ravel(), rtol=1e-6)
    columns = np.arange(X.shape[1])
    scale = feature_scales(stats.feature_squares, X.shape[0], columns)
    scaled = X @ sp.diags(scale)
    assert np.asarray(scaled.multiply(scaled).sum()) / X.shape[0] == pytest.approx(1.0)
    df = np.bincount(X.indices, minlength=X.shape[1])
    common, rare = np.argmax(df), np.flatnonzero(df == 1)[0]
    assert scale[common] < scale[rare]
    unused = np.zeros(X.shape[1] + 1)
    unused[:-1] = stats.feature_squares  # a column no labeled row has weighs nothing
    assert feature_scales(unused, X.shape[0], np.arange(X.shape[1] + 1))[-1] == 0.0


def test_views_fitted_over_chunks_classify_unscaled_features(demo_features):
    X, labels, is_char = demo_features
    classes, inverse = np.unique(labels, return_inverse=True)
    train, test = slice(0, 1000), slice(1000, 1200)
    store = ChunkStore()
    stats = HeadStatistics.empty(classes, X.shape[1])
    for start in range(0, 1000, 300):
        stop = min(start + 300, 1000)
        store.append(X[start:stop], start)
        stats.add(X[start:stop], inverse[start:stop])
    index = np.full(X.shape[0], -1)
    index[train] = inverse[train]
    views = [np.flatnonzero(~is_char), np.flatnonzero(is_char)]
    models = fit_views_on_chunks(store, index, classes, views, C=1.0, class_weight=None, epochs=None, seed=0,
                                 n_jobs=2, squares=stats.feature_squares)
    for model, columns in zip(models, views):
        assert model.coef_.shape == (len(classes), len(columns))
        scores = X[test][:, columns] @ model.coef_.T + model.intercept_  # the saved model's arithmetic
        assert np.mean(classes[np.argmax(scores, axis=1)] == labels[test]) > 0.75
