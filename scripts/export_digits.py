"""Export scikit-learn's digits dataset to the Parquet files the demo reads.

Run once from the repository root (the files are committed, so users need not)::

    .venv/bin/python scripts/export_digits.py

It writes ``data/digits/train.parquet`` and ``data/digits/test.parquet``, a stratified 80/20
split with a fixed seed, with columns ``id`` (int64, the row's index in ``load_digits()``),
``features`` (list<double> of 64 pixel intensities, 0..16) and ``label`` (int64, the digit).
Only pyarrow writes the files, so exporting needs neither Spark nor Java.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

#: Arrow schema of both files; Spark reads it as id long, features array<double>, label long.
DIGITS_SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("features", pa.list_(pa.float64()), nullable=False),
        pa.field("label", pa.int64(), nullable=False),
    ]
)


def digits_table(ids: np.ndarray, features: np.ndarray, labels: np.ndarray) -> pa.Table:
    """Build the Arrow table of some digits rows.

    Parameters
    ----------
    ids : ndarray of shape (n_rows,)
        Row indices in the original dataset.
    features : ndarray of shape (n_rows, 64)
        Pixel intensities.
    labels : ndarray of shape (n_rows,)
        Digit of each row.

    Returns
    -------
    pyarrow.Table
        A table with :data:`DIGITS_SCHEMA`.
    """
    flat = pa.array(np.ascontiguousarray(features, dtype=np.float64).ravel())
    offsets = pa.array(np.arange(0, len(flat) + 1, features.shape[1], dtype=np.int32))
    return pa.Table.from_arrays(
        [
            pa.array(ids, type=pa.int64()),
            pa.ListArray.from_arrays(offsets, flat),
            pa.array(labels, type=pa.int64()),
        ],
        schema=DIGITS_SCHEMA,
    )


def export_digits(out_dir: Path, test_size: float = 0.2, seed: int = 0) -> dict[str, int]:
    """Split the digits dataset and write it as ``train.parquet`` and ``test.parquet``.

    Parameters
    ----------
    out_dir : Path
        Folder to write into; created if missing.
    test_size : float, default 0.2
        Fraction of the rows in the test file.
    seed : int, default 0
        Seed of the stratified split, so a re-export writes the same rows.

    Returns
    -------
    dict of str to int
        Number of rows written per file name.
    """
    digits = load_digits()
    ids = np.arange(len(digits.target), dtype=np.int64)
    train_ids, test_ids = train_test_split(
        ids, test_size=test_size, random_state=seed, stratify=digits.target
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, split_ids in (("train.parquet", train_ids), ("test.parquet", test_ids)):
        # Sorted ids make the files easy to eyeball and diff against load_digits().
        split_ids = np.sort(split_ids)
        table = digits_table(split_ids, digits.data[split_ids], digits.target[split_ids])
        # zstd shrinks the small-integer pixel values well; Spark reads it natively.
        pq.write_table(table, out_dir / name, compression="zstd")
        counts[name] = table.num_rows
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out-dir", type=Path, default=Path("data/digits"))
    parser.add_argument("--test-size", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name, rows in export_digits(args.out_dir, args.test_size, args.seed).items():
        print(f"wrote {rows} rows to {args.out_dir / name}")


if __name__ == "__main__":
    main()
