"""The group kernels without Spark: routing plans and per-group search, against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from knnspark.kernels.exact import ExactShard
from knnspark.kernels.grouped import GroupedShard, GroupRouting, grouped_search, spread_of
from knnspark.kernels.shard import SearchOptions
from knnspark.kernels.topk import PAD_ID


def test_spread_of_a_group():
    assert [spread_of(n, 10) for n in (1, 10, 11, 95)] == [1, 1, 2, 10]


def test_plan_visits_home_or_the_big_group_shards_wrapping_around():
    routing = GroupRouting(num_shards=4, big={"big": 3})
    plan = routing.plan(np.array(["small", "big", None], dtype=object), np.array([1, 2, 3]))
    assert plan.tolist() == [[1, -1, -1], [2, 3, 0], [3, -1, -1]]


def test_routing_json_round_trip():
    routing = GroupRouting(num_shards=5, big={"a": 2}, category="date")
    assert GroupRouting.from_json(routing.to_json()) == routing


def _grouped_data(rng):
    x = rng.normal(size=(60, 3)).astype(np.float32)
    groups = np.array(["a"] * 30 + ["b"] * 20 + ["c"] * 10, dtype=object)
    ids = rng.permutation(60).astype(np.int64) * 3
    labels = rng.integers(0, 2, size=60).astype(np.float64)
    # Group "a" spread over shards 0 and 1, "b" in shard 1, "c" in shard 2.
    shard_of = np.where(groups == "a", ids % 2, np.where(groups == "b", 1, 2))
    shards = []
    for s in range(3):
        pieces = {}
        for g in sorted(set(groups[shard_of == s])):
            rows = (shard_of == s) & (groups == g)
            pieces[g] = ExactShard(x[rows], ids[rows], labels[rows])
        shards.append(GroupedShard(s, pieces))
    return x, groups, ids, labels, shards


def test_grouped_search_equals_per_group_brute_force():
    rng = np.random.default_rng(0)
    x, groups, ids, labels, shards = _grouped_data(rng)
    routing = GroupRouting(num_shards=3, big={"a": 2})
    queries = rng.normal(size=(8, 3)).astype(np.float32)
    q_groups = np.array(["a", "b", "c", "z", None, "a", "b", "c"], dtype=object)
    homes = np.array([0, 1, 2, 0, 1, 0, 1, 2])
    k = 4
    dist, got_ids, got_labels, visited = grouped_search(
        shards, routing.plan(q_groups, homes), queries, q_groups, k, SearchOptions()
    )
    assert visited.tolist() == [2, 1, 1, 1, 1, 2, 1, 1]
    for i, g in enumerate(q_groups):
        mine = groups == g
        if not mine.any():
            assert (got_ids[i] == PAD_ID).all() and np.isinf(dist[i]).all()
            continue
        d = np.linalg.norm(x[mine].astype(np.float64) - queries[i], axis=1)
        order = np.argsort(d)[:k]
        assert got_ids[i].tolist() == ids[mine][order].tolist()
        np.testing.assert_allclose(dist[i], d[order], rtol=1e-5)
        assert got_labels[i].tolist() == labels[mine][order].tolist()


def test_grouped_shard_concatenates_ids_and_labels_by_key():
    rng = np.random.default_rng(1)
    *_, shards = _grouped_data(rng)
    shard = shards[1]
    assert shard.n_rows == sum(p.n_rows for p in shard.pieces.values())
    assert shard.ids.tolist() == [*shard.pieces["a"].ids, *shard.pieces["b"].ids]
    assert shard.labels.shape == shard.ids.shape


@pytest.mark.parametrize("k", [1, 10])
def test_search_groups_pads_queries_of_absent_groups(k):
    rng = np.random.default_rng(2)
    *_, shards = _grouped_data(rng)
    queries = rng.normal(size=(2, 3)).astype(np.float32)
    dist, ids, _ = shards[2].search_groups(
        queries, np.array(["c", "a"], dtype=object), k, SearchOptions()
    )
    assert (ids[0] != PAD_ID).all() and (ids[1] == PAD_ID).all()


def test_rows_without_neighbors_get_empty_lists_and_null_predictions():
    from knnspark.partition import (
        CLASSIFICATION,
        NDIST_TMP,
        NIDS_TMP,
        PRED_TMP,
        SearchSettings,
        output_arrays,
    )

    settings = SearchSettings(
        task=CLASSIFICATION, k=2, metric="euclidean", p=2.0, n_features=1, features_col="f",
        handle_invalid="keep", classes=(0.0, 1.0), with_neighbors=True,
        groups=GroupRouting(num_shards=2),
    )  # fmt: skip
    valid = np.array([True, False, True])
    dist = np.array([[0.1, 0.2], [np.inf, np.inf]])
    ids = np.array([[3, 4], [PAD_ID, PAD_ID]])
    labels = np.array([[1.0, 1.0], [np.nan, np.nan]])
    out = output_arrays(dist, ids, labels, valid, settings)
    assert out[PRED_TMP].to_pylist() == [1.0, None, None]
    assert out[NIDS_TMP].to_pylist() == [[3, 4], None, []]
    assert out[NDIST_TMP].to_pylist() == [[0.1, 0.2], None, []]
    # A real neighbor whose id equals the padding id (at a finite distance) is kept.
    ids[1] = [PAD_ID, 5]
    labels[1] = [0.0, 1.0]
    out = output_arrays(np.array([[0.1, 0.2], [0.3, 0.4]]), ids, labels, valid, settings)
    assert out[NIDS_TMP].to_pylist() == [[3, 4], None, [PAD_ID, 5]]
