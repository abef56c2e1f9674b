"""Small file-system operations on any Hadoop path (local, HDFS, S3, ...), done on the driver.

The jobs check inputs, list and remove output folders and write small reports through the
session's Hadoop configuration, so the same code works on a laptop and on a cluster.  A
Spark Connect client has no JVM to reach Hadoop through: there, paths are resolved by
pyarrow's file systems (local, ``s3://``, ``gs://``, ``abfs://``, ``hdfs://`` with libhdfs),
with the client's own credentials.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
from pyspark.sql import SparkSession

from knnspark import classic
from knnspark.classic import is_connect

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
    return classic.hadoop_file_system(spark, path)


def _arrow(path: str) -> tuple[pafs.FileSystem, str]:
    """pyarrow's file system for ``path`` (Spark Connect), and the path inside it."""
    if path.startswith("file:"):
        path = "/" + path[len("file:") :].lstrip("/")
    if "://" not in path:
        return pafs.LocalFileSystem(), os.path.abspath(path)
    return pafs.FileSystem.from_uri(path)


def _arrow_info(path: str) -> tuple[pafs.FileSystem, pafs.FileInfo]:
    fs, inner = _arrow(path)
    return fs, fs.get_file_info(inner)


def _arrow_exists(path: str) -> bool:
    if not any(c in path for c in "*?["):
        return _arrow_info(path)[1].type != pafs.FileType.NotFound
    fs, inner = _arrow(path)
    parts = inner.split("/")
    fixed = next(i for i, part in enumerate(parts) if any(c in part for c in "*?["))
    base = "/".join(parts[:fixed]) or "/"
    if fs.get_file_info(base).type != pafs.FileType.Directory:
        return False
    depth = len(parts) - fixed
    selector = pafs.FileSelector(base, recursive=depth > 1)
    return any(
        fnmatch.fnmatchcase(info.path, inner) and info.path.count("/") == inner.count("/")
        for info in fs.get_file_info(selector)
    )


def _arrow_entries(path: str) -> list[Entry]:
    fs, info = _arrow_info(path)
    if info.type != pafs.FileType.Directory:
        return []
    return sorted(
        (
            Entry(
                e.base_name,
                e.type == pafs.FileType.Directory,
                int((e.mtime_ns or 0) // 1_000_000),
            )
            for e in fs.get_file_info(pafs.FileSelector(info.path))
        ),
        key=lambda e: e.name,
    )


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
    if is_connect(spark):
        return _arrow_exists(path)
    fs, hadoop_path = _resolve(spark, path)
    matches = fs.globStatus(hadoop_path)
    return matches is not None and len(matches) > 0


def list_names(spark: SparkSession, path: str) -> list[str]:
    """Names of the entries of folder ``path``; [] if it does not exist or is a file."""
    if is_connect(spark):
        return [e.name for e in _arrow_entries(path)]
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
    if is_connect(spark):
        return _arrow_entries(path)
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
    if is_connect(spark):
        fs, inner = _arrow(path)
        current = inner
        while fs.get_file_info(current).type == pafs.FileType.NotFound:
            parent = current.rsplit("/", 1)[0]
            if parent == current or not parent:
                return None
            current = parent
        if fs.get_file_info(current).type != pafs.FileType.File:
            return None
        return path if current == inner else current
    fs, hadoop_path = _resolve(spark, path)
    first = hadoop_path
    while hadoop_path is not None and not fs.exists(hadoop_path):
        hadoop_path = hadoop_path.getParent()
    if hadoop_path is None or fs.getFileStatus(hadoop_path).isDirectory():
        return None
    return path if hadoop_path.equals(first) else str(hadoop_path)


def delete_path(spark: SparkSession, path: str) -> None:
    """Remove ``path`` and everything below it, if it exists."""
    if is_connect(spark):
        fs, info = _arrow_info(path)
        if info.type == pafs.FileType.Directory:
            fs.delete_dir(info.path)
        elif info.type == pafs.FileType.File:
            fs.delete_file(info.path)
        return
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
    if is_connect(spark):
        fs, info = _arrow_info(path)
        if not overwrite and info.type != pafs.FileType.NotFound:
            raise FileExistsError(f"{path} already exists and overwrite is false")
        fs.create_dir(info.path.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(info.path) as stream:
            stream.write(data)
        return
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
