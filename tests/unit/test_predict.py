"""Votes and averages against scikit-learn's KNeighbors estimators."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

from knnspark.kernels.exact import ExactShard, exact_search
from knnspark.kernels.predict import (
    class_probabilities,
    classify_neighbors,
    neighbor_weights,
    predict_from_probabilities,
    weighted_average,
)


def _problem(seed=0, classes=(2.0, 5.0, 9.0)):
    rng = np.random.default_rng(seed)
    train = rng.normal(size=(200, 5)).astype(np.float32)
    labels = rng.choice(classes, size=200)
    query = np.vstack([rng.normal(size=(60, 5)), train[:10]]).astype(np.float32)  # exact matches
    return train, labels, query


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_classification_matches_sklearn(weights):
    train, labels, query = _problem()
    k = 6
    dist, pos = exact_search(ExactShard(train, np.arange(200)), query, k)
    classes = np.unique(labels)
    proba = class_probabilities(labels[pos], dist, classes, weights)
    sk = KNeighborsClassifier(n_neighbors=k, weights=weights, algorithm="brute")
    sk.fit(train.astype(np.float64), labels)
    np.testing.assert_allclose(proba, sk.predict_proba(query.astype(np.float64)), atol=1e-9)
    np.testing.assert_array_equal(
        predict_from_probabilities(proba, classes), sk.predict(query.astype(np.float64))
    )


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_classify_neighbors_matches_sklearn(weights):
    train, labels, query = _problem(2)
    k = 5
    dist, pos = exact_search(ExactShard(train, np.arange(200)), query, k)
    classes = np.unique(labels)
    votes, proba, prediction = classify_neighbors(labels[pos], dist, classes, weights)
    sk = KNeighborsClassifier(n_neighbors=k, weights=weights, algorithm="brute")
    sk.fit(train.astype(np.float64), labels)
    np.testing.assert_allclose(proba, sk.predict_proba(query.astype(np.float64)), atol=1e-9)
    np.testing.assert_array_equal(prediction, sk.predict(query.astype(np.float64)))
    # The raw prediction: each row's votes sum to its weight total (k for uniform weights).
    assert votes.shape == (len(query), len(classes))
    if weights == "uniform":
        np.testing.assert_array_equal(votes.sum(axis=1), np.full(len(query), k))


def test_classify_neighbors_applies_class_weights_to_votes():
    votes, proba, prediction = classify_neighbors(
        np.array([[2.0, 2.0, 9.0]]),
        np.ones((1, 3)),
        np.array([2.0, 9.0]),
        "uniform",
        class_weights=np.array([1.0, 3.0]),
    )
    np.testing.assert_array_equal(votes, [[2.0, 3.0]])
    np.testing.assert_allclose(proba, [[0.4, 0.6]])
    np.testing.assert_array_equal(prediction, [9.0])


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_regression_matches_sklearn(weights):
    train, _, query = _problem(1)
    target = np.random.default_rng(5).normal(size=200)
    k = 4
    dist, pos = exact_search(ExactShard(train, np.arange(200)), query, k)
    ours = weighted_average(target[pos], dist, weights)
    sk = KNeighborsRegressor(n_neighbors=k, weights=weights, algorithm="brute")
    sk.fit(train.astype(np.float64), target)
    np.testing.assert_allclose(ours, sk.predict(query.astype(np.float64)), rtol=1e-9)


def test_exact_match_takes_all_the_weight():
    w = neighbor_weights(np.array([[0.0, 0.0, 1.0]]), "distance")
    np.testing.assert_array_equal(w, [[1.0, 1.0, 0.0]])


def test_vote_tie_goes_to_smallest_class():
    proba = class_probabilities(
        np.array([[9.0, 2.0]]), np.array([[1.0, 1.0]]), np.array([2.0, 9.0]), "uniform"
    )
    np.testing.assert_array_equal(proba, [[0.5, 0.5]])
    assert predict_from_probabilities(proba, np.array([2.0, 9.0]))[0] == 2.0


def test_unknown_weighting_is_rejected():
    with pytest.raises(ValueError, match="Unknown weights 'triangular'"):
        neighbor_weights(np.ones((1, 2)), "triangular")
