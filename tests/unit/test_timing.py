"""The timing hook benchmarks read: one line per task, stages that add up."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from knnspark.kernels.exact import ExactShard
from knnspark.partition import FEATURES_TMP, NEIGHBORS, SearchSettings, broadcast_search_fn
from knnspark.timing import TIMINGS_ENV, read_timings


class _Broadcast:
    def __init__(self, value):
        self.value = value


def _run(n_batches=3, rows=40):
    rng = np.random.default_rng(0)
    shards = [ExactShard(rng.normal(size=(100, 4)), np.arange(s, 200, 2)) for s in range(2)]
    settings = SearchSettings(
        task=NEIGHBORS,
        k=3,
        metric="euclidean",
        p=2.0,
        n_features=4,
        features_col="features",
        handle_invalid="error",
    )
    batches = [
        pa.RecordBatch.from_pydict(
            {FEATURES_TMP: pa.array(list(rng.normal(size=(rows, 4))), pa.list_(pa.float32()))}
        )
        for _ in range(n_batches)
    ]
    return list(broadcast_search_fn(_Broadcast(shards), settings)(iter(batches)))


def test_timings_are_written_per_task_when_enabled(tmp_path, monkeypatch):
    monkeypatch.setenv(TIMINGS_ENV, str(tmp_path))
    out = _run()
    _run(n_batches=1, rows=5)
    records = read_timings(tmp_path)
    assert [(r["fn"], r["batches"], r["rows"]) for r in records] == [
        ("broadcast_search", 3, 120),
        ("broadcast_search", 1, 5),
    ]
    first = records[0]
    assert set(first["seconds"]) == {"load", "decode", "search", "merge", "encode"}
    assert sum(first["seconds"].values()) <= first["wall"]
    assert sum(b.num_rows for b in out) == 120


def test_nothing_is_written_when_disabled(tmp_path, monkeypatch):
    monkeypatch.delenv(TIMINGS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    _run()
    assert list(tmp_path.iterdir()) == []
