"""End-to-end benchmark: knnspark against single-machine limits and Spark's own LSH k-NN.

One run, the same data and the same number of cores for every method: knnspark runs in
``local[C]`` Spark (C tasks, one BLAS thread each, as Spark sets ``OMP_NUM_THREADS=1`` in its
Python workers), and the single-machine libraries run in the driver process with C threads
(``threadpoolctl`` limits every BLAS/OpenMP pool; faiss and hnswlib also get C explicitly).
Compared, at each training size of seeded clustered data (``--sizes``) and on the digits data:

- **exact**: ``KNNClassifier(algorithm="brute")`` end to end (cached query DataFrame in,
  predictions out through Spark's ``noop`` sink) against faiss-cpu ``IndexFlatL2.search`` and
  scikit-learn's ``KNeighborsClassifier(algorithm="brute").predict`` on the same numpy arrays;
- **HNSW**: ``KNNClassifier(algorithm="hnsw")`` against raw hnswlib, one index of the whole data
  with the same ``M``/``efConstruction``/seed built with C threads; both sweep ``ef``
  (``model.setEf``) and report recall@10 against exact (faiss) and queries/s; build time is
  knnspark's whole ``fit`` against hnswlib's ``add_items``;
- **Spark BRP-LSH**: ``BucketedRandomProjectionLSH`` + ``approxSimilarityJoin`` + top-k by a
  window, swept over (bucketLength, numHashTables) on ``--lsh-queries`` queries only (it is
  slow); its throughput is that query count over its time. Its join threshold is an oracle (the
  largest true k-th neighbor distance of those queries, +1%), which favours LSH;
- **Spark floor**: an identity ``mapInArrow`` with knnspark's output columns over the same
  queries: what any Arrow-UDF search pays before computing anything;
- **growth**: 2x queries at the largest size, and the smallest vs largest training size;
- **memory**: peaks of the driver (Python and JVM RSS) and of the Python workers (RSS sampled
  every 0.2 s from ``/proc``; workers are the forked children of the ``pyspark.daemon``);
- **where the time goes**: knnspark's own timing hook (:mod:`knnspark.timing`). The run sets
  ``KNNSPARK_TIMINGS`` to a temporary directory before the SparkSession starts, so every
  search task and every fit's build task of the library writes one line of seconds per stage
  (load, decode, search, merge, encode; build); the benchmark empties the directory around
  each timed call and keeps the lines of the call it reports. The table shows, for the first
  job after fit and the fastest round, the slowest task stage by stage, the rest of the job
  around it, the Spark floor and ``transform``'s plan construction. Nothing of the library is
  copied or patched. ``--profile`` adds Spark's Python UDF profiler (cProfile in the workers)
  over one search job of each kind.

Every timed Spark search reads a cached, materialized DataFrame; each method's time is the best of
``--repeats`` rounds in which the methods take turns, so a noisy machine slows them alike. The run
exits with status 1 when a correctness check fails (knnspark exact recall vs faiss >= 0.999,
predictions equal to scikit-learn's on >= 99.9% of rows, distances equal to faiss's, and the
timing hook's lines of each reported job cover every query once); targets that are missed are
reported, not failed.

Run from the repository root (results in ``bench-results/``, git-ignored)::

    .venv/bin/python -m scripts.bench --quick      # 5k/20k train x 5k queries: 3-8 minutes
    .venv/bin/python -m scripts.bench              # 50k/200k train x 10k queries: 16-18 minutes
    .venv/bin/python -m scripts.bench --sizes 50000,200000,1000000 --lsh-n-train 50000

(minutes measured on a shared 2-core machine under load 3-17). 1M rows is not run by default:
its exact search alone (1M x 10k, several repeats, faiss and scikit-learn too) takes the better
part of an hour on 2 cores, and its index (~270 MiB exact, ~660 MiB with HNSW graphs) is over
the default ``maxBroadcastBytes``, so it would measure the distributed-reduce path instead.

Outputs: ``bench.json`` (every measurement), ``bench.md`` (the tables, also printed) and
``recall_vs_qps.png``.

Modules: :mod:`.cli` (flags), :mod:`.data` (inputs), :mod:`.sparkjobs` (session, noop sink,
Spark floor), :mod:`.timing` (rounds, wall and CPU time), :mod:`.hook` (the library's timing
lines), :mod:`.memory` and :mod:`.procfs` (RSS and CPU from ``/proc``), :mod:`.baselines`
(faiss, scikit-learn, hnswlib, BRP-LSH), :mod:`.compare` (one size: exact, HNSW),
:mod:`.phases` (growth, many queries, digits, where the time goes), :mod:`.targets`,
:mod:`.report` and :mod:`.plot`, and :mod:`.run` (the phases in order).
"""
