"""Benchmark: validation vs DuckDB's bare load of the same CSV files.

    python -m pipeline.validate.bench --prescriptions 1000000 --workdir /tmp/bench

Builds a synthetic extract with DuckDB ``range()`` (1 person per 10
dispensings, 1 diagnosis and 1 follow-up per 10 dispensings, a few planted bad
rows), COPYs it to CSV, then runs two child processes so each peak memory
(``ru_maxrss``) is its own:

- ``load``: ``create table raw_* as select ... from read_csv(...)`` -- the bare load;
- ``validate``: ``pipeline.validate.run`` on that warehouse (row rules + GX
  suites + JSON; Data Docs off unless ``--docs``).

Prints one JSON line per step and the ratio validate/load.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from pipeline.contract import TABLES

SEED_SQL = """
create or replace table persons as
select 'P' || i as person_id, 1940 + (i % 60) as birth_year, ['F', 'M', 'X', 'U'][1 + (i % 4)::int] as sex,
       'region' || (i % 7) as region, DATE '2010-01-01' + (i % 365)::int as observation_start,
       DATE '2023-12-31' - (i % 200)::int as observation_end,
       case when i % 50 = 0 then DATE '2023-12-31' - (i % 200)::int end as death_date
from range({persons}) t(i);
create or replace table prescriptions as
select 'R' || i as prescription_id, 'P' || (i // 10) as person_id,
       DATE '2012-01-01' + (i % 3000)::int as dispensed_on,
       ['clonazepam', 'diazepam', 'alprazolam', 'lorazepam'][1 + (i % 4)::int] as drug,
       [0.5, 1.0, 2.0][1 + (i % 3)::int] as strength_mg, 30.0 + (i % 60) as quantity,
       case when i % 100003 = 7 then 400 else 7 + (i % 60) end as days_supply,
       null::double as daily_dose_mg,
       ['anxiety', 'panic', 'seizure', 'insomnia', 'muscle_spasm', 'other', 'unknown'][1 + (i % 7)::int] as indication,
       'D' || (i % 5000) as prescriber_id, 'H' || (i % 3000) as pharmacy_id
from range({prescriptions}) t(i);
create or replace table diagnoses as
select 'G' || i as diagnosis_id, 'P' || i as person_id, DATE '2015-06-01' + (i % 1000)::int as recorded_on,
       case when i % 100003 = 5 then 'F13-2' else ['F13.2', 'F132', 'F41.1', 'G40'][1 + (i % 4)::int] end as code,
       ['ICD10', 'ICD10CM'][1 + (i % 2)::int] as code_system
from range({persons}) t(i);
create or replace table follow_ups as
select 'U' || i as follow_up_id, 'P' || i as person_id, DATE '2016-01-01' + (i % 900)::int as assessed_on,
       case when i % 100003 = 3 then 16 else (i % 16)::bigint end as sds_score,
       i % 3 = 0 as withdrawal_symptoms, i % 5 = 0 as dependence_assessed, i % 11 = 0 as misuse
from range({persons}) t(i);
"""


def build_csv(workdir: Path, prescriptions: int) -> Path:
    extract = workdir / "extract"
    extract.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute(SEED_SQL.format(persons=max(prescriptions // 10, 1), prescriptions=prescriptions))
    for table in TABLES:
        con.execute(f"copy {table} to '{extract / (table + '.csv')}' (header, delimiter ',')")
    con.close()
    return extract


def _load(extract: Path, warehouse: Path) -> dict:
    warehouse.unlink(missing_ok=True)
    started = time.perf_counter()
    con = duckdb.connect(str(warehouse))
    con.execute("SET enable_progress_bar = false")
    for name, table in TABLES.items():
        types = ", ".join(f"'{c.name}': '{c.duckdb_type}'" for c in table.columns)
        con.execute(
            f"create table raw_{name} as select *, row_number() over () as _source_row, 'bench' as _load_id "
            f"from read_csv('{extract / (name + '.csv')}', header = true, columns = {{{types}}})"
        )
    con.close()
    return {"seconds": time.perf_counter() - started}


def _validate(warehouse: Path, quality_dir: Path, docs: bool) -> dict:
    import great_expectations  # noqa: F401  (a fixed ~5 s per process; reported apart)

    from pipeline import validate
    from pipeline.config import load_config
    from pipeline.errors import ValidationFailed
    from pipeline.warehouse import connect

    import_done = time.perf_counter()
    con = connect(warehouse)
    con.execute("SET enable_progress_bar = false")
    config = load_config().replace(extract={"extract_date": "2024-06-30"})
    started = time.perf_counter()
    try:
        report = validate.run(con, config, quality_dir, warehouse, build_docs=docs)
        outcome = {"passed": True, "quarantined_rows": report.quarantined_rows, "laps": report.seconds,
                   "gx_errors": report.gx_errors}
    except ValidationFailed as error:
        outcome = {"passed": False, "message": str(error)}
    seconds = time.perf_counter() - started
    con.close()
    return {"seconds": seconds, "import_seconds": import_done - _START, **outcome}


_START = time.perf_counter()


def _child(step: str, workdir: Path, docs: bool, prescriptions: int) -> dict:
    if step == "build_csv":
        started = time.perf_counter()
        build_csv(workdir, prescriptions)
        result = {"seconds": time.perf_counter() - started, "prescriptions": prescriptions}
    elif step == "load":
        result = _load(workdir / "extract", workdir / "warehouse.duckdb")
    else:
        result = _validate(workdir / "warehouse.duckdb", workdir / "quality", docs)
    result["step"] = step
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prescriptions", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=Path("data/bench"))
    parser.add_argument("--docs", action="store_true", help="also build GX Data Docs")
    parser.add_argument("--step", choices=["build_csv", "load", "validate"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step:
        print(json.dumps(_child(args.step, args.workdir, args.docs, args.prescriptions), default=str))
        return {}
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = {}
    # each step in its own process: ru_maxrss is a per-process peak and survives exec,
    # so the parent stays small and never builds or loads anything itself
    for step in ("build_csv", "load", "validate"):
        command = [sys.executable, "-m", "pipeline.validate.bench", "--step", step, "--workdir", str(args.workdir),
                   "--prescriptions", str(args.prescriptions)]
        if args.docs:
            command.append("--docs")
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results[step] = json.loads(output.strip().splitlines()[-1])
        print(json.dumps(results[step]), flush=True)
    summary = {
        "prescriptions": args.prescriptions,
        "load_seconds": round(results["load"]["seconds"], 2),
        "validate_seconds": round(results["validate"]["seconds"], 2),
        "ratio": round(results["validate"]["seconds"] / results["load"]["seconds"], 2),
        "load_peak_rss_mb": round(results["load"]["peak_rss_mb"]),
        "validate_peak_rss_mb": round(results["validate"]["peak_rss_mb"]),
    }
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
