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
from knnspark.sizing import MAX_ROW_BYTES, blob_row_bytes, check_blob_row

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
        check_blob_row(HnswShard, params, n_rows, n_features, 4)
    with pytest.raises(InvalidInputError, match=r"numShards >= (\d+)") as info:
        check_blob_row(HnswShard, params, n_rows, n_features, 4)
    needed = int(re.search(r"numShards >= (\d+)", str(info.value)).group(1))
    check_blob_row(HnswShard, params, n_rows, n_features, needed)  # the advice is enough
    assert blob_row_bytes(HnswShard, params, n_rows, n_features, needed) <= MAX_ROW_BYTES
    # Exact rows: the same limit on the row of a built exact shard.
    with pytest.raises(InvalidInputError, match="A built BRUTE shard"):
        check_blob_row(ExactShard, {}, n_rows, n_features, 1)
