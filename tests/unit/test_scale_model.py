"""The scale model's README section is the script's output, and fit refuses what it rules out."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

from knnspark.errors import InvalidInputError
from knnspark.kernels.exact import ExactShard
from knnspark.kernels.hnsw import HnswShard
from knnspark.kernels.kmeans import CAP_RATIO
from knnspark.sizing import (
    MAX_ROW_BYTES,
    SHARD_SKEW,
    blob_row_bytes,
    check_blob_row,
    check_shard_memory,
    largest_shard_rows,
)

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("scale_model", ROOT / "scripts/scale_model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["scale_model"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_readme_section_is_the_scripts_output():
    model = _script()
    assert model.readme_section(model.Setting()) in (ROOT / "README.md").read_text()


def test_the_model_flags_what_fit_refuses():
    model = _script()
    text = model.markdown(model.Setting(rows=(1_000_000_000,), num_shards=(64,)))
    assert "a shard over maxShardBytes" in text
    assert "a built shard over 2 GiB: fit refuses (numShards)" in text
    assert "works" in model.markdown(model.Setting(rows=(1_000_000,), num_shards=(8,)))


def test_a_built_shard_over_two_gib_is_refused_with_the_shard_count_that_fits():
    params = HnswShard.build_params("euclidean", {"M": 16, "efConstruction": 200, "seed": 0})
    n_rows, n_features = 10_000_000, 128
    with pytest.raises(InvalidInputError, match=r"over Spark's 2 GiB limit on a row\. Use more "):
        check_blob_row(HnswShard, params, n_rows, n_features, 4, partitioning="hash")
    for partitioning in ("hash", "kmeans"):
        with pytest.raises(InvalidInputError, match=r"numShards >= (\d+)") as info:
            check_blob_row(HnswShard, params, n_rows, n_features, 4, partitioning=partitioning)
        needed = int(re.search(r"numShards >= (\d+)", str(info.value)).group(1))
        fits = dict(num_shards=needed, partitioning=partitioning)
        check_blob_row(HnswShard, params, n_rows, n_features, **fits)  # the advice is enough
        assert blob_row_bytes(HnswShard, params, n_rows, n_features, **fits) <= MAX_ROW_BYTES
    # Exact rows: the same limit on the row of a built exact shard.
    with pytest.raises(InvalidInputError, match="A built BRUTE shard"):
        check_blob_row(ExactShard, {}, n_rows, n_features, 1, partitioning="hash")


def test_the_largest_shard_is_planned_per_partitioning():
    # Hash sharding is uneven by chance; balanced k-means caps shards at CAP_RATIO of the
    # mean on its sample and lets them reach about 1.5x on all the rows. Every size rule
    # (maxShardBytes, the 2 GiB row, the scale model) reads this one table.
    assert SHARD_SKEW == {"hash": 1.2, "kmeans": 1.5}
    assert SHARD_SKEW["kmeans"] > CAP_RATIO
    assert largest_shard_rows(1_000_000, 16, "hash") == 75_000
    assert largest_shard_rows(1_000_000, 16, "kmeans") == 93_750


def test_a_kmeans_shard_row_is_sized_at_one_and_a_half_times_the_mean():
    """Rows where a hash shard's row fits 2 GiB and a k-means shard's (25% larger) does not."""
    params = HnswShard.build_params("euclidean", {"M": 16, "efConstruction": 200, "seed": 0})
    n_features, num_shards = 128, 4
    per_row = blob_row_bytes(HnswShard, params, 10_000, n_features, 1, partitioning="hash") / (
        largest_shard_rows(10_000, 1, "hash")
    )
    n_rows = int(MAX_ROW_BYTES / per_row * num_shards / 1.35)  # between 1.2x and 1.5x
    check_blob_row(HnswShard, params, n_rows, n_features, num_shards, partitioning="hash")
    kmeans = largest_shard_rows(n_rows, num_shards, "kmeans")
    with pytest.raises(
        InvalidInputError, match=rf"\({kmeans} rows of 128 features.*numShards >= 5"
    ):
        check_blob_row(HnswShard, params, n_rows, n_features, num_shards, partitioning="kmeans")
    # maxShardBytes reads the same table: the k-means shard is 1.5 / 1.2 of the hash one.
    budget = HnswShard.estimate_bytes(largest_shard_rows(n_rows, 64, "hash"), n_features, params)
    sizes = dict(n_rows=n_rows, n_features=n_features, num_shards=64, max_shard_bytes=budget)
    check_shard_memory(HnswShard, params, partitioning="hash", **sizes)
    with pytest.raises(InvalidInputError, match=r"maxShardBytes"):
        check_shard_memory(HnswShard, params, partitioning="kmeans", **sizes)
