"""Kernel weightings (gaussian, tricube, epanechnikov) against scikit-learn's callable weights."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

from knnspark.kernels.exact import ExactShard, exact_search
from knnspark.kernels.predict import (
    WEIGHTINGS,
    check_bandwidth,
    check_weighting,
    classify_neighbors,
    neighbor_weights,
    weighted_average,
)

KERNELS = ("gaussian", "tricube", "epanechnikov")


def sklearn_kernel(name, h):
    """The weighting as scikit-learn's callable ``weights`` (the formula, written out apart)."""
    if name == "gaussian":
        return lambda d: np.exp(-(d**2) / (2.0 * h**2))
    if name == "tricube":
        return lambda d: np.where(d < h, (1.0 - np.clip(d / h, 0, 1) ** 3) ** 3, 0.0)
    return lambda d: np.where(d < h, 1.0 - np.clip(d / h, 0, 1) ** 2, 0.0)


def split(loader, seed=0):
    data = loader()
    x = data.data.astype(np.float32)
    x = (x - x.mean(axis=0)) / x.std(axis=0)  # comparable scales, so a bandwidth means something
    x = x.astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(x))
    n_query = len(x) // 4
    query, train = order[:n_query], order[n_query:]
    return x[train], data.target[train].astype(np.float64), x[query], data.target[query]


def nearest(train, query, k):
    return exact_search(ExactShard(train, np.arange(len(train))), query, k)


def wide_bandwidth(dist):
    # Above every query's nearest distance: no row falls back, so scikit-learn's answer holds.
    return float(1.2 * dist[:, 0].max() + 1e-3)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("loader", [load_iris, load_wine, load_breast_cancer])
def test_classifier_kernels_match_sklearn_callable_weights(kernel, loader):
    train, labels, query, _ = split(loader)
    k = 7
    dist, pos = nearest(train, query, k)
    h = wide_bandwidth(dist)
    classes = np.unique(labels)
    _, proba, prediction = classify_neighbors(labels[pos], dist, classes, kernel, bandwidth=h)
    sk = KNeighborsClassifier(n_neighbors=k, weights=sklearn_kernel(kernel, h), algorithm="brute")
    sk.fit(train.astype(np.float64), labels)
    np.testing.assert_allclose(proba, sk.predict_proba(query.astype(np.float64)), atol=1e-9)
    np.testing.assert_array_equal(prediction, sk.predict(query.astype(np.float64)))


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("loader", [load_diabetes, load_wine])
def test_regressor_kernels_match_sklearn_callable_weights(kernel, loader):
    train, target, query, _ = split(loader, seed=1)
    k = 9
    dist, pos = nearest(train, query, k)
    h = wide_bandwidth(dist)
    ours = weighted_average(target[pos], dist, kernel, bandwidth=h)
    sk = KNeighborsRegressor(n_neighbors=k, weights=sklearn_kernel(kernel, h), algorithm="brute")
    sk.fit(train.astype(np.float64), target)
    np.testing.assert_allclose(ours, sk.predict(query.astype(np.float64)), rtol=1e-9)


@pytest.mark.parametrize("kernel", ["tricube", "epanechnikov"])
def test_rows_whose_neighbors_all_weigh_zero_fall_back_to_uniform(kernel):
    train, labels, query, _ = split(load_iris)
    k = 5
    dist, pos = nearest(train, query, k)
    h = float(np.median(dist[:, 0]))  # about half the rows have every neighbor at d >= h
    fallback = dist[:, 0] >= h
    assert fallback.any() and not fallback.all()
    classes = np.unique(labels)
    _, proba, prediction = classify_neighbors(labels[pos], dist, classes, kernel, bandwidth=h)
    _, uniform_proba, uniform_prediction = classify_neighbors(labels[pos], dist, classes, "uniform")
    np.testing.assert_array_equal(proba[fallback], uniform_proba[fallback])
    np.testing.assert_array_equal(prediction[fallback], uniform_prediction[fallback])
    sk = KNeighborsClassifier(n_neighbors=k, weights=sklearn_kernel(kernel, h), algorithm="brute")
    sk.fit(train.astype(np.float64), labels)
    sk_proba = sk.predict_proba(query[~fallback].astype(np.float64))
    np.testing.assert_allclose(proba[~fallback], sk_proba, atol=1e-9)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    target = labels * 10.0
    average = weighted_average(target[pos], dist, kernel, bandwidth=h)
    np.testing.assert_allclose(average[fallback], target[pos][fallback].mean(axis=1))


def test_gaussian_underflow_and_infinite_distances_fall_back_to_uniform():
    dist = np.array([[50.0, 60.0], [np.inf, np.inf], [0.0, 1.0]])
    w = neighbor_weights(dist, "gaussian", bandwidth=0.1)
    np.testing.assert_array_equal(w[:2], 1.0)
    np.testing.assert_allclose(w[2], [1.0, np.exp(-50.0)])
    np.testing.assert_array_equal(neighbor_weights(dist[1:2], "distance"), [[1.0, 1.0]])


def test_kernel_values_at_and_beyond_the_bandwidth():
    dist = np.array([[0.0, 0.5, 1.0, 2.0]])
    np.testing.assert_allclose(
        neighbor_weights(dist, "tricube", bandwidth=1.0), [[1.0, (1 - 0.125) ** 3, 0.0, 0.0]]
    )
    np.testing.assert_allclose(
        neighbor_weights(dist, "epanechnikov", bandwidth=1.0), [[1.0, 0.75, 0.0, 0.0]]
    )


def test_table_says_which_weightings_need_a_bandwidth():
    assert [n for n, w in WEIGHTINGS.items() if w.needs_bandwidth] == list(KERNELS)
    assert list(WEIGHTINGS)[:2] == ["uniform", "distance"]


@pytest.mark.parametrize("kernel", KERNELS)
def test_a_kernel_without_bandwidth_is_refused(kernel):
    message = f"Param bandwidth must be set to a finite number > 0 when weights='{kernel}'; got"
    with pytest.raises(ValueError, match=message):
        check_bandwidth(kernel, None)
    with pytest.raises(ValueError, match="Param bandwidth must be set"):
        neighbor_weights(np.ones((1, 2)), kernel)
    check_bandwidth("uniform", None)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_a_bad_bandwidth_is_refused(bad):
    with pytest.raises(ValueError, match=r"Param bandwidth must be a finite number > 0; got"):
        check_bandwidth("gaussian", bad)


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernels_refuse_metrics_with_negative_distances(kernel):
    with pytest.raises(ValueError, match=rf"Param weights='{kernel}' weighs neighbors by a kernel"):
        check_weighting("inner_product", kernel)
    check_weighting("cosine", kernel)
