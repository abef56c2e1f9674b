"""The one aggregation job that checks the training data, and its rules.

One job counts the whole training set per partition (rows, invalid rows and why, vector
lengths, classes, null ids and groups) so bad data fails with a clear message on the
driver, and yields what numbering the rows needs (:mod:`knnspark.training`).
Cross-validation runs that job once for every fold's training rows
(:func:`fold_training_stats`), and its fits take their counts from it
(:func:`known_training_stats`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from knnspark.errors import InvalidInputError
from knnspark.groups import GROUP_KEY, key_expr
from knnspark.kernels.distances import get_metric
from knnspark.schema import (
    check_id_column,
    check_label_column,
    column,
    feature_array_expr,
    invalid_features_expr,
    no_present_features_expr,
    overflow_features_expr,
)

__all__ = [
    "TrainingChecks",
    "check_stats",
    "collect_stats",
    "fold_training_stats",
    "known_stats",
    "known_training_stats",
    "summed_stats",
    "training_checks",
]

# Per-partition counts of the training checks, summed on the driver.
_SUMMED_COUNTS = (
    "n", "n_null_empty", "n_nonfinite", "n_overflow", "n_no_present", "n_bad_label", "n_invalid",
    "n_null_id", "n_null_group",
)  # fmt: skip


@dataclass
class TrainingChecks:
    """The training rows with the columns the checks read, and the per-row checks."""

    base: DataFrame  # raw_features, pid, mono, features, id, label (and any extra columns)
    bad_features: Column
    bad_label: Column
    invalid: Column
    overflow: Column
    no_present: Column
    keeps_nan: bool
    bad_group: Column  # groupCol: a null group (else always false)


def training_checks(
    df: DataFrame,
    features_col: str,
    label_col: str | None,
    id_col: str | None,
    classifier: bool,
    impute_strategy: str | None,
    metric: str,
    extra: tuple[Column, ...] = (),
    group_col: str | None = None,
) -> TrainingChecks:
    """Check the schema; the rows as the checks and the numbering read them.

    ``extra`` are more columns of the rows (the fold of tuning); with ``group_col`` the rows
    also carry the group's key, ``GROUP_KEY``, and a null group makes a row invalid.
    """
    schema = df.schema
    feature_expr = feature_array_expr(schema, features_col)
    if label_col is not None:
        check_label_column(schema, label_col, classifier)
    if id_col is not None:
        check_id_column(schema, id_col)

    id_expr = column(id_col).cast("long") if id_col else F.lit(0).cast("long")
    label_expr = column(label_col) if label_col else F.lit(None)
    # The raw column too: a finite double beyond float32's range is told apart from NaN or
    # infinity by reading it, only on rows already found invalid.
    base = df.select(
        column(features_col).alias("raw_features"),
        F.spark_partition_id().alias("pid"),
        F.monotonically_increasing_id().alias("mono"),
        feature_expr.alias("features"),
        id_expr.alias("id"),
        label_expr.cast("double").alias("label"),
        *extra,
        *([key_expr(group_col).alias(GROUP_KEY)] if group_col is not None else []),
    )
    keeps_nan = get_metric(metric).allows_nan and impute_strategy is None
    bad_features = invalid_features_expr(
        F.col("features"), allow_nan=impute_strategy is not None or keeps_nan
    )
    no_present = no_present_features_expr(F.col("features")) if keeps_nan else F.lit(False)
    bad_features = bad_features | no_present
    label = F.col("label")
    bad_label = (
        label.isNull() | F.isnan(label) | (F.abs(label) == float("inf"))
        if label_col
        else F.lit(False)
    )
    bad_group = F.col(GROUP_KEY).isNull() if group_col is not None else F.lit(False)
    invalid = bad_features | bad_label | bad_group
    overflow = overflow_features_expr(schema[features_col].dataType, F.col("raw_features"))
    return TrainingChecks(
        base, bad_features, bad_label, invalid, overflow, no_present, keeps_nan, bad_group
    )


def collect_stats(
    checks: TrainingChecks, classifier: bool, by: tuple[str, ...] = (), unique_ids: bool = False
) -> tuple[list, list, list | None]:
    """One job: counts and checks per partition (and, for a classifier, the class counts).

    The per-row checks are evaluated once, into small flag columns; a classifier's job
    aggregates them in two grouping sets, by partition and by class (the class of valid rows
    with an integer label), so the driver gets one row per partition plus one per class.
    ``by`` names more columns of ``checks.base`` to group both by (the folds of tuning).
    With ``unique_ids`` one more grouping set counts the valid rows of each id, and the
    driver gets a row for each id seen more than once (``partitioning="kmeans"``, whose
    build cannot see a repeated id: rows go to shards by content); otherwise that list is
    None.
    """
    bad_features, invalid = checks.bad_features, checks.invalid
    null_or_empty = F.col("features").isNull() | (F.size("features") == 0)
    flags = [
        "pid",
        *by,
        null_or_empty.cast("long").alias("null_empty"),
        (bad_features & ~null_or_empty).cast("long").alias("nonfinite"),
        F.when(bad_features & ~null_or_empty, checks.overflow).cast("long").alias("overflow"),
        checks.no_present.cast("long").alias("no_present"),
        checks.bad_label.cast("long").alias("bad_label"),
        invalid.cast("long").alias("invalid"),
        F.col("id").isNull().cast("long").alias("null_id"),
        checks.bad_group.cast("long").alias("null_group"),
        F.when(~invalid, F.size("features")).alias("length"),
        *([F.when(~invalid, F.col("id")).alias("valid_id")] if unique_ids else []),
    ]
    aggs = [
        F.count(F.lit(1)).alias("n"),
        F.sum("null_empty").alias("n_null_empty"),
        F.sum("nonfinite").alias("n_nonfinite"),
        F.sum("overflow").alias("n_overflow"),
        F.sum("no_present").alias("n_no_present"),
        F.sum("bad_label").alias("n_bad_label"),
        F.sum("invalid").alias("n_invalid"),
        F.sum("null_id").alias("n_null_id"),
        F.sum("null_group").alias("n_null_group"),
        F.min("length").alias("min_len"),
        F.max("length").alias("max_len"),
    ]
    sets, keys = [["pid", *by]], ["pid"]
    if classifier:
        label = F.col("label")
        # label % 1, not floor(label): floor returns a long and overflows past 2**63.
        non_integer = ~invalid & ((label % 1) != 0)
        flags += [
            non_integer.cast("long").alias("nonint"),
            F.when(non_integer, label).alias("nonint_value"),
            F.when(~invalid & ~non_integer, label).alias("class"),
        ]
        aggs += [
            F.sum("nonint").alias("n_nonint"),
            F.first("nonint_value", True).alias("nonint_example"),
        ]
        sets, keys = [*sets, ["class", *by]], [*keys, "class"]
    if unique_ids:
        sets, keys = [*sets, ["valid_id"]], [*keys, "valid_id"]
    rows = checks.base.select(*flags)
    if len(sets) == 1:
        return rows.groupBy("pid", *by).agg(*aggs).collect(), [], None
    # grouping(key) is 0 in the rows of the sets that group by key.
    marks = [F.grouping(key).alias(f"not_{key}") for key in keys]
    groups = rows.groupingSets(sets, *keys, *by).agg(*aggs, *marks)
    if unique_ids:  # of the id set, only the ids seen twice or more come back
        seen_twice = F.col("valid_id").isNotNull() & (F.col("n") > 1)
        groups = groups.filter((F.col("not_valid_id") == 1) | seen_twice)
    groups = groups.collect()
    per_partition = [r for r in groups if r["not_pid"] == 0]
    per_class = []
    if classifier:
        per_class = [r for r in groups if r["not_class"] == 0 and r["class"] is not None]
    repeated = [r for r in groups if r["not_valid_id"] == 0] if unique_ids else None
    return per_partition, per_class, repeated


def summed_stats(
    per_partition: list, per_class: list, classifier: bool, repeated: list | None = None
) -> dict:
    """The training set's counts from :func:`collect_stats`'s rows (summed over groups).

    With ``repeated`` (the ids :func:`collect_stats` found more than once), ``repeated_id``
    holds the smallest such id and its count, or None.
    """
    total = {key: sum(int(r[key] or 0) for r in per_partition) for key in _SUMMED_COUNTS}
    lengths = [r["min_len"] for r in per_partition if r["min_len"] is not None]
    lengths += [r["max_len"] for r in per_partition if r["max_len"] is not None]
    total["min_len"] = min(lengths) if lengths else None
    total["max_len"] = max(lengths) if lengths else None
    partition_rows: dict[int, int] = {}
    for r in per_partition:
        partition_rows[int(r["pid"])] = partition_rows.get(int(r["pid"]), 0) + int(r["n"])
    total["partition_rows"] = partition_rows
    if classifier:
        total["n_nonint"] = sum(int(r["n_nonint"] or 0) for r in per_partition)
        examples = [r["nonint_example"] for r in per_partition if r["nonint_example"] is not None]
        total["nonint_example"] = examples[0] if examples else None
        class_counts: dict[float, int] = {}
        for r in per_class:
            class_counts[float(r["class"])] = class_counts.get(float(r["class"]), 0) + int(r["n"])
        total["class_counts"] = class_counts
    if repeated is not None:
        first = min(repeated, key=lambda r: r["valid_id"], default=None)
        total["repeated_id"] = None if first is None else (first["valid_id"], int(first["n"]))
    return total


# ---------------------------------------------------------------- checks of several subsets

#: Stats a caller computed beforehand for one DataFrame: (the DataFrame, settings, stats).
_KNOWN_STATS: ContextVar[tuple[DataFrame, tuple, dict] | None] = ContextVar(
    "knnspark_known_training_stats", default=None
)


def fold_training_stats(
    df: DataFrame, fold: Column, num_folds: int, settings: tuple
) -> tuple[list[dict], dict]:
    """The checks' counts of ``df`` without each fold, and of all of it, in one job.

    ``fold`` is each row's fold number in ``[0, num_folds)``, or null for a row in no fold
    (it trains every fold). Entry ``i`` of the list is what :func:`prepare_training` would
    count on ``df.filter(fold != i)`` (same partitions) with ``settings``: ``(features_col,
    label_col, id_col, classifier, impute_strategy, metric)`` as it receives them; the dict
    counts every row, with ``fold_rows``, the rows of each fold, added.
    """
    features_col, label_col, id_col, classifier, impute_strategy, metric = settings
    fold_name = "__knn_fold"
    checks = training_checks(
        df, features_col, label_col, id_col, classifier, impute_strategy, metric,
        (fold.alias(fold_name),),
    )  # fmt: skip
    per_partition, per_class, _ = collect_stats(checks, classifier, (fold_name,))
    without = [
        summed_stats(
            [r for r in per_partition if r[fold_name] != i],
            [r for r in per_class if r[fold_name] != i],
            classifier,
        )
        for i in range(num_folds)
    ]
    everything = summed_stats(per_partition, per_class, classifier)
    everything["fold_rows"] = [
        sum(int(r["n"]) for r in per_partition if r[fold_name] == i) for i in range(num_folds)
    ]
    return without, everything


@contextmanager
def known_training_stats(df: DataFrame, settings: tuple, stats: dict) -> Iterator[None]:
    """Within the block, a fit of ``df`` with ``settings`` uses ``stats`` instead of a job.

    For tuning, which counts every fold's training rows in one job
    (:func:`fold_training_stats`); ``df`` must be the very DataFrame passed to ``fit``.
    """
    token = _KNOWN_STATS.set((df, settings, stats))
    try:
        yield
    finally:
        _KNOWN_STATS.reset(token)


def known_stats(df: DataFrame, settings: tuple) -> dict | None:
    known = _KNOWN_STATS.get()
    if known is not None and known[0] is df and known[1] == settings:
        return known[2]
    return None


def check_stats(
    stats: dict,
    features_col: str,
    label_col: str | None,
    id_col: str | None,
    handle_invalid: str,
    k: int,
    metric: str = "euclidean",
    group_col: str | None = None,
) -> int:
    """Raise the first rule the training data breaks; return the number of usable rows."""
    if stats["n"] == 0:
        raise InvalidInputError(f"The training DataFrame is empty; fit needs at least k={k} rows.")
    if id_col is not None and stats["n_null_id"]:
        raise InvalidInputError(
            f"Column '{id_col}' (param idCol) holds {stats['n_null_id']} null ids; every "
            "training row needs a unique id."
        )
    if stats["n_invalid"] and handle_invalid == "error":
        parts = []
        if stats["n_null_empty"]:
            parts.append(f"{stats['n_null_empty']} null or empty feature vectors")
        n_overflow, n_no_present = stats.get("n_overflow", 0), stats.get("n_no_present", 0)
        if stats["n_nonfinite"] - n_overflow - n_no_present:
            what = "infinite" if get_metric(metric).allows_nan else "NaN or infinite"
            parts.append(
                f"{stats['n_nonfinite'] - n_overflow - n_no_present} feature vectors with "
                f"{what} values"
            )
        if n_no_present:
            parts.append(
                f"{n_no_present} feature vectors with no present (non-NaN) coordinate, which "
                f"metric={metric!r} cannot compare with any row"
            )
        if n_overflow:
            parts.append(
                f"{n_overflow} feature vectors with finite values beyond +-3.4e38, which overflow "
                "the float32 storage of features (rescale them before fit)"
            )
        if stats["n_bad_label"]:
            parts.append(
                f"{stats['n_bad_label']} null, NaN or infinite labels in column '{label_col}'"
            )
        if stats.get("n_null_group"):
            parts.append(
                f"{stats['n_null_group']} null group values in column '{group_col}' (param "
                "groupCol)"
            )
        raise InvalidInputError(
            f"Invalid training rows in column '{features_col}' (param featuresCol)"
            + (f" or '{label_col}' (param labelCol)" if label_col else "")
            + f": {'; '.join(parts)}. Set handleInvalid='skip' to drop such rows."
        )
    n_valid = stats["n"] - stats["n_invalid"]
    if n_valid == 0:
        raise InvalidInputError(
            f"No valid training rows: all {stats['n']} rows have null, empty or non-finite "
            f"features in column '{features_col}'" + (" or null labels." if label_col else ".")
        )
    if stats["min_len"] != stats["max_len"]:
        raise InvalidInputError(
            f"Column '{features_col}' (param featuresCol) holds vectors of different lengths "
            f"in the training data: {stats['min_len']} and {stats['max_len']}."
        )
    if stats.get("n_nonint"):
        raise InvalidInputError(
            f"Column '{label_col}' (param labelCol) must hold integer class values for "
            f"KNNClassifier; got {stats['n_nonint']} non-integer labels such as "
            f"{stats['nonint_example']!r}. Use KNNRegressor for continuous targets."
        )
    if k > n_valid:
        raise InvalidInputError(
            f"Param k must be <= the number of training rows ({n_valid}); got {k}."
        )
    n_features = stats["min_len"]
    if get_metric(metric).whitens and n_valid <= n_features:
        raise InvalidInputError(
            f"Param metric={metric!r} needs more training rows than features to invert their "
            f"covariance: column '{features_col}' (param featuresCol) has {n_features} "
            f"features but only {n_valid} valid training rows (at least {n_features + 1})."
        )
    if stats.get("repeated_id") is not None:
        repeated, count = stats["repeated_id"]
        raise InvalidInputError(
            f"Column '{id_col}' (param idCol) must hold unique ids; id {repeated} appears "
            f"{count} times."
        )
    return n_valid
