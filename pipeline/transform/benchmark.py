"""Time the transform on a synthetic warehouse built in DuckDB with ``range()``.

    .venv/bin/python -m pipeline.transform.benchmark --dispensings 10000000 --threads 2

Deterministic (no random generator: every value is a hash-free arithmetic
function of the row number). 20 dispensings per person; about 80% clonazepam,
the rest diazepam / alprazolam; supply lengths, gaps and early refills vary so
episodes split and merge. Not a realistic extract: a load test only.
"""

from __future__ import annotations

import argparse
import time

import duckdb

from pipeline import transform
from pipeline.config import Config, load_config
from pipeline.warehouse import connect, ensure_audit_tables

DISPENSINGS_PER_PERSON = 20

SYNTHETIC_SQL = """
create or replace table raw_persons as
select
    'P' || i as person_id,
    (1930 + i % 75)::bigint as birth_year,
    case i % 3 when 0 then 'F' when 1 then 'M' else 'X' end as sex,
    'region' || (i % 7) as region,
    date '2015-01-01' + (i % 700)::integer as observation_start,
    date '2025-06-30' - (i % 400)::integer as observation_end,
    case when i % 50 = 0 then date '2024-06-30' end as death_date,
    i + 1 as _source_row,
    'bench' as _load_id
from range({persons}) as t(i);

create or replace table raw_prescriptions as
with rows as (
    select i, i // {per_person} as person, i % {per_person} as seq from range({dispensings}) as t(i)
)
select
    'RX' || i as prescription_id,
    'P' || person as person_id,
    -- person-specific start in 2017..2018, fills every 12..48 days (gaps and early refills)
    date '2017-01-01' + (person % 600)::integer + (seq * (12 + (person % 37)))::integer
        + (case when seq > 10 and person % 5 = 0 then 90 else 0 end)::integer as dispensed_on,
    case when i % 10 < 8 then 'clonazepam' when i % 10 = 8 then 'diazepam' else 'alprazolam' end as drug,
    case when i % 10 < 8 then 0.5 when i % 10 = 8 then 5.0 else 0.25 end as strength_mg,
    (30 + (i % 4) * 15)::double as quantity,
    (14 + (i % 3) * 8)::bigint as days_supply,
    case when i % 4 = 0 then 1.0 + (seq % 3) * 0.5 end as daily_dose_mg,
    'anxiety' as indication,
    'D' || (person * 3 + i % 3) as prescriber_id,
    'PH' || (person * 2 + i % 2) as pharmacy_id,
    i + 1 as _source_row,
    'bench' as _load_id
from rows;

create or replace table raw_diagnoses as
select
    'DX' || i as diagnosis_id,
    'P' || (i * 3) as person_id,
    date '2017-06-01' + (i % 900)::integer as recorded_on,
    case i % 4 when 0 then 'F13.20' when 1 then 'F132' when 2 then 'F41.1' else 'F13.10' end as code,
    case when i % 2 = 0 then 'ICD10CM' else 'ICD10' end as code_system,
    i + 1 as _source_row,
    'bench' as _load_id
from range({persons} // 3) as t(i);

create or replace table raw_follow_ups as
select
    'FU' || i as follow_up_id,
    'P' || (i * 2) as person_id,
    date '2017-03-01' + (i % 900)::integer as assessed_on,
    (i % 16)::bigint as sds_score,
    i % 5 = 0 as withdrawal_symptoms,
    i % 7 = 0 as dependence_assessed,
    i % 11 = 0 as misuse,
    i + 1 as _source_row,
    'bench' as _load_id
from range({persons} // 2) as t(i);
"""


def build_synthetic_raw(con: duckdb.DuckDBPyConnection, dispensings: int) -> None:
    """raw_* tables with ``dispensings`` prescription rows (20 per person)."""
    persons = max(1, dispensings // DISPENSINGS_PER_PERSON)
    con.execute(
        SYNTHETIC_SQL.format(persons=persons, dispensings=dispensings, per_person=DISPENSINGS_PER_PERSON)
    )
    ensure_audit_tables(con)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dispensings", type=int, default=10_000_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--database", default=":memory:")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="section.key=value")
    args = parser.parse_args(argv)
    config: Config = load_config(overrides=args.overrides)
    con = connect(args.database)
    con.execute(f"set threads = {int(args.threads)}")
    started = time.perf_counter()
    build_synthetic_raw(con, args.dispensings)
    built = time.perf_counter()
    summary = transform.run(con, config)
    finished = time.perf_counter()
    print(f"synthetic raw tables ({args.dispensings:,} dispensings): {built - started:.1f} s")
    print(f"transform.run, {args.threads} threads: {finished - built:.1f} s")
    for name, count in summary.items():
        print(f"  {name}: {count:,}")


if __name__ == "__main__":
    main()
