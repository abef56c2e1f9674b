"""The jobs' command line, configs, profiles, metrics and submit script, without Spark."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from knnspark.app import output
from knnspark.app.config import PROFILE_SCHEMA, ConfigError, load_config, validate
from knnspark.app.fs import Entry
from knnspark.app.jobs import run_job
from knnspark.app.metrics import confusion_metrics
from knnspark.app.output import parse_run_date
from knnspark.app.schemas import EVALUATE_SCHEMA, SCORE_SCHEMA
from knnspark.app.staging import STALE_AFTER, staging_folder, stale_staging
from knnspark.cli import main as cli_main

REPO_ROOT = Path(__file__).resolve().parents[2]
CONF = REPO_ROOT / "conf"


def test_shipped_score_and_evaluate_configs_are_valid():
    score = load_config(CONF / "score.toml", SCORE_SCHEMA)
    assert score["output"] == {
        "path": "output/digits-predictions",
        "format": "parquet",
        "run_date": None,
        "staging_path": None,
    }
    evaluate = load_config(CONF / "evaluate.toml", EVALUATE_SCHEMA)
    assert evaluate["output"] == {"path": "output/digits-metrics.json", "overwrite": True}
    assert evaluate["model"]["task"] is None  # read from the model's metadata
    assert (REPO_ROOT / evaluate["input"]["path"]).is_file()


@pytest.mark.parametrize("name", ["spark-local.toml", "spark-cluster.toml"])
def test_shipped_profiles_are_valid(name):
    import tomllib

    profile = validate(tomllib.loads((CONF / name).read_text()), PROFILE_SCHEMA)
    assert profile["spark"]["conf"]["spark.sql.sources.partitionOverwriteMode"] == "dynamic"


def test_profile_replaces_the_job_config_and_set_wins(tmp_path):
    profile = tmp_path / "profile.toml"
    profile.write_text(
        '[spark]\nmaster = "spark://h:7077"\n[spark.conf]\n"spark.sql.shuffle.partitions" = 64\n'
        '"spark.executor.memory" = "2g"\n'
    )
    config = load_config(
        CONF / "score.toml",
        SCORE_SCHEMA,
        ["spark.conf.spark.executor.memory=4g"],
        profile=profile,
    )
    assert config["spark"]["master"] == "spark://h:7077"
    assert config["spark"]["app_name"] == "knnspark-score"  # kept from the job config
    assert config["spark"]["conf"]["spark.sql.shuffle.partitions"] == 64
    assert config["spark"]["conf"]["spark.ui.showConsoleProgress"] is False
    assert config["spark"]["conf"]["spark.executor.memory"] == "4g"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[spark]\nmastr = "local"\n', r"profile .*: unknown key spark\.mastr \(did you mean"),
        ("[model]\nk = 3\n", r"profile .*: unknown key model; valid keys in the top level: spark"),
    ],
)
def test_profile_holds_only_spark_settings(tmp_path, text, message):
    profile = tmp_path / "profile.toml"
    profile.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(CONF / "score.toml", SCORE_SCHEMA, profile=profile)


def test_run_date_is_an_iso_date_or_today(monkeypatch):
    assert parse_run_date("2026-11-21") == datetime.date(2026, 11, 21)
    # The clock is set, not read twice: a second before midnight UTC, when the test's own
    # "today" could already be the next day (or, east of UTC, the local date is).
    late = datetime.datetime(2026, 11, 21, 23, 59, 59, tzinfo=datetime.UTC)
    monkeypatch.setattr(output, "utc_now", lambda: late)
    assert parse_run_date(None) == datetime.date(2026, 11, 21)
    assert parse_run_date(None, today=datetime.date(2026, 1, 2)) == datetime.date(2026, 1, 2)
    with pytest.raises(ConfigError, match=r"^output\.run_date \(--run-date\): expected a date"):
        parse_run_date("yesterday")


@pytest.mark.parametrize(
    "text", ["20261121", "2026-W47-6", "2026-326", "2026-11-21T00:00", "2026-1-2", "２０２６-11-21"]
)
def test_run_date_is_only_yyyy_mm_dd(text):
    # Python's date.fromisoformat takes the first three: other spellings of one partition key.
    with pytest.raises(
        ConfigError,
        match=r"^output\.run_date \(--run-date\): expected a date YYYY-MM-DD, got "
        + repr(text).replace(".", r"\.")
        + "$",
    ):
        parse_run_date(text)


NOW = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.UTC)


def _staged(run_date, started, is_dir=True):
    name = staging_folder("root", run_date, started).split("/")[-1]
    return Entry(name, is_dir, 0)


def test_stale_staging_folders_are_old_runs_of_this_job_only():
    day = datetime.date(2026, 11, 21)
    killed = _staged(day, NOW - STALE_AFTER - datetime.timedelta(minutes=1))
    # A run for another date started an hour ago, still going: not stale.
    live = _staged(datetime.date(2026, 11, 22), NOW - datetime.timedelta(hours=1))
    current = _staged(day, NOW - 2 * STALE_AFTER)  # this run's own folder: never
    old_ms = int((NOW - 3 * STALE_AFTER).timestamp() * 1000)
    recent_ms = int((NOW - datetime.timedelta(minutes=5)).timestamp() * 1000)
    entries = [
        killed,
        live,
        current,
        # Named by an earlier version (no start time): the folder's modification time counts.
        Entry("2026-11-01-" + "a" * 32, True, old_ms),
        Entry("2026-11-22-" + "b" * 32, True, recent_ms),
        # Not the score job's: left alone however old.
        Entry("notes", True, old_ms),
        Entry("2026-11-01-" + "c" * 31, True, old_ms),
        Entry(killed.name + ".txt", False, old_ms),
        Entry("2026-11-02-" + "d" * 32, False, old_ms),
    ]
    assert stale_staging(entries, NOW, current=current.name) == [
        killed.name,
        "2026-11-01-" + "a" * 32,
    ]
    assert current.name.startswith("2026-11-21-20261119T120000Z-")


def test_the_jobs_clock_reads_utc():
    before = datetime.datetime.now(datetime.UTC)
    now = output.utc_now()
    assert now.utcoffset() == datetime.timedelta(0)
    assert before <= now <= datetime.datetime.now(datetime.UTC)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "output.format=delta"], "error: output.format: expected one of 'parquet', "),
        (["--set", "model.task=clustering"], "error: model.task: expected one of "),
        (["--profile", "nope.toml"], "error: config file not found: nope.toml"),
    ],
)
def test_config_errors_exit_2_before_spark_starts(capsys, args, message):
    assert run_job("score", ["--config", str(CONF / "score.toml"), *args]) == 2
    assert capsys.readouterr().err.startswith(message)


def test_argument_errors_exit_2_and_help_exits_0(capsys):
    assert run_job("score", []) == 2
    assert "the following arguments are required: --config" in capsys.readouterr().err
    assert run_job("fit", ["--config", "x.toml", "--run-date", "2026-01-01"]) == 2  # score only
    assert run_job("evaluate", ["--help"]) == 0
    assert "--profile" in capsys.readouterr().out


def test_console_command_dispatches_to_the_jobs(capsys):
    assert cli_main([]) == 2
    assert "usage: knnspark" in capsys.readouterr().err
    assert cli_main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("knnspark ")
    assert cli_main(["score", "--help"]) == 0
    assert "--run-date YYYY-MM-DD" in capsys.readouterr().out
    assert cli_main(["tune", "--config", "nope.toml"]) == 2
    assert capsys.readouterr().err.strip() == "error: config file not found: nope.toml"


@pytest.mark.parametrize("seed", range(5))
def test_confusion_metrics_match_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    # Class 3 only ever predicted, class 4 never predicted: both edge cases of the averages.
    y = rng.choice([0.0, 1.0, 2.0, 4.0], size=300)
    p = np.where(rng.random(300) < 0.7, y, rng.choice([0.0, 1.0, 2.0, 3.0], size=300))
    pairs, counts = np.unique(np.stack([y, p], axis=1), axis=0, return_counts=True)
    got = confusion_metrics(pairs[:, 0], pairs[:, 1], counts)
    expected = {
        "accuracy": float(np.mean(y == p)),
        "f1": f1_score(y, p, average="weighted", zero_division=0),
        "f1_macro": f1_score(y, p, average="macro", zero_division=0),
        "precision": precision_score(y, p, average="weighted", zero_division=0),
        "recall": recall_score(y, p, average="weighted", zero_division=0),
    }
    assert got == pytest.approx(expected, rel=1e-12)


def _fake_spark_submit(tmp_path: Path) -> Path:
    fake = tmp_path / "spark-submit"
    fake.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    fake.chmod(0o755)
    return fake


def _submit(tmp_path, *args, **env):
    return subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "submit.sh"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "SPARK_SUBMIT": str(_fake_spark_submit(tmp_path)),
            "KNNSPARK_BUILD_DIR": str(tmp_path / "build"),
            "PYTHON": sys.executable,
            **env,
        },
    )


def test_submit_script_zips_the_library_and_passes_options_through(tmp_path):
    result = _submit(
        tmp_path,
        *("--master", "spark://h:7077", "--conf", "spark.task.maxFailures=2"),
        *("--py-files", "deps.zip", "--name", "score"),
        *("score", "--config", "conf/score.toml", "--run-date", "2026-11-21"),
    )
    assert result.returncode == 0, result.stderr
    zip_path = tmp_path / "build" / "knnspark.zip"
    assert result.stdout.splitlines() == [
        "--master",
        "spark://h:7077",
        "--py-files",
        f"{zip_path},deps.zip",
        "--driver-java-options",
        f"-Dlog4j2.configurationFile=file:{REPO_ROOT}/conf/log4j2.properties",
        "--conf",
        "spark.task.maxFailures=2",
        "--name",
        "score",
        f"{REPO_ROOT}/jobs/score.py",
        "--config",
        "conf/score.toml",
        "--run-date",
        "2026-11-21",
    ]
    names = zipfile.ZipFile(zip_path).namelist()
    assert "knnspark/__init__.py" in names and "knnspark/app/jobs.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_submit_script_takes_the_master_from_the_environment(tmp_path):
    result = _submit(
        tmp_path, "--deploy-mode", "cluster", "fit", "--config", "f.toml", MASTER="yarn"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["--master", "yarn"]
    assert "--driver-java-options" not in lines  # the driver runs elsewhere in cluster mode


@pytest.mark.parametrize("job", sorted(p.stem for p in (REPO_ROOT / "jobs").glob("*.py")))
def test_submit_script_runs_every_job_in_jobs(tmp_path, job):
    result = _submit(tmp_path, job, "--config", "x.toml")
    assert result.returncode == 0, result.stderr
    assert f"jobs/{job}.py" in result.stdout


@pytest.mark.parametrize(("args", "message"), [([], "no job given"), (["predict"], "unknown job")])
def test_submit_script_rejects_a_missing_or_unknown_job(tmp_path, args, message):
    result = _submit(tmp_path, *args)
    assert result.returncode == 2
    assert message in result.stderr
