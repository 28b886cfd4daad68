"""The engine seam: where the SQL stages run (``[engine] name``: duckdb or spark).

DuckDB (the default) runs every stage in one warehouse file, as ever. With
Spark, the person-level tables (raw_*, staging, episodes, cohort, outcomes,
analysis_person, quarantine) live on the cluster (``pipeline.spark``), and the
driver keeps a small DuckDB warehouse for what is aggregated or bookkeeping
(audit log, load audit, attrition, estimates). :class:`RoutedConnection` lets
the estimate and publish code, written against a DuckDB connection, run
unchanged: a query that reads a Spark table runs on Spark (transpiled), its
small result comes back through Arrow into the driver's DuckDB; every other
query runs on the driver's DuckDB.
"""

from __future__ import annotations

from typing import Any, Iterable

ENGINES = ("duckdb", "spark")


def referenced_tables(sql: str) -> set[str]:
    """Lower-case names of the tables a DuckDB query reads (CTE names excluded).

    >>> sorted(referenced_tables("with a as (select * from t) select * from a join u on true"))
    ['t', 'u']
    """
    import sqlglot
    from sqlglot import exp

    names: set[str] = set()
    for tree in sqlglot.parse(sql, read="duckdb"):
        if tree is None:
            continue
        ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
        names |= {t.name.lower() for t in tree.find_all(exp.Table) if t.name and t.name.lower() not in ctes}
    return names


class _SparkResult:
    """A Spark query's (small) result, held in the driver's DuckDB: ``.df()``, ``.fetchall()``, ``.description``
    behave as a DuckDB result's (DataFrame dtypes come from the same Arrow -> DuckDB conversion)."""

    def __init__(self, duck: Any, arrow_table: Any):
        self._relation = duck.from_arrow(arrow_table)

    @property
    def description(self):
        return self._relation.description

    def df(self):
        return self._relation.df()

    def fetchall(self):
        return self._relation.fetchall()

    def fetchone(self):
        rows = self._relation.fetchall()
        return rows[0] if rows else None


class RoutedConnection:
    """A DuckDB connection (the driver's warehouse) that sends queries reading Spark tables to Spark.

    ``spark_tables``: the names of the tables that live on Spark (temp views of ``pipeline.spark.tables``).
    DataFrames registered with :meth:`register` are visible to both engines (a Spark view is made only
    when a Spark query reads one). Everything else is the DuckDB connection's own behaviour.
    """

    def __init__(self, duck: Any, spark: Any, spark_tables: Iterable[str]):
        self.duck = duck
        self.spark = spark
        self.spark_tables = {name.lower() for name in spark_tables}
        self._registered: dict[str, Any] = {}
        self.spark_queries = 0  # how many queries ran on Spark (reported; tests check the routing)

    def on_spark(self, sql: str) -> bool:
        """Whether ``sql`` is one query (no DDL/DML: those are the driver's own bookkeeping) reading a Spark table."""
        import sqlglot
        from sqlglot import exp

        try:
            trees = [t for t in sqlglot.parse(sql, read="duckdb") if t is not None]
        except Exception:  # noqa: BLE001 - not parseable by sqlglot: DuckDB's own SQL (PRAGMA, ...)
            return False
        if len(trees) != 1 or not isinstance(trees[0], (exp.Query, exp.Describe)):
            return False
        return bool(referenced_tables(sql) & self.spark_tables)

    def execute(self, sql: str, params: list | None = None):
        if not self.on_spark(sql):
            return self.duck.execute(sql, params or [])
        from pipeline.spark.transform import spark_schema, to_spark

        for name in referenced_tables(sql) & set(self._registered):
            self._spark_view(name)
        statements = to_spark(sql, columns_of=lambda query: self.spark.sql(query).columns,
                              schema_of=lambda names: spark_schema(self.spark, names))
        if len(statements) != 1 or statements[0].target is not None:
            raise ValueError("only single queries are routed to Spark; Spark tables are written by pipeline.spark")
        args = (dict(params) if isinstance(params, dict) else list(params)) if params else None
        frame = self.spark.sql(statements[0].sql, args=args)
        self.spark_queries += 1
        return _SparkResult(self.duck, frame.toArrow())

    def sql(self, sql: str):
        return self.execute(sql)

    def register(self, name: str, frame: Any):
        self._registered[name.lower()] = frame
        self.duck.register(name, frame)
        return self

    def unregister(self, name: str):
        if self._registered.pop(name.lower(), None) is not None and self.spark.catalog.tableExists(name):
            self.spark.catalog.dropTempView(name)
        self.duck.unregister(name)
        return self

    def _spark_view(self, name: str) -> None:
        import pyarrow as pa

        frame = self._registered[name]
        self.spark.createDataFrame(pa.Table.from_pandas(frame, preserve_index=False)).createOrReplaceTempView(name)

    def cursor(self):
        return self

    def close(self):
        self.duck.close()

    def __getattr__(self, name: str):
        return getattr(self.duck, name)
