"""The OMOP CDM on Spark: CDM tables read by Spark (CSV / Parquet table files, or a
DuckDB CDM exported to Parquet) and mapped to the ``raw_*`` tables by the SQL of
``pipeline/ingest/omop.py`` itself, transpiled from DuckDB's dialect with sqlglot.

No mapping SQL is written here. ``DuckDBSQLOnSpark`` is a connection-shaped adapter
(``execute(sql).fetchall()``, ``sql(query).columns``) that transpiles each DuckDB
statement to Spark SQL and runs it; the OMOP ingest's own functions
(``_create_typed_view``, ``_map_ingredients``, ``_resolve_condition_set``,
``_resolve_follow_up_set``, the mapping statements, ``_write_raw_tables``) are
called with it in place of a DuckDB connection. ``create [temp] table x as ...``
becomes a persisted Spark temp view ``x``; ``comment on`` and transaction
statements have no Spark meaning and are skipped.

Seam (docs/spark.md): the statements are read through what ``pipeline.ingest.omop``
offers -- today the ``SQL_*`` constants; where the module keeps its SQL in files
(``SQL_DIR``, run by ``pipeline.warehouse.run_sql_file(con, path, **params)``) the
same adapter runs them, since ``run_sql_file`` only calls ``con.execute``.

The identifier gate (``pipeline.spark.gate.refuse_cdm_identifiers``) reads every
``*_source_value`` and free-text column of the clinical tables before anything is
mapped. Nothing person-level leaves Spark: only the concept-set resolution (a few
vocabulary rows) and counts come back to the driver.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp

from pipeline.config import Config
from pipeline.errors import ExtractError
from pipeline.ingest import omop as duck_omop
from pipeline.ingest.files import sha256_of
from pipeline.spark import gate as spark_gate
from pipeline.warehouse import sql_literal

RAW_TABLES = duck_omop.RAW_TABLES


# ---------------------------------------------------------------- DuckDB SQL on Spark


def _rewrite(node: exp.Expression) -> exp.Expression:
    """DuckDB semantics sqlglot does not carry over on its own."""
    if isinstance(node, exp.Anonymous):
        name = node.name.lower()
        if name == "isfinite":  # DuckDB isfinite(x): not NaN, not +-inf (NULL stays NULL)
            x = node.expressions[0].sql("spark")
            return sqlglot.parse_one(f"(not isnan({x}) and abs({x}) <> cast('infinity' as double))", read="spark")
        if name == "strlen":
            return exp.Length(this=node.expressions[0])
        if name == "try_strptime" and isinstance(node.expressions[1], exp.Literal):
            java = node.expressions[1].this
            for strftime, pattern in _STRFTIME_TO_JAVA.items():
                java = java.replace(strftime, pattern)
            return exp.Anonymous(this="try_to_timestamp", expressions=[node.expressions[0], exp.Literal.string(java)])
    if isinstance(node, exp.GenerateSeries) and node.args.get("is_end_exclusive"):
        # DuckDB range(a, b, s) stops before b (empty when b <= a); Spark's sequence includes its stop
        start, end = node.args["start"].sql("spark"), node.args["end"].sql("spark")
        step = node.args["step"].sql("spark") if node.args.get("step") else "1"
        return sqlglot.parse_one(f"if(({end}) <= ({start}), array(), sequence({start}, ({end}) - 1, {step}))",
                                 read="spark")
    if isinstance(node, exp.Sub):
        # date - date is a day count in DuckDB (an interval in Spark)
        left, right = node.this, node.expression
        if _is_date(left) and _is_date(right):
            return exp.DateDiff(this=left, expression=right, unit=exp.var("DAY"))
    return node


_STRFTIME_TO_JAVA = {"%Y": "yyyy", "%m": "MM", "%d": "dd", "%H": "HH", "%M": "mm", "%S": "ss"}
_DATE_COLUMNS = ("date", "_on", "start", "end", "supply_end", "observation_")


def _is_date(node: exp.Expression) -> bool:
    """A date-valued operand, recognised by name: a date cast, or a column named like a date."""
    if isinstance(node, exp.Paren):
        return _is_date(node.this)
    if isinstance(node, (exp.Cast, exp.TryCast)):
        return node.to.this == exp.DataType.Type.DATE
    if isinstance(node, exp.Column):
        name = node.name.lower()
        return any(token in name for token in _DATE_COLUMNS) and not name.endswith(("_days", "_id"))
    return False


def duckdb_to_spark(statement: exp.Expression) -> str:
    return statement.transform(_rewrite).sql(dialect="spark")


@dataclass
class DuckDBSQLOnSpark:
    """Runs DuckDB SQL on a SparkSession, shaped like the DuckDB connection the OMOP ingest expects."""

    spark: Any
    views: list[str] = field(default_factory=list)
    _last: Any = None

    def execute(self, sql: str, parameters=None) -> "DuckDBSQLOnSpark":
        if parameters:
            raise NotImplementedError("prepared parameters are not translated; inline them as literals")
        self._last = None
        for statement in sqlglot.parse(sql, read="duckdb"):
            if statement is None:
                continue
            if isinstance(statement, exp.Create) and statement.args.get("kind") in ("TABLE", "VIEW"):
                target = statement.this
                name = (target.this if isinstance(target, exp.Schema) else target).name
                frame = self.spark.sql(duckdb_to_spark(statement.expression))
                if statement.args.get("kind") == "TABLE":
                    frame = frame.localCheckpoint(eager=True)  # a table: computed once, lineage cut
                frame.createOrReplaceTempView(name)
                self.views.append(name)
            elif isinstance(statement, exp.Drop):
                self.spark.catalog.dropTempView(statement.this.name)
            elif isinstance(statement, (exp.Comment, exp.Transaction, exp.Commit, exp.Rollback)):
                continue
            else:
                self._last = self.spark.sql(duckdb_to_spark(statement))
        return self

    def fetchall(self) -> list[tuple]:
        return [tuple(row) for row in self._last.collect()] if self._last is not None else []

    def sql(self, query: str):
        """A Spark DataFrame (``.columns`` as in DuckDB's relation)."""
        return self.spark.sql(duckdb_to_spark(sqlglot.parse_one(query, read="duckdb")))

    def drop_views(self) -> None:
        for name in dict.fromkeys(self.views):
            with contextlib.suppress(Exception):
                self.spark.catalog.dropTempView(name)


# ---------------------------------------------------------------- reading the CDM


def export_duckdb_cdm(path: Path, folder: Path) -> Path:
    """A DuckDB CDM file's CDM tables as Parquet files in ``folder`` (one ``<table>.parquet`` each)."""
    import duckdb

    folder.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    try:
        relations = duck_omop._attach(con, Path(path), "_cdm")
        for name, relation in relations.items():
            target = folder / f"{name}.parquet"
            con.execute(f"copy (select * from {relation}) to {sql_literal(str(target))} (format parquet)")
    finally:
        con.close()
    return folder


def _read(spark, path: Path, fmt: str):
    if fmt == "parquet":
        return spark.read.parquet(str(path))
    delimiter = duck_omop.sniff_delimiter(path)
    reader = spark.read.option("header", True).option("inferSchema", False).option("sep", delimiter)
    if delimiter == "\t":
        reader = reader.option("quote", "")  # Athena vocabulary files are unquoted
    return reader.csv(str(path))


@dataclass
class SparkOmopLoad:
    tables: dict[str, str]  # contract table -> Spark view (raw_persons, ...)
    quarantine: str  # Spark view of the ingest quarantine rows (audit_quarantine's columns)
    ingredients: dict[str, int]
    concept_sets: dict[str, list[dict]]
    notes: list[str]
    rows: dict[str, tuple[int, int]]  # CDM table -> (rows loaded, rows quarantined)
    # CDM table read -> (source file, format, sha256), for audit_load as the DuckDB OMOP ingest writes it
    files: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    snapshot_id: str = ""  # omop:<sha256 of the CDM tables' sha256>:<mapping signature>, as on DuckDB


def load_omop(spark, source, config: Config, work_dir: Path | None = None, load_id: str = "spark-omop") -> dict[str, str]:
    """The OMOP CDM at ``source`` as the Spark views ``raw_persons``, ``raw_prescriptions``,
    ``raw_diagnoses``, ``raw_follow_ups`` (contract table -> view name)."""
    return load_omop_detailed(spark, source, config, work_dir, load_id).tables


def load_omop_detailed(spark, source, config: Config, work_dir: Path | None = None,
                       load_id: str = "spark-omop") -> SparkOmopLoad:
    source = Path(source)
    if not source.exists():
        raise ExtractError(f"OMOP CDM not found: {source}")
    if source.is_file():  # a DuckDB CDM: its tables exported to Parquet, then read by Spark
        folder = export_duckdb_cdm(source, Path(work_dir or tempfile.mkdtemp(prefix="benzo-cdm-")) / "cdm")
    else:
        folder = source
    files = duck_omop._table_files(folder)
    missing = [t for t in duck_omop.REQUIRED_TABLES if t not in files]
    if missing:
        raise ExtractError(
            f"{source}: CDM table{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing "
            f"(needed: {', '.join(duck_omop.REQUIRED_TABLES)}; a folder holds one <table>.csv or .parquet each)")
    con = DuckDBSQLOnSpark(spark)
    tables: list[duck_omop.CdmTable] = []
    read_files: dict[str, tuple[str, str, str]] = {}
    digest = sha256_of(source) if source.is_file() else None  # a DuckDB CDM: one sha256 for every table
    for name in duck_omop.CDM_COLUMNS:
        if name in files:
            path, fmt = files[name]
            read_files[name] = ((f"db:{name}", "duckdb", digest) if digest is not None
                                else (str(path.resolve()), fmt, sha256_of(path)))
            view = f"_omop_source_{name}"
            _read(spark, path, fmt).createOrReplaceTempView(view)
            con.views.append(view)
            label = path.name if source.is_dir() else f"{source.name}:{name}"
            tables.append(duck_omop.CdmTable(name, label, fmt, "", f'"{view}"'))
        else:
            tables.append(duck_omop.CdmTable(name, "", "", "", None))
    notes: list[str] = []
    for table in tables:
        duck_omop._create_typed_view(con, table)
        con.views.append(f"_omop_{table.name}")
        if table.note:
            notes.append(table.note)
    read = [t for t in tables if t.relation is not None]
    # the identifier gate, before anything is mapped
    spark_gate.refuse_cdm_identifiers(spark, {t.name: (t.source_file, t.relation.strip('"')) for t in read})

    ingredients = duck_omop._map_ingredients(con, config)
    missing = [d for d in (x.strip().lower() for x in config.drugs.ingredients) if d and d not in ingredients]
    if missing:
        notes.append(f"drugs.ingredients {', '.join(missing)}: not in this CDM's vocabulary; no prescriptions")
    concept_sets = duck_omop.load_concept_sets()
    resolved = {
        "dependence_conditions": duck_omop._resolve_condition_set(con, config, concept_sets["dependence_conditions"]),
        "follow_up_concepts": duck_omop._resolve_follow_up_set(con, concept_sets["follow_up_concepts"]),
    }
    snapshot = duck_omop.snapshot_signature(((name, entry[2]) for name, entry in read_files.items()), config)
    duck_omop.map_rows(con, concept_sets)
    duck_omop._write_raw_tables(con, load_id, snapshot)
    quarantine, rows = _quarantine(con, load_id, read)
    return SparkOmopLoad({name: f"raw_{name}" for name in RAW_TABLES}, quarantine, ingredients, resolved, notes, rows,
                         read_files, snapshot)


def _quarantine(con: DuckDBSQLOnSpark, load_id: str, read: list) -> tuple[str, dict[str, tuple[int, int]]]:
    """``omop_quarantine`` (audit_quarantine's columns, stage 'ingest') and, per CDM table read,
    (rows loaded, rows quarantined) -- the same row tables and rule ids as the DuckDB ingest."""
    lid = sql_literal(load_id)
    selects = []
    for table, (rows, id_column, row_column) in duck_omop._ROW_TABLES.items():
        selects.append(f"select distinct {lid} as load_id, 'ingest' as stage, {sql_literal(table)} as table_name, "
                       f"cast({id_column} as varchar) as record_id, cast({row_column} as bigint) as source_row, rule_id "
                       f"from {rows} where rule_id is not null")
    selects.append(f"select {lid}, 'ingest', cdm_table, cdm_table || ':' || record_id, cast(source_row as bigint), rule_id "
                   "from _omop_follow_up_rows where rule_id is not null")
    con.execute(f"create or replace temp table _omop_quarantine_rows as {' union all '.join(selects)}")
    rule_ids = [r for (r,) in con.execute("select distinct rule_id from _omop_quarantine_rows").fetchall()]
    reasons = " ".join(f"when rule_id = {sql_literal(r)} then {sql_literal(duck_omop._reason(r))}" for r in rule_ids)
    con.execute("create or replace temp table omop_quarantine as select *, "
                + (f"case {reasons} end" if reasons else "NULL::varchar") + " as reason from _omop_quarantine_rows")
    counts: dict[str, tuple[int, int]] = {}
    row_tables = {**{t: rows for t, (rows, _, _) in duck_omop._ROW_TABLES.items()}}
    for table in read:
        if table.name in row_tables:
            source = row_tables[table.name]
            if table.name == "drug_exposure":
                source = "(select distinct drug_exposure_id, rule_id, drug_concept_id from _omop_drug_rows)"
                loaded_sql = "count(distinct drug_exposure_id) filter (where rule_id is null)"
            else:
                loaded_sql = "count(*) filter (where rule_id is null)"
            query = f"select {loaded_sql}, count(*) filter (where rule_id is not null) from {source}"
        elif table.name in ("observation", "measurement"):
            query = ("select count(*) filter (where rule_id is null), count(*) filter (where rule_id is not null) "
                     f"from _omop_follow_up_rows where cdm_table = {sql_literal(table.name)}")
        else:
            query = f"select count(*), 0 from _omop_{table.name}"
        loaded, quarantined = con.execute(query).fetchall()[0]
        counts[table.name] = (int(loaded), int(quarantined))
    return "omop_quarantine", counts
