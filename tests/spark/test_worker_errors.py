"""An invalid query row found inside a Spark task reaches the driver as InvalidInputError.

``transform`` is lazy: the task that searches an invalid row (``handleInvalid="error"``)
raises, and Spark reports a ``PythonException`` (a ``Py4JJavaError`` from a write, or when
the task ran inside a broadcast's job: the shard-major path's merged results).
:func:`knnspark.errors.reraise_worker_errors` around the action raises the knnspark error
itself, with the Spark exception as its cause; other errors pass through.
"""

from __future__ import annotations

import re

import pytest
from py4j.protocol import Py4JJavaError
from pyspark.errors import PythonException
from pyspark.ml.linalg import Vectors
from pyspark.sql import functions as F

from knnspark import KNNClassifier, NearestNeighbors
from knnspark.app.errors import worker_errors_as_driver_errors
from knnspark.errors import InvalidInputError, reraise_worker_errors

HINT = "Set handleInvalid='keep' to return null outputs for such rows instead."


@pytest.fixture(scope="module")
def train(spark):
    rows = [(i, Vectors.dense([float(i), float(i % 3)]), float(i % 2)) for i in range(30)]
    return spark.createDataFrame(rows, ["id", "features", "label"])


@pytest.mark.parametrize("budget", [None, 0], ids=["broadcast", "distributed"])
@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            Vectors.dense([float("nan"), 1.0]),
            "Column 'features' (param featuresCol) holds NaN or infinite values in a query row "
            "(a finite value beyond +-3.4e38 counts too: it overflows the float32 storage of "
            "features; rescale such data).",
        ),
        (
            Vectors.dense([1.0, 2.0, 3.0]),
            "Column 'features' (param featuresCol) holds a query vector of length 3, but the "
            "model was trained on vectors of length 2.",
        ),
    ],
    ids=["nan", "length"],
)
def test_invalid_query_row_raises_invalid_input_error(spark, train, budget, bad, message):
    est = KNNClassifier(k=3, numShards=2)
    if budget is not None:
        est.setMaxBroadcastBytes(budget)
    queries = spark.createDataFrame(
        [(0, Vectors.dense([1.0, 2.0])), (1, bad), (2, Vectors.dense([3.0, 0.0]))],
        ["id", "features"],
    )
    out = est.fit(train).transform(queries)
    with pytest.raises(InvalidInputError, match="^" + re.escape(f"{message} {HINT}") + "$") as info:
        with reraise_worker_errors():
            out.collect()
    # The shard-major path broadcasts small merged results to the queries, and Spark reports
    # a task failing inside a broadcast's job as a Py4JJavaError, not a PythonException.
    spark_error = PythonException if budget is None else Py4JJavaError
    assert isinstance(info.value.__cause__, spark_error)
    assert f"knnspark.errors.InvalidInputError: {message} {HINT}" in str(info.value.__cause__)


def test_invalid_query_row_in_a_write_raises_invalid_input_error(spark, train, tmp_path):
    queries = spark.createDataFrame([(0, None)], "id long, features array<double>")
    out = NearestNeighbors(k=2).fit(train).kneighbors(queries)
    message = "Column 'features' (param featuresCol) holds a null or empty vector in a query row."
    with pytest.raises(InvalidInputError, match="^" + re.escape(f"{message} {HINT}") + "$") as info:
        with reraise_worker_errors():
            out.write.parquet(str(tmp_path / "out"))
    # A write reports the task's error inside a Java exception.
    assert isinstance(info.value.__cause__, (Py4JJavaError, PythonException))
    assert worker_errors_as_driver_errors is reraise_worker_errors  # the jobs use the same


def test_other_errors_pass_through_unchanged(spark):
    @F.udf("double")
    def fails(x):
        raise ValueError("knnspark.errors is mentioned, but this is the user's own error")

    with pytest.raises(PythonException, match="the user's own error"):
        with reraise_worker_errors():
            spark.range(1).select(fails("id")).collect()
    with pytest.raises(KeyError):
        with reraise_worker_errors():
            raise KeyError("not a Spark error")
