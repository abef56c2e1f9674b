"""Test-only fault injection: fail the first attempt of some executor tasks.

Enabled per job by the Spark local property ``knnspark.test.injectFaults``
(a comma-separated list of stages: ``build``, ``search``), set on the driver
with ``sc.setLocalProperty``; tasks inherit it, so no environment or code
change reaches production runs.  The first attempt of every even-numbered
partition of an enabled stage raises; Spark retries it (with
``spark.task.maxFailures`` > 1), and the output must not change.
"""

from __future__ import annotations

__all__ = ["FAULTS_PROPERTY", "UNROUTED_PROPERTY", "check_routed", "maybe_fail"]

FAULTS_PROPERTY = "knnspark.test.injectFaults"
#: Local property: when set, a shard-major search task that receives a shard's rows without
#: a query routed to it raises (the test that unrouted shards are never read).
UNROUTED_PROPERTY = "knnspark.test.failOnUnroutedShard"


class InjectedFault(RuntimeError):
    """Raised by :func:`maybe_fail`; never seen outside fault-injection tests."""


def maybe_fail(stage: str) -> None:
    """Raise on the first attempt of even partitions when ``stage`` is enabled."""
    from pyspark import TaskContext

    context = TaskContext.get()
    if context is None:
        return
    stages = context.getLocalProperty(FAULTS_PROPERTY)
    if not stages or stage not in stages.split(","):
        return
    if context.attemptNumber() == 0 and context.partitionId() % 2 == 0:
        raise InjectedFault(
            f"knnspark injected fault: {stage} task {context.partitionId()}, attempt 0"
        )


def check_routed(n_queries: int, n_shard_rows: int) -> None:
    """Raise when a shard's rows reached a task without queries, if the test asked."""
    if n_queries or not n_shard_rows:
        return
    from pyspark import TaskContext

    context = TaskContext.get()
    if context is not None and context.getLocalProperty(UNROUTED_PROPERTY):
        raise InjectedFault(f"knnspark: {n_shard_rows} rows of an unrouted shard were read")
