"""Ingest a native extract (one CSV or Parquet file per table) into typed ``raw_*`` tables.

Guarantees (each one tested in ``tests/test_ingest.py`` and ``tests/test_input_integrity.py``):

* **Nothing lost, counted against the file itself**: ``rows_read`` is the number
  of data lines in the file (header excluded; blank lines are not records; a last
  line without a newline counts; LF, CRLF or CR line ends) -- for Parquet the row
  count in the file's metadata -- and every one of them is either in
  ``raw_<table>`` or in ``audit_quarantine`` (stage ``ingest``) with a rule and a
  reason: read = loaded + quarantined. DuckDB's record count (rows parsed + lines
  rejected) is compared with the line count from a byte scan (done in the same
  pass as the sha256); when they differ, a quoted field ran over a line end (a
  stray ``"``) and the load is refused with one line naming the file and the first
  line where the quoting goes wrong. Fields that span lines are not part of the
  contract (no free text), so such a record is always a quoting error.
* **One parse**: DuckDB's parallel CSV reader reads each file once into a text
  table kept in file order (a record's ``rowid`` is its place among the file's
  readable records: no single-threaded window over the scan); the privacy gate
  reads that table once; one more pass types every column and picks each row's
  first failing rule, writing ``raw_<table>``; failing rows are copied to the
  quarantine from their rule column and deleted. The file's sha256 and its line
  count come from one read of its bytes (``pipeline/ingest/files.py``); the file
  is read line by line again only when something is wrong (a count mismatch, or
  rejected lines in a file with CRLF line ends, whose line numbers DuckDB can
  get one off).
* **One extract, one snapshot**: the snapshot id is a hash of the four
  (table, sha256) pairs; each ``raw_*`` table carries the snapshot it holds (its
  table comment) and ``audit_load`` records it. A load is skipped only when all four
  raw tables already hold this very snapshot; otherwise all four are replaced.
* **Atomic**: all tables of one load are replaced in one DuckDB transaction; an
  error, Ctrl-C or kill part-way leaves the previous warehouse as it was.
* **Private**: the privacy gate judges every file's column names before any row is
  read, then every value of every column (extra columns included) inside the load's
  transaction, before anything is committed (``pipeline/privacy/gate.py``).

Typing rules (``ingest.*`` rule ids): a required value missing, a value that does
not cast to the contract type (dates must be ISO 8601), a non-finite number, a
non-integer where an integer is expected, a control character or an over-long
text value: the row is quarantined. A line the CSV reader cannot split into the
header's columns (too many / too few fields, invalid UTF-8, text after a closing
quote) is quarantined as ``ingest.unreadable_line.*``. Structural problems a user
must fix (missing file, missing required column, unreadable or empty file, quoting
that runs over line ends, most rows unusable) stop the load with one line naming
the file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipeline.config import Config
from pipeline.contract import TABLES, Column, Table
from pipeline.errors import ExtractError
# File handling shared with the OMOP source (re-exported: callers and tests import them from here too).
from pipeline.ingest.files import (  # noqa: F401
    MAX_SCANNED_FIELD, FileScan, LineScan, TableLoad, count_lines, first_mixed_line_end, header_columns,
    reconcile_lines, runaway_quote, scan_file, scan_lines, sha256_of, sniff_delimiter, unreadable_csv,
    unreadable_rows,
)
from pipeline.warehouse import ensure_audit_tables, new_id, raw_table_snapshots, raw_tables_on_spark, scalar, sql_literal

FORMATS = ("csv", "parquet")
# Longest text value accepted in a contract column: pseudonyms, codes and
# category names are short; anything longer is free text or a corrupt row.
MAX_TEXT_LENGTH = 64
# Above this share of unreadable rows a file is refused rather than quarantined:
# it is the wrong file or the wrong encoding, not a few bad rows.
MAX_UNREADABLE_SHARE = 0.5
# Bump when the typing or accounting rules change: a warehouse loaded by older
# rules is reloaded even from byte-identical files.
INGEST_VERSION = 2
RAW_TABLES = tuple(TABLES)


@dataclass
class IngestSummary:
    load_id: str
    tables: list[TableLoad]
    snapshot_id: str | None = None

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


def _scan_sql(path: Path, fmt: str, rejects: str | None = None) -> str:
    """A DuckDB table function reading every column of the file as text.

    The dialect is fixed (header row, the header's delimiter, RFC 4180 quotes),
    not sniffed: the sniffer refuses a whole file when its sample holds one bad
    line, where each bad line should be quarantined on its own.
    """
    if fmt == "csv":
        delimiter = sniff_delimiter(path)
        columns = "{" + ", ".join(f"{sql_literal(name)}: 'VARCHAR'" for name in header_columns(path, delimiter)) + "}"
        options = (
            f"auto_detect = false, header = true, columns = {columns}, delim = {sql_literal(delimiter)}, "
            "quote = '\"', escape = '\"', max_line_size = 20000000"
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
    if fmt == "csv":
        columns = header_columns(path, sniff_delimiter(path))
        if not columns or columns == ["column0"]:
            raise ExtractError(f"{path.name}: the first line is not a header row (expected column names)")
        return columns
    try:
        columns = con.sql(f"select * from {_scan_sql(path, fmt)} limit 0").columns
    except duckdb.Error as error:
        first_line = str(error).strip().splitlines()[0][:200]
        raise ExtractError(f"{path.name}: cannot be read as Parquet ({first_line})") from None
    return [c for c in columns if c != "file_row_number"]


def _parquet_rows(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    """Rows the Parquet file says it holds (its footer metadata)."""
    return int(scalar(con, f"select sum(num_rows) from parquet_file_metadata({sql_literal(str(path))})") or 0)


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
                 privacy_gate, with_rejected: bool) -> None:
    """The privacy gate on every value of the parsed text table (contract and extra columns, one
    pass) and of its unreadable lines (inside the load's transaction: a refusal rolls it back)."""
    rejects = f"_rejects_{table.name}" if with_rejected else None
    privacy_gate.values(con, table.name, path.name, "_ingest_text", _scan_sql(path, fmt), extra_columns, rejects)


# Control characters a contract value may not hold (tab, LF and CR are line structure, not data).
CONTROL_CHARACTERS = "[\\x00-\\x08\\x0B\\x0C\\x0E-\\x1F]"
# The parquet reader's own row number, kept in the text table under this name.
_PARQUET_ROW = "_ingest_file_row"


def _text_sql(table: Table, mapping: dict[str, str], extra_columns: list[str], scan: str, fmt: str) -> str:
    """SELECT of the file as text: the contract's columns trimmed (empty = NULL), extra columns as read."""
    texts = [
        f"nullif(trim(cast({_quote(mapping[c.name])} as varchar)), '') as {_quote(c.name)}" if c.name in mapping
        else f"null::varchar as {_quote(c.name)}"
        for c in table.columns
    ]
    texts += [f"cast({_quote(c)} as varchar) as {_quote(c)}" for c in extra_columns]
    if fmt == "parquet":
        texts.append(f"file_row_number as {_PARQUET_ROW}")
    return f"select {', '.join(texts)} from {scan}"


def failure_checks(column: Column, text: str, typed: str | None = None, control_guard: str = "") -> list[tuple[str, str]]:
    """(condition, rule_id) of every ingest rule of ``column``, in the order the first failing one
    is reported: the one definition both engines type and quarantine by (``pipeline/spark/ingest.py``
    transpiles the conditions). ``typed`` is the column's typed value (default: computed from ``text``).

    >>> from pipeline.contract import TABLES
    >>> [rule for _, rule in failure_checks(TABLES["prescriptions"].column("days_supply"), '"days_supply"')]
    ['ingest.required_missing.days_supply', 'ingest.type.days_supply']
    """
    typed = typed or _typed_expression(column, text)
    checks = []
    if column.required:
        checks.append((f"{text} is null", f"ingest.required_missing.{column.name}"))
    if column.duckdb_type == "VARCHAR":
        checks.append((f"length({text}) > {MAX_TEXT_LENGTH}", f"ingest.too_long.{column.name}"))
    else:
        checks.append((f"{text} is not null and {typed} is null", f"ingest.type.{column.name}"))
    if column.duckdb_type in ("VARCHAR", "DATE"):  # other types with a control character do not cast: the type rule
        checks.append((f"{control_guard}regexp_matches({text}, '{CONTROL_CHARACTERS}')",
                       f"ingest.control_character.{column.name}"))
    return checks


def _typed_sql(table: Table, readable_row: str, source_row: str, rejected_join: str, load_id: str) -> str:
    """The raw table's rows from ``_ingest_text``: every column typed once, the first failing
    rule per row in ``_rule`` (NULL: the row loads), the file row in ``_source_row``.

    One pass over the text: the typed value of each column is computed once and both
    typed and checked (its text is not NULL but the typed value is); one RE2 scan over
    a row's text columns finds control characters, and only a row holding one is
    told which column. A quarantined row keeps none of its text values (its record id
    goes to ``_record_id``); its typed values are NULL where they did not cast.
    """
    q = _quote
    typed = [f"{_typed_expression(c, q(c.name))}::{c.duckdb_type} as {q('_typed_' + c.name)}" for c in table.columns]
    # BIGINT, DOUBLE and BOOLEAN values with a control character do not cast: the type rule names them.
    text_like = [c for c in table.columns if c.duckdb_type in ("VARCHAR", "DATE")]
    control = f"regexp_matches(concat({', '.join(q(c.name) for c in text_like)}), '{CONTROL_CHARACTERS}')"
    whens = [f"when {condition} then '{rule}'" for c in table.columns
             for condition, rule in failure_checks(c, q(c.name), q("_typed_" + c.name), "_has_control and ")]
    values = [
        f"case when _rule is null then {q('_typed_' + c.name)} end as {q(c.name)}" if c.duckdb_type == "VARCHAR"
        else f"{q('_typed_' + c.name)} as {q(c.name)}"
        for c in table.columns
    ]
    return f"""
        with typed as (
            select {readable_row} as _readable_row, {', '.join('text.' + q(c.name) for c in table.columns)},
                   {', '.join(typed)}, {control} as _has_control
            from _ingest_text as text
        ),
        checked as (
            select *, case {' '.join(whens)} end as _rule from typed
        ),
        final as (
            select {', '.join(values)}, {source_row} as _source_row, {sql_literal(load_id)} as _load_id, _rule,
                   case when _rule is not null then left({q(table.id_column)}, {MAX_TEXT_LENGTH}) end as _record_id
            from checked {rejected_join}
        )
        select * from final"""


def _stage_table(
    con: duckdb.DuckDBPyConnection, table: Table, path: Path, fmt: str, load: TableLoad, load_id: str,
    privacy_gate=None, file_scan: FileScan | None = None,
) -> None:
    """Read one file into ``raw_<table>`` (typed rows) and ``_ingest_quarantine`` (rows set aside).

    One parse of the file by DuckDB's parallel reader into the temp table
    ``_ingest_text`` (every column as text, extra columns included), kept in file
    order, so a row's position in it (``rowid``) is its place among the file's
    readable records: no window over the scan. The privacy gate reads that table
    once; one more pass types every column and picks each row's first failing rule
    into ``raw_<table>``; rows with a rule are copied to the quarantine and deleted.
    """
    columns = _describe(con, path, fmt)
    mapping = _check_columns(table, path, columns)
    load.extra_columns = [c for c in columns if c.strip().lower() not in mapping]
    rejects = f"_rejects_{table.name}"
    scan = _scan_sql(path, fmt, rejects=rejects if fmt == "csv" else None)
    # Insertion order kept: rowid of _ingest_text is then the record's place in the file
    # (DuckDB's parallel CSV reader orders its batches; no single-threaded window needed).
    con.execute("set preserve_insertion_order = true")
    try:
        con.execute(f"create or replace temp table _ingest_text as {_text_sql(table, mapping, load.extra_columns, scan, fmt)}")
    except duckdb.Error as error:
        if fmt == "csv":
            raise unreadable_csv(error, path) from None
        raise ExtractError(f"{path.name}: cannot be read as Parquet ({str(error).strip().splitlines()[0][:200]})") from None
    con.execute("set preserve_insertion_order = false")  # order no longer matters: rows carry their number
    unreadable = 0
    rejected = []
    if fmt == "csv":
        # Lines DuckDB could not split into the header's columns (wrong column count,
        # invalid UTF-8, text after a closing quote): counted and quarantined with
        # DuckDB's own error type. DuckDB numbers file lines from the header (line 1):
        # data row = line - 1 (while no record spans lines, which is checked below).
        rejected = con.sql(
            f"""select line - 1, any_value(error_type) as error_type, any_value(error_message) as message
                from {rejects} group by line order by line"""
        ).fetchall()
        unreadable = len(rejected)
    if privacy_gate is not None:
        _gate_parsed(con, table, path, fmt, load.extra_columns, privacy_gate, with_rejected=bool(rejected))
    if fmt == "csv":
        con.execute(f"drop table if exists {rejects}; drop table if exists {rejects}_scan")
        scanned = file_scan or scan_file(path)
        if rejected and scanned.carriage_returns:
            # DuckDB's line numbers can be one off with CRLF line ends (a line end on a read-buffer
            # boundary); the file's own numbering, paired in order, when it finds the same lines.
            rows = unreadable_rows(path, sniff_delimiter(path), len(columns))
            if len(rows) == len(rejected):
                rejected = [(row, error_type, message) for row, (_, error_type, message) in zip(rows, rejected)]
    gaps = [row for row, _, _ in rejected]  # data rows that are not in _ingest_text
    readable, first_rowid, last_rowid = con.execute(
        "select count(*), min(rowid), max(rowid) from _ingest_text").fetchall()[0]
    records = readable + unreadable
    if fmt == "csv":
        load.rows_read = reconcile_lines(path, scanned, records, gaps)
    else:
        load.rows_read = _parquet_rows(con, path)
        if records != load.rows_read:
            raise ExtractError(f"{path.name}: the Parquet metadata says {load.rows_read} rows but {records} were read")
    if rejected:
        con.execute(
            "insert into _ingest_quarantine select * from (values "
            + ", ".join("(?, 'ingest', ?, null::varchar, ?::bigint, ?, ?)" for _ in rejected) + ")",
            [value for row, error_type, message in rejected
             for value in (load_id, table.name, row, f"ingest.unreadable_line.{error_type.lower().replace(' ', '_')}",
                           message[:200])],
        )
    if fmt == "parquet":
        readable_row = f"{_PARQUET_ROW} + 1"
    elif not readable or last_rowid - first_rowid + 1 == readable:
        # rowids of a table are consecutive from a base (0, or a high base inside a transaction)
        readable_row = f"text.rowid - {int(first_rowid or 0)} + 1"
    else:  # never seen; kept so that a change in DuckDB's rowids cannot renumber rows silently
        readable_row = "row_number() over (order by text.rowid)"
    source_row, rejected_join = "_readable_row", ""
    if gaps:
        # Readable rows before the j-th gap (rejected or blank line) r_j: r_j - j. A
        # readable row k then sits at data row k + #{j : r_j - j < k} (an ASOF join on that count).
        con.execute("create or replace temp table _ingest_rejected (readable_before bigint, rejected_so_far bigint)")
        con.execute(
            "insert into _ingest_rejected select * from (values "
            + ", ".join("(?::bigint, ?::bigint)" for _ in gaps) + ")",
            [value for j, row in enumerate(gaps, start=1) for value in (row - j, j)],
        )
        source_row = "_readable_row + coalesce(gap.rejected_so_far, 0)"
        rejected_join = "asof left join _ingest_rejected as gap on checked._readable_row > gap.readable_before"
    con.execute(f"create or replace table raw_{table.name} as {_typed_sql(table, readable_row, source_row, rejected_join, load_id)}")
    con.execute("drop table if exists _ingest_text")
    failing = con.execute(
        f"""insert into _ingest_quarantine
            select {sql_literal(load_id)}, 'ingest', {sql_literal(table.name)}, _record_id, _source_row, _rule, null
            from raw_{table.name} where _rule is not null"""
    ).fetchall()
    typed_failures = int(failing[0][0]) if failing else 0
    if typed_failures:
        con.execute(f"delete from raw_{table.name} where _rule is not null")
    con.execute(f"alter table raw_{table.name} drop column _rule")
    con.execute(f"alter table raw_{table.name} drop column _record_id")
    load.rows_loaded = scalar(con, f"select count(*) from raw_{table.name}")
    load.rows_quarantined = typed_failures + unreadable
    if load.rows_loaded + load.rows_quarantined != load.rows_read:  # a bug, never a user's problem
        raise AssertionError(f"{path.name}: {load.rows_read} read != {load.rows_loaded} loaded + {load.rows_quarantined} quarantined")
    if load.rows_read and load.rows_quarantined / load.rows_read > MAX_UNREADABLE_SHARE:
        top_rule, top_count = con.execute(
            f"""select rule_id, count(*) from _ingest_quarantine where table_name = {sql_literal(table.name)}
                group by rule_id order by 2 desc limit 1"""
        ).fetchall()[0]
        raise ExtractError(
            f"{path.name}: {load.rows_quarantined} of {load.rows_read} rows unusable "
            f"(most common: {top_rule}, {top_count} rows); is this the right file, in UTF-8 with ISO dates?"
        )



def snapshot_id(kind: str, files: dict[str, str], version: int | str) -> str:
    """The id of one extract: a hash of its (table, sha256) pairs and the loading rules' version.

    >>> snapshot_id("native", {"persons": "ab", "prescriptions": "cd"}, 2)[:15]
    'native:2:e73720'
    """
    payload = json.dumps(sorted(files.items())).encode()
    return f"{kind}:{version}:{hashlib.sha256(payload).hexdigest()}"


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
        try:
            _gate_headers(con, files, privacy_gate)
        except duckdb.Error as error:  # a file DuckDB cannot parse at all: one line naming it
            raise unreadable_csv(error) from None
    ensure_audit_tables(con)
    load_id = new_id()
    scans = {}
    loads = []
    for name, (path, fmt) in files.items():
        scans[name] = scan_file(path)
        loads.append(TableLoad(name, str(path.resolve()), fmt, scans[name].sha256))
    snapshot = snapshot_id("native", {load.table: load.sha256 for load in loads}, INGEST_VERSION)
    summary = IngestSummary(load_id, loads, snapshot)
    for load in loads:
        load.snapshot_id = snapshot
    # Skipped only when every raw table holds this very snapshot: a table from any
    # other extract (native or OMOP) means the whole extract is loaded again.
    # A Spark run's raw tables here are its schema only (the rows stay on Spark): never "loaded".
    if set(raw_table_snapshots(con, RAW_TABLES).values()) == {snapshot} and not raw_tables_on_spark(con):
        for load in loads:
            load.skipped = True
        return summary

    con.execute("begin transaction")
    try:
        con.execute(
            """create or replace temp table _ingest_quarantine (load_id varchar, stage varchar, table_name varchar,
               record_id varchar, source_row bigint, rule_id varchar, reason varchar)"""
        )
        loaded_at = dt.datetime.now()
        for load in loads:
            if progress:
                progress(f"reading {Path(load.source_file).name}")
            path, fmt = files[load.table]
            _stage_table(con, TABLES[load.table], path, fmt, load, load_id, privacy_gate, file_scan=scans[load.table])
            con.execute(
                """insert into audit_load (load_id, table_name, source_file, file_format, sha256, rows_read,
                   rows_loaded, rows_quarantined, loaded_at, snapshot_id) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                [load_id, load.table, load.source_file, fmt, load.sha256, load.rows_read, load.rows_loaded,
                 load.rows_quarantined, loaded_at, snapshot],
            )
            con.execute(f"comment on table raw_{load.table} is {sql_literal(snapshot)}")
        # The warehouse now holds this extract only: quarantine rows of the tables it
        # replaced (native or OMOP names, ingest or validation) go with them.
        con.execute("delete from audit_quarantine where stage in ('ingest', 'validate')")
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
        for drop in ("drop table if exists _ingest_text", "drop table if exists _ingest_rejected",
                     "drop table if exists _ingest_quarantine", "set preserve_insertion_order = true"):
            try:
                con.execute(drop)
            except duckdb.Error:
                pass
    return summary
