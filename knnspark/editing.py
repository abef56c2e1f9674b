"""Wilson's editing: drop the training rows their own neighbors disagree with.

imbalanced-learn's ``EditedNearestNeighbours`` as a Spark ML Transformer: each row of a
targeted class is searched against all the rows (itself left out, matched by id) and kept only
when its ``k`` nearest neighbors agree with its label — all of them (``kindSel="all"``) or
their most common label (``kindSel="mode"``).  The search is knnspark's own exact search.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.param import Param, Params
from pyspark.ml.param.shared import HasFeaturesCol, HasLabelCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from knnspark.classification import KNNClassifier
from knnspark.converters import one_of
from knnspark.errors import InvalidInputError
from knnspark.leave_out import leave_query_out
from knnspark.params import _KNNSharedParams, _KNNSupervisedParams
from knnspark.schema import check_label_column, column, feature_array_expr

__all__ = ["KIND_SELECTIONS", "SAMPLING_STRATEGIES", "EditedNearestNeighbors"]

#: Valid values of ``kindSel`` (imbalanced-learn's ``kind_sel``).
KIND_SELECTIONS = ("all", "mode")
#: Valid values of ``samplingStrategy`` (imbalanced-learn's names for cleaning methods).
SAMPLING_STRATEGIES = ("auto", "all")

# Temporary columns; a name the input already has is refused with a clear message.
_ROW_ID = "_knnspark_edit_row_id"
_NEIGHBORS = "_knnspark_edit_neighbors"
_SCRATCH = ("_knnspark_edit_prediction", "_knnspark_edit_probability", "_knnspark_edit_raw")


class _EditedNearestNeighborsParams(HasFeaturesCol, HasLabelCol):
    """Params of :class:`EditedNearestNeighbors`."""

    k = _KNNSharedParams.k
    metric = _KNNSharedParams.metric
    p = _KNNSharedParams.p
    numShards = _KNNSharedParams.numShards
    kindSel: Param[str] = Param(
        Params._dummy(),
        "kindSel",
        "which rows stay: 'all' (every one of the k neighbors has the row's label) or 'mode' "
        "(the neighbors' most common label is the row's; ties go to the smallest label)",
        typeConverter=one_of("kindSel", KIND_SELECTIONS),
    )
    samplingStrategy: Param[str] = Param(
        Params._dummy(),
        "samplingStrategy",
        "classes whose rows may be dropped: 'auto' (every class but the minority, the one "
        "with the fewest rows, the smallest label among equals) or 'all'",
        typeConverter=one_of("samplingStrategy", SAMPLING_STRATEGIES),
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._setDefault(
            k=3, kindSel="all", samplingStrategy="auto", metric="euclidean", p=2.0, numShards=None
        )

    # The shared params' accessors are the estimators' own (knnspark.params).
    getK, setK = _KNNSharedParams.getK, _KNNSharedParams.setK
    getMetric, setMetric = _KNNSharedParams.getMetric, _KNNSharedParams.setMetric
    getP, setP = _KNNSharedParams.getP, _KNNSharedParams.setP
    getNumShards, setNumShards = _KNNSharedParams.getNumShards, _KNNSharedParams.setNumShards
    setFeaturesCol = _KNNSharedParams.setFeaturesCol
    setLabelCol = _KNNSupervisedParams.setLabelCol

    def getKindSel(self) -> str:
        return self.getOrDefault(self.kindSel)

    def setKindSel(self, value: str) -> Any:
        return self._set(kindSel=value)

    def getSamplingStrategy(self) -> str:
        return self.getOrDefault(self.samplingStrategy)

    def setSamplingStrategy(self, value: str) -> Any:
        return self._set(samplingStrategy=value)


class EditedNearestNeighbors(
    Transformer, _EditedNearestNeighborsParams, DefaultParamsReadable, DefaultParamsWritable
):
    """Drop the rows whose nearest neighbors disagree with their label (Wilson's editing).

    ``transform(df)`` returns the rows of ``df`` that are kept, with all their columns.  A
    row of a targeted class (``samplingStrategy``) is kept when its ``k`` nearest other rows
    (exact search, ``metric``; the row itself left out by id) all have its label
    (``kindSel="all"``) or have it as their most common label (``"mode"``); rows of other
    classes are all kept.  Labels must be integer class values, as for
    :class:`~knnspark.KNNClassifier`.  Each ``transform`` indexes ``df`` (a fit) and then
    searches it lazily, so ``df`` must give the same rows each time it is evaluated: cache
    a DataFrame filtered or sampled by ``rand()`` first.

    Rows are numbered in DataFrame order and distance ties go to the smaller number, so
    for data without exact duplicates of different labels the kept rows are those of
    imbalanced-learn's ``EditedNearestNeighbours(n_neighbors=k, kind_sel=kindSel,
    sampling_strategy=samplingStrategy)`` (which drops a row's first neighbor instead of
    the row itself, and takes the first-seen class as the minority among equals).

    In a :class:`~pyspark.ml.Pipeline` it edits the training rows before the next stage
    fits; a fitted ``PipelineModel`` runs every stage, so it would edit (and need labels
    in) what it scores: score with the stages after it, e.g.
    ``PipelineModel(stages=fitted.stages[1:])``.

    Examples
    --------
    >>> df = spark.createDataFrame(
    ...     [([0.0], 0.0), ([0.1], 0.0), ([0.2], 1.0), ([0.3], 0.0), ([5.0], 1.0),
    ...      ([5.1], 1.0), ([5.2], 1.0), ([5.3], 1.0)], ["features", "label"])
    >>> editor = EditedNearestNeighbors(k=3, kindSel="mode", samplingStrategy="all")
    >>> kept = editor.transform(df)  # drops ([0.2], 1.0): its neighbors say 0.0
    >>> [r["label"] for r in kept.collect()]
    [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    """

    @keyword_only
    def __init__(
        self,
        *,
        k: int = 3,
        kindSel: str = "all",
        samplingStrategy: str = "auto",
        featuresCol: str = "features",
        labelCol: str = "label",
        metric: str = "euclidean",
        p: float = 2.0,
        numShards: int | None = None,
    ) -> None:
        super().__init__()
        self._set(**self._input_kwargs)

    @keyword_only
    def setParams(self, **kwargs: Any) -> EditedNearestNeighbors:
        """Set any of the constructor's params; returns ``self``."""
        return self._set(**self._input_kwargs)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        features_col, label_col, k = self.getFeaturesCol(), self.getLabelCol(), self.getK()
        feature_array_expr(dataset.schema, features_col)  # a missing column fails here
        check_label_column(dataset.schema, label_col, classifier=True)
        for name in (_ROW_ID, _NEIGHBORS, *_SCRATCH):
            if name in dataset.columns:
                raise InvalidInputError(
                    f"Column '{name}' is reserved by EditedNearestNeighbors; rename it."
                )
        numbered = dataset.withColumn(_ROW_ID, F.monotonically_increasing_id())
        model = KNNClassifier(
            k=1,
            featuresCol=features_col,
            labelCol=label_col,
            idCol=_ROW_ID,
            metric=self.getMetric(),
            p=self.getP(),
            algorithm="brute",
            numShards=self.getNumShards(),
            predictionCol=_SCRATCH[0],
            probabilityCol=_SCRATCH[1],
            rawPredictionCol=_SCRATCH[2],
            neighborsCol=_NEIGHBORS,
        ).fit(numbered)
        if k >= model.numTrainingRows:
            raise InvalidInputError(
                f"Param k must be < the number of rows ({model.numTrainingRows}) for "
                f"EditedNearestNeighbors, which compares each row with its k nearest other "
                f"rows; got {k}."
            )
        targets = _target_classes(model.classes, model.classCounts, self.getSamplingStrategy())
        searched = model.setK(k + 1).transform(numbered)
        neighbors = F.col(_NEIGHBORS)
        labels = leave_query_out(
            F.transform(neighbors, lambda n: n["id"]),
            F.transform(neighbors, lambda n: n["label"]),
            F.col(_ROW_ID),
            k,
        )
        own = column(label_col).cast("double")
        agree = _agrees(labels, own, self.getKindSel())
        kept = searched.filter(~own.isin(*targets) | agree)
        return kept.select(*[column(c) for c in dataset.columns])


def _target_classes(classes: np.ndarray, counts: np.ndarray, strategy: str) -> list[float]:
    """The classes whose rows may be dropped (imbalanced-learn's cleaning strategies)."""
    if strategy == "all":
        return [float(c) for c in classes]
    minority = classes[int(np.argmin(counts))]  # argmin: the smallest class among equals
    return [float(c) for c in classes if c != minority]


def _agrees(labels: Column, own: Column, kind_sel: str) -> Column:
    """Whether the neighbors' labels agree with the row's own label."""
    if kind_sel == "all":
        return F.forall(labels, lambda label: label == own)
    # The most common label, ties to the smallest (scipy.stats.mode, as imbalanced-learn).
    ranked = F.array_sort(
        F.transform(
            labels,
            lambda label: F.struct(
                (-F.size(F.filter(labels, lambda other: other == label))).alias("n"),
                label.alias("label"),
            ),
        )
    )
    return ranked[0]["label"] == own
