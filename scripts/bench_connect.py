"""Search throughput on Spark Connect against a classic session, same JVM, same cores.

One ``local[C]`` JVM runs the Spark Connect server plugin; the classic session and a Connect
client share it, so both search with the same executors.  For each index size the script
fits ``KNNClassifier(algorithm="brute")`` once per mode (broadcast storage: a broadcast
variable on classic, the shards inside the search function on Connect), caches the queries,
and times ``transform`` into Spark's ``noop`` sink, the modes taking turns, best of
``--repeats``.  Predictions of both modes must be equal.  Prints a markdown table with the
Connect/classic throughput ratio (target >= 0.8).

    .venv/bin/python scripts/bench_connect.py --rows 5000,100000 --queries 20000 --dim 64

The largest default size (100k x 64 float32: ~26 MiB shipped) is near Connect's 32 MiB
budget (``knnspark.sizing.CONNECT_SHIPPED_BYTES``), the worst case for shipping the index in
the function.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql.connect.session import SparkSession as ConnectSession

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts.bench

from knnspark import KNNClassifier  # noqa: E402
from scripts.bench.cli import add_int_flags, script_parser  # noqa: E402
from scripts.bench.sparkjobs import local_session  # noqa: E402

MODE_VAR = "SPARK_CONNECT_MODE_ENABLED"


@contextmanager
def mode(connect: bool):
    """pyspark.sql.functions build Connect columns while MODE_VAR is set (per process)."""
    os.environ.pop(MODE_VAR, None)
    if connect:
        os.environ[MODE_VAR] = "1"
    try:
        yield
    finally:
        os.environ.pop(MODE_VAR, None)


def sessions(cores: int, batch: int):
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    conf = {
        "spark.sql.shuffle.partitions": str(2 * cores),
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(batch),
        "spark.sql.adaptive.enabled": "false",
    }
    server = {
        "spark.plugins": "org.apache.spark.sql.connect.SparkConnectPlugin",
        "spark.connect.grpc.binding.port": str(port),
        "spark.default.parallelism": str(cores),
    }
    classic = local_session(f"local[{cores}]", 2 * cores, "4g", conf=conf | server)
    connect = ConnectSession.builder.remote(f"sc://localhost:{port}").getOrCreate()
    for key, value in conf.items():
        connect.conf.set(key, value)
    return classic, connect


def data(rows: int, queries: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(20, dim))
    labels = rng.integers(0, 20, size=rows + queries)
    x = centres[labels] + rng.normal(size=(rows + queries, dim))
    return x[:rows], labels[:rows].astype(float), x[rows:]


def frame(spark, x, y=None):
    pdf = pd.DataFrame({"qid": np.arange(len(x)), "features": list(x)})
    if y is not None:
        pdf["label"] = y
    return spark.createDataFrame(pdf)


def main() -> int:
    parser = script_parser(__doc__)
    parser.add_argument("--rows", default="5000,100000", help="training sizes, comma-separated")
    add_int_flags(parser, queries=20000, dim=64, k=10, cores=2)
    parser.add_argument("--partitions", type=int, default=8, help="query partitions (tasks)")
    parser.add_argument("--batch", type=int, default=4096, help="Arrow batch rows")
    add_int_flags(parser, repeats=3)
    args = parser.parse_args()

    classic, connect = sessions(args.cores, args.batch)
    print(
        f"{args.queries} queries x {args.dim} features, k={args.k}, local[{args.cores}], "
        f"{args.partitions} query partitions, best of {args.repeats}\n"
    )
    print("| train rows | index MiB | classic q/s | Connect q/s | Connect / classic |")
    print("|---:|---:|---:|---:|---:|")
    worst = float("inf")
    for rows in (int(r) for r in args.rows.split(",")):
        x, y, q = data(rows, args.queries, args.dim)
        runs = {}
        for name, session in (("classic", classic), ("connect", connect)):
            with mode(name == "connect"):
                model = KNNClassifier(k=args.k, algorithm="brute", numShards=args.cores)
                model = model.fit(frame(session, x, y))
                queries = frame(session, q).repartition(args.partitions).cache()
                queries.count()
                runs[name] = (session, model, queries)
        times: dict[str, list[float]] = {"classic": [], "connect": []}
        for _ in range(args.repeats + 1):  # the first round warms the workers up
            for name, (_, model, queries) in runs.items():
                with mode(name == "connect"):
                    start = time.perf_counter()
                    model.transform(queries).write.format("noop").mode("overwrite").save()
                    times[name].append(time.perf_counter() - start)
        preds = {}
        for name, (_, model, queries) in runs.items():
            with mode(name == "connect"):
                out = model.transform(queries).select("qid", "prediction").toPandas()
                preds[name] = out.sort_values("qid")["prediction"].to_numpy()
                queries.unpersist()
        if not np.array_equal(preds["classic"], preds["connect"]):
            print(f"predictions differ at {rows} training rows", file=sys.stderr)
            return 1
        qps = {name: args.queries / min(t[1:]) for name, t in times.items()}
        ratio = qps["connect"] / qps["classic"]
        worst = min(worst, ratio)
        size = runs["classic"][1].indexSizeBytes / 2**20
        classic_qps, connect_qps = qps["classic"], qps["connect"]
        print(f"| {rows} | {size:.1f} | {classic_qps:.0f} | {connect_qps:.0f} | {ratio:.2f} |")
    print(f"\nworst Connect / classic: {worst:.2f} (target >= 0.8)")
    connect.stop()
    classic.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
