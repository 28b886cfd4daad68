"""The validate stage: row rules -> audit_quarantine, check results -> audit_validation.

1. Row rules run as DuckDB SQL against raw_*, in as few scans as the rules allow:
   per table, the column rules (not null, in a set, between bounds) are counted in
   one aggregate query and their failing rows quarantined by one INSERT that reads
   the table once; each ``unexpected_rows_expectation`` (duplicates, date order,
   references to persons) is its own query. Failing rows go to audit_quarantine
   with stage 'validate' (previous 'validate' rows are deleted first, so a rerun
   gives the same table). Per-table suites run before cross_table, so referential
   checks see only persons that survived.
2. Great Expectations runs only where it adds what SQL does not: the analyst's
   Data Docs (``build_docs``), over the table-level expectations (columns, row
   count) -- a few metadata queries, not a scan per row rule. ``gx_row_rules=True``
   has GX evaluate every row rule as well, as an independent second count (the
   tests use it to show that GX and the SQL row rules agree row for row).
   Results go to audit_validation, ``<quality_dir>/validation_<run_id>.json``
   and ``latest.json``; Data Docs to ``<quality_dir>/data_docs`` (best effort: a
   docs failure is reported, never fatal). ``quality_dir`` is the analyst's
   internal folder (``data/quality-internal/``), never under ``reports/``: these
   files name records and GX shows sampled values. Each run replaces the
   previous run's files there (nothing accumulates). The published view of
   data quality is built by the publish stage from the warehouse.
3. A check's status is ``fail`` when its failing share exceeds its threshold.
   A failing error check with action stop or quarantine raises
   ``ValidationFailed`` (one line); warnings are reported and the run goes on.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import threading
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from pipeline.config import Config
from pipeline.contract import TABLES
from pipeline.errors import StageOrderError, ValidationFailed
from pipeline.validate.checks import Check, failing_predicate, failing_rows_sql, load_checks
from pipeline.warehouse import ensure_audit_tables, new_id, table_exists

log = logging.getLogger(__name__)

EXAMPLES = 5  # row ids shown per failing check
DOCS_SITE = "quality"


@dataclass
class CheckResult:
    check_id: str
    suite: str
    table_name: str
    column_name: str | None
    category: str
    severity: str
    action: str
    threshold: float
    expectation_type: str
    description: str
    status: str  # pass / fail
    failing_rows: int
    total_rows: int
    failing_share: float
    examples: list[str] = field(default_factory=list)
    quarantined_rows: int = 0
    gx_success: bool | None = None
    gx_error: str | None = None

    @property
    def stops_run(self) -> bool:
        return self.status == "fail" and self.severity == "error" and self.action in ("stop", "quarantine")

    def one_line(self) -> str:
        """The user's one line about a failing check (no newlines)."""
        where = f"{self.table_name}.{self.column_name}" if self.column_name else self.table_name
        share = f"{self.failing_share:.2%}"
        example = f"; e.g. {TABLES[self.table_name].id_column} {', '.join(self.examples)}" if self.examples else ""
        if self.expectation_type == "expect_table_columns_to_match_set":
            example = f"; missing {', '.join(self.examples)}" if self.examples else ""
        return (
            f"{where}: rule {self.check_id} ({self.description}) failed on {self.failing_rows:,} of "
            f"{self.total_rows:,} rows ({share} > {self.threshold:.2%} tolerated){example}"
        )


@dataclass
class ValidationReport:
    run_id: str
    checked_at: str
    warehouse: str
    extract_day: str
    results: list[CheckResult]
    quarantined_rows: int  # distinct raw rows set aside by validation
    results_path: str | None = None
    data_docs_index: str | None = None
    data_docs_error: str | None = None
    gx_errors: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.stops_run]

    @property
    def warnings(self) -> list[CheckResult]:
        return [r for r in self.results if r.severity == "warning" and r.status == "fail"]

    @property
    def passed(self) -> bool:
        return not self.failures

    def result(self, check_id: str) -> CheckResult:
        return next(r for r in self.results if r.check_id == check_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "checked_at": self.checked_at,
            "warehouse": self.warehouse,
            "extract_day": self.extract_day,
            "passed": self.passed,
            "stopped_by": [r.check_id for r in self.failures],
            "warnings": [r.check_id for r in self.warnings],
            "quarantined_rows": self.quarantined_rows,
            "data_docs_index": self.data_docs_index,
            "data_docs_error": self.data_docs_error,
            "gx_errors": self.gx_errors,
            "seconds": self.seconds,
            "checks": [asdict(r) for r in self.results],
        }


def run(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    quality_dir: Path,
    warehouse_path: Path | str,
    *,
    run_id: str | None = None,
    build_docs: bool = True,
    checks: list[Check] | None = None,
    gx_row_rules: bool = False,
) -> ValidationReport:
    """Validate raw_* in the warehouse behind ``con``; quarantine failing rows; stop on errors.

    Returns the report when no error check fails; raises ``ValidationFailed``
    (after writing every result) when one does.
    """
    clock = _Clock()
    run_id = run_id or new_id()
    quality_dir = Path(quality_dir)
    ensure_audit_tables(con)
    missing_tables = [f"raw_{t}" for t in TABLES if not table_exists(con, f"raw_{t}")]
    if missing_tables:
        raise StageOrderError(f"validate needs {', '.join(missing_tables)}: run ingest first")
    checks = checks if checks is not None else load_checks(config)
    totals = {t: con.execute(f"select count(*) from raw_{t}").fetchall()[0][0] for t in TABLES}
    missing_columns = _missing_columns(con, checks)

    quarantined: dict[str, int] = {}
    failing: dict[str, int] = {}
    gx_outcomes: dict[str, dict[str, Any]] = {}
    docs_index = docs_error = None
    if not any(missing_columns.values()):
        gx_import = _import_gx_meanwhile() if (build_docs or gx_row_rules) else None
        quarantined = quarantine_rows(con, checks)
        failing = {**row_rule_counts(con, checks), **quarantined}
        clock.lap("row_rules")
        gx_checks = [c for c in checks if gx_row_rules or not c.is_row_rule]
        if gx_import is not None:
            gx_import.join()
        if build_docs or gx_row_rules:
            gx_outcomes, docs_index, docs_error = _run_gx(con, gx_checks, quality_dir, run_id, build_docs)
        clock.lap("gx")

    results = [
        _result(con, check, totals, missing_columns, quarantined, gx_outcomes.get(check.id), failing.get(check.id))
        for check in checks
    ]
    clock.lap("results")
    report = ValidationReport(
        run_id=run_id,
        checked_at=dt.datetime.now().isoformat(timespec="seconds"),
        warehouse=str(warehouse_path),
        extract_day=config.extract.extract_day.isoformat(),
        results=results,
        quarantined_rows=_distinct_quarantined(con),
        data_docs_index=docs_index,
        data_docs_error=docs_error,
        gx_errors=[f"{r.check_id}: {r.gx_error}" for r in results if r.gx_error],
        seconds=clock.laps,
    )
    _write_audit(con, report)
    report.results_path = str(write_json(report, quality_dir))
    for warning in report.warnings:
        log.warning("validation warning: %s", warning.one_line())
    if report.failures:
        first, more = report.failures[0], len(report.failures) - 1
        tail = f" (+{more} more failing error check{'s' if more > 1 else ''})" if more else ""
        raise ValidationFailed(
            f"validation stopped: {first.one_line()}{tail}; fix the extract or review the threshold in "
            f"expectations/{first.suite}.json; all results: {Path(report.results_path).parent / 'latest.json'}"
        )
    return report


def _import_gx_meanwhile() -> threading.Thread:
    """Import Great Expectations in a thread while DuckDB runs the row rules.

    The import is ~2-3 s of pure Python (most of this stage's fixed cost at 1M);
    DuckDB releases the GIL while a query runs, so the two overlap on a second
    core. Only the import runs there: GX itself runs afterwards, on this thread.
    A failing import is not reported here: ``_run_gx`` imports again and raises.
    """

    def load() -> None:
        try:
            import great_expectations.expectations  # noqa: F401

            import pipeline.validate.gx_duckdb  # noqa: F401
        except Exception:  # noqa: BLE001 - reported by the import in _run_gx
            pass

    thread = threading.Thread(target=load, name="gx-import", daemon=True)
    thread.start()
    return thread


class _Clock:
    def __init__(self) -> None:
        self._last = dt.datetime.now()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = dt.datetime.now()
        self.laps[name] = round((now - self._last).total_seconds(), 3)
        self._last = now


def _missing_columns(con: duckdb.DuckDBPyConnection, checks: list[Check]) -> dict[str, list[str]]:
    """Required columns (per the suites' column-set checks) absent from raw_*."""
    missing: dict[str, list[str]] = {}
    for check in checks:
        if check.expectation_type != "expect_table_columns_to_match_set":
            continue
        present = {
            row[0]
            for row in con.execute(
                "select column_name from information_schema.columns where table_schema = 'main' and table_name = ?",
                [check.raw_table],
            ).fetchall()
        }
        missing[check.id] = [c for c in check.kwargs["column_set"] if c not in present]
    return missing


def quarantine_rows(con: duckdb.DuckDBPyConnection, checks: list[Check]) -> dict[str, int]:
    """Run every quarantine row rule in DuckDB; failing rows -> audit_quarantine (stage 'validate').

    Per table (suite order: persons before cross_table, whose rules read
    ``valid_persons``): the column rules in one INSERT reading the table once, then
    each ``unexpected_rows_expectation`` on its own. A row failing two rules is set
    aside once per rule. Idempotent: earlier 'validate' rows are deleted first.
    Returns rows set aside per check id.
    """
    ensure_audit_tables(con)
    con.execute("delete from audit_quarantine where stage = 'validate'")
    rules = [c for c in checks if c.action == "quarantine"]
    for suite, table, column_rules, query_rules in _by_table(rules):
        if column_rules:
            _quarantine(con, table, column_rules, f"from {column_rules[0].raw_table} as failing where "
                        + " or ".join(f"({failing_predicate(c)})" for c in column_rules))
        for check in query_rules:
            _quarantine(con, table, [check], f"from ({failing_rows_sql(check)}) as failing")
    counted = dict(con.execute(
        "select rule_id, count(*) from audit_quarantine where stage = 'validate' group by rule_id").fetchall())
    return {c.id: int(counted.get(c.id, 0)) for c in rules}


def _by_table(checks: list[Check]) -> list[tuple[str, str, list[Check], list[Check]]]:
    """(suite, table, column rules, query rules), in the checks' order of suites and tables."""
    groups: dict[tuple[str, str], tuple[list[Check], list[Check]]] = {}
    for check in checks:
        column_rules, query_rules = groups.setdefault((check.suite, check.table), ([], []))
        (column_rules if failing_predicate(check) is not None else query_rules).append(check)
    return [(suite, table, *rules) for (suite, table), rules in groups.items()]


def _quarantine(con: duckdb.DuckDBPyConnection, table: str, rules: list[Check], failing_rows: str) -> None:
    """One INSERT: every row of ``failing_rows`` (``from ... as failing [where ...]``) once per rule it fails.

    The reason is the rule, never the value: a value in a category column may be an
    identifier (record_id and source_row lead back to the row in the warehouse).
    """
    id_column = TABLES[table].id_column
    if len(rules) == 1 and failing_predicate(rules[0]) is None:
        failed = f"[{_literal(rules[0].id)}]"
    else:
        failed = "list_filter([" + ", ".join(
            f"case when {failing_predicate(c)} then {_literal(c.id)} end" for c in rules) + "], lambda rule: rule is not null)"
    reasons = "map {" + ", ".join(
        f"{_literal(c.id)}: {_literal(f'{c.column or c.id_column}: {c.description}')}" for c in rules) + "}"
    con.execute(
        f"""
        insert into audit_quarantine (load_id, stage, table_name, record_id, source_row, rule_id, reason)
        with failed as (
            select failing._load_id, cast(failing.{id_column} as varchar) as record_id, failing._source_row,
                   unnest({failed}) as rule_id
            {failing_rows}
        ),
        final as (
            select _load_id, 'validate', {_literal(table)}, record_id, _source_row, rule_id, {reasons}[rule_id]
            from failed
        )
        select * from final
        """
    )


def row_rule_counts(con: duckdb.DuckDBPyConnection, checks: list[Check]) -> dict[str, int]:
    """Failing rows of every row rule that quarantines nothing (``report`` warnings): the column
    rules of a table in one aggregate query, each query rule on its own."""
    counts: dict[str, int] = {}
    rules = [c for c in checks if c.is_row_rule and c.action != "quarantine"]
    for _, _, column_rules, query_rules in _by_table(rules):
        if column_rules:
            row = con.execute("select " + ", ".join(f"count_if({failing_predicate(c)})" for c in column_rules)
                              + f" from {column_rules[0].raw_table}").fetchall()[0]
            counts.update({c.id: int(n) for c, n in zip(column_rules, row)})
        for check in query_rules:
            counts[check.id] = int(con.execute(f"select count(*) from ({failing_rows_sql(check)})").fetchall()[0][0])
    return counts


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _distinct_quarantined(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute(
        "select count(*) from (select distinct table_name, load_id, source_row from audit_quarantine "
        "where stage = 'validate')"
    ).fetchall()[0][0]


def _run_gx(
    con: duckdb.DuckDBPyConnection, checks: list[Check], quality_dir: Path, run_id: str, build_docs: bool
) -> tuple[dict[str, dict[str, Any]], str | None, str | None]:
    """Validate the suites with GX over the pipeline's DuckDB connection; outcome per check id."""
    import great_expectations as gx

    from pipeline.validate.gx_duckdb import duckdb_datasource, new_context

    context = new_context()
    docs_dir = quality_dir / "data_docs"
    if docs_dir.exists():
        shutil.rmtree(docs_dir)  # one run's Data Docs at a time: earlier runs' pages do not pile up
    if build_docs:
        context.add_data_docs_site(
            DOCS_SITE,
            {
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    groups: dict[tuple[str, str], list[Check]] = defaultdict(list)
    for check in checks:
        groups[(check.suite, check.table)].append(check)

    outcomes: dict[str, dict[str, Any]] = {}
    docs_index = docs_error = None
    with duckdb_datasource(context, con, name=f"warehouse_{run_id}") as datasource:
        definitions = []
        for (suite_name, table), group in groups.items():
            asset_name = f"raw_{table}"
            try:
                asset = datasource.get_asset(asset_name)
            except LookupError:
                asset = datasource.add_table_asset(asset_name, table_name=asset_name)
            batch = asset.add_batch_definition_whole_table(f"{suite_name}_{table}")
            name = suite_name if suite_name == table else f"{suite_name}.{table}"
            suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=[_expectation(c) for c in group]))
            definitions.append(context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite)))
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(name=f"validate_{run_id}", validation_definitions=definitions, result_format="BASIC")
        )
        checkpoint_result = checkpoint.run(run_id=gx.RunIdentifier(run_name=run_id))
        for suite_result in checkpoint_result.run_results.values():
            for item in suite_result.results:
                check_id = (item.expectation_config.meta or {}).get("check_id")
                exception = item.exception_info or {}
                error = exception.get("exception_message") if exception.get("raised_exception") else None
                outcomes[check_id] = {"success": bool(item.success), "result": dict(item.result or {}), "error": error}
    if build_docs:
        try:
            context.build_data_docs(site_names=[DOCS_SITE])
            docs_index = str(docs_dir / "index.html")
        except Exception as error:  # Data Docs are a convenience; never fail a run on them
            docs_error = f"{type(error).__name__}: {error}"
            log.warning("GX Data Docs not built: %s", docs_error)
    return outcomes, docs_index, docs_error


def _expectation(check: Check) -> Any:
    import great_expectations.expectations as gxe

    kwargs = dict(check.kwargs)
    if check.expectation_type.startswith("expect_column_values_") and check.threshold > 0:
        kwargs["mostly"] = 1.0 - check.threshold  # so GX's verdict matches ours in Data Docs
    classes = {
        "expect_column_values_to_not_be_null": gxe.ExpectColumnValuesToNotBeNull,
        "expect_column_values_to_be_between": gxe.ExpectColumnValuesToBeBetween,
        "expect_column_values_to_be_in_set": gxe.ExpectColumnValuesToBeInSet,
        "unexpected_rows_expectation": gxe.UnexpectedRowsExpectation,
        "expect_table_columns_to_match_set": gxe.ExpectTableColumnsToMatchSet,
        "expect_table_row_count_to_be_between": gxe.ExpectTableRowCountToBeBetween,
    }
    if check.expectation_type == "unexpected_rows_expectation":
        kwargs["description"] = check.description
    meta = {
        "check_id": check.id,
        "category": check.category,
        "severity": check.severity,
        "action": check.action,
        "threshold": check.threshold,
        "notes": check.description,
    }
    return classes[check.expectation_type](**kwargs, meta=meta)


def _result(
    con: duckdb.DuckDBPyConnection,
    check: Check,
    totals: dict[str, int],
    missing_columns: dict[str, list[str]],
    quarantined: dict[str, int],
    gx_outcome: dict[str, Any] | None,
    sql_failing: int | None = None,
) -> CheckResult:
    total = totals[check.table]
    examples: list[str] = []
    gx_error = None
    gx_success = None if gx_outcome is None else gx_outcome["success"]
    if check.expectation_type == "expect_table_columns_to_match_set":
        examples = missing_columns.get(check.id, [])
        failing, total = len(examples), len(check.kwargs["column_set"])
    elif check.expectation_type == "expect_table_row_count_to_be_between":
        low, high = check.kwargs.get("min_value"), check.kwargs.get("max_value")
        failing = int((low is not None and total < low) or (high is not None and total > high))
        total = 1
    elif sql_failing is None:  # required columns missing: row rules not evaluated
        failing = 0
    else:
        failing = sql_failing  # the DuckDB row rule's count
        if gx_outcome is not None:  # GX asked for a second count (gx_row_rules): say when it differs
            gx_failing = _gx_failing_rows(check, gx_outcome)
            if gx_failing is None:
                gx_error = gx_outcome.get("error") or "no result from GX"
                log.warning("GX could not evaluate %s (%s); counted in DuckDB", check.id, gx_error)
            elif gx_failing != failing:
                gx_error = f"GX counted {gx_failing} failing rows, the DuckDB row rule {failing}"
    if failing and check.is_row_rule:
        examples = _examples(con, check)
    share = failing / total if total else 0.0
    return CheckResult(
        check_id=check.id,
        suite=check.suite,
        table_name=check.table,
        column_name=check.column,
        category=check.category,
        severity=check.severity,
        action=check.action,
        threshold=check.threshold,
        expectation_type=check.expectation_type,
        description=check.description,
        status="fail" if share > check.threshold else "pass",
        failing_rows=int(failing),
        total_rows=int(total),
        failing_share=share,
        examples=examples,
        quarantined_rows=quarantined.get(check.id, 0),
        gx_success=gx_success,
        gx_error=gx_error,
    )


def _gx_failing_rows(check: Check, outcome: dict[str, Any]) -> int | None:
    result = outcome["result"]
    if outcome.get("error"):
        return None
    if check.expectation_type == "unexpected_rows_expectation":
        value = result.get("observed_value")
    else:
        value = result.get("unexpected_count")
    return None if value is None else int(value)


def _examples(con: duckdb.DuckDBPyConnection, check: Check) -> list[str]:
    if check.action == "quarantine":
        rows = con.execute(
            "select record_id from audit_quarantine where stage = 'validate' and rule_id = ? "
            "order by source_row limit ?",
            [check.id, EXAMPLES],
        ).fetchall()
    else:
        rows = con.execute(
            f"select cast({check.id_column} as varchar) from ({failing_rows_sql(check)}) "
            f"order by _source_row limit {EXAMPLES}"
        ).fetchall()
    return [str(r[0]) for r in rows]


def _write_audit(con: duckdb.DuckDBPyConnection, report: ValidationReport) -> None:
    con.execute("delete from audit_validation where run_id = ?", [report.run_id])
    checked_at = dt.datetime.fromisoformat(report.checked_at)
    rows = [
        (
            report.run_id, r.check_id, r.suite, r.table_name, r.column_name, r.category, r.severity,
            r.threshold, r.status, r.failing_rows, r.total_rows, r.failing_share,
            ", ".join(r.examples), r.action, checked_at,
        )
        for r in report.results
    ]
    # one INSERT of a literal list (executemany is slow in DuckDB); values bound as parameters
    marks = ", ".join("(" + ", ".join("?" * 15) + ")" for _ in rows)
    con.execute(
        "insert into audit_validation (run_id, check_id, suite, table_name, column_name, category, severity, "
        "threshold, status, failing_rows, total_rows, failing_share, examples, action, checked_at) "
        f"values {marks}",
        [value for row in rows for value in row],
    )


def write_json(report: ValidationReport, quality_dir: Path) -> Path:
    """``validation_<run_id>.json`` and a copy as ``latest.json``; returns the first."""
    quality_dir = Path(quality_dir)
    quality_dir.mkdir(parents=True, exist_ok=True)
    for earlier in quality_dir.glob("validation_*.json"):
        earlier.unlink()  # the previous run's results are in audit_validation
    text = json.dumps(report.to_dict(), indent=2, default=str)
    path = quality_dir / f"validation_{report.run_id}.json"
    path.write_text(text, encoding="utf-8")
    (quality_dir / "latest.json").write_text(text, encoding="utf-8")
    return path
