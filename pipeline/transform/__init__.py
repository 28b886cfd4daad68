"""Transform stage: staging -> treatment episodes -> cohort -> outcomes -> analysis_person.

Every step is a SQL file in ``pipeline/transform/sql`` (a chain of named CTEs
ending in ``final``), run in file order by DuckDB; Python only fills the
configuration into the SQL and counts the results. Conventions (last day of
supply inclusive, gap, stockpiling, taper rule, bands): ``docs/episodes.md``.

>>> values_rows([("clonazepam", 0.5), ("o'x", 1.0)])
"values ('clonazepam', 0.5), ('o''x', 1.0)"
>>> values_rows([], ("varchar", "double"))
'select NULL::varchar, NULL::double where false'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import duckdb
import pandas as pd

from pipeline.config import Config
from pipeline.errors import StageOrderError
from pipeline.warehouse import ensure_audit_tables, run_sql_file, sql_literal, table_exists

SQL_DIR = Path(__file__).resolve().parent / "sql"
CONCEPT_SET_DIR = Path(__file__).resolve().parent.parent / "ingest" / "concept_sets"
OUTCOME_ROLES = ("dependence", "withdrawal", "remission", "misuse")
RAW_TABLES = ("raw_persons", "raw_prescriptions", "raw_diagnoses", "raw_follow_ups")
OUTPUT_TABLES = (
    "stg_persons",
    "stg_prescriptions",
    "stg_diagnoses",
    "stg_follow_ups",
    "stg_diagnosis_roles",
    "episodes",
    "cohort_attrition",
    "cohort",
    "outcomes",
    "analysis_person",
)
CLASS_INGREDIENT = "any_benzodiazepine"


def values_rows(rows: Sequence[Sequence[Any]], types: Sequence[str] = ()) -> str:
    """A SQL ``VALUES`` list of literal rows (an empty typed relation when there are none)."""
    if not rows:
        return "select " + ", ".join(f"NULL::{t}" for t in types) + " where false"
    return "values " + ", ".join("(" + ", ".join(sql_literal(v) for v in row) + ")" for row in rows)


def analysed_ingredients(config: Config) -> list[str]:
    """Ingredients the cohort is built on: the class when ``drugs.class_level``, else the configured ones.

    >>> from pipeline.config import Config
    >>> analysed_ingredients(Config())
    ['clonazepam']
    >>> analysed_ingredients(Config().replace(drugs={"class_level": True}))
    ['any_benzodiazepine']
    """
    if config.drugs.class_level:
        return [CLASS_INGREDIENT]
    return [d.strip().lower() for d in config.drugs.ingredients]


def outcome_codes() -> list[tuple[str, str, str]]:
    """(code_system, code prefix without dots, role) of every F13 code of the concept list.

    >>> codes = outcome_codes()
    >>> ("ICD10", "F132", "dependence") in codes, ("ICD10CM", "F1321", "remission") in codes
    (True, True)
    """
    data = json.loads((CONCEPT_SET_DIR / "dependence_conditions.json").read_text(encoding="utf-8"))
    rows = []
    for entry in data["outcome_codes"]:
        role = str(entry["role"])
        if role not in OUTCOME_ROLES:
            raise ValueError(f"concept_sets/dependence_conditions.json: outcome code {entry['code_prefix']} has role "
                             f"{role!r}; allowed: {', '.join(OUTCOME_ROLES)}")
        rows.append((str(entry["code_system"]).upper(), str(entry["code_prefix"]).replace(".", "").upper(), role))
    return rows


def benzodiazepine_class() -> list[tuple[str, str]]:
    """(lower-case drug name, ATC code) of every benzodiazepine (ATC N05BA, N05CD, N03AE01), aliases included.

    >>> names = dict(benzodiazepine_class())
    >>> names["clorazepate"], names["potassium clorazepate"], names["estazolam"], names["clonazepam"]
    ('N05BA05', 'N05BA05', 'N05CD04', 'N03AE01')
    """
    data = json.loads((CONCEPT_SET_DIR / "benzodiazepines.json").read_text(encoding="utf-8"))
    rows = {}
    for entry in data["drugs"]:
        for name in [entry["inn"], *entry.get("aliases", [])]:
            rows[str(name).strip().lower()] = str(entry["atc"])
    return sorted(rows.items())


def sql_parameters(config: Config) -> dict[str, Any]:
    """Every configuration value the SQL files use, as placeholder -> value."""
    drugs, estimate = config.drugs, config.estimate
    bands = [
        (order, low, label)
        for order, (low, label) in enumerate(zip(estimate.duration_band_lower_days, estimate.band_labels()), start=1)
    ]
    return {
        "equivalence_rows": values_rows(
            sorted((d.lower(), float(mg)) for d, mg in drugs.mg_equivalent_to_10mg_diazepam.items()),
            ("varchar", "double"),
        ),
        "labelled_max_rows": values_rows(
            sorted((d.lower(), float(mg)) for d, mg in drugs.labelled_max_daily_mg.items()), ("varchar", "double")
        ),
        "duration_band_rows": values_rows(bands, ("integer", "integer", "varchar")),
        "benzodiazepine_class_rows": values_rows(benzodiazepine_class(), ("varchar", "varchar")),
        "outcome_code_rows": values_rows(outcome_codes(), ("varchar", "varchar", "varchar")),
        "ingredients": [d.strip().lower() for d in drugs.ingredients],
        "class_level": bool(drugs.class_level),
        "analysed_ingredients": analysed_ingredients(config),
        "stockpiling": bool(config.episodes.stockpiling),
        "persistence_window_days": int(config.episodes.persistence_window_days),
        "min_age_years": int(config.cohort.min_age_years),
        "washout_days": int(config.cohort.washout_days),
        "headline_split_days": int(estimate.headline_split_days),
        "window_after_end_days": int(config.outcome.window_after_end_days),
        "fixed_window_days": int(config.outcome.fixed_window_days),
        "sds_cutoff": int(config.outcome.sds_cutoff),
        "distinct_prescribers": int(config.misuse.distinct_prescribers),
        "distinct_pharmacies": int(config.misuse.distinct_pharmacies),
        "misuse_window_days": int(config.misuse.window_days),
        "early_refill_fraction": float(config.misuse.early_refill_fraction),
        "early_refills": int(config.misuse.early_refills),
    }


def sql_files() -> list[Path]:
    """The transform's SQL files, in the order they run."""
    return sorted(SQL_DIR.glob("*.sql"))


def run(con: duckdb.DuckDBPyConnection, config: Config) -> dict[str, int]:
    """Build staging, episodes, cohort, outcomes and analysis_person; return row counts."""
    missing = [name for name in RAW_TABLES if not table_exists(con, name)]
    if missing:
        raise StageOrderError(f"transform needs {', '.join(missing)}: run `python -m pipeline ingest` first")
    ensure_audit_tables(con)  # audit_quarantine may still be empty (validation not run)
    params = sql_parameters(config)
    for path in sql_files():
        run_sql_file(con, path, **params)
    counts = " union all ".join(f"select '{name}', count(*) from {name}" for name in OUTPUT_TABLES)
    summary = dict(con.execute(counts).fetchall())  # fetch everything: DuckDB 2.0 keeps open results busy
    summary.update(
        dict(
            con.execute(
                "select 'cohort_ascertained', count(*) filter (where ascertained) from outcomes"
                " union all select 'cohort_dependent', count(*) filter (where dependence) from outcomes"
            ).fetchall()
        )
    )
    return summary


build = run  # name used in docs/ARCHITECTURE.md


def first_changed_step(config: Config, base: Config) -> str:
    """The first SQL step whose inputs differ between two configurations.

    >>> base = Config()
    >>> first_changed_step(base.replace(outcome={"sds_cutoff": 6}), base)
    '04'
    >>> first_changed_step(base.replace(episodes={"persistence_window_days": 60}), base)
    '02'
    >>> first_changed_step(base.replace(drugs={"ingredients": ("diazepam",)}), base)
    '00'
    """
    if (config.drugs, config.estimate) != (base.drugs, base.estimate):
        return "00"  # reference tables and staging (diazepam equivalents, bands)
    if config.episodes != base.episodes:
        return "02"
    if config.cohort != base.cohort:
        return "03"
    return "04"


def rebuild_analysis_person(
    con: duckdb.DuckDBPyConnection, config: Config, base: Config, schema: str = "sensitivity"
) -> pd.DataFrame:
    """``analysis_person`` under other settings (the sensitivity analyses), main tables untouched.

    The SQL runs on a cursor whose default schema is a scratch schema, searched
    before ``main``: tables it creates land in the scratch schema, tables it only
    reads (raw_*, audit_quarantine) come from ``main``. When only outcome settings
    differ from ``base``, staging, episodes and the cohort are reused from ``main``
    and only the outcome steps run (see ``first_changed_step``). The scratch schema
    is dropped afterwards.
    """
    files = [p for p in sql_files() if p.name >= first_changed_step(config, base)]
    cursor = con.cursor()
    try:
        cursor.execute(f"create schema if not exists {schema}")
        cursor.execute(f"set schema = '{schema}'")
        cursor.execute(f"set search_path = '{schema},main'")
        params = sql_parameters(config)
        for path in files:
            run_sql_file(cursor, path, **params)
        return cursor.execute("select * from analysis_person").df()
    finally:
        cursor.execute(f"drop schema if exists {schema} cascade")
        cursor.close()
