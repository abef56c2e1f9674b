"""select_topk / merge_topk / smallest_k_columns against numpy brute force."""

from __future__ import annotations

import numpy as np
import pytest

from knnspark.kernels.topk import (
    PAD_ID,
    merge_topk,
    pad_ragged,
    select_topk,
    smallest_k_columns,
)


def _reference(dist, ids, k):
    """Full lexicographic sort by (distance, id): the documented rule."""
    out_d, out_i = [], []
    for d_row, i_row in zip(dist, ids, strict=True):
        order = sorted(range(len(d_row)), key=lambda j: (d_row[j], i_row[j]))[:k]
        out_d.append(d_row[order])
        out_i.append(i_row[order])
    return np.array(out_d), np.array(out_i)


@pytest.mark.parametrize("n_cand,k", [(5, 3), (50, 4), (200, 10), (7, 7), (3, 10)])
def test_select_topk_matches_lexicographic_sort(n_cand, k):
    rng = np.random.default_rng(n_cand * 100 + k)
    # Few distinct values: plenty of exact ties, including at the boundary.
    dist = rng.integers(0, 4, size=(30, n_cand)).astype(np.float64)
    ids = np.stack([rng.permutation(1000)[:n_cand] for _ in range(30)])
    got_d, got_i, pos = select_topk(dist, ids, k)
    ref_d, ref_i = _reference(dist, ids, k)
    np.testing.assert_array_equal(got_d, ref_d)
    np.testing.assert_array_equal(got_i, ref_i)
    np.testing.assert_array_equal(np.take_along_axis(ids, pos, axis=1), got_i)


def test_select_topk_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="dist and ids must be 2-D arrays of one shape"):
        select_topk(np.zeros((2, 3)), np.zeros((2, 4), dtype=np.int64), 2)


def test_merge_topk_is_order_independent():
    rng = np.random.default_rng(1)
    dist_a = np.round(rng.random((20, 6)), 1)
    dist_b = np.round(rng.random((20, 6)), 1)
    ids_a = rng.integers(0, 50, (20, 6))
    ids_b = rng.integers(50, 100, (20, 6))
    ab = merge_topk(dist_a, ids_a, dist_b, ids_b, 5)
    ba = merge_topk(dist_b, ids_b, dist_a, ids_a, 5)
    np.testing.assert_array_equal(ab[0], ba[0])
    np.testing.assert_array_equal(ab[1], ba[1])
    ref = _reference(np.hstack([dist_a, dist_b]), np.hstack([ids_a, ids_b]), 5)
    np.testing.assert_array_equal(ab[1], ref[1])


def test_merge_of_shards_equals_search_of_whole():
    rng = np.random.default_rng(2)
    dist = rng.integers(0, 10, (15, 40)).astype(float)
    ids = np.tile(np.arange(40), (15, 1))
    whole = select_topk(dist, ids, 6)
    parts = [select_topk(dist[:, s::3], ids[:, s::3], 6) for s in range(3)]
    d, i = parts[0][0], parts[0][1]
    for pd_, pi, _ in parts[1:]:
        d, i = merge_topk(d, i, pd_, pi, 6)
    np.testing.assert_array_equal(i, whole[1])
    np.testing.assert_array_equal(d, whole[0])


@pytest.mark.parametrize("k", [1, 3, 8, 20])
def test_smallest_k_columns_breaks_ties_by_lower_column(k):
    rng = np.random.default_rng(k)
    dist = rng.integers(0, 3, size=(25, 20)).astype(np.float32)
    cols = smallest_k_columns(dist, k)
    assert cols.shape == (25, min(k, 20))
    ref_d, ref_i = _reference(dist, np.tile(np.arange(20), (25, 1)), k)
    np.testing.assert_array_equal(np.sort(cols, axis=1), np.sort(ref_i, axis=1))


def test_pad_ragged_pads_with_infinite_distance_and_pad_id():
    dist, ids, lengths = pad_ragged(
        [np.array([1.0, 2.0]), np.array([0.5])], [np.array([4, 5]), np.array([9])]
    )
    np.testing.assert_array_equal(lengths, [2, 1])
    assert dist[1, 1] == np.inf and ids[1, 1] == PAD_ID
    out_d, out_i, _ = select_topk(dist, ids, 2)
    np.testing.assert_array_equal(out_i[1], [9, PAD_ID])


@pytest.mark.parametrize("n_cols,k", [(2000, 1), (4099, 10), (6000, 40)])
@pytest.mark.parametrize("n_values", [3, 1000, None])
def test_smallest_k_columns_on_wide_rows_matches_reference(n_cols, k, n_values):
    # Wide rows take the grouped pre-selection; few distinct values force ties at the
    # boundary, and n_cols = 4099 leaves tail columns outside the groups.
    rng = np.random.default_rng(n_cols + k)
    if n_values is None:
        dist = rng.random((12, n_cols))
    else:
        dist = rng.integers(0, n_values, size=(12, n_cols)).astype(np.float32)
    cols = smallest_k_columns(dist, k)
    _, ref_i = _reference(dist, np.tile(np.arange(n_cols), (12, 1)), k)
    np.testing.assert_array_equal(cols, np.sort(ref_i, axis=1))
