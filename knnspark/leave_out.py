"""Leave a query row out of its own neighbor list, matched by id (Spark column expressions).

Scoring the training rows themselves (outlier scores, Wilson's editing) searches ``k + 1``
neighbors and drops the one whose id is the query's own.  When the id is not among them (a
new row, a null id, or an approximate search that missed the row) the ``(k + 1)``-th is
dropped instead, which leaves the plain ``k`` nearest: scikit-learn's rule for
``kneighbors()`` called without queries.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from knnspark.errors import InvalidInputError
from knnspark.schema import check_id_column

__all__ = ["check_exclude_self", "exclude_self", "leave_query_out"]


def leave_query_out(ids: Column, values: Column, query_id: Column, k: int) -> Column:
    """The ``k`` entries of ``values`` left when the query's own id is dropped.

    Parameters
    ----------
    ids : Column
        ``array<long>`` of ``k + 1`` neighbor ids, nearest first.
    values : Column
        An array aligned with ``ids`` (distances, labels).
    query_id : Column
        The query row's id (long).
    k : int
        Entries to keep.
    """
    position = F.array_position(ids, query_id)  # 1-based; 0 when absent
    dropped = F.when(position > 0, position - 1).otherwise(F.lit(k))
    return F.filter(values, lambda _, i: i != dropped)


def check_exclude_self(
    schema: StructType, id_col: str | None, n_rows: int, k: int, where: str = "the queries"
) -> None:
    """Raise before any job when ``excludeSelf=True`` cannot match queries to training ids.

    Parameters
    ----------
    schema : StructType
        The queries' schema.
    id_col : str or None
        The param ``idCol``: the training rows' ids, and the queries' column matched to them.
    n_rows : int
        Training rows: ``k + 1`` are searched, so ``k`` must be below it.
    k : int
        Neighbors wanted per query.
    where : str
        How messages name the queries.
    """
    if id_col is None:
        raise InvalidInputError(
            "excludeSelf=True needs param idCol: the training rows' ids, matched with the "
            "same column of the queries; set idCol (a column of unique integer ids on both "
            "sides) and fit again."
        )
    if id_col not in schema.fieldNames():
        available = ", ".join(schema.fieldNames()) or "(none)"
        raise InvalidInputError(
            f"excludeSelf=True needs column '{id_col}' (param idCol) in {where}, to match "
            f"each query with its training id; it does not exist. Available columns: "
            f"{available}."
        )
    check_id_column(schema, id_col)
    if k >= n_rows:
        raise InvalidInputError(
            f"Param k must be < the number of training rows ({n_rows}) with excludeSelf=True, "
            f"which searches k + 1 rows and leaves the query's own out; got {k}."
        )


def exclude_self(df: DataFrame, ids_col: str, dist_col: str, query_id: Column, k: int) -> DataFrame:
    """``df`` with its ``k + 1`` neighbor ids and distances cut to ``k``, the own id left out."""
    ids = F.col(ids_col)
    # The distances first: they are cut by the position of the id in the uncut ids.
    cut = df.withColumn(dist_col, leave_query_out(ids, F.col(dist_col), query_id, k))
    return cut.withColumn(ids_col, leave_query_out(ids, ids, query_id, k))
