"""The shard-major distributed path: routing, pruned exact search, rounds, and a still index.

The training rows are placed in shards by hand (ids chosen so that ``idCol``'s hash puts each
cluster in its own shard), and a :class:`Router` is built from the shards' real contents with
numpy, so the routing rules meet the data they are meant for. Every result is compared with
numpy brute force: over all rows for pruned exact search, over the visited shards' rows for
``nprobe``.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from knnspark import NearestNeighbors
from knnspark.kernels.distances import pair_distances
from knnspark.kernels.routing import Router
from knnspark.partition import NDIST_TMP, NEIGHBORS, NIDS_TMP, SHARDS_TMP, SearchSettings
from knnspark.schema import feature_array_expr
from knnspark.search import QUERY_BYTES_CONF, search_dataframe

SHARDS = 4
K = 5


@pytest.fixture(scope="module")
def clustered(spark):
    """Four well separated clusters, cluster c in shard c, and queries near and between."""
    rng = np.random.default_rng(21)
    centres = np.array([[0.0, 0.0, 0.0], [8.0, 0.0, 0.0], [0.0, 8.0, 0.0], [0.0, 0.0, 8.0]])
    cluster = np.repeat(np.arange(SHARDS), 60)
    x = centres[cluster] + rng.normal(size=(cluster.size, 3))
    # Candidate ids by the shard idCol's hash sends them to: the i-th row of cluster c gets
    # the i-th id that lands in shard c.
    candidates = spark.range(4000).select(
        "id", F.pmod(F.xxhash64("id"), F.lit(SHARDS)).alias("shard")
    )
    by_shard = candidates.toPandas().groupby("shard")["id"].apply(list)
    ids = np.concatenate([by_shard[c][:60] for c in range(SHARDS)])
    train = spark.createDataFrame(pd.DataFrame({"id": ids, "features": list(x)}))
    q = np.concatenate(
        [
            centres[rng.integers(0, SHARDS, 40)] + rng.normal(size=(40, 3)),
            rng.uniform(-2, 10, size=(20, 3)),  # between clusters: pruning must still be exact
            x[:3],  # exact matches
        ]
    )
    q = np.concatenate([q, q[:5]])  # repeated queries
    queries = spark.createDataFrame(pd.DataFrame({"qid": np.arange(len(q)), "features": list(q)}))
    model = NearestNeighbors(k=K, numShards=SHARDS, idCol="id", maxBroadcastBytes=0).fit(train)
    assert model.storage == "distributed"
    return model, x, ids, cluster, q, queries.repartition(3)


def _router(x, cluster, metric="euclidean"):
    centroids = np.stack([x[cluster == c].mean(axis=0) for c in range(SHARDS)])
    radii = np.array(
        [pair_distances(x[cluster == c], centroids[c : c + 1], metric).max() for c in range(SHARDS)]
    )
    return Router(centroids=centroids, radii=radii, metric=metric)


def _search(model, queries, router, nprobe=None, metric="euclidean"):
    index = model.index
    settings = SearchSettings(
        task=NEIGHBORS,
        k=K,
        metric=metric,
        p=2.0,
        n_features=index.n_features,
        features_col="features",
        handle_invalid="keep",
        kind=index.kind,
        model_id=index.model_id,
        router=router,
        nprobe=nprobe,
        shards_visited=True,
    )
    features = index.preprocessing.apply(feature_array_expr(queries.schema, "features"))
    out = search_dataframe(queries, index, settings, None, features)
    return out.orderBy("qid").select("qid", NIDS_TMP, NDIST_TMP, SHARDS_TMP).toPandas()


def _brute(q, x, ids, allowed=None, metric="euclidean"):
    dist = pair_distances(q, x, metric)
    if allowed is not None:
        dist = np.where(allowed, dist, np.inf)
    order = np.lexsort((np.broadcast_to(ids, dist.shape), dist), axis=1)[:, :K]
    return np.take(ids, order), np.take_along_axis(dist, order, axis=1)


def _check(got, q, x, ids, allowed=None, metric="euclidean"):
    want_ids, want_dist = _brute(q.astype(np.float32), x.astype(np.float32), ids, allowed, metric)
    np.testing.assert_array_equal(np.stack(got[NIDS_TMP]), want_ids)
    np.testing.assert_allclose(np.stack(got[NDIST_TMP]), want_dist, rtol=1e-5, atol=1e-6)


def test_pruned_exact_search_equals_brute_force_and_prunes(clustered):
    model, x, ids, cluster, q, queries = clustered
    router = _router(x, cluster)
    got = _search(model, queries, router)
    assert len(got) == len(q)
    _check(got, q, x, ids)
    visited = got[SHARDS_TMP].to_numpy()
    assert visited.min() >= 1 and visited.max() <= SHARDS
    # Queries near a cluster's centre find all k neighbors in its shard and prune the rest.
    assert (visited[:40] == 1).mean() > 0.8
    # The count is the rule's: the nearest shard, then every shard its k-th distance keeps.
    qf = q.astype(np.float32)
    first = router.nearest(qf, 1)[:, 0]
    kth = np.array(
        [_brute(qf[i : i + 1], x, ids, cluster == first[i])[1][0, -1] for i in range(len(q))]
    )
    visited_mask = np.eye(SHARDS, dtype=bool)[first]
    expected = 1 + router.must_visit(qf, kth, visited_mask).sum(axis=1)
    np.testing.assert_array_equal(visited, expected)


@pytest.mark.parametrize("nprobe", [1, 2])
def test_nprobe_equals_brute_force_over_the_visited_shards(clustered, nprobe):
    model, x, ids, cluster, q, queries = clustered
    router = _router(x, cluster)
    got = _search(model, queries, router, nprobe=nprobe)
    nearest = router.nearest(q.astype(np.float32), nprobe)
    allowed = (cluster[None, :] == nearest[:, :, None]).any(axis=1)
    _check(got, q, x, ids, allowed)
    assert (got[SHARDS_TMP] == nprobe).all()


def test_a_metric_that_cannot_prune_visits_every_shard(clustered):
    model, x, ids, cluster, q, queries = clustered
    router = _router(x, cluster, metric="cosine")
    assert not router.can_prune
    got = _search(model, queries, router, metric="cosine")
    _check(got, q, x, ids, metric="cosine")
    assert (got[SHARDS_TMP] == SHARDS).all()


def test_without_a_router_every_shard_is_visited(clustered):
    model, x, ids, _, q, queries = clustered
    got = _search(model, queries, None)
    _check(got, q, x, ids)
    assert (got[SHARDS_TMP] == SHARDS).all()


def test_rounds_split_the_queries_and_change_nothing(spark, clustered):
    model, x, ids, cluster, q, queries = clustered
    spark.conf.set(QUERY_BYTES_CONF, "4096")  # a few dozen queries per round
    try:
        got = _search(model, queries, _router(x, cluster))
        plan = model.kneighbors(queries)
        rows = plan.count()
    finally:
        spark.conf.unset(QUERY_BYTES_CONF)
    assert rows == len(q)
    _check(got, q, x, ids)


def test_invalid_rows_get_null_shard_counts(spark, clustered):
    model, x, _, cluster, _, _ = clustered
    queries = spark.createDataFrame(
        [(0, [0.0, 0.0, 0.0]), (1, None), (2, [1.0, float("nan"), 0.0]), (3, [1.0])],
        "qid int, features array<double>",
    )
    got = _search(model, queries, _router(x, cluster))
    assert got["qid"].tolist() == [0, 1, 2, 3]
    assert got[SHARDS_TMP].isna().tolist() == [False, True, True, True]
    assert got[NIDS_TMP].isna().tolist() == [False, True, True, True]


def _children(lines: list[str], i: int) -> list[int]:
    """Line numbers of the children of the plan node on line ``i`` (the tree's ``+-``/``:-``)."""
    depth = [re.search(r"[+:]- ", line) for line in lines]
    below = depth[i].start() + 3 if depth[i] else 0
    found = []
    for j in range(i + 1, len(lines)):
        if depth[j] is None or depth[j].start() < below:
            break
        if depth[j].start() == below:
            found.append(j)
    return found


def _node(lines: list[str], i: int) -> str:
    """The operator on line ``i``, without its tree prefix and codegen stage."""
    text = re.sub(r"^[\s|:+-]*", "", lines[i])
    return re.sub(r"^\*\(\d+\) ", "", text)


def _cogroup_sides(plan: str) -> list[list[str]]:
    """For each cogroup: its routed queries' side and its shards' side, as the chain of
    operators down to the first node with more than one child, and that node's children."""
    lines = plan.splitlines()
    sides = []
    for i, line in enumerate(lines):
        if "FlatMapCoGroupsInArrow" not in line:
            continue
        chains = []
        for j in _children(lines, i):
            chain = [_node(lines, j)]
            while len(below := _children(lines, j)) == 1:
                j = below[0]
                chain.append(_node(lines, j))
            chain += [_node(lines, c) for c in below]
            chains.append(chain)
        sides.append(chains)
    return sides


@pytest.mark.parametrize(
    ("algorithm", "partitioning"), [("brute", "hash"), ("hnsw", "hash"), ("brute", "kmeans")]
)
def test_the_index_is_not_shuffled_at_search(spark, tmp_path, algorithm, partitioning):
    """The persisted shards are the cogroup's side as they are: no exchange, no sort.

    With k-means routing (nprobe=1) the shard side is first restricted to the routed shards
    by a broadcast left-semi join, which keeps the persisted partitioning and order; its keys
    come from the routed queries' exchange, reused, so the routing pass runs once.
    """
    rng = np.random.default_rng(2)
    train = spark.createDataFrame(pd.DataFrame({"features": list(rng.normal(size=(300, 4)))}))
    queries = spark.createDataFrame(pd.DataFrame({"features": list(rng.normal(size=(30, 4)))}))
    est = NearestNeighbors(
        k=3, numShards=3, algorithm=algorithm, partitioning=partitioning, maxBroadcastBytes=0
    )
    model = est.fit(train)
    if partitioning == "kmeans":
        model.setNprobe(1)
    model.write().save(str(tmp_path / "model"))
    loaded = type(model).load(str(tmp_path / "model"))
    assert loaded.storage == "distributed"
    for searched in (model, loaded):
        out = searched.kneighbors(queries.repartition(5))
        plan = out._jdf.queryExecution().executedPlan().toString()
        sides = _cogroup_sides(plan)
        assert len(sides) == 1, plan
        routed, shards = sides[0]
        assert routed[0].startswith("Sort"), plan  # the routed queries, shuffled and sorted
        assert not any(op.startswith(("Exchange", "Sort")) for op in shards), plan
        if partitioning == "hash":  # every shard, left in place
            assert shards[0].startswith("InMemoryTableScan"), plan
        else:  # only the routed shards, left in place
            semi = next(op for op in shards if op.startswith("BroadcastHashJoin"))
            assert "LeftSemi" in semi, plan
            assert shards[shards.index(semi) + 1].startswith("InMemoryTableScan"), plan
            assert plan.count("MapInArrow route(") == 1, plan  # the routing runs once
            assert "ReusedExchange" in plan, plan
    expected = model.kneighbors(queries).orderBy("features").collect()
    assert loaded.kneighbors(queries).orderBy("features").collect() == expected


@pytest.mark.parametrize(
    ("algorithm", "nprobe"), [("brute", None), ("brute", 2), ("hnsw", None), ("hnsw", 2)]
)
def test_kmeans_models_give_identical_output_on_both_paths(spark, clustered, algorithm, nprobe):
    """partitioning='kmeans' end to end: neighbors and shards visited agree row for row."""
    _, x, ids, _, q, queries = clustered
    train = spark.createDataFrame(pd.DataFrame({"id": ids, "features": list(x)}))
    params = dict(k=K, idCol="id", numShards=SHARDS, partitioning="kmeans", algorithm=algorithm)
    est = NearestNeighbors(**params, shardsVisitedCol="visited")
    if nprobe is not None:
        est.setNprobe(nprobe)
    broadcast = est.fit(train)
    distributed = est.copy({est.maxBroadcastBytes: 0}).fit(train)
    assert (broadcast.storage, distributed.storage) == ("broadcast", "distributed")
    a = broadcast.kneighbors(queries).orderBy("qid").toPandas()
    b = distributed.kneighbors(queries).orderBy("qid").toPandas()
    pd.testing.assert_frame_equal(a, b)
    if algorithm == "brute" and nprobe is None:
        _check(b.rename(columns={"neighbor_ids": NIDS_TMP, "distances": NDIST_TMP}), q, x, ids)
        assert b["visited"].mean() < SHARDS / 2  # pruning works on the clustered data


def test_nprobe_shards_with_fewer_than_k_rows_extend_to_the_next_nearest(spark):
    """nprobe=1 over shards of 3 rows with k=4: both paths visit the next nearest shard too."""
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    x = np.repeat(centres, 3, axis=0) + np.tile([[0.0, 0.0], [0.5, 0.0], [0.0, 0.5]], (4, 1))
    train = spark.createDataFrame(pd.DataFrame({"id": np.arange(12), "features": list(x)}))
    queries = spark.createDataFrame(
        pd.DataFrame({"qid": np.arange(4), "features": list(centres + 0.1)})
    )
    est = NearestNeighbors(
        k=4, numShards=4, idCol="id", partitioning="kmeans", nprobe=1, shardsVisitedCol="visited"
    )
    broadcast = est.fit(train)
    distributed = est.copy({est.maxBroadcastBytes: 0}).fit(train)
    a = broadcast.kneighbors(queries).orderBy("qid").toPandas()
    b = distributed.kneighbors(queries).orderBy("qid").toPandas()
    pd.testing.assert_frame_equal(a, b)
    assert (b["visited"] >= 2).all()
    assert all(len(ids) == 4 for ids in b["neighbor_ids"])
