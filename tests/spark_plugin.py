"""pytest plugin (loaded with ``-p tests.spark_plugin``, pyproject addopts): the Spark tests' registration.

Tests marked ``spark`` (and the doctests of pipeline/spark and pipeline/engine) need the optional
'spark' group (pyspark, sqlglot) and Java. Without them they are deselected, with one line in the
session header saying so -- unless ``BENZO_REQUIRE_SPARK=1`` (CI), where they run and fail.
"""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest

SPARK_PATHS = ("pipeline/spark/", "pipeline/engine/")


def spark_missing() -> str | None:
    """What is missing for the Spark tests (None when nothing is)."""
    absent = [name for name in ("pyspark", "sqlglot") if importlib.util.find_spec(name) is None]
    if absent:
        return f"{', '.join(absent)} not installed"
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        return "no Java (java not on PATH, JAVA_HOME unset)"
    return None


def _required() -> bool:
    return os.environ.get("BENZO_REQUIRE_SPARK", "") not in ("", "0")


def pytest_configure(config):
    config.addinivalue_line("markers", "spark: runs on Apache Spark local[2] (optional 'spark' group)")


def pytest_report_header(config):
    missing = spark_missing()
    if missing is None:
        return "spark: pyspark and Java found, Spark tests run"
    if _required():
        return f"spark: {missing}, and BENZO_REQUIRE_SPARK=1: the Spark tests run and fail"
    return (f"spark: {missing}: Spark tests deselected (make ENGINE=spark or make setup-spark installs the "
            "group; BENZO_REQUIRE_SPARK=1 makes them fail instead)")


def _is_spark(item) -> bool:
    path = str(getattr(item, "path", "") or item.nodeid).replace(os.sep, "/")
    return item.get_closest_marker("spark") is not None or any(part in path for part in SPARK_PATHS)


def pytest_ignore_collect(collection_path, config):
    """Without the group, the Spark modules and test files are not even imported (they import
    pyspark/sqlglot at the top): not collected, as the header line says -- never a skip."""
    if spark_missing() is None or _required():
        return None
    path = str(collection_path).replace(os.sep, "/")
    if any(part in path + "/" for part in SPARK_PATHS) or collection_path.name.startswith("test_spark"):
        return True
    return None


def pytest_collection_modifyitems(config, items):
    if spark_missing() is None or _required():
        return
    deselected = [item for item in items if _is_spark(item)]
    if deselected:
        items[:] = [item for item in items if not _is_spark(item)]
        config.hook.pytest_deselected(items=deselected)


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """The one Spark session of a test run: the pipeline's own (``get_session``: local[2], UTC, no UI),
    with two shuffle partitions for the tests' small tables."""
    from pipeline.config import load_config
    from pipeline.spark.session import get_session

    cfg = load_config(overrides=["engine.name=spark", "engine.settings.spark.sql.shuffle.partitions=2"])
    return get_session(cfg, tmp_path_factory.mktemp("spark") / "warehouse.duckdb")


@pytest.fixture(scope="session")
def spark_demo(spark, tmp_path_factory):
    """The demo run once per test session by DuckDB and by Spark, every stage (ingest with the gate,
    validate, transform, estimate, sensitivity, report): tests that only read the two runs' results
    share it (tests/test_spark.py: analysis_person row for row, headline.json to 1e-12, the published
    estimates -- sensitivity analyses included -- equal; tests/test_spark_checks.py: the row rules'
    verdicts and quarantine)."""
    from pipeline import cli
    from pipeline.config import load_config
    from pipeline.demo.generator import generate
    from pipeline.estimate.run import run as estimate_run
    from pipeline.spark.run import run_pipeline
    from pipeline.warehouse import logged_stage

    root = tmp_path_factory.mktemp("spark_demo")
    cfg = load_config()
    demo = root / "demo"
    generate(demo, persons=cfg.demo.persons, seed=cfg.demo.seed, config=cfg, fmt="csv")
    con = cli._connect(root / "duckdb" / "warehouse.duckdb", cfg)
    cli.do_ingest(con, demo, cfg)
    risk = cli.do_privacy_report(con, cfg)
    cli.do_validate(con, cfg, root / "duckdb" / "warehouse.duckdb")
    cli.do_transform(con, cfg)
    with logged_stage(con, "estimate", cfg):
        duck_result = estimate_run(con, cfg)
    cli.do_sensitivity(con, cfg)
    cli.do_report(con, cfg, root / "duckdb" / "reports", duck_result,
                  {"source": "demo", "demo": True, "k_anonymity": risk})
    spark_cfg = cfg.replace(engine={"name": "spark", "settings": {"spark.sql.shuffle.partitions": "2"}})
    spark_warehouse = root / "spark" / "warehouse.duckdb"
    spark_result = run_pipeline(demo, spark_cfg, spark_warehouse, root / "spark" / "reports",
                                cli.step, cli.console, True)
    return {"root": root, "demo": demo, "duckdb": con, "duck_result": duck_result, "spark_result": spark_result,
            "spark_warehouse": spark_warehouse, "spark_tables": root / "spark" / "spark-warehouse"}
