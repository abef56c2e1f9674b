"""Injected task failures during index building and scoring change nothing in the output."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from chispa import assert_df_equality

from knnspark import KNNClassifier
from knnspark._faults import FAULTS_PROPERTY


@pytest.fixture(scope="module")
def data(spark):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(1500, 6))
    y = (x[:, 0] + x[:, 1] > 0).astype(float)
    df = spark.createDataFrame(
        pd.DataFrame({"qid": np.arange(1500), "features": list(x), "label": y})
    )
    return df.repartition(4)


def _with_faults(spark, stages, group, fn):
    sc = spark.sparkContext
    sc.setLocalProperty(FAULTS_PROPERTY, stages)
    sc.setJobGroup(group, "fault injection")
    try:
        return fn()
    finally:
        sc.setLocalProperty(FAULTS_PROPERTY, None)
        sc.setLocalProperty("spark.jobGroup.id", None)


def _failed_tasks(spark, group):
    tracker = spark.sparkContext.statusTracker()
    failed = 0
    for job_id in tracker.getJobIdsForGroup(group):
        for stage_id in tracker.getJobInfo(job_id).stageIds:
            info = tracker.getStageInfo(stage_id)
            failed += info.numFailedTasks if info else 0
    return failed


@pytest.mark.parametrize("algorithm", ["brute", "hnsw"])
@pytest.mark.parametrize("budget", [None, 0])
def test_retried_tasks_give_identical_output(spark, data, algorithm, budget):
    est = KNNClassifier(k=5, numShards=4, algorithm=algorithm, neighborsCol="nb")
    if budget is not None:
        est.setMaxBroadcastBytes(budget)
    clean = est.fit(data).transform(data).orderBy("qid")
    expected = clean.collect()

    def faulty():
        return est.fit(data).transform(data).orderBy("qid").collect()

    group = f"faults-{algorithm}-{budget}"
    got = _with_faults(spark, "build,search", group, faulty)
    assert _failed_tasks(spark, group) > 0  # the faults really fired, and were retried
    assert len(got) == len(expected) == 1500
    assert [r["qid"] for r in got] == list(range(1500))  # none lost, none duplicated
    assert_df_equality(spark.createDataFrame(got, clean.schema), clean)
