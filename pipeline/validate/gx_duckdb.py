"""Great Expectations over DuckDB: the one place that touches GX internals.

Why a shim: GX 1.24's ``SqlAlchemyExecutionEngine.execute_query`` runs a query
inside ``with engine.connect()`` and fetches the rows *after* the block has
closed the connection. Closing hands the DuckDB connection back to the pool,
which rolls it back, and DuckDB discards the pending result: every metric comes
back empty and every expectation errors with "list index out of range".
GX already keeps one persistent connection for SQLite, SQL Server, BigQuery and
Databricks (``_PERSISTED_CONNECTION_DIALECTS``); ``patch_gx_for_duckdb`` adds
DuckDB to that tuple, nothing more.

Which database GX sees: the pipeline's own DuckDB connection. The SQLAlchemy
engine's ``creator`` hands out ``con.cursor()`` -- in DuckDB a cursor is a new
connection to the *same* database instance -- so GX reads exactly the tables
the pipeline wrote and committed (DuckDB autocommits unless a
transaction was begun explicitly), its transactions never touch the
pipeline's connection, and no second ``duckdb.connect`` to the warehouse file
is needed (that would fail or need identical configuration). All metric work
is SQL run by DuckDB; no table is pulled into pandas.

``great-expectations`` is pinned in pyproject.toml because of this module;
``tests/test_validate.py::test_gx_shim_*`` fails loudly when an upgrade moves
the patched attribute or makes the patch unnecessary/insufficient.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # never phone home, also offline

import duckdb
import great_expectations as gx
from duckdb_engine import ConnectionWrapper
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.execution_engine import sqlalchemy_execution_engine as _gx_sql_engine

PATCHED_MODULE = _gx_sql_engine
PATCHED_ATTRIBUTE = "_PERSISTED_CONNECTION_DIALECTS"


class _DuckDBDialectName(str):
    """``"duckdb"`` that also answers ``.value`` like a ``GXSqlDialect`` member.

    GX compares dialect names with ``==`` (``dialect_name in tuple``) and reads
    ``.value`` when it picks a pool from a connection string; both work.

    >>> name = _DuckDBDialectName("duckdb")
    >>> name == "duckdb", name.value
    (True, 'duckdb')
    """

    @property
    def value(self) -> str:
        return str(self)


def patch_gx_for_duckdb() -> None:
    """Make GX keep one persistent SQLAlchemy connection for the duckdb dialect (idempotent)."""
    dialects = getattr(PATCHED_MODULE, PATCHED_ATTRIBUTE, None)
    if not isinstance(dialects, tuple):
        raise RuntimeError(
            f"great_expectations {gx.__version__}: {PATCHED_MODULE.__name__}.{PATCHED_ATTRIBUTE} "
            "is gone; pipeline/validate/gx_duckdb.py must be updated for this GX version"
        )
    if "duckdb" not in [str(getattr(d, "value", d)) for d in dialects]:
        setattr(PATCHED_MODULE, PATCHED_ATTRIBUTE, dialects + (_DuckDBDialectName("duckdb"),))


def is_patched() -> bool:
    dialects = getattr(PATCHED_MODULE, PATCHED_ATTRIBUTE, ())
    return any(str(getattr(d, "value", d)) == "duckdb" for d in dialects)


def new_context() -> Any:
    """An ephemeral GX context (nothing written until Data Docs are built), quiet."""
    patch_gx_for_duckdb()
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


@contextlib.contextmanager
def duckdb_datasource(context: Any, con: duckdb.DuckDBPyConnection, name: str = "warehouse") -> Iterator[Any]:
    """A GX SQL datasource reading the database behind ``con``; its cursors are closed on exit.

    The connection string only names the dialect; every connection comes from
    ``creator`` (a cursor of ``con``).
    """
    patch_gx_for_duckdb()
    cursors: list[duckdb.DuckDBPyConnection] = []

    def creator() -> ConnectionWrapper:
        cursor = con.cursor()
        cursors.append(cursor)
        return ConnectionWrapper(cursor)

    with contextlib.suppress(Exception):
        context.data_sources.delete(name)
    datasource = context.data_sources.add_sql(
        name, connection_string="duckdb:///:memory:", kwargs={"creator": creator}
    )
    try:
        yield datasource
    finally:
        engine = getattr(datasource, "_execution_engine", None)
        with contextlib.suppress(Exception):
            if engine is not None:
                engine.close()
        with contextlib.suppress(Exception):
            datasource.get_engine().dispose()
        for cursor in cursors:
            with contextlib.suppress(duckdb.Error):
                cursor.close()
        with contextlib.suppress(Exception):
            context.data_sources.delete(name)
