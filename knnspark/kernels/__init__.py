"""Pure numpy kernels: the metric table, distances, exact and HNSW shards, top-k merging, votes.

Nothing in this package imports pyspark; it is tested without Spark.
"""

from knnspark.kernels.distances import EXACT_METRICS, METRICS, Metric, get_metric, pair_distances
from knnspark.kernels.exact import ExactShard, exact_search
from knnspark.kernels.kinds import SHARD_KINDS, shard_kind
from knnspark.kernels.predict import (
    WEIGHTINGS,
    class_probabilities,
    neighbor_weights,
    predict_from_probabilities,
    weighted_average,
)
from knnspark.kernels.shard import SearchOptions, Shard, ShardParts
from knnspark.kernels.topk import PAD_ID, merge_topk, pad_ragged, select_topk

__all__ = [
    "EXACT_METRICS",
    "METRICS",
    "PAD_ID",
    "SHARD_KINDS",
    "WEIGHTINGS",
    "ExactShard",
    "Metric",
    "SearchOptions",
    "Shard",
    "ShardParts",
    "class_probabilities",
    "exact_search",
    "get_metric",
    "merge_topk",
    "neighbor_weights",
    "pad_ragged",
    "pair_distances",
    "predict_from_probabilities",
    "select_topk",
    "shard_kind",
    "weighted_average",
]
