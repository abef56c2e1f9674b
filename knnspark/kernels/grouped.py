"""Search within groups: a shard whose rows stay apart by group, and the group routing.

With ``groupCol`` a query's neighbors come only from training rows of its group.  Groups
are the shard key: a group's rows live in its *home* shard (a hash of the group), except a
group larger than the mean shard, which is spread over consecutive shards from its home
(:class:`GroupRouting`).  Inside a shard every group is a piece of its own (one exact block
or one HNSW graph per group, :class:`GroupedShard`), so searching a group touches only its
rows.  Group values arrive as exact keys (the value as text), never as lossy hashes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from knnspark.kernels.shard import SearchOptions, Shard
from knnspark.kernels.topk import PAD_ID, select_topk

__all__ = ["GroupRouting", "GroupedShard", "grouped_search", "piece_number"]


@dataclass(frozen=True)
class GroupRouting:
    """Which shards hold each group, as plain values.

    ``big`` maps the key of each group larger than the mean shard to the number of
    consecutive shards (from its home shard, wrapping around) its rows are spread over;
    every other group lives in its home shard alone.  ``category`` is the kind of the
    group column's type (``string``, ``integral``, ``boolean`` or ``date``): a query's group
    column must be of the same kind, so that equal values have equal keys.
    """

    num_shards: int
    big: dict[str, int] = field(default_factory=dict)
    category: str = "string"

    def plan(self, groups: np.ndarray, homes: np.ndarray) -> np.ndarray:
        """(n_queries, m) shard numbers each query visits; -1 pads.

        ``groups`` holds the queries' keys (None for a null group, which no training row
        has) and ``homes`` their home shards.
        """
        spread = np.array([self.big.get(g, 1) if g is not None else 1 for g in groups], np.int64)
        width = int(spread.max()) if spread.size else 1
        steps = np.arange(width)[None, :]
        shards = (np.asarray(homes, dtype=np.int64)[:, None] + steps) % self.num_shards
        return np.where(steps < spread[:, None], shards, -1)

    def to_json(self) -> dict:
        return {"num_shards": self.num_shards, "big": dict(self.big), "category": self.category}

    @classmethod
    def from_json(cls, data: dict) -> GroupRouting:
        return cls(int(data["num_shards"]), {str(k): int(v) for k, v in data["big"].items()},
                   str(data["category"]))  # fmt: skip


def spread_of(count: int, mean: int) -> int:
    """Shards a group of ``count`` rows is spread over when shards hold ``mean`` rows."""
    return max(1, math.ceil(count / max(1, mean)))


def piece_number(shard_no: int, position: int) -> int:
    """A number unique to one piece of one shard (keys per-worker caches of HNSW graphs)."""
    return (int(shard_no) << 32) | int(position)


@dataclass
class GroupedShard:
    """One shard's rows, one searchable piece (a :class:`Shard`) per group key."""

    number: int
    pieces: dict[str, Shard]

    @property
    def n_rows(self) -> int:
        return sum(p.n_rows for p in self.pieces.values())

    @property
    def size_bytes(self) -> int:
        return sum(p.size_bytes for p in self.pieces.values())

    @property
    def has_labels(self) -> bool:
        return any(p.labels is not None for p in self.pieces.values())

    @property
    def ids(self) -> np.ndarray:
        """Every row's id, piece after piece (in key order)."""
        return np.concatenate([self.pieces[g].ids for g in sorted(self.pieces)] or [[]])

    @property
    def labels(self) -> np.ndarray | None:
        """Every row's label, in the order of :attr:`ids` (None without labels)."""
        if not self.has_labels:
            return None
        return np.concatenate([self.pieces[g].labels for g in sorted(self.pieces)])

    def search_groups(
        self, queries: np.ndarray, groups: np.ndarray, k: int, options: SearchOptions
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each query's k nearest rows of its own group's piece (padded where it has none).

        Returns
        -------
        dist : ndarray of shape (n_queries, k), float64, +inf padding
        ids : ndarray of shape (n_queries, k), int64, :data:`PAD_ID` padding
        labels : ndarray of shape (n_queries, k), float64, NaN padding (and without labels)
        """
        n = queries.shape[0]
        dist = np.full((n, k), np.inf)
        ids = np.full((n, k), PAD_ID, dtype=np.int64)
        labels = np.full((n, k), np.nan)
        by_group: dict[str, list[int]] = {}
        for row, g in enumerate(groups):
            if g is not None and g in self.pieces:
                by_group.setdefault(g, []).append(row)
        for g, rows in by_group.items():
            piece = self.pieces[g]
            d, pos = piece.search(queries[rows], k, options)
            width = d.shape[1]
            dist[rows, :width] = d
            ids[rows, :width] = piece.ids[pos]
            if piece.labels is not None:
                labels[rows, :width] = piece.labels[pos]
        return dist, ids, labels


def grouped_search(
    shards: list[GroupedShard],
    plan: np.ndarray,
    queries: np.ndarray,
    groups: np.ndarray,
    k: int,
    options: SearchOptions,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """Search each query in the shards of its ``plan`` (:meth:`GroupRouting.plan`), merged.

    A shard searches only the queries routed to it, each in its group's piece.  Returns the
    k nearest (dist, ids, labels or None, padded for queries whose group has no training
    rows) and the number of shards each query visited.
    """
    n, width = plan.shape
    position = {s.number: i for i, s in enumerate(shards)}
    dist = np.full((n, width * k), np.inf)
    ids = np.full((n, width * k), PAD_ID, dtype=np.int64)
    labels = np.full((n, width * k), np.nan)
    for shard_no in np.unique(plan[plan >= 0]):
        if int(shard_no) not in position:
            continue  # a shard without rows
        rows, col = np.nonzero(plan == shard_no)
        shard = shards[position[int(shard_no)]]
        d, i, lab = shard.search_groups(queries[rows], groups[rows], k, options)
        cols = col[:, None] * k + np.arange(k)[None, :]
        dist[rows[:, None], cols], ids[rows[:, None], cols] = d, i
        labels[rows[:, None], cols] = lab
    out_dist, out_ids, pos = select_topk(dist, ids, k)
    with_labels = any(s.has_labels for s in shards)
    out_labels = np.take_along_axis(labels, pos, axis=1) if with_labels else None
    visited = (plan >= 0).sum(axis=1).astype(np.int32)
    return out_dist, out_ids, out_labels, visited
