"""The data contract, each fact once: the native extract's tables (what a data
provider delivers: columns, DuckDB types, required or not, allowed values and
ranges, meanings) and the columns of the warehouse tables every stage writes.

Everything else is generated from or checked against this module:
ingest types the raw tables from it; validation's expectations
(``expectations/*.json``) hold the same column sets, value sets and ranges
(``tests/test_contract.py`` compares them); the demo generator draws its
categories from it; ``docs/contract.md`` and the table lists of
``docs/ARCHITECTURE.md`` are written from it (``benzo-outcomes docs``; a test
fails when either is stale).

>>> [c.name for c in TABLES["persons"].required_columns]
['person_id', 'birth_year', 'sex', 'observation_start', 'observation_end']
>>> TABLES["prescriptions"].id_column
'prescription_id'
>>> TABLES["persons"].column("sex").allowed
('F', 'M', 'X', 'U')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Column:
    """A column of the native extract: its type, meaning, and the values a row may hold."""

    name: str
    duckdb_type: str  # VARCHAR, BIGINT, DOUBLE, DATE, BOOLEAN
    description: str
    required: bool = False  # a row without it is set aside
    allowed: tuple[str, ...] = ()  # the only values a row may hold (empty: any)
    minimum: float | None = None  # numeric range (None: unbounded); validation quarantines rows outside it
    maximum: float | None = None
    exclusive_minimum: bool = False  # > minimum rather than >= minimum


@dataclass(frozen=True)
class Table:
    """A table of the native extract: one file a data provider delivers."""

    name: str
    id_column: str
    description: str
    columns: tuple[Column, ...]

    @property
    def required_columns(self) -> list[Column]:
        return [c for c in self.columns if c.required]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


EXTRACT = """\
One folder per extract, one file per table: `persons`, `prescriptions`, `diagnoses`,
`follow_ups`, each as `.csv` (UTF-8, header row, ISO 8601 dates) or `.parquet`.
Extra columns are allowed and ignored unless they look like direct identifiers
(then the extract is refused before anything is stored). No free-text columns.
Dates may have been shifted per person by the data provider (a common
de-identification step): the analysis uses only intervals within a person."""

SEXES = ("F", "M", "X", "U")  # X: other, U: unknown
INDICATIONS = ("anxiety", "panic", "seizure", "insomnia", "muscle_spasm", "other", "unknown")
CODE_SYSTEMS = ("ICD10", "ICD10CM")
MAX_DAYS_SUPPLY = 365

TABLES: dict[str, Table] = {table.name: table for table in (
    Table("persons", "person_id", "One row per pseudonymised person.", (
        Column("person_id", "VARCHAR", "Pseudonym; unique; never a real identifier.", required=True),
        Column("birth_year", "BIGINT", "Year of birth, 1900 .. the extract's year.", required=True, minimum=1900),
        Column("sex", "VARCHAR", "Sex: X other, U unknown.", required=True, allowed=SEXES),
        Column("region", "VARCHAR", "Coarse area (no postcode / ZIP)."),
        Column("observation_start", "DATE", "Records are complete from this date.", required=True),
        Column("observation_end", "DATE", "Records are complete up to this date; >= observation_start.", required=True),
        Column("death_date", "DATE", "Date of death, within observation or at its end."),
    )),
    Table("prescriptions", "prescription_id", "One row per dispensing.", (
        Column("prescription_id", "VARCHAR", "Unique dispensing identifier.", required=True),
        Column("person_id", "VARCHAR", "Exists in persons.", required=True),
        Column("dispensed_on", "DATE", "Dispensing date, inside the person's observation period.", required=True),
        Column("drug", "VARCHAR", "Ingredient, lower-case INN (clonazepam, diazepam, ...); "
               "one of the drugs the configuration knows ([drugs] in config/default.toml).", required=True),
        Column("strength_mg", "DOUBLE", "mg per unit.", required=True, minimum=0, exclusive_minimum=True),
        Column("quantity", "DOUBLE", "Units dispensed.", required=True, minimum=0, exclusive_minimum=True),
        Column("days_supply", "BIGINT", "Days the dispensing is meant to last.", required=True, minimum=1,
               maximum=MAX_DAYS_SUPPLY),
        Column("daily_dose_mg", "DOUBLE", "mg/day; default strength_mg * quantity / days_supply.",
               minimum=0, exclusive_minimum=True),
        Column("indication", "VARCHAR", "Why the drug was prescribed.", allowed=INDICATIONS),
        Column("prescriber_id", "VARCHAR", "Prescriber pseudonym."),
        Column("pharmacy_id", "VARCHAR", "Pharmacy pseudonym."),
    )),
    Table("diagnoses", "diagnosis_id", "Coded diagnoses.", (
        Column("diagnosis_id", "VARCHAR", "Unique diagnosis identifier.", required=True),
        Column("person_id", "VARCHAR", "Exists in persons.", required=True),
        Column("recorded_on", "DATE", "Inside the person's observation period.", required=True),
        Column("code", "VARCHAR", "ICD-10 or ICD-10-CM code, with or without the dot (F13.2 = F132).", required=True),
        Column("code_system", "VARCHAR", "The code's system.", required=True, allowed=CODE_SYSTEMS),
    )),
    Table("follow_ups", "follow_up_id", "Structured follow-up assessments.", (
        Column("follow_up_id", "VARCHAR", "Unique assessment identifier.", required=True),
        Column("person_id", "VARCHAR", "Exists in persons.", required=True),
        Column("assessed_on", "DATE", "Inside the person's observation period.", required=True),
        Column("sds_score", "BIGINT", "Severity of Dependence Scale.", minimum=0, maximum=15),
        Column("withdrawal_symptoms", "BOOLEAN", "Withdrawal symptoms documented since last contact."),
        Column("dependence_assessed", "BOOLEAN", "Clinician judged the person physically dependent."),
        Column("misuse", "BOOLEAN", "Use beyond the prescription documented."),
    )),
)}



# --------------------------------------------------------------------------- the warehouse's tables
# The columns each stage writes, in table order. ``notes`` says what a column
# holds where its name does not. tests/test_contract.py builds the tables and
# compares; docs/ARCHITECTURE.md's lists are written from here.

LINEAGE_COLUMNS = ("_source_row", "_load_id")  # every raw_* and stg_* row: its file row and its load


@dataclass(frozen=True)
class WarehouseTable:
    """A table the pipeline writes into the warehouse, and the stage that writes it."""

    name: str
    description: str
    columns: tuple[str, ...]
    stage: str  # ingest, validate, transform, estimate
    notes: tuple[tuple[str, str], ...] = ()  # (column, what it holds) where the name does not say

    def listing(self) -> str:
        """``name, name ('a'|'b'), ...``: the columns with their notes, as ARCHITECTURE.md shows them."""
        notes = dict(self.notes)
        return ", ".join(f"{c} ({notes[c]})" if c in notes else c for c in self.columns)


def _table(name: str, stage: str, description: str, columns: tuple[str, ...], notes=()) -> WarehouseTable:
    return WarehouseTable(name, description, columns, stage, tuple(notes))


def _raw(table: str) -> tuple[str, ...]:
    return (*TABLES[table].column_names, *LINEAGE_COLUMNS)


WAREHOUSE: dict[str, WarehouseTable] = {table.name: table for table in (
    *(_table(f"raw_{name}", "ingest", f"the extract's {name}, typed; never modified afterwards", _raw(name),
                     (("_source_row", "1-based data row number in the source file"), ("_load_id", "the load that brought the row")))
      for name in TABLES),
    _table(
        "audit_load", "ingest", "every load ever made, one row per file (per CDM table for OMOP)",
        ("load_id", "table_name", "source_file", "file_format", "sha256", "rows_read", "rows_loaded",
         "rows_quarantined", "loaded_at", "snapshot_id"),
        (("rows_read", "= rows_loaded + rows_quarantined"),)),
    _table(
        "audit_quarantine", "ingest, validate", "every row set aside, and why",
        ("load_id", "stage", "table_name", "record_id", "source_row", "rule_id", "reason"),
        (("stage", "'ingest' (could not be typed) or 'validate' (broke a row rule)"),
         ("record_id", "the row's id column value when known"))),
    _table(
        "audit_validation", "validate", "one row per data-quality check and run",
        ("run_id", "check_id", "suite", "table_name", "column_name", "category", "severity", "threshold", "status",
         "failing_rows", "total_rows", "failing_share", "examples", "action", "checked_at"),
        (("category", "conformance|completeness|plausibility"), ("severity", "error|warning"),
         ("status", "pass|fail"), ("action", "quarantine|stop|report"))),
    _table(
        "audit_run_log", "every stage", "one row per stage run",
        ("run_id", "stage", "started_at", "finished_at", "status", "message", "config_json", "snapshot_id"),
        (("snapshot_id", "the extract the stage ran on"),)),
    _table(
        "stg_persons", "transform", "raw_persons minus every quarantined row", _raw("persons")),
    _table(
        "stg_prescriptions", "transform", "raw_prescriptions minus every quarantined row, drug lower-cased",
        (*_raw("prescriptions"), "daily_dose_derived", "daily_dose_dde_mg", "supply_end"),
        (("daily_dose_mg", "given, else strength_mg * quantity / days_supply"),
         ("daily_dose_derived", "daily_dose_mg was not given"),
         ("daily_dose_dde_mg", "diazepam-equivalent mg/day"),
         ("supply_end", "dispensed_on + days_supply - 1, the last day covered"))),
    _table(
        "stg_diagnoses", "transform", "raw_diagnoses minus every quarantined row, code_system upper-cased",
        (*_raw("diagnoses"), "code_nodot"), (("code_nodot", "upper-case, dot removed"),)),
    _table(
        "stg_follow_ups", "transform", "raw_follow_ups minus every quarantined row", _raw("follow_ups")),
    _table(
        "episodes", "transform", "all episodes of the chosen ingredient(s), one row each",
        ("person_id", "ingredient", "episode_number", "episode_start", "episode_end", "duration_days", "dispensings",
         "days_supplied", "mean_daily_dose_mg", "max_daily_dose_mg", "first_daily_dose_mg", "last_daily_dose_mg",
         "mean_daily_dose_dde_mg", "max_daily_dose_dde_mg", "cumulative_dose_mg", "days_to_first_increase",
         "dose_escalation_ratio", "supply_ending", "indication"),
        (("episode_end", "inclusive"), ("duration_days", "end - start + 1"),
         ("indication", "of the first dispensing"))),
    _table(
        "cohort_attrition", "transform", "one row per cohort rule, in order",
        ("step", "reason", "persons_before", "excluded", "persons_after")),
    _table(
        "cohort", "transform", "one row per new user",
        ("person_id", "ingredient", "episode_start", "episode_end", "supply_end", "end_reason", "duration_days",
         "duration_band", "headline_group", "age_at_start", "age_band", "sex", "region", "indication",
         "mean_daily_dose_dde_mg", "dose_band", "ending"),
        (("end_reason", "'supply'|'observation_end'|'death'"), ("headline_group", "at most / more than the headline split"),
         ("ending", "'taper'|'abrupt'|'ongoing'"))),
    _table(
        "outcomes", "transform", "one row per cohort person",
        ("person_id", "ingredient", "window_start", "window_end", "ascertained", "only_unassessing_records",
         "dependence", "dep_icd", "dep_withdrawal", "dep_assessed", "dep_sds", "days_to_dependence",
         "fixed_window_start", "fixed_window_end", "fixed_window_defined", "ascertained_fixed",
         "only_unassessing_records_fixed", "dependence_fixed", "died_in_window", "days_to_death", "days_followed",
         "rx_many_prescribers", "rx_many_pharmacies", "rx_early_refills", "rx_high_dose", "rx_misuse_signal",
         "documented_misuse", "icd_misuse", "misuse"),
        (("dependence", "NULL when not ascertained"),)),
)}
ANALYSIS_PERSON_EPISODE_COLUMNS = (
    "dispensings", "days_supplied", "mean_daily_dose_mg", "max_daily_dose_mg", "max_daily_dose_dde_mg",
    "cumulative_dose_mg", "days_to_first_increase", "dose_escalation_ratio")
WAREHOUSE["analysis_person"] = _table(
    "analysis_person", "transform", "cohort + outcomes + the first episode's exposure columns: the estimators' only input",
    (*WAREHOUSE["cohort"].columns, *(c for c in WAREHOUSE["outcomes"].columns if c not in ("person_id", "ingredient")),
     *ANALYSIS_PERSON_EPISODE_COLUMNS))


# --------------------------------------------------------------------------- generated documents

CONTRACT_DOC = "docs/contract.md"
ARCHITECTURE_DOC = "docs/ARCHITECTURE.md"
_BEGIN = "<!-- BEGIN tables: written from pipeline/contract.py by `benzo-outcomes docs`; do not edit -->"
_END = "<!-- END tables -->"


def _number_text(value: float) -> str:
    return f"{value:g}"


def rule_text(column: Column) -> str:
    """The column's allowed values or range, as a provider reads it.

    >>> rule_text(TABLES["prescriptions"].column("days_supply"))
    '1 .. 365'
    >>> rule_text(TABLES["prescriptions"].column("quantity"))
    '> 0'
    >>> rule_text(TABLES["persons"].column("sex"))
    'F, M, X, U'
    """
    if column.allowed:
        return ", ".join(column.allowed)
    if column.minimum is not None and column.maximum is not None:
        return f"{_number_text(column.minimum)} .. {_number_text(column.maximum)}"
    if column.minimum is not None:
        return f"{'>' if column.exclusive_minimum else '>='} {_number_text(column.minimum)}"
    if column.maximum is not None:
        return f"<= {_number_text(column.maximum)}"
    return ""


def contract_markdown(checks: dict[str, list[dict]]) -> str:
    """docs/contract.md: what a data provider delivers; ``checks``: suite -> its checks (expectations/*.json)."""
    lines = [
        "# The native extract: data contract",
        "",
        "<!-- Written from pipeline/contract.py and expectations/*.json by `benzo-outcomes docs`; do not edit. -->",
        "",
        "What a data provider delivers for `benzo-outcomes` (an OMOP CDM is the other way in: docs/omop.md).",
        "",
        EXTRACT,
        "",
        "Rows breaking a rule below are set aside (quarantined, counted in the report) or stop the run;",
        "the checks after each table say which. Types are DuckDB's: VARCHAR text, BIGINT whole number,",
        "DOUBLE number, DATE an ISO 8601 date (YYYY-MM-DD), BOOLEAN true/false.",
    ]
    for table in TABLES.values():
        lines += ["", f"## {table.name}", "", f"{table.description} Key: `{table.id_column}`.", "",
                  "| column | type | required | allowed | meaning |", "| --- | --- | --- | --- | --- |"]
        for column in table.columns:
            lines.append(f"| {column.name} | {column.duckdb_type} | {'yes' if column.required else 'no'} | "
                         f"{rule_text(column)} | {column.description} |")
        table_checks = checks.get(table.name, [])
        if table_checks:
            lines += ["", "Checks (`expectations/" + table.name + ".json`):", ""]
            lines += [f"- `{c['id']}` ({c['action']}): {c['description']}" for c in table_checks]
    cross = checks.get("cross_table", [])
    if cross:
        lines += ["", "## Across tables", "", "Checks (`expectations/cross_table.json`):", ""]
        lines += [f"- `{c['id']}` ({c['action']}): {c['description']}" for c in cross]
    return "\n".join(lines) + "\n"


def architecture_tables_markdown() -> str:
    """The block of docs/ARCHITECTURE.md listing every warehouse table's columns."""
    lines = [_BEGIN, ""]
    for table in WAREHOUSE.values():
        lines.append(f"- `{table.name}` ({table.stage}): {table.description}.  ")
        lines.append(f"  {table.listing()}")
    return "\n".join([*lines, "", _END])


def _read_checks(root: Path) -> dict[str, list[dict]]:
    import json

    return {path.stem: json.loads(path.read_text(encoding="utf-8"))["checks"]
            for path in sorted((root / "expectations").glob("*.json"))}


def generated_docs(root: Path) -> dict[Path, str]:
    """Each generated document's path and the text it should hold now."""
    architecture = root / ARCHITECTURE_DOC
    text = architecture.read_text(encoding="utf-8")
    if _BEGIN not in text or _END not in text:
        raise ValueError(f"{architecture}: the generated-tables markers are missing")
    head, rest = text.split(_BEGIN, 1)
    tail = rest.split(_END, 1)[1]
    return {
        root / CONTRACT_DOC: contract_markdown(_read_checks(root)),
        architecture: head + architecture_tables_markdown() + tail,
    }


def write_docs(root: Path, check: bool = False) -> list[Path]:
    """Rewrite the generated documents (or, with ``check``, only list the stale ones)."""
    stale = []
    for path, text in generated_docs(root).items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(path)
            if not check:
                path.write_text(text, encoding="utf-8")
    return stale
