"""The Spark session's settings and its one-line failures: pure functions, so these run without
pyspark or Java (the Spark runs themselves are in tests/test_spark*.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.errors import PipelineError
from pipeline.spark import run as spark_run
from pipeline.spark.session import LOCAL_DEFAULTS, SparkFailed, session_settings, spark_error_line


def _cfg(*overrides: str):
    return load_config(overrides=["engine.name=spark", *overrides])


def test_local_mode_gives_the_driver_more_than_sparks_1_gb():
    settings = session_settings(_cfg("engine.master=local[2]"), None)
    assert settings["spark.driver.memory"] == LOCAL_DEFAULTS["spark.driver.memory"]
    assert int(settings["spark.driver.memory"].rstrip("g")) > 1


def test_a_cluster_master_keeps_the_clusters_driver_memory():
    for master in ("spark://head:7077", "yarn", "k8s://https://api:6443"):
        assert "spark.driver.memory" not in session_settings(_cfg(f"engine.master={master}"), None)


def test_the_configurations_driver_memory_wins_over_the_local_default():
    settings = session_settings(_cfg("engine.master=local[4]", "engine.settings.spark.driver.memory=8g"), None)
    assert settings["spark.driver.memory"] == "8g"


class _JavaException:
    def __init__(self, text: str):
        self.text = text

    def toString(self) -> str:  # noqa: N802 - py4j's JavaObject method
        return self.text


def _py4j_error(java_text: str) -> Exception:
    """An error shaped as py4j raises it: its own first line is useless, the Java exception says what."""
    error_type = type("Py4JJavaError", (Exception,), {"__module__": "py4j.protocol"})
    error = error_type("An error occurred while calling o1603.parquet.\n: " + java_text)
    error.java_exception = _JavaException(java_text)
    return error


def test_a_py4j_error_becomes_the_java_exceptions_first_line():
    text = ("org.apache.spark.SparkException: Not enough memory to build and broadcast the table to all "
            "worker nodes.\n\tat org.apache.spark.sql.execution.exchange.BroadcastExchangeExec")
    line = spark_error_line(_py4j_error(text))
    assert line.startswith("org.apache.spark.SparkException: Not enough memory to build and broadcast")
    assert "\n" not in line and "o1603" not in line and "BroadcastExchangeExec" not in line


def test_a_pyspark_error_keeps_its_message_and_other_errors_are_not_spark_failures():
    error_type = type("AnalysisException", (Exception,), {"__module__": "pyspark.errors.exceptions.captured"})
    assert spark_error_line(error_type("[TABLE_OR_VIEW_NOT_FOUND] cohort\nplan ...")) == \
        "[TABLE_OR_VIEW_NOT_FOUND] cohort"
    assert spark_error_line(ValueError("a bug of ours")) is None
    assert spark_error_line(KeyError("x")) is None


def test_run_on_spark_reports_a_failed_job_in_one_line_and_lets_our_bugs_through(monkeypatch, tmp_path):
    monkeypatch.setattr("pipeline.spark.session.require_spark", lambda: None)
    monkeypatch.setattr("pipeline.spark.session.require_java", lambda: None)
    failure = {"error": _py4j_error("org.apache.spark.SparkException: Job aborted: executor lost\n\tat x")}

    def fails(*_args, **_kwargs):
        raise failure["error"]

    monkeypatch.setattr(spark_run, "run_pipeline", fails)
    args = (lambda source, cfg: tmp_path, None, _cfg(), tmp_path / "w.duckdb", tmp_path, None, None)
    with pytest.raises(SparkFailed) as caught:
        spark_run.run_on_spark(*args)
    message = str(caught.value)
    assert isinstance(caught.value, PipelineError)  # the CLI prints PipelineError as one line
    assert "\n" not in message
    assert "master local[2]" in message and "Job aborted: executor lost" in message
    assert "docs/spark.md" in message and (Path(__file__).parents[1] / "docs/spark.md").exists()

    failure["error"] = ZeroDivisionError("a bug of ours")
    with pytest.raises(ZeroDivisionError):
        spark_run.run_on_spark(*args)


# ---------------------------------------------------------------- a DuckDB stage after a Spark run


def _mark_last_ingest_as_spark(warehouse: Path) -> None:
    """What a Spark run leaves in the driver's warehouse: an ok ingest logged with engine spark
    (its raw tables here are its schema only, commented with the same snapshot)."""
    import duckdb

    con = duckdb.connect(str(warehouse))
    for name in ("persons", "prescriptions", "diagnoses", "follow_ups"):
        con.execute(f"delete from raw_{name}")  # the Spark run's copies hold no row
    con.execute("insert into audit_run_log (run_id, stage, started_at, finished_at, status, config_json) "
                "values ('spark-run', 'ingest', now(), now() + interval 1 second, 'ok', ?)",
                [json.dumps(_cfg().to_dict())])
    con.close()


def test_after_a_spark_run_duckdb_loads_the_extract_again_and_other_stages_stop(tmp_path):
    """A Spark run's raw tables in the driver's DuckDB carry the extract's snapshot but no rows:
    `make run` after `make ENGINE=spark` said "unchanged, skipped" and stopped on an empty extract."""
    import subprocess
    import sys

    import duckdb

    from pipeline.demo.generator import generate

    generate(tmp_path / "demo", persons=300, seed=7, config=load_config())
    warehouse = tmp_path / "w.duckdb"

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "pipeline", *args, "--warehouse", str(warehouse)],
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "GX_ANALYTICS_ENABLED": "false", "COLUMNS": "300"})

    assert cli("ingest", "--source", str(tmp_path / "demo")).returncode == 0
    _mark_last_ingest_as_spark(warehouse)

    for stage in ("validate", "transform", "estimate", "sensitivity", "report"):
        done = cli(stage)
        assert done.returncode == 2, (stage, done.stderr)
        assert done.stderr.strip().count("\n") == 0 and "last ingest ran on Spark" in done.stderr, done.stderr

    again = cli("ingest", "--source", str(tmp_path / "demo"))
    assert again.returncode == 0, again.stderr
    assert "skipped" not in again.stderr
    con = duckdb.connect(str(warehouse), read_only=True)
    assert con.execute("select count(*) from raw_prescriptions").fetchall()[0][0] > 0
    con.close()
    validated = cli("validate")  # loaded here now: the stages run again (verdicts aside on 300 persons)
    assert "last ingest ran on Spark" not in validated.stderr and "validation" in validated.stderr.lower()
