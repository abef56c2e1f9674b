"""The score job's staging folders: one per run, named for its date and start, removed if stale.

Each run stages its rows in ``<staging root>/<run date>-<start>-<uuid>``, e.g.
``2026-11-21-20261122T013000Z-3f2a...`` (start in UTC), and removes that folder when it ends,
whether it succeeded or failed. A driver killed outright (SIGKILL, a lost container) cannot, so
every run first removes the staging folders that are stale:

* the name is one the score job makes (anything else below the root is left alone);
* it is not this run's;
* its run started more than :data:`STALE_AFTER` (48 hours) ago, read from the name, so the
  rule holds on object stores, which keep no folder times. Folders named by older versions
  (``<run date>-<uuid>``, without the start) go by the folder's modification time.

Runs going at the same time (two run dates, or a retry while a run hangs) leave each other's
folders alone while both are younger than :data:`STALE_AFTER`. A run still going after that may
lose its staged rows to another run's clean-up; it then fails its row check (or cannot read
them back) and publishes nothing, so the output never gets a partial partition.
"""

from __future__ import annotations

import datetime as _dt
import logging
import re
import uuid

from pyspark.sql import SparkSession

from knnspark.app.fs import Entry, delete_path, list_entries

__all__ = ["STALE_AFTER", "remove_stale_staging", "stale_staging", "staging_folder"]

logger = logging.getLogger(__name__)

#: Age past which a staging folder belongs to no live run: far longer than any scoring run.
STALE_AFTER = _dt.timedelta(hours=48)

_START_FORMAT = "%Y%m%dT%H%M%SZ"
_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}-(?:(\d{8}T\d{6}Z)-)?[0-9a-f]{32}$")


def staging_folder(root: str, run_date: _dt.date, started: _dt.datetime) -> str:
    """A fresh staging folder below ``root`` for a run of ``run_date`` started at ``started``.

    Examples
    --------
    >>> import datetime as dt
    >>> start = dt.datetime(2026, 11, 22, 1, 30, tzinfo=dt.UTC)
    >>> staging_folder("out/_staging", dt.date(2026, 11, 21), start)  # doctest: +ELLIPSIS
    'out/_staging/2026-11-21-20261122T013000Z-...'
    """
    name = f"{run_date.isoformat()}-{started.astimezone(_dt.UTC):{_START_FORMAT}}"
    return f"{root.rstrip('/')}/{name}-{uuid.uuid4().hex}"


def _started(entry: Entry) -> _dt.datetime | None:
    """When the run that made ``entry`` started; None if the name is not a staging folder's."""
    match = _NAME.match(entry.name)
    if match is None:
        return None
    if match.group(1) is not None:
        return _dt.datetime.strptime(match.group(1), _START_FORMAT).replace(tzinfo=_dt.UTC)
    return _dt.datetime.fromtimestamp(entry.modified_ms / 1000, _dt.UTC)


def stale_staging(entries: list[Entry], now: _dt.datetime, current: str = "") -> list[str]:
    """Names of the entries that are stale staging folders (see the module docstring).

    Parameters
    ----------
    entries : list of Entry
        The entries of the staging root.
    now : datetime
        The current time, time-zone aware.
    current : str, optional
        The name of this run's own folder, never stale.
    """
    stale = []
    for entry in entries:
        started = _started(entry)
        if entry.is_dir and entry.name != current and started is not None:
            if now - started > STALE_AFTER:
                stale.append(entry.name)
    return stale


def remove_stale_staging(
    spark: SparkSession, root: str, now: _dt.datetime, current: str = ""
) -> list[str]:
    """Remove the stale staging folders below ``root``; return their names."""
    names = stale_staging(list_entries(spark, root), now, current)
    for name in names:
        logger.info("removing the stale staging folder %s/%s", root.rstrip("/"), name)
        delete_path(spark, f"{root.rstrip('/')}/{name}")
    return names
