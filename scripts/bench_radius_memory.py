"""Peak Python memory of one radius_neighbors task, on both search paths (no Spark needed).

Runs the task functions ``radius_neighbors`` ships (:mod:`knnspark.radius`) in this process on
one shard of ``--rows`` x ``--features`` clustered float32 rows and measures each call's peak
with ``tracemalloc`` (numpy and Arrow buffers included; the shard itself is loaded before):

- ``broadcast``: the ``mapInArrow`` function over one Arrow batch of ``--batch`` queries, with
  the rows in one shard and in ``--shards`` shards (whose lists are merged in the task);
- ``distributed``: the ``cogroup`` function with ``--routed`` queries routed to the shard, as
  one task of the shard-major path holds them (the rounds bound that count, by
  ``spark.knnspark.search.queryBytesPerTask``).

Each for a radius holding every row under several ``maxNeighbors`` caps (None: no cap), and for
a radius holding a few dozen rows per query (16 for the median query).  From the repository
root::

    .venv/bin/python scripts/bench_radius_memory.py
"""

from __future__ import annotations

import sys
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts.bench

from knnspark.kernels.exact import ExactShard  # noqa: E402
from knnspark.partition import FEATURES_TMP, KEY_HI, KEY_LO, NEIGHBORS, SearchSettings  # noqa: E402
from knnspark.radius import RadiusSettings, _broadcast_fn, _shard_fn  # noqa: E402
from knnspark.shard_codec import shard_rows_table  # noqa: E402
from knnspark.shard_major import ROUTE_KEY  # noqa: E402
from scripts.bench.cli import script_parser  # noqa: E402


def _features(matrix: np.ndarray) -> pa.Array:
    n, d = matrix.shape
    offsets = pa.array(np.arange(0, n * d + 1, d, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(matrix.reshape(-1), pa.float32()))


def _peak(call) -> tuple[float, int]:
    """(peak MiB, pairs returned) of ``call()``, which returns a table or batch."""
    tracemalloc.start()
    out = call()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20, pc.sum(pc.list_value_length(out.column("__knn_r_ids"))).as_py()


def main() -> None:
    parser = script_parser(__doc__, rows=20_000, features=32, batch=512, routed=512, shards=4)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.rows, args.features)).astype(np.float32)
    n_q = max(args.batch, args.routed)
    q = x[rng.integers(args.rows, size=n_q)] + rng.normal(size=(n_q, args.features)).astype(
        np.float32
    )
    ids = np.arange(args.rows, dtype=np.int64)
    shard = ExactShard(x, ids)
    split = [
        ExactShard(x[ids % args.shards == s], ids[ids % args.shards == s])
        for s in range(args.shards)
    ]
    shard_rows = shard_rows_table(0, shard)
    every = 1e6  # far beyond every distance of this data
    # The median over 64 queries of the distance to the 16th nearest row.
    near = np.linalg.norm(x[None, :, :] - q[:64, None, :], axis=2)
    sixteen = float(np.median(np.sort(near, axis=1)[:, 15]))
    search = SearchSettings(
        task=NEIGHBORS, k=1, metric="euclidean", p=2.0, n_features=args.features,
        features_col="features", handle_invalid="error", model_id="bench",
    )  # fmt: skip
    cases = [(every, 10), (every, 1000), (every, None), (sixteen, None)]
    print("| path | queries | radius | maxNeighbors | pairs | peak MiB |")
    print("|---|---|---|---|---|---|")
    for radius, cap in cases:
        settings = RadiusSettings(search, radius, cap)
        batch = pa.record_batch({FEATURES_TMP: _features(q[: args.batch])})
        label = "every row" if radius == every else "a few dozen rows"
        for shards in ([shard], split):
            fn = _broadcast_fn(SimpleNamespace(value=shards), settings)
            peak, pairs = _peak(lambda fn=fn, batch=batch: next(fn(iter([batch]))))
            path = f"broadcast, {len(shards)} shard{'s' if len(shards) > 1 else ''}"
            print(f"| {path} | {args.batch} | {label} | {cap} | {pairs:,} | {peak:.0f} |")
        routed = pa.table(
            {
                KEY_HI: pa.array(np.arange(args.routed, dtype=np.int64)),
                KEY_LO: pa.array(np.arange(args.routed, dtype=np.int32)),
                ROUTE_KEY: pa.array(np.zeros(args.routed, dtype=np.int32)),
                FEATURES_TMP: _features(q[: args.routed]),
            }
        )
        task = _shard_fn(settings)
        task(routed.slice(0, 1), shard_rows)  # loads the shard into the per-worker cache
        peak, pairs = _peak(lambda task=task, routed=routed: task(routed, shard_rows))
        path = "distributed (1 shard per task)"
        print(f"| {path} | {args.routed} | {label} | {cap} | {pairs:,} | {peak:.0f} |")


if __name__ == "__main__":
    main()
