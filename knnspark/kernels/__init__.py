"""Pure numpy kernels: distances, exact top-k search, merging, votes.

Nothing in this package imports pyspark; it is tested without Spark.
"""

from knnspark.kernels.distances import EXACT_METRICS, pair_distances
from knnspark.kernels.exact import ExactShard, exact_search
from knnspark.kernels.predict import (
    WEIGHTINGS,
    class_probabilities,
    neighbor_weights,
    predict_from_probabilities,
    weighted_average,
)
from knnspark.kernels.topk import PAD_ID, merge_topk, pad_ragged, select_topk

__all__ = [
    "EXACT_METRICS",
    "PAD_ID",
    "WEIGHTINGS",
    "ExactShard",
    "class_probabilities",
    "exact_search",
    "merge_topk",
    "neighbor_weights",
    "pad_ragged",
    "pair_distances",
    "predict_from_probabilities",
    "select_topk",
    "weighted_average",
]
