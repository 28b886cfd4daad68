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

import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from pipeline.config import Config
from pipeline.contract import TABLES

RAW_TABLES = tuple(f"raw_{name}" for name in TABLES)
# Tables the driver copies whole: aggregated, a few rows.
DRIVER_COPIES = ("cohort_attrition",)


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


def _insert_load(duck: Any, load_id: str, load: Any, loaded_at: Any, snapshot: str) -> None:
    duck.execute(
        """insert into audit_load (load_id, table_name, source_file, file_format, sha256, rows_read,
           rows_loaded, rows_quarantined, loaded_at, snapshot_id) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        [load_id, load.table, load.source_file, load.file_format, load.sha256, load.rows_read,
         load.rows_loaded, load.rows_quarantined, loaded_at, snapshot])


def _ingest_native(spark: Any, tables: Any, duck: Any, source: Path, cfg: Config, step) -> list:
    """A native CSV/Parquet folder -> raw_* and audit_quarantine on Spark, every value through the
    identifier gate first (``pipeline.spark.gate.check_tables``); audit_load rows on the driver."""
    from pipeline import cli
    from pipeline.spark import gate as spark_gate
    from pipeline.spark import ingest as spark_ingest
    from pipeline.warehouse import logged_stage

    with step(f"ingest {source} on Spark (identifier gate on every value)"), logged_stage(duck, "ingest", cfg):
        summary = spark_ingest.load_native(spark, tables, source, cfg, privacy_gate=spark_gate.check_tables)
        for load in summary.tables:
            _insert_load(duck, summary.load_id, load, summary.loaded_at, summary.snapshot_id)
            copy_to_driver(duck, spark, f"raw_{load.table}", schema_only=True, comment=summary.snapshot_id)
    for load in summary.tables:
        extra = f" (ignored extra columns: {', '.join(load.extra_columns)})" if load.extra_columns else ""
        cli.console.print(f"  {load.table:<14} {load.rows_read:,} read, {load.rows_loaded:,} loaded, "
                          f"{load.rows_quarantined:,} quarantined{extra}")
    return summary.tables


def _ingest_omop(spark: Any, tables: Any, duck: Any, source: Path, cfg: Config, warehouse: Path, step) -> list:
    """An OMOP CDM (DuckDB file, or a folder of CSV/Parquet table files) mapped on Spark by the OMOP
    ingest's own SQL (``pipeline.spark.omop``; the gate reads every *_source_value first); raw_* and
    audit_quarantine written as Spark tables, audit_load rows (one per CDM table read) on the driver."""
    import datetime as dt

    from rich.markup import escape as rich_escape

    from pipeline import cli
    from pipeline.ingest.files import TableLoad
    from pipeline.spark import ingest as spark_ingest
    from pipeline.spark import omop as spark_omop
    from pipeline.warehouse import logged_stage, new_id

    load_id = new_id()
    with step(f"ingest OMOP CDM {source} on Spark"), logged_stage(duck, "ingest", cfg):
        load = spark_omop.load_omop_detailed(spark, source, cfg, warehouse_dir_of(tables) / "_cdm", load_id)
        for name in RAW_TABLES:
            tables.write(name, spark.table(name))
        tables.write("audit_quarantine", spark.table(load.quarantine).select(*spark_ingest.QUARANTINE_COLUMNS))
        loaded_at, loads = dt.datetime.now(), []
        for name, (source_file, fmt, sha256) in load.files.items():
            loaded, quarantined = load.rows.get(name, (0, 0))
            loads.append(TableLoad(name, source_file, fmt, sha256, rows_read=loaded + quarantined,
                                   rows_loaded=loaded, rows_quarantined=quarantined, snapshot_id=load.snapshot_id))
            _insert_load(duck, load_id, loads[-1], loaded_at, load.snapshot_id)
        for name in RAW_TABLES:
            copy_to_driver(duck, spark, name, schema_only=True, comment=load.snapshot_id)
    for table in loads:
        cli.console.print(f"  {table.table:<22} {table.rows_read:,} read, {table.rows_loaded:,} loaded, "
                          f"{table.rows_quarantined:,} quarantined")
    for note in load.notes:
        cli.console.print(f"  note: {rich_escape(note)}")
    return loads


def warehouse_dir_of(tables: Any) -> Path:
    """A local folder for the CDM's Parquet copy (a DuckDB CDM file is exported before Spark reads it)."""
    from urllib.parse import urlparse

    parsed = urlparse(tables.root)
    return Path(parsed.path) if parsed.scheme == "file" else Path(tempfile.mkdtemp(prefix="benzo-cdm-"))


def run_pipeline(source: Path, cfg: Config, warehouse: Path, reports: Path, step, console, is_demo: bool,
                 sensitivity: bool = True) -> dict:
    """Every stage, as ``pipeline.cli.run`` does on DuckDB; returns the estimate stage's result (with
    ``spark_queries``: how many aggregate queries ran on Spark). ``sensitivity=False`` leaves out the
    sensitivity analyses (the tests' shortcut; the headline does not depend on them)."""
    from pipeline import cli
    from pipeline.engine import RoutedConnection
    from pipeline.estimate.run import run as estimate_run
    from pipeline.estimate.sensitivity import run as sensitivity_run
    from pipeline.spark import transform as spark_transform
    from pipeline.spark import validate as spark_validate
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
    duck.execute("delete from audit_quarantine where stage in ('ingest', 'validate')")
    if cfg.extract.format == "omop":
        loads = _ingest_omop(spark, tables, duck, source, cfg, warehouse, step)
    else:
        loads = _ingest_native(spark, tables, duck, source, cfg, step)
    con.spark_tables = {name.lower() for name in spark_tables(spark)}
    cli.do_check_drugs(con, cfg)
    risk = cli.do_privacy_report(con, cfg)

    # ---- validate: row rules in Spark SQL, table-level expectations through GX's Spark engine
    with step("validate on Spark"), logged_stage(duck, "validate", cfg):
        validation = spark_validate.validate(spark, cfg, {name: f"raw_{name}" for name in TABLES},
                                             cli.quality_dir(Path(warehouse)), spark_tables=tables)
    con.spark_tables = {name.lower() for name in spark_tables(spark)}
    console.print(f"  {validation['quarantined_rows']:,} rows quarantined by row rules"
                  + (f", {len(validation['warnings'])} warning(s)" if validation.get("warnings") else ""))

    # ---- transform
    with step("transform on Spark: episodes, cohort, outcomes"), logged_stage(duck, "transform", cfg):
        counts = spark_transform.run(spark, cfg, tables)
        con.spark_tables = {name.lower() for name in spark_tables(spark)}
        for name in DRIVER_COPIES:
            copy_to_driver(duck, spark, name)
        # every other table the transform wrote, by its schema only: the driver's stage-order checks
        # (information_schema) see it, its queries go to Spark
        for name in sorted(con.spark_tables - set(DRIVER_COPIES)):
            if not name.startswith(("_", "audit_", "raw_")):
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
    """The CLI's ``run --engine spark``: checks first (pyspark, Java), then every stage."""
    from pipeline.spark.session import SparkFailed, require_java, require_spark, spark_error_line

    require_spark()
    if not cfg.engine.remote:
        require_java()
    started = time.perf_counter()
    source = ensure_demo(source, cfg)
    is_demo = (Path(source) / "truth.json").exists()
    try:
        result = run_pipeline(source, cfg, warehouse, reports, step, console, is_demo)
    except Exception as error:  # noqa: BLE001 - a failed Spark job is one line, not a JVM stack
        line = spark_error_line(error)
        if line is None:
            raise
        raise SparkFailed(f"Spark job failed (master {cfg.engine.remote or cfg.engine.master}): {line}; "
                          "see docs/spark.md, 'When a job fails'") from None
    headline = (result or {}).get("headline", {}).get("gt_4_weeks", {})
    if headline.get("estimate") is not None:
        console.print(f"[bold]> 4 weeks:[/] {headline['estimate']:.1%} dependent "
                      f"(95% CI {headline['ci_low']:.1%} to {headline['ci_high']:.1%})")
    console.print(f"report: {result['report']}  ({time.perf_counter() - started:.1f} s in all, engine spark)")
