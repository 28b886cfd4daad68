"""Shared fixtures for the publish tests: a small, realistic warehouse.

The warehouse holds what the estimate, transform, ingest and validation stages
write (``estimates``, ``cohort_attrition``, ``audit_*``), with a few cells that
must be suppressed (sex X, a rare indication, a validation rule failing on 3
rows) and one ingredient with zero events (a result, not an error).

Method strings, variables with a ``|`` population qualifier and level names
follow ``pipeline/estimate/run.py``.
"""

from __future__ import annotations

import math

import duckdb
import pandas as pd

from pipeline.warehouse import ensure_audit_tables

SEED = 20261122
PRIMARY = "primary: IPW (Hajek), Wilson CI at sandwich effective n"
COMPLETE = "complete_case: Wilson"


# ---------------------------------------------------------------- fixture tables


def wilson(events: int, n: int, z: float = 1.959964) -> tuple[float, float, float]:
    """Wilson score interval (the proportions' interval in DESIGN.md)."""
    if n == 0:
        return (math.nan, math.nan, math.nan)
    p = events / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (p, max(0.0, centre - half), min(1.0, centre + half))


def _rows(analysis: str, variable: str, cells: list[tuple[str, int, int]], method: str = PRIMARY,
          shift: float = 0.0) -> list[dict]:
    rows = []
    for level, n, events in cells:
        p, low, high = wilson(events, n)
        rows.append({"analysis": analysis, "variable": variable, "level": level, "time_days": None, "n": n,
                     "events": events, "estimate": None if math.isnan(p) else min(1.0, p + shift),
                     "ci_low": None if math.isnan(low) else min(1.0, low + shift),
                     "ci_high": None if math.isnan(high) else min(1.0, high + shift), "method": method})
    return rows


def estimates_frame() -> pd.DataFrame:
    rows: list[dict] = []
    headline = [("gt_4_weeks", 4210, 1263), ("le_4_weeks", 5102, 306)]
    rows += _rows("headline", "headline_group", headline, PRIMARY, shift=0.012)
    rows += _rows("headline_complete_case", "headline_group", headline, COMPLETE)
    bands = [("<14", 2890, 87), ("14-27", 2212, 155), ("28-55", 1530, 352), ("56-83", 905, 262),
             ("84-181", 1000, 380), (">=182", 775, 341)]
    rows += _rows("by_duration_band", "duration_band", bands, PRIMARY, shift=0.01)
    rows += _rows("by_duration_band", "duration_band", bands, COMPLETE)
    strata = {
        "misuse|all": [("misuse", 640, 301), ("supervised", 8672, 1268)],
        "indication": [("anxiety", 3900, 640), ("panic", 2100, 500), ("seizure", 1300, 160),
                       ("insomnia", 1700, 230), ("muscle_spasm", 40, 3), ("unknown", 272, 36)],
        "dose_band": [("<5", 3100, 300), ("5-9", 3400, 560), ("10-19", 2200, 520), (">=20", 612, 189)],
        "age_band": [("18-24", 700, 140), ("25-44", 3300, 600), ("45-64", 3500, 560), ("65+", 1812, 269)],
        "sex|all": [("F", 5900, 1010), ("M", 3405, 557), ("X", 7, 2)],
        "ingredient": [("clonazepam", 9162, 1569), ("diazepam", 150, 0)],
    }
    for variable, cells in strata.items():
        rows += _rows("by_stratum", variable, cells, PRIMARY)
    rows += _rows("components", "component", [("dep_icd", 9312, 610), ("dep_withdrawal", 9312, 1020),
                                              ("dep_assessed", 9312, 700), ("dep_sds", 9312, 480)], COMPLETE)
    for group, n, final in (("gt_4_weeks", 4210, 1263), ("le_4_weeks", 5102, 306)):
        for step, day in enumerate(range(0, 300, 30)):
            events = round(final * (1 - math.exp(-day / 90)))
            if group == "le_4_weeks" and day == 30:
                events = 7  # a small count at one time point: withheld, the curve breaks there
            p, low, high = wilson(events, n)
            rows.append({"analysis": "cumulative_incidence", "variable": "headline_group", "level": group,
                         "time_days": day, "n": n, "events": events, "estimate": p, "ci_low": low,
                         "ci_high": high, "method": "primary: IPW Aalen-Johansen (death competing), log-log CI"})
    model = "primary: IPW logistic regression, odds ratio, stacked sandwich CI"
    for variable, level, n, events, odds, low, high in (
        ("duration_band", "<14", 2890, 87, 1.0, None, None),
        ("duration_band", "28-55", 1530, 352, 8.1, 6.2, 10.6),
        ("duration_band", ">=182", 775, 341, 21.0, 15.8, 27.9),
        ("dose_band", "10-19", 2200, 520, 1.6, 1.3, 1.9),
        ("misuse", "true", 640, 301, 2.4, 1.9, 3.0),
        ("sex", "M", 3405, 557, 0.96, 0.84, 1.1),
        ("age_band", "65+", 1812, 269, 0.8, 0.66, 0.97),
    ):
        rows.append({"analysis": "dose_response", "variable": variable, "level": level, "time_days": None, "n": n,
                     "events": events, "estimate": odds, "ci_low": low, "ci_high": high, "method": model})
    rows += _rows("tolerance", "duration_band", [("<14", 2890, 58), ("28-55", 1530, 140), (">=182", 775, 205)],
                  "tolerance: share with dose escalation, Wilson")
    rows += _rows("withdrawal_by_ending", "ending|ascertained", [("taper", 1900, 260), ("abrupt", 2600, 720)], PRIMARY)
    for level, value in (("mean", 1.0), ("max", 6.3), ("effective_sample_size", 7020.0)):
        rows.append({"analysis": "weights", "variable": "ipw", "level": level, "time_days": None, "n": None,
                     "events": None, "estimate": value, "ci_low": None, "ci_high": None, "method": "weights: stabilised IPW"})
    rows += _rows("anchors", "anchor", [("ge_4_weeks", 4210, 1263), ("lt_8_months", 8537, 1228),
                                        ("ge_8_months", 775, 341)], PRIMARY)
    for variable, values in (("persistence_window_days", ("10", "30", "60")), ("sds_cutoff", ("6", "7", "8"))):
        for i, value in enumerate(values):
            rows += _rows("sensitivity", variable, [(value, 4210 - 150 * (1 - i), 1263 - 60 * (1 - i))], PRIMARY)
    frame = pd.DataFrame(rows)
    frame["time_days"] = frame["time_days"].astype("Int64")
    return frame


ATTRITION = [
    (1, "first clonazepam episode in the extract", 14880, 0, 14880),
    (2, "aged 18 or over at the start", 14880, 612, 14268),
    (3, "at least 365 days of prior observation", 14268, 3190, 11078),
    (4, "no benzodiazepine dispensing in the prior 365 days", 11078, 1766, 9312),
]


def build_warehouse(con: duckdb.DuckDBPyConnection, estimates: pd.DataFrame | None = None,
                    attrition: list[tuple] | None = None) -> duckdb.DuckDBPyConnection:
    """Write the fixture tables into ``con`` (a fresh in-memory warehouse)."""
    ensure_audit_tables(con)
    estimates = estimates_frame() if estimates is None else estimates
    con.register("estimates_fixture", estimates)
    con.execute("""create or replace table estimates as select analysis::varchar as analysis,
        variable::varchar as variable, level::varchar as level, time_days::integer as time_days, n::bigint as n,
        events::bigint as events, estimate::double as estimate, ci_low::double as ci_low,
        ci_high::double as ci_high, method::varchar as method from estimates_fixture""")
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
        "generated_at": "2026-11-22T03:05:00+00:00",
        "inputs": [{"table_name": t, "source_file": f"{t}.csv", "sha256": f"{i:064x}", "rows_read": r}
                   for i, (t, r) in enumerate((("persons", 20000), ("prescriptions", 183455)))],
        "packages": {"duckdb": "2.0.0", "pandas": "3.1.1", "plotly": "7.1.0"},
    }
