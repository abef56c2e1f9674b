"""Every index kind behind the one Shard interface, and the one metric table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from knnspark.kernels.distances import METRICS, get_metric, metric_table_markdown
from knnspark.kernels.kinds import SHARD_KINDS, shard_kind
from knnspark.kernels.shard import SearchOptions, Shard
from knnspark.shard_codec import (
    blob_row,
    build_blob_table,
    shard_from_blob,
    shard_from_rows,
    shard_rows_table,
)

README = Path(__file__).resolve().parents[2] / "README.md"


def _data(n=300, d=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x, rng.permutation(n).astype(np.int64) * 3, rng.integers(0, 3, n).astype(np.float64)


def _brute(x, ids, q, k, metric):
    d = np.stack([get_metric(metric).distance(qq[None, None, :], x[None], 2.0)[0] for qq in q])
    order = np.lexsort((np.broadcast_to(ids, d.shape), d), axis=1)[:, :k]
    return ids[order]


@pytest.mark.parametrize("kind", sorted(SHARD_KINDS))
def test_each_kind_builds_round_trips_and_searches(kind):
    cls = shard_kind(kind)
    metric = next(m for m in METRICS if cls.supports_metric(m))
    params = cls.build_params(metric, {"M": 16, "efConstruction": 100, "seed": 0})
    x, ids, labels = _data()
    order = np.argsort(ids)
    shard: Shard = cls.build(x[order], ids[order], labels[order], params)
    assert shard.kind == kind and shard.n_rows == len(ids) and shard.size_bytes > 0
    estimate = cls.estimate_bytes(len(ids), x.shape[1], params)
    assert 0.8 * shard.size_bytes <= estimate <= 1.25 * shard.size_bytes
    # Through the codec's row layout, as broadcast, the distributed path and persistence see it.
    row = blob_row(4, shard)
    if not cls.stores_features:
        assert row["features"] is None and row["payload"] is not None
    row["features"] = x[order].tobytes()
    loaded = shard_from_blob(row, kind, params, "model-a")
    q = np.random.default_rng(1).normal(size=(20, x.shape[1])).astype(np.float32)
    options = SearchOptions(metric=metric, ef=100)
    dist_a, pos_a = shard.search(q, 5, options)
    dist_b, pos_b = loaded.search(q, 5, options)
    np.testing.assert_array_equal(pos_a, pos_b)
    np.testing.assert_allclose(dist_a, dist_b)
    np.testing.assert_array_equal(loaded.ids[pos_b], _brute(x, ids, q, 5, metric))
    np.testing.assert_array_equal(loaded.labels[pos_b], labels[order][pos_b])


@pytest.mark.parametrize("kind", sorted(SHARD_KINDS))
def test_build_task_output_is_in_id_order(kind):
    cls = shard_kind(kind)
    params = cls.build_params("euclidean", {"M": 8, "efConstruction": 50, "seed": 0})
    x, ids, labels = _data(50, 3)
    table = pa.table(
        {
            "shard": pa.array(np.full(50, 2, np.int32)),
            "id": pa.array(ids),
            "features": pa.array(list(x), pa.list_(pa.float32())),
            "label": pa.array(labels),
        }
    )
    blob = build_blob_table(table, True, kind, params).to_pylist()[0]
    assert blob["shard"] == 2 and blob["n_rows"] == 50 and blob["n_features"] == 3
    np.testing.assert_array_equal(np.frombuffer(blob["ids"], np.int64), np.sort(ids))
    exact = shard_from_blob(blob, "brute", {}, "m")
    np.testing.assert_array_equal(exact.features, x[np.argsort(ids)])
    again = shard_from_rows(shard_rows_table(2, exact), 3, "brute", {}, ("m", 2))
    np.testing.assert_array_equal(again.features, exact.features)
    np.testing.assert_array_equal(again.labels, labels[np.argsort(ids)])


def test_unknown_kind_names_the_known_ones():
    with pytest.raises(ValueError, match="Unknown index kind 'ivf'; expected one of 'brute'"):
        shard_kind("ivf")


def test_metric_table_entries_are_complete():
    for name, metric in METRICS.items():
        assert metric.name == name and metric.meaning
        q, r = np.ones((1, 1, 3)), np.zeros((1, 2, 3))
        assert metric.distance(q, r, 2.0).shape == (1, 2)
    assert get_metric("minkowski").is_true_metric(1.0)
    assert not get_metric("minkowski").is_true_metric(0.5)
    assert not get_metric("cosine").is_true_metric()
    assert {m for m, e in METRICS.items() if e.hnsw_space} == {
        "euclidean",
        "cosine",
        "inner_product",
        "mahalanobis",
    }


def test_readme_metric_table_is_the_registry():
    assert metric_table_markdown() in README.read_text()
