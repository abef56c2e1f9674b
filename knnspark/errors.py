"""The package's exceptions: one small hierarchy on top of the builtin types."""

from __future__ import annotations

__all__ = ["InvalidInputError", "KNNSparkError", "ModelLoadError"]


class KNNSparkError(Exception):
    """Base class of the errors knnspark raises itself."""


class InvalidInputError(KNNSparkError, ValueError):
    """The input data breaks a rule: a missing column, an invalid row, a duplicate id."""


class ModelLoadError(KNNSparkError, ValueError):
    """A model folder is missing, incomplete or damaged."""
