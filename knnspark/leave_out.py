"""Leave a query row out of its own neighbor list, matched by id (Spark column expressions).

Scoring the training rows themselves (outlier scores, Wilson's editing) searches ``k + 1``
neighbors and drops the one whose id is the query's own.  When the id is not among them (a
new row, a null id, or an approximate search that missed the row) the ``(k + 1)``-th is
dropped instead, which leaves the plain ``k`` nearest: scikit-learn's rule for
``kneighbors()`` called without queries.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

__all__ = ["leave_query_out"]


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
