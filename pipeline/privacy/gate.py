"""De-identification gate: refuse an extract that carries direct identifiers,
before anything from it is stored.

Ingest hands the gate one sample per table (up to 10,000 rows, every column as
text, extra columns included); ``refuse_if_identifiers`` raises ``PrivacyError``
with one line naming table, column and kind -- never a value. Columns are
judged by their name and by the values sampled from *every* column, contract
columns included: a ``person_id`` holding e-mail addresses is an identifier.
What is looked for, and the thresholds, are in ``docs/privacy.md``.

>>> persons = pd.DataFrame({"person_id": ["P000001", "P000002"], "birth_year": ["1970", "1982"],
...                         "sex": ["F", "M"], "region": ["North", "South West"]})
>>> check_tables({"persons": persons})
[]
>>> persons["contact"] = ["ann@example.org", ""]
>>> [str(f) for f in check_tables({"persons": persons})]
['persons.contact: e-mail address (found in 100% of sampled values)']
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import duckdb
import pandas as pd

from pipeline.contract import TABLES
from pipeline.errors import PrivacyError

DEFAULT_SAMPLE_ROWS = 10_000


@dataclass(frozen=True)
class Finding:
    """One column that looks like a direct identifier. Holds no values."""

    table: str
    column: str
    kind: str
    detected_by: str  # "column name" | "values"
    share: float  # share of the sampled non-empty values that match (column name: share non-empty)

    def __str__(self) -> str:
        how = "by its name" if self.detected_by == "column name" else f"found in {self.share:.0%} of sampled values"
        return f"{self.table}.{self.column}: {self.kind} ({how})"


# ---------------------------------------------------------------- column names

# Kind -> pattern over the normalised name (lower case, runs of other
# characters turned into "_"); tokens are matched whole, between "_" or ends.
_NAME_RULES: tuple[tuple[str, str], ...] = (
    # A bare "name" only when it is the whole column name: drug_name is fine.
    ("person name", r"(first|last|given|family|sur|fore|middle|maiden|full|patient|person|client|member|user"
                    r"|prescriber|doctor|gp|physician|clinician|pharmacist|nurse|contact|kin|guardian|mother|father)"
                    r"_?names?|^names?$|initials"),
    ("e-mail address", r"e_?mail(_?address)?"),
    ("phone number", r"(tele)?phone(_?(no|num|number))?|mobile(_?(no|num|number))?|cell_?phone|fax|tel"),
    ("social security number", r"ssn|social_security(_number)?"),
    ("NHS number", r"nhs(_?(no|num|number))?|chi_?(no|number)"),
    ("national identifier", r"national_?id|national_insurance(_number)?|ni_?number|nino|passport(_?(no|number))?"
                            r"|driver_?licen[cs]e(_?(no|number))?|mrn|medical_record_number|hospital_number"
                            r"|medicare_number|medicaid_number|insurance_number|tax_id"),
    ("address", r"address|addr|street|address_line_?\d?|house_number"),
    ("postcode or ZIP code", r"post_?code|postal_?code|zip|zip_?code|zipcode"),
    ("date of birth", r"dob|date_of_birth|birth_?date|birth_?day"),
    ("free text", r"notes?|comments?|free_?text|narrative|remarks?|clinical_notes?"),
)
_NAME_PATTERNS = [(kind, re.compile(rf"(^|_)({pattern})(_|$)")) for kind, pattern in _NAME_RULES]


def _normalise(name: str) -> str:
    # camelCase -> camel_case, then anything not alphanumeric -> "_"
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(name))
    return re.sub(r"[^a-z0-9]+", "_", spaced.lower()).strip("_")


def identifier_kind_of_name(name: str) -> str | None:
    """The kind of identifier a column name announces, or None.

    >>> [identifier_kind_of_name(c) for c in ("Surname", "patientEmail", "nhs_no", "Name", "birth_year", "drug_name")]
    ['person name', 'e-mail address', 'NHS number', 'person name', None, None]
    """
    normalised = _normalise(name)
    for kind, pattern in _NAME_PATTERNS:
        if pattern.search(normalised):
            return kind
    return None


# ---------------------------------------------------------------- values

_EMAIL = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_SSN = re.compile(r"(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}")
_NHS_FORMATTED = re.compile(r"\d{3}[ -]\d{3}[ -]\d{4}")
_TEN_DIGITS = re.compile(r"\d{10}")
_PHONE_FORMATTED = re.compile(r"(\+\d{1,3}[ .-]?)?(\(\d{1,5}\)[ .-]?)?\d{2,5}([ .-]\d{2,5}){1,4}")
_PHONE_BARE = re.compile(r"(\+\d{9,14}|0[1-9]\d{8,9})")
_STREET = re.compile(
    r"\b\d{1,5}[A-Za-z]?,?\s+([A-Za-z'.-]+\s+){1,4}(street|st|road|rd|avenue|ave|lane|ln|drive|dr|close|court|ct"
    r"|boulevard|blvd|way|place|pl|terrace|crescent|square|sq|highway|hwy|parkway|pkwy|gardens|grove|mews)\b\.?",
    re.IGNORECASE,
)
_UK_POSTCODE = re.compile(r"(GIR ?0AA|[A-PR-UWYZ][A-HK-Y]?\d[A-Z\d]? ?\d[ABD-HJLNP-UW-Z]{2})", re.IGNORECASE)
_US_ZIP = re.compile(r"\d{5}(-\d{4})?")
_FULL_DATE = re.compile(
    r"(\d{4}-\d{1,2}-\d{1,2}|\d{4}/\d{1,2}/\d{1,2}|\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}|\d{8})([ T].*)?"
    r"|\d{1,2}\s+[A-Za-z]{3,9}\.?\s+\d{4}"
)
_WORD = re.compile(r"[^\W\d_]{2,}")


def _nhs_check_digit_ok(digits: str) -> bool:
    """UK NHS number: 10 digits, the last a mod-11 check digit.

    >>> _nhs_check_digit_ok("9434765919"), _nhs_check_digit_ok("9434765918")
    (True, False)
    """
    if len(digits) != 10 or not digits.isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1)))
    check = 11 - total % 11
    check = 0 if check == 11 else check
    return check != 10 and check == int(digits[9])


def _is_phone(value: str) -> bool:
    if _PHONE_BARE.fullmatch(value):
        return True
    if not _PHONE_FORMATTED.fullmatch(value) or re.fullmatch(r"\d+\.\d+", value):
        return False  # a decimal number is not a phone number
    if re.fullmatch(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}", value):
        return False  # a date
    return 9 <= sum(ch.isdigit() for ch in value) <= 15


def _is_free_text(value: str) -> bool:
    return len(value) >= 40 and len(_WORD.findall(value)) >= 6


@dataclass(frozen=True)
class _ValueRule:
    kind: str
    matches: Callable[[str], bool]
    # A column is flagged when at least this share of its sampled non-empty
    # values match. 0 = any single value: the pattern is specific enough that
    # one hit is a leaked identifier, not chance.
    min_share: float
    applies: Callable[[str, str], bool] = lambda table, column: True


def _is_id_column(column: str) -> bool:
    return _normalise(column).endswith("id")


def _contract_type(table: str, column: str) -> str | None:
    contract = TABLES.get(table)
    if contract and column in contract.column_names:
        return contract.column(column).duckdb_type
    return None


def _zip_applies(table: str, column: str) -> bool:
    # Five-digit numbers are ordinary in id and numeric columns.
    return not _is_id_column(column) and _contract_type(table, column) not in {"BIGINT", "DOUBLE", "DATE"}


def _birth_named(table: str, column: str) -> bool:
    return bool(re.search(r"birth|(^|_)dob(_|$)", _normalise(column)))


_VALUE_RULES: tuple[_ValueRule, ...] = (
    _ValueRule("e-mail address", lambda v: bool(_EMAIL.search(v)), 0.0),
    _ValueRule("social security number", lambda v: bool(_SSN.fullmatch(v)), 0.0),
    _ValueRule("NHS number", lambda v: bool(_NHS_FORMATTED.fullmatch(v)) and _nhs_check_digit_ok(re.sub(r"\D", "", v)), 0.0),
    # Random 10-digit pseudonyms pass the mod-11 check about 1 time in 11.
    _ValueRule("NHS number", lambda v: bool(_TEN_DIGITS.fullmatch(v)) and _nhs_check_digit_ok(v), 0.5),
    _ValueRule("phone number", _is_phone, 0.05),
    _ValueRule("street address", lambda v: bool(_STREET.search(v)), 0.0),
    _ValueRule("full UK postcode", lambda v: bool(_UK_POSTCODE.fullmatch(v.strip())), 0.0),
    _ValueRule("US ZIP code", lambda v: bool(_US_ZIP.fullmatch(v.strip())), 0.5, _zip_applies),
    _ValueRule("date of birth", lambda v: bool(_FULL_DATE.fullmatch(v.strip())), 0.0, _birth_named),
    _ValueRule("free text", _is_free_text, 0.0),
)


_MISSING = frozenset({"", "nan", "none", "null", "na", "<na>", "nat"})


def _non_empty(values: pd.Series) -> list[str]:
    texts = (str(v).strip() for v in values.tolist() if v is not None and v is not pd.NA)
    return [t for t in texts if t.lower() not in _MISSING]


def _check_column(table: str, column: str, values: pd.Series) -> list[Finding]:
    present = _non_empty(values)
    findings = []
    name_kind = identifier_kind_of_name(column)
    if name_kind:
        share = len(present) / len(values) if len(values) else 0.0
        findings.append(Finding(table, column, name_kind, "column name", round(share, 4)))
    if not present:
        return findings
    counts = Counter(present)
    flagged: dict[str, float] = {}
    for rule in _VALUE_RULES:
        if rule.kind in flagged or not rule.applies(table, column):
            continue
        share = sum(n for value, n in counts.items() if rule.matches(value)) / len(present)
        if share > 0 and share >= rule.min_share:
            flagged[rule.kind] = share
    if "NHS number" in flagged or "US ZIP code" in flagged:
        flagged.pop("phone number", None)  # 943 476 5919 and 10001-1234 look like phone numbers too
    for kind, share in flagged.items():
        if kind != name_kind:
            findings.append(Finding(table, column, kind, "values", round(share, 4)))
    return findings


def check_tables(samples: Mapping[str, pd.DataFrame]) -> list[Finding]:
    """Findings for every column, of every sampled table, that looks like a
    direct identifier (by name or by values). ``samples`` maps table name to a
    sample of its rows (any dtypes; values are read as text).
    """
    findings: list[Finding] = []
    for table, frame in samples.items():
        for column in frame.columns:
            findings.extend(_check_column(table, str(column), frame[column]))
    return findings


def sample_relation(relation: duckdb.DuckDBPyRelation, sample_rows: int = DEFAULT_SAMPLE_ROWS,
                    seed: int = 20261122) -> pd.DataFrame:
    """A reproducible sample of a DuckDB relation, every column as text; the
    sampling runs inside DuckDB (reservoir sample), so a large file is never
    loaded whole."""
    columns = ", ".join(f'cast("{c.replace(chr(34), chr(34) * 2)}" as varchar) as "{c.replace(chr(34), chr(34) * 2)}"'
                        for c in relation.columns)
    sql = f"select {columns} from sampled using sample reservoir({int(sample_rows)} rows) repeatable ({int(seed)})"
    return relation.query("sampled", sql).df()


def check_extract(tables: Mapping[str, Any], sample_rows: int = DEFAULT_SAMPLE_ROWS) -> list[Finding]:
    """``check_tables`` over DuckDB relations (sampled in DuckDB) or DataFrames
    (sampled in pandas when longer than ``sample_rows``).

    >>> con = duckdb.connect()
    >>> rel = con.sql("select 'P' || lpad(range::varchar, 6, '0') as person_id, 'x' || range || '@mail.com' as mail from range(50000)")
    >>> [(f.column, f.kind, f.detected_by) for f in check_extract({"persons": rel}, sample_rows=1000)]
    [('mail', 'e-mail address', 'values')]
    """
    samples = {}
    for table, source in tables.items():
        if isinstance(source, duckdb.DuckDBPyRelation):
            samples[table] = sample_relation(source, sample_rows)
        elif isinstance(source, pd.DataFrame):
            samples[table] = source.sample(sample_rows, random_state=0) if len(source) > sample_rows else source
        else:
            raise TypeError(f"table {table!r}: expected a DuckDB relation or a pandas DataFrame, got {type(source).__name__}")
    return check_tables(samples)


def refusal_message(findings: list[Finding]) -> str:
    """One line naming every table, column and kind -- never a value."""
    listed = "; ".join(str(f) for f in findings)
    return (f"extract refused: direct identifiers found -- {listed}. Remove these columns (or replace their "
            "values with pseudonyms) and run again; nothing was stored.")


def refuse_if_identifiers(tables: Mapping[str, Any], sample_rows: int = DEFAULT_SAMPLE_ROWS) -> list[Finding]:
    """Raise ``PrivacyError`` if any table looks like it carries direct
    identifiers; otherwise return [] (so callers can log that the gate passed).

    >>> refuse_if_identifiers({"persons": pd.DataFrame({"person_id": ["P1"], "email": ["a@b.org"]})})
    Traceback (most recent call last):
    ...
    pipeline.errors.PrivacyError: extract refused: direct identifiers found -- persons.email: e-mail address (by its name). Remove these columns (or replace their values with pseudonyms) and run again; nothing was stored.
    """
    findings = check_extract(tables, sample_rows)
    if findings:
        raise PrivacyError(refusal_message(findings))
    return findings


# ---------------------------------------------------------------- k-anonymity


def k_anonymity(
    con: duckdb.DuckDBPyConnection,
    table: str = "raw_persons",
    quasi_identifiers: tuple[str, ...] = ("birth_year", "sex", "region"),
    k: int = 11,
) -> dict[str, Any]:
    """How re-identifiable persons are on their quasi-identifiers (a warning,
    never a refusal). Quasi-identifiers missing from the table are skipped.

    ``smallest_group`` and ``persons_in_small_groups`` are exact counts, meant
    for the run log in the warehouse; publish ``share_in_small_groups`` and
    ``groups_below_k`` instead (the last-guard scan flags the exact counts).

    >>> con = duckdb.connect()
    >>> _ = con.execute("create table raw_persons as select range as person_id, 1950 + range % 3 as birth_year, "
    ...                 "case when range = 0 then 'X' else 'F' end as sex from range(100)")
    >>> k_anonymity(con, k=11)
    {'quasi_identifiers': ['birth_year', 'sex'], 'k': 11, 'persons': 100, 'groups': 4, 'smallest_group': 1, 'groups_below_k': 1, 'persons_in_small_groups': 1, 'share_in_small_groups': 0.01}
    """
    present = {row[0] for row in con.execute(f'describe "{table}"').fetchall()}
    used = [q for q in quasi_identifiers if q in present]
    if not used:
        return {"quasi_identifiers": [], "k": k, "persons": con.execute(f'select count(*) from "{table}"').fetchall()[0][0],
                "groups": 0, "smallest_group": None, "groups_below_k": 0, "persons_in_small_groups": 0,
                "share_in_small_groups": 0.0}
    keys = ", ".join(f'"{q}"' for q in used)
    persons, groups, smallest, below, in_small = con.execute(f"""
        with sized as (select count(*) as persons from "{table}" group by {keys})
        select coalesce(sum(persons), 0), count(*), min(persons),
               count(*) filter (where persons < $k), coalesce(sum(persons) filter (where persons < $k), 0)
        from sized""", {"k": k}).fetchall()[0]
    return {
        "quasi_identifiers": used, "k": k, "persons": int(persons), "groups": int(groups),
        "smallest_group": None if smallest is None else int(smallest), "groups_below_k": int(below),
        "persons_in_small_groups": int(in_small),
        "share_in_small_groups": round(in_small / persons, 4) if persons else 0.0,
    }
