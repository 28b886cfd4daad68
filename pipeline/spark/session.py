"""The Spark session of a run, built from ``[engine]`` in the configuration.

``master`` (local[N], spark://..., yarn, k8s://...) starts a session in this
process; ``remote`` (sc://host:port) connects to a Spark Connect server
instead (a Databricks cluster, or ``start-connect-server.sh``). Under
``spark-submit`` the master given there wins (``getOrCreate`` reuses it).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from pipeline.config import PROJECT_ROOT, Config
from pipeline.errors import PipelineError

# Spark's defaults that would make it differ from DuckDB, or this machine slow.
SESSION_DEFAULTS = {
    # Dates and timestamps read and written as calendar days, never shifted by a local zone.
    "spark.sql.session.timeZone": "UTC",
    # DuckDB's CSV/Parquet semantics: a bad cast is an error the SQL guards with try_cast.
    "spark.sql.ansi.enabled": "true",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.adaptive.enabled": "true",
    # Spark 4.1 invalidates some plans of the episodes SQL in this rule (PLAN_VALIDATION_FAILED_RULE_IN_BATCH).
    "spark.sql.optimizer.excludedRules": "org.apache.spark.sql.catalyst.optimizer.RemoveRedundantAliases",
    # Sorted output of the transform's window functions does not depend on the plan.
    "spark.sql.legacy.createHiveTableByDefault": "false",
}

# Local mode only (master local[N]): the driver is the executor, and Spark's default 1 GB heap
# cannot hold the broadcast joins Spark chooses at 10M dispensings ("Not enough memory to build
# and broadcast the table"). The JVM grows to this only when it needs it. A cluster's driver and
# executor memory are the cluster's (spark-submit, Databricks), so nothing is set there.
LOCAL_DEFAULTS = {
    "spark.driver.memory": "3g",
}


class SparkUnavailable(PipelineError):
    """pyspark or Java is missing: one line saying what to install."""


class SparkFailed(PipelineError):
    """A Spark job failed (out of memory, a lost executor, an unreadable file): one line."""


def spark_error_line(error: BaseException) -> str | None:
    """The one line worth printing from a Spark/py4j error, or None when ``error`` is not Spark's.

    py4j's own message starts "An error occurred while calling o1603.parquet."; the Java
    exception's class and message (e.g. ``SparkException: Not enough memory to build and
    broadcast the table ...``) say what happened.
    """
    module = type(error).__module__ or ""
    if not module.startswith(("py4j", "pyspark")):
        return None
    java = getattr(error, "java_exception", None)
    text = ""
    if java is not None:
        try:
            text = str(java.toString())
        except Exception:  # noqa: BLE001 - the gateway may be gone with the JVM
            text = ""
    if not text:
        text = getattr(error, "getMessage", lambda: "")() or str(error)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    first = next((line for line in lines if not line.startswith("An error occurred while calling")),
                 lines[0] if lines else type(error).__name__)
    return first.removeprefix(": ")[:400]


def require_spark() -> None:
    """Fail with one line when pyspark or Java is missing (before any data is read)."""
    try:
        import pyspark  # noqa: F401
        import sqlglot  # noqa: F401
    except ImportError as error:
        raise SparkUnavailable(
            f"--engine spark needs the optional 'spark' dependencies ({error.name} is not installed): "
            "run `make ENGINE=spark` or `.venv/bin/pip install -r requirements-spark.lock`"
        ) from None


def require_java() -> None:
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        raise SparkUnavailable("--engine spark needs Java 17 (no `java` on PATH and no JAVA_HOME): "
                               "install a JDK 17, e.g. `apt-get install openjdk-17-jre-headless`")


def warehouse_dir(config: Config, duckdb_warehouse: Path | None = None) -> Path:
    """Folder of the Spark tables: ``engine.warehouse_dir``, else ``spark-warehouse`` beside the DuckDB file."""
    if config.engine.warehouse_dir:
        return Path(config.engine.warehouse_dir).expanduser().resolve()
    base = Path(duckdb_warehouse).resolve().parent if duckdb_warehouse else PROJECT_ROOT / "data"
    return base / "spark-warehouse"


def session_settings(config: Config, tables_dir: Path | None) -> dict[str, str]:
    """Every setting given to the session builder: ours, then the configuration's (which win)."""
    settings = dict(SESSION_DEFAULTS)
    if config.engine.master.startswith("local"):
        settings.update(LOCAL_DEFAULTS)
    if tables_dir is not None:
        settings["spark.sql.warehouse.dir"] = tables_dir.as_uri()
    settings.update(config.engine.settings)
    return settings


def get_session(config: Config, duckdb_warehouse: Path | None = None, app_name: str = "benzo-outcomes") -> Any:
    """A SparkSession for ``config.engine`` (started, or reused when one is active in this process)."""
    require_spark()
    from pyspark.sql import SparkSession

    remote = config.engine.remote
    if remote:
        builder = SparkSession.builder.remote(remote).appName(app_name)
        for key, value in config.engine.settings.items():
            builder = builder.config(key, value)
        return builder.getOrCreate()
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    require_java()
    tables_dir = warehouse_dir(config, duckdb_warehouse)
    tables_dir.mkdir(parents=True, exist_ok=True)
    # Derby's metastore log and spark-warehouse would otherwise land in the working directory.
    os.environ.setdefault("PYSPARK_SUBMIT_ARGS", "--driver-java-options=-Dderby.system.home=/tmp pyspark-shell")
    builder = SparkSession.builder.master(config.engine.master).appName(app_name)
    for key, value in session_settings(config, tables_dir).items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as error:  # noqa: BLE001 - the JVM's failure to start, as one line
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SparkUnavailable(f"cannot start Spark (master {config.engine.master}): {first[:300]}") from None
    spark.sparkContext.setLogLevel("ERROR")
    return spark
