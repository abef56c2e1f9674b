"""The integrity manifest: damaged, edited, incomplete or foreign model folders never load.

Every test strips Hadoop's hidden ``.crc`` files first, as object stores (S3, GCS, ADLS) keep
none: what catches the damage must be knnspark's own checks.  Folders saved before manifests
are made by removing the manifest and the metadata's promise of one (``make_legacy``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from chispa import assert_df_equality
from pyspark.ml.classification import LogisticRegression, LogisticRegressionModel
from pyspark.ml.linalg import Vectors

from knnspark import (
    KNNClassificationModel,
    KNNClassifier,
    ModelLoadError,
    NearestNeighbors,
    NearestNeighborsModel,
)

N_TRAIN, DIM = 90, 4
REPO_ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- helpers


def strip_crc(path: Path) -> Path:
    for crc in path.rglob(".*.crc"):
        crc.unlink()
    return path


def copy_model(source: Path, tmp_path: Path, name: str = "copy") -> Path:
    return strip_crc(Path(shutil.copytree(source, tmp_path / name)))


def only(paths) -> Path:
    (path,) = list(paths)
    return path


def metadata_file(path: Path) -> Path:
    return only((path / "metadata").glob("part-*"))


def edit_metadata(path: Path, edit) -> Path:
    part = metadata_file(path)
    metadata = json.loads(part.read_text())
    edit(metadata)
    part.write_text(json.dumps(metadata, sort_keys=True) + "\n")  # as knnspark writes it
    return part


def make_legacy(path: Path) -> Path:
    """A folder as knnspark wrote it before manifests: no manifest, and none promised."""
    shutil.rmtree(path / "manifest", ignore_errors=True)
    edit_metadata(path, lambda m: m.pop("manifest_version", None))
    return path


def relative(part: Path, model: Path) -> str:
    return str(part.relative_to(model))


def mismatch(model: Path, problem: str) -> str:
    return re.escape(f"The model at '{model}' does not match its manifest: {problem}")


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sorted_output(df, key: str):
    return df.orderBy(key).toPandas()


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def train_df(spark):
    rng = np.random.default_rng(21)
    x = rng.normal(size=(N_TRAIN, DIM))
    labels = rng.integers(0, 3, size=N_TRAIN) * 2.0  # classes 0, 2, 4
    return spark.createDataFrame(
        pd.DataFrame({"id": np.arange(N_TRAIN), "features": list(x), "label": labels})
    ).repartition(3)


@pytest.fixture(scope="module")
def queries(spark):
    rng = np.random.default_rng(22)
    return spark.createDataFrame(
        pd.DataFrame({"qid": np.arange(20), "features": list(rng.normal(size=(20, DIM)))})
    )


@pytest.fixture(scope="module")
def classifier(train_df):
    return KNNClassifier(k=3, idCol="id", numShards=3, algorithm="brute").fit(train_df)


@pytest.fixture(scope="module")
def saved(classifier, tmp_path_factory):
    root = tmp_path_factory.mktemp("integrity")
    classifier.write().save(str(root / "classifier"))
    distributed = classifier.copy({classifier.maxBroadcastBytes: 0})
    distributed.write().save(str(root / "distributed"))
    return root


# ---------------------------------------------------------------- the manifest itself


def test_manifest_covers_every_file_spark_reads(saved):
    model = saved / "classifier"
    manifest = json.loads(only((model / "manifest").glob("part-*")).read_text())
    assert manifest["manifest_version"] == 1 and manifest["hash"] == "sha256"
    # Reference: every file below the folder but the manifest's and Spark's hidden ones,
    # hashed here with hashlib.
    expected = {
        relative(p, model): {"size": p.stat().st_size, "sha256": sha256_of(p)}
        for p in model.rglob("*")
        if p.is_file() and not p.name.startswith((".", "_")) and p.parent.name != "manifest"
    }
    assert manifest["files"] == expected
    assert {name.split("/")[0] for name in expected} == {"metadata", "data"}
    assert json.loads(metadata_file(model).read_text())["manifest_version"] == 1


def test_intact_folder_without_crc_files_loads(saved, tmp_path, classifier, queries):
    path = copy_model(saved / "classifier", tmp_path)
    loaded = KNNClassificationModel.load(str(path))
    assert_df_equality(
        loaded.transform(queries).orderBy("qid"), classifier.transform(queries).orderBy("qid")
    )


# ---------------------------------------------------------------- edited or damaged files


def test_edited_classes_fail_at_load_naming_the_file(saved, tmp_path):
    """Issue 15, item 4: votes of an edited class list would land on the wrong classes."""
    path = copy_model(saved / "classifier", tmp_path)
    part = edit_metadata(path, lambda m: m["index"].update(classes=[0.0, 2.0, 5.0]))
    with pytest.raises(
        ModelLoadError,
        match=mismatch(path, f"{relative(part, path)} does not match its sha256 in the manifest"),
    ):
        KNNClassificationModel.load(str(path))


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        ([0.0, 2.0, 5.0], "is damaged: training labels [4.0] are not among its classes"),
        ([0.0, 2.0], "is damaged: training labels [4.0] are not among its classes"),
        ([0.0, 4.0, 2.0], "has damaged metadata: classes [0.0, 4.0, 2.0] are not finite"),
    ],
)
def test_edited_classes_of_a_model_without_manifest(saved, tmp_path, classes, message):
    """Without a manifest, the labels stored with the rows still expose an edited class list."""
    path = make_legacy(copy_model(saved / "classifier", tmp_path))

    def edit(metadata):
        index = metadata["index"]
        index.update(classes=classes, class_counts=index["class_counts"][: len(classes)])

    edit_metadata(path, edit)
    with pytest.raises(ModelLoadError, match=re.escape(f"The model at '{path}' {message}")):
        KNNClassificationModel.load(str(path))


@pytest.mark.parametrize("layout", ["manifest", "legacy"])
def test_edited_n_features_of_a_distributed_model(saved, tmp_path, layout):
    path = copy_model(saved / "distributed", tmp_path)
    if layout == "legacy":
        make_legacy(path)
    part = edit_metadata(path, lambda m: m["index"].update(n_features=DIM + 1))
    if layout == "manifest":
        message = mismatch(path, f"{relative(part, path)} does not match its sha256")
    else:
        message = re.escape(
            f"The model at '{path}' is damaged: features of length {DIM}, "
            f"its metadata says {DIM + 1}."
        )
    with pytest.raises(ModelLoadError, match=message):
        KNNClassificationModel.load(str(path))


def test_truncated_parquet_part(saved, tmp_path):
    path = copy_model(saved / "classifier", tmp_path)
    part = sorted((path / "data").glob("part-*.parquet"))[0]
    size = part.stat().st_size
    part.write_bytes(part.read_bytes()[: size // 2])
    with pytest.raises(
        ModelLoadError,
        match=mismatch(path, f"{relative(part, path)} has {size // 2} bytes, the manifest says "),
    ):
        KNNClassificationModel.load(str(path))


def test_added_and_missing_files(saved, tmp_path):
    path = copy_model(saved / "distributed", tmp_path)
    parts = sorted((path / "data").glob("part-*.parquet"))
    shutil.copy(parts[0], path / "data" / "part-09999-extra.snappy.parquet")
    parts[1].unlink()
    with pytest.raises(ModelLoadError) as error:
        KNNClassificationModel.load(str(path))
    assert str(error.value) == (
        f"The model at '{path}' does not match its manifest: "
        f"{relative(parts[1], path)} is missing (or empty); "
        "data/part-09999-extra.snappy.parquet is not in the manifest (an added or renamed file). "
        "Restore the folder from a copy or save the model again."
    )


def test_damaged_manifest(saved, tmp_path):
    path = copy_model(saved / "classifier", tmp_path)
    manifest = only((path / "manifest").glob("part-*"))
    manifest.write_text(manifest.read_text()[:40])
    with pytest.raises(
        ModelLoadError,
        match=re.escape(
            f"The model at '{path}' has a damaged manifest, {relative(manifest, path)} "
            "(JSONDecodeError: "
        ),
    ):
        KNNClassificationModel.load(str(path))


# ---------------------------------------------------------------- HNSW graphs and their cache


def _truncate_first_graph(path: Path) -> Path:
    """Cut the first shard's hnswlib file in half, inside its Parquet row."""
    part = next(p for p in sorted((path / "index").glob("part-*")) if pq.read_table(p).num_rows)
    table = pq.read_table(part)
    payloads = table.column("payload").to_pylist()
    payloads[0] = payloads[0][: len(payloads[0]) // 2]
    column = table.schema.get_field_index("payload")
    table = table.set_column(column, table.schema.field(column), [payloads])
    pq.write_table(table, part)
    return part


@pytest.mark.parametrize("layout", ["manifest", "legacy"])
def test_truncated_hnsw_graph_never_loads(spark, train_df, queries, tmp_path, layout):
    """A worker that cached the intact graphs (keyed by model id and shard) never gets to
    search with them for the damaged folder: it does not load."""
    model = NearestNeighbors(k=3, algorithm="hnsw", numShards=2).fit(train_df)
    before = sorted_output(model.kneighbors(queries), "qid")  # the graphs are now cached
    saved_path = tmp_path / "hnsw"
    model.write().save(str(saved_path))
    path = copy_model(saved_path, tmp_path)
    if layout == "legacy":
        make_legacy(path)
    part = _truncate_first_graph(path)
    if layout == "manifest":
        message = mismatch(path, f"{relative(part, path)} has ")
    else:
        message = re.escape(f"The model at '{path}' is damaged: its index folder holds ")
    with pytest.raises(ModelLoadError, match=message):
        NearestNeighborsModel.load(str(path))
    # The intact folder loads under the same model id, so the cache is right to serve it.
    intact = NearestNeighborsModel.load(str(saved_path))
    assert intact.modelId == model.modelId
    assert sorted_output(intact.kneighbors(queries), "qid").equals(before)


# ---------------------------------------------------------------- incomplete saves


def test_folder_without_its_promised_manifest_is_an_incomplete_save(saved, tmp_path):
    path = copy_model(saved / "classifier", tmp_path)
    shutil.rmtree(path / "manifest", ignore_errors=True)
    with pytest.raises(
        ModelLoadError,
        match=re.escape(
            f"The model at '{path}' is an incomplete save: it has no manifest, which knnspark "
        ),
    ):
        KNNClassificationModel.load(str(path))


def test_save_interrupted_before_its_manifest_leaves_no_loadable_model(
    classifier, tmp_path, monkeypatch
):
    """Everything but the manifest written (the latest a kill can come): still no model."""
    import knnspark.persistence.writer as writer

    def killed(spark, path):
        (Path(path) / "manifest" / "_temporary" / "0").mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(writer, "write_manifest", killed)
    path = tmp_path / "model"
    with pytest.raises(KeyboardInterrupt):
        classifier.write().save(str(path))
    assert (path / "data").is_dir() and (path / "metadata").is_dir()
    with pytest.raises(ModelLoadError, match=re.escape("is an incomplete save")):
        KNNClassificationModel.load(str(path))


def test_model_saved_before_manifests_loads_with_a_warning(
    saved, tmp_path, classifier, queries, caplog
):
    path = make_legacy(copy_model(saved / "classifier", tmp_path))
    with caplog.at_level(logging.WARNING, logger="knnspark"):
        loaded = KNNClassificationModel.load(str(path))
    warnings = [r for r in caplog.records if r.name == "knnspark"]
    assert [r.getMessage() for r in warnings] == [
        f"The model at '{path}' has no integrity manifest (saved by knnspark 0.1.0, before "
        "manifests): its files cannot be checked for damage or edits. Save it again to add one."
    ]
    assert_df_equality(
        loaded.transform(queries).orderBy("qid"), classifier.transform(queries).orderBy("qid")
    )


# ---------------------------------------------------------------- another library's model


def test_folder_holding_a_spark_model_names_its_class_and_loader(spark, tmp_path):
    df = spark.createDataFrame(
        [(Vectors.dense([0.0, 1.0]), 0.0), (Vectors.dense([1.0, 0.0]), 1.0)],
        ["features", "label"],
    )
    path = tmp_path / "logistic"
    LogisticRegression(maxIter=3).fit(df).write().save(str(path))
    with pytest.raises(
        ModelLoadError,
        match=re.escape(
            f"The folder at '{path}' holds a org.apache.spark.ml.classification."
            f"LogisticRegressionModel saved by Spark {spark.version}, not a knnspark model; "
            "load it with pyspark.ml.classification.LogisticRegressionModel.load."
        ),
    ):
        KNNClassificationModel.load(str(path))
    LogisticRegressionModel.load(str(path))  # the advice holds


# ---------------------------------------------------------------- a fit job killed mid-save


def _write_fit_config(tmp_path: Path, train: Path, model: Path) -> Path:
    config = tmp_path / "fit.toml"
    config.write_text(
        '[spark]\nmaster = "local[1]"\n'
        '[spark.conf]\n"spark.ui.enabled" = false\n'
        f"[input]\npath = {json.dumps(str(train))}\n"
        f'[model]\npath = {json.dumps(str(model))}\nidCol = "id"\nnumShards = 2\n'
    )
    return config


@pytest.mark.slow
def test_fit_job_killed_while_saving_leaves_no_loadable_model(spark, train_df, tmp_path):
    """SIGKILL the whole ``knnspark fit`` process group (driver and JVM) once the save has
    begun (the metadata is committed), then load what it left."""
    train = tmp_path / "train.parquet"
    train_df.write.parquet(str(train))
    model = tmp_path / "model"
    command = [
        str(Path(sys.executable).with_name("knnspark")),
        "fit",
        "--config",
        str(_write_fit_config(tmp_path, train, model)),
    ]
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_SUBMIT_OPTS": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
    }
    job = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not (model / "metadata" / "_SUCCESS").exists():
            assert job.poll() is None, "the fit job ended before its save began"
            assert time.monotonic() < deadline, "the fit job never began its save"
            time.sleep(0.005)
        os.killpg(job.pid, signal.SIGKILL)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=60)
    assert job.returncode == -signal.SIGKILL
    assert not list((model / "manifest").glob("part-*")), "the kill came after the save"
    strip_crc(model)
    with pytest.raises(
        ModelLoadError, match=re.escape(f"The model at '{model}' is an incomplete save")
    ):
        KNNClassificationModel.load(str(model))
