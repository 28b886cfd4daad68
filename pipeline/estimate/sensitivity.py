"""Sensitivity analyses as their own stage: the headline with one setting varied at a time.

The varied settings (``estimate.sensitivity_*``: the persistence window, the
SDS cut-off, the outcome window after treatment ends) change who is counted
as dependent, how long the first episode lasts and the weight model's
covariates, never who is in the cohort. So every variant comes from the
transform's tables in ONE DuckDB query (``sql/sensitivity_patterns.sql``):
the first episode under each persistence window from the dispensings' gaps
(``dispensing_gaps``), the outcomes of every window end and SDS cut-off from
one pass over ``outcome_records`` / ``outcome_dispensings``, each variant
grouped to covariate patterns there. No rebuild of ``analysis_person``; the
estimators (``pipeline.estimate.run``) run on the patterns.

>>> from pipeline.config import Config
>>> [(v.key, v.value, v.current) for v in variants(Config())][:3]
[('persistence_window_days', 10, False), ('persistence_window_days', 30, True), ('persistence_window_days', 60, False)]
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from pipeline.config import Config
from pipeline.estimate import aggregate
from pipeline.errors import StageOrderError
from pipeline.warehouse import values_rows
from pipeline.warehouse import render_sql, table_exists

SQL = Path(__file__).resolve().parent / "sql" / "sensitivity_patterns.sql"
# What the query reads: the transform's tables (python -m pipeline transform).
INPUT_TABLES = ("cohort", "stg_persons", "dispensing_gaps", "outcome_records", "outcome_dispensings",
                "ref_duration_band", "ref_dose_band", "analysis_person")


@dataclass(frozen=True)
class Variant:
    """One sensitivity analysis: ``key`` (the varied setting) = ``value``; ``current`` when
    that is the setting in force (its patterns are analysis_person's own)."""

    section: str
    key: str
    value: int
    config: Config
    current: bool


def variants(config: Config) -> list[Variant]:
    """Every sensitivity analysis of ``config``, in the order of ``run.SENSITIVITY_SETTINGS``."""
    from pipeline.estimate.run import SENSITIVITY_SETTINGS

    out = []
    for section, key, values_key in SENSITIVITY_SETTINGS:
        for value in getattr(config.estimate, values_key):
            out.append(Variant(section, key, int(value), config.replace(**{section: {key: value}}),
                               getattr(getattr(config, section), key) == value))
    return out


def require_inputs(con: duckdb.DuckDBPyConnection) -> None:
    missing = [name for name in INPUT_TABLES if not table_exists(con, name)]
    if missing:
        raise StageOrderError(f"sensitivity analyses need table(s) {', '.join(missing)}: run the transform stage "
                              "first (python -m pipeline transform)")


def _sds_fragments(cutoffs: list[int]) -> dict[str, str]:
    """The query's SDS fragments: one column per cut-off (the first day of a score at or above it, from the
    one pass over outcome_records), and the expression choosing the variant's column.

    >>> _sds_fragments([6, 8])["first_sds_on"]
    'case windows.sds_cutoff when 6 then windows.first_sds_on_0 when 8 then windows.first_sds_on_1 end'
    """
    columns = ",\n        ".join(f"min(recorded_on) filter (where sds_score >= {int(c)}) as first_sds_on_{i}"
                                  for i, c in enumerate(cutoffs))
    choice = " ".join(f"when {int(c)} then windows.first_sds_on_{i}" for i, c in enumerate(cutoffs))
    return {"sds_first_columns": columns, "first_sds_on": f"case windows.sds_cutoff {choice} end"}


def _window_fragments(windows: list[int]) -> dict[str, str]:
    """The query's persistence-window fragments: the windows numbered, per window i the first episode's
    dispensings (``gap_rows_i``), supply end and mean dose from one pass over dispensing_gaps, and the
    expressions choosing a row's window.

    >>> _window_fragments([10, 60])["window_choice"].splitlines()[0]
    'case windows.window_index when 0 then person_firsts.gap_rows_0 when 1 then person_firsts.gap_rows_1 end as gap_rows,'
    """
    columns = []
    for i, days in enumerate(windows):
        within = f"filter (where longest_gap_days is null or longest_gap_days <= {int(days)})"
        columns += [f"count(*) {within} as gap_rows_{i}", f"max(covered_end) {within} as supply_end_{i}",
                    f"sum(daily_dose_dde_mg * days_supply) {within} / sum(case when daily_dose_dde_mg is not null "
                    f"then days_supply end) {within} as mean_daily_dose_dde_mg_{i}"]

    def choice(name: str) -> str:
        cases = " ".join(f"when {i} then person_firsts.{name}_{i}" for i in range(len(windows)))
        return f"case windows.window_index {cases} end as {name}"

    return {
        "window_rows": values_rows(list(enumerate(windows)), ("integer", "integer")),
        "longest_window": str(int(max(windows))),
        "window_columns": ",\n        ".join(columns),
        "window_choice": ",\n            ".join(choice(name) for name in ("gap_rows", "supply_end",
                                                                            "mean_daily_dose_dde_mg")),
    }


def variant_patterns(con: duckdb.DuckDBPyConnection, config: Config, chosen: list[Variant]) -> list[pd.DataFrame]:
    """The pattern table (``aggregate.patterns``' columns) of each variant in ``chosen``, from one query."""
    if not chosen:
        return []
    rows = [(i, v.config.episodes.persistence_window_days, v.config.outcome.window_after_end_days,
             v.config.outcome.sds_cutoff) for i, v in enumerate(chosen)]
    sql = render_sql(
        SQL.read_text(encoding="utf-8"),
        variant_rows=values_rows(rows, ("integer", "integer", "integer", "integer")),
        headline_split_days=int(config.estimate.headline_split_days),
        distinct_prescribers=int(config.misuse.distinct_prescribers),
        distinct_pharmacies=int(config.misuse.distinct_pharmacies),
        early_refills=int(config.misuse.early_refills),
        anchor_flags=",\n        ".join(f"{expression} as {name}"
                                        for name, expression in aggregate.anchor_flags("windows.duration_days").items()),
        anchor_flag_names=", ".join(aggregate.ANCHOR_FLAGS),
        **_sds_fragments(sorted({int(v.config.outcome.sds_cutoff) for v in chosen})),
        **_window_fragments(sorted({int(v.config.episodes.persistence_window_days) for v in chosen})),
    )
    frame = con.execute(sql).df()
    frame["_count"] = frame["_count"].astype("int64")
    parts = {int(k): part.drop(columns="variant").reset_index(drop=True) for k, part in frame.groupby("variant")}
    return [parts.get(i, frame.iloc[0:0].drop(columns="variant")) for i in range(len(chosen))]


def run(con: duckdb.DuckDBPyConnection, config: Config) -> dict:
    """The sensitivity stage: replace the ``sensitivity`` rows of the varied settings in ``estimates``."""
    from pipeline.estimate.run import sensitivity

    started = time.perf_counter()
    require_inputs(con)
    if not table_exists(con, "estimates"):
        raise StageOrderError("table estimates not found: run the estimate stage first (python -m pipeline estimate)")
    frame = sensitivity(con, config)
    return {"rows": len(frame), "seconds": round(time.perf_counter() - started, 2)}
