"""The native extract contract (DESIGN.md "Native extract: the input contract").

Each column is documented once, here: its DuckDB type, whether it is required,
and what it means. Ingest types the raw tables from this; validation checks it;
the demo generator writes it.

>>> [c.name for c in TABLES["persons"].required_columns]
['person_id', 'birth_year', 'sex', 'observation_start', 'observation_end']
>>> TABLES["prescriptions"].id_column
'prescription_id'
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str
    duckdb_type: str  # VARCHAR, BIGINT, DOUBLE, DATE, BOOLEAN
    required: bool
    description: str


@dataclass(frozen=True)
class Table:
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


TABLES: dict[str, Table] = {
    "persons": Table(
        "persons",
        "person_id",
        "One row per pseudonymised person.",
        (
            Column("person_id", "VARCHAR", True, "Pseudonym; unique; never a real identifier."),
            Column("birth_year", "BIGINT", True, "Year of birth, 1900 .. extract year."),
            Column("sex", "VARCHAR", True, "F, M, X (other) or U (unknown)."),
            Column("region", "VARCHAR", False, "Coarse area (no postcode / ZIP)."),
            Column("observation_start", "DATE", True, "Records are complete from this date."),
            Column("observation_end", "DATE", True, "Records are complete up to this date; >= observation_start."),
            Column("death_date", "DATE", False, "Date of death, within observation or at its end."),
        ),
    ),
    "prescriptions": Table(
        "prescriptions",
        "prescription_id",
        "One row per dispensing.",
        (
            Column("prescription_id", "VARCHAR", True, "Unique dispensing identifier."),
            Column("person_id", "VARCHAR", True, "Exists in persons."),
            Column("dispensed_on", "DATE", True, "Dispensing date, inside the person's observation period."),
            Column("drug", "VARCHAR", True, "Ingredient, lower-case INN (clonazepam, diazepam, ...)."),
            Column("strength_mg", "DOUBLE", True, "mg per unit; > 0."),
            Column("quantity", "DOUBLE", True, "Units dispensed; > 0."),
            Column("days_supply", "BIGINT", True, "Days the dispensing is meant to last, 1 .. 365."),
            Column("daily_dose_mg", "DOUBLE", False, "mg/day; default strength_mg * quantity / days_supply."),
            Column("indication", "VARCHAR", False, "anxiety, panic, seizure, insomnia, muscle_spasm, other, unknown."),
            Column("prescriber_id", "VARCHAR", False, "Prescriber pseudonym."),
            Column("pharmacy_id", "VARCHAR", False, "Pharmacy pseudonym."),
        ),
    ),
    "diagnoses": Table(
        "diagnoses",
        "diagnosis_id",
        "Coded diagnoses.",
        (
            Column("diagnosis_id", "VARCHAR", True, "Unique diagnosis identifier."),
            Column("person_id", "VARCHAR", True, "Exists in persons."),
            Column("recorded_on", "DATE", True, "Inside the person's observation period."),
            Column("code", "VARCHAR", True, "ICD-10 or ICD-10-CM code, with or without the dot (F13.2 = F132)."),
            Column("code_system", "VARCHAR", True, "ICD10 or ICD10CM."),
        ),
    ),
    "follow_ups": Table(
        "follow_ups",
        "follow_up_id",
        "Structured follow-up assessments.",
        (
            Column("follow_up_id", "VARCHAR", True, "Unique assessment identifier."),
            Column("person_id", "VARCHAR", True, "Exists in persons."),
            Column("assessed_on", "DATE", True, "Inside the person's observation period."),
            Column("sds_score", "BIGINT", False, "Severity of Dependence Scale, 0 .. 15."),
            Column("withdrawal_symptoms", "BOOLEAN", False, "Withdrawal symptoms documented since last contact."),
            Column("dependence_assessed", "BOOLEAN", False, "Clinician judged the person physically dependent."),
            Column("misuse", "BOOLEAN", False, "Use beyond the prescription documented."),
        ),
    ),
}

SEXES = ("F", "M", "X", "U")
INDICATIONS = ("anxiety", "panic", "seizure", "insomnia", "muscle_spasm", "other", "unknown")
CODE_SYSTEMS = ("ICD10", "ICD10CM")
