"""File handling both sources share (native extracts and OMOP CDM folders).

One read of a file's bytes gives its sha256 and its line count (``scan_file``);
the header line gives the delimiter and the column names; when DuckDB's record
count and the line count disagree, ``reconcile_lines`` reads the file line by
line to name the line where quoting goes wrong. Nothing here knows the
contract's tables or the CDM's: ``pipeline/ingest/native.py`` and
``pipeline/ingest/omop.py`` both import from here, and neither from the other.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from pipeline.errors import ExtractError

# Longest field the line scan follows when looking for a quote that runs on
# (only on the slow path, after a count mismatch).
MAX_SCANNED_FIELD = 1 << 20


@dataclass
class TableLoad:
    """What a loader (native or OMOP) reports for one table of one load."""

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
    carriage_returns: int = 0  # CR bytes (CRLF or CR line ends, or a CR inside a line)

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
    """sha256 and line counts of ``path`` in one read of its bytes.

    Each block is hashed and its line ends counted (``bytes.count`` runs at memory
    speed; a block without a CR costs one count). Quoted fields spanning lines are
    not told apart here: ``reconcile_lines`` does that when DuckDB's record count
    differs from these lines.
    """
    digest = hashlib.sha256()
    ends = size = carriage_returns = 0
    last = b""
    tail = b""
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(block_size), b""):
            digest.update(block)
            size += len(block)
            ends += block.count(b"\n")
            returns = block.count(b"\r")
            if returns:
                ends += returns - block.count(b"\r\n")
                carriage_returns += returns
            if last == b"\r" and block[:1] == b"\n":
                ends -= 1  # a CRLF split across two blocks was counted twice
            last = block[-1:]
            tail = block[-65536:] if len(block) >= 65536 else (tail + block)[-65536:]
    lines = ends + (1 if size and last not in (b"\n", b"\r") else 0)
    _, trailing_blank = count_lines(tail)
    return FileScan(digest.hexdigest(), size, lines, trailing_blank, carriage_returns)


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


def unreadable_rows(path: Path, delimiter: str, fields: int) -> list[int]:
    """Data rows (file line - 1) an RFC 4180 reader cannot split into ``fields`` fields, or
    that are not UTF-8, reading the file line by line (records may not span lines).

    DuckDB's rejects table numbers such lines itself, but with CRLF line ends a line
    end falling on a read-buffer boundary can shift its count by one; this slow
    path (only for a file that has such lines) gives the file's own numbering.
    A line without a quote is split by counting delimiters; only quoted lines go
    through Python's csv reader (strict: text after a closing quote is an error,
    as in DuckDB).
    """
    bad: list[int] = []
    separator = delimiter.encode()
    with open(path, "rb") as handle:
        handle.readline()  # the header
        for row, line in enumerate(handle, start=1):
            line = line.rstrip(b"\r\n")
            if not line:
                continue  # a blank line is not a record
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                bad.append(row)
                continue
            if b'"' not in line:
                if line.count(separator) + 1 != fields:
                    bad.append(row)
                continue
            try:
                parsed = next(csv.reader([text], delimiter=delimiter, quotechar='"', doublequote=True, strict=True))
            except csv.Error:
                bad.append(row)
                continue
            if len(parsed) != fields:
                bad.append(row)
    return bad
