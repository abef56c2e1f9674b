"""Scoring many param maps from one neighbor list, and grouping the param maps (no Spark)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from pyspark.ml.tuning import ParamGridBuilder
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor, NearestNeighbors

from knnspark import KNNClassifier, KNNRegressor
from knnspark.tuning.grouping import group_param_maps
from knnspark.tuning.scoring import (
    NEIGHBOR_DISTANCES,
    NEIGHBOR_LABELS,
    Scoring,
    metric_partials_fn,
    score_batches_fn,
    score_neighbor_lists,
)

WIDTH = 9


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x, queries = rng.normal(size=(80, 4)), rng.normal(size=(30, 4))
    y_class = rng.integers(0, 3, size=80).astype(np.float64)
    y_value = rng.normal(size=80)
    dist, idx = NearestNeighbors(n_neighbors=WIDTH).fit(x).kneighbors(queries)
    return x, queries, y_class, y_value, dist, idx


@pytest.mark.parametrize("k", [1, 2, 5, WIDTH])
@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_classification_scores_match_scikit_learn_at_every_k(data, k, weights):
    x, queries, y, _, dist, idx = data
    classes = np.unique(y)
    scores = score_neighbor_lists(y[idx], dist, Scoring(k, weights), classes)
    reference = KNeighborsClassifier(n_neighbors=k, weights=weights).fit(x, y)
    np.testing.assert_allclose(scores["probability"], reference.predict_proba(queries), atol=1e-12)
    np.testing.assert_array_equal(scores["prediction"], reference.predict(queries))
    assert scores["rawPrediction"].shape == (len(queries), len(classes))


@pytest.mark.parametrize("k", [1, 4, WIDTH])
@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_regression_scores_match_scikit_learn_at_every_k(data, k, weights):
    x, queries, _, y, dist, idx = data
    scores = score_neighbor_lists(y[idx], dist, Scoring(k, weights), None)
    reference = KNeighborsRegressor(n_neighbors=k, weights=weights).fit(x, y)
    np.testing.assert_allclose(scores["prediction"], reference.predict(queries), atol=1e-12)
    assert set(scores) == {"prediction"}


def _neighbor_batch(labels, dist, valid):
    list_type = pa.list_(pa.float64())
    as_lists = [list(row) if ok else None for row, ok in zip(labels, valid, strict=True)]
    as_dists = [list(row) if ok else None for row, ok in zip(dist, valid, strict=True)]
    return pa.RecordBatch.from_pydict(
        {
            "label": pa.array(np.arange(len(valid), dtype=np.float64)),
            NEIGHBOR_LABELS: pa.array(as_lists, type=list_type),
            NEIGHBOR_DISTANCES: pa.array(as_dists, type=list_type),
        }
    )


def test_score_batches_adds_columns_per_map_and_nulls_for_rows_without_neighbors(data):
    _, _, y, _, dist, idx = data
    labels, dist = y[idx][:6], dist[:6]
    valid = np.array([True, False, True, True, False, True])
    classes = (0.0, 1.0, 2.0)
    scorings = ((4, Scoring(3, "uniform")), (7, Scoring(5, "distance", (1.0, 2.0, 0.5))))
    fn = score_batches_fn(
        scorings, classes, WIDTH, ("prediction", "probability"), column_prefix="__t_"
    )
    (out,) = list(fn(iter([_neighbor_batch(labels, dist, valid)])))

    assert out.schema.names == [
        "label",
        "__t_4_prediction",
        "__t_4_probability",
        "__t_7_prediction",
        "__t_7_probability",
    ]
    for index, scoring in scorings:
        expected = score_neighbor_lists(labels[valid], dist[valid], scoring, np.array(classes))
        prediction = out.column(f"__t_{index}_prediction")
        assert prediction.null_count == 2
        np.testing.assert_array_equal(
            np.asarray(prediction.to_pylist(), dtype=object)[~valid], [None, None]
        )
        np.testing.assert_array_equal(prediction.drop_null().to_numpy(), expected["prediction"])
        probability = out.column(f"__t_{index}_probability")
        np.testing.assert_allclose(
            np.array(probability.drop_null().to_pylist()), expected["probability"]
        )


def test_group_param_maps_shares_a_fit_among_maps_that_differ_in_k_and_weights():
    clf = KNNClassifier(k=3)
    grid = (
        ParamGridBuilder()
        .addGrid(clf.metric, ["euclidean", "manhattan"])
        .addGrid(clf.k, [1, 7, 4])
        .addGrid(clf.weights, ["uniform", "distance"])
        .addGrid(clf.classWeights, [None, "balanced"])
        .build()
    )
    groups = group_param_maps(clf, grid)
    assert len(groups) == 2
    for group, metric in zip(groups, ["euclidean", "manhattan"], strict=True):
        assert len(group.candidates) == 12
        assert group.max_k == 7
        assert group.fit_map == {clf.metric: metric, clf.k: 7, clf.classWeights: None}
        assert {c.index for c in group.candidates} == {
            i for i, m in enumerate(grid) if m[clf.metric] == metric
        }
        assert group.outputs == {
            "prediction": "prediction",
            "rawPrediction": "rawPrediction",
            "probability": "probability",
        }


def test_group_param_maps_compares_resolved_values():
    reg = KNNRegressor(metric="manhattan", predictionCol="yhat")
    # The second map restates the estimator's metric: same search, same group.
    grid = [{reg.k: 2}, {reg.k: 5, reg.metric: "manhattan"}, {reg.k: 3, reg.metric: "cosine"}]
    groups = group_param_maps(reg, grid)
    assert [[c.index for c in g.candidates] for g in groups] == [[0, 1], [2]]
    assert [g.max_k for g in groups] == [5, 3]
    assert groups[0].outputs == {"yhat": "prediction"}
    assert groups[1].candidates[0].weights == "uniform"


def test_metric_partials_sum_usable_rows_and_count_the_others(data):
    _, _, y, _, dist, idx = data
    labels, dist = y[idx][:8], dist[:8]
    valid = np.array([True, False, True, True, True, True, True, True])  # row 1: no neighbors
    batch = _neighbor_batch(labels, dist, valid)
    truth = np.array([0.0, 1.0, np.nan, 2.0, 1.0, 0.0, 2.0, 1.0])  # row 2: NaN label
    weight = np.array([1.0, 1.0, 1.0, -1.0, 2.0, 0.5, 1.0, 3.0])  # row 3: negative weight
    batch = batch.set_column(0, "label", pa.array(truth)).append_column("weight", pa.array(weight))
    scorings = (Scoring(3, "uniform"), Scoring(5, "distance"))
    classes = (0.0, 1.0, 2.0)
    fn = metric_partials_fn(scorings, classes, WIDTH, "multiclass", "prediction", None)
    # Two batches of one partition: one output batch, the sums of both.
    (out,) = list(fn(iter([batch, batch])))
    rows = out.to_pydict()
    unusable = [a for m, a in zip(rows["map"], rows["a"], strict=True) if m == -1]
    assert unusable == [6.0]  # 3 rows in each batch

    usable = np.array([True, False, False, False, True, True, True, True])
    for position, scoring in enumerate(scorings):
        predicted = score_neighbor_lists(labels[usable], dist[usable], scoring, np.array(classes))[
            "prediction"
        ]
        expected = {}
        for t, p, w in zip(truth[usable], predicted, weight[usable], strict=True):
            expected[(t, p)] = expected.get((t, p), 0.0) + 2 * w
        got = {
            (a, b): s[0]
            for m, a, b, s in zip(rows["map"], rows["a"], rows["b"], rows["sums"], strict=True)
            if m == position
        }
        assert got == pytest.approx(expected)
