"""The jobs end to end: scheduled scoring, idempotent re-runs, faults, exit codes, metrics.

Most tests run the command line in-process (``run_job`` with the session fixture, which it
leaves running); one starts the ``knnspark`` command in a subprocess, for what needs a JVM of
its own (a run with ``spark.task.maxFailures`` = 1 that dies half way).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    r2_score,
    recall_score,
)
from sklearn.neighbors import KNeighborsClassifier

import knnspark
from knnspark import KNNClassificationModel
from knnspark._faults import FAULTS_PROPERTY
from knnspark.app import output
from knnspark.app import score as score_job
from knnspark.app.jobs import run_job
from knnspark.app.staging import STALE_AFTER, staging_folder

REPO_ROOT = Path(__file__).resolve().parents[2]
N_TRAIN, N_QUERIES, DIM, K = 240, 90, 4, 5
DAY_1, DAY_2 = "2026-11-20", "2026-11-21"
ADDED = ["model_id", "model_version", "scored_at", "run_date"]
MINUTE = datetime.timedelta(minutes=1)


def toml_value(value):
    # JSON strings, numbers, booleans and lists are valid TOML values.
    return json.dumps(value)


def write_config(path: Path, tables: dict) -> Path:
    lines = []
    for table, keys in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in keys.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def make_rows(rng, n, start_id):
    centers = np.array([[0.0, 0.0, 0.0, 0.0], [3.0, 3.0, 0.0, 0.0], [0.0, 3.0, 3.0, 3.0]])
    labels = rng.integers(0, 3, size=n)
    x = centers[labels] + rng.normal(scale=1.2, size=(n, DIM))
    return pd.DataFrame(
        {
            "id": np.arange(start_id, start_id + n, dtype=np.int64),
            "features": list(x),
            "label": labels.astype(np.float64),
            "target": x @ np.array([1.0, -2.0, 0.5, 3.0]) + rng.normal(scale=0.1, size=n),
        }
    )


@pytest.fixture(scope="module")
def work(spark, tmp_path_factory):
    """Train and query Parquet files and a classification model saved by the fit job."""
    root = tmp_path_factory.mktemp("jobs")
    rng = np.random.default_rng(11)
    train, queries = make_rows(rng, N_TRAIN, 0), make_rows(rng, N_QUERIES, 10_000)
    spark.createDataFrame(train).write.parquet(str(root / "train.parquet"))
    spark.createDataFrame(queries).repartition(3).write.parquet(str(root / "queries.parquet"))
    fit = write_config(
        root / "fit.toml",
        {
            "input": {"path": str(root / "train.parquet")},
            "model": {"path": str(root / "model"), "k": K, "idCol": "id", "numShards": 3},
        },
    )
    assert run_job("fit", ["--config", str(fit)]) == 0
    return {"root": root, "train": train, "queries": queries, "fit": fit}


def score_config(work, tmp_path, **changes):
    tables = {
        "input": {"path": str(work["root"] / "queries.parquet")},
        "model": {"path": str(work["root"] / "model")},
        "output": {"path": str(tmp_path / "scores")},
    }
    for dotted, value in changes.items():
        table, key = dotted.split("__")
        if value is None:
            tables[table].pop(key, None)
        else:
            tables[table][key] = value
    return write_config(tmp_path / "score.toml", tables)


def score(config, *args):
    return run_job("score", ["--config", str(config), *args])


def run_read(spark, path, run_date):
    return spark.read.parquet(str(path)).where(F.col("run_date") == run_date)


def listing(folder: Path) -> dict[str, int]:
    """Every file below ``folder`` with its modification time, to prove nothing changed."""
    return {
        str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()
    }


def test_score_writes_one_partition_with_lineage_columns(spark, work, tmp_path, capsys):
    config = score_config(work, tmp_path)
    assert score(config, "--run-date", DAY_1) == 0
    out = capsys.readouterr().out
    assert f"score: {N_QUERIES} rows in, {N_QUERIES} rows out" in out
    assert f"run_date={DAY_1} written to" in out

    model = KNNClassificationModel.load(str(work["root"] / "model"))
    written = spark.read.parquet(str(tmp_path / "scores"))
    partitions = [p.name for p in (tmp_path / "scores").iterdir() if p.name[0] not in "_."]
    assert partitions == [f"run_date={DAY_1}"]
    assert set(ADDED) <= set(written.columns)
    rows = written.orderBy("id").collect()
    assert len(rows) == N_QUERIES
    assert {str(r["run_date"]) for r in rows} == {DAY_1}
    assert {r["model_id"] for r in rows} == {model.modelId}
    assert {r["model_version"] for r in rows} == {knnspark.__version__}
    assert len({r["scored_at"] for r in rows}) == 1 and rows[0]["scored_at"] is not None

    # The reference: scikit-learn's exact neighbors on the same data.
    train, queries = work["train"], work["queries"]
    reference = KNeighborsClassifier(n_neighbors=K).fit(np.stack(train["features"]), train["label"])
    expected = reference.predict(np.stack(queries.sort_values("id")["features"]))
    np.testing.assert_array_equal([r["prediction"] for r in rows], expected)


def test_rerun_of_a_run_date_replaces_only_that_partition(spark, work, tmp_path):
    config = score_config(work, tmp_path)
    assert score(config, "--run-date", DAY_1) == 0
    assert score(config, "--run-date", DAY_2) == 0
    day_1 = listing(tmp_path / "scores" / f"run_date={DAY_1}")
    first_day_2 = run_read(spark, tmp_path / "scores", DAY_2).select("scored_at").first()[0]

    # The same run date again, with another k: its rows are replaced, not appended.
    assert score(config, "--run-date", DAY_2, "--set", "model.k=1") == 0
    written = spark.read.parquet(str(tmp_path / "scores"))
    counts = {str(r["run_date"]): r["count"] for r in written.groupBy("run_date").count().collect()}
    assert counts == {DAY_1: N_QUERIES, DAY_2: N_QUERIES}
    assert written.select("run_date", "id").distinct().count() == 2 * N_QUERIES
    assert listing(tmp_path / "scores" / f"run_date={DAY_1}") == day_1  # untouched
    rerun = run_read(spark, tmp_path / "scores", DAY_2)
    assert rerun.select("scored_at").distinct().count() == 1
    assert rerun.select("scored_at").first()[0] > first_day_2
    # k=1: every query's probability is one-hot.
    assert {r["probability"].toArray().max() for r in rerun.collect()} == {1.0}
    assert not list((tmp_path / "scores" / "_staging").glob("*"))  # staged rows removed


def test_run_failing_in_a_task_leaves_earlier_output_intact(spark, work, tmp_path, capsys):
    config = score_config(work, tmp_path)
    assert score(config, "--run-date", DAY_1) == 0
    assert score(config, "--run-date", DAY_2) == 0
    before = listing(tmp_path / "scores")
    # One NaN feature, under the model's handleInvalid="error", fails one task of the search.
    broken = work["queries"].copy()
    broken.at[N_QUERIES - 1, "features"] = np.array([np.nan, 0.0, 0.0, 0.0])
    spark.createDataFrame(broken).repartition(3).write.parquet(str(tmp_path / "broken.parquet"))
    capsys.readouterr()
    status = score(
        config, "--run-date", DAY_2, "--set", f"input.path={tmp_path / 'broken.parquet'}"
    )
    assert status == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "NaN" in err
    assert listing(tmp_path / "scores") == before  # both days as they were, no staging left
    assert run_read(spark, tmp_path / "scores", DAY_2).count() == N_QUERIES


def test_row_count_check_fails_loudly_and_publishes_nothing(
    spark, work, tmp_path, capsys, monkeypatch
):
    config = score_config(work, tmp_path)
    assert score(config, "--run-date", DAY_1) == 0
    before = listing(tmp_path / "scores")
    counted = score_job.check_scoring_input
    # As if a row went missing between the read and the write.
    monkeypatch.setattr(
        score_job, "check_scoring_input", lambda *args, **kw: counted(*args, **kw) + 1
    )
    capsys.readouterr()
    assert score(config, "--run-date", DAY_1) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"error: read {N_QUERIES + 1} input rows but scored {N_QUERIES}; nothing was published "
        "and the output is unchanged"
    )
    assert listing(tmp_path / "scores") == before


def test_injected_faults_with_retries_change_nothing(spark, work, tmp_path):
    (tmp_path / "clean").mkdir()
    (tmp_path / "faulty").mkdir()
    clean = score_config(work, tmp_path / "clean")
    assert score(clean, "--run-date", DAY_1) == 0
    faulty = score_config(work, tmp_path / "faulty")
    sc = spark.sparkContext
    sc.setLocalProperty(FAULTS_PROPERTY, "build,search")  # the fixture retries once (local[2,2])
    try:
        assert score(faulty, "--run-date", DAY_1) == 0
    finally:
        sc.setLocalProperty(FAULTS_PROPERTY, None)
    columns = ["id", "prediction", "probability", "rawPrediction", "model_id", "run_date"]
    expected = spark.read.parquet(str(tmp_path / "clean" / "scores")).select(*columns)
    got = spark.read.parquet(str(tmp_path / "faulty" / "scores")).select(*columns)
    assert got.count() == N_QUERIES
    assert_df_equality(got, expected, ignore_row_order=True)


def test_table_input_and_table_output(spark, work, tmp_path):
    spark.read.parquet(str(work["root"] / "queries.parquet")).createOrReplaceTempView("knn_queries")
    # An external table over the output of an earlier run, partitioned by run_date.
    assert score(score_config(work, tmp_path), "--run-date", DAY_1) == 0
    spark.sql(f"CREATE TABLE knn_scores USING parquet LOCATION '{tmp_path / 'scores'}'")
    spark.sql("ALTER TABLE knn_scores RECOVER PARTITIONS")
    try:
        config = score_config(
            work,
            tmp_path,
            input__path="knn_queries",
            input__format="table",
            output__path="knn_scores",
            output__format="table",
            output__staging_path=str(tmp_path / "staging"),
        )
        assert score(config, "--run-date", DAY_2) == 0
        assert score(config, "--run-date", DAY_2) == 0
        table = spark.table("knn_scores")
        counts = {str(r[0]): r[1] for r in table.groupBy("run_date").count().collect()}
        assert counts == {DAY_1: N_QUERIES, DAY_2: N_QUERIES}
    finally:
        spark.sql("DROP TABLE IF EXISTS knn_scores")
        spark.catalog.dropTempView("knn_queries")


# ---------------------------------------------------------------- fit


def test_fit_job_sets_the_params_it_once_refused(spark, work, tmp_path):
    config = write_config(
        tmp_path / "fit.toml",
        {
            "input": {"path": str(work["root"] / "train.parquet")},
            "model": {
                "path": str(tmp_path / "hnsw"),
                "idCol": "id",
                "algorithm": "hnsw",
                "M": 8,
                "efConstruction": 50,
                "classWeights": "balanced",
            },
        },
    )
    assert run_job("fit", ["--config", str(config)]) == 0
    model = KNNClassificationModel.load(str(tmp_path / "hnsw"))
    assert model.algorithmUsed == "hnsw"
    assert (model.getM(), model.getEfConstruction(), model.getClassWeights()) == (8, 50, "balanced")


def test_fit_job_neighbors_task_refuses_a_classifier_param(spark, work, tmp_path, capsys):
    model_table = {"task": "neighbors", "path": str(tmp_path / "nn"), "idCol": "id", "k": 3}
    tables = {"input": {"path": str(work["root"] / "train.parquet")}, "model": model_table}
    config = write_config(tmp_path / "fit.toml", tables)
    assert run_job("fit", ["--config", str(config), "--set", "model.distancesCol=dist"]) == 0
    model = knnspark.NearestNeighborsModel.load(str(tmp_path / "nn"))
    assert (model.getK(), model.getDistancesCol()) == (3, "dist")
    capsys.readouterr()
    assert run_job("fit", ["--config", str(config), "--set", "model.classWeights=balanced"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert errors == [
        "error: model.classWeights: a param of KNNClassifier, not of NearestNeighbors "
        "(model.task = 'neighbors'); leave it out"
    ]


# ---------------------------------------------------------------- bad config and input


def _copy_model(work, tmp_path):
    target = tmp_path / "model"
    shutil.copytree(work["root"] / "model", target)
    return target


def _partial_model(work, tmp_path):
    target = _copy_model(work, tmp_path)
    shutil.rmtree(target / "data")
    return target


def _corrupt_model(work, tmp_path):
    target = _copy_model(work, tmp_path)
    for part in (target / "metadata").glob("part-*"):
        part.write_text('{"class": "knnspark.KNNClassificationModel", "index": ')
    for crc in (target / "metadata").glob(".*.crc"):
        crc.unlink()
    return target


def _empty_folder(work, tmp_path):
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


def _no_rows(work, tmp_path, spark):
    df = spark.read.parquet(str(work["root"] / "queries.parquet")).limit(0)
    df.write.parquet(str(tmp_path / "none.parquet"))
    return tmp_path / "none.parquet"


def _short_vectors(work, tmp_path, spark):
    df = spark.read.parquet(str(work["root"] / "queries.parquet"))
    df = df.withColumn("features", F.slice("features", 1, 3))
    df.write.parquet(str(tmp_path / "short.parquet"))
    return tmp_path / "short.parquet"


def _no_features(work, tmp_path, spark):
    df = spark.read.parquet(str(work["root"] / "queries.parquet")).drop("features")
    df.write.parquet(str(tmp_path / "nofeatures.parquet"))
    return tmp_path / "nofeatures.parquet"


def _csv_with_three_columns(work, tmp_path, spark):
    pdf = pd.DataFrame(np.stack(work["queries"]["features"])[:, :3], columns=["a", "b", "c"])
    pdf.to_csv(tmp_path / "q.csv", index=False)
    return tmp_path / "q.csv"


def _truncated_part(work, tmp_path, which):
    """A copy of the queries with one Parquet part cut in half (its footer lost)."""
    target = tmp_path / f"truncated-{which}.parquet"
    shutil.copytree(work["root"] / "queries.parquet", target)
    parts = sorted(target.glob("part-*.parquet"))
    part = parts[0] if which == "first" else parts[-1]
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    for crc in target.glob(".*.crc"):  # as on an object store: no checksum files
        crc.unlink()
    return target


def _a_file(work, tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    return tmp_path / "afile"


# How Spark words the reason depends on the bytes the cut leaves at the end of the part.
TRUNCATED = (
    r"error: input\.path: .*truncated-{which}\.parquet: cannot read file:.*truncated-{which}"
    r"\.parquet/part-.*\.parquet \(FAILED_READ_FILE\.\w+\): \S.*"
)

BAD_RUNS = {
    "missing input": (
        lambda w, t, s: {"input__path": str(t / "nope.parquet")},
        r"error: input\.path: no such file or directory: .*nope\.parquet",
    ),
    "empty input folder": (
        lambda w, t, s: {"input__path": str(_empty_folder(w, t))},
        r"error: input\.path: cannot read .*empty as parquet: .*Unable to infer schema",
    ),
    "input without rows": (
        lambda w, t, s: {"input__path": str(_no_rows(w, t, s))},
        r"error: input\.path: .*none\.parquet holds no rows; nothing to score",
    ),
    "missing model": (
        lambda w, t, s: {"model__path": str(t / "nomodel")},
        r"error: model\.path: no such file or directory: .*nomodel",
    ),
    "partial model": (
        lambda w, t, s: {"model__path": str(_partial_model(w, t))},
        r"error: The model at '.*model' does not match its manifest: "
        r"data/part-00000-\S+ is missing \(or empty\)",
    ),
    "corrupt model": (
        lambda w, t, s: {"model__path": str(_corrupt_model(w, t))},
        r"error: The model at '.*model' does not match its manifest: "
        r"metadata/part-00000-\S+ has 54 bytes, the manifest says ",
    ),
    "wrong task": (
        lambda w, t, s: {"model__task": "regression"},
        r"error: model\.task: 'regression', but the model at .* is a "
        r"knnspark\.KNNClassificationModel \(task 'classification'\)",
    ),
    "missing features column": (
        lambda w, t, s: {"input__path": str(_no_features(w, t, s))},
        r"error: Column 'features' \(param featuresCol\) does not exist\. Available columns: id,",
    ),
    "wrong vector length": (
        lambda w, t, s: {"input__path": str(_short_vectors(w, t, s))},
        r"error: Column 'features' of .*short\.parquet holds vectors of length 3 in 90 of 90 "
        r"rows; the model at .* was fitted on 4 features",
    ),
    "csv with too few columns": (
        lambda w, t, s: {
            "input__path": str(_csv_with_three_columns(w, t, s)),
            "input__format": "csv",
            "input__feature_columns": ["a", "b", "c"],
        },
        r"error: input\.feature_columns: 3 columns, but the model at .* was fitted on 4 features",
    ),
    "unknown key": (
        lambda w, t, s: {"output__partition": "day"},
        r"error: unknown key output\.partition; valid keys in \[output\]: format, path, ",
    ),
    "bad run date": (
        lambda w, t, s: {"--run-date": "21/11/2026"},
        r"error: output\.run_date \(--run-date\): expected a date YYYY-MM-DD, got '21/11/2026'",
    ),
    "run date without dashes": (
        lambda w, t, s: {"--run-date": "20261121"},
        r"error: output\.run_date \(--run-date\): expected a date YYYY-MM-DD, got '20261121'$",
    ),
    "week date": (
        lambda w, t, s: {"--run-date": "2026-W47-6"},
        r"error: output\.run_date \(--run-date\): expected a date YYYY-MM-DD, got '2026-W47-6'$",
    ),
    "output path is a file": (
        lambda w, t, s: {"output__path": str(_a_file(w, t))},
        r"error: output\.path: .*afile is a file; the score job writes a folder there$",
    ),
    "output path below a file": (
        lambda w, t, s: {"output__path": str(_a_file(w, t) / "scores")},
        r"error: output\.path: .*afile is a file, so .*afile/scores cannot be a folder$",
    ),
    "staging path is a file": (
        lambda w, t, s: {"output__staging_path": str(_a_file(w, t))},
        r"error: output\.staging_path: .*afile is a file; the score job writes a folder there$",
    ),
    "truncated first part": (
        lambda w, t, s: {"input__path": str(_truncated_part(w, t, "first"))},
        TRUNCATED.format(which="first"),
    ),
    "truncated last part": (
        lambda w, t, s: {"input__path": str(_truncated_part(w, t, "last"))},
        TRUNCATED.format(which="last"),
    ),
    "unpartitioned output folder": (
        lambda w, t, s: {"output__path": str(_no_rows(w, t, s))},
        r"error: output\.path: .*none\.parquet holds part-.*which is not a run_date= partition",
    ),
}


@pytest.mark.parametrize("case", list(BAD_RUNS))
def test_bad_config_or_input_exits_2_with_one_line(spark, work, tmp_path, capfd, case):
    make_changes, message = BAD_RUNS[case]
    changes = make_changes(work, tmp_path, spark)
    run_date = changes.pop("--run-date", DAY_1)
    config = score_config(work, tmp_path, **changes)
    capfd.readouterr()
    assert score(config, "--run-date", run_date) == 2
    err = capfd.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert re.fullmatch(message + ".*", errors[0]), errors[0]
    assert "Traceback" not in err and "\tat org.apache" not in err
    assert not (tmp_path / "scores").exists()


def test_fit_job_names_a_truncated_input_part(spark, work, tmp_path, capfd):
    truncated = _truncated_part(work, tmp_path, "last")
    config = write_config(
        tmp_path / "fit.toml",
        {"input": {"path": str(truncated)}, "model": {"path": str(tmp_path / "model")}},
    )
    capfd.readouterr()
    assert run_job("fit", ["--config", str(config)]) == 2
    err = capfd.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and re.fullmatch(TRUNCATED.format(which="last") + ".*", errors[0])
    assert "Traceback" not in err and "An error occurred while calling" not in err
    assert not (tmp_path / "model").exists()


def test_next_run_removes_staging_left_by_a_killed_run(spark, work, tmp_path):
    """A driver killed by SIGKILL leaves its staging folder; the next run removes it if stale."""
    config = score_config(work, tmp_path)
    staging = tmp_path / "scores" / "_staging"
    now = output.utc_now()
    # What a run killed three days ago left (named as this version names them) ...
    killed = Path(
        staging_folder(str(staging), datetime.date(2026, 11, 18), now - 1.5 * STALE_AFTER)
    )
    # ... what an earlier version left (no start in the name: its folder time counts) ...
    older = staging / ("2026-11-01-" + "a" * 32)
    # ... a run for another date that started ten minutes ago and is still going ...
    live = Path(staging_folder(str(staging), datetime.date(2026, 11, 19), now - 10 * MINUTE))
    # ... and a folder that is not the job's.
    foreign = staging / "keep-me"
    for folder in (killed, older, live, foreign):
        (folder / "_temporary" / "0").mkdir(parents=True)
        (folder / "_temporary" / "0" / "part-00000.parquet").write_bytes(b"PAR1")
    old = (now - 2 * STALE_AFTER).timestamp()
    for folder in (older, foreign):
        os.utime(folder, (old, old))

    assert score(config, "--run-date", DAY_1) == 0
    assert sorted(p.name for p in staging.iterdir()) == sorted([live.name, foreign.name])
    assert run_read(spark, tmp_path / "scores", DAY_1).count() == N_QUERIES


# ---------------------------------------------------------------- evaluate


def test_evaluate_classification_metrics_match_scikit_learn(spark, work, tmp_path, capsys):
    config = write_config(
        tmp_path / "evaluate.toml",
        {
            "input": {"path": str(work["root"] / "queries.parquet")},
            "model": {"path": str(work["root"] / "model"), "weights": "distance"},
            "output": {"path": str(tmp_path / "out" / "metrics.json")},
        },
    )
    assert run_job("evaluate", ["--config", str(config)]) == 0
    assert f"evaluate: {N_QUERIES} rows in, {N_QUERIES} evaluated" in capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    model = KNNClassificationModel.load(str(work["root"] / "model")).setWeights("distance")
    scored = model.transform(spark.read.parquet(str(work["root"] / "queries.parquet")))
    pdf = scored.select("label", "prediction").toPandas()
    y, p = pdf["label"], pdf["prediction"]
    assert report["task"] == "classification"
    assert report["model"]["model_id"] == model.modelId
    assert report["model"]["weights"] == "distance"
    assert report["rows"] == report["rows_evaluated"] == N_QUERIES
    expected = {
        "accuracy": accuracy_score(y, p),
        "f1": f1_score(y, p, average="weighted", zero_division=0),
        "f1_macro": f1_score(y, p, average="macro", zero_division=0),
        "precision": precision_score(y, p, average="weighted", zero_division=0),
        "recall": recall_score(y, p, average="weighted", zero_division=0),
    }
    assert report["metrics"] == pytest.approx(expected, rel=1e-12)


def test_evaluate_regression_metrics_match_scikit_learn(spark, work, tmp_path):
    # A regressor keeping invalid rows: one query without features gets no prediction.
    fit = write_config(
        tmp_path / "fit.toml",
        {
            "input": {"path": str(work["root"] / "train.parquet")},
            "model": {
                "path": str(tmp_path / "regressor"),
                "task": "regression",
                "labelCol": "target",
                "handleInvalid": "keep",
                "k": 7,
            },
        },
    )
    assert run_job("fit", ["--config", str(fit)]) == 0
    queries = work["queries"].copy()
    queries["features"] = queries["features"].astype(object)
    queries.at[0, "features"] = None
    spark.createDataFrame(queries).write.parquet(str(tmp_path / "q.parquet"))
    config = write_config(
        tmp_path / "evaluate.toml",
        {
            "input": {"path": str(tmp_path / "q.parquet")},
            "model": {"path": str(tmp_path / "regressor")},
            "output": {"path": str(tmp_path / "metrics.json")},
        },
    )
    assert run_job("evaluate", ["--config", str(config)]) == 0
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["task"] == "regression"
    assert (report["rows"], report["rows_evaluated"]) == (N_QUERIES, N_QUERIES - 1)
    assert report["rows_without_prediction"] == 1

    model = knnspark.KNNRegressionModel.load(str(tmp_path / "regressor"))
    pdf = (
        model.transform(spark.read.parquet(str(tmp_path / "q.parquet")))
        .toPandas()
        .dropna(subset=["prediction"])
    )
    y, p = pdf["target"], pdf["prediction"]
    expected = {
        "rmse": mean_squared_error(y, p) ** 0.5,
        "mse": mean_squared_error(y, p),
        "mae": mean_absolute_error(y, p),
        "r2": r2_score(y, p),
    }
    assert report["metrics"] == pytest.approx(expected, rel=1e-9)


def test_evaluate_needs_a_label_column(spark, work, tmp_path, capsys):
    df = spark.read.parquet(str(work["root"] / "queries.parquet")).drop("label")
    df.write.parquet(str(tmp_path / "unlabelled.parquet"))
    config = write_config(
        tmp_path / "evaluate.toml",
        {
            "input": {"path": str(tmp_path / "unlabelled.parquet")},
            "model": {"path": str(work["root"] / "model")},
            "output": {"path": str(tmp_path / "metrics.json")},
        },
    )
    capsys.readouterr()
    assert run_job("evaluate", ["--config", str(config)]) == 2
    assert capsys.readouterr().err.startswith(
        "error: Column 'label' (param labelCol) does not exist in "
    )
    assert not (tmp_path / "metrics.json").exists()


# ---------------------------------------------------------------- the console command


def _knnspark(*args, timeout=300, env=None):
    command = [str(Path(sys.executable).with_name("knnspark")), *args]
    return subprocess.run(
        command,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        # A short-lived JVM starts on half the CPU with the C1 compiler and the serial collector.
        env={
            **os.environ,
            "PYSPARK_PYTHON": sys.executable,
            "SPARK_SUBMIT_OPTS": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
            **(env or {}),
        },
    )


def test_console_command_reports_usage_and_config_errors_without_spark(tmp_path):
    usage = _knnspark("--help", timeout=60)
    assert usage.returncode == 0 and "fit,tune,score,evaluate,join" in usage.stdout
    unknown = _knnspark("predict", "--config", "x.toml", timeout=60)
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == (
        "error: unknown job 'predict'; choose one of fit, tune, score, evaluate, join"
    )
    bad = _knnspark("score", "--config", "conf/score.toml", "--set", "model.kk=3", timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error: unknown key model.kk (did you mean model.k?)")
    missing = _knnspark("evaluate", "--config", str(tmp_path / "nope.toml"), timeout=60)
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"error: config file not found: {tmp_path / 'nope.toml'}"


@pytest.mark.slow
def test_run_dying_half_way_leaves_earlier_output_intact(spark, work, tmp_path):
    """A real run in its own JVM, with one attempt per task and injected failures."""
    config = score_config(work, tmp_path)
    assert score(config, "--run-date", DAY_1) == 0
    assert score(config, "--run-date", DAY_2) == 0
    before = listing(tmp_path / "scores")
    result = _knnspark(
        "score",
        "--config",
        str(config),
        "--run-date",
        DAY_2,
        "--set",
        "spark.master=local[2]",  # one attempt per task: the injected fault kills the run
        "--set",
        "spark.conf.spark.knnspark.test.injectFaults=search",
        "--set",
        "spark.conf.spark.ui.enabled=false",
    )
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: score failed: knnspark._faults.InjectedFault: knnspark injected")
    assert listing(tmp_path / "scores") == before  # no partition touched, no staging left
