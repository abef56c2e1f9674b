"""Save and load fitted models without pickle, checking every file at load.

A model folder holds:

* ``metadata/`` — one JSON document (written by Spark as a text file, so any
  Hadoop file system works): class, format version, params, classes, number
  of features and rows, rows per shard;
* ``data/`` — the training rows as Parquet written by Spark, with columns
  ``shard, id, features (array<float>), label``;
* ``index/`` — models whose index kind has a payload (HNSW): one Parquet row per
  shard with its ids, labels and payload (for HNSW, the graph in hnswlib's own file
  format), in the layout of :data:`knnspark.shard_codec.PAYLOAD_COLUMNS`;
* ``manifest/`` — written last: the size and sha256 of every other file
  (:mod:`knnspark.persistence.manifest`), checked at load before any file is trusted.

Loading reads JSON, Parquet and the kinds' own files only.  The shard of every row is stored, so a
loaded model searches exactly the shards the saved one did and predicts the
same values.  Modules: :mod:`~knnspark.persistence.layout` (names and versions),
:mod:`~knnspark.persistence.writer`, :mod:`~knnspark.persistence.reader` and
:mod:`~knnspark.persistence.manifest`.
"""

from __future__ import annotations

from knnspark.persistence.layout import FORMAT_VERSION
from knnspark.persistence.reader import KNNModelReader
from knnspark.persistence.writer import KNNModelWriter

__all__ = ["FORMAT_VERSION", "KNNModelReader", "KNNModelWriter"]
