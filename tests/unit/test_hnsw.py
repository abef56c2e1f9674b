"""HNSW shards against exact search, without Spark."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from knnspark.kernels import hnsw
from knnspark.kernels.exact import ExactShard, exact_search
from knnspark.kernels.hnsw import (
    HnswShard,
    build_hnsw,
    estimate_hnsw_bytes,
    hnsw_search,
    load_count,
)
from knnspark.partition import FEATURES_TMP, SearchSettings, broadcast_search_fn
from knnspark.sizing import choose_algorithm


def _clustered(n, dim=16, n_queries=200, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=8.0, size=(40, dim))
    x = centres[rng.integers(0, 40, n)] + rng.normal(size=(n, dim))
    q = centres[rng.integers(0, 40, n_queries)] + rng.normal(size=(n_queries, dim))
    return x.astype(np.float32), q.astype(np.float32)


def _shard(x, metric="euclidean", model_id="t", shard=0, m=16, ef_construction=200, seed=0):
    ids = np.arange(len(x)) * 3 + 1
    data = build_hnsw(x, metric, m, ef_construction, seed)
    return HnswShard(data, ids, None, x.shape[1], metric, model_id, shard)


def _recall(found, truth):
    return np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, truth, strict=True)])


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "inner_product"])
def test_recall_at_10_against_exact(metric):
    x, q = _clustered(3000)
    if metric == "inner_product":  # ip suits normalized embeddings
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
    hnsw = _shard(x, metric, model_id=f"recall-{metric}")
    dist, pos = hnsw_search(hnsw, q, 10, ef=64)
    exact_dist, exact_pos = exact_search(ExactShard(x, hnsw.ids), q, 10, metric)
    assert _recall(pos, exact_pos) >= 0.95
    # Where the neighbors agree, so do the distances (float32 inside hnswlib).
    same = pos == exact_pos
    np.testing.assert_allclose(dist[same], exact_dist[same], rtol=1e-4, atol=1e-4)
    assert np.all(np.diff(dist, axis=1) >= 0)


def test_builds_are_byte_identical():
    x, _ = _clustered(1500)
    assert build_hnsw(x, "euclidean", 16, 100, 7) == build_hnsw(x, "euclidean", 16, 100, 7)
    assert build_hnsw(x, "euclidean", 16, 100, 7) != build_hnsw(x, "euclidean", 16, 100, 8)


def test_size_formula_predicts_the_serialized_size():
    for n, dim, m in [(2000, 16, 16), (1000, 64, 8), (3000, 8, 32)]:
        x, _ = _clustered(n, dim)
        actual = len(build_hnsw(x, "euclidean", m, 50, 0))
        assert 0.9 * actual <= estimate_hnsw_bytes(n, dim, m) <= 1.15 * actual


@pytest.mark.parametrize("n_rows", [0, 1, 3])
def test_shard_smaller_than_k(n_rows):
    x, q = _clustered(max(n_rows, 1), n_queries=5)
    x = x[:n_rows]
    shard = _shard(x, model_id=f"small-{n_rows}")
    dist, pos = hnsw_search(shard, q, 10, ef=1)
    assert dist.shape == pos.shape == (5, n_rows)
    if n_rows:
        exact_dist, exact_pos = exact_search(ExactShard(x, shard.ids), q, 10)
        np.testing.assert_array_equal(pos, exact_pos)


def test_ef_below_k_still_returns_k():
    x, q = _clustered(500)
    dist, pos = hnsw_search(_shard(x, model_id="ef-below-k", m=2, ef_construction=2), q, 50, ef=1)
    assert pos.shape == (len(q), 50)
    assert all(len(set(row)) == 50 for row in pos)


def test_graph_is_deserialized_once_per_worker():
    x, _ = _clustered(800, dim=4)
    shards = [_shard(x[s::2], model_id="cache-test", shard=s) for s in range(2)]

    class FakeBroadcast:
        value = shards

    settings = SearchSettings(
        task="neighbors",
        k=3,
        metric="euclidean",
        p=2.0,
        n_features=4,
        features_col="features",
        handle_invalid="error",
        kind="hnsw",
        ef=16,
        model_id="cache-test",
    )
    rng = np.random.default_rng(1)
    batches = [
        pa.RecordBatch.from_pydict(
            {FEATURES_TMP: pa.array(list(rng.normal(size=(20, 4))), pa.list_(pa.float32()))}
        )
        for _ in range(6)
    ]
    before = load_count()
    search = broadcast_search_fn(FakeBroadcast(), settings)
    outputs = list(search(iter(batches)))
    outputs += list(search(iter(batches)))  # a second task in the same worker
    assert load_count() - before == 2  # one load per shard, not per batch or task
    assert sum(b.num_rows for b in outputs) == 240


def test_graph_cache_evicts_the_least_recently_used_model(monkeypatch):
    x, q = _clustered(300, dim=4)
    # Three one-shard models, and room for two graphs.
    models = [_shard(x[s::3], model_id=f"lru-{s}", shard=0) for s in range(3)]
    monkeypatch.setattr(hnsw, "GRAPH_CACHE_BYTES", 2 * len(models[0].index_bytes) + 100)

    def loads(*order):
        before = load_count()
        for s in order:
            hnsw_search(models[s], q[:2], 3, ef=16)
        return load_count() - before

    assert loads(0, 1, 0) == 2  # 0 is now the most recent
    assert loads(2) == 1  # evicts 1
    assert loads(0, 2) == 0
    assert loads(1) == 1  # evicted: loaded again (and 0 goes)
    assert loads(2, 1) == 0
    assert loads(0) == 1


def test_graph_cache_keeps_every_graph_of_the_model_it_searches(monkeypatch):
    x, q = _clustered(300, dim=4)
    other = _shard(x, model_id="lru-other", shard=0)
    shards = [_shard(x[s::2], model_id="lru-big", shard=s) for s in range(2)]
    hnsw_search(other, q[:2], 3, ef=16)
    # A budget smaller than one graph: other models go, this model's shards all stay, or
    # every batch would reload them.
    monkeypatch.setattr(hnsw, "GRAPH_CACHE_BYTES", 10)
    before = load_count()
    for _ in range(3):
        for shard in shards:
            hnsw_search(shard, q[:2], 3, ef=16)
    assert load_count() - before == 2
    assert ("lru-other", 0) not in hnsw._LOADED
    assert {("lru-big", 0), ("lru-big", 1)} <= set(hnsw._LOADED)


def test_auto_weighs_build_cost_against_search():
    assert choose_algorithm("auto", "euclidean", 1_000, 2, 200, 64, 16) == "brute"
    assert choose_algorithm("auto", "euclidean", 1_000_000, 2, 200, 64, 16) == "hnsw"
    assert choose_algorithm("auto", "manhattan", 1_000_000, 2, 200, 64, 16) == "brute"
    assert choose_algorithm("brute", "euclidean", 1_000_000, 2, 200, 64, 16) == "brute"
    # The documented threshold: 10 * (efConstruction + numShards * ef * M).
    assert choose_algorithm("auto", "cosine", 22_481, 2, 200, 64, 16) == "hnsw"
    assert choose_algorithm("auto", "cosine", 22_480, 2, 200, 64, 16) == "brute"


def test_unknown_metric_is_rejected():
    with pytest.raises(ValueError, match="HNSW supports the metrics"):
        build_hnsw(np.zeros((2, 2), dtype=np.float32), "manhattan", 16, 10, 0)
