"""What knnspark is compared with: faiss-cpu, scikit-learn, raw hnswlib and Spark's BRP-LSH."""

from __future__ import annotations

import time

import faiss
import hnswlib
import numpy as np
import pyarrow as pa
from pyspark.ml.feature import BucketedRandomProjectionLSH
from pyspark.ml.functions import array_to_vector
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from sklearn.neighbors import KNeighborsClassifier

from .context import Setup
from .data import Data
from .targets import TARGET_RECALL, recall_at_k
from .timing import measured


def faiss_flat(train: np.ndarray) -> tuple[float, faiss.IndexFlatL2]:
    """Build seconds and a faiss ``IndexFlatL2`` of the training rows."""
    start = time.perf_counter()
    index = faiss.IndexFlatL2(train.shape[1])
    index.add(train)
    return time.perf_counter() - start, index


def sklearn_brute(data: Data, k: int) -> tuple[float, KNeighborsClassifier]:
    """Fit seconds and a brute-force scikit-learn classifier of the training rows."""
    start = time.perf_counter()
    clf = KNeighborsClassifier(n_neighbors=k, algorithm="brute").fit(data.train, data.train_labels)
    return time.perf_counter() - start, clf


def hnswlib_index(train: np.ndarray, m: int, ef_construction: int, seed: int, threads: int):
    """One hnswlib index of all the training rows, built with ``threads`` threads."""
    n, dim = train.shape
    index = hnswlib.Index(space="l2", dim=dim)
    index.init_index(max_elements=n, ef_construction=ef_construction, M=m, random_seed=seed)
    index.add_items(train, np.arange(n), num_threads=threads)
    return index


def warm_thread_pools(data: Data) -> None:
    """Load faiss's and scikit-learn's thread pools, so that threadpoolctl can limit them."""
    faiss_flat(data.train[:256])[1].search(data.queries[:8], 3)
    KNeighborsClassifier(3, algorithm="brute").fit(
        data.train[:256], data.train_labels[:256]
    ).predict(data.queries[:8])


# ---------------------------------------------------------------- BRP-LSH


def _lsh_search(model: object, hashed: DataFrame, queries: DataFrame, threshold: float, k: int):
    """approxSimilarityJoin, then the top k of each query by a window, collected."""
    pairs = model.approxSimilarityJoin(queries, hashed, threshold, distCol="dist").select(
        F.col("datasetA.qid").alias("qid"), F.col("datasetB.id").alias("id"), "dist"
    )
    rank = F.row_number().over(Window.partitionBy("qid").orderBy("dist", "id"))
    return pairs.withColumn("rank", rank).filter(F.col("rank") <= k).toArrow()


def _found_ids(table: pa.Table, m: int, k: int) -> np.ndarray:
    found = np.full((m, k), -1, dtype=np.int64)
    qid, ids = table.column("qid").to_numpy(), table.column("id").to_numpy()
    found[qid, table.column("rank").to_numpy() - 1] = ids
    return found


def _lsh_point(setup: Setup, vec_train, vec_queries, bucket, tables, threshold, ref_ids, first):
    """One (bucketLength, numHashTables) setting: hash the training rows, join, score."""
    args = setup.args
    m = ref_ids.shape[0]
    brp = BucketedRandomProjectionLSH(
        inputCol="vec",
        outputCol="hashes",
        bucketLength=bucket,
        numHashTables=tables,
        seed=args.seed,
    )
    start = time.perf_counter()
    model = brp.fit(vec_train)
    hashed = model.transform(vec_train).cache()
    hashed.count()
    build = time.perf_counter() - start
    if first:  # warm the JVM's code paths once, untimed
        _lsh_search(model, hashed, vec_queries.limit(20), threshold, args.k)
    tables_out: list[pa.Table] = []
    seconds, cpu = measured(
        lambda: tables_out.append(_lsh_search(model, hashed, vec_queries, threshold, args.k))
    )
    found = _found_ids(tables_out[0], m, args.k)
    hashed.unpersist(blocking=True)
    return {
        "bucketLength": bucket,
        "numHashTables": tables,
        "build_s": build,
        "seconds": seconds,
        "queries_per_s": m / seconds,
        "cpu_s": cpu,
        "queries_per_cpu_s": m / cpu,
        "recall": recall_at_k(found, ref_ids),
        "queries_with_k_found": int((found >= 0).all(axis=1).sum()),
    }


def bench_lsh(setup: Setup, data: Data, train_df: DataFrame, ref_ids, ref_dist) -> dict:
    """Spark's BucketedRandomProjectionLSH: approxSimilarityJoin + top-k per query by a window.

    Swept over ``--lsh`` on ``--lsh-queries`` queries only (it is slow). Its join threshold
    is an oracle (the largest true k-th neighbor distance of those queries, +1%), which
    favours LSH.
    """
    args = setup.args
    m = min(args.lsh_queries, data.queries.shape[0])
    threshold = float(np.sqrt(ref_dist[:m, -1].max()) * 1.01)
    vec_train = train_df.select("id", array_to_vector("features").alias("vec")).cache()
    vec_train.count()
    queries = setup.frames.rows(f"lsh-queries-{m}", data.queries[:m], data.query_labels[:m], "qid")
    vec_queries = queries.select("qid", array_to_vector("features").alias("vec")).cache()
    vec_queries.count()
    results = []
    with setup.memory.phase_of("lsh"):
        for i, (bucket, tables) in enumerate(args.lsh):
            point = _lsh_point(
                setup, vec_train, vec_queries, bucket, tables, threshold, ref_ids[:m], i == 0
            )
            results.append(point)
            print(
                f"  LSH bucketLength={bucket} numHashTables={tables}: recall "
                f"{point['recall']:.3f}, {point['queries_per_s']:,.1f} q/s",
                flush=True,
            )
    for df in (vec_train, vec_queries, queries):
        df.unpersist(blocking=True)
    good = [r for r in results if r["recall"] >= TARGET_RECALL]
    best = (
        max(good, key=lambda r: r["queries_per_s"])
        if good
        else max(results, key=lambda r: r["recall"])
    )
    return {
        "n_train": int(data.train.shape[0]),
        "n_queries": m,
        "threshold": threshold,
        "sweep": results,
        "best": best,
    }
