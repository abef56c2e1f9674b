"""EditedNearestNeighbors against imbalanced-learn's EditedNearestNeighbours.

Both keep the same rows (compared by index). knnspark stores features as float32, so
imbalanced-learn gets the same float32-rounded values (as float64). Where a row's k-th and
(k+1)-th other rows are exactly as far (iris has such ties; wine and breast cancer none),
imbalanced-learn's tree picks either and knnspark the smaller index, so only those rows may
differ.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from imblearn.under_sampling import EditedNearestNeighbours
from pyspark.ml import Pipeline, PipelineModel
from sklearn import datasets
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

from knnspark import EditedNearestNeighbors, InvalidInputError, KNNClassifier


def _load(name):
    x, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    return x.astype(np.float32).astype(np.float64), y.astype(np.float64)


def _frame(spark, x, y):
    return spark.createDataFrame(
        pd.DataFrame({"idx": np.arange(len(x)), "features": list(x), "label": y})
    )


def _reference(x, y, k, kind_sel, strategy):
    enn = EditedNearestNeighbours(n_neighbors=k, kind_sel=kind_sel, sampling_strategy=strategy)
    enn.fit_resample(x, y)
    return sorted(enn.sample_indices_.tolist())


def _tied_at_k(x, k):
    """Rows whose k-th and (k+1)-th nearest other rows are equally far."""
    dist, _ = NearestNeighbors(n_neighbors=k + 2, algorithm="brute").fit(x).kneighbors(x)
    return set(np.flatnonzero(dist[:, k + 1] - dist[:, k] <= 1e-9 * dist[:, k + 1]).tolist())


CASES = [("all", "auto", 3), ("mode", "all", 5)]
SLOW_CASES = [("all", "all", 3), ("mode", "auto", 3), ("all", "auto", 7), ("mode", "all", 4)]


@pytest.mark.parametrize("dataset", ["wine", "breast_cancer", "iris"])
@pytest.mark.parametrize(
    ("kind_sel", "strategy", "k"),
    CASES + [pytest.param(*case, marks=pytest.mark.slow) for case in SLOW_CASES],
)
def test_kept_rows_match_imbalanced_learn(spark, dataset, kind_sel, strategy, k):
    x, y = _load(dataset)
    editor = EditedNearestNeighbors(k=k, kindSel=kind_sel, samplingStrategy=strategy, numShards=3)
    kept = editor.transform(_frame(spark, x, y))
    assert kept.columns == ["idx", "features", "label"]
    got = {r["idx"] for r in kept.select("idx").collect()}
    differ = got ^ set(_reference(x, y, k, kind_sel, strategy))
    tied = _tied_at_k(x, k)
    assert differ <= tied
    if dataset != "iris":
        assert tied == set()


def test_same_rows_whatever_the_partitioning(spark):
    x, y = _load("wine")
    df = _frame(spark, x, y)
    one = EditedNearestNeighbors(numShards=1).transform(df.coalesce(1))
    many = EditedNearestNeighbors(numShards=4).transform(df.repartition(5, "idx").sort("idx"))
    assert sorted(one.toPandas()["idx"]) == sorted(many.toPandas()["idx"])


def test_in_a_pipeline_before_the_classifier(spark, tmp_path):
    x, y = _load("breast_cancer")
    test = np.arange(len(x)) % 4 == 0
    train_df = _frame(spark, x[~test], y[~test])
    pipeline = Pipeline(stages=[EditedNearestNeighbors(k=3), KNNClassifier(k=5, numShards=2)])
    fitted = pipeline.fit(train_df)

    kept = _reference(x[~test], y[~test], 3, "all", "auto")
    assert fitted.stages[1].numTrainingRows == len(kept)
    reference = KNeighborsClassifier(n_neighbors=5).fit(x[~test][kept], y[~test][kept])
    # Score with the stages after the editor: scoring must not edit the rows scored.
    scorer = PipelineModel(stages=fitted.stages[1:])
    predicted = scorer.transform(_frame(spark, x[test], y[test])).orderBy("idx").toPandas()
    np.testing.assert_array_equal(predicted["prediction"], reference.predict(x[test]))

    pipeline.write().save(str(tmp_path / "pipeline"))
    loaded = Pipeline.load(str(tmp_path / "pipeline")).getStages()[0]
    assert (loaded.getK(), loaded.getKindSel(), loaded.getSamplingStrategy()) == (3, "all", "auto")


# ------------------------------------------------------------ bad input


def test_unknown_kind_sel():
    with pytest.raises(ValueError, match="Param kindSel must be one of 'all', 'mode'; got 'any'"):
        EditedNearestNeighbors(kindSel="any")


def test_unknown_sampling_strategy():
    with pytest.raises(
        ValueError, match="Param samplingStrategy must be one of 'auto', 'all'; got 'majority'"
    ):
        EditedNearestNeighbors(samplingStrategy="majority")


def test_k_below_one():
    with pytest.raises(ValueError, match="Param k must be an integer >= 1; got 0"):
        EditedNearestNeighbors(k=0)


def test_missing_columns(spark):
    df = spark.createDataFrame([([0.0], 1.0)], ["vec", "label"])
    with pytest.raises(ValueError, match="features"):
        EditedNearestNeighbors().transform(df)
    df = spark.createDataFrame([([0.0], 1.0)], ["features", "y"])
    with pytest.raises(ValueError, match="label"):
        EditedNearestNeighbors().transform(df)


def test_string_labels_are_refused(spark):
    df = spark.createDataFrame([([0.0], "a")], ["features", "label"])
    with pytest.raises(TypeError, match=r"Column 'label' \(param labelCol\) must be numeric"):
        EditedNearestNeighbors().transform(df)


def test_k_must_leave_other_rows(spark):
    df = spark.createDataFrame([([0.0], 0.0), ([1.0], 1.0), ([2.0], 1.0)], ["features", "label"])
    with pytest.raises(InvalidInputError, match=r"Param k must be < the number of rows \(3\)"):
        EditedNearestNeighbors(k=3).transform(df)
