"""Small file-system operations on any Hadoop path (local, HDFS, S3, ...), done on the driver.

The jobs check inputs, list and remove output folders and write small reports through the
session's Hadoop configuration, so the same code works on a laptop and on a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

__all__ = [
    "Entry",
    "delete_path",
    "file_in_the_way",
    "list_entries",
    "list_names",
    "path_exists",
    "write_bytes",
    "write_text",
]


def _resolve(spark: SparkSession, path: str) -> tuple[Any, Any]:
    jvm = spark.sparkContext._jvm
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    fs = hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    return fs, hadoop_path


def path_exists(spark: SparkSession, path: str) -> bool:
    """Whether ``path`` (or, for a glob, any match) exists on its Hadoop file system.

    Checking up front turns Spark's late, JVM-side "path does not exist" into an error that
    names the config key.

    Parameters
    ----------
    spark : SparkSession
        Session whose Hadoop configuration resolves the path (local, HDFS, S3, ...).
    path : str
        Path or glob, as given to ``spark.read``.

    Returns
    -------
    bool
        True if at least one file or folder matches.
    """
    fs, hadoop_path = _resolve(spark, path)
    matches = fs.globStatus(hadoop_path)
    return matches is not None and len(matches) > 0


def list_names(spark: SparkSession, path: str) -> list[str]:
    """Names of the entries of folder ``path``; [] if it does not exist or is a file."""
    fs, hadoop_path = _resolve(spark, path)
    if not fs.exists(hadoop_path) or not fs.getFileStatus(hadoop_path).isDirectory():
        return []
    return sorted(status.getPath().getName() for status in fs.listStatus(hadoop_path))


@dataclass(frozen=True)
class Entry:
    """One entry of a folder: its name, whether it is a folder, its modification time."""

    name: str
    is_dir: bool
    modified_ms: int


def list_entries(spark: SparkSession, path: str) -> list[Entry]:
    """The entries of folder ``path``, by name; [] if it does not exist or is a file.

    ``modified_ms`` is the file system's modification time in milliseconds since the epoch
    (object stores report 0 for a folder).
    """
    fs, hadoop_path = _resolve(spark, path)
    if not fs.exists(hadoop_path) or not fs.getFileStatus(hadoop_path).isDirectory():
        return []
    entries = [
        Entry(s.getPath().getName(), bool(s.isDirectory()), int(s.getModificationTime()))
        for s in fs.listStatus(hadoop_path)
    ]
    return sorted(entries, key=lambda e: e.name)


def file_in_the_way(spark: SparkSession, path: str) -> str | None:
    """The file at ``path`` or at its nearest existing parent, if that is a file, else None.

    A folder cannot be written at ``path`` when it is a file, or when a parent of it is one.
    """
    fs, hadoop_path = _resolve(spark, path)
    first = hadoop_path
    while hadoop_path is not None and not fs.exists(hadoop_path):
        hadoop_path = hadoop_path.getParent()
    if hadoop_path is None or fs.getFileStatus(hadoop_path).isDirectory():
        return None
    return path if hadoop_path.equals(first) else str(hadoop_path)


def delete_path(spark: SparkSession, path: str) -> None:
    """Remove ``path`` and everything below it, if it exists."""
    fs, hadoop_path = _resolve(spark, path)
    fs.delete(hadoop_path, True)


def write_text(spark: SparkSession, path: str, text: str, overwrite: bool = True) -> None:
    """Write ``text`` (UTF-8) to the file ``path``; see :func:`write_bytes`."""
    write_bytes(spark, path, text.encode("utf-8"), overwrite)


def write_bytes(spark: SparkSession, path: str, data: bytes, overwrite: bool = True) -> None:
    """Write ``data`` to the file ``path``, creating its parent folders.

    Local paths are written with Python's own I/O, which leaves no Hadoop ``.crc`` file
    beside them.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is false.
    """
    fs, hadoop_path = _resolve(spark, path)
    if not overwrite and fs.exists(hadoop_path):
        raise FileExistsError(f"{path} already exists and overwrite is false")
    qualified = fs.makeQualified(hadoop_path)
    if qualified.toUri().getScheme() == "file":
        local = Path(qualified.toUri().getPath())
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(data)
        return
    stream = fs.create(hadoop_path, overwrite)
    try:
        stream.write(bytearray(data))
    finally:
        stream.close()
