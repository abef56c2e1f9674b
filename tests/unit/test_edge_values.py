"""Wrong answers at the edges (issue 15), pinned at the kernel level against references.

Cosine rounding, distance weighting with a similarity, a user id equal to the padding id,
labels outside the classes, a Minkowski ``p`` too large for plain powers, and repeated ids
reaching a shard build.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from scipy.spatial.distance import cdist
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

from knnspark.errors import InvalidInputError
from knnspark.kernels.distances import METRICS, pair_distances
from knnspark.kernels.exact import ExactShard, exact_search
from knnspark.kernels.hnsw import HnswShard, hnsw_params
from knnspark.kernels.predict import (
    check_weighting,
    class_probabilities,
    class_votes,
    neighbor_weights,
    weighted_average,
)
from knnspark.kernels.shard import SearchOptions
from knnspark.kernels.topk import PAD_ID, drop_duplicate_ids, pad_ragged, select_topk
from knnspark.shard_codec import build_blob_table

# The issue's repro: a query parallel to two training rows (itself and 3x), k=2. Features are
# stored as float32, so scikit-learn gets the float32 values too.
_X = np.array([1.304, 0.94708, -0.70373])
COSINE_TRAIN = np.array([_X, 3 * _X, [-1.0, 0.0, 0.0]]).astype(np.float32)
COSINE_LABELS = np.array([0.0, 1.0, 1.0])


# ---------------------------------------------------------------- 1. cosine rounding


def test_cosine_distance_of_a_vector_and_itself_is_exactly_zero():
    rng = np.random.default_rng(3)
    for d in (2, 3, 16, 300):
        x = rng.normal(size=(400, d)).astype(np.float32)
        x *= rng.uniform(1e-3, 1e3, size=(400, 1)).astype(np.float32)
        self_dist = pair_distances(x, x[:, None, :], "cosine")
        np.testing.assert_array_equal(self_dist, 0.0)
        dist = pair_distances(x, x, "cosine")
        assert dist.min() >= 0.0 and dist.max() <= 2.0
        # The value scikit-learn clips to [0, 2], within rounding.
        np.testing.assert_allclose(dist, np.clip(cdist(x, x, "cosine"), 0, 2), atol=1e-12)


def test_cosine_distances_stay_in_0_2_for_opposite_vectors():
    x = np.array([[1e-3, 3.0, -7.0]], dtype=np.float32)
    dist = pair_distances(x, np.vstack([x, -x, -3 * x]), "cosine")
    assert dist.min() >= 0.0 and dist.max() <= 2.0
    np.testing.assert_allclose(dist, [[0.0, 2.0, 2.0]], atol=1e-15)


def test_cosine_distance_weighting_matches_sklearn_on_the_issue_repro():
    shard = ExactShard(COSINE_TRAIN, np.arange(3), COSINE_LABELS)
    query = COSINE_TRAIN[:1]
    dist, pos = exact_search(shard, query, 2, "cosine")
    assert dist.min() >= 0.0
    proba = class_probabilities(COSINE_LABELS[pos], dist, np.array([0.0, 1.0]), "distance")
    average = weighted_average(COSINE_LABELS[pos], dist, "distance")
    x64 = COSINE_TRAIN.astype(np.float64)
    sk = dict(n_neighbors=2, metric="cosine", weights="distance", algorithm="brute")
    expected_proba = KNeighborsClassifier(**sk).fit(x64, COSINE_LABELS).predict_proba(x64[:1])
    expected = KNeighborsRegressor(**sk).fit(x64, COSINE_LABELS).predict(x64[:1])
    np.testing.assert_allclose(proba, expected_proba)  # [[1, 0]]
    np.testing.assert_allclose(average, expected)  # [0]
    np.testing.assert_allclose(proba, [[1.0, 0.0]])


def test_hnsw_cosine_distances_are_clipped_like_exact_ones():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    params = hnsw_params("cosine", 16, 100, 0)
    shard = HnswShard.build(x, np.arange(300), None, params)
    dist, pos = shard.search(x, 3, SearchOptions(metric="cosine", ef=64))
    assert dist.min() >= 0.0 and dist.max() <= 2.0
    # hnswlib's float32 self distances scatter around 0 (+-4e-7); none is negative now.
    assert np.mean(pos[:, 0] == np.arange(300)) > 0.95


# ---------------------------------------------------------------- 2. similarity weighting


def test_registry_says_which_metrics_distance_weighting_accepts():
    assert {n for n, m in METRICS.items() if not m.nonnegative} == {"inner_product"}


def test_distance_weighting_refuses_a_metric_with_negative_distances():
    with pytest.raises(ValueError, match=r"weights='distance'.*metric='inner_product'.*uniform"):
        check_weighting("inner_product", "distance")
    check_weighting("inner_product", "uniform")
    for name in METRICS:
        if name != "inner_product":
            check_weighting(name, "distance")


def test_negative_distances_never_become_negative_weights():
    # The issue's repro: training [2,0]/0, [0,0]/1, [0,5]/1, query [1,0], k=2 gave [-1, 1].
    shard = ExactShard(np.array([[2, 0], [0, 0], [0, 5]], np.float32), np.arange(3))
    dist, pos = exact_search(shard, np.array([[1.0, 0.0]], np.float32), 2, "inner_product")
    assert dist.min() < 0
    with pytest.raises(ValueError, match="weights='distance' needs distances >= 0; got -1.0"):
        neighbor_weights(dist, "distance")
    np.testing.assert_array_equal(neighbor_weights(dist, "uniform"), 1.0)


# ---------------------------------------------------------------- 3. padding vs user ids


def test_a_user_id_equal_to_the_padding_id_is_deduplicated_not_padding():
    # One query's partial lists from two searches of the same shard (equal queries in two
    # input partitions) plus padding: the real PAD_ID row must appear once, the next row kept.
    dist, ids, _ = pad_ragged(
        [np.array([0.1, 0.9]), np.array([0.1, 0.9]), np.array([2.0])],
        [np.array([PAD_ID, 5]), np.array([PAD_ID, 5]), np.array([7])],
    )
    dist, ids = dist.reshape(1, -1), ids.reshape(1, -1)
    dist, ids = drop_duplicate_ids(dist, ids)
    out_dist, out_ids, _ = select_topk(dist, ids, 3)
    np.testing.assert_array_equal(out_ids, [[PAD_ID, 5, 7]])
    np.testing.assert_array_equal(out_dist, [[0.1, 0.9, 2.0]])


# ---------------------------------------------------------------- 4. class lookup


def test_a_label_outside_the_classes_never_votes_in_another_row():
    classes = np.array([0.0, 1.0])
    labels = np.array([[0.0, 2.0], [1.0, 1.0]])  # 2.0 used to land in row 1's class 0
    with pytest.raises(ValueError, match=r"Neighbor label 2\.0 is not among the model's classes"):
        class_votes(labels, np.ones((2, 2)), classes, "uniform")
    with pytest.raises(ValueError, match=r"label 0\.5 is not among"):
        class_votes(np.array([[0.5]]), np.ones((1, 1)), classes, "uniform")
    np.testing.assert_array_equal(
        class_votes(np.array([[1.0, 0.0]]), np.ones((1, 2)), classes, "uniform"), [[1.0, 1.0]]
    )


# ---------------------------------------------------------------- 8. Minkowski with large p


def _minkowski_longdouble(q: np.ndarray, x: np.ndarray, p: float) -> np.ndarray:
    """Plain formula in extended precision (exponent range to 1e4932)."""
    diff = np.abs(q.astype(np.longdouble)[:, None, :] - x.astype(np.longdouble)[None, :, :])
    return (diff**p).sum(axis=2) ** (np.longdouble(1) / np.longdouble(p))


@pytest.mark.parametrize("p", [0.5, 1.5, 3.0, 7.25])
def test_minkowski_matches_scipy_for_ordinary_p(p):
    rng = np.random.default_rng(5)
    q, x = rng.normal(size=(20, 6)), rng.normal(size=(30, 6))
    q, x = q.astype(np.float32), x.astype(np.float32)
    expected = cdist(q.astype(np.float64), x.astype(np.float64), "minkowski", p=p)
    np.testing.assert_allclose(pair_distances(q, x, "minkowski", p), expected, rtol=1e-12)


@pytest.mark.skipif(np.finfo(np.longdouble).maxexp <= 1024, reason="needs an extended longdouble")
@pytest.mark.parametrize(("scale", "p"), [(1e30, 20.0), (1e-30, 20.0), (1e3, 150.0)])
def test_minkowski_without_overflow_or_underflow(scale, p):
    rng = np.random.default_rng(6)
    q = (rng.normal(size=(10, 5)) * scale).astype(np.float32)
    x = (rng.normal(size=(12, 5)) * scale).astype(np.float32)
    got = pair_distances(q, x, "minkowski", p)
    assert np.isfinite(got).all() and (got > 0).all()
    np.testing.assert_allclose(got, _minkowski_longdouble(q, x, p).astype(np.float64), rtol=1e-12)


def test_minkowski_with_huge_p_tends_to_chebyshev_and_finds_its_neighbors():
    rng = np.random.default_rng(7)
    train = rng.normal(size=(500, 4)).astype(np.float32)
    queries = rng.normal(size=(40, 4)).astype(np.float32)
    dist = pair_distances(queries, train, "minkowski", 1e6)
    chebyshev = cdist(queries.astype(np.float64), train.astype(np.float64), "chebyshev")
    # m * n^(1/p) with n <= 4 coordinates at the maximum: within 1.4e-6 of chebyshev.
    np.testing.assert_allclose(dist, chebyshev, rtol=2e-6)
    shard = ExactShard(train, np.arange(500))
    _, pos = exact_search(shard, queries, 5, "minkowski", 1e6)
    np.testing.assert_array_equal(pos, np.argsort(chebyshev, axis=1, kind="stable")[:, :5])


def test_minkowski_of_equal_vectors_is_zero_for_any_p():
    x = np.array([[1.0, -2.0, 3.0]], dtype=np.float32)
    for p in (0.5, 3.0, 1e6):
        np.testing.assert_array_equal(pair_distances(x, x, "minkowski", p), [[0.0]])


# ---------------------------------------------------------------- 7. repeated ids at build


def test_a_repeated_id_at_build_says_the_input_changed():
    table = pa.table(
        {
            "shard": pa.array([0, 0, 0], pa.int32()),
            "id": pa.array([4, 9, 4], pa.int64()),
            "features": pa.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]], pa.list_(pa.float32())),
            "label": pa.array([0.0, 1.0, 0.0]),
        }
    )
    message = r"Training id 4 reached its shard twice.*different rows.*cache.*idCol"
    for kind, params in (("brute", {}), ("hnsw", hnsw_params("euclidean", 8, 20, 0))):
        with pytest.raises(InvalidInputError, match=message):
            build_blob_table(table, True, kind, params)
