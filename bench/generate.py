"""The benchmark's extract: a contract-shaped native CSV extract of any size, streamed to disk.

``write_extract(out, prescriptions, seed)`` writes ``persons.csv``, ``prescriptions.csv``,
``diagnoses.csv`` and ``follow_ups.csv`` (the columns of ``pipeline/contract.py``) with about
``prescriptions`` dispensing rows (5 per person on average), chunk by chunk: DuckDB
computes each chunk of persons from ``range()`` and writes it with ``COPY``, and the chunk
is appended to the table's file. No table is ever held in memory, so 100M prescriptions
(about 11 GB of CSV) are written in the same few hundred MB as 1M.

Deterministic: every value is a function of (person number, field number, seed) through
DuckDB's ``hash()``, so the same seed, size and DuckDB version give byte-identical files
(the chunk size does not change them). Allowed values (sex, indication, code system) come
from ``pipeline/contract.py``, drugs from the settings' equivalence table and outcome
codes from the pipeline's concept set; nothing is defined here a second time.

Shape, chosen so every stage does the work a real extract asks of it:

- persons: 2% minors (excluded by the cohort), 20% leave observation before the extract
  date, 2% die at the end of observation; 10% start treatment less than a year after
  observation starts (not new users: excluded by the washout);
- prescriptions: 1 to 9 dispensings per person, 85% of persons on clonazepam (the others
  on other benzodiazepines of the settings), supplies of 14/28/30/56 days with gaps from 5
  days early (early refills) to 19 days late, and for a quarter of persons one 120-day break
  that splits the treatment into two episodes; 5% see many prescribers and pharmacies;
  one row in 200,003 has ``days_supply = 400`` (a planted bad row: quarantined);
- diagnoses: 0 to 2 per person; dependence codes (from the concept set) for part of the
  dependent persons, misuse codes, background codes otherwise;
- follow_ups: ascertainment grows with treatment length; dependent persons score SDS >= 7
  more often, report withdrawal and are judged dependent; some persons have only an
  assessment before treatment (records that assess nothing in the window).

>>> persons_for(1_000_000), persons_for(7)
(200000, 2)
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from pipeline.config import PROJECT_ROOT, load_config
from pipeline.contract import CODE_SYSTEMS, INDICATIONS, SEXES, TABLES

TABLE_NAMES = tuple(TABLES)
RX_PER_PERSON = 5  # mean of 1 + (hash % 9)
PERSONS_PER_CHUNK = 1_000_000  # about 5M prescriptions (~550 MB of CSV) per COPY
EXTRACT_DATE = "2024-06-30"
CONCEPT_SET = PROJECT_ROOT / "pipeline" / "ingest" / "concept_sets" / "dependence_conditions.json"
# Relative weights of the contract's values (a value not named here weighs 1).
SEX_WEIGHTS = {"F": 55, "M": 43}
INDICATION_WEIGHTS = {"anxiety": 40, "panic": 15, "insomnia": 20, "seizure": 8, "muscle_spasm": 7, "other": 6}
# Background diagnoses (no F13 code: they assess nothing), with the code system they belong to.
BACKGROUND_CODES = (("F41.1", "ICD10"), ("G47.0", "ICD10"), ("G40.9", "ICD10"), ("F32.9", "ICD10"),
                    ("M62.838", "ICD10CM"), ("F41.9", "ICD10CM"))
MAIN_INGREDIENT = "clonazepam"
PLANTED_BAD_EVERY = 200_003


def persons_for(prescriptions: int) -> int:
    """Persons to draw for about ``prescriptions`` dispensing rows."""
    return max(1, -(-prescriptions // RX_PER_PERSON))


def _literal(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _weighted_list(values: tuple[str, ...], weights: dict[str, int]) -> str:
    """A DuckDB list literal in which each value appears as often as its weight."""
    unknown = set(weights) - set(values)
    if unknown:
        raise ValueError(f"weights for values the contract does not allow: {sorted(unknown)}")
    items = [v for v in values for _ in range(weights.get(v, 1))]
    return "[" + ", ".join(_literal(v) for v in items) + "]"


def _codes() -> dict[str, list[tuple[str, str]]]:
    """(code, code system) by role from the concept set the outcome logic reads."""
    entries = json.loads(CONCEPT_SET.read_text(encoding="utf-8"))["outcome_codes"]
    roles: dict[str, list[tuple[str, str]]] = {}
    for entry in entries:
        if entry["code_system"] in CODE_SYSTEMS:
            roles.setdefault(entry["role"], []).append((entry["code_prefix"], entry["code_system"]))
    for _, system in BACKGROUND_CODES:
        if system not in CODE_SYSTEMS:
            raise ValueError(f"background code system {system} is not in the contract")
    return roles


def _pairs(pairs: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> str:
    return "[" + ", ".join(f"[{_literal(c)}, {_literal(s)}]" for c, s in pairs) + "]"


def _other_drugs() -> list[str]:
    drugs = [d for d in load_config().drugs.mg_equivalent_to_10mg_diazepam if d != MAIN_INGREDIENT]
    return drugs[:3] or [MAIN_INGREDIENT]


def people_sql(seed: int) -> str:
    """One row per person number ``i`` of ``range(lo, hi)``: the person's drawn attributes."""
    codes = _codes()
    dependence = codes.get("dependence") or [("F132", "ICD10")]
    misuse = codes.get("misuse") or [("F131", "ICD10")]
    others = "[" + ", ".join(_literal(d) for d in _other_drugs()) + "]"
    return f"""
    with base as (
        select i,
               'P' || lpad(i::varchar, 9, '0') as person_id,
               case when u(i, 1, 100) < 2 then 2007 + u(i, 2, 5) else 1935 + u(i, 2, 68) end as birth_year,
               {_weighted_list(SEXES, SEX_WEIGHTS)}[1 + u(i, 3, {sum(SEX_WEIGHTS.get(s, 1) for s in SEXES)})] as sex,
               ['North', 'South', 'East', 'West', 'Midlands', 'Wales', 'Scotland'][1 + u(i, 4, 7)] as region,
               date '2008-01-01' + u(i, 5, 2500)::integer as observation_start,
               case when u(i, 6, 5) = 0 then date '{EXTRACT_DATE}' - u(i, 7, 180)::integer
                    else date '{EXTRACT_DATE}' end as observation_end,
               u(i, 8, 50) = 0 as dies,
               1 + u(i, 9, 9) as n_rx,
               case when u(i, 10, 100) < 85 then '{MAIN_INGREDIENT}' else {others}[1 + u(i, 11, {len(_other_drugs())})] end
                   as drug,
               case when u(i, 12, 10) = 0 then 30 + u(i, 13, 300) else 365 + u(i, 13, 1800) end as start_offset,
               [14, 28, 30, 56][1 + u(i, 14, 4)] as supply,
               u(i, 15, 25) - 5 as gap,
               case when u(i, 16, 4) = 0 then 1 + u(i, 17, 8) else 99 end as break_at,
               [0.5, 1.0, 2.0][1 + u(i, 18, 3)] as strength_mg,
               {_weighted_list(INDICATIONS, INDICATION_WEIGHTS)}[1 + u(i, 19, {sum(INDICATION_WEIGHTS.get(v, 1) for v in INDICATIONS)})]
                   as indication,
               u(i, 20, 20000) as prescriber,
               u(i, 21, 8000) as pharmacy,
               u(i, 22, 20) = 0 as shopping
        from range($lo, $hi) t(i)
    )
    select *,
           observation_start + start_offset::integer as day0,
           n_rx * (supply + gap) + case when break_at < n_rx then 120 else 0 end as span,
           u(i, 23, 1000) < least(900, 20 + n_rx * supply // 2) as dependent,
           u(i, 24, 100) < 35 + 5 * n_rx as ascertained,
           {_pairs(dependence)} as dependence_codes,
           {_pairs(misuse)} as misuse_codes
    from base
    """


def table_sql(name: str, seed: int) -> str:
    """The ``select`` writing table ``name`` for persons ``$lo .. $hi - 1``."""
    people = people_sql(seed)
    if name == "persons":
        return f"""
        select person_id, birth_year, sex, region, observation_start, observation_end,
               case when dies then observation_end end as death_date
        from ({people}) order by i"""
    if name == "prescriptions":
        return f"""
        with rx as (select *, unnest(range(n_rx)) as k from ({people}))
        select 'RX' || (i * 10 + k) as prescription_id, person_id,
               day0 + (k * (supply + gap) + case when k >= break_at then 120 else 0 end
                       + u(i * 16 + k, 30, 4))::integer as dispensed_on,
               case when u(i * 16 + k, 31, 50) = 0 and drug = '{MAIN_INGREDIENT}' then {_literal(_other_drugs()[0])}
                    else drug end as drug,
               strength_mg,
               (supply * (1 + u(i * 16 + k, 32, 2)))::double as quantity,
               case when (i * 10 + k) % {PLANTED_BAD_EVERY} = {PLANTED_BAD_EVERY - 1} then 400 else supply end
                   as days_supply,
               case when u(i * 16 + k, 33, 3) = 0 then strength_mg * (1 + u(i * 16 + k, 32, 2)) end as daily_dose_mg,
               indication,
               'D' || lpad((case when shopping then u(i * 16 + k, 34, 20000) else prescriber end)::varchar, 5, '0')
                   as prescriber_id,
               'H' || lpad((case when shopping then u(i * 16 + k, 35, 8000) else pharmacy end)::varchar, 4, '0')
                   as pharmacy_id
        from rx order by i, k"""
    if name == "diagnoses":
        return f"""
        with dx as (select *, unnest(range(u(i, 40, 3))) as j from ({people}))
        select 'DX' || (i * 4 + j) as diagnosis_id, person_id,
               least(observation_end, day0 + u(i * 4 + j, 41, span + 90)::integer) as recorded_on,
               code[1] as code, code[2] as code_system
        from (select *, case
                  when dependent and u(i * 4 + j, 42, 100) < 35 then dependence_codes[1 + u(i * 4 + j, 43, len(dependence_codes))]
                  when u(i * 4 + j, 44, 100) < 2 then misuse_codes[1 + u(i * 4 + j, 45, len(misuse_codes))]
                  else {_pairs(BACKGROUND_CODES)}[1 + u(i * 4 + j, 46, {len(BACKGROUND_CODES)})] end as code
              from dx)
        order by i, j"""
    if name == "follow_ups":
        return f"""
        with fu as (
            select *, unnest(range(case when ascertained then 1 + u(i, 50, 3) when u(i, 51, 4) = 0 then 1 else 0 end)) as j
            from ({people}))
        select 'FU' || (i * 4 + j) as follow_up_id, person_id,
               case when ascertained then least(observation_end, day0 + 14 + u(i * 4 + j, 52, span + 76)::integer)
                    else observation_start + u(i, 53, 20)::integer end as assessed_on,
               case when u(i * 4 + j, 54, 10) = 0 then null
                    when dependent then 7 - u(i * 4 + j, 55, 3) + u(i * 4 + j, 56, 9)
                    else u(i * 4 + j, 56, 7) end as sds_score,
               case when not ascertained then null
                    else (dependent and u(i * 4 + j, 57, 2) = 0) or u(i * 4 + j, 58, 20) = 0 end as withdrawal_symptoms,
               case when not ascertained or u(i * 4 + j, 59, 3) = 0 then null
                    else dependent and u(i * 4 + j, 60, 5) < 3 end as dependence_assessed,
               case when not ascertained then null else u(i * 4 + j, 61, 33) = 0 end as misuse
        from fu order by i, j"""
    raise ValueError(f"no table {name}")


def generator_version() -> str:
    """A digest of this file: an extract written by another version is rebuilt, not reused."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def _connect(seed: int, memory_limit: str):
    import duckdb

    con = duckdb.connect()
    con.execute("set enable_progress_bar = false")
    con.execute(f"set memory_limit = {_literal(memory_limit)}")
    con.execute(f"create macro u(i, k, m) as (hash(i, k, {int(seed)}) % m)::bigint")
    return con


def _append(target, chunk: Path, skip_header: bool) -> None:
    with open(chunk, "rb") as source:
        if skip_header:
            source.readline()
        shutil.copyfileobj(source, target, 1 << 22)


def write_extract(out: Path, prescriptions: int, seed: int, chunk_persons: int = PERSONS_PER_CHUNK,
                  progress: Optional[Callable[[str], None]] = None, memory_limit: str = "1GB") -> dict:
    """Write the four CSV files into ``out`` (replaced); return what was written.

    ``progress`` receives one line per chunk when there is more than one.
    """
    persons = persons_for(prescriptions)
    out = Path(out)
    building = out.with_name(out.name + ".tmp")
    if building.exists():
        shutil.rmtree(building)
    building.mkdir(parents=True)
    con = _connect(seed, memory_limit)
    started = time.perf_counter()
    chunks = list(range(0, persons, max(1, chunk_persons)))
    try:
        sql = {name: table_sql(name, seed) for name in TABLE_NAMES}
        handles = {name: open(building / f"{name}.csv", "wb") for name in TABLE_NAMES}
        try:
            for number, lo in enumerate(chunks):
                hi = min(persons, lo + chunk_persons)
                for name in TABLE_NAMES:
                    chunk = building / f"_chunk_{name}.csv"
                    query = sql[name].replace("$lo", str(lo)).replace("$hi", str(hi))
                    con.execute(f"copy ({query}) to {_literal(chunk)} (header true, delimiter ',')")
                    _append(handles[name], chunk, skip_header=number > 0)
                    chunk.unlink()
                if progress and len(chunks) > 1:
                    done = hi / persons
                    elapsed = time.perf_counter() - started
                    progress(f"generate: {hi:,} of {persons:,} persons ({done:.0%}), {elapsed:.0f} s,"
                             f" about {elapsed / done - elapsed:.0f} s left")
        finally:
            for handle in handles.values():
                handle.close()
        rows = {name: con.execute(f"select count(*) from read_csv({_literal(building / (name + '.csv'))}, "
                                  "all_varchar = true, header = true)").fetchall()[0][0] for name in TABLE_NAMES}
    finally:
        con.close()
    if out.exists():
        shutil.rmtree(out)
    building.rename(out)
    return {
        "generator": "bench.generate",
        "generator_version": generator_version(),
        "target_prescriptions": prescriptions,
        "persons": persons,
        "seed": seed,
        "rows": rows,
        "bytes": {name: (out / f"{name}.csv").stat().st_size for name in TABLE_NAMES},
        "generate_seconds": round(time.perf_counter() - started, 2),
    }


STAMP = "bench-extract.json"


def reusable(out: Path, prescriptions: int, seed: int) -> Optional[dict]:
    """What ``bench-extract.json`` in ``out`` says, when this generator version wrote the four
    files there for the same size and seed; else None."""
    out = Path(out)
    stamp = out / STAMP
    if not stamp.exists() or not all((out / f"{n}.csv").is_file() for n in TABLE_NAMES):
        return None
    try:
        info = json.loads(stamp.read_text())
    except ValueError:
        return None
    key = {"generator_version": generator_version(), "target_prescriptions": prescriptions, "seed": seed}
    return info if all(info.get(k) == v for k, v in key.items()) else None


def ensure_extract(out: Path, prescriptions: int, seed: int, regenerate: bool = False,
                   progress: Optional[Callable[[str], None]] = None) -> dict:
    """The extract in ``out``, reused when it was written by this generator version for the same
    size and seed (``bench-extract.json`` beside the files), else written anew."""
    info = None if regenerate else reusable(out, prescriptions, seed)
    if info is not None:
        return {**info, "reused": True}
    info = write_extract(out, prescriptions, seed, progress=progress)
    (Path(out) / STAMP).write_text(json.dumps(info, indent=2))
    return {**info, "reused": False}


if __name__ == "__main__":  # python -m bench.generate OUT PRESCRIPTIONS [SEED]: write (or reuse) one extract
    folder, size = Path(sys.argv[1]), int(float(sys.argv[2]))
    written = ensure_extract(folder, size, int(sys.argv[3]) if len(sys.argv) > 3 else 20261122,
                             regenerate="--regenerate" in sys.argv,
                             progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(json.dumps(written))
