"""The integrity manifest of a saved model: the size and sha256 of every file, written last.

Covered: every file below the model folder that Spark's readers would read, which is every
file but the manifest's own and those Spark skips — names starting with ``_`` or ``.``
(Hadoop's ``.crc`` checksums, ``_SUCCESS`` markers, ``_temporary`` folders) and empty files.
Object stores keep no ``.crc`` files, so the manifest is what catches damage there.

The files are listed and hashed through Spark's ``binaryFile`` source, so every Hadoop file
system works, as does Spark Connect: the hash is computed on the executors (``sha2``) and only
one small row per file reaches the driver.  A file over 2 GiB (``binaryFile``'s limit) cannot
be hashed; Spark's writers keep part files far smaller unless a partition is huge.

The manifest detects damage and edits; it is not a signature (whoever can rewrite the files
can rewrite it).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from pyspark.errors import AnalysisException
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from knnspark.errors import ModelLoadError
from knnspark.persistence.layout import (
    MANIFEST_FOLDER,
    MANIFEST_VERSION,
    error_line,
    manifest_path,
    metadata_path,
)

__all__ = [
    "FileDigest",
    "Manifest",
    "manifest_problems",
    "read_manifest",
    "verify_manifest",
    "write_manifest",
]

logger = logging.getLogger("knnspark")

_HASH = "sha256"
# How many problems a load error spells out before it only counts the rest.
_SHOWN_PROBLEMS = 3


@dataclass(frozen=True)
class FileDigest:
    """Size in bytes and sha256 (hex) of one file."""

    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """A model folder's manifest: its covered files by path relative to the folder.

    ``root`` is the folder as Spark's listings spell it (qualified, e.g. ``file:/tmp/m``).
    """

    root: str
    files: dict[str, FileDigest]


def _folder_of(file_path: str) -> str:
    """The model folder holding ``file_path``, a file directly in one of its subfolders."""
    return file_path.rsplit("/", 2)[0]


def _relative(root: str, file_path: str) -> str:
    prefix = root + "/"
    return file_path[len(prefix) :] if file_path.startswith(prefix) else file_path


def _model_files(spark: SparkSession, path: str, root: str) -> dict[str, FileDigest]:
    """Every covered file below ``path`` (the manifest's folder excluded), hashed on executors."""
    start = time.perf_counter()
    listing = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(path)
    rows = listing.select("path", "length", F.sha2("content", 256).alias("sha256")).collect()
    files = {_relative(root, r["path"]): FileDigest(int(r["length"]), r["sha256"]) for r in rows}
    files = {name: d for name, d in files.items() if not name.startswith(MANIFEST_FOLDER + "/")}
    logger.info(
        "hashed %d files (%.1f MiB) of %s in %.2f s",
        len(files),
        sum(d.size for d in files.values()) / 2**20,
        path,
        time.perf_counter() - start,
    )
    return files


def write_manifest(spark: SparkSession, path: str) -> Manifest:
    """Hash every file of the model at ``path`` and write the manifest (the save's last step)."""
    # Spark writes metadata/ flat, so its part file names the folder as listings spell it.
    first = spark.read.format("binaryFile").load(metadata_path(path)).select("path").first()
    if first is None:
        raise RuntimeError(f"knnspark wrote no metadata file to {metadata_path(path)}")
    root = _folder_of(first["path"])
    files = _model_files(spark, path, root)
    document = {
        "manifest_version": MANIFEST_VERSION,
        "hash": _HASH,
        "files": {name: {"size": d.size, _HASH: d.sha256} for name, d in sorted(files.items())},
    }
    text = json.dumps(document, sort_keys=True)
    spark.createDataFrame([(text,)], "value string").coalesce(1).write.text(manifest_path(path))
    return Manifest(root, files)


def _condition(exc: Exception) -> str | None:
    get = getattr(exc, "getCondition", None) or getattr(exc, "getErrorClass", None)
    return get() if get is not None else None


def read_manifest(spark: SparkSession, path: str) -> Manifest | None:
    """The manifest of the model at ``path``; None when the folder has none.

    A folder without one was saved by a knnspark older than manifests, or its save never
    finished (the manifest is written last); the reader tells them apart by the metadata.
    """
    try:
        rows = (
            spark.read.format("binaryFile").load(manifest_path(path)).select("path", "content")
        ).collect()
    except AnalysisException as exc:
        if _condition(exc) == "PATH_NOT_FOUND":
            return None
        raise ModelLoadError(
            f"The model at '{path}' has an unreadable manifest: {error_line(exc)}"
        ) from None
    except Exception as exc:  # e.g. a checksum error, raised in the read job
        raise ModelLoadError(
            f"The model at '{path}' has an unreadable manifest: {error_line(exc)}"
        ) from None
    if not rows:  # only a _temporary folder: the save was killed while writing it
        return None
    root = _folder_of(rows[0]["path"])
    names = sorted(_relative(root, r["path"]) for r in rows)
    if len(rows) > 1:
        raise ModelLoadError(
            f"The model at '{path}' has a damaged manifest: {MANIFEST_FOLDER}/ holds "
            f"{len(rows)} files ({', '.join(names)}), knnspark writes one."
        )
    try:
        document = json.loads(bytes(rows[0]["content"]).decode("utf-8"))
        files = {
            str(name): FileDigest(int(entry["size"]), str(entry[_HASH]))
            for name, entry in document["files"].items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelLoadError(
            f"The model at '{path}' has a damaged manifest, {names[0]} "
            f"({type(exc).__name__}: {exc})."
        ) from None
    return Manifest(root, files)


def manifest_problems(expected: dict[str, FileDigest], found: dict[str, FileDigest]) -> list[str]:
    """What differs between the manifest's files and the folder's, one phrase per file.

    Examples
    --------
    >>> saved = {"data/a": FileDigest(3, "x"), "data/b": FileDigest(3, "y")}
    >>> saved["data/c"] = FileDigest(3, "z")
    >>> now = {"data/a": FileDigest(2, "w"), "data/b": FileDigest(3, "v")}
    >>> now["data/d"] = FileDigest(1, "u")
    >>> manifest_problems(saved, now)  # doctest: +NORMALIZE_WHITESPACE
    ['data/a has 2 bytes, the manifest says 3',
     'data/b does not match its sha256 in the manifest (edited or damaged)',
     'data/c is missing (or empty)',
     'data/d is not in the manifest (an added or renamed file)']
    """
    problems = []
    for name in sorted(expected.keys() | found.keys()):
        want, got = expected.get(name), found.get(name)
        if got is None:
            problems.append(f"{name} is missing (or empty)")
        elif want is None:
            problems.append(f"{name} is not in the manifest (an added or renamed file)")
        elif got.size != want.size:
            problems.append(f"{name} has {got.size} bytes, the manifest says {want.size}")
        elif got.sha256 != want.sha256:
            problems.append(
                f"{name} does not match its {_HASH} in the manifest (edited or damaged)"
            )
    return problems


def verify_manifest(spark: SparkSession, path: str, manifest: Manifest) -> None:
    """Check every file of the model at ``path`` against its manifest.

    Raises
    ------
    ModelLoadError
        Naming the first files that are missing, added, resized or edited.
    """
    try:
        found = _model_files(spark, path, manifest.root)
    except Exception as exc:  # e.g. a checksum error or a file over 2 GiB, raised in the job
        raise ModelLoadError(
            f"The model at '{path}' has an unreadable file: {error_line(exc)}"
        ) from None
    problems = manifest_problems(manifest.files, found)
    if problems:
        shown = "; ".join(problems[:_SHOWN_PROBLEMS])
        more = len(problems) - _SHOWN_PROBLEMS
        rest = f"; and {more} more" if more > 0 else ""
        raise ModelLoadError(
            f"The model at '{path}' does not match its manifest: {shown}{rest}. "
            "Restore the folder from a copy or save the model again."
        )
