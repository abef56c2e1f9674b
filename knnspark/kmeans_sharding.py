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
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from knnspark.arrow_columns import list_matrix
from knnspark.errors import InvalidInputError
from knnspark.kernels.distances import get_metric, pair_distances
from knnspark.kernels.kmeans import (
    assign_shards,
    fit_balanced_kmeans,
    fit_sub_centroids,
    kmeans_sample_size,
    sub_radii,
)
from knnspark.kernels.routing import Router, shard_radius

__all__ = [
    "ASSIGNED_SCHEMA",
    "ShardRouting",
    "check_kmeans_rows",
    "check_partitioning",
    "kmeans_shards",
    "routing_from_json",
    "routing_to_json",
    "search_router",
]

logger = logging.getLogger("knnspark")


@dataclass(frozen=True)
class ShardRouting:
    """What ``fit`` learned from the sample: centroids and finer balls, no radii yet.

    The build measures the radii where the rows are (:meth:`measure`), and the driver turns
    them into the model's :class:`Router` (:meth:`router`).
    """

    centroids: np.ndarray
    sub_centroids: np.ndarray
    sub_shards: np.ndarray
    metric: str = "euclidean"
    p: float = 2.0

    def subs_of(self, shard: int) -> np.ndarray:
        return np.flatnonzero(self.sub_shards == shard)

    def measure(self, shard: int, rows: np.ndarray) -> tuple[float, list[float]]:
        """The radius of one shard's rows, and of each of its balls (``-inf``: no row)."""
        radius = shard_radius(rows, self.centroids[shard], self.metric, self.p)
        subs = sub_radii(rows, self.sub_centroids[self.subs_of(shard)], self.metric, self.p)
        return radius, [float(r) for r in subs]

    def row_distances(
        self, shards: np.ndarray, rows: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row: distance to its shard's centroid, its ball (a sub index), distance to it."""
        to_centroid = np.empty(rows.shape[0])
        ball = np.empty(rows.shape[0], dtype=np.int32)
        to_ball = np.empty(rows.shape[0])
        for shard in np.unique(shards):
            mine = shards == shard
            centroid = self.centroids[shard][None, :]
            to_centroid[mine] = pair_distances(centroid, rows[mine], self.metric, self.p)[0]
            subs = self.subs_of(shard)
            nearest = assign_shards(rows[mine], self.sub_centroids[subs], np.zeros(len(subs)))
            ball[mine] = subs[nearest]
            where = np.flatnonzero(mine)
            for i, sub in enumerate(subs):
                inside = where[nearest == i]
                centre = self.sub_centroids[sub][None, :]
                to_ball[inside] = pair_distances(centre, rows[inside], self.metric, self.p)[0]
        return to_centroid, ball, to_ball

    def router(self, radii: dict[int, float], sub_radii: dict[int, list[float]]) -> Router:
        """The model's router from the measured radii (shards and balls without rows: -inf)."""
        radius = np.full(self.centroids.shape[0], -np.inf)
        balls = np.full(self.sub_centroids.shape[0], -np.inf)
        for shard, value in radii.items():
            radius[shard] = value
            balls[self.subs_of(shard)] = sub_radii[shard]
        return Router(
            centroids=self.centroids,
            radii=radius,
            metric=self.metric,
            p=float(self.p),
            sub_centroids=self.sub_centroids,
            sub_radii=balls,
            sub_shards=self.sub_shards,
        )


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
    metric's centroid distances but cannot bound them: its radii become the largest float
    and its finer balls are dropped (every shard visited unless ``nprobe`` is set).  Metrics
    that are not true metrics visit every shard (``nprobe=None``); both are logged.
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
        # The largest finite radius: no bound excludes a shard, and non-empty stays finite.
        unbounded = np.where(router.nonempty, np.finfo(np.float64).max, -np.inf)
        router = dataclasses.replace(
            router, radii=unbounded, metric=metric, p=float(p), sub_centroids=None,
            sub_radii=None, sub_shards=None,
        )  # fmt: skip
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
    rows: DataFrame,
    n_rows: int,
    n_features: int,
    num_shards: int,
    seed: int,
    id_col: str | None = None,
) -> tuple[DataFrame, ShardRouting]:
    """``rows`` (``id, features, label``) with a ``shard`` column first, and the routing.

    One job: the sample, drawn with ``seed`` (the same input partitioned the same way gives
    the same centroids and shard sizes).  With an ``id_col`` the same job also looks for
    repeated ids: rows go to shards by content, so a repeated id would not meet itself in one
    shard, where the build finds repeats under hash partitioning.
    """
    check_kmeans_rows(num_shards, n_rows)
    target = kmeans_sample_size(n_rows, num_shards, n_features)
    # 10% over the target, so the sample rarely falls short; trimmed below.
    fraction = min(1.0, 1.1 * target / n_rows)
    if id_col is None:
        sampled = rows.select("features")
        if target < n_rows:
            sampled = sampled.sample(False, fraction, seed)
        table = sampled.toArrow()
    else:
        picked = F.col("features")
        if target < n_rows:
            picked = F.when(F.rand(seed) < fraction, picked)
        grouped = rows.select("id", picked.alias("f"))
        grouped = grouped.groupBy("id").agg(
            F.count(F.lit(1)).alias("n"), F.first("f", ignorenulls=True).alias("features")
        )
        table = grouped.filter((F.col("n") > 1) | F.col("features").isNotNull()).toArrow()
        _check_repeated_ids(table, id_col)
        # Shuffle output comes in any order: sort, so the trimmed sample is always the same.
        table = table.filter(pc.is_valid(table.column("features"))).sort_by("id")
    sample, _ = list_matrix(table.column("features"), n_features, np.float64)
    sample = sample[:target]
    centroids, offsets = fit_balanced_kmeans(sample, num_shards, seed)
    sub_centroids, sub_shards = fit_sub_centroids(sample, centroids, offsets, seed)
    routing = ShardRouting(centroids, sub_centroids, sub_shards)
    assign = assign_fn(centroids, offsets, n_features)
    return rows.select("id", "features", "label").mapInArrow(assign, ASSIGNED_SCHEMA), routing


def _check_repeated_ids(table: pa.Table, id_col: str) -> None:
    counts = table.column("n").to_numpy()
    if np.any(counts > 1):
        first = int(np.argmax(counts > 1))
        raise InvalidInputError(
            f"Column '{id_col}' (param idCol) must hold unique ids; id "
            f"{table.column('id')[first].as_py()} appears {int(counts[first])} times."
        )


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
        "sub_centroids": None if router.sub_centroids is None else router.sub_centroids.tolist(),
        "sub_radii": (
            None
            if router.sub_radii is None
            else [float(r) if np.isfinite(r) else None for r in router.sub_radii]
        ),
        "sub_shards": None if router.sub_shards is None else router.sub_shards.tolist(),
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
    subs = {}
    if value.get("sub_centroids") is not None:
        subs["sub_centroids"] = np.asarray(value["sub_centroids"], dtype=np.float64)
        subs["sub_radii"] = np.array(
            [-np.inf if r is None else float(r) for r in value["sub_radii"]]
        )
        subs["sub_shards"] = np.asarray(value["sub_shards"], dtype=np.int32)
        n_sub = subs["sub_centroids"].shape[0]
        if subs["sub_centroids"].shape != (n_sub, n_features) or {
            subs["sub_radii"].shape[0],
            subs["sub_shards"].shape[0],
        } != {n_sub}:
            raise ValueError("routing sub-centroids, sub-radii and sub-shards do not match")
        if not filled <= set(subs["sub_shards"].tolist()):
            raise ValueError("a non-empty shard has no sub-centroid")
    return Router(centroids=centroids, radii=radii, metric=metric, p=p, **subs)
