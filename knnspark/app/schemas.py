"""The jobs' config schemas; their ``[model]`` keys are the estimators' own Spark ML Params.

Each Param of :class:`~knnspark.KNNClassifier`, :class:`~knnspark.KNNRegressor` and
:class:`~knnspark.NearestNeighbors` is a key of the fit job's ``[model]`` table, under the
Param's name, checked by the Param's ``typeConverter`` (the rule the library itself applies),
so a Param added to an estimator is settable from the jobs with no edit here. An absent key
leaves the Param unset: the library's default applies and is not restated. The tune job takes
the same keys less its grid's (``k``, ``weights``); the score and evaluate jobs take the
search-time params a fitted model may change without refitting (:data:`SEARCH_PARAMS`).

Examples
--------
>>> from knnspark.app.config import validate
>>> config = validate({"input": {"path": "d"}, "model": {"path": "m", "M": 8}}, FIT_SCHEMA)
>>> estimator_params(config["model"], config["model"]["task"])
{'M': 8}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pyspark.ml.param import TypeConverters

from knnspark import KNNClassifier, KNNOutlierDetector, KNNRegressor, NearestNeighbors
from knnspark.app.config import ConfigError, Field, OpenTable, ParamField, Schema
from knnspark.join import JOIN_MODES, JOIN_TYPES

__all__ = [
    "ESTIMATORS",
    "EVALUATE_SCHEMA",
    "FIT_SCHEMA",
    "JOB_KEYS",
    "JOIN_SCHEMA",
    "SCORED_TASKS",
    "SCORE_SCHEMA",
    "SEARCH_PARAMS",
    "SUPERVISED_TASKS",
    "TUNE_GRID_OPTIONAL",
    "TUNE_SCHEMA",
    "estimator_params",
    "param_fields",
    "param_values",
]

#: The estimator class of each ``model.task`` of the fit job.
ESTIMATORS = {
    "classification": KNNClassifier,
    "regression": KNNRegressor,
    "neighbors": NearestNeighbors,
    "outliers": KNNOutlierDetector,
}
#: The tasks with labels: those of the tune and evaluate jobs.
SUPERVISED_TASKS = ("classification", "regression")
#: The tasks whose saved models the score job scores with: the supervised ones and outliers.
SCORED_TASKS = (*SUPERVISED_TASKS, "outliers")

#: Params a fitted model may change without refitting: the score and evaluate jobs' model keys.
#: The library marks no Param as search-time, so this one list is kept by hand. An outlier
#: model takes ``algorithm`` and ``ef`` only (its threshold was fitted for its ``k``).
SEARCH_PARAMS = (
    "k", "weights", "bandwidth", "algorithm", "ef", "nprobe", "shardsVisitedCol",
)  # fmt: skip

#: Optional grid dimensions of the tune job (``tune.<name>``, a list), by item type.
TUNE_GRID_OPTIONAL = {"metric": str, "p": float, "standardization": str, "bandwidth": float}

#: Keys of a ``[model]`` table that configure the job, not the estimator.
JOB_KEYS = ("task", "path", "overwrite")

# Param names of each task's estimator, to refuse a key another task's estimator owns.
_PARAM_NAMES = {task: frozenset(p.name for p in cls().params) for task, cls in ESTIMATORS.items()}


def param_fields(
    classes: Iterable[type], names: Iterable[str] | None = None, exclude: Iterable[str] = ()
) -> dict[str, ParamField]:
    """One config field per Param of any of ``classes``, ordered by name, case-blind.

    Parameters
    ----------
    classes : iterable of Params subclasses
        Estimators whose Params become keys; a Param several share appears once.
    names : iterable of str, optional
        Keep only these Params (all when absent).
    exclude : iterable of str, default ()
        Leave these Params out.

    Returns
    -------
    dict of str to ParamField
        Each checked by its Param's ``typeConverter``; absent, None (the library default).
    """
    wanted = None if names is None else set(names)
    fields: dict[str, ParamField] = {}
    for cls in classes:
        for param in cls().params:
            name = param.name
            if name in fields or name in exclude or (wanted is not None and name not in wanted):
                continue
            fields[name] = ParamField(
                name,
                param.typeConverter,
                param.doc,
                boolean=param.typeConverter is TypeConverters.toBoolean,
            )
    return dict(sorted(fields.items(), key=lambda item: item[0].lower()))


def param_values(model_config: Mapping[str, Any]) -> dict[str, Any]:
    """The Params a validated ``[model]`` table sets: its keys but :data:`JOB_KEYS`, not None."""
    return {
        name: value
        for name, value in model_config.items()
        if name not in JOB_KEYS and value is not None
    }


def estimator_params(model_config: Mapping[str, Any], task: str) -> dict[str, Any]:
    """The keyword arguments of ``ESTIMATORS[task]`` that a validated ``[model]`` table sets.

    Raises
    ------
    ConfigError
        If the table sets a Param that the task's estimator does not have (``classWeights``
        with ``task = "regression"``), naming the key and the estimators that have it.
    """
    params = param_values(model_config)
    for name in params:
        if name not in _PARAM_NAMES[task]:
            owners = [ESTIMATORS[t].__name__ for t in ESTIMATORS if name in _PARAM_NAMES[t]]
            raise ConfigError(
                f"model.{name}: a param of {' and '.join(owners)}, not of "
                f"{ESTIMATORS[task].__name__} (model.task = {task!r}); leave it out"
            )
    return params


_SPARK = {
    "app_name": Field(str, default="knnspark"),
    # Used only when spark-submit (or an active SparkContext) did not set a master.
    "master": Field(str, default="local[*]"),
    # A Spark Connect URL (sc://host:port): the job runs as a client of that server.
    "remote": Field(str, default=None),
    "conf": OpenTable(),
}

_INPUT = {
    # A file or folder (any Hadoop path or glob); with format = "table", a table name.
    "path": Field(str),
    "format": Field(str, default="parquet", choices=("parquet", "csv", "table")),
    # Numeric columns assembled into the features column; required for csv.
    "feature_columns": Field(list, default=[]),
    "header": Field(bool, default=True),
    "sep": Field(str, default=","),
}

_SUPERVISED = [ESTIMATORS[task] for task in SUPERVISED_TASKS]

#: Schema of ``jobs/fit.py``.
FIT_SCHEMA: Schema = {
    "spark": _SPARK,
    "input": _INPUT,
    "model": {
        "task": Field(str, default="classification", choices=tuple(ESTIMATORS)),
        "path": Field(str),
        "overwrite": Field(bool, default=True),
        **param_fields(ESTIMATORS.values()),
    },
}


def _saved_model(tasks: tuple[str, ...]) -> dict[str, Any]:
    """The saved model of the score and evaluate jobs, and the search-time params it may change."""
    return {
        # Absent: read from the model's metadata.
        "task": Field(str, default=None, choices=tasks),
        "path": Field(str),
        **param_fields(_SUPERVISED, names=SEARCH_PARAMS),
    }


#: Schema of ``jobs/score.py``.
SCORE_SCHEMA: Schema = {
    "spark": _SPARK,
    "input": _INPUT,
    "model": _saved_model(SCORED_TASKS),
    "output": {
        # Parquet folder, or a table name with format = "table".
        "path": Field(str),
        "format": Field(str, default="parquet", choices=("parquet", "table")),
        # Run key, YYYY-MM-DD (--run-date); absent: today's date in UTC.
        "run_date": Field(str, default=None),
        # Where rows are staged before they replace the run's partition; absent:
        # <path>/_staging for a folder, <warehouse>/_knnspark_staging for a table.
        "staging_path": Field(str, default=None),
    },
}

#: Schema of ``jobs/evaluate.py``.
EVALUATE_SCHEMA: Schema = {
    "spark": _SPARK,
    "input": _INPUT,
    "model": _saved_model(SUPERVISED_TASKS),
    "output": {
        # The metrics JSON file (any Hadoop path).
        "path": Field(str),
        "overwrite": Field(bool, default=True),
    },
}

#: Schema of ``jobs/tune.py``.
TUNE_SCHEMA: Schema = {
    "spark": _SPARK,
    "input": _INPUT,
    # Estimator params shared by every param map of the grid: the supervised estimators',
    # less k and weights (the grid's); a param the [tune] table grids over (metric, p,
    # standardization, bandwidth) is refused here too. The best model is saved under [output].
    "model": {
        "task": Field(str, default="classification", choices=SUPERVISED_TASKS),
        **param_fields(_SUPERVISED, exclude=("k", "weights")),
    },
    "tune": {
        "k": Field(list, item_type=int),
        "weights": Field(list, default=["uniform", "distance"]),
        # Optional grid dimensions; absent: the [model] value (or the default) for every map.
        **{name: Field(list, default=None, item_type=t) for name, t in TUNE_GRID_OPTIONAL.items()},
        "numFolds": Field(int, default=5),
        "seed": Field(int, default=0),
        "foldCol": Field(str, default=None),
        # Evaluator metric; absent: accuracy (classification) or rmse (regression).
        "metricName": Field(str, default=None),
        "parallelism": Field(int, default=1),
    },
    "output": {
        # Folder of the report, the plot and the best model (any Hadoop path).
        "path": Field(str),
        "overwrite": Field(bool, default=True),
    },
}

#: knn_join's arguments that are NearestNeighbors Params, checked by their converters.
_JOIN_PARAMS = ("featuresCol", "metric", "p", "idCol", "groupCol", "numShards", "maxBroadcastBytes")
_JOIN_PARAMS += ("M", "efConstruction", "ef", "seed")

#: Schema of ``jobs/join.py``: two inputs, knn_join's arguments, a run-dated output.
JOIN_SCHEMA: Schema = {
    "spark": _SPARK,
    "left": _INPUT,
    "right": _INPUT,
    "join": {
        "k": Field(int),
        **param_fields([NearestNeighbors], names=_JOIN_PARAMS),
        "mode": Field(str, default=None, choices=JOIN_MODES),
        "joinType": Field(str, default=None, choices=JOIN_TYPES),
        "excludeSelf": Field(bool, default=None),
        "rightPrefix": Field(str, default=None),
        "handleInvalid": Field(str, default=None, choices=("error", "skip")),
    },
    "output": SCORE_SCHEMA["output"],
}
