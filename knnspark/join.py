"""``knn_join``: each row of one DataFrame with its k nearest rows of another.

Spark's own ``DataFrame.nearestByJoin`` (4.2+) evaluates the whole cross product of the two
sides.  ``knn_join`` fits a :class:`~knnspark.NearestNeighbors` index on the right side and
searches the left side with it, so it runs on the models' machinery: the right side's shards
are broadcast when they fit ``maxBroadcastBytes`` and searched by the distributed reduce when
they do not, and the left side streams through in its own partitions.  The neighbor lists are
exploded into one row per (left row, neighbor) and joined with the right side's other columns
by id.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from knnspark.converters import one_of
from knnspark.errors import InvalidInputError
from knnspark.groups import group_category
from knnspark.kernels.distances import get_metric
from knnspark.leave_out import check_exclude_self
from knnspark.neighbors import NearestNeighbors, NearestNeighborsModel
from knnspark.params import DEFAULT_MAX_BROADCAST_BYTES
from knnspark.schema import column, feature_array_expr, require_column

__all__ = [
    "DISTANCE_COL",
    "JOIN_MODES",
    "JOIN_TYPES",
    "RANK_COL",
    "join_options",
    "join_with_model",
    "knn_join",
]

logger = logging.getLogger("knnspark")

#: Values of ``mode``: Spark's ``nearestByJoin`` names.
JOIN_MODES = ("exact", "approx")
#: Values of ``joinType``: Spark's ``nearestByJoin`` names.
JOIN_TYPES = ("inner", "leftouter")
#: The two columns ``knn_join`` adds.
RANK_COL = "rank"
DISTANCE_COL = "distance"
#: The right side's generated ids (no ``idCol``); never part of the output.
_ROW_ID = "__knn_join_id"
_NEIGHBOR_IDS = "__knn_join_nids"
_DISTANCES = "__knn_join_ndist"
_NEIGHBOR = "__knn_join_nb"
_POSITIONAL = ("left", "right", "k")


def knn_join(
    left: DataFrame,
    right: DataFrame,
    k: int,
    *,
    featuresCol: str = "features",
    metric: str = "euclidean",
    mode: str = "exact",
    joinType: str = "inner",
    idCol: str | None = None,
    groupCol: str | None = None,
    excludeSelf: bool = False,
    rightPrefix: str | None = None,
    handleInvalid: str = "error",
    p: float = 2.0,
    numShards: int | None = None,
    maxBroadcastBytes: int = DEFAULT_MAX_BROADCAST_BYTES,
    M: int = 16,
    efConstruction: int = 200,
    ef: int = 64,
    seed: int = 0,
) -> DataFrame:
    """Join each row of ``left`` with its ``k`` nearest rows of ``right``.

    The right side is indexed (as ``NearestNeighbors`` does, eagerly: its check and build
    jobs run here); the search of the left side is lazy, like a transform.

    Parameters
    ----------
    left, right : DataFrame
        Both hold ``featuresCol`` (a Spark ML vector, ``array<float>`` or
        ``array<double>``) of the same length.  ``right`` must give the same rows each
        time it is evaluated (cache one filtered or sampled by ``rand()``).
    k : int
        Neighbors per left row, >= 1 and <= the valid rows of ``right`` (< them with
        ``excludeSelf``).
    featuresCol : str
        The features column, on both sides.
    metric, p : str, float
        The distance, as the estimators' params (every metric of the metric table).
    mode : {"exact", "approx"}
        ``"exact"``: the exact k nearest, as scikit-learn's brute force gives them (ties to
        the smaller right id).  ``"approx"``: per-shard HNSW graphs (``M``,
        ``efConstruction``, ``ef``, ``seed``); a metric HNSW cannot serve falls back to
        exact search, as Spark's ``approx`` contract allows.
    joinType : {"inner", "leftouter"}
        As ``nearestByJoin``: ``"inner"`` drops left rows without neighbors; ``"leftouter"``
        keeps each as one row whose right columns, ``rank`` and ``distance`` are null.
    idCol : str, optional
        A column of unique integer ids of the right rows: the neighbors' ids, and the order
        of distance ties.  None numbers the right rows in DataFrame order, and keeps the
        numbered rows on the executors (``localCheckpoint``: one more pass over ``right``,
        and its rows held for as long as the result is used); set ``idCol`` to avoid both.
    groupCol : str, optional
        A column present on both sides (string, integral, boolean or date, the same kind on
        both): a left row's neighbors come only from right rows with the same value.  A left
        row whose group has no right rows, or is null, has no neighbors (dropped by
        ``"inner"``, kept with nulls by ``"leftouter"``); right rows with a null group are
        invalid rows (see ``handleInvalid``).  ``k`` must not exceed the right rows of any
        group (checked by the first job).  The output keeps the left side's ``groupCol``;
        the right side's, equal by construction, is not repeated.
    excludeSelf : bool
        Leave a left row out of its own neighbors: a right row whose ``idCol`` value equals
        the left row's is not its neighbor (a kNN graph: ``knn_join(df, df, k,
        idCol="id", excludeSelf=True, rightPrefix="neighbor_")``).  Needs ``idCol`` on
        both sides.
    rightPrefix : str, optional
        Prefix of every right column in the output.  None keeps their names, and a name
        present on both sides (but ``featuresCol``, which the right side drops) is an
        error naming it.
    handleInvalid : {"error", "skip"}
        Rows with null, empty, wrong-length or non-finite features: ``"error"`` fails (a
        left side whose vectors differ in length from the right's fails before the search
        job, naming both lengths); ``"skip"`` leaves such right rows out of the candidates
        and gives such left rows no neighbors (dropped by ``"inner"``, kept with nulls by
        ``"leftouter"``).
    numShards, maxBroadcastBytes : int
        As the estimators' params: the right side's shards, and the largest index that is
        broadcast (a larger one is searched by the distributed reduce).

    Returns
    -------
    DataFrame
        Every column of ``left``, every column of ``right`` but ``featuresCol`` (prefixed by
        ``rightPrefix``), ``rank`` (int, 1 = nearest) and ``distance`` (double): one row per
        (left row, neighbor), in no particular row order.

    Examples
    --------
    >>> left = spark.createDataFrame([("a", [0.0, 0.0]), ("b", [4.0, 4.0])], ["q", "features"])
    >>> right = spark.createDataFrame([(7, [0.1, 0.0]), (8, [5.0, 5.0])], ["item", "features"])
    >>> rows = knn_join(left, right, 1).orderBy("q").collect()
    >>> [(r["q"], r["item"], r["rank"]) for r in rows]
    [('a', 7, 1), ('b', 8, 1)]
    """
    options = {name: value for name, value in locals().items() if name not in _POSITIONAL}
    return join_with_model(left, right, k, **options)[0]


def join_with_model(
    left: DataFrame,
    right: DataFrame,
    k: int,
    *,
    featuresCol: str,
    metric: str,
    mode: str,
    joinType: str,
    idCol: str | None,
    groupCol: str | None,
    excludeSelf: bool,
    rightPrefix: str | None,
    handleInvalid: str,
    p: float,
    numShards: int | None,
    maxBroadcastBytes: int,
    M: int,
    efConstruction: int,
    ef: int,
    seed: int,
) -> tuple[DataFrame, NearestNeighborsModel]:
    """:func:`knn_join`, and the model fitted on ``right`` (the join job reads its size).

    Every keyword is required here; :func:`join_options` gives knn_join's defaults.
    """
    one_of("mode", JOIN_MODES)(mode)
    one_of("joinType", JOIN_TYPES)(joinType)
    one_of("handleInvalid", ("error", "skip"))(handleInvalid)
    if rightPrefix is not None and (not isinstance(rightPrefix, str) or not rightPrefix):
        raise TypeError(
            f"Param rightPrefix must be a non-empty string or None; got {rightPrefix!r}"
        )
    require_column(left.schema, featuresCol, "featuresCol")
    require_column(right.schema, featuresCol, "featuresCol")
    feature_array_expr(left.schema, featuresCol)  # a type the estimators read, or TypeError
    if groupCol is not None:
        check_join_groups(left.schema, right.schema, groupCol)
    algorithm = "brute"
    if mode == "approx":
        algorithm = "hnsw" if get_metric(metric).hnsw_space is not None else "brute"
        if algorithm == "brute":
            logger.info(
                "knn_join: metric %r has no HNSW index; approx mode searches exactly", metric
            )
    # The estimator checks every param (and, in its first job, the right side's rows).
    estimator = NearestNeighbors(
        k=k,
        featuresCol=featuresCol,
        idCol=idCol if idCol is not None else _ROW_ID,
        groupCol=groupCol,
        metric=metric,
        p=p,
        algorithm=algorithm,
        numShards=numShards,
        seed=seed,
        handleInvalid=handleInvalid,
        maxBroadcastBytes=maxBroadcastBytes,
        M=M,
        efConstruction=efConstruction,
        ef=ef,
        neighborIdsCol=_NEIGHBOR_IDS,
        distancesCol=_DISTANCES,
    )
    if idCol is not None:
        require_column(right.schema, idCol, "idCol")
    if excludeSelf:
        # The columns now; k against the right rows once the fit has counted them.
        check_exclude_self(left.schema, idCol, k + 1, k, where="the left DataFrame")
    right_columns = [c for c in right.columns if c != groupCol]  # the left side's is kept
    renames = _right_names(left.columns, right_columns, featuresCol, idCol, rightPrefix)
    numbered = right
    if idCol is None:
        # Numbered once and kept: a number from the row's partition and position would
        # change when Spark evaluated the right side again with fewer columns (the fit
        # reads only the features), pairing neighbors with the wrong rows.
        numbered = right.withColumn(_ROW_ID, F.monotonically_increasing_id()).localCheckpoint()
    fitted = [column(estimator.getIdCol()), column(featuresCol)]
    fitted += [column(groupCol)] if groupCol is not None else []
    model = estimator.fit(numbered.select(*fitted))
    if handleInvalid == "error":
        _check_left_lengths(left, featuresCol, model.numFeatures)
    searched = model.kneighbors(left, excludeSelf=excludeSelf)
    joined = _explode_and_join(searched, numbered, model, renames, joinType, left.columns)
    return joined, model


def _right_names(
    left_columns: list[str],
    right_columns: list[str],
    features_col: str,
    id_col: str | None,
    prefix: str | None,
) -> dict[str, str]:
    """Right column -> output name; raise when an output name is taken twice."""
    kept = [c for c in right_columns if c != features_col]
    renames = {c: (prefix or "") + c for c in kept}
    taken = {name: "left" for name in left_columns}
    for name in (RANK_COL, DISTANCE_COL):
        if name in taken:
            raise InvalidInputError(
                f"Column '{name}' of the left DataFrame clashes with the column '{name}' "
                "knn_join adds; rename it."
            )
        taken[name] = "knn_join"
    for original, name in renames.items():
        if name in taken:
            hint = (
                "set rightPrefix (e.g. rightPrefix='right_') to prefix the right columns"
                if prefix is None
                else "choose another rightPrefix or rename it"
            )
            side = "the left DataFrame" if taken[name] == "left" else "knn_join's output"
            raise InvalidInputError(
                f"Column '{original}' of the right DataFrame would be output as '{name}', "
                f"which {side} already has; {hint}."
            )
        taken[name] = "right"
    return renames


def check_join_groups(left: T.StructType, right: T.StructType, group_col: str) -> None:
    """``groupCol`` on both sides, of a type groups accept and of the same kind (no job)."""
    right_kind = group_category(right, group_col, "the right DataFrame")
    left_kind = group_category(left, group_col, "the left DataFrame")
    if left_kind != right_kind:
        raise TypeError(
            f"Column '{group_col}' (param groupCol) holds {left_kind} values in the left "
            f"DataFrame but {right_kind} values in the right one; cast one side to match."
        )


def _check_left_lengths(left: DataFrame, features_col: str, n_features: int) -> None:
    """One job: the left side's vectors have the right side's length, before the search."""
    size = F.size(feature_array_expr(left.schema, features_col))
    wrong = size.isNotNull() & (size > 0) & (size != n_features)
    row = left.agg(
        F.count(F.when(wrong, 1)).alias("wrong"), F.min(F.when(wrong, size)).alias("length")
    ).first()
    if row["wrong"]:
        raise InvalidInputError(
            f"Column '{features_col}' (param featuresCol) holds vectors of length "
            f"{row['length']} in {row['wrong']} left rows, but the right rows' vectors have "
            f"length {n_features}; both sides need the same length (or handleInvalid='skip' "
            "to give such left rows no neighbors)."
        )


def _explode_and_join(
    searched: DataFrame,
    numbered: DataFrame,
    model: NearestNeighborsModel,
    renames: dict[str, str],
    join_type: str,
    left_columns: list[str],
) -> DataFrame:
    """One row per (left row, neighbor), joined with the right columns by id (when it has more)."""
    pairs = F.arrays_zip(F.col(_NEIGHBOR_IDS).alias("id"), F.col(_DISTANCES).alias("distance"))
    explode = F.posexplode_outer if join_type == "leftouter" else F.posexplode
    exploded = searched.select(
        *[column(c) for c in left_columns], explode(pairs).alias("__knn_join_pos", _NEIGHBOR)
    )
    id_col = model.getIdCol()
    rank = (F.col("__knn_join_pos") + 1).cast("int").alias(RANK_COL)
    distance = F.col(f"{_NEIGHBOR}.distance").cast("double").alias(DISTANCE_COL)
    if not set(renames) - {id_col}:
        # The right side holds ids and features only: the neighbor lists carry all of it.
        id_type = numbered.schema[id_col].dataType
        ids = [F.col(f"{_NEIGHBOR}.id").cast(id_type).alias(renames[id_col])] if renames else []
        return exploded.select(*[column(c) for c in left_columns], *ids, rank, distance)
    right_side = numbered.select(
        column(id_col).cast("long").alias("__knn_join_key"),
        *[column(c).alias(name) for c, name in renames.items()],
    )
    how = "left" if join_type == "leftouter" else "inner"
    joined = exploded.join(right_side, F.col(f"{_NEIGHBOR}.id") == F.col("__knn_join_key"), how=how)
    return joined.select(
        *[column(c) for c in left_columns],
        *[column(name) for name in renames.values()],
        rank,
        distance,
    )


def join_options(**overrides: Any) -> dict[str, Any]:
    """:func:`knn_join`'s keyword arguments: its defaults, with ``overrides`` laid over them."""
    defaults = {
        name: param.default
        for name, param in inspect.signature(knn_join).parameters.items()
        if name not in _POSITIONAL
    }
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise TypeError(f"knn_join has no keyword {unknown[0]!r}")
    return {**defaults, **overrides}
