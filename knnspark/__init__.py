"""knnspark: exact k-nearest-neighbor classification, regression and search on Apache Spark."""

from knnspark._version import __version__
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
