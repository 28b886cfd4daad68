"""The check catalogue: expectations/*.json, read into ``Check`` objects.

One JSON file per suite (persons, prescriptions, diagnoses, follow_ups,
cross_table). Each check names a Great Expectations expectation (type +
kwargs) and says what a failure means for the pipeline:

- ``category``: conformance / completeness / plausibility (OHDSI DQD terms)
- ``severity``: error / warning
- ``action``: ``quarantine`` (row rule: failing rows are set aside in
  audit_quarantine; the run stops only when their share exceeds ``threshold``),
  ``stop`` (table-level: the run stops when the failing share exceeds
  ``threshold``) or ``report`` (warning: reported, the run goes on)
- ``threshold``: share of rows allowed to fail (0.01 = 1%)

Values that depend on the configuration are written ``{{ name }}`` (see
``check_params``). The same expectation drives both the DuckDB row rule
(``failing_rows_sql``) and the GX validation, so the two always agree.

>>> checks = load_checks(Config(extract=ExtractConfig(extract_date="2024-06-30")))
>>> by_id = {c.id: c for c in checks}
>>> by_id["persons.birth_year.range"].kwargs["max_value"]
2024
>>> print(failing_rows_sql(by_id["prescriptions.days_supply.range"]))
select * from raw_prescriptions where days_supply is not null and not (days_supply >= 1 and days_supply <= 365)
>>> failing_rows_sql(by_id["persons.required_columns"]) is None
True
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import PROJECT_ROOT, Config, ExtractConfig
from pipeline.contract import TABLES
from pipeline.warehouse import render_sql, sql_literal

EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
SUITE_ORDER = ("persons", "prescriptions", "diagnoses", "follow_ups", "cross_table")
CATEGORIES = ("conformance", "completeness", "plausibility")
SEVERITIES = ("error", "warning")
ACTIONS = ("quarantine", "stop", "report")
ROW_LEVEL_TYPES = (
    "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_between",
    "expect_column_values_to_be_in_set",
    "unexpected_rows_expectation",
)
TABLE_LEVEL_TYPES = ("expect_table_columns_to_match_set", "expect_table_row_count_to_be_between")
_WHOLE_PLACEHOLDER = re.compile(r"^\{\{\s*(\w+)\s*\}\}$")


@dataclass(frozen=True)
class Check:
    id: str
    suite: str
    table: str  # contract table name; the warehouse table is raw_<table>
    column: str | None
    category: str
    severity: str
    action: str
    threshold: float
    description: str
    expectation_type: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def raw_table(self) -> str:
        return f"raw_{self.table}"

    @property
    def id_column(self) -> str:
        return TABLES[self.table].id_column

    @property
    def is_row_rule(self) -> bool:
        return self.expectation_type in ROW_LEVEL_TYPES


def check_params(config: Config) -> tuple[dict[str, Any], dict[str, str]]:
    """Configuration values the suites refer to as ``{{ name }}``.

    Returns (values for expectation kwargs, SQL text for queries).

    >>> values, sql = check_params(Config(extract=ExtractConfig(extract_date="2024-06-30")))
    >>> values["extract_day"], sql["extract_day"], values["extract_year"]
    ('2024-06-30', "DATE '2024-06-30'", 2024)
    """
    day = config.extract.extract_day
    labelled = config.drugs.labelled_max_daily_mg
    labelled_rows = ", ".join(f"({sql_literal(drug)}, {float(mg)!r})" for drug, mg in sorted(labelled.items()))
    labelled_sql = (
        f"(select * from (values {labelled_rows}) as t(drug, max_daily_mg))"
        if labelled
        else "(select null::varchar as drug, null::double as max_daily_mg where false)"
    )
    values: dict[str, Any] = {
        "extract_day": day.isoformat(),
        "extract_year": day.year,
        "known_drugs": sorted(config.drugs.mg_equivalent_to_10mg_diazepam) or list(config.drugs.ingredients),
    }
    sql: dict[str, str] = {
        "extract_day": f"DATE '{day.isoformat()}'",
        "extract_year": str(day.year),
        "labelled_max_daily_mg": labelled_sql,
        # persons rows that survived the persons row rules (run before cross-table rules)
        "valid_persons": (
            "(select * from raw_persons as vp where not exists (select 1 from audit_quarantine as q"
            " where q.stage = 'validate' and q.table_name = 'persons'"
            " and q.load_id is not distinct from vp._load_id and q.source_row = vp._source_row))"
        ),
    }
    for name, table in TABLES.items():
        sql[f"{name}_columns"] = ", ".join(table.column_names)
    return values, sql


def _fill_kwargs(value: Any, values: dict[str, Any], sql: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _fill_kwargs(v, values, sql) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill_kwargs(v, values, sql) for v in value]
    if isinstance(value, str):
        whole = _WHOLE_PLACEHOLDER.match(value)
        if whole and whole.group(1) in values:
            return values[whole.group(1)]
        if "{{" in value:
            return render_sql(value, **sql)
    return value


def _parse_check(raw: dict[str, Any], suite: str, source: Path, values: dict[str, Any], sql: dict[str, str]) -> Check:
    where = f"{source.name} check {raw.get('id', '?')!r}"
    for key in ("id", "table", "category", "severity", "action", "threshold", "description", "expectation"):
        if key not in raw:
            raise ValueError(f"{where}: missing '{key}'")
    if raw["table"] not in TABLES:
        raise ValueError(f"{where}: unknown table {raw['table']!r} (known: {', '.join(TABLES)})")
    for key, allowed in (("category", CATEGORIES), ("severity", SEVERITIES), ("action", ACTIONS)):
        if raw[key] not in allowed:
            raise ValueError(f"{where}: {key} must be one of {', '.join(allowed)}, got {raw[key]!r}")
    if (raw["severity"] == "warning") != (raw["action"] == "report"):
        raise ValueError(f"{where}: warnings are reported ('report'); errors quarantine or stop")
    expectation_type = raw["expectation"]["type"]
    if expectation_type not in ROW_LEVEL_TYPES + TABLE_LEVEL_TYPES:
        raise ValueError(f"{where}: expectation type {expectation_type!r} has no SQL row rule here")
    if raw["action"] == "quarantine" and expectation_type not in ROW_LEVEL_TYPES:
        raise ValueError(f"{where}: only row-level expectations can quarantine rows")
    kwargs = _fill_kwargs(raw["expectation"].get("kwargs", {}), values, sql)
    query = kwargs.get("unexpected_rows_query", "")
    if query.replace("{batch}", "").count("{") or query.replace("{batch}", "").count("}"):
        raise ValueError(f"{where}: only {{batch}} may use braces in unexpected_rows_query (GX fills it with str.format)")
    return Check(
        id=raw["id"],
        suite=suite,
        table=raw["table"],
        column=raw.get("column"),
        category=raw["category"],
        severity=raw["severity"],
        action=raw["action"],
        threshold=float(raw["threshold"]),
        description=raw["description"],
        expectation_type=expectation_type,
        kwargs=kwargs,
    )


def load_checks(config: Config, directory: Path = EXPECTATIONS_DIR) -> list[Check]:
    """Every check of every suite, in run order (persons first, cross_table last)."""
    values, sql = check_params(config)
    checks: list[Check] = []
    for suite in SUITE_ORDER:
        path = Path(directory) / f"{suite}.json"
        document = json.loads(path.read_text(encoding="utf-8"))
        checks.extend(_parse_check(raw, suite, path, values, sql) for raw in document["checks"])
    seen: set[str] = set()
    for check in checks:
        if check.id in seen:
            raise ValueError(f"check id {check.id!r} is used twice in {directory}")
        seen.add(check.id)
    return checks


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def failing_predicate(check: Check) -> str | None:
    """SQL condition true on a failing row, for the column-map expectation types.

    Nulls fail only ``not_be_null`` (GX counts nulls as missing, not unexpected).

    >>> c = Check("x", "s", "persons", "sex", "conformance", "error", "quarantine", 0.0, "", \
"expect_column_values_to_be_in_set", {"column": "sex", "value_set": ["F", "M"]})
    >>> failing_predicate(c)
    "sex is not null and not (sex in ('F', 'M'))"
    """
    kwargs = check.kwargs
    kind = check.expectation_type
    if kind == "expect_column_values_to_not_be_null":
        return f"{_quote_simple(kwargs['column'])} is null"
    if kind == "expect_column_values_to_be_in_set":
        column = _quote_simple(kwargs["column"])
        allowed = ", ".join(sql_literal(v) for v in kwargs["value_set"])
        return f"{column} is not null and not ({column} in ({allowed}))"
    if kind == "expect_column_values_to_be_between":
        column = _quote_simple(kwargs["column"])
        bounds = []
        if kwargs.get("min_value") is not None:
            op = ">" if kwargs.get("strict_min") else ">="
            bounds.append(f"{column} {op} {_bound_literal(kwargs['min_value'])}")
        if kwargs.get("max_value") is not None:
            op = "<" if kwargs.get("strict_max") else "<="
            bounds.append(f"{column} {op} {_bound_literal(kwargs['max_value'])}")
        return f"{column} is not null and not ({' and '.join(bounds)})"
    return None


def _quote_simple(name: str) -> str:
    """Contract column names are plain identifiers; quote anything else."""
    return name if re.fullmatch(r"[a-z_][a-z0-9_]*", name) else _quote(name)


def _bound_literal(value: Any) -> str:
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return f"DATE '{value}'"
    return sql_literal(value)


def failing_rows_sql(check: Check) -> str | None:
    """A SELECT of the raw rows failing a row rule (all raw columns); None for table-level checks."""
    if check.expectation_type == "unexpected_rows_expectation":
        return check.kwargs["unexpected_rows_query"].replace("{batch}", check.raw_table)
    predicate = failing_predicate(check)
    if predicate is None:
        return None
    return f"select * from {check.raw_table} where {predicate}"
