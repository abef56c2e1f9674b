"""Cross-validation that scores every ``k`` and weighting from one neighbor search.

Spark's :class:`~pyspark.ml.tuning.CrossValidator` fits and searches once per fold and param
map. For KNN, ``k``, ``weights`` and ``classWeights`` change only how the neighbor lists become
predictions, so :class:`KNNCrossValidator` groups the param maps that differ only in those.
Per fold and group it fits one model and searches the validation rows once at the group's
largest ``k`` (``model.neighborLabels``). With one of Spark's built-in evaluators, the same
``mapInArrow`` pass scores every param map from the first ``k`` neighbors and reduces the rows
to the sums the evaluator's formula needs (:mod:`knnspark.kernels.metrics`): one Spark job per
fold and group. Any other evaluator gets the scored rows, cached, once per param map. The folds
are split exactly as Spark splits them, so with exact search the metrics are the ones Spark's
``CrossValidator`` reports.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.pool import ThreadPool
from typing import Any

import numpy as np
import pandas as pd
from pyspark import inheritable_thread_target, keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.evaluation import (
    BinaryClassificationEvaluator,
    Evaluator,
    MulticlassClassificationEvaluator,
    RegressionEvaluator,
)
from pyspark.ml.functions import array_to_vector
from pyspark.ml.param import Param
from pyspark.ml.tuning import CrossValidator, CrossValidatorModel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from knnspark.classification import KNNClassifier
from knnspark.kernels.metrics import (
    FAMILY_METRICS,
    MetricSpec,
    Partials,
    merge_partials,
    metric_value,
)
from knnspark.kernels.predict import resolve_class_weights
from knnspark.regression import KNNRegressor
from knnspark.tuning_scores import (
    METRIC_PARTIALS_SCHEMA,
    NEIGHBOR_DISTANCES,
    NEIGHBOR_LABELS,
    SCORE_TYPES,
    Scoring,
    metric_partials_fn,
    score_batches_fn,
)

__all__ = ["SCORING_PARAMS", "KNNCrossValidator", "KNNCrossValidatorModel"]

#: Params that change how neighbor lists are scored, not which neighbors are found.
SCORING_PARAMS = frozenset({"k", "weights", "classWeights"})

#: Validation rows each task of an evaluation job reads, at most (fewer tasks, less overhead).
ROWS_PER_EVALUATION_TASK = 100_000

#: Prefix of the temporary per-param-map prediction columns.
SCORE_PREFIX = "__knncv_"

# Evaluator params that may name a column the model writes.
_OUTPUT_PARAMS = ("predictionCol", "rawPredictionCol", "probabilityCol")


@dataclass
class _Candidate:
    """One param map, as the scoring of a group's neighbor lists sees it."""

    index: int  # position in estimatorParamMaps
    k: int
    weights: str
    class_weights: Any  # the param value; resolved once the fit knows the classes


@dataclass
class _SearchGroup:
    """Param maps that share one fit and one neighbor search per fold."""

    fit_map: dict[Param, Any]  # estimator params of the group's fit, k = the largest k
    features_col: str
    outputs: dict[str, str]  # model output column -> kind ("prediction", ...)
    candidates: list[_Candidate]

    @property
    def max_k(self) -> int:
        return max(c.k for c in self.candidates)


def _describe(param_map: dict[Param, Any]) -> str:
    return "{" + ", ".join(f"{p.name}={v!r}" for p, v in param_map.items()) + "}"


def group_param_maps(estimator: Estimator, param_maps: Sequence[dict]) -> list[_SearchGroup]:
    """Group the param maps that differ only in :data:`SCORING_PARAMS`.

    Two maps share a group when every other param of the estimator resolves to the same value;
    the group's fit uses those values with ``k`` set to the group's largest ``k`` (and no
    ``classWeights``, which are applied when scoring).
    """
    groups: dict[tuple[tuple[str, str], ...], _SearchGroup] = {}
    for index, param_map in enumerate(param_maps):
        resolved = estimator.copy(param_map)
        key = tuple(
            (p.name, repr(resolved.getOrDefault(p)))
            for p in resolved.params
            if p.name not in SCORING_PARAMS and resolved.isDefined(p)
        )
        candidate = _Candidate(
            index=index,
            k=resolved.getK(),
            weights=resolved.getOrDefault("weights"),
            class_weights=(
                resolved.getOrDefault("classWeights") if resolved.hasParam("classWeights") else None
            ),
        )
        group = groups.get(key)
        if group is None:
            outputs = {resolved.getPredictionCol(): "prediction"}
            if isinstance(resolved, KNNClassifier):
                outputs[resolved.getRawPredictionCol()] = "rawPrediction"
                outputs[resolved.getProbabilityCol()] = "probability"
            fit_map = {p: v for p, v in param_map.items() if p.name not in SCORING_PARAMS}
            group = _SearchGroup(fit_map, resolved.getFeaturesCol(), outputs, [])
            groups[key] = group
        group.candidates.append(candidate)
    for group in groups.values():
        group.fit_map[estimator.getParam("k")] = group.max_k
        if estimator.hasParam("classWeights"):
            group.fit_map[estimator.getParam("classWeights")] = None
    return list(groups.values())


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
def _persisted(df: DataFrame) -> Iterator[DataFrame]:
    df.persist()
    try:
        yield df
    finally:
        df.unpersist()


class KNNCrossValidator(CrossValidator):
    """K-fold cross-validation of a knnspark estimator that searches neighbors once per fold.

    A drop-in for :class:`pyspark.ml.tuning.CrossValidator` (same params, same result
    attributes) for :class:`~knnspark.KNNClassifier` and :class:`~knnspark.KNNRegressor`.
    Param maps that differ only in ``k``, ``weights`` or ``classWeights`` share one fit and one
    neighbor search (at their largest ``k``) per fold; maps that change anything else get their
    own. The folds are those of Spark's ``CrossValidator`` with the same ``seed`` (or
    ``foldCol``), so with exact search ``avgMetrics`` and ``stdMetrics`` are Spark's. With
    ``algorithm='hnsw'`` each group is searched once at its largest ``k`` (and
    ``ef >= k``), which may find better neighbors than a search at a smaller ``k`` would.

    Spark's ``MulticlassClassificationEvaluator`` (all metrics but ``logLoss``),
    ``RegressionEvaluator`` and ``BinaryClassificationEvaluator`` are called only where sums
    cannot stand in for them (a binary curve Spark would bin, a ``metricLabel`` without rows,
    rows with a null, NaN or negative label or weight, or without neighbors): otherwise their
    metrics come from sums computed in the scoring pass, with Spark's formulas. Other
    evaluators (subclasses included) are called once per fold and param map; ``parallelism``
    is then the number of threads that call them (each call is a small Spark job over cached
    data, so a few threads shorten the run), and per fold and group the validation rows are
    cached with one prediction per param map (plus the vote and probability vectors when the
    evaluator reads them), without the features. ``collectSubModels=True`` keeps, per fold
    and map, the fold's model with that map's search-time params.

    Examples
    --------
    >>> from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    >>> from pyspark.ml.tuning import ParamGridBuilder
    >>> from knnspark import KNNClassifier
    >>> labels = [0, 0, 1, 0, 0, 0, 1, 1, 0, 1, 1, 1]
    >>> df = spark.createDataFrame(
    ...     [([float(i)], float(y), i % 2) for i, y in enumerate(labels)],
    ...     ["features", "label", "fold"])
    >>> clf = KNNClassifier()
    >>> grid = ParamGridBuilder().addGrid(clf.k, [1, 5]).build()
    >>> cv = KNNCrossValidator(estimator=clf, estimatorParamMaps=grid, numFolds=2,
    ...     evaluator=MulticlassClassificationEvaluator(metricName="accuracy"), foldCol="fold")
    >>> cv_model = cv.fit(df)
    >>> [round(float(m), 3) for m in cv_model.avgMetrics]
    [0.583, 0.75]
    >>> cv_model.bestParams
    {'k': 5}
    >>> cv_model.summary()[["k", "mean", "rank"]].round(3)
       k   mean  rank
    0  1  0.583     2
    1  5  0.750     1
    """

    @keyword_only
    def __init__(
        self,
        *,
        estimator: Estimator | None = None,
        estimatorParamMaps: list[dict] | None = None,
        evaluator: Evaluator | None = None,
        numFolds: int = 3,
        seed: int | None = None,
        parallelism: int = 1,
        collectSubModels: bool = False,
        foldCol: str = "",
    ) -> None:
        kwargs = self._input_kwargs
        super().__init__()
        # Spark's default seed is hash("CrossValidator"); the same default gives the same folds.
        self._setDefault(seed=hash(CrossValidator.__name__))
        self._set(**kwargs)

    def write(self) -> Any:
        """Not supported: PySpark's reader of validators cannot load a subclass's param maps."""
        raise NotImplementedError(
            "KNNCrossValidator cannot be saved; keep its settings in code or in a job config "
            "(jobs/tune.py)."
        )

    # ------------------------------------------------------------ checks (no Spark job)

    def _check_setup(self, dataset: DataFrame) -> list[_SearchGroup]:
        for name in ("estimator", "estimatorParamMaps", "evaluator"):
            if not self.isDefined(name):
                raise ValueError(f"Param {name} must be set before fit.")
        estimator, evaluator = self.getEstimator(), self.getEvaluator()
        if not isinstance(estimator, (KNNClassifier, KNNRegressor)):
            raise TypeError(
                "Param estimator must be a knnspark KNNClassifier or KNNRegressor; got "
                f"{type(estimator).__name__} (use pyspark.ml.tuning.CrossValidator for others)"
            )
        if not isinstance(evaluator, Evaluator):
            raise TypeError(
                f"Param evaluator must be a pyspark.ml Evaluator; got {type(evaluator).__name__}"
            )
        num_folds = self.getNumFolds()
        if num_folds < 2:
            raise ValueError(f"Param numFolds must be an integer >= 2; got {num_folds}")
        param_maps = self.getEstimatorParamMaps()
        if not isinstance(param_maps, (list, tuple)) or not param_maps:
            raise ValueError(
                f"Param estimatorParamMaps must be a non-empty list of param maps; got "
                f"{param_maps!r}"
            )
        for i, param_map in enumerate(param_maps):
            if not isinstance(param_map, dict):
                raise TypeError(
                    f"Param estimatorParamMaps[{i}] must be a dict Param -> value; got "
                    f"{type(param_map).__name__}"
                )
            for param in param_map:
                if not isinstance(param, Param) or param.parent != estimator.uid:
                    raise ValueError(
                        f"Param estimatorParamMaps[{i}] sets {param!r}, which is not a param of "
                        f"the estimator {estimator.uid}"
                    )
        fold_col = self.getFoldCol()
        if fold_col:
            if fold_col not in dataset.columns:
                raise ValueError(
                    f"Column '{fold_col}' (param foldCol) not found; the data has {dataset.columns}"
                )
            if not isinstance(dataset.schema[fold_col].dataType, T.IntegralType):
                raise TypeError(
                    f"Column '{fold_col}' (param foldCol) must hold integers; got "
                    f"{dataset.schema[fold_col].dataType.simpleString()}"
                )
        reserved = [c for c in dataset.columns if c.startswith(SCORE_PREFIX)]
        if reserved:
            raise ValueError(
                f"Column '{reserved[0]}' uses the prefix '{SCORE_PREFIX}', which "
                "KNNCrossValidator reserves for its temporary columns; rename it."
            )
        groups = group_param_maps(estimator, param_maps)
        for group in groups:
            evaluator_redirects(evaluator, group.outputs)
        return groups

    # ------------------------------------------------------------ folds

    def _fold_conditions(self, dataset: DataFrame) -> tuple[DataFrame, list[Column]]:
        """The data and each fold's validation condition, exactly as Spark's ``_kFold``."""
        num_folds, fold_col = self.getNumFolds(), self.getFoldCol()
        if fold_col:
            return dataset, [F.col(fold_col) == F.lit(i) for i in range(num_folds)]
        h = 1.0 / num_folds
        rand_col = self.uid + "_rand"
        df = dataset.select("*", F.rand(self.getSeed()).alias(rand_col))
        return df, [
            (df[rand_col] >= i * h) & (df[rand_col] < (i + 1) * h) for i in range(num_folds)
        ]

    def _fold_rows(self, df: DataFrame, conditions: list[Column]) -> tuple[list[int], list[int]]:
        """Training and validation rows of every fold, counted in one job.

        Fails on an empty fold, as Spark does, and on fold numbers out of range.
        """
        aggs = [F.count(F.when(c, 1)).alias(f"v{i}") for i, c in enumerate(conditions)]
        aggs.append(F.count(F.lit(1)).alias("rows"))
        fold_col, num_folds = self.getFoldCol(), self.getNumFolds()
        if fold_col:
            fold = F.col(fold_col)
            outside = fold.isNull() | (fold < 0) | (fold >= num_folds)
            aggs.append(F.count(F.when(outside, 1)).alias("outside"))
        counts = df.agg(*aggs).first()
        if fold_col and counts["outside"]:
            raise ValueError(
                f"Column '{fold_col}' (param foldCol) must hold fold numbers in "
                f"[0, {num_folds}); {counts['outside']} rows hold other values or null"
            )
        validation = [counts[f"v{i}"] for i in range(num_folds)]
        training = [counts["rows"] - v for v in validation]
        for i in range(num_folds):
            if training[i] == 0:
                raise ValueError(f"The training data at fold {i} is empty.")
            if validation[i] == 0:
                raise ValueError(f"The validation data at fold {i} is empty.")
        return training, validation

    def _check_k(self, groups: list[_SearchGroup], training_rows: list[int]) -> None:
        fewest = min(training_rows)
        fold = training_rows.index(fewest)
        param_maps = self.getEstimatorParamMaps()
        for group in groups:
            for c in group.candidates:
                if c.k > fewest:
                    raise ValueError(
                        f"Param k of estimatorParamMaps[{c.index}] "
                        f"{_describe(param_maps[c.index])} is {c.k}, but fold {fold} has only "
                        f"{fewest} training rows; k must be <= the training rows of every fold"
                    )

    # ------------------------------------------------------------ fit

    def _fit(self, dataset: DataFrame) -> KNNCrossValidatorModel:
        groups = self._check_setup(dataset)
        estimator, evaluator = self.getEstimator(), self.getEvaluator()
        param_maps = self.getEstimatorParamMaps()
        num_folds, num_models = self.getNumFolds(), len(param_maps)
        df, conditions = self._fold_conditions(dataset)
        training_rows, validation_rows = self._fold_rows(df, conditions)
        self._check_k(groups, training_rows)

        metrics = [[0.0] * num_models for _ in range(num_folds)]
        sub_models: list[list[Any]] | None = None
        if self.getCollectSubModels():
            sub_models = [[None] * num_models for _ in range(num_folds)]
        evaluation = _Evaluation(evaluator, groups, max(1, self.getParallelism()), dataset)
        for i, condition in enumerate(conditions):
            with (
                _persisted(df.filter(~condition)) as train,
                _persisted(df.filter(condition)) as validation,
            ):
                for group in groups:
                    model = estimator.fit(train, group.fit_map)
                    fold_metrics = evaluation.run(model, validation, validation_rows[i], group)
                    for index, metric in fold_metrics.items():
                        metrics[i][index] = metric
                    if sub_models is not None:
                        for c in group.candidates:
                            sub_models[i][c.index] = _with_scoring(model, c)

        avg, std = CrossValidator._gen_avg_and_std_metrics(metrics)
        larger_is_better = bool(evaluator.isLargerBetter())
        best = int(np.argmax(avg) if larger_is_better else np.argmin(avg))
        # As Spark does: the best param map refitted on all the data.
        best_model = estimator.fit(dataset, param_maps[best])
        cv_model = KNNCrossValidatorModel(
            best_model, avg, sub_models, std, foldMetrics=metrics, isLargerBetter=larger_is_better
        )
        return self._copyValues(cv_model)


_FAMILIES = {
    MulticlassClassificationEvaluator: "multiclass",
    RegressionEvaluator: "regression",
    BinaryClassificationEvaluator: "binary",
}


@dataclass(frozen=True)
class _FastMetric:
    """How the metric of a built-in evaluator is computed without calling it."""

    spec: MetricSpec
    kind: str  # the model output the evaluator reads
    label_col: str
    weight_col: str | None


def fast_metric(
    evaluator: Evaluator, schema: T.StructType, redirects: dict[str, str]
) -> _FastMetric | None:
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
    options: dict[str, Any] = {}
    if family == "multiclass":
        options = dict(beta=evaluator.getBeta(), metric_label=evaluator.getMetricLabel())
    elif family == "regression":
        options = dict(through_origin=evaluator.getThroughOrigin())
    else:
        options = dict(num_bins=evaluator.getNumBins())
    spec = MetricSpec(family, evaluator.getMetricName(), **options)
    return _FastMetric(spec, kind, label_col, weight_col or None)


class _Evaluation:
    """Scores a fold's validation rows for every param map of a group and evaluates each.

    With a built-in evaluator (see :func:`fast_metric`), one pass searches, scores and reduces
    the rows to each map's metric sums. Otherwise, and for the maps the fast path cannot
    answer, each param map gets its own copy of the evaluator, made once, whose column params
    read that map's prediction columns.
    """

    def __init__(
        self, evaluator: Evaluator, groups: list[_SearchGroup], threads: int, dataset: DataFrame
    ) -> None:
        self.evaluators: dict[int, Evaluator] = {}
        # The outputs the evaluator reads, per group: only those are computed.
        self.kinds: dict[int, tuple[str, ...]] = {}
        self.fast: dict[int, _FastMetric | None] = {}
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
        self, model: Model, validation: DataFrame, validation_rows: int, group: _SearchGroup
    ) -> dict[int, float]:
        """Metric of every param map of ``group``, by its index in estimatorParamMaps."""
        metrics: dict[int, float] = {}
        fast = self.fast[id(group)]
        if fast is not None:
            metrics = _fast_metrics(model, validation, group, fast)
        rest = [c for c in group.candidates if c.index not in metrics]
        if rest:
            metrics.update(self._evaluate(model, validation, validation_rows, group, rest))
        return metrics

    def _evaluate(
        self,
        model: Model,
        validation: DataFrame,
        validation_rows: int,
        group: _SearchGroup,
        candidates: list[_Candidate],
    ) -> dict[int, float]:
        """The user's evaluator, called once per param map over cached scored rows."""
        scored = _scored_validation(model, validation, group, candidates, self.kinds[id(group)])
        with _persisted(scored):
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


def _scorings(model: Model, candidates: list[_Candidate]) -> list[tuple[int, Scoring]]:
    """Each candidate's index and search-time params, class weights resolved for the model."""
    classes = model.classes if hasattr(model, "classes") else None
    scorings = []
    for c in candidates:
        class_weights = None
        if classes is not None:
            resolved = resolve_class_weights(c.class_weights, classes, model.classCounts)
            class_weights = None if resolved is None else tuple(float(w) for w in resolved)
        scorings.append((c.index, Scoring(k=c.k, weights=c.weights, class_weights=class_weights)))
    return scorings


def _classes(model: Model) -> tuple[float, ...] | None:
    if not hasattr(model, "classes"):
        return None
    return tuple(float(c) for c in model.classes)


def _quoted(name: str) -> Column:
    return F.col("`" + name.replace("`", "``") + "`")


def _fast_metrics(
    model: Model, validation: DataFrame, group: _SearchGroup, fast: _FastMetric
) -> dict[int, float]:
    """The metric of every map of ``group`` that the sums can give, from one Spark job.

    Empty when some validation rows have a label, weight or neighbor list the sums cannot
    represent (Spark's evaluator decides what those mean, or raises).
    """
    scorings = _scorings(model, group.candidates)
    spec = fast.spec
    weight = _quoted(fast.weight_col).cast("double") if fast.weight_col else F.lit(1.0)
    rows = model.neighborLabels(validation, k=group.max_k).select(
        _quoted(fast.label_col).cast("double").alias("label"),
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


def _with_scoring(model: Model, candidate: _Candidate) -> Model:
    """The fold's model with one param map's search-time params."""
    extra = {model.getParam("k"): candidate.k, model.getParam("weights"): candidate.weights}
    if model.hasParam("classWeights"):
        extra[model.getParam("classWeights")] = candidate.class_weights
    return model.copy(extra)


def _score_column(index: int, kind: str) -> str:
    return f"{SCORE_PREFIX}{index}_{kind}"


def _scored_validation(
    model: Model,
    validation: DataFrame,
    group: _SearchGroup,
    candidates: list[_Candidate],
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


class KNNCrossValidatorModel(CrossValidatorModel):
    """What :class:`KNNCrossValidator` fits: the best model and the metrics of every param map.

    Attributes, as in :class:`pyspark.ml.tuning.CrossValidatorModel`: ``bestModel`` (the
    estimator refitted on all the data with the best param map), ``avgMetrics``,
    ``subModels`` and ``stdMetrics``; also ``foldMetrics`` (one list per fold),
    :attr:`bestIndex`, :attr:`bestParams` and :meth:`summary`.
    """

    def __init__(
        self,
        bestModel: Model,
        avgMetrics: list[float] | None = None,
        subModels: list[list[Model]] | None = None,
        stdMetrics: list[float] | None = None,
        foldMetrics: list[list[float]] | None = None,
        isLargerBetter: bool = True,
    ) -> None:
        super().__init__(bestModel, avgMetrics, subModels, stdMetrics)
        #: Metric of every param map in every fold: a list of numFolds lists.
        self.foldMetrics = foldMetrics or []
        self._larger_is_better = isLargerBetter

    @property
    def bestIndex(self) -> int:
        """Position of the best param map in ``getEstimatorParamMaps()``."""
        metrics = np.asarray(self.avgMetrics)
        return int(np.argmax(metrics) if self._larger_is_better else np.argmin(metrics))

    @property
    def bestParams(self) -> dict[str, Any]:
        """The best param map, by param name: ``{'k': 7, 'weights': 'distance'}``."""
        best = self.getEstimatorParamMaps()[self.bestIndex]
        return {param.name: value for param, value in best.items()}

    def summary(self) -> pd.DataFrame:
        """Mean and standard deviation of the metric over the folds, one row per param map.

        Returns
        -------
        pandas.DataFrame
            One column per param the grid sets (the estimator's own value where a map leaves
            it out), then ``metric`` (the evaluator's metric name), ``mean``, ``std`` (over
            the folds, as ``avgMetrics`` and ``stdMetrics``) and ``rank`` (1 = best), in the
            order of ``getEstimatorParamMaps()``.
        """
        param_maps = self.getEstimatorParamMaps()
        estimator = self.getEstimator()
        names: list[str] = []
        for param_map in param_maps:
            names.extend(p.name for p in param_map if p.name not in names)
        evaluator = self.getEvaluator()
        metric_name = (
            evaluator.getMetricName()
            if hasattr(evaluator, "getMetricName")
            else type(evaluator).__name__
        )
        rows = []
        for param_map, mean, std in zip(param_maps, self.avgMetrics, self.stdMetrics, strict=True):
            by_name = {p.name: v for p, v in param_map.items()}
            row = {n: by_name[n] if n in by_name else estimator.getOrDefault(n) for n in names}
            row.update(metric=metric_name, mean=float(mean), std=float(std))
            rows.append(row)
        table = pd.DataFrame(rows, columns=[*names, "metric", "mean", "std"])
        ranks = table["mean"].rank(method="min", ascending=not self._larger_is_better)
        table["rank"] = ranks.astype(int)
        return table

    def write(self) -> Any:
        """Not supported: save ``bestModel`` and ``summary()`` instead."""
        raise NotImplementedError(
            "KNNCrossValidatorModel cannot be saved; save cvModel.bestModel (a knnspark model) "
            "and cvModel.summary() (a pandas DataFrame) instead."
        )

    def copy(self, extra: dict | None = None) -> KNNCrossValidatorModel:
        """A copy with a new uid; the best model and the sub-models are copied too."""
        extra = extra or {}
        sub_models = None
        if self.subModels is not None:
            sub_models = [[m.copy() for m in fold] for fold in self.subModels]
        copied = KNNCrossValidatorModel(
            self.bestModel.copy(extra),
            list(self.avgMetrics),
            sub_models,
            list(self.stdMetrics),
            [list(fold) for fold in self.foldMetrics],
            self._larger_is_better,
        )
        return self._copyValues(copied, extra=extra)
