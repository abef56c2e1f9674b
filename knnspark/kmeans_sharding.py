"""``partitioning="kmeans"``: fit balanced centroids on a sample, assign every row in Spark.

One Spark job collects a bounded sample of the prepared training rows (imputed, scaled and
whitened: the space the index searches) to the driver, where
:func:`knnspark.kernels.kmeans.fit_balanced_kmeans` fits the centroids and offsets.  Every
row then gets its shard in a ``mapInArrow`` pass (:func:`knnspark.kernels.kmeans.assign_shards`),
part of the build's plan: no extra job.  The shard radii are measured later, where the
rows are built (:mod:`knnspark.index`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from knnspark.arrow_columns import list_matrix
from knnspark.errors import InvalidInputError
from knnspark.kernels.distances import get_metric
from knnspark.kernels.kmeans import assign_shards, fit_balanced_kmeans, kmeans_sample_size
from knnspark.kernels.routing import Router

__all__ = [
    "ASSIGNED_SCHEMA",
    "check_kmeans_rows",
    "check_partitioning",
    "kmeans_shards",
    "routing_from_json",
    "routing_to_json",
    "search_router",
]

logger = logging.getLogger("knnspark")


def check_partitioning(
    partitioning: str,
    nprobe: int | None,
    num_shards: int,
    metric: str,
    impute_strategy: str | None,
) -> None:
    """The fit-time rules of ``partitioning`` and ``nprobe``, before any Spark job."""
    if nprobe is not None and partitioning != "kmeans":
        raise ValueError(
            f"Param nprobe={nprobe} needs partitioning='kmeans' (shards of nearby rows); got "
            f"partitioning={partitioning!r}. Set partitioning='kmeans' or nprobe=None."
        )
    if nprobe is not None and nprobe > num_shards:
        raise ValueError(f"Param nprobe must be <= numShards ({num_shards}); got {nprobe}.")
    if partitioning == "kmeans" and get_metric(metric).allows_nan and impute_strategy is None:
        raise ValueError(
            f"partitioning='kmeans' cannot place rows with missing (NaN) coordinates, which "
            f"metric={metric!r} keeps; set imputeStrategy='mean' or 'median', or "
            "partitioning='hash'."
        )


def search_router(
    router: Router | None, nprobe: int | None, metric: str, p: float
) -> Router | None:
    """The router a search uses, after checking ``nprobe`` against the fitted index.

    A search with another metric (or ``p``) than the radii were measured with routes by that
    metric's centroid distances but cannot bound them: its radii become +inf (every shard
    visited unless ``nprobe`` is set).  Metrics that are not true metrics visit every shard
    (``nprobe=None``); both are logged.
    """
    if router is None:
        if nprobe is not None:
            raise ValueError(
                f"Param nprobe={nprobe} needs a model fitted with partitioning='kmeans'; this "
                "model was fitted with partitioning='hash'. Set nprobe=None or refit with "
                "partitioning='kmeans'."
            )
        return None
    if nprobe is not None and nprobe > router.num_shards:
        raise ValueError(f"Param nprobe must be <= numShards ({router.num_shards}); got {nprobe}.")
    fitted_metric, fitted_p = router.metric, float(router.p)
    if (metric, float(p)) != (fitted_metric, fitted_p):
        unbounded = np.where(router.nonempty, np.inf, -np.inf)
        router = dataclasses.replace(router, radii=unbounded, metric=metric, p=float(p))
        if nprobe is None:
            logger.info(
                "the shard radii were measured with metric=%r (p=%g); a search with metric=%r "
                "(p=%g) visits every shard",
                fitted_metric, fitted_p, metric, p,
            )  # fmt: skip
    elif nprobe is None and not router.can_prune:
        logger.info(
            "metric=%r is not a true metric: shard lower bounds do not hold, so an exact "
            "search visits every shard (set nprobe to visit fewer)",
            metric,
        )
    return router


#: The prepared training rows with their k-means shard (the layout of ``PreparedTraining.rows``).
ASSIGNED_SCHEMA = T.StructType(
    [
        T.StructField("shard", T.IntegerType(), False),
        T.StructField("id", T.LongType(), True),
        T.StructField("features", T.ArrayType(T.FloatType(), True), True),
        T.StructField("label", T.DoubleType(), True),
    ]
)


def check_kmeans_rows(num_shards: int, n_rows: int) -> None:
    """k-means needs at least one training row per shard (raised before any build)."""
    if num_shards > n_rows:
        raise InvalidInputError(
            f"Param numShards={num_shards} is more than the {n_rows} valid training rows; "
            "partitioning='kmeans' needs at least one row per shard. Set numShards <= "
            f"{n_rows} or partitioning='hash'."
        )


def kmeans_shards(
    rows: DataFrame, n_rows: int, n_features: int, num_shards: int, seed: int
) -> tuple[DataFrame, np.ndarray]:
    """``rows`` (``id, features, label``) with a ``shard`` column first, and the centroids.

    One job: the sample.  The sample is ``DataFrame.sample`` with ``seed``, so the same
    input partitioned the same way gives the same centroids and shard sizes.
    """
    check_kmeans_rows(num_shards, n_rows)
    target = kmeans_sample_size(n_rows, num_shards, n_features)
    sampled = rows.select("features")
    if target < n_rows:
        # 10% over the target, so the sample rarely falls short; trimmed below.
        sampled = sampled.sample(False, min(1.0, 1.1 * target / n_rows), seed)
    table = sampled.toArrow()
    sample, _ = list_matrix(table.column("features"), n_features, np.float64)
    sample = sample[:target]
    centroids, offsets = fit_balanced_kmeans(sample, num_shards, seed)
    assign = assign_fn(centroids, offsets, n_features)
    return rows.select("id", "features", "label").mapInArrow(assign, ASSIGNED_SCHEMA), centroids


def assign_fn(
    centroids: np.ndarray, offsets: np.ndarray, n_features: int
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """mapInArrow function: prepend each row's shard (the balanced k-means rule)."""

    def assign(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            features, _ = list_matrix(batch.column("features"), n_features, np.float32)
            shard = pa.array(assign_shards(features, centroids, offsets), type=pa.int32())
            yield pa.RecordBatch.from_arrays(
                [shard, *batch.columns], names=["shard", *batch.schema.names]
            )

    return assign


def routing_to_json(router: Router | None) -> dict[str, Any] | None:
    """A router as JSON values (saved in a model's metadata); None for hash partitioning."""
    if router is None:
        return None
    return {
        "centroids": router.centroids.tolist(),
        # JSON has no infinity: an empty shard's radius is null.
        "radii": [float(r) if np.isfinite(r) else None for r in router.radii],
        "metric": router.metric,
        "p": float(router.p),
    }


def routing_from_json(
    value: dict[str, Any] | None, n_features: int, shard_sizes: dict[int, int]
) -> Router | None:
    """Take back :func:`routing_to_json`; a ValueError says what does not fit the index."""
    if value is None:
        return None
    centroids = np.asarray(value["centroids"], dtype=np.float64)
    radii = np.array([-np.inf if r is None else float(r) for r in value["radii"]])
    if centroids.ndim != 2 or centroids.shape != (radii.shape[0], n_features):
        raise ValueError(
            f"routing centroids of shape {centroids.shape} do not match {radii.shape[0]} radii "
            f"and {n_features} features"
        )
    filled = {int(s) for s, n in shard_sizes.items() if n > 0}
    if set(np.flatnonzero(np.isfinite(radii)).tolist()) != filled:
        raise ValueError(f"routing radii {value['radii']} do not match the shards {filled}")
    metric, p = str(value["metric"]), float(value["p"])
    return Router(centroids=centroids, radii=radii, metric=metric, p=p)
