"""Ingest an OMOP CDM v5.4 (a DuckDB file, or a folder of CSV / Parquet table files)
into the same typed ``raw_*`` tables the native ingest writes. User guide: ``docs/omop.md``.

The CDM is read in place: a ``.duckdb`` file is ATTACHed read-only, table files are
scanned with ``read_csv`` / ``read_parquet``; every CDM table is seen through a
temporary typed view (``_omop_<table>``) and mapped by SQL, never copied whole
into Python. Guarantees, as for native extracts (``pipeline/ingest/native.py``):

* **Nothing lost**: every CDM row the mapping selects (``rows_read`` in
  ``audit_load``; one row per CDM table read) is either loaded or in
  ``audit_quarantine`` (stage ``ingest``, ``omop.*`` rule ids, ``table_name`` the
  CDM table, ``record_id`` / ``source_row`` its primary key).
  rows_read = rows_loaded + rows_quarantined, counted in CDM records.
* **One snapshot**: the snapshot id is ``omop:<hash of the CDM files' sha256>:<mapping
  signature>`` (ingredients, concept sets, mapping version); it is kept as each raw
  table's comment and in ``audit_load.snapshot_id``. Skipped only when all four raw
  tables hold this snapshot; a native extract loaded in between means a reload.
* **Atomic**: the four raw tables and the audit rows are replaced in one transaction.

Mapping decisions (each documented in docs/omop.md):

* ``person_id`` = CDM person_id as text (person_source_value is never loaded; the
  identifier gate reads it and every other ``*_source_value`` and free-text column
  of the clinical tables, and refuses the CDM if they hold identifiers).
* observation: one period per person (the contract has one): the period holding
  most of the person's selected drug exposures, ties to the latest-ending one;
  the others are quarantined (``omop.other_observation_period``).
* exposure end follows the OHDSI drug_era script:
  ``COALESCE(drug_exposure_end_date, start + NULLIF(days_supply, 0), start + 1)``
  and ``days_supply = end - start + 1``, so the transform's ``supply_end``
  (dispensed_on + days_supply - 1) equals the era script's exposure end.
* exposures longer than 365 days (the contract's maximum) are split into
  consecutive segments of at most 365 days (``<id>#2``, ``<id>#3``...): the
  episode they form is unchanged, and validation's days_supply rule holds.

>>> icd_prefix_like("F13.2")
'F13.2%'
>>> gender_sex_sql("g")
"case g when 8532 then 'F' when 8507 then 'M' else 'U' end"
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import duckdb

from pipeline.config import Config
from pipeline.contract import CODE_SYSTEMS, TABLES
from pipeline.errors import ExtractError
from pipeline.ingest.files import FileScan, TableLoad, reconcile_lines, scan_file, sha256_of, sniff_delimiter, unreadable_csv
from pipeline.privacy.gate import refuse_cdm_identifiers
from pipeline.warehouse import ensure_audit_tables, new_id, raw_tables_on_spark, run_sql_file, scalar, sql_literal, table_exists

# Bump when the mapping below changes: a CDM loaded by an older mapping is reloaded.
MAPPING_VERSION = 1
CONCEPT_SET_DIR = Path(__file__).resolve().parent / "concept_sets"
# The mapping, one SQL file per step: CTE chains ending in ``final``, {{ name }}
# placeholders filled by pipeline.warehouse.run_sql_file (as the transform's SQL).
SQL_DIR = Path(__file__).resolve().parent / "sql" / "omop"
# The contract's days_supply maximum (365): longer exposures are split into segments.
MAX_DAYS_SUPPLY = int(TABLES["prescriptions"].column("days_supply").maximum)
# OMOP gender concepts (CDM v5.4 Gender vocabulary): FEMALE 8532, MALE 8507.
FEMALE, MALE = 8532, 8507
# OMOP unit concepts (UCUM) -> factor to mg.
MG_PER_UNIT = {8576: 1.0, 9655: 0.001, 8504: 1000.0}  # milligram, microgram, gram
MILLILITER = 8587
RAW_TABLES = ("persons", "prescriptions", "diagnoses", "follow_ups")

# CDM columns read, with the type each is cast to; "!" marks columns without which
# the table cannot be used. Tables missing from REQUIRED_TABLES stop the load.
CDM_COLUMNS: dict[str, dict[str, str]] = {
    "person": {"person_id": "BIGINT!", "gender_concept_id": "BIGINT", "year_of_birth": "BIGINT",
               "birth_datetime": "DATE"},
    "observation_period": {"observation_period_id": "BIGINT", "person_id": "BIGINT!",
                           "observation_period_start_date": "DATE!", "observation_period_end_date": "DATE!"},
    "death": {"person_id": "BIGINT!", "death_date": "DATE!"},
    "drug_exposure": {"drug_exposure_id": "BIGINT!", "person_id": "BIGINT!", "drug_concept_id": "BIGINT!",
                      "drug_exposure_start_date": "DATE!", "drug_exposure_end_date": "DATE",
                      "days_supply": "DOUBLE", "quantity": "DOUBLE", "provider_id": "BIGINT"},
    "condition_occurrence": {"condition_occurrence_id": "BIGINT!", "person_id": "BIGINT!",
                             "condition_concept_id": "BIGINT!", "condition_start_date": "DATE!",
                             "condition_source_concept_id": "BIGINT"},
    "observation": {"observation_id": "BIGINT!", "person_id": "BIGINT!", "observation_concept_id": "BIGINT!",
                    "observation_date": "DATE!", "value_as_number": "DOUBLE", "value_as_concept_id": "BIGINT"},
    "measurement": {"measurement_id": "BIGINT!", "person_id": "BIGINT!", "measurement_concept_id": "BIGINT!",
                    "measurement_date": "DATE!", "value_as_number": "DOUBLE", "value_as_concept_id": "BIGINT"},
    "concept": {"concept_id": "BIGINT!", "concept_name": "VARCHAR!", "domain_id": "VARCHAR",
                "vocabulary_id": "VARCHAR!", "concept_class_id": "VARCHAR!", "standard_concept": "VARCHAR",
                "concept_code": "VARCHAR!", "invalid_reason": "VARCHAR"},
    "concept_ancestor": {"ancestor_concept_id": "BIGINT!", "descendant_concept_id": "BIGINT!"},
    "concept_relationship": {"concept_id_1": "BIGINT!", "concept_id_2": "BIGINT!", "relationship_id": "VARCHAR!",
                             "invalid_reason": "VARCHAR"},
    "drug_strength": {"drug_concept_id": "BIGINT!", "ingredient_concept_id": "BIGINT!", "amount_value": "DOUBLE",
                      "amount_unit_concept_id": "BIGINT", "numerator_value": "DOUBLE",
                      "numerator_unit_concept_id": "BIGINT", "denominator_value": "DOUBLE",
                      "denominator_unit_concept_id": "BIGINT"},
}
REQUIRED_TABLES = ("person", "observation_period", "drug_exposure", "concept", "concept_ancestor")
FILE_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".csv.gz": "csv", ".parquet": "parquet"}


@dataclass
class CdmTable:
    """One CDM table as read: where from, and the typed view over it."""

    name: str
    source_file: str
    file_format: str
    sha256: str
    relation: str | None  # SQL relation over the raw table; None when absent
    note: str = ""
    file_scan: FileScan | None = None  # sha256 and line counts of an uncompressed CSV file


@dataclass
class OmopSummary:
    load_id: str
    source: str
    tables: list[TableLoad]
    skipped: bool = False
    notes: list[str] = field(default_factory=list)
    ingredients: dict[str, int] = field(default_factory=dict)  # drug label -> RxNorm ingredient concept id
    concept_sets: dict[str, list[dict]] = field(default_factory=dict)  # resolved concept sets

    @property
    def changed(self) -> bool:
        return not self.skipped


# --------------------------------------------------------------------------- helpers


def icd_prefix_like(prefix: str) -> str:
    """A LIKE pattern for an ICD code prefix (codes keep their dots in OMOP concept_code)."""
    return prefix + "%"


def gender_sex_sql(column: str) -> str:
    """SQL mapping an OMOP gender concept to the contract's sex (F, M, else U)."""
    return f"case {column} when {FEMALE} then 'F' when {MALE} then 'M' else 'U' end"


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _typed(expression: str, duckdb_type: str) -> str:
    """SQL casting a CDM value to its type; NULL when it does not cast (never an error)."""
    if duckdb_type == "BIGINT":
        return f"coalesce(try_cast({expression} as bigint), try_cast(try_cast({expression} as double) as bigint))"
    if duckdb_type == "DOUBLE":
        return f"case when isfinite(try_cast({expression} as double)) then try_cast({expression} as double) end"
    if duckdb_type == "DATE":
        # ISO dates, DuckDB dates/timestamps, or Athena's YYYYMMDD
        return (f"coalesce(try_cast({expression} as date), "
                f"try_cast(try_strptime(cast({expression} as varchar), '%Y%m%d') as date))")
    return f"nullif(trim(cast({expression} as varchar)), '')"


def load_concept_sets() -> dict[str, dict]:
    """The JSON concept sets shipped in ``concept_sets/``, by file stem."""
    return {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted(CONCEPT_SET_DIR.glob("*.json"))}


def benzodiazepine_names(config: Config) -> list[str]:
    """Every benzodiazepine (equivalence table + ATC N05BA/N05CD/N03AE01 of concept_sets/benzodiazepines.json),
    read for the cohort's washout rule."""
    atc = load_concept_sets().get("benzodiazepines", {}).get("drugs", [])
    return sorted({d.strip().lower() for d in config.drugs.mg_equivalent_to_10mg_diazepam} | {str(e["inn"]).lower() for e in atc})


def snapshot_signature(table_sha256: Iterable[tuple[str, str]], config: Config) -> str:
    """The OMOP extract's snapshot id on either engine: ``omop:<sha256 of the (CDM table, sha256)
    pairs read>:<mapping_signature>``; a new CDM or a new mapping is a new snapshot."""
    source = hashlib.sha256(json.dumps(sorted(table_sha256)).encode()).hexdigest()
    return f"omop:{source}:{mapping_signature(config)}"


def mapping_signature(config: Config) -> str:
    """sha256 of everything the mapping depends on besides the source itself."""
    payload = {
        "version": MAPPING_VERSION,
        "ingredients": [d.strip().lower() for d in config.drugs.ingredients],
        "benzodiazepines": benzodiazepine_names(config),
        "dependence_prefixes": [config.outcome.dependence_icd10_prefixes, config.outcome.dependence_icd10cm_prefixes],
        "concept_sets": load_concept_sets(),
        "sql": {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(SQL_DIR.glob("*.sql"))},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------- source discovery


def _table_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """CDM table name -> (file, format) in a folder (names case-insensitive: PERSON.csv = person.parquet)."""
    found: dict[str, tuple[Path, str]] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        name = path.name.lower()
        for suffix, fmt in FILE_SUFFIXES.items():
            if name.endswith(suffix):
                table = name[: -len(suffix)]
                if table in CDM_COLUMNS:
                    if table in found:
                        raise ExtractError(f"{folder}: CDM table '{table}' given twice ({found[table][0].name} and {path.name}); keep one")
                    found[table] = (path, fmt)
                break
    return found


def _scan(path: Path, fmt: str) -> str:
    if fmt == "parquet":
        return f"read_parquet({sql_literal(str(path))})"
    delimiter = sniff_delimiter(path)
    # Athena vocabulary files are tab-separated and unquoted (names may hold a lone ").
    quote = "''" if delimiter == "\t" else "'\"'"
    return (f"read_csv({sql_literal(str(path))}, all_varchar = true, header = true, "
            f"delim = {sql_literal(delimiter)}, quote = {quote}, max_line_size = 20000000)")


def _attach(con: duckdb.DuckDBPyConnection, path: Path, alias: str) -> dict[str, str]:
    """ATTACH a CDM DuckDB file read-only; CDM table name -> qualified relation."""
    try:
        con.execute(f"attach {sql_literal(str(path))} as {alias} (read_only)")
    except duckdb.Error as error:
        raise ExtractError(f"{path.name}: cannot be opened as a DuckDB database ({str(error).splitlines()[0][:200]})") from None
    objects = con.execute(
        f"""select schema_name, table_name from duckdb_tables() where database_name = {sql_literal(alias)}
            union all
            select schema_name, view_name from duckdb_views() where database_name = {sql_literal(alias)} and not internal"""
    ).fetchall()
    by_schema: dict[str, dict[str, str]] = {}
    for schema, table in objects:
        by_schema.setdefault(schema, {})[table.lower()] = table
    candidates = [schema for schema, tables in by_schema.items() if "person" in tables and "drug_exposure" in tables]
    if not candidates:
        raise ExtractError(f"{path.name}: no schema holds the CDM tables person and drug_exposure; is this an OMOP CDM?")
    # a CDM and a results schema side by side: prefer main, then cdm
    schema = sorted(candidates, key=lambda s: (s != "main", s != "cdm", s))[0]
    return {
        name: f"{alias}.{_quote(schema)}.{_quote(actual)}"
        for name, actual in by_schema[schema].items()
        if name in CDM_COLUMNS
    }


def discover(con: duckdb.DuckDBPyConnection, source: Path, alias: str) -> list[CdmTable]:
    """Find the CDM tables in ``source`` (a .duckdb file or a folder of table files)."""
    source = Path(source)
    if not source.exists():
        raise ExtractError(f"OMOP CDM not found: {source}")
    tables: list[CdmTable] = []
    if source.is_file():
        relations = _attach(con, source, alias)
        digest = sha256_of(source)  # the file's sha256, once, for every table in it
        for name in CDM_COLUMNS:
            tables.append(CdmTable(name, f"db:{name}", "duckdb", digest, relations.get(name)))
    else:
        files = _table_files(source)
        for name in CDM_COLUMNS:
            if name in files:
                path, fmt = files[name]
                scan = scan_file(path)
                tables.append(CdmTable(name, str(path.resolve()), fmt, scan.sha256, _scan(path, fmt),
                                       file_scan=scan if fmt == "csv" and not path.name.lower().endswith(".gz") else None))
            else:
                tables.append(CdmTable(name, "", "", "", None))
    missing = [t.name for t in tables if t.relation is None and t.name in REQUIRED_TABLES]
    if missing:
        raise ExtractError(
            f"{source}: CDM table{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing "
            f"(needed: {', '.join(REQUIRED_TABLES)}; a folder holds one <table>.csv or .parquet each)"
        )
    return tables


def _check_csv_records(con: duckdb.DuckDBPyConnection, table: CdmTable) -> None:
    """A CDM CSV file holds one record per line: refuse (naming the line) a quote that runs on.

    The same rule as native files (``pipeline.ingest.native.reconcile_lines``): a
    stray quote would otherwise merge the following lines into one record, and the
    CDM rows they hold would vanish without a trace. Tab-separated (Athena) files
    are read without quoting, so only blank lines can differ there.
    """
    if table.relation is None or table.file_scan is None:
        return
    try:
        records = scalar(con, f"select count(*) from {table.relation}")
    except duckdb.Error as error:
        raise unreadable_csv(error, Path(table.source_file)) from None
    path = Path(table.source_file)
    reconcile_lines(path, table.file_scan, records, [], quoted=sniff_delimiter(path) != "\t")


def _create_typed_view(con: duckdb.DuckDBPyConnection, table: CdmTable) -> None:
    """``_omop_<table>``: the CDM table's columns we use, typed; an empty view when absent or unusable."""
    spec = CDM_COLUMNS[table.name]
    view = f"_omop_{table.name}"
    empty = "select " + ", ".join(f"NULL::{t.rstrip('!')} as {c}" for c, t in spec.items()) + " where false"
    if table.relation is None:
        con.execute(f"create or replace temp view {view} as {empty}")
        return
    try:
        columns = con.sql(f"select * from {table.relation} limit 0").columns
    except duckdb.Error as error:
        raise ExtractError(f"{table.source_file}: cannot be read ({str(error).strip().splitlines()[0][:200]})") from None
    by_lower = {c.strip().lower(): c for c in columns}
    present = [c for c in spec if c in by_lower]
    required = [c for c, t in spec.items() if t.endswith("!")]
    if not present:
        # e.g. Eunomia stores its empty tables with placeholder columns (column00, ...)
        table.note = f"{table.name}: present but without any CDM column ({', '.join(columns[:3])}, ...): read as empty"
        table.relation = None
        con.execute(f"create or replace temp view {view} as {empty}")
        return
    missing = [c for c in required if c not in by_lower]
    if missing:
        raise ExtractError(
            f"{table.source_file or table.name}: CDM column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} missing (found: {', '.join(columns)})"
        )
    selects = []
    for column, kind in spec.items():
        kind = kind.rstrip("!")
        expression = _typed(_quote(by_lower[column]), kind) if column in by_lower else f"NULL::{kind}"
        selects.append(f"{expression} as {column}")
    con.execute(f"create or replace temp view {view} as select {', '.join(selects)} from {table.relation}")


# --------------------------------------------------------------------------- mapping SQL
# The SQL is in sql/omop/*.sql, one file per step, each a chain of named CTEs ending in
# ``final``; they write temp tables ``_omop_*`` (rows to load with their source key).
# Python builds only the VALUES lists the concept sets and settings give.


def _in_list(values) -> str:
    """A SQL ``in (...)`` list of literals.

    >>> _in_list(["ICD10", "O'Brien"]), _in_list([8576, 9655])
    ("('ICD10', 'O''Brien')", '(8576, 9655)')
    """
    return "(" + ", ".join(sql_literal(v) for v in values) + ")"


def _ingredient_rows(config: Config) -> str:
    tokens = [(d.strip().lower(), True) for d in config.drugs.ingredients if d.strip()]
    tokens += [(name, False) for name in benzodiazepine_names(config)]
    return "values " + ", ".join(f"({sql_literal(t)}, {sql_literal(a)})" for t, a in tokens)


def _map_ingredients(con: duckdb.DuckDBPyConnection, config: Config) -> dict[str, int]:
    run_sql_file(con, SQL_DIR / "ingredients.sql", wanted=_ingredient_rows(config))
    found = dict(con.execute("select drug, ingredient_concept_id from _omop_ingredients where analysed order by 1").fetchall())
    wanted = [d.strip().lower() for d in config.drugs.ingredients if d.strip()]
    if not found:
        examples = [r[0] for r in con.execute(
            """select lower(concept_name) from _omop_concept where vocabulary_id = 'RxNorm'
               and concept_class_id = 'Ingredient' and standard_concept = 'S' order by 1 limit 5"""
        ).fetchall()]
        raise ExtractError(
            f"drugs.ingredients {', '.join(repr(w) for w in wanted)}: no standard RxNorm Ingredient of that name or "
            f"concept id in this CDM's concept table (it has e.g. {', '.join(examples) or 'none'}); "
            "set --set drugs.ingredients=<name>"
        )
    return found


def _resolve_condition_set(con: duckdb.DuckDBPyConnection, config: Config, concept_set: dict) -> list[dict]:
    """Standard condition concept -> (ICD code, system) to emit, from the concept set JSON (see its description)."""
    dependence = {
        "ICD10": [p.replace(".", "").upper() for p in config.outcome.dependence_icd10_prefixes],
        "ICD10CM": [p.replace(".", "").upper() for p in config.outcome.dependence_icd10cm_prefixes],
    }
    explicit = [
        (int(c["concept_id"]), str(c["emit_code"]), str(c["code_system"]), 0) for c in concept_set.get("standard_concepts", [])
    ]
    prefixes = [(p["code_system"], icd_prefix_like(p["code_prefix"])) for p in concept_set.get("icd_source_codes", [])]
    patterns = [
        (p["pattern"].lower(), p["emit_code"], p["code_system"], order)
        for order, p in enumerate(concept_set.get("standard_name_patterns", []), start=1)
    ]
    explicit_sql = "values " + ", ".join(f"({i}, {sql_literal(c)}, {sql_literal(s)}, {o})" for i, c, s, o in explicit) if explicit else "select NULL::bigint, NULL::varchar, NULL::varchar, NULL::integer where false"
    prefix_sql = "values " + ", ".join(f"({sql_literal(s)}, {sql_literal(p)})" for s, p in prefixes) if prefixes else "select NULL::varchar, NULL::varchar where false"
    pattern_sql = "values " + ", ".join(f"({sql_literal(p)}, {sql_literal(c)}, {sql_literal(s)}, {o})" for p, c, s, o in patterns) if patterns else "select NULL::varchar, NULL::varchar, NULL::varchar, NULL::integer where false"
    dependence_sql = " or ".join(
        f"(system = {sql_literal(system)} and replace(code, '.', '') like {sql_literal(p + '%')})"
        for system, codes in dependence.items() for p in codes
    ) or "false"
    run_sql_file(con, SQL_DIR / "condition_set.sql", explicit=explicit_sql, prefixes=prefix_sql, patterns=pattern_sql,
                 dependence=dependence_sql)
    rows = con.execute("select concept_id, concept_name, code, code_system, found_by from _omop_condition_set order by code, concept_id").fetchall()
    return [dict(zip(("concept_id", "concept_name", "code", "code_system", "found_by"), r)) for r in rows]


def _resolve_follow_up_set(con: duckdb.DuckDBPyConnection, concept_set: dict) -> list[dict]:
    rows = []
    for order, (component, spec) in enumerate(concept_set.get("components", {}).items(), start=1):
        for concept_id in spec.get("concept_ids", []):
            rows.append(f"({int(concept_id)}, NULL::varchar, {sql_literal(component)}, {order})")
        for pattern in spec.get("name_patterns", []):
            rows.append(f"(NULL::bigint, {sql_literal(pattern.lower())}, {sql_literal(component)}, {order})")
    wanted = ("values " + ", ".join(rows)) if rows else "select NULL::bigint, NULL::varchar, NULL::varchar, NULL::integer where false"
    run_sql_file(con, SQL_DIR / "follow_up_set.sql", wanted=wanted)
    found = con.execute("select concept_id, concept_name, component from _omop_follow_up_set order by component, concept_id").fetchall()
    return [dict(zip(("concept_id", "concept_name", "component"), r)) for r in found]


REASONS = {
    "omop.unmapped_drug": "drug_concept_id is 0 or missing: the drug cannot be identified",
    "omop.no_ingredient": "the RxNorm drug concept has no Ingredient ancestor in concept_ancestor",
    "omop.unknown_drug_concept": "drug_concept_id is not in the CDM's concept table (vocabulary subset?)",
    "omop.end_before_start": "end date before start date",
    "omop.negative_days_supply": "days_supply is negative (the OHDSI era script skips these too)",
    "omop.person_missing": "person_id is not in the person table",
    "omop.no_observation_period": "person has no usable observation_period",
    "omop.other_observation_period": "person has several observation periods; another one was used (docs/omop.md)",
    "omop.duplicate_death": "person has several death rows; the earliest date was used",
    "omop.type.sds_score": "Severity of Dependence Scale value is not an integer",
}


def _reason(rule_id: str) -> str:
    if rule_id in REASONS:
        return REASONS[rule_id]
    if rule_id.startswith("omop.required_missing."):
        return f"required value {rule_id.rsplit('.', 1)[1]} is missing or does not cast"
    return rule_id


def _signature_of_raw_tables(con: duckdb.DuckDBPyConnection) -> set[str | None]:
    comments = set()
    for name in RAW_TABLES:
        if not table_exists(con, f"raw_{name}"):
            return {None}
        comments.add(scalar(con, "select comment from duckdb_tables() where table_name = ? and schema_name = 'main' "
                                 "and database_name = current_database()", [f"raw_{name}"]))
    return comments


def _mg_factor(column: str) -> str:
    return "case " + " ".join(f"when {column} = {u} then {f!r}" for u, f in MG_PER_UNIT.items()) + " end"


def map_rows(con, concept_sets: dict) -> None:
    """The mapping proper: the CDM views (``_omop_*``) and resolved concept sets -> the
    ``_omop_*_rows`` tables. Both engines run these same files (``pipeline/spark/omop.py``
    through a connection-shaped adapter that transpiles each statement)."""
    negative_names = _in_list(concept_sets["follow_up_concepts"].get("negative_value_names", ["no"]))
    run_sql_file(con, SQL_DIR / "drug_exposures.sql",
                 mg_units=_in_list(MG_PER_UNIT), mg_factor_amount=_mg_factor("amount_unit_concept_id"),
                 mg_factor_numerator=_mg_factor("numerator_unit_concept_id"), milliliter=MILLILITER,
                 max_days=MAX_DAYS_SUPPLY)
    run_sql_file(con, SQL_DIR / "persons.sql", sex=gender_sex_sql("persons.gender_concept_id"))
    run_sql_file(con, SQL_DIR / "conditions.sql", code_systems=_in_list(CODE_SYSTEMS))
    run_sql_file(con, SQL_DIR / "follow_ups.sql", negative_names=negative_names)


def load_omop(con: duckdb.DuckDBPyConnection, source: Path, config: Config) -> OmopSummary:
    """Map the OMOP CDM at ``source`` into ``raw_*`` (see the module docstring and docs/omop.md)."""
    source = Path(source)
    ensure_audit_tables(con)
    load_id = new_id()
    alias = f"_omop_source_{load_id}"
    attached = False
    summary = OmopSummary(load_id, str(source.resolve()), [])
    try:
        attached = source.is_file()
        tables = discover(con, source, alias)
        signature = snapshot_signature(((t.name, t.sha256) for t in tables if t.relation), config)
        if _signature_of_raw_tables(con) == {signature} and not raw_tables_on_spark(con):
            summary.skipped = True
            summary.tables = [TableLoad(t.name, t.source_file, t.file_format, t.sha256, skipped=True) for t in tables if t.relation]
            return summary
        for table in tables:
            _check_csv_records(con, table)
            _create_typed_view(con, table)
            if table.note:
                summary.notes.append(table.note)
        read = [t for t in tables if t.relation is not None]
        # the identifier gate, on every *_source_value and free-text column of the
        # clinical tables (and any column outside the CDM), before anything is written
        refuse_cdm_identifiers(con, {t.name: (Path(t.source_file).name if t.file_format != "duckdb" else f"{source.name}:{t.name}",
                                              t.relation) for t in read})
        summary.ingredients = _map_ingredients(con, config)
        missing = [d for d in (x.strip().lower() for x in config.drugs.ingredients) if d and d not in summary.ingredients]
        if missing:
            summary.notes.append(f"drugs.ingredients {', '.join(missing)}: not in this CDM's vocabulary; no prescriptions")
        concept_sets = load_concept_sets()
        summary.concept_sets["dependence_conditions"] = _resolve_condition_set(con, config, concept_sets["dependence_conditions"])
        summary.concept_sets["follow_up_concepts"] = _resolve_follow_up_set(con, concept_sets["follow_up_concepts"])
        if not summary.concept_sets["dependence_conditions"]:
            summary.notes.append("no sedative/hypnotic dependence or withdrawal concept in this vocabulary: "
                                 "diagnoses come from ICD-10 source codes only")
        if not summary.concept_sets["follow_up_concepts"]:
            summary.notes.append("no follow-up assessment concept (SDS, withdrawal, dependence) in this vocabulary: zero follow_ups")

        con.execute("begin transaction")
        try:
            map_rows(con, concept_sets)
            _write_raw_tables(con, load_id, signature)
            counts = _write_audit(con, load_id, read, signature)
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
        summary.tables = counts
        return summary
    finally:
        for view in CDM_COLUMNS:
            try:
                con.execute(f"drop view if exists _omop_{view}")
            except duckdb.Error:
                pass
        for temp in ("_omop_ingredients", "_omop_drug_rows", "_omop_prescriptions", "_omop_periods", "_omop_person_rows",
                     "_omop_period_rows", "_omop_death_rows", "_omop_condition_set", "_omop_condition_rows",
                     "_omop_follow_up_set", "_omop_follow_up_rows", "_omop_quarantine"):
            try:
                con.execute(f"drop table if exists {temp}")
            except duckdb.Error:
                pass
        if attached:
            try:
                con.execute(f"detach {alias}")
            except duckdb.Error:
                pass


def _write_raw_tables(con: duckdb.DuckDBPyConnection, load_id: str, signature: str) -> None:
    """Replace raw_* with the mapped rows, typed exactly as the native ingest types them."""
    run_sql_file(con, SQL_DIR / "raw_tables.sql", load_id=sql_literal(load_id), snapshot=sql_literal(signature))


# CDM table -> (temp table of its selected rows, record id column, source row column)
_ROW_TABLES = {
    "person": ("_omop_person_rows", "person_id", "person_id"),
    "observation_period": ("_omop_period_rows", "observation_period_id", "observation_period_id"),
    "death": ("_omop_death_rows", "person_id", "person_id"),
    "drug_exposure": ("_omop_drug_rows", "drug_exposure_id", "drug_exposure_id"),
    "condition_occurrence": ("_omop_condition_rows", "condition_occurrence_id", "condition_occurrence_id"),
}


def _write_audit(con: duckdb.DuckDBPyConnection, load_id: str, read: list[CdmTable], snapshot: str) -> list[TableLoad]:
    """audit_quarantine rows (stage 'ingest') and one audit_load row per CDM table read, with the snapshot id."""
    con.execute(
        """create or replace temp table _omop_quarantine (load_id varchar, stage varchar, table_name varchar,
           record_id varchar, source_row bigint, rule_id varchar, reason varchar)"""
    )
    lid = sql_literal(load_id)
    for table, (rows, id_column, row_column) in _ROW_TABLES.items():
        # one CDM record may give several rows (ingredients): quarantine it once
        con.execute(
            f"""insert into _omop_quarantine
                select distinct {lid}, 'ingest', {sql_literal(table)}, cast({id_column} as varchar),
                       {row_column}::bigint, rule_id, NULL
                from {rows} where rule_id is not null"""
        )
    for table in ("observation", "measurement"):
        con.execute(
            f"""insert into _omop_quarantine
                select {lid}, 'ingest', cdm_table, cdm_table || ':' || record_id, source_row, rule_id, NULL
                from _omop_follow_up_rows where rule_id is not null and cdm_table = {sql_literal(table)}"""
        )
    for rule_id, in con.execute("select distinct rule_id from _omop_quarantine").fetchall():
        con.execute("update _omop_quarantine set reason = ? where rule_id = ?", [_reason(rule_id), rule_id])
    # a new load replaces the whole previous extract (native or OMOP): its ingest and
    # validation quarantine go with it
    con.execute("delete from audit_quarantine where stage in ('ingest', 'validate')")
    con.execute("insert into audit_quarantine select * from _omop_quarantine")

    counts_sql = {
        "person": "select count(*) filter (where rule_id is null), count(*) filter (where rule_id is not null) from _omop_person_rows",
        "observation_period": "select count(*) filter (where rule_id is null), count(*) filter (where rule_id is not null) from _omop_period_rows",
        "death": "select count(*) filter (where rule_id is null), count(*) filter (where rule_id is not null) from _omop_death_rows",
        "drug_exposure": """select count(distinct drug_exposure_id) filter (where rule_id is null),
                                   count(*) filter (where rule_id is not null)
                            from (select distinct drug_exposure_id, rule_id, drug_concept_id from _omop_drug_rows)""",
        "condition_occurrence": "select count(*) filter (where rule_id is null), count(*) filter (where rule_id is not null) from _omop_condition_rows",
        "observation": "select count(*) filter (where rule_id is null), count(*) filter (where rule_id is not null) from _omop_follow_up_rows where cdm_table = 'observation'",
        "measurement": "select count(*) filter (where rule_id is null), count(*) filter (where rule_id is not null) from _omop_follow_up_rows where cdm_table = 'measurement'",
    }
    loads = []
    now = dt.datetime.now()
    for table in read:
        if table.name in counts_sql:
            loaded, quarantined = con.execute(counts_sql[table.name]).fetchall()[0]
        else:
            # vocabulary tables are lookups: every row is read and available to the mapping
            loaded, quarantined = scalar(con, f"select count(*) from _omop_{table.name}"), 0
        load = TableLoad(table.name, table.source_file, table.file_format, table.sha256,
                         rows_read=loaded + quarantined, rows_loaded=loaded, rows_quarantined=quarantined,
                         snapshot_id=snapshot)
        loads.append(load)
        con.execute(
            """insert into audit_load (load_id, table_name, source_file, file_format, sha256, rows_read,
               rows_loaded, rows_quarantined, loaded_at, snapshot_id) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [load_id, load.table, load.source_file, load.file_format, load.sha256, load.rows_read,
             load.rows_loaded, load.rows_quarantined, now, snapshot],
        )
    return loads
