"""Validate and number the training data before any index is built.

One aggregation job checks the whole training set (:mod:`knnspark.training_checks`);
then the rows are imputed and scaled, numbered, and each assigned to a shard: by id, by
k-means centroid or by group.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from knnspark.errors import InvalidInputError
from knnspark.groups import GROUP_KEY, group_category, layout_groups, shard_expr
from knnspark.kernels.distances import get_metric
from knnspark.kernels.grouped import GroupRouting
from knnspark.kmeans_sharding import ShardRouting, kmeans_shards
from knnspark.preprocessing import Preprocessing, fit_preprocessing
from knnspark.training_checks import (
    check_stats,
    collect_stats,
    known_stats,
    summed_stats,
    training_checks,
)

__all__ = ["PreparedTraining", "check_unique_ids", "prepare_training"]

# Bits of monotonically_increasing_id() that count rows within a partition.
_ROW_BITS = 33


@dataclass
class PreparedTraining:
    """Valid training rows (columns ``shard, id, features, label``) and their facts."""

    rows: DataFrame
    n_rows: int
    n_features: int
    classes: np.ndarray | None
    class_counts: np.ndarray | None = None
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    #: partitioning="kmeans": the centroids (radii are measured by the build).
    routing: ShardRouting | None = None
    #: groupCol: which shards hold each group (the rows then have a ``group`` column).
    groups: GroupRouting | None = None


def prepare_training(
    df: DataFrame,
    *,
    features_col: str,
    label_col: str | None,
    id_col: str | None,
    classifier: bool,
    num_shards: int,
    k: int,
    handle_invalid: str,
    impute_strategy: str | None = None,
    standardization: str = "none",
    metric: str = "euclidean",
    partitioning: str = "hash",
    seed: int = 0,
    group_col: str | None = None,
) -> PreparedTraining:
    """Check the schema and the data, number the rows and assign each to a shard.

    The features of the returned rows are already imputed and standardized. NaN entries are
    valid when they are imputed, or when ``metric`` skips missing coordinates (its
    ``allows_nan`` in the metric table); then a row with no present coordinate is invalid.
    With ``partitioning="kmeans"`` the rows go to the shard of their balanced k-means
    centroid (:mod:`knnspark.kmeans_sharding`, one more job: the sample); with ``group_col``
    by group (:mod:`knnspark.groups`, one more job: the group counts); otherwise by id.
    """
    category = None
    if group_col is not None:
        category = group_category(df.schema, group_col, "the training DataFrame")
    checks = training_checks(
        df, features_col, label_col, id_col, classifier, impute_strategy, metric,
        group_col=group_col,
    )  # fmt: skip
    base, invalid, keeps_nan = checks.base, checks.invalid, checks.keeps_nan
    settings = (features_col, label_col, id_col, classifier, impute_strategy, metric)
    stats = known_stats(df, settings) if group_col is None else None
    # k-means shards rows by content: the checks job looks for repeated ids (see below).
    unique_ids = partitioning == "kmeans" and id_col is not None
    if stats is None:
        per_partition, per_class, repeated = collect_stats(checks, classifier, (), unique_ids)
        stats = summed_stats(per_partition, per_class, classifier, repeated)
    n_valid = check_stats(
        stats, features_col, label_col, id_col, handle_invalid, k, metric, group_col
    )
    n_features = int(stats["min_len"])
    preprocessing = fit_preprocessing(
        base.filter(~invalid),
        features_col,
        n_features,
        impute_strategy,
        standardization,
        keeps_nan=keeps_nan,
        whiten=get_metric(metric).whitens,
    )

    if id_col is None:
        ids = _generated_ids(stats["partition_rows"])
        shard = F.pmod(ids, F.lit(num_shards))
    else:
        ids = F.col("id")
        shard = F.pmod(F.xxhash64(F.col("id")), F.lit(num_shards))
    features = preprocessing.apply(F.col("features"))
    if keeps_nan:
        # A null entry of an array<double> column is a missing coordinate too.
        nan = F.lit(float("nan")).cast("float")
        features = F.transform(features, lambda x: F.coalesce(x, nan))
    groups = None
    if group_col is not None and category is not None:
        groups = layout_groups(
            base.filter(~invalid),
            n_rows=n_valid,
            num_shards=num_shards,
            k=k,
            group_col=group_col,
            id_col=id_col,
            category=category,
        )
        shard = shard_expr(groups, F.col(GROUP_KEY), ids)
    rows = base.filter(~invalid).select(
        shard.cast("int").alias("shard"),
        ids.alias("id"),
        features.alias("features"),
        F.col("label"),
        *([F.col(GROUP_KEY)] if groups is not None else []),
    )
    routing = None
    if unique_ids and "repeated_id" not in stats:  # stats counted beforehand (tuning)
        check_unique_ids(rows, id_col)
    if partitioning == "kmeans":
        rows, routing = kmeans_shards(
            rows.drop("shard"), n_valid, n_features, num_shards, seed, id_col
        )
    # Unique ids are checked by the build (ids hash to shards, so a repeated id meets itself
    # in one shard); check_unique_ids names the repeated id when a build fails. With groups,
    # the group-count job looks for an id repeated across groups; with k-means, the checks.
    classes = counts = None
    if classifier:
        per_class = sorted(stats["class_counts"].items())
        classes = np.array([c for c, _ in per_class], dtype=np.float64)
        counts = np.array([n for _, n in per_class], dtype=np.int64)
    return PreparedTraining(
        rows, n_valid, n_features, classes, counts, preprocessing, routing, groups
    )


def _generated_ids(partition_rows: dict[int, int]) -> Column:
    """Ids 0..n-1 in the order of the training DataFrame, without a shuffle.

    ``monotonically_increasing_id`` puts the partition index in the upper bits
    and the row's position within its partition in the lower 33 bits; adding
    the number of rows in earlier partitions gives the row's global position.
    """
    n_partitions = max(partition_rows) + 1 if partition_rows else 1
    offsets = np.zeros(n_partitions, dtype=np.int64)
    for pid, count in partition_rows.items():
        if pid + 1 < n_partitions:
            offsets[pid + 1] = count
    offsets = np.cumsum(offsets)
    offset = F.element_at(F.array(*[F.lit(int(o)) for o in offsets]), F.col("pid") + 1)
    position = F.col("mono") - F.shiftleft(F.col("pid").cast("long"), _ROW_BITS)
    return (offset + position).cast("long")


def check_unique_ids(rows: DataFrame, id_col: str) -> None:
    """Raise naming a repeated id of ``rows`` (one job; run only when a build failed)."""
    duplicate = rows.groupBy("id").count().filter(F.col("count") > 1).limit(1).collect()
    if duplicate:
        raise InvalidInputError(
            f"Column '{id_col}' (param idCol) must hold unique ids; id {duplicate[0]['id']} "
            f"appears {duplicate[0]['count']} times."
        )
