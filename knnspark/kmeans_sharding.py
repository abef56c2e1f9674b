"""``partitioning="kmeans"``: fit balanced centroids on a sample, assign every row in Spark.

One Spark job collects a bounded sample of the prepared training rows (imputed, scaled and
whitened: the space the index searches) to the driver, where
:func:`knnspark.kernels.kmeans.fit_balanced_kmeans` fits the centroids and offsets.  Every
row then gets its shard in a ``mapInArrow`` pass (:func:`knnspark.kernels.kmeans.assign_shards`),
part of the build's plan: no extra job.  The shard radii are measured later, where the
rows are built (:func:`with_radii`), or where they stay in Spark (:func:`row_distances`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from threadpoolctl import threadpool_limits

from knnspark.arrow_columns import LIST_F64, list_matrix
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
    "RADII_FIELDS",
    "RADIUS",
    "SUB_RADII",
    "Radii",
    "ShardRouting",
    "built_radii",
    "check_kmeans_rows",
    "check_partitioning",
    "fold_radii",
    "kmeans_shards",
    "one_blas_thread",
    "radii_maxima",
    "routing_from_json",
    "routing_to_json",
    "row_distances",
    "search_router",
    "with_radii",
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

    One job, with no shuffle: the sample, drawn with ``seed`` (the same input partitioned
    the same way gives the same centroids and shard sizes).  Rows go to shards by content,
    so a repeated id would not meet itself in one shard, where the build finds repeats under
    hash partitioning: with an ``id_col`` the training checks job looks for them instead
    (:func:`knnspark.training_checks.collect_stats`).
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
        sampled = rows.select("id", picked.alias("features"))
        table = sampled.filter(F.col("features").isNotNull()).toArrow()
        # Partitions come back in any order: sort, so the trimmed sample is always the same.
        table = table.sort_by("id")
    sample, _ = list_matrix(table.column("features"), n_features, np.float64)
    sample = sample[:target]
    with one_blas_thread():
        centroids, offsets = fit_balanced_kmeans(sample, num_shards, seed)
        sub_centroids, sub_shards = fit_sub_centroids(sample, centroids, offsets, seed)
    routing = ShardRouting(centroids, sub_centroids, sub_shards)
    assign = assign_fn(centroids, offsets, n_features)
    return rows.select("id", "features", "label").mapInArrow(assign, ASSIGNED_SCHEMA), routing


def one_blas_thread() -> AbstractContextManager[object]:
    """Numpy's BLAS on one thread for the driver's k-means fit.

    The fit's matrix products are small (the sample times a few centroids): more BLAS
    threads gain nothing there, and between the products they spin on cores the Spark
    tasks need (the driver fit alone took 0.68 CPU s with OpenBLAS's 2 threads, 0.34 s with
    one, 10,000 x 64 rows, 16 shards, load 18).  Spark already gives its Python workers one
    thread (``OMP_NUM_THREADS``); the driver is not one of them.  One thread also makes the
    centroids independent of the driver's core count.
    """
    return threadpool_limits(limits=1, user_api="blas")


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


# ------------------------------------------------------------------- the radii, measured

#: Columns of a shard's radius and its balls' radii: a built shard's (:func:`with_radii`);
#: per row, its distances to its centroid and to its ball (:func:`row_distances`).
RADIUS = "radius"
SUB_RADII = "sub_radii"
#: The columns :func:`with_radii` appends to a built shard's row.
RADII_FIELDS = (
    T.StructField(RADIUS, T.DoubleType(), False),
    T.StructField(SUB_RADII, T.ArrayType(T.DoubleType(), False), False),
)
#: Each shard's radius and its balls' radii (in the order of :meth:`ShardRouting.subs_of`).
Radii = tuple[dict[int, float], dict[int, list[float]]]
_DISTANCE_SCHEMA = T.StructType(
    [
        T.StructField("shard", T.IntegerType(), False),
        T.StructField("sub", T.IntegerType(), False),
        T.StructField("id", T.LongType(), True),
        T.StructField(RADIUS, T.DoubleType(), False),
        T.StructField(SUB_RADII, T.DoubleType(), False),
    ]
)


def with_radii(routing: ShardRouting, table: pa.Table, built: pa.Table) -> pa.Table:
    """One built shard's row (``built``, of its rows ``table``) with its radii appended."""
    shard = int(table.column("shard")[0].as_py())
    features = np.frombuffer(built.column("features")[0].as_buffer(), dtype=np.float32)
    radius, balls = routing.measure(shard, features.reshape(table.num_rows, -1))
    built = built.append_column(RADIUS, pa.array([radius], type=pa.float64()))
    return built.append_column(SUB_RADII, pa.array([balls], LIST_F64))


def built_radii(built: list) -> Radii:
    """The radii of built shards' rows (:func:`with_radii`; dicts or Rows)."""
    return (
        {int(r["shard"]): float(r[RADIUS]) for r in built},
        {int(r["shard"]): list(r[SUB_RADII]) for r in built},
    )


def row_distances(rows: DataFrame, routing: ShardRouting, n_features: int) -> DataFrame:
    """Per training row (``shard, id, features``): its ball, distances to centroid and ball.

    Grouped by ``shard, sub`` with :func:`radii_maxima` and folded by :func:`fold_radii`,
    they give the radii of shards that stay in Spark (distributed storage).
    """

    def measure(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            shard = batch.column("shard").to_numpy(zero_copy_only=False)
            features, _ = list_matrix(batch.column("features"), n_features, np.float32)
            to_centroid, ball, to_ball = routing.row_distances(shard, features)
            yield pa.RecordBatch.from_arrays(
                [batch.column("shard"), pa.array(ball), batch.column("id")]
                + [pa.array(to_centroid), pa.array(to_ball)],
                names=["shard", "sub", "id", RADIUS, SUB_RADII],
            )

    return rows.select("shard", "id", "features").mapInArrow(measure, _DISTANCE_SCHEMA)


def radii_maxima() -> list[Column]:
    """Aggregates of :func:`row_distances`'s rows: the largest of each distance."""
    return [F.max(RADIUS).alias(RADIUS), F.max(SUB_RADII).alias(SUB_RADII)]


def fold_radii(routing: ShardRouting, maxima: list) -> Radii:
    """Per-(shard, ball) maxima (:func:`radii_maxima`) -> each shard's and its balls' radii."""
    radius: dict[int, float] = {}
    balls: dict[int, list[float]] = {}
    for r in maxima:
        shard = int(r["shard"])
        radius[shard] = max(radius.get(shard, -math.inf), float(r[RADIUS]))
        subs = routing.subs_of(shard).tolist()
        mine = balls.setdefault(shard, [-math.inf] * len(subs))
        mine[subs.index(int(r["sub"]))] = float(r[SUB_RADII])
    return radius, balls


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
