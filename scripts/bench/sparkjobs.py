"""The Spark side of the benchmark: the session, the noop sink, the Spark floor, results."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa
from pyspark.ml.functions import array_to_vector
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from knnspark.partition import FEATURES_TMP

from .data import REPO_ROOT

_UDF_PROFILER = "spark.sql.pyspark.udf.profiler"


def local_session(
    master: str,
    shuffle_partitions: int,
    driver_memory: str | None = None,
    *,
    ui: bool = False,
    app_name: str | None = None,
    conf: dict[str, str] | None = None,
) -> SparkSession:
    """The session of a benchmark: ``master``, quiet (no progress bars, log level ERROR).

    The Python workers run this interpreter and import this checkout's knnspark and the
    benchmark's own functions (the Spark floor) from the repository root, put on their
    ``PYTHONPATH``.  With ``ui`` the Spark UI (and its REST API, which reports shuffle bytes
    per stage) runs; ``conf`` adds settings.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    paths = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    builder = SparkSession.builder.master(master)
    if app_name:
        builder = builder.appName(app_name)
    settings = {
        "spark.sql.shuffle.partitions": str(shuffle_partitions),
        "spark.ui.enabled": str(ui).lower(),
        "spark.ui.showConsoleProgress": "false",
        **({"spark.driver.memory": driver_memory} if driver_memory else {}),
        **(conf or {}),
    }
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def build_spark(
    cores: int,
    batch_size: int,
    driver_memory: str,
    ui: bool = False,
    conf: dict[str, str] | None = None,
) -> SparkSession:
    """A session like the tests' (conftest.py), with large Arrow batches for speed."""
    settings = {
        "spark.default.parallelism": str(cores),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(batch_size),
        "spark.sql.adaptive.enabled": "false",
        **(conf or {}),
    }
    return local_session(
        f"local[{cores}]",
        2 * cores,
        driver_memory,
        ui=ui,
        app_name="knnspark-bench",
        conf=settings,
    )


def noop(df: DataFrame) -> None:
    """Run the whole plan and discard the rows (Spark's ``noop`` sink)."""
    df.write.format("noop").mode("overwrite").save()


def output_floor_fn(
    n_classes: int,
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """Identity search: drops the features copy and appends knnspark's output columns."""

    def search(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            n = batch.num_rows
            offsets = pa.array(np.arange(0, n * n_classes + 1, n_classes, dtype=np.int32))
            votes = pa.ListArray.from_arrays(offsets, pa.array(np.zeros(n * n_classes)))
            batch = batch.drop_columns([FEATURES_TMP])
            batch = batch.append_column("__pred", pa.array(np.zeros(n)))
            batch = batch.append_column("__raw", votes)
            yield batch.append_column("__proba", votes)

    return search


def spark_floor(queries: DataFrame, n_classes: int) -> DataFrame:
    """What the broadcast search plan costs with no search: same input, same output shape."""
    arr = T.ArrayType(T.DoubleType(), False)
    extra = [T.StructField(name, arr, True) for name in ("__raw", "__proba")]
    schema = T.StructType(
        queries.schema.fields + [T.StructField("__pred", T.DoubleType(), True), *extra]
    )
    out = queries.withColumn(FEATURES_TMP, F.col("features")).mapInArrow(
        output_floor_fn(n_classes), schema
    )
    return out.select(
        *queries.columns,
        F.col("__pred").alias("prediction"),
        array_to_vector("__raw").alias("rawPrediction"),
        array_to_vector("__proba").alias("probability"),
    )


def import_search_code(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Identity function that loads knnspark's search modules in the worker (for its RSS)."""
    import knnspark.kernels.hnsw  # noqa: F401 - loaded for its memory, as a search loads it
    import knnspark.partition  # noqa: F401

    yield from batches


def release_model(model: object) -> None:
    """Drop a model's broadcast so the workers free its shards before the next phase.

    Reaches into the model's cached broadcast: knnspark offers no public way to drop it.
    """
    cached = getattr(model, "_broadcast", None)
    if cached is not None:
        with contextlib.suppress(Exception):  # best effort: the benchmark goes on either way
            cached[-1].destroy()
        model._broadcast = None


def spark_neighbors(model: object, queries: DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """knnspark's neighbor ids and distances through Spark, ordered by ``qid``."""
    table = model.kneighbors(queries).select("qid", "neighbor_ids", "distances").toArrow()
    table = table.sort_by("qid")
    k = len(table.column("neighbor_ids")[0])
    ids, dist = (
        table.column(name).combine_chunks().flatten().to_numpy().reshape(table.num_rows, k)
        for name in ("neighbor_ids", "distances")
    )
    return ids, dist


def spark_predictions(model: object, queries: DataFrame) -> np.ndarray:
    table = model.transform(queries).select("qid", "prediction").toArrow().sort_by("qid")
    return table.column("prediction").to_numpy()


def knnspark_numbering(train_df: DataFrame) -> np.ndarray:
    """knnspark's id of each training row (by its ``id``): rows numbered in DataFrame order.

    Without ``idCol``, knnspark numbers the rows 0..n-1 in the order of the DataFrame, which
    is the order in which ``toArrow`` collects them.
    """
    row_ids = train_df.select("id").toArrow().column("id").to_numpy()
    numbering = np.empty(row_ids.shape[0], dtype=np.int64)
    numbering[row_ids] = np.arange(row_ids.shape[0])
    return numbering


def udf_profile(spark: SparkSession, job: Callable[[], object], top: int) -> str:
    """Spark's own Python UDF profiler (cProfile in the workers) over one job, as text."""
    spark.profile.clear()
    spark.conf.set(_UDF_PROFILER, "perf")
    try:
        job()
    finally:
        spark.conf.unset(_UDF_PROFILER)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        spark.profile.show(type="perf")
    spark.profile.clear()
    lines = out.getvalue().splitlines()
    header = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    return "\n".join(lines[: header + 1 + top])
