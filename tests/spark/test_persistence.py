"""Saving and loading fitted models: exact round trips, no pickle, clear errors on damage."""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from chispa import assert_df_equality
from pyspark.errors import AnalysisException
from pyspark.ml.linalg import Vectors, VectorUDT
from pyspark.sql import types as T

import knnspark
from knnspark import (
    KNNClassificationModel,
    KNNClassifier,
    KNNRegressionModel,
    KNNRegressor,
    ModelLoadError,
    NearestNeighbors,
    NearestNeighborsModel,
)

N_TRAIN = 60
DIM = 4
NUM_SHARDS = 3
REPO_ROOT = Path(__file__).resolve().parents[2]

SCHEMA = T.StructType(
    [
        T.StructField("id", T.LongType()),
        T.StructField("features", VectorUDT()),
        T.StructField("label", T.DoubleType()),
        T.StructField("target", T.DoubleType()),
    ]
)

MODEL_CLASSES = {
    "classifier": KNNClassificationModel,
    "regressor": KNNRegressionModel,
    "neighbors": NearestNeighborsModel,
}


def make_estimator(kind: str, **extra):
    """Non-default params everywhere, so the round trip has something to preserve.

    ``algorithm="brute"``: these are the exact models of issue 2, whose folders hold
    metadata and Parquet only.
    """
    extra.setdefault("algorithm", "brute")
    if kind == "classifier":
        return KNNClassifier(
            k=4,
            weights="distance",
            metric="manhattan",
            idCol="id",
            numShards=NUM_SHARDS,
            probabilityCol="proba",
            neighborsCol="neighbors",
            **extra,
        )
    if kind == "regressor":
        return KNNRegressor(
            k=3,
            labelCol="target",
            weights="distance",
            metric="minkowski",
            p=3.0,
            numShards=NUM_SHARDS,
            predictionCol="estimate",
            **extra,
        )
    return NearestNeighbors(
        k=5, idCol="id", metric="chebyshev", numShards=NUM_SHARDS, distancesCol="dist", **extra
    )


def search(model, df):
    if isinstance(model, NearestNeighborsModel):
        return model.kneighbors(df)
    return model.transform(df)


def plain_outputs(df):
    """Vector columns as arrays, so Parquet holds them and chispa can sort and compare them."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.ml.linalg import VectorUDT

    for field in df.schema.fields:
        if isinstance(field.dataType, VectorUDT):
            df = df.withColumn(field.name, vector_to_array(field.name, "float64"))
    return df


def assert_same_outputs(got, expected):
    assert_df_equality(plain_outputs(got), plain_outputs(expected), ignore_row_order=True)


def set_params(model) -> dict:
    return {p.name: model.getOrDefault(p) for p in model.params if model.isSet(p)}


def all_params(model) -> dict:
    return {p.name: v for p, v in model.extractParamMap().items()}


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def train_df(spark):
    rng = np.random.default_rng(11)
    features = rng.normal(size=(N_TRAIN, DIM))
    labels = rng.integers(0, 3, size=N_TRAIN) * 2.0  # classes 0, 2, 4
    target = features @ np.arange(1.0, DIM + 1) + rng.normal(scale=0.1, size=N_TRAIN)
    ids = rng.permutation(np.arange(100, 100 + 3 * N_TRAIN, 3))[:N_TRAIN]  # sparse, shuffled
    rows = [
        (int(i), Vectors.dense(x), float(y), float(t))
        for i, x, y, t in zip(ids, features, labels, target, strict=True)
    ]
    return spark.createDataFrame(rows, SCHEMA)


@pytest.fixture(scope="module")
def queries(spark):
    rng = np.random.default_rng(12)
    return spark.createDataFrame(
        [(i, Vectors.dense(x)) for i, x in enumerate(rng.normal(size=(25, DIM)))],
        T.StructType([SCHEMA["id"], SCHEMA["features"]]),
    )


@pytest.fixture(scope="module")
def models(train_df):
    return {kind: make_estimator(kind).fit(train_df) for kind in MODEL_CLASSES}


@pytest.fixture(scope="module")
def saved(models, tmp_path_factory):
    """Each model saved once; tests that damage a folder work on a copy."""
    root = tmp_path_factory.mktemp("saved")
    for kind, model in models.items():
        model.write().save(str(root / kind))
    return root


@pytest.fixture(scope="module")
def distributed_models(train_df):
    return {
        kind: make_estimator(kind, maxBroadcastBytes=0).fit(train_df)
        for kind in ("classifier", "neighbors")
    }


def damaged_copy(saved: Path, tmp_path: Path, kind: str = "classifier") -> Path:
    target = tmp_path / f"damaged-{kind}"
    shutil.copytree(saved / kind, target)
    return target


def make_legacy(path: Path) -> Path:
    """Turn a saved folder into one saved before manifests: no manifest, none promised.

    The structural checks below are what protects such folders, so the damage tests run on
    them; ``test_model_integrity.py`` covers folders with a manifest.
    """
    shutil.rmtree(path / "manifest", ignore_errors=True)
    edit_metadata(path, lambda m: m.pop("manifest_version", None))
    return path


def legacy_copy(saved: Path, tmp_path: Path, kind: str = "classifier") -> Path:
    return make_legacy(damaged_copy(saved, tmp_path, kind))


def metadata_file(path: Path) -> Path:
    (part,) = (path / "metadata").glob("part-*")
    return part


def rewrite_metadata(path: Path, text: str) -> None:
    """Replace the metadata document, as an editor or another tool would (no checksum)."""
    part = metadata_file(path)
    part.write_text(text)
    (part.parent / f".{part.name}.crc").unlink(missing_ok=True)


def edit_metadata(path: Path, edit) -> None:
    metadata = json.loads(metadata_file(path).read_text())
    edit(metadata)
    rewrite_metadata(path, json.dumps(metadata))


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("kind", list(MODEL_CLASSES))
def test_round_trip(models, saved, queries, kind):
    model = models[kind]
    loaded = MODEL_CLASSES[kind].load(str(saved / kind))

    assert type(loaded) is type(model)
    assert loaded.uid == model.uid
    assert set_params(loaded) == set_params(model)
    assert all_params(loaded) == all_params(model)
    assert loaded.numFeatures == model.numFeatures == DIM
    assert loaded.numTrainingRows == model.numTrainingRows == N_TRAIN
    assert loaded.shardSizes == model.shardSizes
    assert loaded.storage == model.storage == "broadcast"
    if kind == "classifier":
        np.testing.assert_array_equal(loaded.classes, [0.0, 2.0, 4.0])
        np.testing.assert_array_equal(loaded.classes, model.classes)

    expected = search(model, queries)
    got = search(loaded, queries)
    assert got.columns == expected.columns
    assert_same_outputs(got, expected)


def test_round_trip_preserves_chosen_params(models, saved):
    clf = KNNClassificationModel.load(str(saved / "classifier"))
    assert (clf.getK(), clf.getMetric(), clf.getWeights(), clf.getIdCol()) == (
        4,
        "manhattan",
        "distance",
        "id",
    )
    assert (clf.getProbabilityCol(), clf.getNeighborsCol()) == ("proba", "neighbors")
    reg = KNNRegressionModel.load(str(saved / "regressor"))
    assert (reg.getK(), reg.getMetric(), reg.getP(), reg.getWeights(), reg.getIdCol()) == (
        3,
        "minkowski",
        3.0,
        "distance",
        None,
    )
    assert (reg.getLabelCol(), reg.getPredictionCol()) == ("target", "estimate")
    nn = NearestNeighborsModel.load(str(saved / "neighbors"))
    assert (nn.getK(), nn.getMetric(), nn.getIdCol(), nn.getDistancesCol()) == (
        5,
        "chebyshev",
        "id",
        "dist",
    )


def test_loaded_model_keeps_search_params_adjustable(models, saved, queries):
    """A loaded model is an ordinary model: changing k behaves as on the original."""
    loaded = KNNClassificationModel.load(str(saved / "classifier"))
    original = models["classifier"]
    assert_same_outputs(
        loaded.copy({loaded.k: 1}).transform(queries),
        original.copy({original.k: 1}).transform(queries),
    )


@pytest.mark.parametrize("kind", ["classifier", "neighbors"])
def test_distributed_model_round_trip(distributed_models, models, queries, tmp_path, kind):
    model = distributed_models[kind]
    assert model.storage == "distributed"
    model.write().save(str(tmp_path / kind))
    loaded = MODEL_CLASSES[kind].load(str(tmp_path / kind))

    assert loaded.storage == "distributed"
    assert loaded.getMaxBroadcastBytes() == 0
    assert loaded.shardSizes == model.shardSizes
    expected = search(model, queries)
    assert_same_outputs(search(loaded, queries), expected)
    # ...and both storages give the broadcast model's output.
    assert_same_outputs(expected, search(models[kind], queries))


# ---------------------------------------------------------------- overwrite


def test_save_onto_existing_path_needs_overwrite(models, queries, tmp_path):
    path = str(tmp_path / "model")
    first = models["classifier"]
    first.write().save(path)

    with pytest.raises(AnalysisException, match="already exists"):
        first.write().save(path)
    with pytest.raises(AnalysisException, match="already exists"):
        first.save(path)
    # The failed saves left the model intact.
    assert_same_outputs(
        KNNClassificationModel.load(path).transform(queries), first.transform(queries)
    )

    second = first.copy({first.k: 1})
    second.write().overwrite().save(path)
    loaded = KNNClassificationModel.load(path)
    assert loaded.getK() == 1
    assert_same_outputs(loaded.transform(queries), second.transform(queries))


# ---------------------------------------------------------------- no pickle


def test_saved_folders_hold_only_json_and_parquet(saved, distributed_models, tmp_path):
    distributed_models["classifier"].write().save(str(tmp_path / "distributed"))
    folders = [saved / kind for kind in MODEL_CLASSES] + [tmp_path / "distributed"]
    for folder in folders:
        kinds = set()
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            content = path.read_bytes()
            assert not content.startswith(b"\x80"), f"{path} looks like a pickle"
            if path.name.endswith(".crc"):
                assert content.startswith(b"crc\x00"), path
                kinds.add("checksum")
            elif path.name == "_SUCCESS":
                assert content == b"", path
            elif path.parent.name == "metadata":
                metadata = json.loads(content)
                assert (
                    metadata["class"]
                    == f"knnspark.{MODEL_CLASSES[metadata_kind(metadata)].__name__}"
                )
                kinds.add("json")
            elif path.parent.name == "manifest":
                covered = {
                    str(p.relative_to(folder))
                    for p in folder.rglob("*")
                    if p.is_file()
                    and not p.name.startswith((".", "_"))
                    and p.parent.name != "manifest"
                }
                assert set(json.loads(content)["files"]) == covered, path
                kinds.add("manifest")
            else:
                assert path.parent.name == "data", path
                assert content[:4] == content[-4:] == b"PAR1", path
                schema = pq.read_schema(path)
                # Plain numeric columns only: no binary column could smuggle a pickle in.
                assert [(f.name, f.type) for f in schema] == [
                    ("shard", pa.int32()),
                    ("id", pa.int64()),
                    ("features", pa.list_(pa.field("element", pa.float32(), nullable=False))),
                    ("label", pa.float64()),
                ], path
                kinds.add("parquet")
        assert {"json", "parquet", "manifest"} <= kinds, folder


def metadata_kind(metadata: dict) -> str:
    by_class = {f"knnspark.{cls.__name__}": kind for kind, cls in MODEL_CLASSES.items()}
    return by_class[metadata["class"]]


def test_metadata_records_format_and_index(saved):
    metadata = json.loads(metadata_file(saved / "classifier").read_text())
    assert metadata["format_version"] == 1
    assert metadata["knnspark_version"] == knnspark.__version__
    assert metadata["index"]["n_rows"] == N_TRAIN
    assert metadata["index"]["n_features"] == DIM
    assert metadata["index"]["classes"] == [0.0, 2.0, 4.0]
    assert sum(metadata["index"]["shard_sizes"].values()) == N_TRAIN
    assert metadata["params"]["k"] == 4


# ---------------------------------------------------------------- missing or damaged folders
# Folders with a manifest: tests/spark/test_model_integrity.py.  Most tests here damage folders
# saved before manifests (make_legacy), whose structural checks are their only protection.


def test_load_missing_folder(spark, tmp_path):
    path = tmp_path / "nothing-here"
    with pytest.raises(
        ModelLoadError,
        match=re.escape(
            f"No knnspark model at '{path}': its metadata folder is missing or unreadable"
        ),
    ):
        KNNClassificationModel.load(str(path))


def _remove_metadata_files(path):
    for part in (path / "metadata").glob("*part-*"):
        part.unlink()


def _remove_data_files(path):
    for part in (path / "data").glob("*.parquet*"):
        part.unlink()


# Each way of damaging a saved folder, the message (with the folder's path) it gives for a folder
# saved before manifests, and the start of the one it gives with a manifest (which names a file).
MISSING_METADATA = r"metadata/part-00000-[\w-]+\.txt is missing \(or empty\)"
EDITED_METADATA = r"metadata/part-00000-[\w-]+\.txt has \d+ bytes, the manifest says \d+"
MISSING_DATA = r"data/part-00000-[\w-]+\.snappy\.parquet is missing \(or empty\)"
DAMAGES = [
    pytest.param(
        lambda path: shutil.rmtree(path / "metadata"),
        "No knnspark model at '{path}': its metadata folder is missing or unreadable",
        MISSING_METADATA,
        id="no-metadata-folder",
    ),
    pytest.param(
        _remove_metadata_files,
        "The model at '{path}' has damaged metadata (JSONDecodeError: ",
        MISSING_METADATA,
        id="no-metadata-file",
    ),
    pytest.param(
        lambda path: rewrite_metadata(
            path, '{"class": "knnspark.KNNClassificationModel", "index": [1, 2'
        ),
        "The model at '{path}' has damaged metadata (JSONDecodeError: ",
        EDITED_METADATA,
        id="garbage-metadata",
    ),
    pytest.param(
        lambda path: edit_metadata(path, lambda m: m.pop("index")),
        "The model at '{path}' has damaged metadata (KeyError: 'index').",
        EDITED_METADATA,
        id="metadata-without-index",
    ),
    pytest.param(
        _remove_data_files,
        "The model at '{path}' is damaged: its data folder holds 0 training rows, "
        f"its metadata says {N_TRAIN}.",
        MISSING_DATA,
        id="no-data-files",
    ),
    pytest.param(
        lambda path: shutil.rmtree(path / "data"),
        "The model at '{path}' has no training data folder",
        MISSING_DATA,
        id="no-data-folder",
    ),
]


@pytest.mark.parametrize(("damage", "legacy_message", "manifest_message"), DAMAGES)
@pytest.mark.parametrize("layout", ["legacy", "manifest"])
def test_load_of_a_damaged_folder_names_the_damage(
    saved, tmp_path, damage, legacy_message, manifest_message, layout
):
    path = damaged_copy(saved, tmp_path)
    if layout == "legacy":
        make_legacy(path)
    damage(path)
    if layout == "legacy":
        message = re.escape(legacy_message.replace("{path}", str(path)))
    else:
        message = re.escape(f"The model at '{path}' does not match its manifest: ")
        message += manifest_message
    with pytest.raises(ModelLoadError, match=message):
        KNNClassificationModel.load(str(path))


@pytest.mark.parametrize("layout", ["legacy", "manifest"])
def test_load_metadata_corrupted_in_place(saved, tmp_path, layout):
    """Bytes flipped on disk: the file no longer matches its checksum, so Spark fails to read it.

    That read error must still reach the user as a ModelLoadError, not a Java stack trace; with
    a manifest it comes from hashing the files, and names the file.
    """
    path = damaged_copy(saved, tmp_path)
    if layout == "legacy":
        make_legacy(path)
    part = metadata_file(path)
    content = bytearray(part.read_bytes())
    content[2:12] = b"\x00garbage\xff\xfe\x01"
    part.write_bytes(bytes(content))
    if layout == "legacy":  # make_legacy rewrote the metadata, leaving no checksum
        message = re.escape(f"The model at '{path}' has damaged metadata (JSONDecodeError")
    else:
        message = re.escape(f"The model at '{path}' has an unreadable file: ") + ".*" + part.name
    with pytest.raises(ModelLoadError, match=message):
        KNNClassificationModel.load(str(path))


@pytest.mark.filterwarnings("ignore:toPandas attempted Arrow optimization")
def test_load_corrupted_data_file(saved, tmp_path):
    path = legacy_copy(saved, tmp_path)
    part = sorted((path / "data").glob("part-*.parquet"))[0]
    part.write_bytes(b"PAR1" + b"\x00" * 64 + b"PAR1")
    (part.parent / f".{part.name}.crc").unlink()
    with pytest.raises(
        ModelLoadError, match=re.escape(f"The model at '{path}' has unreadable training data")
    ):
        KNNClassificationModel.load(str(path))


@pytest.mark.parametrize("storage", ["broadcast", "distributed"])
def test_load_row_count_differs_from_metadata(saved, distributed_models, tmp_path, storage):
    if storage == "broadcast":
        path = legacy_copy(saved, tmp_path)
    else:
        path = tmp_path / "distributed"
        distributed_models["classifier"].write().save(str(path))
        make_legacy(path)

    def add_row(metadata):
        metadata["index"]["n_rows"] += 1

    edit_metadata(path, add_row)
    with pytest.raises(
        ModelLoadError,
        match=re.escape(
            f"The model at '{path}' is damaged: its data folder holds {N_TRAIN} training rows, "
            f"its metadata says {N_TRAIN + 1}."
        ),
    ):
        KNNClassificationModel.load(str(path))


def test_load_shard_sizes_differ_from_metadata(saved, tmp_path):
    path = legacy_copy(saved, tmp_path)

    def move_row(metadata):
        sizes = metadata["index"]["shard_sizes"]
        sizes["0"] += 1
        sizes["1"] -= 1

    edit_metadata(path, move_row)
    with pytest.raises(
        ModelLoadError, match=re.escape(f"The model at '{path}' is damaged: shard 0 has ")
    ):
        KNNClassificationModel.load(str(path))


def test_load_feature_count_differs_from_metadata(saved, tmp_path):
    path = legacy_copy(saved, tmp_path)
    edit_metadata(path, lambda m: m["index"].update(n_features=DIM + 1))
    with pytest.raises(
        ModelLoadError,
        match=re.escape(
            f"The model at '{path}' is damaged: features of length {DIM}, "
            f"its metadata says {DIM + 1}."
        ),
    ):
        KNNClassificationModel.load(str(path))


@pytest.mark.parametrize(
    ("saved_kind", "load_cls"),
    [
        ("classifier", KNNRegressionModel),
        ("classifier", NearestNeighborsModel),
        ("regressor", KNNClassificationModel),
        ("neighbors", KNNClassificationModel),
    ],
)
def test_load_with_the_wrong_class(saved, saved_kind, load_cls):
    path = saved / saved_kind
    saved_cls = MODEL_CLASSES[saved_kind].__name__
    with pytest.raises(
        ModelLoadError,
        match=re.escape(
            f"The model at '{path}' is a knnspark.{saved_cls}, not a "
            f"knnspark.{load_cls.__name__}; load it with {saved_cls}.load."
        ),
    ):
        load_cls.load(str(path))


def test_load_newer_format_version(saved, tmp_path):
    path = legacy_copy(saved, tmp_path)
    edit_metadata(path, lambda m: m.update(format_version=99))
    with pytest.raises(
        ModelLoadError,
        match=re.escape(
            f"The model at '{path}' has format version 99; this knnspark "
            f"({knnspark.__version__}) reads versions up to 1."
        ),
    ):
        KNNClassificationModel.load(str(path))


def test_load_unknown_param(saved, tmp_path):
    path = legacy_copy(saved, tmp_path)
    edit_metadata(path, lambda m: m["params"].update(bogus=1))
    with pytest.raises(
        ModelLoadError, match=re.escape(f"The model at '{path}' has an unknown param 'bogus'.")
    ):
        KNNClassificationModel.load(str(path))


# ---------------------------------------------------------------- a fresh SparkSession


FRESH_SESSION_SCRIPT = """
import sys

from pyspark.sql import SparkSession

from knnspark import KNNClassificationModel, KNNRegressionModel, NearestNeighborsModel

{plain_outputs}

models_dir, queries_path, out_dir = sys.argv[1:4]
spark = (
    SparkSession.builder.master("local[1]")
    .appName("knnspark-fresh-session")
    .config("spark.ui.enabled", "false")
    .getOrCreate()
)
queries = spark.read.parquet(queries_path)
for kind, cls in [
    ("classifier", KNNClassificationModel),
    ("regressor", KNNRegressionModel),
    ("neighbors", NearestNeighborsModel),
]:
    model = cls.load(models_dir + "/" + kind)
    out = model.kneighbors(queries) if kind == "neighbors" else model.transform(queries)
    plain_outputs(out).write.parquet(out_dir + "/" + kind)
spark.stop()
"""


@pytest.mark.slow
def test_fresh_session_predicts_what_the_saved_model_did(spark, models, saved, queries, tmp_path):
    queries_path = tmp_path / "queries"
    queries.write.parquet(str(queries_path))
    out_dir = tmp_path / "out"
    script = FRESH_SESSION_SCRIPT.format(
        plain_outputs=textwrap.dedent(inspect.getsource(plain_outputs))
    )
    env = dict(
        os.environ,
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(saved), str(queries_path), str(out_dir)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]

    same_queries = spark.read.parquet(str(queries_path))
    for kind, model in models.items():
        expected = plain_outputs(search(model, same_queries))
        got = spark.read.parquet(str(out_dir / kind))
        assert got.count() == queries.count()
        assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
