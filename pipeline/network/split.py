"""Cut one native extract into several site extracts by ``persons.region``.

A network study's sites each hold their own extract; the demo is one extract,
so to run the demo as a network it is split by region: every person goes to
the site that lists their region, and every row of ``prescriptions``,
``diagnoses`` and ``follow_ups`` goes with its person. Rows are copied as text,
unchanged (invalid rows included: each site's validation must still see them).
Persons whose region no site lists (or is empty) go to the site marked ``*``,
and so do rows whose person is in no ``persons`` row; without a ``*`` site they
are left out and counted.

    benzo-outcomes split --source data/demo --out data/network \\
        --site north=North,Highlands --site south=South,Coast --site east=East,Central \\
        --site west=West,*  --site islands=Islands

>>> parse_site("north=North,Highlands")
('north', ('North', 'Highlands'))
>>> parse_site("west=West,*")
('west', ('West', '*'))
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb

from pipeline.errors import ExtractError, PipelineError

TABLES = ("persons", "prescriptions", "diagnoses", "follow_ups")
REST = "*"
SITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# The demo as a network: four regional sites of 3,400-5,800 persons and one small
# island site (about 970 persons) whose thin cells disclosure control withholds --
# as a real network's smallest partner would.
DEMO_SITES = (
    ("north", ("North", "Highlands")),
    ("south", ("South", "Coast")),
    ("east", ("East", "Central")),
    ("west", ("West", REST)),
    ("islands", ("Islands",)),
)


def parse_site(text: str) -> tuple[str, tuple[str, ...]]:
    """``name=RegionA,RegionB`` -> (name, regions); ``*`` = every region no other site lists."""
    if "=" not in text:
        raise PipelineError(f"--site '{text}' must look like name=RegionA,RegionB")
    name, regions = text.split("=", 1)
    name = name.strip()
    if not SITE_NAME.match(name):
        raise PipelineError(f"site name '{name}' must be letters, digits, '_', '.' or '-' (at most 64)")
    listed = tuple(r.strip() for r in regions.split(",") if r.strip())
    if not listed:
        raise PipelineError(f"--site '{text}' lists no region")
    return name, listed


def _table_file(source: Path, table: str) -> Path:
    for suffix in (".csv", ".parquet"):
        path = source / f"{table}{suffix}"
        if path.exists():
            return path
    raise ExtractError(f"{source}: no {table}.csv or {table}.parquet to split")


def _reader(path: Path) -> str:
    literal = "'" + str(path).replace("'", "''") + "'"
    if path.suffix == ".parquet":
        return f"read_parquet({literal})"
    # Everything as text: rows are copied, not parsed (the sites' own ingest parses them).
    return f"read_csv({literal}, all_varchar = true, header = true, auto_detect = true)"


def split_extract(source: Path, out: Path, sites: tuple[tuple[str, tuple[str, ...]], ...] = DEMO_SITES) -> dict:
    """Write ``out/<site>/<table>.<csv|parquet>`` for every site; return a summary (also ``out/sites.json``).

    The summary stays local (it holds exact counts): it is not part of any release.
    """
    source, out = Path(source), Path(out)
    if not source.is_dir():
        raise ExtractError(f"{source}: not a folder (the extract to split)")
    names = [name for name, _ in sites]
    if len(set(names)) != len(names) or len(names) < 2:
        raise PipelineError("give at least two sites, each with its own name")
    listed = [region for _, regions in sites for region in regions if region != REST]
    if len(set(listed)) != len(listed):
        raise PipelineError("a region is listed for more than one site")
    rest_sites = [name for name, regions in sites if REST in regions]
    if len(rest_sites) > 1:
        raise PipelineError("only one site may take the unlisted regions ('*')")
    files = {table: _table_file(source, table) for table in TABLES}
    con = duckdb.connect()
    try:
        con.execute(f"create table src_persons as select * from {_reader(files['persons'])}")
        columns = [row[0] for row in con.execute("describe src_persons").fetchall()]
        if "person_id" not in columns:
            raise ExtractError(f"{files['persons']}: column person_id is missing")
        region = "region" if "region" in columns else "null"
        mapping = [(name, region_name) for name, regions in sites for region_name in regions if region_name != REST]
        con.execute("create table site_region (site varchar, region varchar)")
        if mapping:
            con.executemany("insert into site_region values (?, ?)", mapping)
        rest = rest_sites[0] if rest_sites else None
        # One site per person_id (a duplicated id follows its first region in site order).
        con.execute(
            f"""
            create table person_site as
            with stg_persons as (
                select person_id, nullif(trim({region}::varchar), '') as region from src_persons
            ),
            placed as (
                select p.person_id, coalesce(s.site, ?) as site
                from stg_persons as p left join site_region as s on p.region = s.region
            ),
            final as (
                select person_id, min(site) as site from placed where site is not null group by person_id
            )
            select * from final
            """,
            [rest],
        )
        summary: dict = {"source": str(source), "sites": {}, "left_out_rows": {}}
        for name in names:
            (out / name).mkdir(parents=True, exist_ok=True)
        for table, path in files.items():
            if table != "persons":
                con.execute(f"create or replace table src_{table} as select * from {_reader(path)}")
                if "person_id" not in [r[0] for r in con.execute(f"describe src_{table}").fetchall()]:
                    raise ExtractError(f"{path}: column person_id is missing")
            con.execute(
                f"""
                create or replace table placed_{table} as
                select t.*, coalesce(ps.site, ?) as _site
                from src_{table} as t left join person_site as ps on t.person_id = ps.person_id
                """,
                [rest],
            )
            left_out = con.execute(f"select count(*) from placed_{table} where _site is null").fetchall()[0][0]
            if left_out:
                summary["left_out_rows"][table] = int(left_out)
            for name in names:
                target = out / name / path.name
                target_literal = "'" + str(target).replace("'", "''") + "'"
                fmt = "(format parquet)" if path.suffix == ".parquet" else "(format csv, header true)"
                con.execute(
                    f"copy (select * exclude (_site) from placed_{table} where _site = ? ) to {target_literal} {fmt}",
                    [name],
                )
                rows = con.execute(f"select count(*) from placed_{table} where _site = ?", [name]).fetchall()[0][0]
                summary["sites"].setdefault(name, {})[table] = int(rows)
    finally:
        con.close()
    for name, regions in sites:
        summary["sites"][name]["regions"] = list(regions)
    (out / "sites.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
