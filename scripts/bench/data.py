"""Benchmark inputs: seeded clustered, MNIST-like and embedding-like data, the shipped digits,
and their cached DataFrames."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Data:
    """Clustered training rows and queries (float32), class labels from the clusters."""

    train: np.ndarray
    train_labels: np.ndarray
    queries: np.ndarray
    query_labels: np.ndarray

    def with_train_prefix(self, n: int) -> Data:
        """The first ``n`` training rows, the same queries."""
        return Data(self.train[:n], self.train_labels[:n], self.queries, self.query_labels)

    def with_query_prefix(self, n: int) -> Data:
        """All training rows, the first ``n`` queries."""
        return Data(self.train, self.train_labels, self.queries[:n], self.query_labels[:n])


def clustered_data(
    n_train: int, n_queries: int, n_features: int, n_clusters: int, n_classes: int, seed: int
) -> Data:
    """Gaussian clusters: centres ~ N(0, 10^2) per coordinate, unit spread within a cluster.

    Centres lie about ``10 * sqrt(2 * n_features)`` apart (113 in 64 dimensions), a cluster's
    radius is about ``sqrt(n_features)`` (8); each cluster gets one of ``n_classes`` classes.
    Smaller training sets are prefixes of the largest (the rows are drawn independently).
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 10.0, (n_clusters, n_features))
    cluster_class = rng.integers(0, n_classes, n_clusters).astype(np.float64)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        members = rng.integers(0, n_clusters, n)
        x = (centres[members] + rng.normal(0.0, 1.0, (n, n_features))).astype(np.float32)
        return x, cluster_class[members]

    train, train_labels = draw(n_train)
    queries, query_labels = draw(n_queries)
    return Data(train, train_labels, queries, query_labels)


def digits_data() -> Data:
    """The digits sample shipped in ``data/digits`` (1,437 train, 360 test rows)."""

    def load(name: str) -> tuple[np.ndarray, np.ndarray]:
        table = pq.read_table(REPO_ROOT / "data" / "digits" / name).sort_by("id")
        flat = table.column("features").combine_chunks().flatten().to_numpy()
        x = flat.astype(np.float32).reshape(table.num_rows, -1)
        return x, table.column("label").to_numpy().astype(np.float64)

    train, train_labels = load("train.parquet")
    queries, query_labels = load("test.parquet")
    return Data(train, train_labels, queries, query_labels)


def list_column(x: np.ndarray) -> pa.Array:
    """Rows of a float32 matrix as an Arrow ``list<float>`` column (no Python loop)."""
    offsets = pa.array(np.arange(0, x.size + 1, x.shape[1], dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(x.reshape(-1), type=pa.float32()))


def rows_table(x: np.ndarray, labels: np.ndarray, id_name: str) -> pa.Table:
    """Rows numbered 0..n-1 in ``id_name``, with ``features`` and ``label``."""
    return pa.table(
        {
            id_name: pa.array(np.arange(x.shape[0], dtype=np.int64)),
            "features": list_column(x),
            "label": pa.array(labels, type=pa.float64()),
        }
    )


class Frames:
    """Writes numpy data to Parquet once and serves cached, materialized DataFrames."""

    def __init__(self, spark: SparkSession, partitions: int) -> None:
        self.spark = spark
        self.partitions = partitions
        self.dir = Path(tempfile.mkdtemp(prefix="knnspark-bench-"))

    def frame(self, name: str, table: pa.Table) -> DataFrame:
        path = self.dir / f"{name}.parquet"
        pq.write_table(table, path)
        df = self.spark.read.parquet(str(path)).repartition(self.partitions).cache()
        df.count()
        return df

    def rows(self, name: str, x: np.ndarray, labels: np.ndarray, id_name: str) -> DataFrame:
        """:meth:`frame` of :func:`rows_table`."""
        return self.frame(name, rows_table(x, labels, id_name))

    def release(self, df: DataFrame) -> None:
        df.unpersist(blocking=True)

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def mnist_like_data(n_train: int, n_queries: int, seed: int, n_classes: int = 10) -> Data:
    """784-d images like MNIST's (28 x 28, integer pixels 0..255, about 80% zeros).

    Each class has a few prototypes of blurred random strokes; a row is a prototype shifted
    by up to 2 pixels, brightened or dimmed, with noise on its ink, rounded and clipped. No
    download: the same scale and sparsity as the real images, with class structure.
    """
    rng = np.random.default_rng(seed)
    side, per_class = 28, 6
    grid = np.stack(np.meshgrid(np.arange(side), np.arange(side), indexing="ij"), -1)
    protos = np.zeros((n_classes * per_class, side, side))
    for p in protos:
        for _ in range(rng.integers(2, 5)):  # strokes: blobs along a segment
            a, b = rng.uniform(6, 22, 2), rng.uniform(6, 22, 2)
            for t in np.linspace(0.0, 1.0, 12):
                centre = a + t * (b - a)
                p += np.exp(-((grid - centre) ** 2).sum(-1) / (2 * 1.3**2))
    protos = 255.0 * np.minimum(protos / protos.max(axis=(1, 2), keepdims=True) * 1.6, 1.0)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        which = rng.integers(0, len(protos), n)
        shifts = rng.integers(-2, 3, (n, 2))
        x = np.empty((n, side, side))
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                rows = np.flatnonzero((shifts[:, 0] == dy) & (shifts[:, 1] == dx))
                x[rows] = np.roll(protos[which[rows]], (dy, dx), axis=(1, 2))
        x *= rng.uniform(0.7, 1.2, (n, 1, 1))
        x += (x > 10) * rng.normal(0.0, 25.0, x.shape)
        x[x < 12] = 0.0
        x = np.clip(np.rint(x), 0, 255).reshape(n, side * side).astype(np.float32)
        return x, (which // per_class).astype(np.float64)

    train, train_labels = draw(n_train)
    queries, query_labels = draw(n_queries)
    return Data(train, train_labels, queries, query_labels)


def embedding_like_data(
    n_train: int, n_queries: int, seed: int, n_features: int = 384, n_topics: int = 200
) -> Data:
    """Unit-norm 384-d vectors like sentence embeddings: a Gaussian mixture on the sphere.

    Topic centres are random directions; a row is its centre plus isotropic noise of about
    the centre's norm, normalized (cosine to its centre about 0.7). Labels: topic mod 10.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 1.0, (n_topics, n_features))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        topic = rng.integers(0, n_topics, n)
        x = centres[topic] + rng.normal(0.0, 1.0 / np.sqrt(n_features), (n, n_features))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x.astype(np.float32), (topic % 10).astype(np.float64)

    train, train_labels = draw(n_train)
    queries, query_labels = draw(n_queries)
    return Data(train, train_labels, queries, query_labels)


def bench_data(args: object, n_train: int, n_queries: int) -> Data:
    """The data set ``--data`` names, at the largest size (smaller sizes are prefixes)."""
    if args.data == "mnist":
        return mnist_like_data(n_train, n_queries, args.seed)
    if args.data == "embedding":
        return embedding_like_data(n_train, n_queries, args.seed, args.n_features)
    return clustered_data(
        n_train, n_queries, args.n_features, args.n_clusters, args.n_classes, args.seed
    )
