"""Errors raised in Spark's Python workers, raised again on the driver as what they were.

Some rules (an invalid query row under ``handleInvalid="error"``) can only be checked while the
data is read, so they fail inside a task; Spark reports that as a ``PythonException`` (or, from
a write, a Java ``SparkException`` that quotes it). The jobs wrap their Spark actions in
:func:`worker_errors_as_driver_errors` — the library's
:func:`knnspark.errors.reraise_worker_errors` — so that such a failure reaches the command line
as the knnspark error it was (a ``ValueError``: exit status 2, one line).

A file that Spark cannot read (a truncated Parquet part) fails in the JVM instead, as a
``SparkException`` with the ``FAILED_READ_FILE`` condition; :func:`unreadable_file` finds it
so that the jobs can name the file in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from knnspark.errors import reraise_worker_errors

__all__ = ["UnreadableFile", "unreadable_file", "worker_errors_as_driver_errors"]

_FAILED_READ = "FAILED_READ_FILE"
# A Java exception's chain of causes is short; the bound only guards against a cycle.
_MAX_CAUSES = 32

#: The jobs' name for :func:`knnspark.errors.reraise_worker_errors`.
worker_errors_as_driver_errors = reraise_worker_errors


@dataclass(frozen=True)
class UnreadableFile:
    """A file Spark failed to read: truncated, corrupt, not in the format, or gone.

    Attributes
    ----------
    path : str
        The file, as Spark names it (``file:/...``, ``s3a://...``).
    condition : str
        Spark's error condition, e.g. ``FAILED_READ_FILE.CANNOT_READ_FILE_FOOTER``.
    reason : str
        The first line of the innermost cause, with the file's path replaced by "the file".
    """

    path: str
    condition: str
    reason: str

    def describe(self) -> str:
        return f"cannot read {self.path} ({self.condition}): {self.reason}"


def _condition(throwable: Any) -> str | None:
    """The Spark error condition of a Java throwable, or None if it is not a SparkThrowable."""
    for getter in ("getCondition", "getErrorClass"):  # Spark 4 name first
        try:
            return getattr(throwable, getter)()
        except Exception:
            continue
    return None


def _innermost_message(throwable: Any) -> str:
    message = ""
    for _ in range(_MAX_CAUSES):
        if throwable is None:
            break
        message = str(throwable.getMessage() or throwable.toString())
        throwable = throwable.getCause()
    return message.strip().splitlines()[0] if message.strip() else ""


def unreadable_file(exc: BaseException) -> UnreadableFile | None:
    """The file a failed Spark read or job could not read, or None for any other failure.

    Looks through the Java exception's causes for Spark's ``FAILED_READ_FILE`` condition,
    which a read or a task raises for a file it cannot read: a truncated or corrupt Parquet
    part, a file in another format, or a file removed while the job ran.
    """
    throwable = getattr(exc, "java_exception", None) or getattr(exc, "_origin", None)
    for _ in range(_MAX_CAUSES):
        if throwable is None:
            return None
        condition = _condition(throwable)
        if condition and condition.startswith(_FAILED_READ):
            path = str(throwable.getMessageParameters().get("path") or "a file")
            reason = _innermost_message(throwable).replace(path, "the file")
            return UnreadableFile(path, condition, reason)
        throwable = throwable.getCause()
    return None
