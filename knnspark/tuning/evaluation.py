"""Evaluate every param map of a group from one neighbor search (driver side).

:class:`Evaluation` gives the metric of each param map of a :class:`SearchGroup` for one fold.
With one of Spark's built-in evaluators (:func:`fast_metric`), a single ``mapInArrow`` pass
searches, scores every map and reduces the rows to the sums the evaluator's formula needs
(:mod:`knnspark.kernels.metric_sums`); :func:`metrics_from_sums` applies the formula to them.
Any other evaluator, and the maps the sums cannot answer, get the scored rows, cached, and
one copy of the evaluator per map whose column params read that map's prediction columns.
The executor side of both paths is :mod:`knnspark.tuning.scoring`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.pool import ThreadPool
from typing import Any

import numpy as np
from pyspark import StorageLevel, inheritable_thread_target
from pyspark.ml import Model
from pyspark.ml.evaluation import (
    BinaryClassificationEvaluator,
    Evaluator,
    MulticlassClassificationEvaluator,
    RegressionEvaluator,
)
from pyspark.ml.functions import array_to_vector
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from knnspark.kernels.metric_sums import (
    FAMILY_METRICS,
    MetricSpec,
    Partials,
    merge_partials,
    metric_value,
)
from knnspark.kernels.predict import resolve_class_weights
from knnspark.schema import column
from knnspark.tuning.grouping import Candidate, SearchGroup
from knnspark.tuning.scoring import (
    METRIC_PARTIALS_SCHEMA,
    NEIGHBOR_DISTANCES,
    NEIGHBOR_LABELS,
    SCORE_TYPES,
    Scoring,
    metric_partials_fn,
    score_batches_fn,
)

__all__ = [
    "ROWS_PER_EVALUATION_TASK",
    "SCORE_PREFIX",
    "Evaluation",
    "FastMetric",
    "evaluator_redirects",
    "fast_metric",
    "metrics_from_sums",
    "persisted",
]

#: Validation rows each task of an evaluation job reads, at most (fewer tasks, less overhead).
ROWS_PER_EVALUATION_TASK = 100_000

#: Prefix of the temporary per-param-map prediction columns.
SCORE_PREFIX = "__knncv_"

# Evaluator params that may name a column the model writes.
_OUTPUT_PARAMS = ("predictionCol", "rawPredictionCol", "probabilityCol")

# Spark's evaluators whose metrics the sums can give, by family (exact types: no subclass).
_FAMILIES = {
    MulticlassClassificationEvaluator: "multiclass",
    RegressionEvaluator: "regression",
    BinaryClassificationEvaluator: "binary",
}


def evaluator_redirects(evaluator: Evaluator, outputs: dict[str, str]) -> dict[str, str]:
    """Evaluator column params that read a model output, mapped to that output's kind.

    Parameters
    ----------
    evaluator : Evaluator
    outputs : dict of str to str
        The model's output columns and their kinds (``"prediction"``, ``"rawPrediction"``,
        ``"probability"``).

    Returns
    -------
    dict of str to str
        Evaluator param name (``"predictionCol"``, ...) -> kind of the output it reads.

    Raises
    ------
    ValueError
        If the evaluator reads none of the columns the model writes.
    """
    reads = {}
    for name in _OUTPUT_PARAMS:
        if not evaluator.hasParam(name) or not evaluator.isDefined(name):
            continue
        if (
            name == "probabilityCol"
            and isinstance(evaluator, MulticlassClassificationEvaluator)
            and evaluator.getMetricName() != "logLoss"
        ):
            continue  # only logLoss reads the probabilities
        reads[name] = evaluator.getOrDefault(name)
    redirects = {name: outputs[column] for name, column in reads.items() if column in outputs}
    if not redirects:
        raise ValueError(
            f"Param evaluator reads the columns {reads}, none of which the estimator writes "
            f"(its outputs are {sorted(outputs)}); set the evaluator's column params to match."
        )
    return redirects


@contextmanager
def persisted(df: DataFrame) -> Iterator[DataFrame]:
    """``df`` persisted for the duration of the block (left as it is if already cached:
    the caller's cache of the same plan is not ours to drop)."""
    if df.storageLevel != StorageLevel.NONE:
        yield df
        return
    df.persist()
    try:
        yield df
    finally:
        df.unpersist()


@dataclass(frozen=True)
class FastMetric:
    """How the metric of a built-in evaluator is computed without calling it."""

    spec: MetricSpec
    kind: str  # the model output the evaluator reads
    label_col: str
    weight_col: str | None


def fast_metric(
    evaluator: Evaluator, schema: T.StructType, redirects: dict[str, str]
) -> FastMetric | None:
    """The fast path for ``evaluator``, or None when only the evaluator itself can answer.

    Spark's own ``MulticlassClassificationEvaluator`` (all metrics but ``logLoss``),
    ``RegressionEvaluator`` and ``BinaryClassificationEvaluator`` qualify, when their label
    (and weight) columns are numeric columns of the data; subclasses never do.
    """
    family = _FAMILIES.get(type(evaluator))
    if family is None or evaluator.getMetricName() not in FAMILY_METRICS[family]:
        return None
    reads = "rawPredictionCol" if family == "binary" else "predictionCol"
    if set(redirects) != {reads}:
        return None
    kind = redirects[reads]
    if family != "binary" and kind != "prediction":
        return None
    label_col = evaluator.getLabelCol()
    weight_col = evaluator.getOrDefault("weightCol") if evaluator.isDefined("weightCol") else ""
    for name in (label_col, weight_col):
        # Spark's evaluators resolve a dotted name as a nested field: leave those to them.
        if name and (
            "." in name
            or name not in schema.names
            or not isinstance(schema[name].dataType, T.NumericType)
        ):
            return None
    spec = MetricSpec(family, evaluator.getMetricName(), **_formula_options(evaluator, family))
    return FastMetric(spec, kind, label_col, weight_col or None)


def _formula_options(evaluator: Evaluator, family: str) -> dict[str, Any]:
    """The evaluator params its family's formula reads, as :class:`MetricSpec` fields."""
    if family == "multiclass":
        return dict(beta=evaluator.getBeta(), metric_label=evaluator.getMetricLabel())
    if family == "regression":
        return dict(through_origin=evaluator.getThroughOrigin())
    return dict(num_bins=evaluator.getNumBins())


class Evaluation:
    """Scores a fold's validation rows for every param map of a group and evaluates each.

    With a built-in evaluator (see :func:`fast_metric`), one pass searches, scores and reduces
    the rows to each map's metric sums. Otherwise, and for the maps the fast path cannot
    answer, each param map gets its own copy of the evaluator, made once, whose column params
    read that map's prediction columns.
    """

    def __init__(
        self, evaluator: Evaluator, groups: list[SearchGroup], threads: int, dataset: DataFrame
    ) -> None:
        self.evaluators: dict[int, Evaluator] = {}
        # The outputs the evaluator reads, per group: only those are computed.
        self.kinds: dict[int, tuple[str, ...]] = {}
        self.fast: dict[int, FastMetric | None] = {}
        for group in groups:
            redirects = evaluator_redirects(evaluator, group.outputs)
            self.kinds[id(group)] = tuple(sorted(set(redirects.values())))
            self.fast[id(group)] = fast_metric(evaluator, dataset.schema, redirects)
            for c in group.candidates:
                params = {
                    evaluator.getParam(name): _score_column(c.index, kind)
                    for name, kind in redirects.items()
                }
                self.evaluators[c.index] = evaluator.copy(params)
        self.threads = threads
        self.run_in_thread = inheritable_thread_target(dataset.sparkSession)

    def run(
        self, model: Model, validation: DataFrame, validation_rows: int, group: SearchGroup
    ) -> dict[int, float]:
        """Metric of every param map of ``group``, by its index in estimatorParamMaps."""
        metrics: dict[int, float] = {}
        fast = self.fast[id(group)]
        if fast is not None:
            metrics = metrics_from_sums(model, validation, group, fast)
        rest = [c for c in group.candidates if c.index not in metrics]
        if rest:
            metrics.update(self._evaluate(model, validation, validation_rows, group, rest))
        return metrics

    def _evaluate(
        self,
        model: Model,
        validation: DataFrame,
        validation_rows: int,
        group: SearchGroup,
        candidates: list[Candidate],
    ) -> dict[int, float]:
        """The user's evaluator, called once per param map over cached scored rows."""
        scored = _scored_validation(model, validation, group, candidates, self.kinds[id(group)])
        with persisted(scored):
            # One pass runs the neighbor search and the scoring with the data's parallelism.
            scored.count()
            # Each evaluation is a small job; over few cached partitions it takes less time.
            partitions = max(1, math.ceil(validation_rows / ROWS_PER_EVALUATION_TASK))
            frame = scored.coalesce(partitions)

            def evaluate(index: int) -> tuple[int, float]:
                return index, float(self.evaluators[index].evaluate(frame))

            indexes = [c.index for c in candidates]
            if self.threads == 1:
                return dict(map(evaluate, indexes))
            with ThreadPool(processes=min(self.threads, len(indexes))) as pool:
                return dict(pool.map(self.run_in_thread(evaluate), indexes))


def _scorings(model: Model, candidates: list[Candidate]) -> list[tuple[int, Scoring]]:
    """Each candidate's index and search-time params, class weights resolved for the model."""
    classes = model.classes if hasattr(model, "classes") else None
    scorings = []
    for c in candidates:
        class_weights = None
        if classes is not None:
            resolved = resolve_class_weights(c.class_weights, classes, model.classCounts)
            class_weights = None if resolved is None else tuple(float(w) for w in resolved)
        scorings.append((c.index, Scoring(c.k, c.weights, class_weights, c.bandwidth)))
    return scorings


def _classes(model: Model) -> tuple[float, ...] | None:
    if not hasattr(model, "classes"):
        return None
    return tuple(float(c) for c in model.classes)


def metrics_from_sums(
    model: Model, validation: DataFrame, group: SearchGroup, fast: FastMetric
) -> dict[int, float]:
    """The metric of every map of ``group`` that the sums can give, from one Spark job.

    Empty when some validation rows have a label, weight or neighbor list the sums cannot
    represent (Spark's evaluator decides what those mean, or raises).
    """
    scorings = _scorings(model, group.candidates)
    spec = fast.spec
    weight = column(fast.weight_col).cast("double") if fast.weight_col else F.lit(1.0)
    rows = model.neighborLabels(validation, k=group.max_k).select(
        column(fast.label_col).cast("double").alias("label"),
        weight.alias("weight"),
        NEIGHBOR_LABELS,
        NEIGHBOR_DISTANCES,
    )
    fn = metric_partials_fn(
        scorings=tuple(s for _, s in scorings),
        classes=_classes(model),
        width=group.max_k,
        family=spec.family,
        kind=fast.kind,
        max_keys=spec.max_distinct_scores,
    )
    table = rows.mapInArrow(fn, METRIC_PARTIALS_SCHEMA).toArrow()
    positions = table.column("map").to_numpy()
    a = table.column("a").to_numpy()
    if a[positions == -1].sum() > 0:
        return {}
    b = table.column("b").to_numpy()
    overflow = table.column("overflow").to_numpy(zero_copy_only=False)
    sums = table.column("sums").to_pylist()
    metrics = {}
    for position, (index, _) in enumerate(scorings):
        mine = np.flatnonzero(positions == position)
        if overflow[mine].any():
            continue
        values = np.array([sums[i] for i in mine], dtype=np.float64).reshape(len(mine), -1)
        part = Partials(a[mine], b[mine], values)
        value = metric_value(spec, merge_partials(spec.family, [part], spec.max_distinct_scores))
        if value is not None:
            metrics[index] = value
    return metrics


def _score_column(index: int, kind: str) -> str:
    return f"{SCORE_PREFIX}{index}_{kind}"


def _scored_validation(
    model: Model,
    validation: DataFrame,
    group: SearchGroup,
    candidates: list[Candidate],
    kinds: tuple[str, ...],
) -> DataFrame:
    """Validation rows (without features) plus each candidate's outputs of the given kinds."""
    scorings = _scorings(model, candidates)
    neighbors = model.neighborLabels(validation, k=group.max_k)
    # The search needed the features; evaluators read the label and weight columns.
    neighbors = neighbors.drop(group.features_col)
    passthrough = [
        f for f in neighbors.schema.fields if f.name not in (NEIGHBOR_LABELS, NEIGHBOR_DISTANCES)
    ]
    columns = [(_score_column(index, kind), kind) for index, _ in scorings for kind in kinds]
    schema = T.StructType(
        passthrough + [T.StructField(name, SCORE_TYPES[kind], True) for name, kind in columns]
    )
    fn = score_batches_fn(
        scorings=tuple(scorings),
        classes=_classes(model),
        width=group.max_k,
        kinds=kinds,
        column_prefix=SCORE_PREFIX,
    )
    scored = neighbors.mapInArrow(fn, schema)
    vectors = {
        name: F.when(F.col(name).isNotNull(), array_to_vector(F.col(name)))
        for name, kind in columns
        if kind != "prediction"
    }
    return scored.withColumns(vectors) if vectors else scored
