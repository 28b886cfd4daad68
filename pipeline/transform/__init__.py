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
from typing import Any

import duckdb

from pipeline.config import Config
from pipeline.errors import StageOrderError
from pipeline.warehouse import ensure_audit_tables, run_sql_file, sql_literal, table_exists, values_rows

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
    "dispensing_gaps",
    "episodes",
    "cohort_attrition",
    "cohort",
    "outcome_records",
    "outcome_dispensings",
    "outcomes",
    "analysis_person",
)
CLASS_INGREDIENT = "any_benzodiazepine"


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


def _number(value: float) -> str:
    """A band bound as a label writes it: 5.0 -> '5', 7.5 -> '7.5'."""
    return f"{value:g}"


def age_bands(config: Config) -> list[tuple[int | None, int | None, str]]:
    """(lower or None, upper or None, label) of the age bands: the first starts at
    ``cohort.min_age_years`` (open below: nobody younger is in the cohort), the others at
    ``estimate.age_band_lower_years`` above it, the last open above.

    >>> from pipeline.config import Config
    >>> [label for _, _, label in age_bands(Config())]
    ['18-34', '35-49', '50-64', '65+']
    >>> age_bands(Config().replace(cohort={"min_age_years": 16}))[0]
    (None, 35, '16-34')
    >>> [label for _, _, label in age_bands(Config().replace(cohort={"min_age_years": 40}))]
    ['40-49', '50-64', '65+']
    """
    minimum = int(config.cohort.min_age_years)
    lows = [minimum] + [int(low) for low in config.estimate.age_band_lower_years if low > minimum]
    bands = []
    for i, low in enumerate(lows):
        high = lows[i + 1] if i + 1 < len(lows) else None
        label = f"{low}+" if high is None else f"{low}-{high - 1}"
        bands.append((None if i == 0 else low, high, label))
    return bands


def dose_bands(config: Config) -> list[tuple[float | None, float | None, str]]:
    """(lower or None, upper or None, label) of the dose bands (diazepam-equivalent mg/day)
    of ``estimate.dose_band_lower_mg`` (the first open below, the last open above).

    >>> from pipeline.config import Config
    >>> [label for _, _, label in dose_bands(Config())]
    ['<5', '5-9.9', '10-19.9', '>=20']
    >>> dose_bands(Config().replace(estimate={"dose_band_lower_mg": (0, 7.5)}))
    [(None, 7.5, '<7.5'), (7.5, None, '>=7.5')]
    """
    lows = [float(low) for low in config.estimate.dose_band_lower_mg]
    if len(lows) == 1:
        return [(None, None, "any")]
    bands = []
    for i, low in enumerate(lows):
        high = lows[i + 1] if i + 1 < len(lows) else None
        if i == 0:
            label = f"<{_number(high)}"
        elif high is None:
            label = f">={_number(low)}"
        else:
            label = f"{_number(low)}-{_number(round(high - 0.1, 6))}"
        bands.append((None if i == 0 else low, high, label))
    return bands


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
        "age_band_rows": values_rows(age_bands(config), ("integer", "integer", "varchar")),
        "dose_band_rows": values_rows(dose_bands(config), ("double", "double", "varchar")),
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
    # No table here is read in storage order (every reader orders or groups what it
    # needs): DuckDB may then write each table from both threads without re-ordering
    # (less time and memory per CREATE TABLE AS; measured in docs/performance.md).
    con.execute("set preserve_insertion_order = false")
    try:
        for path in sql_files():
            run_sql_file(con, path, **params)
    finally:
        con.execute("reset preserve_insertion_order")
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
