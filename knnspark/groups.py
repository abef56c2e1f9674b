"""``groupCol``: neighbors only from training rows of the query's own group.

The Spark side of :mod:`knnspark.kernels.grouped`.  At fit, a group's key is its value as
text (exact; the column's type is checked first: string, integral, boolean or date), its
home shard ``pmod(xxhash64(key), numShards)``, computed in Spark SQL for training and query
rows alike.  One job after the training checks counts the rows per group: a group larger
than the mean shard (``ceil(n_rows / numShards)`` rows) is spread over
``ceil(n_g / mean)`` consecutive shards from its home, its rows split by a hash of their
id, so one group holding most rows still gives shards of bounded size; the same job finds
the smallest group (``k`` must not exceed it) and, with an ``idCol``, an id repeated across
groups (which group sharding would otherwise put in two shards).  Each shard is built as
one piece per group (:class:`~knnspark.kernels.grouped.GroupedShard`; built, loaded and
saved by :mod:`knnspark.group_pieces`, the task side).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from knnspark.errors import InvalidInputError
from knnspark.group_pieces import GROUP_KEY
from knnspark.kernels.grouped import GroupRouting, spread_of
from knnspark.partition import GROUP_HOME_TMP, GROUP_TMP
from knnspark.schema import column

__all__ = [
    "GROUP_HOME_TMP",
    "GROUP_KEY",
    "GROUP_TMP",
    "check_group_params",
    "group_category",
    "layout_groups",
    "query_group_columns",
    "shard_expr",
]


_CATEGORIES: dict[type, str] = {
    T.StringType: "string",
    T.VarcharType: "string",
    T.CharType: "string",
    T.ByteType: "integral",
    T.ShortType: "integral",
    T.IntegerType: "integral",
    T.LongType: "integral",
    T.BooleanType: "boolean",
    T.DateType: "date",
}


def group_category(schema: T.StructType, group_col: str, where: str) -> str:
    """The kind of the group column's type, or a clear error naming column and type."""
    if group_col not in schema.fieldNames():
        available = ", ".join(schema.fieldNames()) or "(none)"
        raise InvalidInputError(
            f"Column '{group_col}' (param groupCol) does not exist in {where}. Available "
            f"columns: {available}."
        )
    data_type = schema[group_col].dataType
    category = _CATEGORIES.get(type(data_type))
    if category is None:
        raise TypeError(
            f"Column '{group_col}' (param groupCol) must be a string, integral, boolean or "
            f"date column; got {data_type.simpleString()} in {where}."
        )
    return category


def check_group_params(
    group_col: str | None,
    features_col: str,
    label_col: str | None,
    id_col: str | None,
    partitioning: str,
) -> None:
    """Param rules of ``groupCol``, before any job."""
    if group_col is None:
        return
    for name, value in (("featuresCol", features_col), ("labelCol", label_col), ("idCol", id_col)):
        if group_col == value:
            raise InvalidInputError(
                f"Param groupCol must name a column of its own; got '{group_col}', which is "
                f"also param {name}."
            )
    if partitioning != "hash":
        raise InvalidInputError(
            f"Param groupCol cannot be combined with partitioning={partitioning!r} yet: groups "
            "are the shard key; use partitioning='hash' (the default)."
        )


def key_expr(group_col: str) -> Column:
    """A group's exact key: its value as text (null for a null group)."""
    return column(group_col).cast("string")


def home_expr(key: Column, num_shards: int) -> Column:
    """A group's home shard, ``pmod(xxhash64(key), numShards)``, for training and queries."""
    return F.pmod(F.xxhash64(key), F.lit(num_shards)).cast("int")


def layout_groups(
    valid: DataFrame,
    *,
    n_rows: int,
    num_shards: int,
    k: int,
    group_col: str,
    id_col: str | None,
    category: str,
) -> GroupRouting:
    """One job: the groups larger than the mean shard, the smallest group, a repeated id.

    ``valid`` holds the valid training rows with ``group`` (the key) and ``id`` columns.
    Raises when ``k`` exceeds the smallest group's rows, or (with ``id_col``) when an id
    appears twice.
    """
    mean = -(-n_rows // num_shards)
    sets = [[GROUP_KEY], ["id"]] if id_col is not None else [[GROUP_KEY]]
    counted = valid.select(GROUP_KEY, "id").groupingSets(sets, GROUP_KEY, "id")
    counted = counted.agg(F.count(F.lit(1)).alias("n"), F.grouping_id().alias("set"))
    is_group = F.col("set") == 1  # grouping_id: 1 = by group, 2 = by id
    n, key = F.col("n"), F.col(GROUP_KEY)
    repeated = ~is_group & (n > 1)
    row = counted.agg(
        F.min_by(F.when(is_group, F.struct(key.alias("g"), n)), F.when(is_group, n)).alias(
            "smallest"
        ),
        F.collect_list(F.when(is_group & (n > mean), F.struct(key.alias("g"), n))).alias("big"),
        F.max_by(F.when(repeated, F.struct("id", n)), F.when(repeated, n)).alias("repeated"),
    ).first()
    if row["repeated"] is not None:
        raise InvalidInputError(
            f"Column '{id_col}' (param idCol) must hold unique ids; id {row['repeated']['id']} "
            f"appears {row['repeated']['n']} times."
        )
    smallest = row["smallest"]
    if smallest is not None and k > smallest["n"]:
        raise InvalidInputError(
            f"Param k must be <= the rows of every group of column '{group_col}' (param "
            f"groupCol); group {smallest['g']!r} has {smallest['n']} valid training "
            f"rows, k is {k}."
        )
    big = {str(r["g"]): spread_of(int(r["n"]), mean) for r in row["big"]}
    return GroupRouting(num_shards, {g: min(s, num_shards) for g, s in big.items()}, category)


def shard_expr(routing: GroupRouting, key: Column, ids: Column) -> Column:
    """A training row's shard: its group's home, or, for a big group, one of its shards."""
    home = home_expr(key, routing.num_shards)
    if not routing.big:
        return home
    pairs = [x for g, s in sorted(routing.big.items()) for x in (F.lit(g), F.lit(s))]
    spread = F.coalesce(F.element_at(F.create_map(*pairs), key), F.lit(1))
    step = F.pmod(F.xxhash64(ids), spread)
    return F.pmod(home + step, F.lit(routing.num_shards)).cast("int")


def query_group_columns(
    schema: T.StructType, group_col: str, routing: GroupRouting, where: str
) -> dict[str, Column]:
    """The temporary query columns: group key and home shard (checked before any job)."""
    category = group_category(schema, group_col, where)
    if category != routing.category:
        raise TypeError(
            f"Column '{group_col}' (param groupCol) holds {category} values in {where}, but "
            f"the model was fitted on {routing.category} groups; cast it to match."
        )
    key = key_expr(group_col)
    return {GROUP_TMP: key, GROUP_HOME_TMP: home_expr(key, routing.num_shards)}
