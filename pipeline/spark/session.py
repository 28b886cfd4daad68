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


class SparkUnavailable(PipelineError):
    """pyspark or Java is missing: one line saying what to install."""


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
