"""The results store: ``results/results.duckdb``, every run's summarised result, appended.

What dashboards and BI tools connect to. It holds only what was published
(the summarised_result and settings of each run's exports, already through
disclosure control) and no person-level row; the person-level warehouse
(``data/warehouse.duckdb``) stays private.

Tables (every value text, as omopgenerics):

- ``summarised_result``: the 13 columns; ``result_id`` is unique across the
  store (a run's result ids are renumbered on append, as omopgenerics' ``bind``
  does), so the whole table is one valid summarised_result;
- ``settings``: one row per result_id (run_id, run_time, cdm_name, estimator,
  estimand, every analysis setting, the extract's sha256 per file). A setting
  first seen in a later run adds a column;
- ``runs``: one row per run: run_id (the key), run_time, cdm_name, first and
  last result_id, the extract's hashes, when it was appended.

Appending a run whose run_id is already stored changes nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import duckdb
import pandas as pd

from pipeline.errors import PipelineError
from pipeline.results.contract import COLUMNS

STORE_FILE = "results.duckdb"
# Columns that would mean person-level data reached the store.
_PERSON_LEVEL = {"person_id", "prescription_id", "diagnosis_id", "follow_up_id", "record_id", "birth_year",
                 "prescriber_id", "pharmacy_id"}
_RUNS_DDL = """
create table if not exists runs (
    run_id varchar primary key, run_time varchar, cdm_name varchar, first_result_id integer,
    last_result_id integer, result_rows bigint, extract_sha256 varchar, appended_at timestamp)"""


class StoreError(PipelineError):
    """The results store cannot be read or written."""


def store_path(results_dir: Path | str) -> Path:
    results_dir = Path(results_dir)
    return results_dir if results_dir.suffix == ".duckdb" else results_dir / STORE_FILE


def _connect(path: Path, read_only: bool, wait_seconds: float = 120.0) -> duckdb.DuckDBPyConnection:
    """Open the store; while another process holds its lock, retry for ``wait_seconds``."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as error:
            if "lock" not in str(error).lower() or time.monotonic() > deadline:
                raise StoreError(f"cannot open the results store {path}: {str(error).splitlines()[0]}") from None
            time.sleep(0.25)


def _check(rows: pd.DataFrame, settings: pd.DataFrame, where: str) -> None:
    if tuple(rows.columns) != COLUMNS:
        raise StoreError(f"{where}: summarised_result must have exactly the 13 columns {', '.join(COLUMNS)}; "
                         f"got {', '.join(map(str, rows.columns))}")
    personal = sorted(_PERSON_LEVEL & {c.lower() for c in [*rows.columns, *settings.columns]})
    if personal:
        raise StoreError(f"{where}: refusing person-level column(s) {', '.join(personal)}")
    for column in ("result_id", "result_type", "run_id", "run_time", "cdm_name"):
        if column not in settings.columns:
            raise StoreError(f"{where}: settings lacks column '{column}'")
    runs = settings["run_id"].dropna().unique()
    if len(runs) != 1:
        raise StoreError(f"{where}: settings must describe exactly one run (found {len(runs)} run_id values)")
    unknown = set(rows["result_id"].dropna()) - set(settings["result_id"].dropna())
    if unknown:
        raise StoreError(f"{where}: {len(unknown)} result_id value(s) in summarised_result have no settings row")
    whole = rows["result_id"].astype("string").str.fullmatch(r"\d+").fillna(False).astype(bool)
    if not whole.all():
        raise StoreError(f"{where}: summarised_result column result_id must hold whole numbers "
                         f"({int((~whole).sum())} rows do not)")
    from pipeline.results.export import small_count_findings

    k = pd.to_numeric(settings.get("min_cell_count"), errors="coerce").dropna() if "min_cell_count" in settings else []
    if not len(k):
        raise StoreError(f"{where}: settings lacks min_cell_count; only disclosure-controlled results are stored")
    findings = small_count_findings(rows, int(k.max()))
    if findings:
        raise StoreError(f"{where}: refusing small counts: " + "; ".join(findings))


def append(rows: pd.DataFrame, settings: pd.DataFrame, results_dir: Path | str, where: str = "run") -> dict:
    """Append one run; return {run_id, appended (False if it was already stored), first/last result_id}."""
    if rows.empty and settings.empty:  # nothing was estimated: no run to keep
        return {"run_id": None, "appended": False, "first_result_id": None, "last_result_id": None}
    _check(rows, settings, where)
    path = store_path(results_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    run_id = str(settings["run_id"].dropna().iloc[0])
    con = _connect(path, read_only=False)
    try:
        con.execute("begin transaction")
        con.execute(_RUNS_DDL)
        con.execute("create table if not exists summarised_result ("
                    + ", ".join(f"{c} varchar" for c in COLUMNS) + ")")
        con.execute("create table if not exists settings (result_id varchar, result_type varchar, run_id varchar)")
        stored = con.execute("select first_result_id, last_result_id from runs where run_id = ?", [run_id]).fetchall()
        if stored:
            con.execute("rollback")
            return {"run_id": run_id, "appended": False, "first_result_id": stored[0][0],
                    "last_result_id": stored[0][1]}
        offset = con.execute("select coalesce(max(try_cast(result_id as integer)), 0) from settings").fetchall()[0][0]
        local = sorted({int(r) for r in settings["result_id"].dropna()})
        new_id = {str(r): str(offset + i + 1) for i, r in enumerate(local)}
        rows = rows.assign(result_id=rows["result_id"].map(new_id)).astype("object")
        settings = settings.assign(result_id=settings["result_id"].map(new_id)).astype("object")
        existing = {name for (name,) in con.execute(
            "select column_name from information_schema.columns where table_name = 'settings'").fetchall()}
        for column in settings.columns:
            if column not in existing:
                con.execute(f'alter table settings add column "{column}" varchar')
        con.register("_rows", rows.where(rows.notna(), None))
        con.register("_settings", settings.where(settings.notna(), None))
        con.execute("insert into summarised_result by name select * from _rows")
        con.execute("insert into settings by name select * from _settings")
        hashes = {c.removeprefix("extract_sha256_"): str(settings[c].iloc[0])
                  for c in settings.columns if c.startswith("extract_sha256_")}
        first, last = offset + 1, offset + len(local)
        con.execute("insert into runs values (?, ?, ?, ?, ?, ?, ?, ?)", [
            run_id, str(settings["run_time"].iloc[0]), str(settings["cdm_name"].iloc[0]), first, last, len(rows),
            json.dumps(hashes, sort_keys=True), dt.datetime.now()])
        con.execute("""create or replace view results as
            select r.*, s.run_id, s.run_time, s.result_type, s.estimator, s.estimand
            from summarised_result r join settings s using (result_id)""")
        con.execute("commit")
        con.unregister("_rows")
        con.unregister("_settings")
    except duckdb.Error as error:
        try:
            con.execute("rollback")
        except duckdb.Error:
            pass
        raise StoreError(f"cannot append run {run_id} to {path}: {str(error).splitlines()[0]}") from None
    finally:
        con.close()
    return {"run_id": run_id, "appended": True, "first_result_id": first, "last_result_id": last}


def append_exports(exports_dir: Path | str, results_dir: Path | str) -> dict:
    """Append the run published in ``exports_dir`` (its summarised_result.csv and settings.csv)."""
    from pipeline.results.export import read_export

    exports_dir = Path(exports_dir)
    for name in ("summarised_result.csv", "settings.csv"):
        if not (exports_dir / name).is_file():
            raise StoreError(f"{exports_dir / name} not found: publish first (python -m pipeline run)")
    rows, settings = read_export(exports_dir)
    return append(rows, settings, results_dir, where=str(exports_dir))


def read(results_dir: Path | str) -> dict[str, pd.DataFrame]:
    """Every table of the store as text frames: runs, settings, summarised_result (read-only, then closed)."""
    path = store_path(results_dir)
    if not path.is_file():
        raise StoreError(f"no results store at {path}: run the pipeline first (make), which appends each run")
    con = _connect(path, read_only=True)
    try:
        tables = {name: con.execute(f"select * from {name}").df()
                  for name in ("runs", "settings", "summarised_result")}
    except duckdb.Error as error:
        raise StoreError(f"cannot read the results store {path}: {str(error).splitlines()[0]}") from None
    finally:
        con.close()
    tables["runs"] = tables["runs"].sort_values(["run_time", "run_id"]).reset_index(drop=True)
    return tables
