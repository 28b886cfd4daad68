"""Ingest a native extract (one CSV or Parquet file per table) into typed ``raw_*`` tables.

Guarantees (each one tested in ``tests/test_ingest.py``):

* **Nothing lost**: every data row of every file is either in ``raw_<table>`` or in
  ``audit_quarantine`` (stage ``ingest``) with a rule and a reason;
  ``audit_load`` records rows read = loaded + quarantined per file.
* **Idempotent**: a file whose sha256 equals the one already loaded for its table is
  skipped; loading the same files again changes nothing.
* **Atomic**: all tables of one load are replaced in one DuckDB transaction; an
  error or Ctrl-C part-way leaves the previous warehouse as it was.
* **Private**: the privacy gate judges every file's column names before any row is
  read, then every value of every column (extra columns included) inside the load's
  transaction, before anything is committed (``pipeline/privacy/gate.py``).

Typing rules (``ingest.*`` rule ids): a required value missing, a value that does
not cast to the contract type (dates must be ISO 8601), a non-finite number, a
non-integer where an integer is expected, a control character or an over-long
text value: the row is quarantined. Structural problems a user must fix (missing
file, missing required column, unreadable file, most rows unreadable) stop the load
with one line naming the file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from pipeline.config import Config
from pipeline.contract import TABLES, Column, Table
from pipeline.errors import ExtractError
from pipeline.warehouse import ensure_audit_tables, new_id, scalar, sql_literal, table_exists

FORMATS = ("csv", "parquet")
# Longest text value accepted in a contract column: pseudonyms, codes and
# category names are short; anything longer is free text or a corrupt row.
MAX_TEXT_LENGTH = 64
# Above this share of unreadable rows a file is refused rather than quarantined:
# it is the wrong file or the wrong encoding, not a few bad rows.
MAX_UNREADABLE_SHARE = 0.5


@dataclass
class TableLoad:
    table: str
    source_file: str
    file_format: str
    sha256: str
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    skipped: bool = False
    extra_columns: list[str] = field(default_factory=list)


@dataclass
class IngestSummary:
    load_id: str
    tables: list[TableLoad]

    @property
    def changed(self) -> bool:
        return any(not t.skipped for t in self.tables)


def find_table_files(source: Path) -> dict[str, tuple[Path, str]]:
    """The file of each contract table in ``source``: ``{table: (path, format)}``."""
    source = Path(source)
    if not source.exists():
        raise ExtractError(f"extract folder not found: {source}")
    if not source.is_dir():
        raise ExtractError(f"extract must be a folder with one file per table, got a file: {source}")
    found: dict[str, tuple[Path, str]] = {}
    for name in TABLES:
        candidates = [(source / f"{name}.{fmt}", fmt) for fmt in FORMATS if (source / f"{name}.{fmt}").is_file()]
        if not candidates:
            raise ExtractError(f"{source}: table '{name}' missing (expected {name}.csv or {name}.parquet)")
        if len(candidates) > 1:
            raise ExtractError(f"{source}: table '{name}' given twice ({name}.csv and {name}.parquet); keep one")
        found[name] = candidates[0]
    return found


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sniff_delimiter(path: Path) -> str:
    """The delimiter of a CSV file, judged from its header line only.

    DuckDB's sniffer can mistake a ragged data row for the header; the header
    line is the one line whose shape we know.
    """
    with open(path, "rb") as handle:
        header = handle.readline(1 << 16)
    counts = {d: header.count(d.encode()) for d in (",", ";", "\t", "|")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _scan_sql(path: Path, fmt: str, rejects: str | None = None) -> str:
    """A DuckDB table function reading every column of the file as text."""
    if fmt == "csv":
        delimiter = sniff_delimiter(path)
        options = (
            f"all_varchar = true, header = true, delim = {sql_literal(delimiter)}, quote = '\"', escape = '\"', "
            "max_line_size = 20000000"
        )
        if not rejects:
            options += ", ignore_errors = true"
        else:
            options += f", store_rejects = true, rejects_table = '{rejects}', rejects_scan = '{rejects}_scan'"
        return f"read_csv({sql_literal(str(path))}, {options})"
    return f"read_parquet({sql_literal(str(path))}, file_row_number = true)"


def _describe(con: duckdb.DuckDBPyConnection, path: Path, fmt: str) -> list[str]:
    if path.stat().st_size == 0:
        raise ExtractError(f"{path.name}: file is empty (expected a header row)")
    try:
        columns = con.sql(f"select * from {_scan_sql(path, fmt)} limit 0").columns
    except duckdb.Error as error:
        kind = "Parquet" if fmt == "parquet" else "CSV"
        first_line = str(error).strip().splitlines()[0][:200]
        raise ExtractError(f"{path.name}: cannot be read as {kind} ({first_line})") from None
    return columns


def _check_columns(table: Table, path: Path, columns: list[str]) -> dict[str, str]:
    """Map contract column -> source column (names matched case-insensitively)."""
    by_lower: dict[str, str] = {}
    for column in columns:
        key = column.strip().lower()
        if key in by_lower:
            raise ExtractError(f"{path.name}: column '{key}' appears twice")
        by_lower[key] = column
    missing = [c.name for c in table.required_columns if c.name not in by_lower]
    if missing:
        raise ExtractError(
            f"{path.name}: required column{'s' if len(missing) > 1 else ''} {', '.join(repr(m) for m in missing)} "
            f"missing (found: {', '.join(columns) or 'none'})"
        )
    return {c.name: by_lower[c.name] for c in table.columns if c.name in by_lower}


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _typed_expression(column: Column, text: str) -> str:
    """SQL turning the text value ``text`` into the contract type (NULL when it does not cast)."""
    if column.duckdb_type == "BIGINT":
        as_double = f"try_cast({text} as double)"
        return f"case when {as_double} = round({as_double}) then try_cast({as_double} as bigint) end"
    if column.duckdb_type == "DOUBLE":
        return f"case when isfinite(try_cast({text} as double)) then try_cast({text} as double) end"
    if column.duckdb_type == "DATE":
        # ISO 8601 only (YYYY-MM-DD, optionally with a time part): 03/04/2020 is ambiguous.
        return f"case when regexp_matches({text}, '^\\d{{4}}-\\d{{2}}-\\d{{2}}') then try_cast(left({text}, 10) as date) end"
    if column.duckdb_type == "BOOLEAN":
        return f"try_cast({text} as boolean)"
    return text


def _failure_checks(column: Column, text: str) -> list[tuple[str, str]]:
    """(condition, rule_id) pairs: a row failing any of them is quarantined at ingest."""
    typed = _typed_expression(column, text)
    checks = []
    if column.required:
        checks.append((f"{text} is null", f"ingest.required_missing.{column.name}"))
    if column.duckdb_type == "VARCHAR":
        checks.append((f"length({text}) > {MAX_TEXT_LENGTH}", f"ingest.too_long.{column.name}"))
    else:
        checks.append((f"{text} is not null and {typed} is null", f"ingest.type.{column.name}"))
    checks.append((f"regexp_matches({text}, '[\\x00-\\x08\\x0B\\x0C\\x0E-\\x1F]')", f"ingest.control_character.{column.name}"))
    return checks


_TYPE_WORDS = {
    "BIGINT": "an integer",
    "DOUBLE": "a finite number",
    "DATE": "an ISO 8601 date (YYYY-MM-DD)",
    "BOOLEAN": "true or false",
}


def _reason(table: Table, rule_id: str) -> str:
    kind, column = rule_id.split(".")[1:3]
    if kind == "required_missing":
        return f"required value {column} is missing"
    if kind == "too_long":
        return f"{column} longer than {MAX_TEXT_LENGTH} characters"
    if kind == "control_character":
        return f"{column} contains a control character (e.g. NUL)"
    return f"{column} is not {_TYPE_WORDS.get(table.column(column).duckdb_type, 'of the contract type')}"


def _gate_headers(con: duckdb.DuckDBPyConnection, files: dict[str, tuple[Path, str]], privacy_gate) -> None:
    """The privacy gate on every file's column names and types, before any row is read."""
    for path, fmt in files.values():
        _describe(con, path, fmt)
    privacy_gate.headers(con, {name: (path.name, _scan_sql(path, fmt)) for name, (path, fmt) in files.items()})


def _gate_parsed(con: duckdb.DuckDBPyConnection, table: Table, path: Path, fmt: str, extra_columns: list[str],
                 privacy_gate) -> None:
    """The privacy gate on every value of the parsed table, its extra columns and its unreadable
    lines (inside the load's transaction: a refusal rolls it back)."""
    rejects = f"_rejects_{table.name}" if fmt == "csv" else None
    privacy_gate.values(con, table.name, path.name, "_ingest_readable", _scan_sql(path, fmt), extra_columns, rejects)


def _stage_table(
    con: duckdb.DuckDBPyConnection, table: Table, path: Path, fmt: str, load: TableLoad, load_id: str,
    privacy_gate=None,
) -> None:
    """Read one file into ``raw_<table>`` (typed rows) and ``_ingest_quarantine`` (rows set aside).

    One parse of the file into ``_ingest_readable`` (text); the typed raw table
    and the quarantine are both selected from it through views, so a 10M-row
    file is materialised twice (text, typed), not once per step.
    """
    columns = _describe(con, path, fmt)
    mapping = _check_columns(table, path, columns)
    load.extra_columns = [c for c in columns if c.strip().lower() not in mapping]
    rejects = f"_rejects_{table.name}"
    scan = _scan_sql(path, fmt, rejects=rejects if fmt == "csv" else None)
    texts = {
        c.name: (f"nullif(trim(cast({_quote(mapping[c.name])} as varchar)), '')" if c.name in mapping else "null::varchar")
        for c in table.columns
    }
    row_number = "file_row_number + 1" if fmt == "parquet" else "row_number() over ()"
    # File order must survive the parse for row_number() to be the file's row number.
    con.execute("set preserve_insertion_order = true")
    con.execute(
        f"""create or replace table _ingest_readable as
            select {row_number} as _readable_row, {', '.join(f'{expr} as {_quote(name)}' for name, expr in texts.items())}
            from {scan}"""
    )
    con.execute("set preserve_insertion_order = false")
    if privacy_gate is not None:
        _gate_parsed(con, table, path, fmt, load.extra_columns, privacy_gate)
    unreadable = 0
    rejected = []
    if fmt == "csv":
        # Lines DuckDB could not split into the header's columns (wrong column count,
        # invalid UTF-8): counted and quarantined with DuckDB's own error type.
        # DuckDB numbers file lines from the header (line 1): data row = line - 1.
        rejected = con.sql(
            f"""select line - 1, any_value(error_type) as error_type, any_value(error_message) as message
                from {rejects} group by line order by line"""
        ).fetchall()
        unreadable = len(rejected)
        con.execute(f"drop table if exists {rejects}; drop table if exists {rejects}_scan")
    if rejected:
        con.executemany(
            "insert into _ingest_quarantine values (?, 'ingest', ?, null, ?, ?, ?)",
            [
                [load_id, table.name, row, f"ingest.unreadable_line.{error_type.lower().replace(' ', '_')}", message[:200]]
                for row, error_type, message in rejected
            ],
        )
        # Readable rows before the j-th rejected row r_j: r_j - j. A readable row k
        # then sits at data row k + #{j : r_j - j < k} (an ASOF join on that count).
        con.execute("create or replace temp table _ingest_rejected (data_row bigint, readable_before bigint)")
        con.executemany(
            "insert into _ingest_rejected values (?, ?)",
            [[row, row - j] for j, (row, _, _) in enumerate(rejected, start=1)],
        )
        con.execute(
            """create or replace temp view _ingest_text as
               with rejected_before as (
                   select readable_before, row_number() over (order by data_row) as rejected_so_far
                   from _ingest_rejected
               ),
               final as (
                   select r.* exclude (_readable_row),
                          r._readable_row + coalesce(b.rejected_so_far, 0) as _source_row
                   from _ingest_readable as r
                   asof left join rejected_before as b on r._readable_row > b.readable_before
               )
               select * from final"""
        )
    else:
        con.execute(
            "create or replace temp view _ingest_text as "
            "select * exclude (_readable_row), _readable_row as _source_row from _ingest_readable"
        )
    checks = [(cond, rule) for c in table.columns for cond, rule in _failure_checks(c, _quote(c.name))]
    first_failure = "case " + " ".join(f"when {cond} then '{rule}'" for cond, rule in checks) + " end"
    con.execute(f"create or replace temp view _ingest_checked as select *, {first_failure} as _rule from _ingest_text")
    typed = ", ".join(f"{_typed_expression(c, _quote(c.name))}::{c.duckdb_type} as {_quote(c.name)}" for c in table.columns)
    con.execute(
        f"""create or replace table raw_{table.name} as
            select {typed}, _source_row, {sql_literal(load_id)} as _load_id from _ingest_checked where _rule is null"""
    )
    id_column = _quote(table.id_column)
    con.execute(
        f"""insert into _ingest_quarantine
            select {sql_literal(load_id)}, 'ingest', {sql_literal(table.name)}, left({id_column}, {MAX_TEXT_LENGTH}),
                   _source_row, _rule, null
            from _ingest_checked where _rule is not null"""
    )
    load.rows_loaded = scalar(con, f"select count(*) from raw_{table.name}")
    typed_failures = scalar(
        con, "select count(*) from _ingest_quarantine where table_name = ? and rule_id not like 'ingest.unreadable_line%'",
        [table.name],
    )
    con.execute("drop view if exists _ingest_checked; drop view if exists _ingest_text; drop table if exists _ingest_readable")
    load.rows_quarantined = typed_failures + unreadable
    load.rows_read = load.rows_loaded + load.rows_quarantined
    if load.rows_read and load.rows_quarantined / load.rows_read > MAX_UNREADABLE_SHARE:
        top_rule, top_count = con.execute(
            f"""select rule_id, count(*) from _ingest_quarantine where table_name = {sql_literal(table.name)}
                group by rule_id order by 2 desc limit 1"""
        ).fetchall()[0]
        raise ExtractError(
            f"{path.name}: {load.rows_quarantined} of {load.rows_read} rows unusable "
            f"(most common: {top_rule}, {top_count} rows); is this the right file, in UTF-8 with ISO dates?"
        )


def load_native(
    con: duckdb.DuckDBPyConnection,
    source: Path,
    config: Config,
    privacy_gate=None,
    progress=None,
) -> IngestSummary:
    """Load the extract in ``source`` into the warehouse (see module docstring).

    ``privacy_gate`` (``pipeline.privacy.gate.refuse_if_identifiers``) judges every
    file's header before the load starts (``headers``), then every value of each
    parsed table inside the load's transaction (``values``); it raises
    ``PrivacyError`` to refuse the extract, and the transaction is rolled back:
    nothing is committed.
    ``progress(message)`` is called as each table is read.
    """
    files = find_table_files(Path(source))
    if privacy_gate is not None:
        _gate_headers(con, files, privacy_gate)
    ensure_audit_tables(con)
    load_id = new_id()
    loads = []
    for name, (path, fmt) in files.items():
        digest = sha256_of(path)
        load = TableLoad(name, str(path.resolve()), fmt, digest)
        previous = scalar(con, "select sha256 from audit_load where table_name = ? order by loaded_at desc limit 1", [name])
        load.skipped = bool(previous == digest and table_exists(con, f"raw_{name}"))
        loads.append(load)
    summary = IngestSummary(load_id, loads)
    if not summary.changed:
        return summary

    con.execute("begin transaction")
    try:
        con.execute(
            """create or replace temp table _ingest_quarantine (load_id varchar, stage varchar, table_name varchar,
               record_id varchar, source_row bigint, rule_id varchar, reason varchar)"""
        )
        for load in loads:
            if load.skipped:
                continue
            if progress:
                progress(f"reading {Path(load.source_file).name}")
            path, fmt = files[load.table]
            _stage_table(con, TABLES[load.table], path, fmt, load, load_id, privacy_gate)
            con.execute(
                "delete from audit_quarantine where stage = 'ingest' and table_name = ?", [load.table]
            )
            con.execute(
                "delete from audit_quarantine where stage = 'validate' and table_name = ?", [load.table]
            )
            con.execute(
                "insert into audit_load values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [load_id, load.table, load.source_file, fmt, load.sha256, load.rows_read, load.rows_loaded,
                 load.rows_quarantined, dt.datetime.now()],
            )
        con.execute(
            """insert into audit_quarantine
               select load_id, stage, table_name, record_id, source_row, rule_id, reason from _ingest_quarantine"""
        )
        reasons = con.sql("select distinct table_name, rule_id from _ingest_quarantine").fetchall()
        for table_name, rule_id in reasons:
            if rule_id.startswith("ingest.unreadable_line"):
                continue
            con.execute(
                "update audit_quarantine set reason = ? where load_id = ? and table_name = ? and rule_id = ?",
                [_reason(TABLES[table_name], rule_id), load_id, table_name, rule_id],
            )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    finally:
        for drop in ("drop view if exists _ingest_checked", "drop view if exists _ingest_text",
                     "drop table if exists _ingest_readable", "drop table if exists _ingest_rejected",
                     "drop table if exists _ingest_quarantine", "set preserve_insertion_order = true"):
            try:
                con.execute(drop)
            except duckdb.Error:
                pass
    return summary
