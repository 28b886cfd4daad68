"""The pipeline on Apache Spark (local[2]) against DuckDB: the same analysis_person row for row and the
same headline.json to 1e-12 on the demo; DuckDB-only SQL constructs behaving the same once transpiled;
the Spark ingest keeping the DuckDB ingest's accounting on a messy file.

Registration (tests/spark_plugin.py): deselected with one header line when pyspark or Java is missing,
failing instead under BENZO_REQUIRE_SPARK=1 (CI). One Spark session for the whole test session.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from pipeline.config import load_config

pytestmark = pytest.mark.spark


# --------------------------------------------------------------------------- constructs, both engines

CONSTRUCTS = {
    # arg_min_null keeps a NULL value at the least key (min_by on Spark)
    "arg_min_null": ("select g, arg_min_null(v, k) as first_v, arg_max_null(v, k) as last_v from "
                     "(values (1, 1, NULL), (1, 2, 'b'), (2, 5, 'c'), (2, 3, 'a')) t(g, k, v) group by g"),
    # date - date is a day count (DATEDIFF on Spark), found through a CTE by the inferred types
    "date_difference": ("with d as (select cast(a as date) as a, cast(b as date) as b from "
                        "(values ('2020-01-01', '2020-03-01'), ('2021-12-31', '2021-01-01')) t(a, b)) "
                        "select b - a as days, a + 30 as later, b - 1 as earlier from d"),
    # division by zero is NULL in DuckDB
    "division_by_zero": "select x / y as ratio from (values (1.0, 0.0), (3.0, 2.0), (5.0, NULL)) t(x, y)",
    # ASOF join: each value in the band whose lower bound is the greatest <= it
    "asof_join": ("with v as (select * from (values (0), (13), (14), (100), (400)) t(days)), "
                  "b as (select * from (values (0, '<14'), (14, '14-27'), (28, '28+')) t(lower_days, band)) "
                  "select v.days, b.band from v asof left join b on v.days >= b.lower_days"),
    # count(distinct) over a RANGE window of days; lag over a named window with a frame
    "windows": ("with r as (select person, cast(d as date) as d, who from (values ('p', '2020-01-01', 'x'), "
                "('p', '2020-01-10', 'y'), ('p', '2020-03-01', 'x'), ('p', '2020-03-02', NULL), "
                "('q', '2020-01-01', 'z')) t(person, d, who)) "
                "select person, d, count(distinct who) over recent as whos, lag(d) over seq as previous "
                "from r window recent as (partition by person order by d range between to_days(30 - 1) preceding "
                "and current row), seq as (partition by person order by d rows between unbounded preceding "
                "and current row)"),
    # isfinite and the typing rules of the ingest
    "isfinite": "select isfinite(try_cast(x as double)) as finite from (values ('1.5'), ('inf'), ('nan'), (NULL)) t(x)",
}


@pytest.mark.parametrize("name", sorted(CONSTRUCTS))
def test_construct_gives_duckdbs_rows_on_spark(spark, name):
    from pipeline.spark.transform import spark_schema, to_spark

    sql = CONSTRUCTS[name]
    expected = sorted(duckdb.connect().execute(sql).fetchall(), key=repr)
    (statement,) = to_spark(sql, columns_of=lambda q: spark.sql(q).columns,
                            schema_of=lambda names: spark_schema(spark, names))
    got = sorted((tuple(row) for row in spark.sql(statement.sql).collect()), key=repr)
    assert got == expected, statement.sql


def test_star_modifiers_expand_to_the_relations_columns(spark):
    from pipeline.spark.transform import to_spark

    spark.sql("create or replace temp view _t_star as select 1 as a, ' B ' as b, 3 as c")
    sql = "with k as (select * replace (trim(b) as b) from _t_star) select k.* exclude (c) from k"
    (statement,) = to_spark(sql, columns_of=lambda q: spark.sql(q).columns)
    assert [tuple(r) for r in spark.sql(statement.sql).collect()] == [(1, "B")]


# --------------------------------------------------------------------------- ingest accounting on a messy file

MESSY_PRESCRIPTIONS = (
    "prescription_id,person_id,dispensed_on,drug,strength_mg,quantity,days_supply,daily_dose_mg,indication\n"
    "RX1,P1,2020-01-01,clonazepam,0.5,60,30,,anxiety\n"
    "RX2,P1,03/02/2020,clonazepam,0.5,60,30,,anxiety\n"          # not an ISO date
    "RX3,P1,2020-02-01,clonazepam,inf,60,30,,anxiety\n"          # not finite
    "RX4,P1,2020-03-01,clonazepam,0.5,60,30.5,,anxiety\n"        # not an integer
    "RX5,,2020-04-01,clonazepam,0.5,60,30,,anxiety\n"            # required value missing
    "RX6,P1,2020-05-01,clonazepam,0.5,60,30,,anxiety,extra\n"    # one field too many
    "RX7,P1,2020-06-01,clonazepam,0.5,60,30,,anxiety\n"
    + "".join(f"RX{i},P1,2020-07-{i:02d},clonazepam,0.5,60,30,,anxiety\n" for i in range(10, 16))
)


def test_spark_ingest_accounts_for_every_line_as_duckdb_does(spark, tmp_path):
    from pipeline.demo.generator import generate
    from pipeline.ingest.native import load_native as duckdb_load
    from pipeline.spark.ingest import load_native as spark_load
    from pipeline.spark.tables import SparkTables

    cfg = load_config(overrides=["demo.persons=200"])
    source = tmp_path / "extract"
    generate(source, persons=200, seed=1, config=cfg, fmt="csv")
    (source / "prescriptions.csv").write_text(MESSY_PRESCRIPTIONS, encoding="utf-8")
    con = duckdb.connect()
    expected = {t.table: t for t in duckdb_load(con, source, cfg).tables}
    tables = SparkTables(spark, tmp_path / "spark-tables")
    got = {t.table: t for t in spark_load(spark, tables, source, cfg).tables}
    for name, load in expected.items():
        assert (got[name].rows_read, got[name].rows_loaded, got[name].rows_quarantined) == (
            load.rows_read, load.rows_loaded, load.rows_quarantined), name
    rules = lambda rows: sorted(r for r in rows if not r[1].startswith("ingest.unreadable_line"))  # noqa: E731
    duck_rules = rules(con.execute("select record_id, rule_id from audit_quarantine where table_name = "
                                   "'prescriptions'").fetchall())
    spark_rows = spark.sql("select record_id, rule_id, source_row from audit_quarantine "
                           "where table_name = 'prescriptions'").collect()
    assert rules([(r[0], r[1]) for r in spark_rows]) == duck_rules
    assert {r[2] for r in spark_rows} == {2, 3, 4, 5, 6}  # the file's data rows, numbered as DuckDB does
    assert [r[0] for r in spark.sql("select prescription_id from raw_prescriptions order by 1").collect()] == ["RX1", *(f"RX{i}" for i in range(10, 16)), "RX7"]


# --------------------------------------------------------------------------- the demo, both engines


@pytest.fixture(scope="module")
def demo_runs(spark_demo):
    """The demo run by DuckDB and by Spark (tests/spark_plugin.py: once per test session)."""
    return spark_demo


def test_analysis_person_equal_row_for_row(spark, demo_runs):
    con = demo_runs["duckdb"]
    spark_rows = spark.table("analysis_person").toArrow()
    columns = [c[0] for c in con.execute("select * from analysis_person limit 0").description]
    assert list(spark_rows.column_names) == columns
    con.register("_spark_analysis_person", spark_rows)
    listed = ", ".join(f'"{c}"' for c in columns)
    total = con.execute("select count(*) from analysis_person").fetchall()[0][0]
    assert spark_rows.num_rows == total > 10_000
    for left, right in (("analysis_person", "_spark_analysis_person"), ("_spark_analysis_person", "analysis_person")):
        differ = con.execute(f"select count(*) from (select {listed} from {left} except all select {listed} from {right})")
        assert differ.fetchall()[0][0] == 0


def _assert_close(expected, got, path="headline.json"):
    if isinstance(expected, dict):
        assert sorted(expected) == sorted(got), path
        for key in expected:
            _assert_close(expected[key], got[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert len(expected) == len(got), path
        for i, (e, g) in enumerate(zip(expected, got)):
            _assert_close(e, g, f"{path}[{i}]")
    elif isinstance(expected, float) and not isinstance(expected, bool):
        assert math.isclose(expected, got, rel_tol=0, abs_tol=1e-12), path
    else:
        assert expected == got, path


def test_headline_json_equal_to_1e_12(demo_runs):
    root = demo_runs["root"]
    expected = json.loads((root / "duckdb" / "reports" / "exports" / "headline.json").read_text())
    got = json.loads((root / "spark" / "reports" / "exports" / "headline.json").read_text())
    assert expected["config"].pop("engine")["name"] == "duckdb"
    assert got["config"].pop("engine")["name"] == "spark"
    _assert_close(expected, got)
    _assert_close(demo_runs["duck_result"]["headline_json"]["headline"], demo_runs["spark_result"]["headline_json"]["headline"])


def test_published_estimates_equal_sensitivity_analyses_included(demo_runs):
    """Every released estimate of the two runs, the sensitivity stage's one pattern query included
    (it once failed on Spark only: a DuckDB-only CTE hint and a date difference inside a lateral
    subquery), is the same published number."""
    root = demo_runs["root"]
    expected = pd.read_csv(root / "duckdb" / "reports" / "exports" / "estimates.csv", dtype=str, keep_default_na=False)
    got = pd.read_csv(root / "spark" / "reports" / "exports" / "estimates.csv", dtype=str, keep_default_na=False)
    assert (expected["analysis"] == "sensitivity").sum() > 10
    pd.testing.assert_frame_equal(expected, got)


def test_only_aggregates_reach_the_driver(demo_runs):
    """The driver's warehouse holds the raw tables, analysis_person and the transform's other tables by
    their schema only (zero rows); the estimate's inputs came from Spark."""
    # the run's own connection is still open in this process: the same configuration (not read-only)
    driver = duckdb.connect(str(demo_runs["spark_warehouse"]))
    try:
        held = {r[0] for r in driver.execute("select table_name from information_schema.tables").fetchall()}
        person_level = {"raw_persons", "raw_prescriptions", "raw_diagnoses", "raw_follow_ups", "analysis_person",
                        "stg_persons", "stg_prescriptions", "episodes", "cohort", "outcomes"}
        assert person_level <= held
        for table in sorted(person_level):
            assert driver.execute(f"select count(*) from {table}").fetchall()[0][0] == 0, table
        assert driver.execute("select count(*) from estimates").fetchall()[0][0] > 100
        # the validation's verdicts and quarantine stayed on Spark too (record ids name persons)
        assert driver.execute("select count(*) from audit_quarantine").fetchall()[0][0] == 0
    finally:
        driver.close()
    assert demo_runs["spark_result"]["spark_queries"] >= 5


def test_bench_measures_engine_spark_as_one_run(monkeypatch):
    """`make bench ENGINE=spark`: the single-stage commands take no --engine, `run` does, so the bench
    measures `run --engine spark` as its one stage (bench/run.py) and reads the run's own step times."""
    from bench import run as bench_run

    helps = {(): "│ ingest  a\n│ validate  b\n│ run  all", ("ingest",): "--source --warehouse --set",
             ("validate",): "--warehouse --set", ("run",): "--source --warehouse --reports --set --engine"}
    monkeypatch.setattr(bench_run, "_help", lambda python, *args: helps[args])
    cli = bench_run.PipelineCli("py")
    assert cli.stages == ["ingest", "validate"] and not cli.engine_supported()
    assert cli.use_whole_run() and cli.stages == ["run"]
    assert cli.command("run", Path("x"), Path("w.duckdb"), Path("r"), ["a=1"], "spark") == [
        "py", "-m", "pipeline", "run", "--warehouse", "w.duckdb", "--engine", "spark", "--source", "x",
        "--reports", "r", "--set", "a=1"]
    assert bench_run.run_steps("done validate on Spark (44.4 s)\n  10 rows\ndone transform on\nSpark (5 s)") == [
        {"step": "validate on Spark", "seconds": 44.4}, {"step": "transform on Spark", "seconds": 5.0}]


def _pytest_without_java(tmp_path, *args, require=False):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("JAVA_HOME", "BENZO_REQUIRE_SPARK", "PYTEST_ADDOPTS")}
    env["PATH"] = str(tmp_path)  # no java on it
    if require:
        env["BENZO_REQUIRE_SPARK"] = "1"
    root = Path(__file__).resolve().parents[1]
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_without_java_the_spark_tests_are_not_collected_unless_required(tmp_path):
    """tests/spark_plugin.py: no Java -> the Spark tests are not collected, one header line says why;
    with BENZO_REQUIRE_SPARK=1 (CI) they run and fail -- never a skip."""
    node = "tests/test_spark.py::test_star_modifiers_expand_to_the_relations_columns"
    listed = _pytest_without_java(tmp_path, "--co", "-v", "tests/test_spark.py")  # -v: the header is shown
    assert "spark: no Java" in listed.stdout and "Spark tests deselected" in listed.stdout
    assert listed.returncode == 5 and "test_star_modifiers" not in listed.stdout  # nothing collected
    required = _pytest_without_java(tmp_path, "-q", node, require=True)
    assert required.returncode == 1, required.stdout[-2000:]
    assert f"ERROR {node}" in required.stdout and "needs Java 17" in required.stdout
    assert "skip" not in required.stdout.lower()
