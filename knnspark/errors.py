"""The package's exceptions: one small hierarchy on top of the builtin types.

Most rules are checked on the driver before any Spark job runs. A few can only be checked
while the data is read, inside a Spark task: an invalid query row under
``handleInvalid="error"`` is found by the task that searches it. Spark reports such a failure
as a ``pyspark.errors.PythonException`` (or, from a write, a Java ``SparkException`` that
quotes it) whose text ends with the worker's ``knnspark.errors.InvalidInputError: ...`` line.
Spark offers no hook that would turn it back into the Python exception it was, and
``transform`` is lazy, so the error surfaces in whatever action runs the plan; wrap that action
in :func:`reraise_worker_errors` to get the knnspark error itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["InvalidInputError", "KNNSparkError", "ModelLoadError", "reraise_worker_errors"]


class KNNSparkError(Exception):
    """Base class of the errors knnspark raises itself."""


class InvalidInputError(KNNSparkError, ValueError):
    """The input data breaks a rule: a missing column, an invalid row, a duplicate id."""


class ModelLoadError(KNNSparkError, ValueError):
    """A model folder is missing, incomplete or damaged."""


# The last line of a knnspark error's traceback, as a Python worker reports it to the driver.
_WORKER_ERROR = re.compile(r"^knnspark\.errors\.(\w+): (.+)$", re.MULTILINE)


def _error_class(name: str) -> type[KNNSparkError] | None:
    found = globals().get(name)
    if isinstance(found, type) and issubclass(found, KNNSparkError):
        return found
    return None


@contextmanager
def reraise_worker_errors() -> Iterator[None]:
    """Raise a knnspark error thrown in a Spark task as that error, on the driver.

    Wrap the Spark action that runs a knnspark plan (``collect``, ``count``, ``toPandas``, a
    write): an invalid query row under ``handleInvalid="error"`` then raises
    :class:`InvalidInputError` with the task's message, instead of a ``PythonException`` that
    ends with it. The Spark exception is kept as ``__cause__``. Any other exception passes
    through unchanged. It costs nothing when no error is raised: no extra Spark job runs.

    Raises
    ------
    InvalidInputError, ModelLoadError
        (or any other :class:`KNNSparkError`) when a task raised it.

    Examples
    --------
    >>> from knnspark import NearestNeighbors
    >>> train = spark.createDataFrame([([0.0],), ([1.0],)], ["features"])
    >>> queries = spark.createDataFrame([([float("nan")],)], ["features"])
    >>> neighbors = NearestNeighbors(k=1).fit(train).kneighbors(queries)
    >>> with reraise_worker_errors():
    ...     neighbors.collect()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    knnspark.errors.InvalidInputError: Column 'features' (param featuresCol) holds NaN or ...
    """
    try:
        yield
    except KNNSparkError:
        raise
    except Exception as exc:
        matches = _WORKER_ERROR.findall(str(exc))
        error_class = _error_class(matches[-1][0]) if matches else None
        if error_class is None:
            raise
        raise error_class(matches[-1][1]) from exc
