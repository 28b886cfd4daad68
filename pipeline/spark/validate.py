"""Validation on Spark, as ``pipeline.validate.runner.run`` validates on DuckDB: the row rules
counted and quarantined in Spark SQL (grouped per table as on DuckDB), the table-level
expectations through GX's Spark execution engine (every row rule too with ``gx_row_rules``,
whose counts must then equal the SQL counts); quarantine and audit rows as Spark tables
written as Parquet. The returned summary has the DuckDB validation's shape
(``pipeline.validate.runner.ValidationReport.to_dict``), so publish reads it as is.

Nothing is defined twice: the checks come from ``expectations/*.json``
(``pipeline.validate.checks.load_checks``), each row rule's failing rows from
``checks.failing_predicate`` / ``failing_rows_sql`` (DuckDB SQL, transpiled with sqlglot by
``pipeline.spark.omop.duckdb_to_spark``), the grouping from ``runner._by_table``, the GX
expectations from ``runner._expectation``, each check's verdict from ``runner._result``
(shares, thresholds, examples) -- run here against the Spark adapter instead of a DuckDB
connection. ``unexpected_rows_query`` kwargs are transpiled to Spark SQL before GX
sees them (``{batch}`` kept).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import sqlglot

from pipeline.config import Config
from pipeline.contract import TABLES
from pipeline.errors import ValidationFailed
from pipeline.spark.omop import DuckDBSQLOnSpark, duckdb_to_spark
from pipeline.validate import runner
from pipeline.validate.checks import Check, failing_predicate, failing_rows_sql, load_checks
from pipeline.warehouse import new_id

log = logging.getLogger(__name__)

QUARANTINE_COLUMNS = ("load_id", "stage", "table_name", "record_id", "source_row", "rule_id", "reason")
_BATCH = "__gx_batch__"


def spark_query(duckdb_query: str) -> str:
    """A DuckDB query as Spark SQL; a GX ``{batch}`` placeholder survives."""
    tree = sqlglot.parse_one(duckdb_query.replace("{batch}", _BATCH), read="duckdb")
    return duckdb_to_spark(tree).replace(_BATCH, "{batch}")


class _SparkChecks(DuckDBSQLOnSpark):
    """The adapter, with ``?`` parameters inlined (runner's queries bind a few) and
    ``information_schema.columns`` answered from the Spark views."""

    def execute(self, sql: str, parameters=None):
        if parameters:
            from pipeline.warehouse import sql_literal

            values = iter(parameters)
            sql = re.sub(r"\?", lambda _: sql_literal(next(values)), sql)
        if "information_schema.columns" in sql:
            table = re.search(r"table_name = '([^']+)'", sql).group(1)
            self._rows = [(c,) for c in self.spark.table(table).columns]
            self._last = None
            return self
        self._rows = None
        return super().execute(sql)

    def fetchall(self):
        return self._rows if getattr(self, "_rows", None) is not None else super().fetchall()


def _quarantine_frame(spark, rows: list):
    if rows:
        frame = rows[0]
        for more in rows[1:]:
            frame = frame.unionByName(more)
        return frame
    return spark.createDataFrame([], "load_id string, stage string, table_name string, record_id string, "
                                     "source_row bigint, rule_id string, reason string")


def _spark_predicate(duckdb_predicate: str) -> str:
    """A DuckDB boolean expression (``checks.failing_predicate``) as Spark SQL."""
    return duckdb_to_spark(sqlglot.parse_one(f"select {duckdb_predicate}", read="duckdb"))[len("SELECT "):]


def _failing_frame(spark, table: str, rules: list[Check], failing_rows: str | None):
    """The quarantine rows of ``rules`` (one table): a row failing two rules is set aside once per rule,
    with the rule as its reason (never the value), as ``runner._quarantine`` writes them on DuckDB.
    ``failing_rows``: None for column rules (one scan of the table, every predicate at once), else the
    DuckDB query of a query rule's failing rows."""
    id_column = TABLES[table].id_column
    reasons = {c.id: f"{c.column or c.id_column}: {c.description}" for c in rules}
    reason = "case rule_id " + " ".join(f"when {runner._literal(i)} then {runner._literal(r)}"
                                        for i, r in reasons.items()) + " end"
    if failing_rows is None:
        predicates = [_spark_predicate(failing_predicate(c)) for c in rules]
        failed = ("explode(filter(array(" + ", ".join(f"case when {p} then {runner._literal(c.id)} end"
                                                      for c, p in zip(rules, predicates))
                  + "), rule -> rule is not null))")
        source = f"raw_{table} where " + " or ".join(f"({p})" for p in predicates)
    else:
        failed = runner._literal(rules[0].id)
        source = f"({duckdb_to_spark(sqlglot.parse_one(failing_rows, read='duckdb'))}) as failing"
    inner = (f"select cast(_load_id as string) as load_id, cast({id_column} as string) as record_id, "
             f"cast(_source_row as bigint) as source_row, {failed} as rule_id from {source}")
    return spark.sql(f"select load_id, 'validate' as stage, {runner._literal(table)} as table_name, record_id, "
                     f"source_row, rule_id, {reason} as reason from ({inner})")


def quarantine_rows(spark, checks: list[Check], earlier=None) -> tuple[Any, dict[str, int]]:
    """Every quarantine row rule as Spark SQL, grouped as on DuckDB (``runner._by_table``): per table
    the column rules in one scan, each query rule on its own; suites in order (persons first: the
    cross-table rules read ``valid_persons``, i.e. persons not yet quarantined, through the view
    ``audit_quarantine``). Two Spark jobs compute every rule: the rows set aside before the first rule
    that reads them, then the rest (both checkpointed); one more counts the rows per rule. Returns the quarantine DataFrame (earlier
    stages' rows + 'validate' rows) and rows set aside per check id."""
    base = earlier if earlier is not None else _quarantine_frame(spark, [])
    rules = [c for c in checks if c.action == "quarantine"]
    found: list = []
    for _, table, column_rules, query_rules in runner._by_table(rules):
        if found and any("audit_quarantine" in failing_rows_sql(c) for c in query_rules):
            # the rows set aside so far, computed once (one job) for the rules that read them
            # (valid_persons) instead of once inside each of their plans
            found = [_quarantine_frame(spark, found).localCheckpoint(eager=True)]
        # the view a later query rule reads (valid_persons): every row set aside so far
        _quarantine_frame(spark, [base, *found]).createOrReplaceTempView("audit_quarantine")
        if column_rules:
            found.append(_failing_frame(spark, table, column_rules, None))
        for check in query_rules:
            found.append(_failing_frame(spark, table, [check], failing_rows_sql(check)))
    quarantine = _quarantine_frame(spark, [base, *found]).localCheckpoint(eager=True)
    quarantine.createOrReplaceTempView("audit_quarantine")
    counted = dict(quarantine.where("stage = 'validate'").groupBy("rule_id").count().collect())
    return quarantine, {c.id: int(counted.get(c.id, 0)) for c in rules}


def row_rule_counts(spark, checks: list[Check]) -> dict[str, int]:
    """Failing rows of every row rule that quarantines nothing (``runner.row_rule_counts`` on Spark):
    the column rules of a table in one aggregate, each query rule in one count."""
    counts: dict[str, int] = {}
    rules = [c for c in checks if c.is_row_rule and c.action != "quarantine"]
    for _, table, column_rules, query_rules in runner._by_table(rules):
        if column_rules:
            row = spark.sql("select " + ", ".join(f"count_if({_spark_predicate(failing_predicate(c))})"
                                                  for c in column_rules) + f" from raw_{table}").collect()[0]
            counts.update({c.id: int(n or 0) for c, n in zip(column_rules, row)})
        for check in query_rules:
            query = duckdb_to_spark(sqlglot.parse_one(failing_rows_sql(check), read="duckdb"))
            counts[check.id] = int(spark.sql(f"select count(*) from ({query})").collect()[0][0])
    return counts


def run_gx(spark, checks: list[Check]) -> dict[str, dict[str, Any]]:
    """The suites through GX's Spark execution engine (a Spark data source, one dataframe asset per
    raw table); outcome per check id, as ``runner._run_gx`` returns it."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    datasource = context.data_sources.add_spark(f"spark_{new_id()}")
    groups: dict[tuple[str, str], list[Check]] = defaultdict(list)
    for check in checks:
        groups[(check.suite, check.table)].append(check)
    outcomes: dict[str, dict[str, Any]] = {}
    for (suite_name, table), group in groups.items():
        name = suite_name if suite_name == table else f"{suite_name}.{table}"
        asset = datasource.add_dataframe_asset(name=f"raw_{table}_{suite_name}")
        batch = asset.add_batch_definition_whole_dataframe(name)
        expectations = []
        for check in group:
            if check.expectation_type == "unexpected_rows_expectation":
                kwargs = dict(check.kwargs, unexpected_rows_query=spark_query(check.kwargs["unexpected_rows_query"]))
                check = Check(**{**check.__dict__, "kwargs": kwargs})
            expectations.append(runner._expectation(check))
        suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
        definition = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
        result = definition.run(batch_parameters={"dataframe": spark.table(f"raw_{table}")}, result_format="BASIC")
        for item in result.results:
            check_id = (item.expectation_config.meta or {}).get("check_id")
            exception = item.exception_info or {}
            error = exception.get("exception_message") if exception.get("raised_exception") else None
            outcomes[check_id] = {"success": bool(item.success), "result": dict(item.result or {}), "error": error}
    return outcomes


def validate(spark, config: Config, tables: Mapping[str, str], out_dir, *, run_id: str | None = None,
             checks: list[Check] | None = None, gx_suites: bool = True, gx_row_rules: bool = False,
             raise_on_failure: bool = True, spark_tables=None) -> dict:
    """Validate the raw tables (contract table -> Spark table or view) on Spark, as
    ``pipeline.validate.runner.run`` does on DuckDB: the row rules counted and quarantined in Spark SQL,
    the table-level expectations (column set, row count) through GX's Spark execution engine, and with
    ``gx_row_rules`` every row rule through GX too (its count must equal the SQL count, else the check
    carries a ``gx_error``).

    Writes ``audit_quarantine`` (earlier rows of other stages kept, 'validate' rows replaced) and
    ``audit_validation`` as Spark tables: through ``spark_tables`` (``pipeline.spark.tables.SparkTables``,
    the run's warehouse folder) when given, else as Parquet under ``out_dir``; the results JSON goes to
    ``out_dir`` as on DuckDB. Returns the summary dict; raises ``ValidationFailed`` (exit code 4) when an
    error check fails, after writing everything.
    """
    clock = runner._Clock()
    out_dir = Path(out_dir)
    run_id = run_id or new_id()
    checks = checks if checks is not None else load_checks(config)
    con = _SparkChecks(spark)
    for table in TABLES:
        name = tables.get(table, f"raw_{table}")
        if name != f"raw_{table}":
            spark.table(name).createOrReplaceTempView(f"raw_{table}")
    earlier = None
    if spark.catalog.tableExists("audit_quarantine"):
        earlier = spark.table("audit_quarantine").where("stage <> 'validate'").select(*QUARANTINE_COLUMNS)
    # the four row counts in one job
    counted = spark.sql("select " + ", ".join(f"(select count(*) from raw_{t}) as {t}" for t in TABLES)).collect()[0]
    totals = {t: int(counted[t]) for t in TABLES}
    missing_columns = runner._missing_columns(con, checks)
    quarantined: dict[str, int] = {}
    failing: dict[str, int] = {}
    outcomes: dict[str, dict[str, Any]] = {}
    quarantine = None
    if not any(missing_columns.values()):
        quarantine, quarantined = quarantine_rows(spark, checks, earlier)
        failing = {**row_rule_counts(spark, checks), **quarantined}
        clock.lap("row_rules")
        if gx_suites or gx_row_rules:
            outcomes = run_gx(spark, [c for c in checks if gx_row_rules or not c.is_row_rule])
        clock.lap("gx")
    if quarantine is None:
        quarantine = (earlier if earlier is not None else _quarantine_frame(spark, [])).localCheckpoint(eager=True)
        quarantine.createOrReplaceTempView("audit_quarantine")
    results = [runner._result(con, check, totals, missing_columns, quarantined, outcomes.get(check.id),
                              failing.get(check.id)) for check in checks]
    distinct = spark.sql("select count(*) from (select distinct table_name, load_id, source_row from audit_quarantine "
                         "where stage = 'validate')").collect()[0][0]
    clock.lap("results")
    report = runner.ValidationReport(
        run_id=run_id, checked_at=dt.datetime.now().isoformat(timespec="seconds"), warehouse=str(out_dir),
        extract_day=config.extract.extract_day.isoformat(), results=results, quarantined_rows=int(distinct),
        gx_errors=[f"{r.check_id}: {r.gx_error}" for r in results if r.gx_error], seconds=clock.laps)
    _write_tables(spark, out_dir, quarantine, report, spark_tables)
    report.results_path = str(runner.write_json(report, out_dir))
    for warning in report.warnings:
        log.warning("validation warning: %s", warning.one_line())
    if raise_on_failure and report.failures:
        first, more = report.failures[0], len(report.failures) - 1
        tail = f" (+{more} more failing error check{'s' if more > 1 else ''})" if more else ""
        raise ValidationFailed(
            f"validation stopped: {first.one_line()}{tail}; fix the extract or review the threshold in "
            f"expectations/{first.suite}.json; all results: {Path(report.results_path).parent / 'latest.json'}")
    return report.to_dict()


def _write_tables(spark, out_dir: Path, quarantine, report, spark_tables=None) -> None:
    """audit_quarantine and audit_validation as Parquet (Spark tables), with views of their names."""
    checked_at = dt.datetime.fromisoformat(report.checked_at)
    rows = [(report.run_id, r.check_id, r.suite, r.table_name, r.column_name, r.category, r.severity,
             float(r.threshold), r.status, int(r.failing_rows), int(r.total_rows), float(r.failing_share),
             ", ".join(r.examples), r.action, checked_at) for r in report.results]
    validation = spark.createDataFrame(rows, "run_id string, check_id string, suite string, table_name string, "
                                             "column_name string, category string, severity string, threshold double, "
                                             "status string, failing_rows bigint, total_rows bigint, failing_share "
                                             "double, examples string, action string, checked_at timestamp")
    for name, frame in (("audit_quarantine", quarantine), ("audit_validation", validation)):
        if spark_tables is not None:
            spark_tables.write(name, frame)
            continue
        path = (out_dir / name).resolve().as_uri()
        frame.write.mode("overwrite").parquet(path)
        spark.read.parquet(path).createOrReplaceTempView(name)
