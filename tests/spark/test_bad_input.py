"""Every bad input of issue 2 gets a clear error, or the documented ``handleInvalid`` outcome.

Errors the schema or the params alone reveal must be raised on the driver before
any Spark job starts; :func:`no_spark_job` proves it with a job group.  Errors
that only the data reveals (invalid query rows) surface from a Python worker
wrapped in a Spark exception, so their message is matched in ``str(exc)``.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from py4j.protocol import Py4JJavaError
from pyspark.errors import PythonException
from pyspark.ml.linalg import DenseVector, SparseVector, Vectors, VectorUDT
from pyspark.sql import types as T
from spark_jobs import no_spark_job

from knnspark import (
    InvalidInputError,
    KNNClassifier,
    KNNRegressor,
    NearestNeighbors,
)
from knnspark.params import ALGORITHMS, METRICS

N_TRAIN = 40
DIM = 3
NUM_SHARDS = 3
BAD_ID = 1000

ROW_SCHEMA = T.StructType(
    [
        T.StructField("id", T.LongType()),
        T.StructField("features", VectorUDT()),
        T.StructField("label", T.DoubleType()),
    ]
)

#: How an invalid query row fails inside a Spark job.
SPARK_JOB_ERRORS = (PythonException, Py4JJavaError)

NAN = float("nan")
INF = float("inf")

#: Feature values that handleInvalid governs, with the fit-time message part for each.
INVALID_FEATURES = {
    "null": (None, "1 null or empty feature vectors"),
    "empty": (Vectors.dense([]), "1 null or empty feature vectors"),
    "nan": (Vectors.dense([0.5, NAN, 0.1]), "1 feature vectors with NaN or infinite values"),
    "inf": (Vectors.dense([0.5, INF, 0.1]), "1 feature vectors with NaN or infinite values"),
    "-inf": (Vectors.dense([-INF, 0.0, 0.1]), "1 feature vectors with NaN or infinite values"),
    "sparse-nan": (
        Vectors.sparse(DIM, [1], [NAN]),
        "1 feature vectors with NaN or infinite values",
    ),
}

#: Invalid query values and the message the worker raises under handleInvalid='error'.
INVALID_QUERIES = {
    "null": (None, "holds a null or empty vector in a query row"),
    "empty": (Vectors.dense([]), "holds a null or empty vector in a query row"),
    "nan": (Vectors.dense([0.5, NAN, 0.1]), "holds NaN or infinite values in a query row"),
    "inf": (Vectors.dense([0.5, INF, 0.1]), "holds NaN or infinite values in a query row"),
    "short": (
        Vectors.dense([0.5, 0.1]),
        "holds a query vector of length 2, but the model was trained on vectors of length 3",
    ),
}


# ---------------------------------------------------------------- helpers


def train_rows(n: int = N_TRAIN, seed: int = 0) -> list[tuple]:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, DIM))
    labels = rng.integers(0, 3, size=n)
    return [
        (i, Vectors.dense(x), float(y))
        for i, (x, y) in enumerate(zip(features, labels, strict=True))
    ]


def with_bad_row(spark, features, label: float | None = 1.0, row_id: int | None = BAD_ID):
    return spark.createDataFrame(train_rows() + [(row_id, features, label)], ROW_SCHEMA)


def make_estimator(kind: str, **params):
    params.setdefault("numShards", NUM_SHARDS)
    if kind == "classifier":
        return KNNClassifier(**params)
    if kind == "regressor":
        return KNNRegressor(**params)
    return NearestNeighbors(**params)


def search(model, df):
    """transform for the classifier/regressor, kneighbors for neighbor search."""
    if hasattr(model, "getPredictionCol"):
        return model.transform(df)
    return model.kneighbors(df)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def train_df(spark):
    return spark.createDataFrame(train_rows(), ROW_SCHEMA)


@pytest.fixture(scope="module")
def models(train_df):
    """Fitted models by kind; 'classifier-distributed' searches by a distributed reduce."""
    fitted = {
        "classifier": KNNClassifier(k=3, numShards=NUM_SHARDS).fit(train_df),
        "classifier-distributed": KNNClassifier(k=3, numShards=NUM_SHARDS, maxBroadcastBytes=0).fit(
            train_df
        ),
        "regressor": KNNRegressor(k=3, numShards=NUM_SHARDS).fit(train_df),
        "neighbors": NearestNeighbors(k=3, numShards=NUM_SHARDS, idCol="id").fit(train_df),
        "neighbors-distributed": NearestNeighbors(
            k=3, numShards=NUM_SHARDS, idCol="id", maxBroadcastBytes=0
        ).fit(train_df),
    }
    assert fitted["classifier"].storage == "broadcast"
    assert fitted["classifier-distributed"].storage == "distributed"
    assert fitted["neighbors-distributed"].storage == "distributed"
    return fitted


def test_no_spark_job_helper_sees_jobs(spark, train_df):
    with pytest.raises(AssertionError, match="expected no Spark job"):
        with no_spark_job(spark):
            train_df.count()


# ---------------------------------------------------------------- missing columns


@pytest.mark.parametrize(
    ("kind", "params", "param"),
    [
        ("classifier", {"featuresCol": "nope"}, "featuresCol"),
        ("classifier", {"labelCol": "nope"}, "labelCol"),
        ("classifier", {"idCol": "nope"}, "idCol"),
        ("regressor", {"featuresCol": "nope"}, "featuresCol"),
        ("regressor", {"labelCol": "nope"}, "labelCol"),
        ("neighbors", {"featuresCol": "nope"}, "featuresCol"),
        ("neighbors", {"idCol": "nope"}, "idCol"),
    ],
)
def test_fit_missing_column(spark, train_df, kind, params, param):
    estimator = make_estimator(kind, **params)
    with no_spark_job(spark):
        with pytest.raises(
            InvalidInputError,
            match=re.escape(
                f"Column 'nope' (param {param}) does not exist. "
                "Available columns: id, features, label."
            ),
        ):
            estimator.fit(train_df)


@pytest.mark.parametrize("kind", ["classifier", "regressor", "neighbors"])
def test_search_missing_features_column(spark, models, train_df, kind):
    queries = train_df.drop("features")
    with no_spark_job(spark):
        with pytest.raises(
            InvalidInputError,
            match=re.escape(
                "Column 'features' (param featuresCol) does not exist. "
                "Available columns: id, label."
            ),
        ):
            search(models[kind], queries)


# ---------------------------------------------------------------- wrong column types


@pytest.mark.parametrize(
    ("ddl", "value"),
    [
        ("string", "0.1,0.2,0.3"),
        ("array<string>", ["0.1", "0.2", "0.3"]),
        ("array<int>", [1, 2, 3]),
        ("array<bigint>", [1, 2, 3]),
        ("double", 0.5),
        ("array<array<double>>", [[0.1, 0.2, 0.3]]),
    ],
)
@pytest.mark.parametrize("kind", ["classifier", "regressor", "neighbors"])
def test_fit_rejects_feature_type(spark, kind, ddl, value):
    df = spark.createDataFrame(
        [(i, value, 1.0) for i in range(4)], f"id long, features {ddl}, label double"
    )
    type_name = df.schema["features"].dataType.simpleString()
    with no_spark_job(spark):
        with pytest.raises(
            TypeError,
            match=re.escape(
                "Column 'features' (param featuresCol) must be a Spark ML vector, "
                f"array<float> or array<double>; got {type_name}."
            ),
        ):
            make_estimator(kind, k=1).fit(df)


@pytest.mark.parametrize("kind", ["classifier", "regressor", "neighbors"])
def test_search_rejects_feature_type(spark, models, kind):
    queries = spark.createDataFrame([(1, ["a", "b", "c"])], "id long, features array<string>")
    with no_spark_job(spark):
        with pytest.raises(
            TypeError,
            match=re.escape(
                "Column 'features' (param featuresCol) must be a Spark ML vector, "
                "array<float> or array<double>; got array<string>."
            ),
        ):
            search(models[kind], queries)


def test_classifier_string_label_points_to_string_indexer(spark, train_df):
    df = train_df.withColumn("label", train_df["label"].cast("string"))
    with no_spark_job(spark):
        with pytest.raises(
            TypeError,
            match=re.escape(
                "Column 'label' (param labelCol) must be numeric; got string. Encode string "
                "labels as numbers first, for example with pyspark.ml.feature.StringIndexer."
            ),
        ):
            KNNClassifier(k=3).fit(df)


@pytest.mark.parametrize(("cast", "name"), [("string", "string"), ("boolean", "boolean")])
def test_regressor_rejects_non_numeric_label(spark, train_df, cast, name):
    df = train_df.withColumn("label", train_df["label"].cast(cast))
    with no_spark_job(spark):
        with pytest.raises(
            TypeError,
            match=re.escape(f"Column 'label' (param labelCol) must be numeric; got {name}.") + "$",
        ):
            KNNRegressor(k=3).fit(df)


@pytest.mark.parametrize(("cast", "name"), [("string", "string"), ("double", "double")])
@pytest.mark.parametrize("kind", ["classifier", "neighbors"])
def test_id_column_must_hold_integers(spark, train_df, kind, cast, name):
    df = train_df.withColumn("id", train_df["id"].cast(cast))
    with no_spark_job(spark):
        with pytest.raises(
            TypeError,
            match=re.escape(
                f"Column 'id' (param idCol) must hold integers (int or long); got {name}."
            ),
        ):
            make_estimator(kind, k=3, idCol="id").fit(df)


# ---------------------------------------------------------------- invalid values at fit


@pytest.mark.parametrize("case", list(INVALID_FEATURES))
def test_fit_error_on_invalid_features(spark, case):
    value, part = INVALID_FEATURES[case]
    df = with_bad_row(spark, value)
    with pytest.raises(
        InvalidInputError,
        match=re.escape(
            "Invalid training rows in column 'features' (param featuresCol) or 'label' "
            f"(param labelCol): {part}. Set handleInvalid='skip' to drop such rows."
        ),
    ):
        KNNClassifier(k=3, numShards=NUM_SHARDS).fit(df)


@pytest.mark.parametrize("kind", ["regressor", "neighbors"])
def test_fit_error_on_null_features_other_estimators(spark, kind):
    df = with_bad_row(spark, None)
    label_part = " or 'label' (param labelCol)" if kind == "regressor" else ""
    with pytest.raises(
        InvalidInputError,
        match=re.escape(
            f"Invalid training rows in column 'features' (param featuresCol){label_part}: "
            "1 null or empty feature vectors. Set handleInvalid='skip' to drop such rows."
        ),
    ):
        make_estimator(kind, k=3).fit(df)


@pytest.mark.parametrize("case", list(INVALID_FEATURES))
def test_fit_skip_drops_invalid_rows(spark, train_df, case):
    value, _ = INVALID_FEATURES[case]
    df = with_bad_row(spark, value)
    # k = every valid row: a dropped row can never show up among the neighbors.
    model = NearestNeighbors(k=N_TRAIN, idCol="id", numShards=NUM_SHARDS, handleInvalid="skip").fit(
        df
    )
    assert model.numTrainingRows == N_TRAIN
    assert sum(model.shardSizes.values()) == N_TRAIN
    found = model.kneighbors(train_df.limit(3)).collect()
    assert len(found) == 3
    for row in found:
        assert sorted(row["neighbor_ids"]) == list(range(N_TRAIN))


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_fit_skip_drops_invalid_rows_supervised(spark, kind):
    df = with_bad_row(spark, Vectors.dense([NAN, 0.0, 0.0]))
    model = make_estimator(kind, k=3, handleInvalid="skip").fit(df)
    assert model.numTrainingRows == N_TRAIN


def test_fit_error_on_null_array_element(spark):
    rows = [(i, [float(v) for v in x], y) for i, x, y in train_rows()]
    df = spark.createDataFrame(
        rows + [(BAD_ID, [0.5, None, 0.1], 1.0)], "id long, features array<double>, label double"
    )
    with pytest.raises(
        InvalidInputError, match=re.escape("1 feature vectors with NaN or infinite values")
    ):
        KNNClassifier(k=3, numShards=NUM_SHARDS).fit(df)
    model = KNNClassifier(k=3, numShards=NUM_SHARDS, handleInvalid="skip").fit(df)
    assert model.numTrainingRows == N_TRAIN


def test_fit_skip_with_no_valid_row(spark):
    df = spark.createDataFrame(
        [(1, None, 1.0), (2, Vectors.dense([NAN, 1.0, 2.0]), 0.0)], ROW_SCHEMA
    )
    with pytest.raises(
        InvalidInputError,
        match=re.escape(
            "No valid training rows: all 2 rows have null, empty or non-finite features in "
            "column 'features' or null labels."
        ),
    ):
        KNNClassifier(k=1, handleInvalid="skip").fit(df)


def test_fit_skip_then_k_exceeds_valid_rows(spark):
    df = with_bad_row(spark, None)  # 41 rows, 40 valid
    with pytest.raises(
        InvalidInputError,
        match=re.escape("Param k must be <= the number of training rows (40); got 41."),
    ):
        KNNClassifier(k=N_TRAIN + 1, handleInvalid="skip").fit(df)


# ---------------------------------------------------------------- feature lengths


@pytest.mark.parametrize("handle_invalid", ["error", "skip"])
def test_fit_feature_lengths_differ_vectors(spark, handle_invalid):
    df = with_bad_row(spark, Vectors.dense([0.5, 0.1]))
    with pytest.raises(
        InvalidInputError,
        match=re.escape(
            "Column 'features' (param featuresCol) holds vectors of different lengths in the "
            "training data: 2 and 3."
        ),
    ):
        KNNClassifier(k=3, numShards=NUM_SHARDS, handleInvalid=handle_invalid).fit(df)


@pytest.mark.parametrize("kind", ["regressor", "neighbors"])
def test_fit_feature_lengths_differ_arrays(spark, kind):
    rows = [(i, [float(v) for v in x], y) for i, x, y in train_rows()]
    df = spark.createDataFrame(
        rows + [(BAD_ID, [1.0, 2.0, 3.0, 4.0, 5.0], 1.0)],
        "id long, features array<float>, label double",
    )
    with pytest.raises(
        InvalidInputError,
        match=re.escape("holds vectors of different lengths in the training data: 3 and 5."),
    ):
        make_estimator(kind, k=3).fit(df)


# ---------------------------------------------------------------- invalid values at transform


#: Suffix of the model key: broadcast storage (default) or a distributed reduce.
STORAGES = [pytest.param("", id="broadcast"), pytest.param("-distributed", id="distributed")]

#: (case, storage) pairs: every case on the default broadcast path, three on the reduce path.
QUERY_CASES = [pytest.param(case, "", id=f"{case}-broadcast") for case in INVALID_QUERIES] + [
    pytest.param(case, "-distributed", id=f"{case}-distributed")
    for case in ("null", "nan", "short")
]


def queries_with(spark, value):
    return spark.createDataFrame(train_rows()[:6] + [(BAD_ID, value, 1.0)], ROW_SCHEMA)


@pytest.mark.parametrize(("case", "storage"), QUERY_CASES)
def test_transform_error_on_invalid_query(spark, models, case, storage):
    value, message = INVALID_QUERIES[case]
    model = models[f"classifier{storage}"]
    out = model.transform(queries_with(spark, value))  # lazy: the rows are checked by the job
    with pytest.raises(SPARK_JOB_ERRORS, match=re.escape(message)) as info:
        out.collect()
    assert "Set handleInvalid='keep' to return null outputs for such rows instead." in str(
        info.value
    )


@pytest.mark.parametrize("storage", STORAGES)
def test_kneighbors_error_on_query_length(spark, models, storage):
    model = models[f"neighbors{storage}"]
    out = model.kneighbors(queries_with(spark, Vectors.dense([1.0, 2.0, 3.0, 4.0])))
    with pytest.raises(
        SPARK_JOB_ERRORS,
        match=re.escape(
            "Column 'features' (param featuresCol) holds a query vector of length 4, but the "
            "model was trained on vectors of length 3."
        ),
    ):
        out.collect()


def assert_only_bad_row_is_null(out_rows, expected, columns):
    """All query rows are there; the bad one has null outputs, the others their scores."""
    assert len(out_rows) == len(expected) + 1
    by_id = {row["id"]: row for row in out_rows}
    assert set(by_id) == set(expected) | {BAD_ID}
    for col in columns:
        assert by_id[BAD_ID][col] is None, col
    for row_id, want in expected.items():
        for col in columns:
            assert by_id[row_id][col] is not None, (row_id, col)
            assert by_id[row_id][col] == want[col], (row_id, col)


@pytest.mark.parametrize(
    ("case", "storage", "handle_invalid"),
    [pytest.param(*p.values, "keep", id=f"{p.id}-keep") for p in QUERY_CASES]
    + [
        pytest.param("null", "", "skip", id="null-broadcast-skip"),
        pytest.param("nan", "-distributed", "skip", id="nan-distributed-skip"),
    ],
)
def test_transform_keep_returns_null_prediction(spark, models, case, storage, handle_invalid):
    """'keep' (and 'skip') at transform: the row stays, with null outputs."""
    value, _ = INVALID_QUERIES[case]
    model = models[f"classifier{storage}"]
    queries = queries_with(spark, value)
    good = queries.filter(f"id != {BAD_ID}")
    expected = {r["id"]: r for r in model.transform(good).collect()}
    out = model.copy({model.handleInvalid: handle_invalid}).transform(queries)
    assert out.columns[: len(queries.columns)] == queries.columns
    assert {"prediction", "probability"} <= set(out.columns[len(queries.columns) :])
    assert out.count() == queries.count()
    assert_only_bad_row_is_null(out.collect(), expected, ["prediction", "probability"])


def test_regressor_keep_returns_null_prediction(spark, models):
    model = models["regressor"]
    queries = queries_with(spark, Vectors.dense([0.5, 0.1]))
    expected = {r["id"]: r for r in model.transform(queries.filter(f"id != {BAD_ID}")).collect()}
    out = model.copy({model.handleInvalid: "keep"}).transform(queries).collect()
    assert_only_bad_row_is_null(out, expected, ["prediction"])


def test_keep_with_neighbors_col_returns_null_neighbors(spark, models):
    model = models["classifier"].copy(
        {models["classifier"].handleInvalid: "keep", models["classifier"].neighborsCol: "nbrs"}
    )
    queries = queries_with(spark, None)
    expected = {r["id"]: r for r in model.transform(queries.filter(f"id != {BAD_ID}")).collect()}
    out = model.transform(queries).collect()
    assert_only_bad_row_is_null(out, expected, ["prediction", "probability", "nbrs"])
    assert all(len(expected[i]["nbrs"]) == 3 for i in expected)


@pytest.mark.parametrize("storage", STORAGES)
def test_kneighbors_keep_returns_null_lists(spark, models, storage):
    model = models[f"neighbors{storage}"]
    queries = queries_with(spark, Vectors.dense([INF, 0.0, 0.0]))
    expected = {r["id"]: r for r in model.kneighbors(queries.filter(f"id != {BAD_ID}")).collect()}
    out = model.copy({model.handleInvalid: "keep"}).kneighbors(queries).collect()
    assert_only_bad_row_is_null(out, expected, ["neighbor_ids", "distances"])


# ---------------------------------------------------------------- k


ESTIMATORS = [KNNClassifier, KNNRegressor, NearestNeighbors]


@pytest.mark.parametrize("k", [0, -3])
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_k_below_one(cls, k):
    with pytest.raises(ValueError, match=re.escape(f"Param k must be an integer >= 1; got {k}")):
        cls(k=k)
    with pytest.raises(ValueError, match=re.escape(f"Param k must be an integer >= 1; got {k}")):
        cls().setK(k)


@pytest.mark.parametrize("k", [2.5, "3", True])
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_k_not_an_integer(cls, k):
    with pytest.raises(
        TypeError,
        match=re.escape(
            f'Invalid param value given for param "k". Param k must be an integer >= 1; got {k!r}'
        ),
    ):
        cls(k=k)


def test_k_integral_float_is_accepted():
    clf = KNNClassifier(k=4.0)
    assert clf.getK() == 4
    assert isinstance(clf.getK(), int)


def test_k_in_fit_param_map_is_checked(train_df):
    clf = KNNClassifier()
    with pytest.raises(ValueError, match=re.escape("Param k must be an integer >= 1; got 0")):
        clf.fit(train_df, {clf.k: 0})


@pytest.mark.parametrize("kind", ["classifier", "regressor", "neighbors"])
def test_fit_k_greater_than_training_rows(train_df, kind):
    with pytest.raises(
        InvalidInputError,
        match=re.escape("Param k must be <= the number of training rows (40); got 41."),
    ):
        make_estimator(kind, k=N_TRAIN + 1).fit(train_df)


@pytest.mark.parametrize("kind", ["classifier", "classifier-distributed", "neighbors"])
def test_search_k_greater_than_training_rows(spark, models, train_df, kind):
    model = models[kind].copy({models[kind].k: N_TRAIN + 1})
    with no_spark_job(spark):
        with pytest.raises(
            InvalidInputError,
            match=re.escape("Param k must be <= the number of training rows (40); got 41."),
        ):
            search(model, train_df)


# ---------------------------------------------------------------- empty training data


@pytest.mark.parametrize("kind", ["classifier", "regressor", "neighbors"])
def test_fit_empty_training_data(train_df, kind):
    with pytest.raises(
        InvalidInputError,
        match=re.escape("The training DataFrame is empty; fit needs at least k=3 rows."),
    ):
        make_estimator(kind, k=3).fit(train_df.limit(0))


# ---------------------------------------------------------------- unknown options


#: The message lists every valid value; later issues add metrics and algorithms.
METRICS_TEXT = ", ".join(repr(m) for m in METRICS)
ALGORITHMS_TEXT = ", ".join(repr(a) for a in ALGORITHMS)


def test_valid_option_lists_cover_issue_2():
    assert {"euclidean", "manhattan", "chebyshev", "minkowski", "cosine", "hamming"} <= set(METRICS)
    assert "brute" in ALGORITHMS


UNKNOWN_OPTIONS = [
    ("metric", "cityblock", METRICS_TEXT),
    ("metric", "Euclidean", METRICS_TEXT),
    ("algorithm", "kd_tree", ALGORITHMS_TEXT),
    ("weights", "inverse", "'uniform', 'distance', 'gaussian', 'tricube', 'epanechnikov'"),
]


@pytest.mark.parametrize(
    ("cls", "param", "value", "valid"),
    [
        pytest.param(cls, *option, id=f"{cls.__name__}-{option[0]}-{option[1]}")
        for cls in ESTIMATORS
        for option in UNKNOWN_OPTIONS
        if not (cls is NearestNeighbors and option[0] == "weights")
    ],
)
def test_unknown_option(cls, param, value, valid):
    message = re.escape(f"Param {param} must be one of {valid}; got {value!r}")
    with pytest.raises(ValueError, match=message):
        cls(**{param: value})
    estimator = cls()
    setter = getattr(estimator, "set" + param[0].upper() + param[1:])
    with pytest.raises(ValueError, match=message):
        setter(value)


def test_unknown_option_on_model(models):
    model = models["classifier"]
    with pytest.raises(
        ValueError, match=re.escape(f"Param metric must be one of {METRICS_TEXT}; got 'l2'")
    ):
        model.setMetric("l2")


HANDLE_INVALID_MESSAGE = re.escape(
    "Param handleInvalid must be one of 'error', 'skip', 'keep'; got 'ignore'"
)


@pytest.mark.parametrize("kind", ["classifier", "regressor", "neighbors"])
def test_unknown_handle_invalid_at_fit(spark, train_df, kind):
    # The Param's type converter refuses the value when it is set, before any fit.
    with no_spark_job(spark):
        with pytest.raises(ValueError, match=HANDLE_INVALID_MESSAGE):
            make_estimator(kind, k=3, handleInvalid="ignore").fit(train_df)


@pytest.mark.parametrize("kind", ["classifier", "regressor", "neighbors"])
def test_unknown_handle_invalid_at_search(spark, models, train_df, kind):
    with no_spark_job(spark):
        with pytest.raises(ValueError, match=HANDLE_INVALID_MESSAGE):
            search(models[kind].copy({models[kind].handleInvalid: "ignore"}), train_df)


@pytest.mark.parametrize(
    ("params", "exc", "message"),
    [
        ({"p": 0}, ValueError, "Param p must be a finite number > 0; got 0.0"),
        ({"p": math.inf}, ValueError, "Param p must be a finite number > 0; got inf"),
        ({"numShards": 0}, ValueError, "Param numShards must be an integer >= 1; got 0"),
        (
            {"maxBroadcastBytes": -1},
            ValueError,
            "Param maxBroadcastBytes must be an integer >= 0; got -1",
        ),
        ({"idCol": ""}, TypeError, "Param idCol must be a non-empty column name or None; got ''"),
    ],
)
def test_other_invalid_params(params, exc, message):
    with pytest.raises(exc, match=re.escape(message)):
        KNNClassifier(**params)


# ---------------------------------------------------------------- labels


#: The message part for bad labels ("null or NaN", or "null, NaN or infinite" once
#: infinite labels count as invalid too).
BAD_LABEL_PART = r"1 null,? (or )?NaN( or infinite)? labels in column 'label'"


@pytest.mark.parametrize("bad_label", [None, NAN])
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_null_label_error(spark, kind, bad_label):
    df = with_bad_row(spark, Vectors.dense([0.1, 0.2, 0.3]), label=bad_label)
    with pytest.raises(
        InvalidInputError,
        match=re.escape(
            "Invalid training rows in column 'features' (param featuresCol) or 'label' "
            "(param labelCol): "
        )
        + BAD_LABEL_PART
        + re.escape(". Set handleInvalid='skip' to drop such rows."),
    ):
        make_estimator(kind, k=3).fit(df)


@pytest.mark.parametrize("label", [INF, -INF])
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_infinite_label_error(spark, kind, label):
    """An infinite label is as unusable as a NaN one (a regressor would predict inf)."""
    df = with_bad_row(spark, Vectors.dense([0.1, 0.2, 0.3]), label=label)
    with pytest.raises(
        InvalidInputError,
        match=re.escape(
            "Invalid training rows in column 'features' (param featuresCol) or 'label' "
            "(param labelCol): 1 "
        )
        + r"[^.;]*infinite labels in column 'label'",
    ):
        make_estimator(kind, k=3).fit(df)


def test_classifier_label_beyond_long_range(spark):
    """A large integral class value is a valid label, not an arithmetic overflow."""
    df = with_bad_row(spark, Vectors.dense([0.1, 0.2, 0.3]), label=1e19)
    model = KNNClassifier(k=3, numShards=NUM_SHARDS).fit(df)
    np.testing.assert_array_equal(model.classes, [0.0, 1.0, 2.0, 1e19])


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_null_label_skip(spark, kind):
    df = with_bad_row(spark, Vectors.dense([0.1, 0.2, 0.3]), label=None)
    model = make_estimator(kind, k=3, handleInvalid="skip").fit(df)
    assert model.numTrainingRows == N_TRAIN


def test_classifier_rejects_non_integer_label(spark):
    df = with_bad_row(spark, Vectors.dense([0.1, 0.2, 0.3]), label=2.5)
    with pytest.raises(
        InvalidInputError,
        match=re.escape(
            "Column 'label' (param labelCol) must hold integer class values for KNNClassifier; "
            "got 1 non-integer labels such as 2.5. Use KNNRegressor for continuous targets."
        ),
    ):
        KNNClassifier(k=3, numShards=NUM_SHARDS).fit(df)


def test_regressor_accepts_non_integer_label(spark):
    point = Vectors.dense([50.0, 50.0, 50.0])  # far from every other row
    df = with_bad_row(spark, point, label=2.5)
    model = KNNRegressor(k=1, numShards=NUM_SHARDS).fit(df)
    assert model.numTrainingRows == N_TRAIN + 1
    query = spark.createDataFrame([(0, point, 0.0)], ROW_SCHEMA)
    assert model.transform(query).first()["prediction"] == 2.5


# ---------------------------------------------------------------- ids


@pytest.mark.parametrize("kind", ["classifier", "regressor", "neighbors"])
def test_duplicate_ids(spark, kind):
    df = with_bad_row(spark, Vectors.dense([0.1, 0.2, 0.3]), row_id=7)
    with pytest.raises(
        InvalidInputError,
        match=re.escape("Column 'id' (param idCol) must hold unique ids; id 7 appears 2 times."),
    ):
        make_estimator(kind, k=3, idCol="id").fit(df)


@pytest.mark.parametrize("kind", ["classifier", "neighbors"])
def test_null_ids(spark, kind):
    df = with_bad_row(spark, Vectors.dense([0.1, 0.2, 0.3]), row_id=None)
    with pytest.raises(
        InvalidInputError,
        match=re.escape(
            "Column 'id' (param idCol) holds 1 null ids; every training row needs a unique id."
        ),
    ):
        make_estimator(kind, k=3, idCol="id").fit(df)


def test_duplicate_ids_are_fine_without_id_col(spark):
    df = with_bad_row(spark, Vectors.dense([0.1, 0.2, 0.3]), row_id=7)
    model = NearestNeighbors(k=3, numShards=NUM_SHARDS).fit(df)
    assert model.numTrainingRows == N_TRAIN + 1


# ---------------------------------------------------------------- output columns


@pytest.mark.parametrize(
    ("kind", "extra", "column", "param"),
    [
        ("classifier", {}, "prediction", "predictionCol"),
        ("classifier", {}, "probability", "probabilityCol"),
        ("classifier", {"predictionCol": "label"}, "label", "predictionCol"),
        ("classifier", {"neighborsCol": "nbrs"}, "nbrs", "neighborsCol"),
        ("regressor", {}, "prediction", "predictionCol"),
        ("regressor", {"neighborsCol": "nbrs"}, "nbrs", "neighborsCol"),
        ("neighbors", {}, "neighbor_ids", "neighborIdsCol"),
        ("neighbors", {}, "distances", "distancesCol"),
        ("neighbors", {"neighborIdsCol": "label"}, "label", "neighborIdsCol"),
    ],
)
def test_output_column_already_exists(spark, models, train_df, kind, extra, column, param):
    model = models[kind].copy({models[kind].getParam(n): v for n, v in extra.items()})
    queries = train_df if column in train_df.columns else train_df.withColumn(column, train_df.id)
    with no_spark_job(spark):
        with pytest.raises(
            InvalidInputError,
            match=re.escape(f"Output column '{column}' (param {param}) already exists."),
        ):
            search(model, queries)


@pytest.mark.parametrize("kind", ["neighbors", "classifier"])
def test_kneighbors_output_column_already_exists(spark, models, train_df, kind):
    queries = train_df.withColumn("neighbor_ids", train_df.id)
    with no_spark_job(spark):
        with pytest.raises(
            InvalidInputError,
            match=re.escape("Output column 'neighbor_ids' (param neighborIdsCol) already exists."),
        ):
            models[kind].kneighbors(queries)


def test_output_columns_collide(spark, models, train_df):
    model = models["classifier"].copy({models["classifier"].neighborsCol: "prediction"})
    with no_spark_job(spark):
        with pytest.raises(
            InvalidInputError,
            match=re.escape(
                "Params predictionCol and neighborsCol name the same output column 'prediction'."
            ),
        ):
            model.transform(train_df)


@pytest.mark.parametrize("column", ["__knn_row", "__knn_features", "__knn_mine"])
@pytest.mark.parametrize("kind", ["classifier", "classifier-distributed", "regressor", "neighbors"])
def test_reserved_column_prefix(spark, models, train_df, kind, column):
    queries = train_df.withColumn(column, train_df.id)
    with no_spark_job(spark):
        with pytest.raises(
            ValueError,
            match=re.escape(
                f"Column '{column}' uses the prefix '__knn_', which knnspark reserves for its "
                "temporary columns; rename it."
            ),
        ):
            search(models[kind], queries)


def test_valid_vector_types_are_accepted(spark, models):
    """The bad-input checks do not reject the valid feature types."""
    queries = spark.createDataFrame(
        [(0, Vectors.sparse(DIM, [0], [0.5]), 0.0), (1, DenseVector([0.1, 0.2, 0.3]), 0.0)],
        ROW_SCHEMA,
    )
    out = models["classifier"].transform(queries).collect()
    assert [r["prediction"] is not None for r in out] == [True, True]
    assert isinstance(out[0]["features"], SparseVector)
