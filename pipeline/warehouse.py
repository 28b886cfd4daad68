"""The DuckDB warehouse: connection, SQL files, run bookkeeping.

>>> con = connect(":memory:")
>>> render_sql("select {{ window }} as w", window=30)
'select 30 as w'
>>> con.execute(render_sql("select {{ window }} as w", window=30)).fetchall()
[(30,)]
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import uuid
from pathlib import Path
from typing import Any, Sequence, Iterator

import duckdb

from pipeline.config import PROJECT_ROOT, Config

DEFAULT_WAREHOUSE = PROJECT_ROOT / "data" / "warehouse.duckdb"
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def connect(path: Path | str = DEFAULT_WAREHOUSE, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open (creating the folder if needed) the warehouse."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return duckdb.connect(str(path), read_only=read_only)


def apply_settings(con: duckdb.DuckDBPyConnection, config: Config) -> None:
    """DuckDB resource settings from ``[warehouse]`` in the configuration."""
    con.execute(f"set memory_limit = {sql_literal(config.warehouse.memory_limit)}")
    if config.warehouse.threads > 0:
        con.execute(f"set threads = {int(config.warehouse.threads)}")


def scalar(con: duckdb.DuckDBPyConnection, query: str, params: list | None = None) -> Any:
    """The single value a query returns (None when it returns no row).

    DuckDB 2.0 keeps a result open until it is fully fetched, and refuses other
    work on the connection meanwhile: fetch everything, never ``fetchone()``.

    >>> scalar(connect(":memory:"), "select 41 + ?", [1])
    42
    """
    rows = con.execute(query, params or []).fetchall()
    return rows[0][0] if rows else None


def sql_literal(value: Any) -> str:
    """A Python value as a SQL literal (numbers, strings, bools, lists of those).

    >>> sql_literal(["F132", "O'Brien"]), sql_literal(True), sql_literal(2.5)
    ("['F132', 'O''Brien']", 'true', '2.5')
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(sql_literal(v) for v in value) + "]"
    if value is None:
        return "NULL"
    return "'" + str(value).replace("'", "''") + "'"


def render_sql(template: str, **params: Any) -> str:
    """Fill ``{{ name }}`` placeholders with SQL literals (numbers, lists) or raw text.

    Strings are inserted as-is (identifiers, fragments); wrap them with
    ``sql_literal`` first when they are values.
    """

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in params:
            raise KeyError(f"SQL placeholder '{{{{ {name} }}}}' has no value")
        value = params[name]
        return value if isinstance(value, str) else sql_literal(value)

    return _PLACEHOLDER.sub(fill, template)


def values_rows(rows: Sequence[Sequence[Any]], types: Sequence[str] = ()) -> str:
    """A SQL ``VALUES`` list of literal rows (an empty typed relation when there are none)."""
    if not rows:
        return "select " + ", ".join(f"NULL::{t}" for t in types) + " where false"
    return "values " + ", ".join("(" + ", ".join(sql_literal(v) for v in row) + ")" for row in rows)


def run_sql_file(con: duckdb.DuckDBPyConnection, path: Path, **params: Any) -> None:
    """Run one SQL file (may hold several statements) with placeholders filled."""
    con.execute(render_sql(Path(path).read_text(encoding="utf-8"), **params))


def table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(
        scalar(con, "select count(*) from information_schema.tables where table_name = ? and table_schema = 'main'", [name])
    )


AUDIT_DDL = """
create table if not exists audit_load (
    load_id varchar, table_name varchar, source_file varchar, file_format varchar, sha256 varchar,
    rows_read bigint, rows_loaded bigint, rows_quarantined bigint, loaded_at timestamp, snapshot_id varchar);
alter table audit_load add column if not exists snapshot_id varchar;
create table if not exists audit_quarantine (
    load_id varchar, stage varchar, table_name varchar, record_id varchar, source_row bigint,
    rule_id varchar, reason varchar);
create table if not exists audit_validation (
    run_id varchar, check_id varchar, suite varchar, table_name varchar, column_name varchar,
    category varchar, severity varchar, threshold double, status varchar, failing_rows bigint,
    total_rows bigint, failing_share double, examples varchar, action varchar, checked_at timestamp);
create table if not exists audit_run_log (
    run_id varchar, stage varchar, started_at timestamp, finished_at timestamp, status varchar,
    message varchar, config_json varchar, snapshot_id varchar);
alter table audit_run_log add column if not exists snapshot_id varchar;
"""


# The loads behind the raw tables now in the warehouse: every load replaces all of
# them and writes one audit_load row per file (CDM table) in one transaction, so
# the latest load is the current one. Read this, not audit_load, for the counts of
# the data a run is about (audit_load keeps every load ever made).
AUDIT_VIEWS = """
create or replace view audit_load_current as
select * from audit_load
where load_id = (select load_id from audit_load order by loaded_at desc, load_id limit 1);
"""
RAW_TABLES = ("persons", "prescriptions", "diagnoses", "follow_ups")


def ensure_audit_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(AUDIT_DDL)
    if not table_exists(con, "audit_load_current"):
        con.execute(AUDIT_VIEWS)


def raw_table_snapshots(con: duckdb.DuckDBPyConnection, tables: tuple[str, ...] = RAW_TABLES) -> dict[str, str | None]:
    """The snapshot each ``raw_<table>`` holds (its table comment; None when missing or unrecorded).

    >>> con = connect(":memory:")
    >>> raw_table_snapshots(con, ("persons",))
    {'persons': None}
    """
    found = dict(
        con.execute(
            "select table_name, comment from duckdb_tables() where schema_name = 'main' "
            "and database_name = current_database()"
        ).fetchall()
    )
    return {name: (found.get(f"raw_{name}") or None) for name in tables}


def raw_tables_on_spark(con: duckdb.DuckDBPyConnection) -> bool:
    """True when the last successful ingest into this warehouse ran on Spark.

    A Spark run keeps the raw tables on the cluster and leaves here only their schema (zero rows),
    commented with the extract's snapshot so that its own stage-order checks work. A DuckDB stage
    must not take those for the extract: the ingest loads it again, and the other stages stop.

    >>> con = connect(":memory:")
    >>> raw_tables_on_spark(con)
    False
    """
    if not table_exists(con, "audit_run_log"):
        return False
    row = con.execute("select config_json from audit_run_log where stage = 'ingest' and status = 'ok' "
                      "order by finished_at desc limit 1").fetchone()
    try:
        settings = json.loads(row[0]) if row and row[0] else {}
    except ValueError:
        return False
    engine = settings.get("engine") if isinstance(settings, dict) else None
    return isinstance(engine, dict) and engine.get("name") == "spark"


def require_stage_on_snapshot(con: duckdb.DuckDBPyConnection, stage: str) -> str:
    """The current snapshot, when ``stage`` last succeeded on it; ``StageOrderError`` otherwise.

    ``estimate`` reads what ``transform`` built and ``report`` what ``estimate``
    wrote: after a new extract is loaded both must run again, or the report would
    pair the old extract's results with the new one's counts.
    """
    from pipeline.errors import StageOrderError

    current = require_one_snapshot(con)
    last = scalar(
        con,
        "select snapshot_id from audit_run_log where stage = ? and status = 'ok' order by finished_at desc limit 1",
        [stage],
    )
    if last != current:
        raise StageOrderError(
            f"the {stage} results were built from another extract than the one loaded now "
            f"(snapshot {short_snapshot(current)}): run `python -m pipeline {stage}` again first"
        )
    return current


def short_snapshot(snapshot: str) -> str:
    """A 12-character handle on a snapshot id, for messages.

    >>> short_snapshot("native:2:abc")
    '21a24e3c4058'
    """
    import hashlib

    return hashlib.sha256(snapshot.encode()).hexdigest()[:12]


def require_one_snapshot(con: duckdb.DuckDBPyConnection, tables: tuple[str, ...] = RAW_TABLES) -> str:
    """The snapshot id all raw tables share; ``StageOrderError`` (one line) when they do not.

    Every stage after ingest calls this: tables of two extracts side by side
    (e.g. a warehouse loaded before snapshots were recorded, or a table replaced
    by hand) would give a report on neither.
    """
    from pipeline.errors import StageOrderError

    snapshots = raw_table_snapshots(con, tables)
    missing = [name for name, snapshot in snapshots.items() if snapshot is None]
    if missing and len(missing) == len(snapshots) and not any(table_exists(con, f"raw_{n}") for n in missing):
        raise StageOrderError("no extract loaded: run `python -m pipeline ingest --source <extract>` first")
    if missing:
        raise StageOrderError(
            f"raw table{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing or not from a recorded "
            "extract snapshot: load the extract again (`python -m pipeline ingest --source <extract>`)"
        )
    distinct = sorted(set(snapshots.values()))
    if len(distinct) > 1:
        held = "; ".join(
            f"{', '.join(n for n, s in snapshots.items() if s == snapshot)} from {snapshot.split(':')[0]} "
            f"snapshot {short_snapshot(snapshot)}"
            for snapshot in distinct
        )
        raise StageOrderError(
            f"the raw tables come from different extracts ({held}): load one extract whole "
            "(`python -m pipeline ingest --source <extract>`)"
        )
    return distinct[0]


def new_id() -> str:
    return uuid.uuid4().hex[:12]


@contextlib.contextmanager
def logged_stage(con: duckdb.DuckDBPyConnection, stage: str, config: Config, run_id: str | None = None) -> Iterator[str]:
    """Record a stage's start, end and outcome in ``audit_run_log``."""
    ensure_audit_tables(con)
    run_id = run_id or new_id()
    started = dt.datetime.now()
    status, message = "ok", ""
    try:
        yield run_id
    except BaseException as error:  # recorded, then re-raised unchanged
        status, message = "failed", str(error)[:500] or type(error).__name__
        raise
    finally:
        with contextlib.suppress(duckdb.Error):
            held = set(raw_table_snapshots(con).values())  # the extract the stage ran on
            con.execute(
                "insert into audit_run_log (run_id, stage, started_at, finished_at, status, message, config_json, "
                "snapshot_id) values (?, ?, ?, ?, ?, ?, ?, ?)",
                [run_id, stage, started, dt.datetime.now(), status, message, json.dumps(config.to_dict()),
                 held.pop() if len(held) == 1 else None],
            )
