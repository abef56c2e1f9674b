"""knnspark: exact k-nearest-neighbor classification, regression and search on Apache Spark.

The public names load on first use (PEP 562): a Python worker that unpickles a search
function imports ``knnspark.partition`` and with it this package, and should not pay for
``pyspark.ml``, pandas and the estimators it never runs (about half a second per fresh
worker).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from knnspark._version import __version__

if TYPE_CHECKING:
    from knnspark.classification import KNNClassificationModel, KNNClassifier
    from knnspark.editing import EditedNearestNeighbors
    from knnspark.errors import (
        InvalidInputError,
        KNNSparkError,
        ModelLoadError,
        reraise_worker_errors,
    )
    from knnspark.join import knn_join
    from knnspark.neighbors import NearestNeighbors, NearestNeighborsModel
    from knnspark.outliers import KNNOutlierDetector, KNNOutlierModel
    from knnspark.regression import KNNRegressionModel, KNNRegressor

#: Public name -> the module that defines it.
_EXPORTS = {
    "EditedNearestNeighbors": "knnspark.editing",
    "InvalidInputError": "knnspark.errors",
    "KNNClassificationModel": "knnspark.classification",
    "KNNClassifier": "knnspark.classification",
    "KNNOutlierDetector": "knnspark.outliers",
    "KNNOutlierModel": "knnspark.outliers",
    "KNNRegressionModel": "knnspark.regression",
    "KNNRegressor": "knnspark.regression",
    "KNNSparkError": "knnspark.errors",
    "knn_join": "knnspark.join",
    "ModelLoadError": "knnspark.errors",
    "NearestNeighbors": "knnspark.neighbors",
    "NearestNeighborsModel": "knnspark.neighbors",
    "reraise_worker_errors": "knnspark.errors",
}

__all__ = [
    "EditedNearestNeighbors",
    "InvalidInputError",
    "KNNClassificationModel",
    "KNNClassifier",
    "KNNOutlierDetector",
    "KNNOutlierModel",
    "KNNRegressionModel",
    "KNNRegressor",
    "KNNSparkError",
    "ModelLoadError",
    "NearestNeighbors",
    "NearestNeighborsModel",
    "__version__",
    "knn_join",
    "reraise_worker_errors",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'knnspark' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
