"""Schema checks and column expressions, run on the driver before any Spark job.

Messages name the param and column, the rule, and the value received.
"""

from __future__ import annotations

from pyspark.ml.functions import vector_to_array
from pyspark.ml.linalg import VectorUDT
from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T

from knnspark.errors import InvalidInputError

__all__ = [
    "FEATURE_TYPES_TEXT",
    "check_id_column",
    "check_label_column",
    "check_output_columns",
    "column",
    "feature_array_expr",
    "invalid_features_expr",
    "no_present_features_expr",
    "overflow_features_expr",
    "quote_name",
    "require_column",
]

FEATURE_TYPES_TEXT = "a Spark ML vector, array<float> or array<double>"

_INTEGRAL = (T.ByteType, T.ShortType, T.IntegerType, T.LongType)
_NUMERIC = (*_INTEGRAL, T.FloatType, T.DoubleType, T.DecimalType)


def quote_name(name: str) -> str:
    """``name`` as one quoted identifier: in backticks, with its own backticks doubled.

    Spark parses a column name given as a string (dots split struct fields, backticks
    quote); quoted this way every legal name, ``"a.b"`` or ``"we`ird"``, means itself.

    Examples
    --------
    >>> quote_name("a.b"), quote_name("we`ird")
    ('`a.b`', '`we``ird`')
    """
    return "`" + name.replace("`", "``") + "`"


def column(name: str) -> Column:
    """The top-level column called ``name``, whatever characters the name holds."""
    return F.col(quote_name(name))


def _field(schema: T.StructType, name: str, param: str) -> T.StructField:
    require_column(schema, name, param)
    return schema[name]


def require_column(schema: T.StructType, name: str, param: str) -> None:
    """Raise if ``name`` is not a column of ``schema``."""
    if name not in schema.fieldNames():
        available = ", ".join(schema.fieldNames()) or "(none)"
        raise InvalidInputError(
            f"Column '{name}' (param {param}) does not exist. Available columns: {available}."
        )


def feature_array_expr(schema: T.StructType, name: str, param: str = "featuresCol") -> Column:
    """An ``array<float>`` expression of the features column, null where the input is null.

    Raises
    ------
    TypeError
        If the column is not a vector, ``array<float>`` or ``array<double>``.
    """
    dtype = _field(schema, name, param).dataType
    col = column(name)
    if isinstance(dtype, VectorUDT):
        # vector_to_array rejects nulls instead of passing them through.
        return F.when(col.isNotNull(), vector_to_array(col, "float32"))
    if isinstance(dtype, T.ArrayType) and isinstance(
        dtype.elementType, (T.FloatType, T.DoubleType)
    ):
        return col.cast(T.ArrayType(T.FloatType()))
    raise TypeError(
        f"Column '{name}' (param {param}) must be {FEATURE_TYPES_TEXT}; got {dtype.simpleString()}."
    )


def overflow_features_expr(dtype: T.DataType, col: Column) -> Column:
    """True where a double feature is finite but beyond float32's range (about 3.4e38).

    ``col`` is the raw features column, of type ``dtype``. Features are stored as float32,
    where such a value becomes infinite; this tells those rows apart from ones that held NaN
    or infinity to begin with. Evaluate it on rows already found invalid only: it reads the
    column again, element by element.
    """
    if isinstance(dtype, VectorUDT):
        values = vector_to_array(col, "float64")
    elif isinstance(dtype, T.ArrayType) and isinstance(dtype.elementType, T.DoubleType):
        values = col
    else:  # array<float> holds float32 values already
        return F.lit(False)
    inf = float("inf")
    return F.coalesce(
        F.exists(
            values,
            lambda v: (F.abs(v) < inf) & (F.abs(v.cast("float")) == F.lit(inf).cast("float")),
        ),
        F.lit(False),
    )


def invalid_features_expr(features: Column, allow_nan: bool = False) -> Column:
    """True where an ``array<float>`` features value is null, empty, or not all finite.

    With ``allow_nan`` (imputation configured), NaN and null entries are valid:
    only infinite values make a vector invalid.
    """
    # Built-in array functions rather than a lambda over the elements: no per-element
    # interpreted closure, about a third less CPU per pass over the training data.
    inf = F.lit(float("inf")).cast("float")
    if allow_nan:
        bad_value = F.array_contains(features, inf) | F.array_contains(features, -inf)
    else:
        # array_max is NaN when any entry is (Spark orders NaN above +inf); nulls are counted.
        largest = F.array_max(features)
        bad_value = (
            (F.size(F.array_compact(features)) != F.size(features))
            | F.isnan(largest)
            | (largest == inf)
            | (F.array_min(features) == -inf)
        )
    empty = features.isNull() | (F.size(features) == 0)
    return F.coalesce(empty, F.lit(True)) | F.coalesce(bad_value, F.lit(False))


def no_present_features_expr(features: Column) -> Column:
    """True where a non-empty ``array<float>`` holds only NaN (or null) entries.

    Such a row has no coordinate a NaN-skipping metric (``nan_euclidean``) could compare.
    Spark's ``array_min`` orders NaN above every number and skips nulls: it is NaN only when
    every non-null entry is, and null when every entry is.
    """
    all_missing = F.coalesce(F.isnan(F.array_min(features)), F.lit(True))
    return F.coalesce((F.size(features) > 0) & all_missing, F.lit(False))


def check_label_column(schema: T.StructType, name: str, classifier: bool) -> None:
    """Labels must be numeric; the classifier points string labels to StringIndexer."""
    dtype = _field(schema, name, "labelCol").dataType
    if isinstance(dtype, _NUMERIC):
        return
    if classifier and isinstance(dtype, T.StringType):
        raise TypeError(
            f"Column '{name}' (param labelCol) must be numeric; got string. Encode string "
            "labels as numbers first, for example with pyspark.ml.feature.StringIndexer."
        )
    raise TypeError(
        f"Column '{name}' (param labelCol) must be numeric; got {dtype.simpleString()}."
    )


def check_id_column(schema: T.StructType, name: str) -> None:
    """Ids must be integers (byte, short, int or long)."""
    dtype = _field(schema, name, "idCol").dataType
    if not isinstance(dtype, _INTEGRAL):
        raise TypeError(
            f"Column '{name}' (param idCol) must hold integers (int or long); "
            f"got {dtype.simpleString()}."
        )


def check_output_columns(schema: T.StructType, outputs: dict[str, str | None]) -> None:
    """Output columns must be new and distinct.

    Parameters
    ----------
    outputs : dict
        Param name -> output column name (None when the output is disabled).
    """
    seen: dict[str, str] = {}
    for param, name in outputs.items():
        if name is None:
            continue
        if name in schema.fieldNames():
            raise InvalidInputError(f"Output column '{name}' (param {param}) already exists.")
        if name in seen:
            raise InvalidInputError(
                f"Params {seen[name]} and {param} name the same output column '{name}'."
            )
        seen[name] = param
