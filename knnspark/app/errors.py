"""Errors raised in Spark's Python workers, raised again on the driver as what they were.

Some rules (an invalid query row under ``handleInvalid="error"``) can only be checked while the
data is read, so they fail inside a task; Spark reports that as a ``PythonException`` (or, from
a write, a Java ``SparkException`` that quotes it). The jobs wrap their Spark actions in
:func:`worker_errors_as_driver_errors` — the library's
:func:`knnspark.errors.reraise_worker_errors` — so that such a failure reaches the command line
as the knnspark error it was (a ``ValueError``: exit status 2, one line).
"""

from __future__ import annotations

from knnspark.errors import reraise_worker_errors

__all__ = ["worker_errors_as_driver_errors"]

#: The jobs' name for :func:`knnspark.errors.reraise_worker_errors`.
worker_errors_as_driver_errors = reraise_worker_errors
