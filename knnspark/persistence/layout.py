"""Names and versions of a saved model folder's parts, and how read errors are quoted."""

from __future__ import annotations

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_FOLDER",
    "MANIFEST_VERSION",
    "class_name",
    "data_path",
    "error_line",
    "manifest_path",
    "metadata_path",
    "payloads_path",
]

#: Version of the folder layout; a loader refuses newer versions.  The manifest did not
#: change it: older knnspark versions ignore ``manifest/`` and still load these folders.
FORMAT_VERSION = 1

#: Version of the manifest document.  Metadata that records it promises a manifest, so a
#: folder whose metadata has it and that has no manifest is an interrupted save.
MANIFEST_VERSION = 1

#: The folder of the manifest, written last.
MANIFEST_FOLDER = "manifest"


def _child(path: str, name: str) -> str:
    return path.rstrip("/") + "/" + name


def metadata_path(path: str) -> str:
    return _child(path, "metadata")


def data_path(path: str) -> str:
    return _child(path, "data")


def payloads_path(path: str) -> str:
    return _child(path, "index")


def manifest_path(path: str) -> str:
    return _child(path, MANIFEST_FOLDER)


def class_name(cls: type) -> str:
    """The ``class`` a model's metadata records, e.g. ``knnspark.KNNClassificationModel``."""
    return f"knnspark.{cls.__name__}"


def error_line(exc: Exception) -> str:
    """The line of a Spark read error that says what failed (often naming the file).

    A Py4J error starts with "An error occurred while calling o123.collectToPython."; the
    Java exception's message follows on the next line.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("An error occurred while calling"):
        return lines[1].lstrip(": ")
    return lines[0] if lines else type(exc).__name__
