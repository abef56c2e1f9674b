"""Shards mapped from one file (the broadcast path of a local session), without Spark."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from knnspark import shipped
from knnspark.kernels.exact import ExactShard
from knnspark.kernels.hnsw import HnswShard, build_hnsw
from knnspark.kernels.shard import SearchOptions
from knnspark.shipped import MappedShards


def _data(n=600, dim=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dim)).astype(np.float32), rng.normal(size=(40, dim))


def _exact_shards(x):
    ids = np.arange(len(x)) * 2 + 5
    labels = np.arange(len(x)) % 3 * 1.0
    return [ExactShard(x[i::2], ids[i::2], labels[i::2]) for i in range(2)]


def _in_worker(handle):
    """The handle as a search task receives it: pickled with the function, cache empty."""
    shipped._LOADED.clear()
    return pickle.loads(pickle.dumps(handle))


def test_exact_shards_come_back_equal_and_search_the_same(tmp_path):
    x, q = _data(n=20_000)
    shards = _exact_shards(x)
    handle = _in_worker(MappedShards(str(tmp_path / "shards"), shards))
    mapped = handle.value
    assert len(pickle.dumps(handle)) < 4096  # the rows stay in the file (strided labels too)
    options = SearchOptions(metric="euclidean")
    for got, want in zip(mapped, shards, strict=True):
        np.testing.assert_array_equal(got.features, want.features)
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_array_equal(got.labels, want.labels)
        assert not got.features.flags.writeable  # the mapped pages, not a copy
        for a, b in zip(got.search(q, 7, options), want.search(q, 7, options), strict=True):
            np.testing.assert_array_equal(a, b)
    assert handle.value is mapped  # once per worker


def test_hnsw_graphs_come_back_byte_identical(tmp_path):
    x, q = _data(n=1500)  # a graph over 64 KiB leaves the header
    ids = np.arange(len(x))
    graph = build_hnsw(x, "euclidean", 8, 50, 0)
    shards = [HnswShard(graph, ids, None, x.shape[1], "euclidean", "mapped-test", 0)]
    handle = _in_worker(MappedShards(str(tmp_path / "shards"), shards))
    assert len(pickle.dumps(handle)) < 4096  # the graph stays in the file
    got = handle.value[0]
    assert isinstance(got.index_bytes, memoryview) and got.index_bytes == graph
    assert got.labels is None and got.model_id == "mapped-test"
    options = SearchOptions(ef=32)
    for a, b in zip(got.search(q, 5, options), shards[0].search(q, 5, options), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n_rows", [0, 1])
def test_tiny_shards(tmp_path, n_rows):
    x, q = _data(n=n_rows)
    shards = [ExactShard(x, np.arange(n_rows))]
    got = _in_worker(MappedShards(str(tmp_path / "shards"), shards)).value
    np.testing.assert_array_equal(got[0].features, x)
    assert got[0].search(q, 3, SearchOptions())[1].shape == (len(q), n_rows)
