"""Dashboard exports: ``reports/exports/``.

Three long, tidy tables (CSV and Parquet, the same rows), each column documented
once in ``DICTIONARY`` below, from which the data dictionary and the JSON Schema
are both generated:

- ``estimates``        every published estimate (one row per analysis x variable x level x time x method)
- ``cohort_attrition`` the cohort's exclusion steps
- ``data_quality``     load volumes, validation results and quarantine counts

plus ``headline.json`` (docs/report.md), ``schema.json``, ``data_dictionary.csv``/``.md``
and ``schema_version.txt``. Every file is read by the output checker
(``pipeline.publish.checker``) before the set is published; one violation stops
the publication. ``quality/validation.json`` (``write_quality``) is the published
view of the validation results: rule descriptions and rounded counts, no record.

>>> [c[0] for c in DICTIONARY["estimates"]][:5]
['schema_version', 'analysis', 'estimand', 'estimator', 'population']
>>> _nullable({"type": "integer"})
{'type': ['integer', 'null']}
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import Config
from pipeline.estimate.columns import COLUMNS, dictionary_rows
from pipeline.publish.tables import (
    ATTRITION_COLUMNS,
    ESTIMATE_COLUMNS,
    FIXED_WINDOW_BLOCKS,
    PUBLISHED_ESTIMATE_COLUMNS,
    HEADLINE_GROUPS,
    HEADLINE_KEYS,
    QUALITY_COLUMNS,
    SCHEMA_VERSION,
    Published,
)

log = logging.getLogger(__name__)

# (column, JSON type, Parquet type, nullable, meaning). The one place each exported column is described.
_SUPPRESSED = ("suppressed", "boolean", "bool", False,
               "true when disclosure control withheld this row's counts (and with them its estimate and interval)")
_REASON = ("suppression_reason", "string", "string", True,
           "why the row was suppressed: primary (a count from 1 to min_cell_count - 1) or secondary "
           "(the count could be recovered from other published numbers); empty when not suppressed")
_VERSION = ("schema_version", "string", "string", False, "version of this export format (see schema_version.txt)")

# Warehouse (DuckDB) type -> (JSON type, Parquet type) of an exported column.
_SQL_TYPES = {"varchar": ("string", "string"), "integer": ("integer", "int64"), "bigint": ("integer", "int64"),
              "double": ("number", "double")}
# Estimate columns every row fills (the rest may be empty: suppressed, not estimable, not applicable).
_ALWAYS_SET = {"analysis", "estimand", "estimator", "population", "estimate_name", "estimate_type", "method"}


def _estimate_columns() -> list[tuple[str, str, str, bool, str]]:
    """The published estimates columns, generated from the estimates contract (pipeline/estimate/columns.py)."""
    meanings = {c.name: c for c in COLUMNS}
    out = []
    for name in PUBLISHED_ESTIMATE_COLUMNS:
        column = meanings[name]
        json_type, parquet_type = _SQL_TYPES[column.sql_type]
        meaning = column.meaning + (" (empty when suppressed)" if name in ("n", "events", "estimate") else "")
        out.append((name, json_type, parquet_type, name not in _ALWAYS_SET, meaning))
    return out


DICTIONARY: dict[str, list[tuple[str, str, str, bool, str]]] = {
    "estimates": [_VERSION, *_estimate_columns(), _SUPPRESSED, _REASON],
    "cohort_attrition": [
        _VERSION,
        ("step", "integer", "int64", False, "order of the exclusion step, 1 first"),
        ("reason", "string", "string", False, "what the step requires (persons not meeting it are excluded)"),
        ("persons_before", "integer", "int64", True, "persons entering the step (empty when suppressed)"),
        ("excluded", "integer", "int64", True, "persons excluded at the step (empty when suppressed)"),
        ("persons_after", "integer", "int64", True, "persons remaining after the step (empty when suppressed)"),
        _SUPPRESSED,
        _REASON,
    ],
    "data_quality": [
        _VERSION,
        ("source", "string", "string", False,
         "load (rows read/loaded/quarantined per table), validation (one check), quarantine (rows set aside by one rule)"),
        ("table_name", "string", "string", True, "input table: persons, prescriptions, diagnoses, follow_ups"),
        ("column_name", "string", "string", True, "column the validation check is about, when it is about one"),
        ("check_id", "string", "string", True,
         "validation check id, quarantine rule id, or the load measure rows_read / rows_loaded / rows_quarantined"),
        ("category", "string", "string", True,
         "validation: conformance, completeness or plausibility; quarantine: the stage (ingest, validate); load: volume"),
        ("severity", "string", "string", True, "validation: error (stops the run) or warning"),
        ("status", "string", "string", True, "validation: pass or fail"),
        ("action", "string", "string", True, "what failing rows led to: quarantine, stop or report"),
        ("count", "integer", "int64", True, "rows concerned: failing rows, quarantined rows, or the load measure"),
        ("total", "integer", "int64", True, "rows checked (validation) or read (load)"),
        ("share", "number", "double", True, "count / total, in [0, 1]"),
        _SUPPRESSED,
        _REASON,
    ],
}
_TABLE_COLUMNS = {"estimates": ESTIMATE_COLUMNS, "cohort_attrition": ATTRITION_COLUMNS, "data_quality": QUALITY_COLUMNS}
_HEADLINE_MEANING = {
    "estimate": "proportion who developed physical dependence, in [0, 1]; primary = weighted for ascertainment",
    "ci_low": "lower bound of the confidence interval",
    "ci_high": "upper bound of the confidence interval",
    "n": "persons in the group (null when suppressed)",
    "n_assessed": "persons in the group whose outcome was assessed (null when suppressed)",
    "events": "persons who developed dependence, counted among the n_assessed (events / n is not a rate; null when suppressed)",
    "method": "estimator used",
}
_JSON_TYPE = {"estimate": "number", "ci_low": "number", "ci_high": "number", "n": "integer", "n_assessed": "integer",
              "events": "integer", "method": "string"}
_PARQUET_TYPE = {"string": pa.string(), "int64": pa.int64(), "double": pa.float64(), "bool": pa.bool_()}
_COUNT_COLUMNS = {"n", "events", "persons_before", "excluded", "persons_after", "count", "total"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "type": [schema["type"], "null"]}


def _count_schema(min_cell_count: int) -> dict[str, Any]:
    # A published count is 0, at least min_cell_count, or null (suppressed).
    return {"anyOf": [{"type": "null"}, {"type": "integer", "const": 0},
                      {"type": "integer", "minimum": min_cell_count}]}


def _row_schema(table: str, min_cell_count: int) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for name, json_type, _, nullable, meaning in DICTIONARY[table]:
        if name in _COUNT_COLUMNS:
            prop = _count_schema(min_cell_count)
        else:
            prop = {"type": json_type}
            if name == "schema_version":
                prop["const"] = SCHEMA_VERSION
            if name == "share":
                prop.update(minimum=0, maximum=1)
            if nullable:
                prop = _nullable(prop)
        properties[name] = {"description": meaning, **prop}
    columns = [c[0] for c in DICTIONARY[table]]
    return {
        "type": "object",
        "properties": properties,
        "required": columns,
        "additionalProperties": False,
        # A suppressed row says why; an attrition or quality row may keep its other, large counts.
        "if": {"properties": {"suppressed": {"const": True}}},
        "then": {"properties": {"suppression_reason": {"type": "string"}}},
        "else": {"properties": {"suppression_reason": {"type": "null"}}},
    }


def _estimate_row_schema(min_cell_count: int) -> dict[str, Any]:
    # A suppressed estimate row shows no events, estimate or interval: an estimate beside n would give events back.
    schema = _row_schema("estimates", min_cell_count)
    schema["then"] = {"properties": {"suppression_reason": {"type": "string"},
                                     **{c: {"type": "null"} for c in ("events", "estimate", "ci_low", "ci_high")}}}
    return schema


def _headline_schema(min_cell_count: int) -> dict[str, Any]:
    entry = {
        "type": "object",
        "required": list(HEADLINE_KEYS),
        "additionalProperties": False,
        "properties": {
            key: {"description": _HEADLINE_MEANING[key],
                  **(_count_schema(min_cell_count) if key in ("n", "n_assessed", "events")
                     else _nullable({"type": _JSON_TYPE[key]}))}
            for key in HEADLINE_KEYS
        },
    }
    entry["properties"]["estimate"].update(minimum=0, maximum=1)
    block = {"type": "object", "required": list(HEADLINE_GROUPS), "additionalProperties": False,
             "properties": {g: {"$ref": "#/$defs/headline_entry"} for g in HEADLINE_GROUPS}}
    return {"entry": entry, "block": block}


def json_schema(min_cell_count: int) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of one export set: each table as an array of row objects, plus headline.json."""
    headline = _headline_schema(min_cell_count)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "benzo-outcomes dashboard exports",
        "description": (
            "One export set of reports/exports/. Each CSV/Parquet table is an array of rows; headline.json is the "
            f"`headline` object. Counts from 1 to {min_cell_count - 1} are never published (disclosure control, "
            f"min_cell_count = {min_cell_count} in this run)."
        ),
        "version": SCHEMA_VERSION,
        "type": "object",
        "properties": {
            "estimates": {"type": "array", "items": {"$ref": "#/$defs/estimates_row"}},
            "cohort_attrition": {"type": "array", "items": {"$ref": "#/$defs/cohort_attrition_row"}},
            "data_quality": {"type": "array", "items": {"$ref": "#/$defs/data_quality_row"}},
            "headline": {"$ref": "#/$defs/headline_file"},
        },
        "$defs": {
            "estimates_row": _estimate_row_schema(min_cell_count),
            "cohort_attrition_row": _row_schema("cohort_attrition", min_cell_count),
            "data_quality_row": _row_schema("data_quality", min_cell_count),
            "headline_entry": headline["entry"],
            "headline_block": headline["block"],
            "headline_file": {
                "type": "object",
                "required": ["headline", "complete_case", "config"],
                "additionalProperties": False,
                "properties": {
                    "headline": {"$ref": "#/$defs/headline_block",
                                 "description": "primary estimate (corrected for ascertainment)"},
                    "complete_case": {"$ref": "#/$defs/headline_block",
                                      "description": "persons with an ascertained outcome only"},
                    "config": {"type": "object", "description": "every analysis setting used"},
                    "fixed_window_headline": {"$ref": "#/$defs/headline_block",
                                              "description": "estimand (b): dependence or withdrawal assessed within "
                                                             "outcome.fixed_window_days after treatment ends (primary)"},
                    "fixed_window_complete_case": {"$ref": "#/$defs/headline_block",
                                                   "description": "estimand (b), complete case"},
                },
            },
        },
    }


def data_dictionary(confidence: float = 0.95) -> pd.DataFrame:
    """The one data dictionary of exports/: every column of every exported file, and every value of the
    estimates' explicit columns and of summarised_result's estimate names, each with its meaning.

    Generated from the contracts (``DICTIONARY`` here, built from pipeline/estimate/columns.py for the
    estimates; pipeline/results/contract.py for summarised_result and settings); a test compares it with
    the columns a real run exports.
    """
    from pipeline.results import contract as summarised

    rows = [
        {"file": f"{table}.csv / {table}.parquet", "kind": "column", "name": name, "type": json_type,
         "nullable": nullable, "meaning": meaning}
        for table, columns in DICTIONARY.items()
        for name, json_type, _, nullable, meaning in columns
    ]
    rows += [{"file": "estimates.csv / estimates.parquet", "nullable": False, **row}
             for row in dictionary_rows() if row["kind"] != "column"]
    rows += [
        {"file": "headline.json", "kind": "key", "name": f"{block}.{group}.{key}", "type": _JSON_TYPE[key],
         "nullable": True, "meaning": f"{_HEADLINE_MEANING[key]} (headline group {group}; "
                                      f"{'primary' if block.endswith('headline') else 'complete case'}"
                                      f"{', estimand (b)' if block.startswith('fixed_window') else ''})"}
        for block in ("headline", "complete_case", *FIXED_WINDOW_BLOCKS) for group in HEADLINE_GROUPS
        for key in HEADLINE_KEYS
    ]
    rows.append({"file": "headline.json", "kind": "key", "name": "config", "type": "object", "nullable": False,
                 "meaning": "every analysis setting used (config/default.toml plus overrides)"})
    rows += [{**row, "nullable": row["kind"] != "column" or row["name"] in summarised.NULLABLE_COLUMNS}
             for row in summarised.data_dictionary(confidence).to_dict("records")]
    return pd.DataFrame(rows, columns=["file", "kind", "name", "type", "nullable", "meaning"])


def _dictionary_markdown(dictionary: pd.DataFrame) -> str:
    lines = [
        "# Export data dictionary",
        "",
        f"Schema version {SCHEMA_VERSION}. Generated from the contracts (pipeline/estimate/columns.py, "
        "pipeline/publish/exports.py, pipeline/results/contract.py); `data_dictionary.csv` holds the same rows. "
        "Tables are long and tidy: one row per published number set; "
        "CSV (UTF-8, header row, empty cell = null) and Parquet hold the same rows. "
        "Proportions are in [0, 1]. Suppressed cells are empty and flagged in `suppressed`. Every count is "
        "rounded to the middle of its band of `disclosure.rounding_base` values, bands starting at "
        "`disclosure.min_cell_count` (0 stays 0), so published counts need not add up exactly; a proportion "
        "events / n is computed from the rounded counts (docs/privacy.md).",
    ]
    for (file, kind), rows in dictionary.groupby(["file", "kind"], sort=False):
        heading = "columns" if kind == "column" else f"values of `{kind}`" if kind != "key" else "keys"
        lines += ["", f"## {file}: {heading}", "", "| name | type | nullable | meaning |", "| --- | --- | --- | --- |"]
        lines += [f"| `{r.name}` | {r.type} | {'yes' if r.nullable else 'no'} | {str(r.meaning).replace('|', '/')} |"
                  for r in rows.itertuples()]
    return "\n".join(lines) + "\n"


def _write_table(frame: pd.DataFrame, table: str, exports_dir: Path) -> list[Path]:
    columns = _TABLE_COLUMNS[table]
    schema = pa.schema([pa.field(name, _PARQUET_TYPE[ptype], nullable=nullable or name == "suppression_reason")
                        for name, _, ptype, nullable, _ in DICTIONARY[table]])
    csv_path, parquet_path = exports_dir / f"{table}.csv", exports_dir / f"{table}.parquet"
    frame[columns].to_csv(csv_path, index=False)
    pq.write_table(pa.Table.from_pandas(frame[columns], schema=schema, preserve_index=False), parquet_path)
    return [csv_path, parquet_path]


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts (nulls as None): how the schema sees a table."""
    return json.loads(frame.to_json(orient="records"))


def write_exports(published: Published, config: Config, exports_dir: Path) -> list[Path]:
    """Write every export file (the output checker reads them before the set is published)."""
    exports_dir.mkdir(parents=True, exist_ok=True)
    k = published.min_cell_count
    _write_table(published.estimates, "estimates", exports_dir)
    _write_table(published.attrition, "cohort_attrition", exports_dir)
    _write_table(published.quality, "data_quality", exports_dir)
    headline_path = exports_dir / "headline.json"
    headline_path.write_text(json.dumps(published.headline, indent=2) + "\n", encoding="utf-8")

    dictionary = data_dictionary(config.estimate.confidence_level)
    dictionary.to_csv(exports_dir / "data_dictionary.csv", index=False)
    (exports_dir / "data_dictionary.md").write_text(_dictionary_markdown(dictionary), encoding="utf-8")
    (exports_dir / "schema.json").write_text(json.dumps(json_schema(k), indent=2) + "\n", encoding="utf-8")
    (exports_dir / "schema_version.txt").write_text(SCHEMA_VERSION + "\n", encoding="utf-8")
    return sorted(exports_dir.iterdir())


def write_quality(published: Published, quality_dir: Path) -> Path:
    """``quality/validation.json``: one entry per validation check -- rule, table, column,
    status, failing rows and rows checked as published counts (suppressed, rounded), the
    share from those. Record ids and values stay in the warehouse's audit tables."""
    quality_dir.mkdir(parents=True, exist_ok=True)
    quality = published.quality
    checks = quality[quality["source"] == "validation"].drop(columns=["source"])
    content = {
        "schema_version": SCHEMA_VERSION,
        "disclosure": {"min_cell_count": published.min_cell_count, "rounding_base": published.rounding_base},
        "about": ("Validation results as published: rule descriptions and counts under disclosure control "
                  "(suppressed below min_cell_count, then rounded). Which records failed stays in the warehouse "
                  "(audit_validation, audit_quarantine); the analyst's full view is data/quality-internal/."),
        "checks": records(checks),
    }
    path = quality_dir / "validation.json"
    path.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    return path
