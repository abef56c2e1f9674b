"""Errors raised in Spark's Python workers, raised again on the driver as what they were.

Some rules (NaN features, duplicate ids) can only be checked while the data is read, so they
fail inside a task; Spark reports that as a ``PythonException`` (or, from a write, a Java
``SparkException`` that quotes it) carrying the worker's traceback as text. The jobs wrap their
Spark actions in :func:`worker_errors_as_driver_errors` so that such a failure reaches the
command line as the knnspark error it was (a ``ValueError``: exit status 2, one line).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from knnspark import errors as knn_errors

__all__ = ["worker_errors_as_driver_errors"]

# The last line of a knnspark error's traceback, as a Python worker reports it to the driver.
_WORKER_ERROR = re.compile(r"^knnspark\.errors\.(\w+): (.+)$", re.MULTILINE)


@contextmanager
def worker_errors_as_driver_errors() -> Iterator[None]:
    """Re-raise a knnspark error thrown in a Python worker as that error, on the driver.

    Any other exception passes through unchanged.

    Raises
    ------
    knnspark.errors.InvalidInputError, knnspark.errors.ModelLoadError
        (or any other class of :mod:`knnspark.errors`) when a worker raised it; the Spark
        exception is its ``__cause__``.
    """
    try:
        yield
    except Exception as exc:
        matches = _WORKER_ERROR.findall(str(exc))
        error_type = getattr(knn_errors, matches[-1][0], None) if matches else None
        if not (isinstance(error_type, type) and issubclass(error_type, Exception)):
            raise
        raise error_type(matches[-1][1]) from exc
