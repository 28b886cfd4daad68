"""Ingest a native extract (CSV/Parquet folder) into Spark tables with the DuckDB ingest's rules.

The typing and quarantine rules are the DuckDB ingest's own SQL fragments
(``pipeline.ingest.native._typed_expression`` / ``failure_checks``),
transpiled to Spark SQL: one rule set, two engines. The accounting is the
same: every data line of a file is either in ``raw_<table>`` or in
``audit_quarantine`` (stage ``ingest``) with a rule, read = loaded +
quarantined, and Spark's record count must equal the file's own line count
(one byte scan, done with the sha256) or the load stops naming the file.

Spark-specific: a line the CSV reader cannot split into the header's columns
is Spark's *malformed record* (quarantined as ``ingest.unreadable_line.malformed``);
invalid UTF-8 is read by Spark as U+FFFD, and such a row is quarantined as
``ingest.unreadable_line.invalid_unicode``. Row numbers (``_source_row``) are the
record's position in the file, numbered across Spark's partitions from their
sizes (no single-partition window).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.contract import TABLES, Table
from pipeline.errors import ExtractError
from pipeline.ingest.native import (
    INGEST_VERSION, MAX_TEXT_LENGTH, MAX_UNREADABLE_SHARE, TableLoad, IngestSummary, _check_columns, failure_checks,
    _reason, _typed_expression, find_table_files, header_columns, scan_file, sniff_delimiter, snapshot_id,
)
from pipeline.spark.tables import SparkTables
from pipeline.spark.transform import to_spark
from pipeline.warehouse import new_id, sql_literal

SPARK_TYPES = {"VARCHAR": "string", "BIGINT": "bigint", "DOUBLE": "double", "DATE": "date", "BOOLEAN": "boolean"}
QUARANTINE_COLUMNS = ("load_id", "stage", "table_name", "record_id", "source_row", "rule_id", "reason")
CORRUPT = "_corrupt_record"


def _spark_expression(duckdb_sql: str) -> str:
    """A DuckDB scalar expression as Spark SQL."""
    return to_spark(f"select {duckdb_sql}")[0].sql[len("SELECT "):]


def _dq(name: str) -> str:
    """A DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _read(spark: Any, path: Path, fmt: str) -> tuple[Any, list[str]]:
    """The file as a DataFrame of text columns (plus the malformed-record column for CSV), and its header."""
    from pyspark.sql.types import StringType, StructField, StructType

    if fmt == "parquet":
        frame = spark.read.parquet(str(path))
        return frame, list(frame.columns)
    delimiter = sniff_delimiter(path)
    columns = header_columns(path, delimiter)
    schema = StructType([StructField(f"_c{i}", StringType()) for i in range(len(columns))]
                        + [StructField(CORRUPT, StringType())])
    frame = (spark.read.option("header", "true").option("sep", delimiter).option("encoding", "UTF-8")
             .option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT)
             .option("multiLine", "false").option("escape", '"').schema(schema).csv(str(path)))
    renamed = frame.toDF(*columns, CORRUPT)
    return renamed, columns


def _numbered(spark: Any, frame: Any) -> Any:
    """``frame`` with ``_source_row``: the record's 1-based position in the file.

    Spark keeps a file's records in order within and across the partitions of one scan; each
    record's position = its partition's offset (records in the partitions before it) + its index.
    """
    from pyspark.sql import functions as F

    tagged = frame.withColumn("_partition", F.spark_partition_id()).withColumn(
        "_id", F.monotonically_increasing_id())
    sizes = sorted((row[0], row[1]) for row in tagged.groupBy("_partition").count().collect())
    offsets, total = [], 0
    for partition, count in sizes:
        offsets.append((partition, total))
        total += count
    offset_frame = spark.createDataFrame(offsets or [(0, 0)], "_partition int, _offset long")
    # monotonically_increasing_id = partition index << 33 | index within the partition
    return (tagged.join(F.broadcast(offset_frame), "_partition")
            .withColumn("_source_row", F.col("_offset") + F.expr("_id & 8589934591") + F.lit(1))
            .drop("_partition", "_id", "_offset"))


def _read_table(spark: Any, tables: SparkTables, table: Table, path: Path, fmt: str, load: TableLoad) -> str:
    """Parse one file into ``_ingest_readable_<table>`` (trimmed text, numbered); returns the name of a view
    of its values under the file's own column names (extra columns included) for the privacy gate."""
    try:
        frame, columns = _read(spark, path, fmt)
    except Exception as error:  # noqa: BLE001 - Spark's reader failing on the whole file: one line
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise ExtractError(f"{path.name}: cannot be read ({first})") from None
    mapping = _check_columns(table, path, columns)
    load.extra_columns = [c for c in columns if c.strip().lower() not in mapping]
    texts = {c.name: (f"nullif(trim(cast({_q(mapping[c.name])} as string)), '')" if c.name in mapping
                      else "cast(null as string)") for c in table.columns}
    corrupt = f"{_q(CORRUPT)} is not null" if fmt == "csv" else "false"
    unicode = " or ".join(f"instr(coalesce({_q(mapping[c.name])}, ''), '\ufffd') > 0" for c in table.columns
                          if c.name in mapping) or "false"
    selected = ", ".join([f"{expr} as {_q(name)}" for name, expr in texts.items()]
                         + [f"{corrupt} as _malformed", f"({unicode}) as _bad_unicode"]
                         + [f"{_q(c)} as {_q('_extra_' + c)}" for c in load.extra_columns])
    readable = _numbered(spark, frame)
    readable.createOrReplaceTempView("_ingest_source")
    staged = spark.sql(f"select {selected}, _source_row from _ingest_source")
    # each row's first failing typing rule (NULL: it types), computed in the same pass (one job writes both)
    staged.createOrReplaceTempView("_ingest_staged")
    tables.write(f"_ingest_readable_{table.name}", spark.sql(f"select *, {_first_failure(table)} as _rule "
                                                             "from _ingest_staged"))
    gate_columns = [f"{_q(name)} as {_q(mapping[name])}" for name in texts if name in mapping]
    gate_columns += [f"{_q('_extra_' + c)} as {_q(c)}" for c in load.extra_columns]
    spark.sql(f"create or replace temp view _ingest_gate_{table.name} as select {', '.join(gate_columns)} "
              f"from _ingest_readable_{table.name}")
    return f"_ingest_gate_{table.name}"


def _first_failure(table: Table) -> str:
    """Spark SQL: the first typing rule a row of ``_ingest_readable_<table>`` fails (the DuckDB ingest's
    ``failure_checks``, transpiled), NULL when it types."""
    checks = [("_malformed", "ingest.unreadable_line.malformed"), ("_bad_unicode", "ingest.unreadable_line.invalid_unicode")]
    checks += [(_spark_expression(cond), rule) for c in table.columns for cond, rule in failure_checks(c, _dq(c.name))]
    return "case " + " ".join(f"when {cond} then '{rule}'" for cond, rule in checks) + " end"


def _type_table(spark: Any, tables: SparkTables, table: Table, path: Path, load: TableLoad, load_id: str,
                line_count: int | None) -> Any:
    """Type ``_ingest_readable_<table>`` (its ``_rule`` computed on reading) into raw_<table>; returns the
    quarantine rows as a DataFrame."""
    typed = ", ".join(f"cast({_spark_expression(_typed_expression(c, _dq(c.name)))} as {SPARK_TYPES[c.duckdb_type]}) "
                      f"as {_q(c.name)}" for c in table.columns)
    tables.write(f"raw_{table.name}", spark.sql(
        f"select {typed}, _source_row, {sql_literal(load_id)} as _load_id "
        f"from _ingest_readable_{table.name} where _rule is null"))
    by_rule = {rule: int(n) for rule, n in spark.sql(
        f"select _rule, count(*) from _ingest_readable_{table.name} group by _rule").collect()}
    load.rows_loaded = by_rule.pop(None, 0)
    load.rows_quarantined = sum(by_rule.values())
    load.rows_read = load.rows_loaded + load.rows_quarantined
    if line_count is not None and line_count != load.rows_read:
        raise ExtractError(
            f"{path.name}: the file has {line_count} data lines but Spark read {load.rows_read} records: a quoted "
            "field runs over a line end (a stray \" ?); fix the quoting, or load it with the DuckDB engine, which "
            "names the line")
    if load.rows_read and load.rows_quarantined / load.rows_read > MAX_UNREADABLE_SHARE:
        top_rule, top_count = sorted(by_rule.items(), key=lambda item: (-item[1], item[0]))[0]
        raise ExtractError(
            f"{path.name}: {load.rows_quarantined} of {load.rows_read} rows unusable "
            f"(most common: {top_rule}, {top_count} rows); is this the right file, in UTF-8 with ISO dates?")
    reasons = {rule: _reason(table, rule) for rule in by_rule if not rule.startswith("ingest.unreadable_line")}
    reasons["ingest.unreadable_line.malformed"] = "line does not split into the header's columns"
    reasons["ingest.unreadable_line.invalid_unicode"] = "line is not valid UTF-8"
    reason_case = "case " + " ".join(f"when _rule = {sql_literal(r)} then {sql_literal(t)}" for r, t in reasons.items()) + " end"
    return spark.sql(
        f"select {sql_literal(load_id)} as load_id, 'ingest' as stage, {sql_literal(table.name)} as table_name, "
        f"left({_q(table.id_column)}, {MAX_TEXT_LENGTH}) as record_id, _source_row as source_row, _rule as rule_id, "
        f"{reason_case} as reason from _ingest_readable_{table.name} where _rule is not null")


def load_native(spark: Any, tables: SparkTables, source: Path, config: Config, privacy_gate=None) -> IngestSummary:
    """Load the extract in ``source`` into Spark tables ``raw_*`` and ``audit_quarantine``; the load's
    audit rows are in the summary (written to the driver's DuckDB audit_load by the caller).

    ``privacy_gate(spark, {table: view of its text values}, config)`` (``pipeline.spark.gate.check_tables``)
    judges every value of every column, extra columns included, before any raw table is written.
    """
    files = find_table_files(Path(source))
    load_id = new_id()
    loads, scans = [], {}
    for name, (path, fmt) in files.items():
        scans[name] = scan_file(path)
        loads.append(TableLoad(name, str(path.resolve()), fmt, scans[name].sha256))
    snapshot = snapshot_id("native", {load.table: load.sha256 for load in loads}, INGEST_VERSION)
    summary = IngestSummary(load_id, loads, snapshot)
    gate_views = {}
    for load in loads:
        load.snapshot_id = snapshot
        path, fmt = files[load.table]
        gate_views[load.table] = _read_table(spark, tables, TABLES[load.table], path, fmt, load)
    if privacy_gate is not None:  # every value judged before any raw table is replaced
        privacy_gate(spark, gate_views, config)
    quarantine = None
    for load in loads:
        path, fmt = files[load.table]
        lines = scans[load.table].data_lines if fmt == "csv" else None
        rows = _type_table(spark, tables, TABLES[load.table], path, load, load_id, lines)
        quarantine = rows if quarantine is None else quarantine.unionByName(rows)
    tables.write("audit_quarantine", quarantine.select(*QUARANTINE_COLUMNS))
    for name in files:
        for prefix in ("_ingest_gate_", "_ingest_readable_"):
            spark.catalog.dropTempView(prefix + name)
    for view in ("_ingest_source", "_ingest_staged"):
        spark.catalog.dropTempView(view)
    summary.loaded_at = dt.datetime.now()
    return summary
