"""Arrow list columns <-> contiguous numpy matrices, without a Python loop over rows.

Used by every partition function (search, merge, tuning's scoring): a list column becomes
one matrix, and result matrices become list columns with nulls where a row is invalid.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "LIST_F64",
    "LIST_F64_NULLS",
    "LIST_I64",
    "combined",
    "list_array",
    "list_lengths",
    "list_matrix",
    "padded_matrix",
    "scalar_array",
]

#: Arrow list types of the output columns (elements non-null, or nullable labels).
LIST_I64 = pa.list_(pa.field("element", pa.int64(), nullable=False))
LIST_F64 = pa.list_(pa.field("element", pa.float64(), nullable=False))
LIST_F64_NULLS = pa.list_(pa.field("element", pa.float64(), nullable=True))


def combined(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous Arrow array from an array or a chunked array."""
    if isinstance(array, pa.ChunkedArray):
        return array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    return array


def list_lengths(array: pa.Array) -> np.ndarray:
    """Length of each list; -1 for a null list."""
    lengths = pc.list_value_length(array).fill_null(-1)
    return lengths.to_numpy(zero_copy_only=False).astype(np.int64)


def list_matrix(
    array: pa.Array | pa.ChunkedArray, width: int, dtype: Any = np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a list column that have ``width`` values, as one contiguous matrix.

    Returns
    -------
    matrix : ndarray of shape (n_selected, width)
        Null list elements become NaN.
    selected : ndarray of shape (n_rows,), bool
        Which rows were the right length (a null list never is).
    """
    array = combined(array)
    lengths = list_lengths(array)
    selected = lengths == width
    values = array.flatten().to_numpy(zero_copy_only=False)
    if not selected.all():
        values = values[np.repeat(selected, np.maximum(lengths, 0))]
    matrix = np.ascontiguousarray(values, dtype=dtype).reshape(int(selected.sum()), width)
    return matrix, selected


def padded_matrix(array: pa.Array | pa.ChunkedArray, fill: Any, dtype: Any) -> np.ndarray:
    """A list column of any lengths as a 2-D array padded with ``fill``."""
    array = combined(array)
    lengths = np.maximum(list_lengths(array), 0)
    width = int(lengths.max()) if lengths.size else 0
    out = np.full((len(array), width), fill, dtype=dtype)
    mask = np.arange(width)[None, :] < lengths[:, None]
    out[mask] = array.flatten().to_numpy(zero_copy_only=False)
    return out


def list_array(
    matrix: np.ndarray | None,
    valid: np.ndarray,
    list_type: pa.DataType,
    empty: np.ndarray | None = None,
) -> pa.Array:
    """One list per row from the rows of ``matrix``; null where ``valid`` is False.

    Rows where ``empty`` is True (and ``valid`` False) get an empty list instead of null.
    """
    n_rows = valid.shape[0]
    width = 0 if matrix is None or matrix.ndim < 2 else matrix.shape[1]
    offsets = np.zeros(n_rows + 1, dtype=np.int32)
    np.cumsum(valid.astype(np.int32) * width, out=offsets[1:])
    values = pa.array(
        np.empty(0) if matrix is None else np.ascontiguousarray(matrix).reshape(-1),
        type=list_type.value_type,
    )
    null = ~valid if empty is None else ~(valid | empty)
    return pa.ListArray.from_arrays(pa.array(offsets), values, type=list_type, mask=pa.array(null))


def scalar_array(values: np.ndarray, valid: np.ndarray) -> pa.Array:
    out = np.zeros(valid.shape[0])
    out[valid] = values
    return pa.array(out, type=pa.float64(), mask=~valid)
