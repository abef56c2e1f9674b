"""KNNOutlierDetector against PyOD's KNN detector on scikit-learn's bundled datasets.

knnspark stores features as float32, so PyOD gets the same float32-rounded values (as
float64): the scores then agree to rounding and the labels exactly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyod.models.knn import KNN
from sklearn import datasets
from spark_jobs import no_spark_job

from knnspark import InvalidInputError, KNNOutlierDetector, KNNOutlierModel, ModelLoadError

RTOL = 1e-9


def _load(name):
    x, _ = getattr(datasets, f"load_{name}")(return_X_y=True)
    return x.astype(np.float32).astype(np.float64)


def _frame(spark, x, ids=None):
    data = {"features": list(x)}
    if ids is not None:
        data = {"id": ids, **data}
    return spark.createDataFrame(pd.DataFrame(data))


@pytest.fixture(scope="module")
def wine(spark):
    x = _load("wine")
    return x, _frame(spark, x, ids=np.arange(len(x), dtype=np.int64) * 3 + 7).cache()


def _sorted_scores(pdf, id_col="id"):
    pdf = pdf.sort_values(id_col)
    return pdf["outlierScore"].to_numpy(), pdf["prediction"].to_numpy()


@pytest.mark.parametrize("dataset", ["wine", pytest.param("breast_cancer", marks=pytest.mark.slow)])
@pytest.mark.parametrize(("method", "k"), [("largest", 5), ("mean", 10), ("median", 4)])
def test_training_scores_match_pyod(spark, dataset, method, k):
    x = _load(dataset)
    model = KNNOutlierDetector(k=k, method=method, contamination=0.1, numShards=3).fit(
        _frame(spark, x)
    )
    reference = KNN(n_neighbors=k, method=method, contamination=0.1).fit(x)
    scores, labels = _sorted_scores(model.trainingScores().toPandas())
    np.testing.assert_allclose(scores, reference.decision_scores_, rtol=RTOL)
    np.testing.assert_allclose(model.threshold, reference.threshold_, rtol=RTOL)
    np.testing.assert_array_equal(labels, reference.labels_)


@pytest.mark.parametrize("contamination", [0.05, 0.5])
def test_transform_leaves_training_rows_out_by_id(spark, wine, contamination):
    x, df = wine
    model = KNNOutlierDetector(k=5, idCol="id", contamination=contamination).fit(df)
    reference = KNN(n_neighbors=5, contamination=contamination).fit(x)
    scored = model.transform(df).toPandas()
    scores, labels = _sorted_scores(scored)
    np.testing.assert_allclose(scores, reference.decision_scores_, rtol=RTOL)
    np.testing.assert_array_equal(labels, reference.labels_)
    training = model.trainingScores().toPandas().sort_values("id")
    assert training["id"].tolist() == sorted(scored["id"])
    np.testing.assert_allclose(training["outlierScore"], scores, rtol=RTOL)


def test_transform_of_new_rows_matches_decision_function(spark, wine):
    x, df = wine
    rng = np.random.default_rng(3)
    new = (x[:20] + rng.normal(scale=5.0, size=(20, x.shape[1]))).astype(np.float32)
    new = new.astype(np.float64)
    model = KNNOutlierDetector(k=5, method="mean", idCol="id").fit(df)
    reference = KNN(n_neighbors=5, method="mean").fit(x)
    # Without the id column every row is a new row; with ids no training row has, too.
    for queries in (_frame(spark, new), _frame(spark, new, ids=np.arange(20) + 10_000)):
        scored = model.transform(queries).toPandas()
        np.testing.assert_allclose(
            scored["outlierScore"], reference.decision_function(new), rtol=RTOL
        )
        np.testing.assert_array_equal(scored["prediction"], reference.predict(new))


def test_save_and_load_keep_the_threshold(spark, wine, tmp_path):
    _, df = wine
    model = KNNOutlierDetector(k=4, method="median", contamination=0.2, idCol="id").fit(df)
    model.write().save(str(tmp_path / "m"))
    loaded = KNNOutlierModel.load(str(tmp_path / "m"))
    assert loaded.threshold == model.threshold
    assert (loaded.getK(), loaded.getMethod(), loaded.getContamination()) == (4, "median", 0.2)
    before = model.transform(df).orderBy("id").collect()
    assert loaded.transform(df).orderBy("id").collect() == before


def test_load_refuses_metadata_without_a_threshold(spark, wine, tmp_path):
    _, df = wine
    model = KNNOutlierDetector(k=3).fit(df)
    model._state = {}  # as a writer that forgot the threshold would save it
    model.write().save(str(tmp_path / "m"))
    with pytest.raises(ModelLoadError, match="lacks a finite outlier threshold"):
        KNNOutlierModel.load(str(tmp_path / "m"))


def test_scoring_with_other_fitted_params_is_refused(spark, wine):
    _, df = wine
    model = KNNOutlierDetector(k=3).fit(df)
    with pytest.raises(ValueError, match=r"Param k is 4 but this model's threshold was fitted"):
        model.setK(4).transform(df)
    model.setK(3).setMethod("mean")
    with pytest.raises(ValueError, match="Param method is 'mean' .* method='largest'"):
        model.transform(df)
    model.setMethod("largest").setNprobe(1)  # fewer shards visited: other scores
    with pytest.raises(ValueError, match="Param nprobe is 1 .* fitted with nprobe=None"):
        model.transform(df)


def test_handle_invalid_keep_gives_null_outputs(spark, wine):
    _, df = wine
    model = KNNOutlierDetector(k=3, handleInvalid="keep").fit(df)
    queries = spark.createDataFrame([([float("nan")] * 13,), ([0.0] * 13,)], ["features"])
    rows = model.transform(queries).collect()
    assert rows[0]["outlierScore"] is None and rows[0]["prediction"] is None
    assert rows[1]["prediction"] == 1.0


# ------------------------------------------------------------ bad input, before any job


@pytest.mark.parametrize("value", [0, 0.0, -0.1, 0.51, 1.0, float("nan")])
def test_contamination_out_of_range(value):
    with pytest.raises(ValueError, match=r"Param contamination must be a number in \(0, 0.5\]"):
        KNNOutlierDetector(contamination=value)


def test_contamination_not_a_number():
    with pytest.raises(TypeError, match=r"Param contamination must be a number .*got '0.1'"):
        KNNOutlierDetector(contamination="0.1")


def test_unknown_method():
    with pytest.raises(
        ValueError, match="Param method must be one of 'largest', 'mean', 'median'; got 'max'"
    ):
        KNNOutlierDetector(method="max")


def test_k_below_one():
    with pytest.raises(ValueError, match="Param k must be an integer >= 1; got 0"):
        KNNOutlierDetector(k=0)


def test_missing_features_column(spark):
    df = spark.createDataFrame([([0.0],)], ["vec"])
    with no_spark_job(spark), pytest.raises(ValueError, match="features"):
        KNNOutlierDetector(k=1).fit(df)


def test_k_must_leave_other_rows(spark):
    df = spark.createDataFrame([([0.0],), ([1.0],), ([2.0],)], ["features"])
    with pytest.raises(
        InvalidInputError, match=r"Param k must be < the number of training rows \(3\)"
    ):
        KNNOutlierDetector(k=3).fit(df)


def test_existing_output_column(spark, wine):
    _, df = wine
    model = KNNOutlierDetector(k=3).fit(df)
    with pytest.raises(InvalidInputError, match=r"Output column 'id' \(param outlierScoreCol\)"):
        model.setOutlierScoreCol("id").transform(df)
