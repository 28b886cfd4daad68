"""What is published, read from the warehouse and passed through disclosure control.

Every table that leaves the warehouse -- estimates, cohort attrition, data
quality, the headline -- is built here, once, and only the suppressed version is
handed to the exports and the report. A suppressed cell publishes no count, no
estimate and no interval (an estimate beside a published ``n`` would give the
suppressed ``events`` back).

>>> published_level_order("duration_band", [">=182", "<14", "28-55"], ["<14", "14-27", "28-55", "56-83", "84-181", ">=182"])
['<14', '28-55', '>=182']
>>> published_level_order("age_band", ["65+", "18-24", "45-64", "unknown"], [])
['18-24', '45-64', '65+', 'unknown']
>>> PUBLISHED_ESTIMATE_COLUMNS[:5]
['analysis', 'estimand', 'estimator', 'population', 'variable']
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pandas as pd

from pipeline.config import Config
from pipeline.estimate.columns import COLUMN_NAMES, estimator_kind
from pipeline.warehouse import table_exists

log = logging.getLogger(__name__)

# Bump when a published column is added, removed, renamed or changes meaning.
# 2.0.0: the explicit columns estimand, estimator, population, estimate_name, estimate_type;
# ``variable`` no longer carries a population after '|'.
SCHEMA_VERSION = "2.0.0"

# The warehouse's estimates columns that are published, in its order (pipeline/estimate/columns.py).
# n_assessed is left out: it is the complete-case row's n, published there.
PUBLISHED_ESTIMATE_COLUMNS = [c for c in COLUMN_NAMES if c != "n_assessed"]
ESTIMATE_COLUMNS = ["schema_version", *PUBLISHED_ESTIMATE_COLUMNS, "suppressed", "suppression_reason"]
ATTRITION_COLUMNS = [
    "schema_version", "step", "reason", "persons_before", "excluded", "persons_after",
    "suppressed", "suppression_reason",
]
QUALITY_COLUMNS = [
    "schema_version", "source", "table_name", "column_name", "check_id", "category", "severity",
    "status", "action", "count", "total", "share", "suppressed", "suppression_reason",
]
HEADLINE_GROUPS = ("gt_4_weeks", "le_4_weeks")
HEADLINE_KEYS = ("estimate", "ci_low", "ci_high", "n", "n_assessed", "events", "method")
# estimand (b), the fixed window after treatment ends: its headline pair, beside (a)'s
FIXED_WINDOW_BLOCKS = {"fixed_window_headline": "headline", "fixed_window_complete_case": "complete_case"}
_LAST_LEVELS = ("other", "unknown", "missing")


@dataclass
class Published:
    """Everything the exports and the report may show; all of it already suppressed."""

    estimates: pd.DataFrame
    attrition: pd.DataFrame
    quality: pd.DataFrame
    headline: dict[str, Any]
    min_cell_count: int
    rounding_base: int = 1
    notes: list[str] = field(default_factory=list)


def published_level_order(variable: str, levels: list[str], band_labels: list[str]) -> list[str]:
    """Levels in reading order: the configured duration bands, else by leading number, else A-Z."""
    levels = list(dict.fromkeys(str(level) for level in levels))
    if variable in ("duration_band",) and band_labels:
        known = [label for label in band_labels if label in levels]
        return known + sorted(level for level in levels if level not in known)

    def key(level: str) -> tuple:
        number = re.search(r"\d+(\.\d+)?", level)
        return (level.lower() in _LAST_LEVELS, number is None, float(number.group()) if number else 0.0, level)

    return sorted(levels, key=key)


def _disclosure():
    # Imported late so a missing privacy module is one clear error at publish time.
    from pipeline.privacy import disclosure

    return disclosure


def _ensure_flags(original: pd.DataFrame, suppressed: pd.DataFrame, count_cols: list[str]) -> pd.DataFrame:
    """Make sure ``suppressed``/``suppression_reason`` exist, deriving them from cells disclosure nulled."""
    out = suppressed.copy()
    nulled = pd.Series(False, index=out.index)
    for col in count_cols:
        if col in original.columns and col in out.columns:
            nulled |= original[col].notna().to_numpy() & out[col].isna().to_numpy()
    if "suppressed" not in out.columns:
        out["suppressed"] = nulled
    else:
        out["suppressed"] = out["suppressed"].fillna(False).astype(bool) | nulled
    if "suppression_reason" not in out.columns:
        out["suppression_reason"] = None
    reason = out["suppression_reason"].astype("object")
    out["suppression_reason"] = reason.where(~(out["suppressed"] & reason.isna()), "count below minimum cell size")
    out["suppression_reason"] = out["suppression_reason"].where(out["suppressed"], None)
    return out


def read_estimates(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The warehouse ``estimates`` table in a stable order (an empty frame when absent).

    A table without the explicit columns (written before they existed) is one clear error:
    nothing here guesses what a row is from its method text."""
    columns = PUBLISHED_ESTIMATE_COLUMNS
    if not table_exists(con, "estimates"):
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    present = {row[0] for row in con.execute("select column_name from information_schema.columns "
                                             "where table_name = 'estimates'").fetchall()}
    missing = [c for c in columns if c not in present]
    if missing:
        from pipeline.errors import StageOrderError

        raise StageOrderError(f"warehouse table estimates lacks column(s) {', '.join(missing)}: it was written by an "
                              "older estimate stage; rerun it (python -m pipeline estimate)")
    frame = con.execute(f"select {', '.join(columns)} from estimates "
                        "order by analysis, estimand, population, variable, estimator, level, time_days").df()
    return frame[columns]


def suppress_estimates(estimates: pd.DataFrame, min_cell_count: int, rounding_base: int = 1,
                       confidence_level: float = 0.95) -> pd.DataFrame:
    """The long estimates table after disclosure control (suppression, then rounding),
    in the published column order and types."""
    suppressed = _disclosure().suppress(estimates.copy(), min_cell_count)
    suppressed = _ensure_flags(estimates, suppressed, ["n", "events"])
    hidden = suppressed["suppressed"].to_numpy()
    for col in ("events", "estimate", "ci_low", "ci_high"):  # n may stay: it says how many, not who
        suppressed[col] = suppressed[col].astype("object").where(~hidden, None)
    suppressed = _disclosure().round_estimates(suppressed, min_cell_count, rounding_base, confidence_level)
    suppressed["schema_version"] = SCHEMA_VERSION
    return typed(suppressed[ESTIMATE_COLUMNS], ESTIMATE_COLUMNS)


_TYPES = {
    "schema_version": "string", "analysis": "string", "variable": "string", "level": "string",
    "estimand": "string", "estimator": "string", "population": "string", "estimate_name": "string",
    "estimate_type": "string",
    "time_days": "Int64", "n": "Int64", "events": "Int64", "estimate": "Float64", "ci_low": "Float64",
    "ci_high": "Float64", "method": "string", "suppressed": "boolean", "suppression_reason": "string",
    "step": "Int64", "reason": "string", "persons_before": "Int64", "excluded": "Int64",
    "persons_after": "Int64", "source": "string", "table_name": "string", "column_name": "string",
    "check_id": "string", "category": "string", "severity": "string", "status": "string",
    "action": "string", "count": "Int64", "total": "Int64", "share": "Float64",
}


def typed(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Published frames use pandas nullable types so CSV blanks and Parquet nulls agree."""
    out = pd.DataFrame(index=range(len(frame)))
    for col in columns:
        values = frame[col].reset_index(drop=True).astype("object")
        values = values.where(values.notna(), None)
        kind = _TYPES[col]
        if kind == "Int64":
            out[col] = pd.array(pd.to_numeric(values).round(), dtype="Float64").astype("Int64")
        elif kind == "Float64":
            out[col] = pd.array(pd.to_numeric(values), dtype="Float64")
        elif kind == "boolean":
            out[col] = pd.array(values, dtype="boolean")
        else:
            out[col] = pd.array([None if v is None else str(v) for v in values], dtype="string")
    return out


def _suppress_count_table(frame: pd.DataFrame, count_cols: list[str], min_cell_count: int,
                          **options: Any) -> pd.DataFrame:
    if frame.empty:
        out = frame.copy()
        out["suppressed"], out["suppression_reason"] = pd.Series(dtype=bool), pd.Series(dtype="object")
        return out
    suppressed = _disclosure().suppress_counts(frame.copy(), count_cols, min_cell_count, **options)
    return _ensure_flags(frame, suppressed, [*count_cols, *options.get("total_cols", ())])


def read_attrition(con: duckdb.DuckDBPyConnection, min_cell_count: int, rounding_base: int = 1) -> pd.DataFrame:
    """``cohort_attrition`` suppressed as an attrition chain (after = before - excluded, step by step)."""
    columns = ["step", "reason", "persons_before", "excluded", "persons_after"]
    if not table_exists(con, "cohort_attrition"):
        frame = pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    else:
        frame = con.execute(f"select {', '.join(columns)} from cohort_attrition order by step").df()
    out = _suppress_count_table(frame, ["excluded"], min_cell_count,
                                total_cols=("persons_before", "persons_after")).reset_index(drop=True)
    out = _disclosure().round_count_columns(out, ["persons_before", "excluded", "persons_after"], min_cell_count,
                                            rounding_base)
    out["schema_version"] = SCHEMA_VERSION
    return typed(out, ATTRITION_COLUMNS)


_QUALITY_SQL = {
    "audit_load": """
        with per_table as (
            select table_name, sum(rows_read) as rows_read, sum(rows_loaded) as rows_loaded,
                   sum(rows_quarantined) as rows_quarantined
            from audit_load_current group by table_name),
        final as (
            select table_name, 'rows_read' as check_id, rows_read as count, rows_read as total from per_table
            union all select table_name, 'rows_loaded', rows_loaded, rows_read from per_table
            union all select table_name, 'rows_quarantined', rows_quarantined, rows_read from per_table)
        select 'load' as source, table_name, null as column_name, check_id, 'volume' as category,
               null as severity, null as status, null as action, count, total
        from final
    """,
    "audit_validation": """
        select 'validation' as source, table_name, column_name, check_id, category, severity, status, action,
               failing_rows as count, total_rows as total
        from audit_validation
        where run_id = (select run_id from audit_validation order by checked_at desc limit 1)
    """,
    # Grouped by rule only: a quarantine reason may quote the offending value.
    "audit_quarantine": """
        select 'quarantine' as source, table_name, null as column_name, rule_id as check_id, stage as category,
               null as severity, null as status, 'quarantine' as action, count(*) as count, null as total
        from audit_quarantine group by stage, table_name, rule_id
    """,
}


def read_quality(con: duckdb.DuckDBPyConnection, min_cell_count: int, rounding_base: int = 1) -> pd.DataFrame:
    """Load volumes, validation results and quarantine counts as one long table, suppressed and
    rounded; ``share`` is computed from the published (rounded) counts, so share x total gives
    back the published count and nothing more."""
    parts = [con.execute(sql).df() for name, sql in _QUALITY_SQL.items() if table_exists(con, name)]
    parts = [p for p in parts if not p.empty]
    columns = [c for c in QUALITY_COLUMNS if c not in ("schema_version", "share", "suppressed", "suppression_reason")]
    if parts:
        frame = pd.concat([p.astype("object") for p in parts], ignore_index=True)[columns]
        frame = frame.sort_values(["source", "table_name", "check_id"], kind="stable").reset_index(drop=True)
    else:
        frame = pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    out = _suppress_count_table(frame, ["count", "total"], min_cell_count).reset_index(drop=True)
    # rows_loaded = rows_read - rows_quarantined: hide it too when the quarantined count is hidden.
    for table in out.loc[out["source"] == "load", "table_name"].unique():
        rows = (out["source"] == "load") & (out["table_name"] == table)
        quarantined = rows & (out["check_id"] == "rows_quarantined")
        if quarantined.any() and out.loc[quarantined, "count"].isna().all():
            loaded = rows & (out["check_id"] == "rows_loaded")
            out.loc[loaded, "count"] = None
            out.loc[loaded, "suppressed"] = True
            out.loc[loaded, "suppression_reason"] = "secondary: rows read minus rows quarantined"
    out = _disclosure().round_count_columns(out, ["count", "total"], min_cell_count, rounding_base)
    count = pd.to_numeric(out["count"].astype("object"))
    total = pd.to_numeric(out["total"].astype("object"))
    out["share"] = (count / total.where(total > 0)).astype("object").where(count.notna() & total.notna(), None)
    out["schema_version"] = SCHEMA_VERSION
    return typed(out, QUALITY_COLUMNS)


def _entry(row: pd.Series | None) -> dict[str, Any]:
    if row is None:
        return {key: None for key in HEADLINE_KEYS}
    entry = {}
    for key in HEADLINE_KEYS:
        value = row.get(key)
        if value is None or pd.isna(value):
            entry[key] = None
        elif key in ("n", "n_assessed", "events"):
            entry[key] = int(value)
        elif key == "method":
            entry[key] = str(value)
        else:
            entry[key] = float(value)
    return entry


def headline_from_estimates(published: pd.DataFrame, config: Config) -> dict[str, Any] | None:
    """The headline.json dict (docs/report.md) from the (already suppressed) headline rows, or None if there are none."""
    rows = published[(published["analysis"] == "headline") & published["level"].isin(HEADLINE_GROUPS)]
    if rows.empty:
        return None
    result = _headline_blocks(rows, "headline", "complete_case")
    result["config"] = config.to_dict()
    return result


def _headline_blocks(rows: pd.DataFrame, primary_key: str, complete_key: str) -> dict[str, Any]:
    """{primary_key: {group: entry}, complete_key: {group: entry}} from one estimand's headline rows."""
    kinds = rows["estimator"].map(estimator_kind)
    blocks: dict[str, Any] = {}
    for key, subset in ((primary_key, rows[kinds == "primary"]), (complete_key, rows[kinds == "complete_case"])):
        blocks[key] = {}
        for group in HEADLINE_GROUPS:
            match = subset[subset["level"] == group]
            blocks[key][group] = _entry(match.iloc[0] if len(match) else None)
    return blocks


def headline_from_result(estimate_result: dict[str, Any] | None, config: Config) -> dict[str, Any] | None:
    """The headline part of the estimate stage's return value, normalised to headline.json's keys."""
    if not estimate_result or not isinstance(estimate_result.get("headline"), dict):
        return None
    if isinstance(estimate_result["headline"].get("headline"), dict):  # the whole headline.json dict, nested
        estimate_result = estimate_result["headline"]
    result: dict[str, Any] = {}
    for key in ("headline", "complete_case"):
        block = estimate_result.get(key) or {}
        result[key] = {group: _entry(pd.Series(block[group])) if isinstance(block.get(group), dict) else _entry(None)
                       for group in HEADLINE_GROUPS}
    result["config"] = config.to_dict()
    return result


def suppress_headline_dict(headline: dict[str, Any], min_cell_count: int, rounding_base: int = 1,
                           confidence_level: float = 0.95) -> dict[str, Any]:
    """Disclosure control for headline.json (suppression, then rounding: the same rules as the
    estimates table, so a headline taken from it is unchanged), normalised to headline.json's keys."""
    suppressed = _disclosure().suppress_headline(headline, min_cell_count)
    out: dict[str, Any] = {"headline": {}, "complete_case": {}, "config": headline["config"]}
    records = []
    for key in ("headline", "complete_case"):
        for group in HEADLINE_GROUPS:
            entry = (suppressed.get(key) or {}).get(group) or {}
            out[key][group] = {k: entry.get(k) for k in HEADLINE_KEYS}
            records.append({"analysis": key, "variable": "headline_group", "level": group, "time_days": None,
                            **{k: entry.get(k) for k in ("n", "events", "estimate", "ci_low", "ci_high", "method")}})
    rounded = _disclosure().round_estimates(pd.DataFrame.from_records(records), min_cell_count, rounding_base,
                                            confidence_level)
    for record in rounded.to_dict("records"):
        entry = out[record["analysis"]][record["level"]]
        for col in ("n", "events"):
            entry[col] = None if pd.isna(record[col]) else int(record[col])
        for col in ("estimate", "ci_low", "ci_high"):
            entry[col] = None if pd.isna(record[col]) else float(record[col])
    for group in HEADLINE_GROUPS:  # persons whose outcome was assessed = the complete case's n, suppressed with it
        for key in ("headline", "complete_case"):
            out[key][group]["n_assessed"] = out["complete_case"][group]["n"]
    return out


def fixed_window_blocks(published: pd.DataFrame, config: Config) -> dict[str, Any]:
    """Estimand (b)'s headline pair from the (already suppressed) ``headline_fixed_window`` rows."""
    rows = published[(published["analysis"] == "headline_fixed_window") & published["level"].isin(HEADLINE_GROUPS)]
    if rows.empty:
        return {}
    out = _headline_blocks(rows, "fixed_window_headline", "fixed_window_complete_case")
    for group in HEADLINE_GROUPS:
        for block in out:
            out[block][group]["n_assessed"] = out["fixed_window_complete_case"][group]["n"]
    return out


def collect(con: duckdb.DuckDBPyConnection, config: Config, estimate_result: dict[str, Any] | None) -> Published:
    """Read and suppress everything that will be published."""
    disclosure = _disclosure()
    k, b = disclosure.min_cell_count_of(config), disclosure.rounding_base_of(config)
    level = config.estimate.confidence_level
    notes: list[str] = []
    estimates = suppress_estimates(read_estimates(con), k, b, level)
    headline = headline_from_estimates(estimates, config)
    if headline is None:
        headline = headline_from_result(estimate_result, config)
        if headline is not None:
            notes.append("headline taken from the estimate stage's result (no headline rows in `estimates`)")
    if headline is None:
        notes.append("no headline estimate was produced")
        headline = {"headline": {g: _entry(None) for g in HEADLINE_GROUPS},
                    "complete_case": {g: _entry(None) for g in HEADLINE_GROUPS}, "config": config.to_dict()}
    headline = suppress_headline_dict(headline, k, b, level)
    headline.update(fixed_window_blocks(estimates, config))
    return Published(
        estimates=estimates,
        attrition=read_attrition(con, k, b),
        quality=read_quality(con, k, b),
        headline=headline,
        min_cell_count=k,
        rounding_base=b,
        notes=notes,
    )


POLICY = ("counts from 1 to min_cell_count - 1 suppressed (with every count that would give one back), then every "
          "published count rounded to the middle of its band of rounding_base values (bands start at "
          "min_cell_count; 0 stays 0); proportions recomputed from the rounded counts, other estimates rounded so "
          "that estimate x n is uncertain by at least rounding_base persons (docs/privacy.md)")


def release_manifest(manifest: dict[str, Any], min_cell_count: int, rounding_base: int) -> dict[str, Any]:
    """The manifest as published: input row counts rounded, k-anonymity counts suppressed and
    rounded with their share recomputed from the published counts, the disclosure settings stated.

    >>> m = release_manifest({"inputs": [{"table": "persons", "rows_read": 20_001}],
    ...                       "k_anonymity": {"k": 11, "persons": 20_000, "persons_in_groups_below_k": 3961,
    ...                                       "groups_below_k": 900}}, 11, 5)
    >>> m["inputs"][0]["rows_read"], m["k_anonymity"]["persons_in_groups_below_k"]
    (20003, 3963)
    >>> m["k_anonymity"]["share_of_persons_in_groups_below_k"], m["disclosure"]["rounding_base"]
    (0.1982, 5)
    """
    from pipeline.privacy.disclosure import publish_count

    out = dict(manifest)
    out["inputs"] = [
        {**item, **({"rows_read": publish_count(item["rows_read"], min_cell_count, rounding_base)}
                    if "rows_read" in item else {})}
        for item in manifest.get("inputs") or []
    ]
    risk = manifest.get("k_anonymity")
    if isinstance(risk, dict):
        published = {key: risk[key] for key in ("quasi_identifiers", "k") if key in risk}
        persons = publish_count(risk.get("persons"), min_cell_count, rounding_base)
        in_small = publish_count(risk.get("persons_in_groups_below_k"), min_cell_count, rounding_base)
        published["persons"] = persons
        published["persons_in_groups_below_k"] = in_small
        published["groups_below_k"] = publish_count(risk.get("groups_below_k"), min_cell_count, rounding_base)
        # From the published counts only: share x published persons gives back the published count.
        published["share_of_persons_in_groups_below_k"] = (
            round(in_small / persons, 4) if persons and in_small is not None else None)
        out["k_anonymity"] = published
    out["disclosure"] = {"min_cell_count": min_cell_count, "rounding_base": rounding_base, "policy": POLICY}
    return out
