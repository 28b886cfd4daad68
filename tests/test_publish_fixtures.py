"""Shared fixtures for the publish tests: a warehouse holding REAL estimator output.

``real_run()`` runs the pipeline once per test session on a small demo extract
(``python -m pipeline demo`` then ``run``, as a user would) and keeps its
warehouse and reports; ``estimates_frame()`` is that run's ``estimates`` table,
every column as the estimate stage wrote it. The publish tests build on these
rows, never on rows written by hand in the shape one hopes production has.
``build_warehouse`` adds the tables around them (attrition, load and
validation audits) with a few cells that must be suppressed (an exclusion of 4,
a validation rule failing on 3 rows).
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb
import pandas as pd

from pipeline.config import PROJECT_ROOT
from pipeline.estimate.columns import select_list
from pipeline.warehouse import ensure_audit_tables

SEED = 20261122
PERSONS = 4000  # small enough for ~30 s; large enough that most cells are published and some are not


def _cli(*args: str) -> None:
    env = {**os.environ, "GX_ANALYTICS_ENABLED": "false"}
    result = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=PROJECT_ROOT, capture_output=True,
                            text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]


@functools.cache
def real_run() -> dict[str, Path]:
    """One real pipeline run on a demo extract of ``PERSONS`` (seed ``SEED``), shared by the session:
    ``{"root", "extract", "warehouse", "reports"}``."""
    root = Path(tempfile.mkdtemp(prefix="benzo-real-run-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    print(f"real run: demo extract of {PERSONS} persons, seed {SEED}, in {root}")
    _cli("demo", "--out", str(root / "extract"), "--persons", str(PERSONS), "--seed", str(SEED))
    _cli("run", "--source", str(root / "extract"), "--warehouse", str(root / "warehouse.duckdb"),
         "--reports", str(root / "reports"))
    return {"root": root, "extract": root / "extract", "warehouse": root / "warehouse.duckdb",
            "reports": root / "reports"}


@functools.cache
def _real_estimates() -> pd.DataFrame:
    con = duckdb.connect(str(real_run()["warehouse"]), read_only=True)
    try:
        return con.execute("select * from estimates").df()
    finally:
        con.close()


def estimates_frame() -> pd.DataFrame:
    """The real run's ``estimates`` table (a copy: tests may filter or alter it)."""
    return _real_estimates().copy()


ATTRITION = [
    (1, "first clonazepam episode in the extract", 14880, 0, 14880),
    (2, "aged 18 or over at the start", 14880, 612, 14268),
    (3, "at least 365 days of prior observation", 14268, 3190, 11078),
    (4, "no benzodiazepine dispensing in the prior 365 days", 11078, 1766, 9312),
]


def build_warehouse(con: duckdb.DuckDBPyConnection, estimates: pd.DataFrame | None = None,
                    attrition: list[tuple] | None = None) -> duckdb.DuckDBPyConnection:
    """Write the fixture tables into ``con`` (a fresh in-memory warehouse): the real run's estimates
    (or ``estimates``, e.g. a filtered copy of them) and the audit and attrition tables."""
    ensure_audit_tables(con)
    estimates = estimates_frame() if estimates is None else estimates
    con.register("estimates_fixture", estimates)
    con.execute(f"create or replace table estimates as select {select_list()} from estimates_fixture")
    con.unregister("estimates_fixture")
    con.execute("create or replace table cohort_attrition (step integer, reason varchar, persons_before bigint, "
                "excluded bigint, persons_after bigint)")
    con.executemany("insert into cohort_attrition values (?, ?, ?, ?, ?)", attrition or ATTRITION)
    for table, rows_read, quarantined in (("persons", 20000, 0), ("prescriptions", 183455, 28),
                                          ("diagnoses", 40211, 3), ("follow_ups", 61280, 0)):
        con.execute("insert into audit_load (load_id, table_name, source_file, file_format, sha256, rows_read, rows_loaded, rows_quarantined, loaded_at) values ('L1', ?, ?, 'csv', ?, ?, ?, ?, timestamp '2026-11-22 03:00:00')",
                    [table, f"/data/demo/{table}.csv", f"{hash(table) & 0xFFFFFFFF:064x}", rows_read,
                     rows_read - quarantined, quarantined])
    checks = [
        ("persons.sex.in_set", "persons", "sex", "conformance", "error", "pass", 0, 20000, "quarantine"),
        ("persons.birth_year.range", "persons", "birth_year", "plausibility", "error", "pass", 0, 20000, "quarantine"),
        ("prescriptions.days_supply.range", "prescriptions", "days_supply", "plausibility", "error", "fail", 25,
         183455, "quarantine"),
        ("prescriptions.daily_dose.max", "prescriptions", "daily_dose_mg", "plausibility", "warning", "fail", 140,
         183455, "report"),
        ("diagnoses.code.format", "diagnoses", "code", "conformance", "error", "fail", 3, 40211, "quarantine"),
        ("follow_ups.sds_score.range", "follow_ups", "sds_score", "plausibility", "error", "pass", 0, 61280,
         "quarantine"),
        ("follow_ups.indication.completeness", "follow_ups", "misuse", "completeness", "warning", "pass", 0, 61280,
         "report"),
    ]
    for check in checks:
        con.execute("insert into audit_validation values ('V1', ?, 'suite', ?, ?, ?, ?, 0, ?, ?, ?, ?, 'x', ?, "
                    "timestamp '2026-11-22 03:01:00')",
                    [check[0], check[1], check[2], check[3], check[4], check[5], check[6], check[7],
                     check[6] / check[7], check[8]])
    quarantine = ([("ingest", "prescriptions", f"P{i}", 100 + i, "days_supply.integer", "days_supply 'abc'")
                   for i in range(3)]
                  + [("validate", "prescriptions", f"Q{i}", 500 + i, "prescriptions.days_supply.range",
                      "days_supply out of 1..365") for i in range(25)]
                  + [("validate", "diagnoses", f"D{i}", 900 + i, "diagnoses.code.format", "code not ICD-10")
                     for i in range(3)])
    con.executemany("insert into audit_quarantine values ('L1', ?, ?, ?, ?, ?, ?)", quarantine)
    return con


def sample_manifest() -> dict:
    return {
        "run_id": "fixture-run",
        "created_at": "2026-11-22T03:05:00+00:00",
        "inputs": [{"table_name": t, "source_file": f"{t}.csv", "sha256": f"{i:064x}", "rows_read": r}
                   for i, (t, r) in enumerate((("persons", 20000), ("prescriptions", 183455)))],
        "packages": {"duckdb": "2.0.0", "pandas": "3.1.1", "plotly": "7.1.0"},
    }
