"""The saved models the score and evaluate jobs load, and what the jobs record about them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession

from knnspark import KNNClassificationModel, KNNOutlierModel, KNNRegressionModel
from knnspark import errors as knn_errors
from knnspark.app.config import ConfigError
from knnspark.app.fs import path_exists
from knnspark.app.schemas import param_values

__all__ = ["MODELS", "SavedModel", "load_saved_model"]

#: The model class the score and evaluate jobs load, by task.
MODELS = {
    "classification": KNNClassificationModel,
    "regression": KNNRegressionModel,
    "outliers": KNNOutlierModel,
}
# The "class" a model folder's metadata names -> its task.
_TASK_OF_CLASS = {f"knnspark.{cls.__name__}": task for task, cls in MODELS.items()}


@dataclass(frozen=True)
class SavedModel:
    """A model loaded by :func:`load_saved_model`, with what the jobs record about it.

    Attributes
    ----------
    model : KNNClassificationModel, KNNRegressionModel or KNNOutlierModel
        The loaded model, search-time params applied.
    task : str
        ``"classification"``, ``"regression"`` or ``"outliers"``.
    path : str
        Where it was loaded from.
    model_id : str or None
        ``model.modelId``, the fit's UUID (None for models saved without one).
    version : str or None
        The knnspark version that saved it (``knnspark_version`` in its metadata).
    """

    model: Any
    task: str
    path: str
    model_id: str | None
    version: str | None


def _read_metadata(spark: SparkSession, path: str) -> dict[str, Any] | None:
    """The model folder's metadata JSON, or None if it cannot be read (the loader says why)."""
    try:
        lines = [row["value"] for row in spark.read.text(f"{path.rstrip('/')}/metadata").collect()]
        metadata = json.loads("\n".join(lines))
    except Exception:  # missing or damaged: the model loader reports it precisely
        return None
    return metadata if isinstance(metadata, dict) else None


def load_saved_model(
    spark: SparkSession, model_config: Mapping[str, Any], tasks: tuple[str, ...] = tuple(MODELS)
) -> SavedModel:
    """Load the ``[model]`` table's saved model and apply its search-time params.

    The task is read from the model's metadata unless ``model.task`` is given, in which case
    it must match.

    Raises
    ------
    FileNotFoundError
        If ``model.path`` does not exist.
    ValueError
        If the folder is not a complete, readable classification or regression model
        (:class:`knnspark.ModelLoadError`), or ``model.task`` contradicts it.
    """
    path = model_config["path"]
    if not path_exists(spark, path):
        raise FileNotFoundError(f"model.path: no such file or directory: {path}")
    metadata = _read_metadata(spark, path) or {}
    saved_class = metadata.get("class")
    detected = _TASK_OF_CLASS.get(saved_class)
    if saved_class is not None and detected is None:
        raise knn_errors.ModelLoadError(
            f"model.path: {path} holds a {saved_class}; the score job takes a "
            f"KNNClassificationModel, a KNNRegressionModel or a KNNOutlierModel, the evaluate "
            f"job the first two"
        )
    if detected is not None and detected not in tasks:
        raise ValueError(
            f"model.path: {path} holds a {saved_class} (task {detected!r}); this job takes "
            f"the tasks {', '.join(repr(t) for t in tasks)}"
        )
    task = model_config["task"] or detected or "classification"
    if detected is not None and task != detected:
        raise ValueError(
            f"model.task: {task!r}, but the model at {path} is a {saved_class} (task "
            f"{detected!r}); set model.task = {detected!r} or leave it out"
        )
    # A folder whose metadata could not be read fails here with the loader's diagnosis.
    model = MODELS[task].load(path)
    # The table's params are the search-time ones (SCORE_SCHEMA): set over the fitted values.
    for name, value in param_values(model_config).items():
        if not model.hasParam(name):
            raise ConfigError(
                f"model.{name}: not a param of {type(model).__name__} (model.task = {task!r}); "
                "leave it out"
            )
        model.set(model.getParam(name), value)
    return SavedModel(
        model=model,
        task=task,
        path=path,
        model_id=model.modelId or None,
        version=metadata.get("knnspark_version"),
    )
