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

import csv
import datetime as dt
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from pipeline.config import Config
from pipeline.contract import TABLES, Column, Table
from pipeline.errors import ExtractError
from pipeline.warehouse import ensure_audit_tables, new_id, raw_table_snapshots, scalar, sql_literal

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
# Longest field the line scan follows when looking for a quote that runs on
# (only on the slow path, after a count mismatch).
MAX_SCANNED_FIELD = 1 << 20


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
    snapshot_id: str | None = None


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


def sha256_of(path: Path) -> str:
    return scan_file(path).sha256


@dataclass(frozen=True)
class FileScan:
    """What one pass over a file's bytes tells: its sha256 and its physical lines.

    A line ends with LF, CRLF or a lone CR (DuckDB reads all three); a last line
    without a line end counts. ``trailing_blank`` is the number of empty lines at
    the end of the file (editors and exports often leave one or two).
    """

    sha256: str
    size: int
    lines: int
    trailing_blank: int

    @property
    def data_lines(self) -> int:
        """Lines after the header, blank trailing lines excluded."""
        return max(self.lines - 1 - self.trailing_blank, 0)


def count_lines(data: bytes) -> tuple[int, int]:
    """(physical lines, trailing blank lines) of a byte string.

    >>> count_lines(b"h\\n1\\n2")
    (3, 0)
    >>> count_lines(b"h\\r\\n1\\r\\n\\r\\n\\r\\n")
    (4, 2)
    >>> count_lines(b"h\\r1\\r")
    (2, 0)
    """
    ends = data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")
    lines = ends + (1 if data and data[-1:] not in (b"\n", b"\r") else 0)
    body = data.rstrip(b"\r\n")
    run = data[len(body):]
    run_ends = run.count(b"\n") + run.count(b"\r") - run.count(b"\r\n")
    return lines, max(run_ends - 1, 0) if body else run_ends


def scan_file(path: Path, block_size: int = 1 << 22) -> FileScan:
    """sha256 and line counts of ``path`` in one read (``bytes.count`` runs at memory speed)."""
    digest = hashlib.sha256()
    ends = size = 0
    last = b""
    tail = b""
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(block_size), b""):
            digest.update(block)
            size += len(block)
            ends += block.count(b"\n") + block.count(b"\r") - block.count(b"\r\n")
            if last == b"\r" and block[:1] == b"\n":
                ends -= 1  # a CRLF split across two blocks was counted twice
            last = block[-1:]
            tail = block[-65536:] if len(block) >= 65536 else (tail + block)[-65536:]
    lines = ends + (1 if size and last not in (b"\n", b"\r") else 0)
    _, trailing_blank = count_lines(tail)
    return FileScan(digest.hexdigest(), size, lines, trailing_blank)


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


def header_columns(path: Path, delimiter: str) -> list[str]:
    """The column names on the header line (BOM dropped, RFC 4180 quoting honoured).

    Unnamed columns get DuckDB-style names (``column2``) so that an extra column
    with an empty header does not stop the load.
    """
    with open(path, "rb") as handle:
        first = handle.readline(1 << 16)
    text = first.decode("utf-8-sig", errors="replace").splitlines()
    names = next(csv.reader(io.StringIO(text[0] if text else ""), delimiter=delimiter), [])
    return [name.strip() or f"column{i}" for i, name in enumerate(names)]


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


def first_mixed_line_end(path: Path) -> int | None:
    r"""The first line holding a carriage return that does not end it, in a file with LF line ends.

    DuckDB stops on such a file ("state machine reached an invalid state"); Excel
    and copy-paste from Mac tools leave them.

    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile(delete=False) as f:
    ...     _ = f.write(b"h\r\na\r\nb\rc\r\n")
    >>> first_mixed_line_end(Path(f.name)); os.unlink(f.name)
    3
    """
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if b"\r" in line.rstrip(b"\r\n") or line.endswith(b"\r\r\n"):
                return number
    return None


def unreadable_csv(error: duckdb.Error, path: Path | None = None) -> ExtractError:
    """One line for a file DuckDB cannot parse: the file's name, and the line when it can be found."""
    text = str(error)
    if path is None:
        named = re.search(r"^\s*file = (.+)$", text, flags=re.MULTILINE)
        path = Path(named.group(1).strip()) if named else None
    name = path.name if path is not None else "a file of the extract"
    if path is not None and path.is_file() and not path.name.lower().endswith(".gz"):
        if "invalid state" in text:
            line = first_mixed_line_end(path)
            if line is not None:
                return ExtractError(
                    f"{name}: line {line} (data row {line - 1}): a carriage return (CR) inside the line; "
                    "save the file with one kind of line end (LF or CRLF)"
                )
        delimiter = sniff_delimiter(path)
        if delimiter != "\t":  # tab-separated files are read without quoting
            lines = scan_lines(path, delimiter)
            if lines.runaway_from is not None:
                return runaway_quote(path, lines)
    first_line = text.strip().splitlines()[0][:200]
    return ExtractError(f"{name}: cannot be read as CSV ({first_line})")


@dataclass
class LineScan:
    """The slow-path reading of a CSV file, line by line, after a count mismatch."""

    blank_rows: list[int]  # data row numbers (file line - 1) of empty lines
    runaway_from: int | None = None  # first line of a record running over a line end
    runaway_to: int | None = None  # its last line (None: ran past MAX_SCANNED_FIELD)


def scan_lines(path: Path, delimiter: str, quoted: bool = True) -> LineScan:
    """Blank lines and the first record spanning lines, as an RFC 4180 reader sees them.

    Python's csv reader (in C) follows the same quoting rules as DuckDB and tells
    the line each record ends on, so the first record whose lines jump by more
    than one is where a quote ran on. Only run when DuckDB's record count and the
    file's line count disagree (rare), so its speed (about 1M lines/s) matters little.
    Decoded as latin-1: every byte maps to one character, quotes and delimiters stay.
    """
    blank_rows: list[int] = []
    previous_limit = csv.field_size_limit(MAX_SCANNED_FIELD)
    previous = 0
    try:
        with open(path, encoding="latin-1", newline="") as handle:
            quoting = csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE
            reader = csv.reader(handle, delimiter=delimiter, quotechar='"', doublequote=True, strict=False, quoting=quoting)
            try:
                for record in reader:
                    line = reader.line_num
                    if line - previous > 1:
                        return LineScan(blank_rows, previous + 1, line)
                    if not record:
                        blank_rows.append(line - 1)
                    previous = line
            except csv.Error:
                return LineScan(blank_rows, previous + 1, None)
    finally:
        csv.field_size_limit(previous_limit)
    return LineScan(blank_rows)


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


def runaway_quote(path: Path, lines: LineScan) -> ExtractError:
    """The one line for a quoted field that runs over a line end."""
    start = lines.runaway_from
    reach = f"to line {lines.runaway_to}" if lines.runaway_to else f"for more than {MAX_SCANNED_FIELD // (1 << 20)} MB"
    return ExtractError(
        f"{path.name}: line {start} (data row {start - 1}): a quoted field opens and does not close on that line "
        f"(it runs on {reach}; a stray or unmatched '\"'?); fields may not span lines: fix the quoting and load again"
    )


def reconcile_lines(path: Path, file_scan: FileScan, records: int, gaps: list[int], quoted: bool = True) -> int:
    """Rows read = data lines of the file; refuse when the CSV reader saw fewer records.

    Fast path: DuckDB's records (parsed + rejected) equal the data lines counted
    from the bytes. Otherwise the file is read line by line (``scan_lines``): blank
    lines in the middle are not records (they join ``gaps`` so source rows keep the
    file's numbering); a quoted field running over a line end is refused, naming
    the line where it opens. ``gaps`` is extended in place.
    """
    if records == file_scan.data_lines:
        return records
    lines = scan_lines(path, sniff_delimiter(path), quoted)
    if lines.runaway_from is not None:
        raise runaway_quote(path, lines)
    blank = [row for row in lines.blank_rows if row >= 1]
    data_lines = file_scan.lines - 1 - len(blank)
    if records != data_lines:
        raise ExtractError(
            f"{path.name}: {data_lines} data lines but the CSV reader finds {records} records; "
            "check line ends and quoting (expected UTF-8 CSV, one record per line)"
        )
    gaps[:] = sorted(set(gaps) | set(blank))
    return data_lines


def _stage_table(
    con: duckdb.DuckDBPyConnection, table: Table, path: Path, fmt: str, load: TableLoad, load_id: str,
    privacy_gate=None, file_scan: FileScan | None = None,
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
    try:
        con.execute(
            f"""create or replace table _ingest_readable as
                select {row_number} as _readable_row, {', '.join(f'{expr} as {_quote(name)}' for name, expr in texts.items())}
                from {scan}"""
        )
    except duckdb.Error as error:
        if fmt == "csv":
            raise unreadable_csv(error, path) from None
        raise ExtractError(f"{path.name}: cannot be read as Parquet ({str(error).strip().splitlines()[0][:200]})") from None
    con.execute("set preserve_insertion_order = false")
    if privacy_gate is not None:
        _gate_parsed(con, table, path, fmt, load.extra_columns, privacy_gate)
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
        con.execute(f"drop table if exists {rejects}; drop table if exists {rejects}_scan")
    gaps = [row for row, _, _ in rejected]  # data rows that are not in _ingest_readable
    records = scalar(con, "select count(*) from _ingest_readable") + unreadable
    if fmt == "csv":
        load.rows_read = reconcile_lines(path, file_scan or scan_file(path), records, gaps)
    else:
        load.rows_read = _parquet_rows(con, path)
        if records != load.rows_read:
            raise ExtractError(f"{path.name}: the Parquet metadata says {load.rows_read} rows but {records} were read")
    if rejected:
        con.executemany(
            "insert into _ingest_quarantine values (?, 'ingest', ?, null, ?, ?, ?)",
            [
                [load_id, table.name, row, f"ingest.unreadable_line.{error_type.lower().replace(' ', '_')}", message[:200]]
                for row, error_type, message in rejected
            ],
        )
    if gaps:
        # Readable rows before the j-th gap (rejected or blank line) r_j: r_j - j. A
        # readable row k then sits at data row k + #{j : r_j - j < k} (an ASOF join on that count).
        con.execute("create or replace temp table _ingest_rejected (data_row bigint, readable_before bigint)")
        con.executemany(
            "insert into _ingest_rejected values (?, ?)",
            [[row, row - j] for j, row in enumerate(gaps, start=1)],
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
    if set(raw_table_snapshots(con, RAW_TABLES).values()) == {snapshot}:
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
        for drop in ("drop view if exists _ingest_checked", "drop view if exists _ingest_text",
                     "drop table if exists _ingest_readable", "drop table if exists _ingest_rejected",
                     "drop table if exists _ingest_quarantine", "set preserve_insertion_order = true"):
            try:
                con.execute(drop)
            except duckdb.Error:
                pass
    return summary
