"""``python -m pipeline run --engine spark``: every stage with the person-level work on Spark.

Where each stage runs (docs/spark.md):

==========  =====================================================  ==========================
stage       on Spark (person-level, stays on the cluster)          on the driver (DuckDB)
==========  =====================================================  ==========================
ingest      CSV/Parquet -> raw_*, audit_quarantine (Parquet)       audit_load, the run log
gate        every value of every column (pipeline.spark.gate)      --
validate    row rules, GX Spark engine (pipeline.spark.validate)   --
transform   the transform SQL files, transpiled                    cohort_attrition (6 rows)
estimate    GROUP BY queries of pipeline.estimate.aggregate        estimators on the patterns
report      quarantine counts by rule                              publish, as on DuckDB
==========  =====================================================  ==========================

The driver's DuckDB warehouse (``--warehouse``) holds the bookkeeping and the
aggregated results; it also holds a schema-only copy of each raw table (with
the extract's snapshot as its comment) and of ``analysis_person``, so the
stage-order checks read the same metadata as on DuckDB. Queries naming a Spark
table go to Spark through :class:`pipeline.engine.RoutedConnection`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from pipeline.config import Config
from pipeline.contract import TABLES

RAW_TABLES = tuple(f"raw_{name}" for name in TABLES)
# Tables the driver copies whole: aggregated, a few rows.
DRIVER_COPIES = ("cohort_attrition",)
# Person-level tables the driver knows by their schema only.
SCHEMA_ONLY = ("analysis_person",)


def _optional(module: str, name: str) -> Callable | None:
    """A function of an optional Spark module (``pipeline.spark.gate`` / ``validate``), None when absent."""
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as error:
        if error.name != module:
            raise
        return None


def _arrow_schema_only(spark: Any, name: str):
    return spark.table(name).limit(0).toArrow()


def copy_to_driver(duck: Any, spark: Any, name: str, schema_only: bool = False, comment: str | None = None) -> None:
    """Table ``name`` of Spark into the driver's DuckDB: whole (small, aggregated tables) or its schema only."""
    from pipeline.warehouse import sql_literal

    frame = spark.table(name).limit(0) if schema_only else spark.table(name)
    arrow = frame.toArrow()
    duck.register("_spark_copy", arrow)
    try:
        duck.execute(f'create or replace table "{name}" as select * from _spark_copy')
    finally:
        duck.unregister("_spark_copy")
    if comment is not None:
        duck.execute(f'comment on table "{name}" is {sql_literal(comment)}')


def spark_tables(spark: Any) -> list[str]:
    return [t.name for t in spark.catalog.listTables() if t.isTemporary]


def quarantine_row_rules(spark: Any, tables: Any, cfg: Config) -> dict[str, int]:
    """The validate stage's quarantine row rules (``pipeline.validate.checks.failing_rows_sql``, DuckDB SQL)
    on Spark, transpiled: failing rows appended to audit_quarantine (stage 'validate'), as
    ``pipeline.validate.runner.quarantine_rows`` does. Returns rows set aside per check id."""
    from pipeline.spark.transform import spark_schema, to_spark
    from pipeline.validate.checks import failing_rows_sql, load_checks
    from pipeline.validate.runner import _literal

    parts, ids = [], []
    for check in load_checks(cfg):
        if check.action != "quarantine" or failing_rows_sql(check) is None:
            continue
        column = check.column or check.id_column
        query = (f"select failing._load_id as load_id, 'validate' as stage, {_literal(check.table)} as table_name, "
                 f"cast(failing.{check.id_column} as varchar) as record_id, failing._source_row as source_row, "
                 f"{_literal(check.id)} as rule_id, {_literal(f'{column}: {check.description}')} as reason "
                 f"from ({failing_rows_sql(check)}) as failing")
        parts.append(to_spark(query, columns_of=lambda q: spark.sql(q).columns,
                              schema_of=lambda names: spark_schema(spark, names))[0].sql)
        ids.append(check.id)
    kept = spark.sql("select * from audit_quarantine where stage <> 'validate'")
    found = spark.sql(" union all ".join(parts)) if parts else kept.limit(0)
    tables.write("audit_quarantine", kept.unionByName(found).localCheckpoint())
    counts = dict(spark.sql("select rule_id, count(*) from audit_quarantine where stage = 'validate' "
                            "group by rule_id").collect())
    return {check_id: int(counts.get(check_id, 0)) for check_id in ids}


def run_pipeline(source: Path, cfg: Config, warehouse: Path, reports: Path, step, console, is_demo: bool,
                 sensitivity: bool = True) -> dict:
    """Every stage, as ``pipeline.cli.run`` does on DuckDB; returns the estimate stage's result (with
    ``spark_queries``: how many aggregate queries ran on Spark). ``sensitivity=False`` leaves out the
    sensitivity analyses (the tests' shortcut; the headline does not depend on them)."""
    from pipeline import cli
    from pipeline.engine import RoutedConnection
    from pipeline.estimate.run import run as estimate_run
    from pipeline.estimate.sensitivity import run as sensitivity_run
    from pipeline.spark import ingest as spark_ingest
    from pipeline.spark import transform as spark_transform
    from pipeline.spark.session import get_session, warehouse_dir
    from pipeline.spark.tables import SparkTables
    from pipeline.warehouse import ensure_audit_tables, logged_stage

    started = time.perf_counter()
    with step(f"Spark session ({cfg.engine.remote or cfg.engine.master})"):
        spark = get_session(cfg, warehouse)
    tables = SparkTables(spark, warehouse_dir(cfg, warehouse))
    duck = cli._connect(warehouse, cfg)
    ensure_audit_tables(duck)
    con = RoutedConnection(duck, spark, ())

    # ---- ingest (+ the identifier gate on every value)
    gate = _optional("pipeline.spark.gate", "check_tables")
    if gate is None:
        console.print("[yellow]note[/] pipeline.spark.gate not installed: the identifier gate did not run "
                      "on this extract")  # TODO(merge): sparkb's gate
    with step(f"ingest {source} on Spark"), logged_stage(duck, "ingest", cfg):
        summary = spark_ingest.load_native(spark, tables, source, cfg, privacy_gate=gate)
        con.spark_tables = {name.lower() for name in spark_tables(spark)}
        duck.execute("delete from audit_quarantine where stage in ('ingest', 'validate')")
        for load in summary.tables:
            duck.execute(
                """insert into audit_load (load_id, table_name, source_file, file_format, sha256, rows_read,
                   rows_loaded, rows_quarantined, loaded_at, snapshot_id) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                [summary.load_id, load.table, load.source_file, load.file_format, load.sha256, load.rows_read,
                 load.rows_loaded, load.rows_quarantined, summary.loaded_at, summary.snapshot_id])
            copy_to_driver(duck, spark, f"raw_{load.table}", schema_only=True, comment=summary.snapshot_id)
    for load in summary.tables:
        extra = f" (ignored extra columns: {', '.join(load.extra_columns)})" if load.extra_columns else ""
        console.print(f"  {load.table:<14} {load.rows_read:,} read, {load.rows_loaded:,} loaded, "
                      f"{load.rows_quarantined:,} quarantined{extra}")
    cli.do_check_drugs(con, cfg)
    risk = cli.do_privacy_report(con, cfg)

    # ---- validate
    validate = _optional("pipeline.spark.validate", "validate")
    if validate is None:  # TODO(merge): sparkb's pipeline.spark.validate (row rules + GX) replaces this
        with step("validate on Spark: row rules only (GX suites need pipeline.spark.validate)"), \
                logged_stage(duck, "validate", cfg):
            quarantined = quarantine_row_rules(spark, tables, cfg)
        console.print(f"  {sum(quarantined.values()):,} rows quarantined by row rules")
    else:
        with step("validate on Spark"), logged_stage(duck, "validate", cfg):
            validate(spark, cfg, {name: f"raw_{name}" for name in TABLES}, Path(warehouse).parent / "quality-internal")
        con.spark_tables = {name.lower() for name in spark_tables(spark)}

    # ---- transform
    with step("transform on Spark: episodes, cohort, outcomes"), logged_stage(duck, "transform", cfg):
        counts = spark_transform.run(spark, cfg, tables)
        con.spark_tables = {name.lower() for name in spark_tables(spark)}
        for name in DRIVER_COPIES:
            copy_to_driver(duck, spark, name)
        for name in SCHEMA_ONLY:
            copy_to_driver(duck, spark, name, schema_only=True)
        con.spark_tables -= set(DRIVER_COPIES)
    console.print(f"  {counts.get('cohort', 0):,} persons in the cohort, {counts.get('episodes', 0):,} episodes")

    # ---- estimate: aggregates on Spark, estimators on the driver
    cli._require(con, "analysis_person", "transform")
    with step("estimate (aggregates on Spark)"), logged_stage(duck, "estimate", cfg):
        result = estimate_run(con, cfg)
    if sensitivity:  # one pattern query over the transform's Spark tables, as on DuckDB
        with step("sensitivity analyses (aggregates on Spark)"), logged_stage(duck, "sensitivity", cfg):
            sensitivity_run(con, cfg)
    console.print(f"  {con.spark_queries} aggregate queries ran on Spark")

    index = cli.do_report(con, cfg, reports, result, {"source": Path(source).name, "demo": is_demo,
                                                     "k_anonymity": risk, "engine": "spark"})
    result["report"] = index
    result["spark_queries"] = con.spark_queries
    result["seconds_all"] = round(time.perf_counter() - started, 1)
    return result


def run_on_spark(ensure_demo, source: Path | None, cfg: Config, warehouse: Path, reports: Path, step, console) -> None:
    """The CLI's ``run --engine spark``: checks first (pyspark, Java, an OMOP source), then every stage."""
    from pipeline.errors import PipelineError
    from pipeline.spark.session import require_java, require_spark

    require_spark()
    if not cfg.engine.remote:
        require_java()
    if cfg.extract.format == "omop":
        load_omop = _optional("pipeline.spark.omop", "load_omop")  # TODO(merge): sparkb's OMOP CDM on Spark
        if load_omop is None:
            raise PipelineError("--engine spark reads native extracts (CSV/Parquet folders); the OMOP CDM on Spark "
                                "is not installed in this build: run the OMOP CDM with --engine duckdb")
    started = time.perf_counter()
    source = ensure_demo(source, cfg)
    is_demo = (Path(source) / "truth.json").exists()
    result = run_pipeline(source, cfg, warehouse, reports, step, console, is_demo)
    headline = (result or {}).get("headline", {}).get("gt_4_weeks", {})
    if headline.get("estimate") is not None:
        console.print(f"[bold]> 4 weeks:[/] {headline['estimate']:.1%} dependent "
                      f"(95% CI {headline['ci_low']:.1%} to {headline['ci_high']:.1%})")
    console.print(f"report: {result['report']}  ({time.perf_counter() - started:.1f} s in all, engine spark)")
