"""The cross-validator that scores every ``k`` and weighting from one neighbor search.

Spark's :class:`~pyspark.ml.tuning.CrossValidator` fits and searches once per fold and param
map. For KNN, ``k``, ``weights`` and ``classWeights`` change only how the neighbor lists become
predictions, so :class:`KNNCrossValidator` groups the param maps that differ only in those
(:mod:`knnspark.tuning.grouping`). Per fold and group it fits one model and searches the
validation rows once at the group's largest ``k`` (``model.neighborLabels``); how each param map
of the group is then evaluated is :mod:`knnspark.tuning.evaluation`. The folds are split exactly
as Spark splits them, so with exact search the metrics are the ones Spark's ``CrossValidator``
reports.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.evaluation import Evaluator
from pyspark.ml.param import Param
from pyspark.ml.tuning import CrossValidator, CrossValidatorModel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from knnspark.classification import KNNClassifier
from knnspark.partition import CLASSIFICATION, NEIGHBORS
from knnspark.regression import KNNRegressor
from knnspark.training_checks import fold_training_stats, known_training_stats
from knnspark.tuning.evaluation import SCORE_PREFIX, Evaluation, evaluator_redirects, persisted
from knnspark.tuning.grouping import (
    Candidate,
    SearchGroup,
    describe_param_map,
    group_param_maps,
)

__all__ = ["KNNCrossValidator", "KNNCrossValidatorModel"]


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

    def _check_setup(self, dataset: DataFrame) -> list[SearchGroup]:
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
        _check_param_maps(estimator, param_maps)
        grouped = [estimator.getGroupCol()] + [m.get(estimator.groupCol) for m in param_maps]
        if any(g is not None for g in grouped):
            raise ValueError(
                "KNNCrossValidator does not support groupCol yet (got "
                f"{next(g for g in grouped if g is not None)!r}): a fold's validation rows "
                "may hold groups its training rows lack; tune without groupCol."
            )
        self._check_columns(dataset)
        groups = group_param_maps(estimator, param_maps)
        for group in groups:
            evaluator_redirects(evaluator, group.outputs)
        return groups

    def _check_columns(self, dataset: DataFrame) -> None:
        """The fold column, if any, holds integers; no column uses the reserved prefix."""
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

    def _fold_sizes(self, everything: dict) -> tuple[list[int], list[int]]:
        """Training and validation rows of every fold, from the counts of every row.

        Fails on an empty fold, as Spark does, and on fold numbers out of range.
        """
        validation = everything["fold_rows"]
        outside = everything["n"] - sum(validation)
        fold_col, num_folds = self.getFoldCol(), self.getNumFolds()
        if fold_col and outside:
            raise ValueError(
                f"Column '{fold_col}' (param foldCol) must hold fold numbers in "
                f"[0, {num_folds}); {outside} rows hold other values or null"
            )
        training = [everything["n"] - v for v in validation]
        for i in range(num_folds):
            if training[i] == 0:
                raise ValueError(f"The training data at fold {i} is empty.")
            if validation[i] == 0:
                raise ValueError(f"The validation data at fold {i} is empty.")
        return training, validation

    def _check_k(self, groups: list[SearchGroup], training_rows: list[int]) -> None:
        fewest = min(training_rows)
        fold = training_rows.index(fewest)
        param_maps = self.getEstimatorParamMaps()
        for group in groups:
            for c in group.candidates:
                if c.k > fewest:
                    raise ValueError(
                        f"Param k of estimatorParamMaps[{c.index}] "
                        f"{describe_param_map(param_maps[c.index])} is {c.k}, but fold {fold} "
                        f"has only {fewest} training rows; k must be <= the training rows of "
                        "every fold"
                    )

    # ------------------------------------------------------------ fit

    def _fit(self, dataset: DataFrame) -> KNNCrossValidatorModel:
        groups = self._check_setup(dataset)
        estimator, evaluator = self.getEstimator(), self.getEvaluator()
        param_maps = self.getEstimatorParamMaps()
        num_folds, num_models = self.getNumFolds(), len(param_maps)
        df, conditions = self._fold_conditions(dataset)
        metrics = [[0.0] * num_models for _ in range(num_folds)]
        sub_models: list[list[Any]] | None = None
        if self.getCollectSubModels():
            sub_models = [[None] * num_models for _ in range(num_folds)]
        evaluation = Evaluation(evaluator, groups, max(1, self.getParallelism()), dataset)
        # The data is cached once; every fold's training and validation rows are filters of
        # it, so one job counts the folds and the checks of every fold's training rows (a
        # fit would run one per fold), and the folds see the rows those counts saw.
        with persisted(df) as df:
            fold = F.coalesce(*[F.when(c, F.lit(i)) for i, c in enumerate(conditions)])
            fold_stats = {
                settings: fold_training_stats(df, fold, num_folds, settings)
                for settings in dict.fromkeys(_stats_settings(estimator, g) for g in groups)
            }
            training_rows, validation_rows = self._fold_sizes(next(iter(fold_stats.values()))[1])
            self._check_k(groups, training_rows)
            for i, condition in enumerate(conditions):
                train, validation = df.filter(~condition), df.filter(condition)
                for group in groups:
                    settings = _stats_settings(estimator, group)
                    with known_training_stats(train, settings, fold_stats[settings][0][i]):
                        model = estimator.fit(train, group.fit_map)
                    fold_metrics = evaluation.run(model, validation, validation_rows[i], group)
                    for index, metric in fold_metrics.items():
                        metrics[i][index] = metric
                    if sub_models is not None:
                        for c in group.candidates:
                            sub_models[i][c.index] = _with_scoring(model, c, param_maps[c.index])

            avg, std = CrossValidator._gen_avg_and_std_metrics(metrics)
            larger_is_better = bool(evaluator.isLargerBetter())
            best = int(np.argmax(avg) if larger_is_better else np.argmin(avg))
            # As Spark does: the best param map refitted on all the data (its cached rows,
            # whose checks are counted already).
            best_group = next(g for g in groups if any(c.index == best for c in g.candidates))
            settings = _stats_settings(estimator, best_group)
            with known_training_stats(df, settings, fold_stats[settings][1]):
                best_model = estimator.fit(df, param_maps[best])
        cv_model = KNNCrossValidatorModel(
            best_model, avg, sub_models, std, foldMetrics=metrics, isLargerBetter=larger_is_better
        )
        return self._copyValues(cv_model)


def _check_param_maps(estimator: Estimator, param_maps: Any) -> None:
    """``param_maps`` is a non-empty list of dicts that set params of ``estimator`` only."""
    if not isinstance(param_maps, (list, tuple)) or not param_maps:
        raise ValueError(
            f"Param estimatorParamMaps must be a non-empty list of param maps; got {param_maps!r}"
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


def _stats_settings(estimator: Estimator, group: SearchGroup) -> tuple:
    """What the training checks of the group's fit read (see ``fold_training_stats``)."""
    fitted = estimator.copy(group.fit_map)
    task = fitted._task
    return (
        fitted.getFeaturesCol(),
        fitted.getLabelCol() if task != NEIGHBORS else None,
        fitted.getIdCol(),
        task == CLASSIFICATION,
        fitted.getImputeStrategy(),
        fitted.getMetric(),
    )


def _with_scoring(model: Model, candidate: Candidate, param_map: dict) -> Model:
    """The fold's model with one param map's search-time params (and its own ``p``, which
    the group's fit may have taken from another map when the metric does not read it)."""
    extra = {model.getParam(p.name): v for p, v in param_map.items() if model.hasParam(p.name)}
    extra |= {
        model.getParam("k"): candidate.k,
        model.getParam("weights"): candidate.weights,
        model.getParam("bandwidth"): candidate.bandwidth,
    }
    if model.hasParam("classWeights"):
        extra[model.getParam("classWeights")] = candidate.class_weights
    return model.copy(extra)


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
        return {
            param.name: value.item() if isinstance(value, np.generic) else value
            for param, value in best.items()
        }

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
            row.update(metricName=metric_name, mean=float(mean), std=float(std))
            rows.append(row)
        table = pd.DataFrame(rows, columns=[*names, "metricName", "mean", "std"])
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
