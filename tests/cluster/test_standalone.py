"""The fit and score jobs on a real Spark standalone cluster: one master, two workers.

The cluster runs on 127.0.0.1 from pyspark's bundled ``bin/spark-class``; the jobs go through
``scripts/submit.sh`` (so the library reaches the executors by ``--py-files``), and their
output must equal what the same jobs write in local mode. This catches what local mode hides:
closures that capture driver state, executors that cannot import what the driver can.
Every cluster run injects task failures while the shards are built and while rows are scored
(each retried: ``spark.task.maxFailures=2``), so the same comparison also shows that retried
tasks change no row; a fault-free run does strictly less, and each spark-submit starts three
JVMs, so there is no separate clean run.

Every process the fixture starts is in a process group of its own, killed at teardown with
the executors and Python workers below it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pyspark
import pytest
from chispa import assert_df_equality

from knnspark import KNNClassificationModel
from knnspark.app.jobs import FAULTS_CONF, run_job

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
SPARK_HOME = Path(pyspark.__file__).resolve().parent
RUN_DATE = "2026-11-21"
N_TEST = 360  # rows of data/digits/test.parquet
COMPARED = ["id", "label", "prediction", "probability", "rawPrediction", "model_version"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Short-lived test JVMs: the C1 compiler alone and the serial collector need far less CPU to
# start, which matters on a 2-core CI machine running five of them.
QUICK_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def cluster_env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_DAEMON_MEMORY": "512m",
        "SPARK_DAEMON_JAVA_OPTS": QUICK_JVM,
        "SPARK_SUBMIT_OPTS": QUICK_JVM,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        **extra,
    }


def kill_group(process: subprocess.Popen, grace: float = 15.0) -> None:
    """Stop a process and everything in its process group (executors, Python workers)."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    # The leader may be gone while children of its group live on: SIGKILL the group anyway.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@dataclass
class Cluster:
    url: str
    web_port: int
    root: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    def start(self, name: str, main_class: str, *args: str) -> None:
        log = (self.root / f"{name}.log").open("w")
        process = subprocess.Popen(
            [str(SPARK_HOME / "bin" / "spark-class"), main_class, *args],
            cwd=self.root,
            env=cluster_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.processes.append(process)

    def alive_workers(self) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/json/", timeout=5) as r:
                state = json.load(r)
        except OSError:
            return -1
        return sum(1 for worker in state.get("workers", []) if worker.get("state") == "ALIVE")

    def wait_for_workers(self, count: int, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.processes):
                break
            if self.alive_workers() == count:
                return
            time.sleep(1.0)
        logs = "\n".join(
            f"--- {log.name}\n{log.read_text()[-3000:]}" for log in self.root.glob("*.log")
        )
        raise RuntimeError(f"the standalone cluster did not come up with {count} workers\n{logs}")

    def stop(self) -> None:
        for process in reversed(self.processes):
            kill_group(process)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    port, web_port = free_port(), free_port()
    cluster = Cluster(url=f"spark://127.0.0.1:{port}", web_port=web_port, root=root)
    try:
        cluster.start(
            "master",
            "org.apache.spark.deploy.master.Master",
            *("--host", "127.0.0.1", "--port", str(port), "--webui-port", str(web_port)),
        )
        for worker in (1, 2):
            cluster.start(
                f"worker{worker}",
                "org.apache.spark.deploy.worker.Worker",
                *("--host", "127.0.0.1", "--port", str(free_port())),
                *("--webui-port", str(free_port()), "--cores", "1", "--memory", "1g"),
                *("--work-dir", str(root / f"work{worker}"), cluster.url),
            )
        cluster.wait_for_workers(2)
        yield cluster
    finally:
        cluster.stop()
    assert all(process.poll() is not None for process in cluster.processes)


def submit(cluster: Cluster, job: str, *job_args: str, faults: str) -> tuple[str, str]:
    """spark-submit ``jobs/<job>.py`` to the cluster through scripts/submit.sh.

    The first attempt of some tasks of the stages ``faults`` names fails (and is retried).
    Returns the job's stdout and its executors' stderr logs.
    """
    options = {
        "spark.executor.memory": "512m",
        "spark.cores.max": "2",
        "spark.ui.enabled": "false",
        "spark.executor.extraJavaOptions": QUICK_JVM,
        "spark.task.maxFailures": "2",
        FAULTS_CONF: faults,
    }
    apps_before = set(cluster.root.glob("work*/app-*"))
    command = ["bash", str(REPO_ROOT / "scripts" / "submit.sh"), "--master", cluster.url]
    for key, value in options.items():
        command += ["--conf", f"{key}={value}"]
    command += [job, *job_args]
    env = cluster_env(KNNSPARK_BUILD_DIR=str(cluster.root / "build"))
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=420)
    except subprocess.TimeoutExpired:
        kill_group(process, grace=2.0)
        out, err = process.communicate()
        pytest.fail(f"spark-submit {job} timed out\n{err[-5000:]}")
    finally:
        kill_group(process, grace=2.0)
    assert process.returncode == 0, f"spark-submit {job} failed\n{out}\n{err[-5000:]}"
    apps = set(cluster.root.glob("work*/app-*")) - apps_before
    assert apps, f"spark-submit {job} ran no executor on the cluster"
    executor_logs = "".join(
        log.read_text(errors="replace") for app in apps for log in app.glob("*/stderr")
    )
    return out, executor_logs


def write_configs(folder: Path, **model_params) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    params = "".join(f"{name} = {json.dumps(value)}\n" for name, value in model_params.items())
    fit = folder / "fit.toml"
    fit.write_text(
        f'[input]\npath = "{REPO_ROOT / "data/digits/train.parquet"}"\n'
        f'[model]\npath = "{folder / "model"}"\nk = 5\nidCol = "id"\nnumShards = 3\n{params}'
    )
    score = folder / "score.toml"
    score.write_text(
        f'[input]\npath = "{REPO_ROOT / "data/digits/test.parquet"}"\n'
        f'[model]\npath = "{folder / "model"}"\n'
        f'[output]\npath = "{folder / "scores"}"\n'
    )
    return fit, score


def read_scores(spark, folder: Path, columns: list[str]):
    return spark.read.parquet(str(folder / "scores")).select(*columns)


def fit_and_score(cluster: Cluster, name: str, local: Path, faults: str, **params):
    """The fit and score jobs on the cluster, with injected ``faults``, and in local mode.

    Returns the cluster run's folder and its executors' logs (fit's, then score's).
    """
    folder = cluster.root / name
    fit, score = write_configs(folder, **params)
    _, fit_logs = submit(cluster, "fit", "--config", str(fit), faults=faults)
    score_out, score_logs = submit(
        cluster, "score", "--config", str(score), "--run-date", RUN_DATE, faults=faults
    )
    assert f"score: {N_TEST} rows in, {N_TEST} rows out" in score_out

    local_fit, local_score = write_configs(local, **params)
    assert run_job("fit", ["--config", str(local_fit)]) == 0
    assert run_job("score", ["--config", str(local_score), "--run-date", RUN_DATE]) == 0
    return folder, fit_logs + score_logs


def test_cluster_output_equals_local_output_despite_injected_faults(spark, cluster, tmp_path):
    folder, logs = fit_and_score(cluster, "broadcast", tmp_path, faults="build,search")
    for stage in ("build", "search"):
        assert f"knnspark injected fault: {stage} task" in logs  # faults really fired
    # The executors ran the library shipped with --py-files.
    shipped = list(cluster.root.glob("work*/app-*/*/knnspark.zip"))
    assert shipped, "no executor fetched knnspark.zip"

    on_cluster = read_scores(spark, folder, [*COMPARED, "model_id"])
    local = read_scores(spark, tmp_path, COMPARED)
    assert on_cluster.count() == N_TEST
    assert on_cluster.select("id").distinct().count() == N_TEST
    assert_df_equality(on_cluster.select(*COMPARED), local, ignore_row_order=True)
    model_id = KNNClassificationModel.load(str(folder / "model")).modelId
    assert {r["model_id"] for r in on_cluster.select("model_id").distinct().collect()} == {model_id}


#: The shard-major path with k-means shards: the index stays on the executors, queries travel.
SHARD_MAJOR = {"maxBroadcastBytes": 0, "partitioning": "kmeans", "shardsVisitedCol": "visited"}


def test_shard_major_path_on_the_cluster_equals_local_mode(spark, cluster, tmp_path):
    """Fit and score with a distributed k-means index, with injected task failures."""
    folder, logs = fit_and_score(cluster, "shard-major", tmp_path, "build,search", **SHARD_MAJOR)
    # Exact shards kept distributed are the training rows themselves: no build task runs.
    assert "knnspark injected fault: search task" in logs  # faults really fired
    assert KNNClassificationModel.load(str(folder / "model")).storage == "distributed"

    compared = [*COMPARED, "visited"]
    on_cluster = read_scores(spark, folder, compared)
    assert on_cluster.count() == N_TEST
    assert on_cluster.select("id").distinct().count() == N_TEST
    assert_df_equality(on_cluster, read_scores(spark, tmp_path, compared), ignore_row_order=True)
