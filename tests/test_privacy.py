"""De-identification gate: extracts with direct identifiers are refused with a
clear one-line message that never echoes a value; the legitimate contract passes.
(Disclosure control is tested in test_privacy_disclosure.py.)
"""

from __future__ import annotations

import random

import duckdb
import pandas as pd
import pytest

from pipeline.config import Config
from pipeline.errors import PrivacyError
from pipeline.privacy.gate import Finding, check_extract, check_tables, k_anonymity, refuse_if_identifiers

SEED = 20261122


def demo_like_tables() -> dict[str, pd.DataFrame]:
    """A tiny extract that follows the contract, with the shapes real ones have."""
    persons = pd.DataFrame({
        "person_id": ["P000123", "P000124", "P000125", "P000126"],
        "birth_year": ["1957", "1990", "1948", "2001"],
        "sex": ["F", "M", "X", "U"],
        "region": ["North", "South West", "", "Central"],
        "observation_start": ["2010-01-01", "2012-06-30", "2015-03-15", "2018-12-31"],
        "observation_end": ["2024-04-22", "2023-01-01", "2020-02-29", "2024-12-31"],
        "death_date": ["", "", "2020-02-29", ""],
    })
    prescriptions = pd.DataFrame({
        "prescription_id": ["RX000000001", "RX000000002", "RX000000003", "RX000000004"],
        "person_id": ["P000123", "P000123", "P000124", "P000126"],
        "dispensed_on": ["2022-04-11", "2022-05-09", "2017-05-24", "2019-01-02"],
        "drug": ["clonazepam", "clonazepam", "diazepam", "alprazolam"],
        "strength_mg": ["0.5", "1.0", "5", "0.25"],
        "quantity": ["56.0", "90", "1234.56789", "30"],
        "days_supply": ["28", "30", "365", "7"],
        "daily_dose_mg": ["1.0", "3.0", "", "1.0714285714285714"],
        "indication": ["panic", "anxiety", "muscle_spasm", "unknown"],
        "prescriber_id": ["PR00011", "PR00051", "PR00011", ""],
        "pharmacy_id": ["PH00004", "PH00013", "PH00004", "PH00015"],
    })
    diagnoses = pd.DataFrame({
        "diagnosis_id": ["DX000000001", "DX000000002", "DX000000003", "DX000000004"],
        "person_id": ["P000123", "P000124", "P000125", "P000126"],
        "recorded_on": ["2017-09-23", "2015-06-07", "2013-03-08", "2020-01-01"],
        "code": ["F13.20", "F132", "F13239", "G40.909"],
        "code_system": ["ICD10", "ICD10", "ICD10CM", "ICD10CM"],
    })
    follow_ups = pd.DataFrame({
        "follow_up_id": ["FU000000001", "FU000000002", "FU000000003", "FU000000004"],
        "person_id": ["P000123", "P000124", "P000125", "P000126"],
        "assessed_on": ["2021-06-11", "2019-10-09", "2016-01-10", "2020-05-05"],
        "sds_score": ["1", "", "7", "15"],
        "withdrawal_symptoms": ["false", "true", "", "false"],
        "dependence_assessed": ["false", "", "true", "false"],
        "misuse": ["", "false", "true", "false"],
    })
    return {"persons": persons, "prescriptions": prescriptions, "diagnoses": diagnoses, "follow_ups": follow_ups}


def with_column(table: str, column: str, values: list[str]) -> dict[str, pd.DataFrame]:
    tables = demo_like_tables()
    tables[table] = tables[table].assign(**{column: values})
    return tables


# ---------------------------------------------------------------- passes


def test_demo_like_extract_passes():
    assert check_tables(demo_like_tables()) == []
    assert refuse_if_identifiers(demo_like_tables()) == []


def test_generated_demo_extract_passes(tmp_path):
    from pipeline.demo.generator import generate

    generate(tmp_path, 500, SEED, Config())
    samples = {f.stem: pd.read_csv(f, dtype=str, keep_default_na=False) for f in tmp_path.rglob("*.csv")}
    assert set(samples) >= {"persons", "prescriptions", "diagnoses", "follow_ups"}
    assert check_tables(samples) == []


def test_numeric_pseudonyms_are_not_identifiers():
    rng = random.Random(SEED)
    print("seed", SEED)
    ten_digit_ids = [str(rng.randrange(10**9, 10**10)) for _ in range(500)]
    five_digit_ids = [str(rng.randrange(10**4, 10**5)) for _ in range(500)]
    samples = {"persons": pd.DataFrame({"person_id": ten_digit_ids, "household_id": five_digit_ids,
                                        "region": rng.choices(["North", "South", "East", "West"], k=500)})}
    assert check_tables(samples) == []


def test_allowed_extra_columns_pass():
    tables = demo_like_tables()
    tables["prescriptions"] = tables["prescriptions"].assign(
        drug_name=["Klonopin", "Klonopin", "Valium", "Xanax"],  # a drug's name is not a person's
        route=["oral"] * 4,
        atc_code=["N03AE01", "N03AE01", "N05BA01", "N05BA12"],
    )
    assert check_tables(tables) == []


# ---------------------------------------------------------------- refusals

IDENTIFIER_COLUMNS = [
    # (table, column, values, expected kind, detected by)
    ("persons", "first_name", ["Ann", "Bob", "Cy", "Di"], "person name", "column name"),
    ("persons", "Surname", ["Smith", "Jones", "Khan", "Li"], "person name", "column name"),
    ("persons", "name", ["Ann", "Bob", "Cy", "Di"], "person name", "column name"),
    ("prescriptions", "prescriber_name", ["Dr A", "Dr B", "Dr C", "Dr D"], "person name", "column name"),
    ("persons", "email", ["", "", "", ""], "e-mail address", "column name"),
    ("persons", "phone", ["x", "y", "z", "w"], "phone number", "column name"),
    ("persons", "ssn", ["a", "b", "c", "d"], "social security number", "column name"),
    ("persons", "nhs_number", ["a", "b", "c", "d"], "NHS number", "column name"),
    ("persons", "national_id", ["a", "b", "c", "d"], "national identifier", "column name"),
    ("persons", "address_line_1", ["a", "b", "c", "d"], "address", "column name"),
    ("persons", "street", ["a", "b", "c", "d"], "address", "column name"),
    ("persons", "postcode", ["a", "b", "c", "d"], "postcode or ZIP code", "column name"),
    ("persons", "zip", ["a", "b", "c", "d"], "postcode or ZIP code", "column name"),
    ("persons", "dob", ["a", "b", "c", "d"], "date of birth", "column name"),
    ("persons", "DateOfBirth", ["a", "b", "c", "d"], "date of birth", "column name"),
    ("prescriptions", "notes", ["a", "b", "c", "d"], "free text", "column name"),
    ("prescriptions", "comment", ["a", "b", "c", "d"], "free text", "column name"),
    # values, in columns whose names say nothing
    ("persons", "contact", ["ann.smith@example.org", "", "bob@mail.co.uk", ""], "e-mail address", "values"),
    ("persons", "contact", ["+44 7700 900123", "(555) 123-4567", "555-123-4567", "07700900123"],
     "phone number", "values"),
    ("persons", "ref", ["123-45-6789", "234-56-7890", "", ""], "social security number", "values"),
    ("persons", "ref", ["943 476 5919", "", "", ""], "NHS number", "values"),
    ("persons", "ref", ["9434765919", "4010232137", "6541962431", "0000000000"], "NHS number", "values"),
    ("persons", "extra", ["12 Baker Street", "", "221B Baker St", "1600 Pennsylvania Avenue NW"],
     "street address", "values"),
    ("persons", "area", ["SW1A 1AA", "M1 1AE", "", "EC1A1BB"], "full UK postcode", "values"),
    ("persons", "area", ["90210", "10001-1234", "60614", "02139"], "US ZIP code", "values"),
    ("prescriptions", "extra_info", ["patient reports anxiety since the bereavement, wants to stop soon", "", "", ""],
     "free text", "values"),
]


@pytest.mark.parametrize("table, column, values, kind, detected_by", IDENTIFIER_COLUMNS)
def test_identifier_is_found(table, column, values, kind, detected_by):
    findings = check_tables(with_column(table, column, values))
    assert Finding(table, column, kind, detected_by, findings[0].share) in findings, findings


def test_contract_columns_are_checked_by_value_too():
    tables = demo_like_tables()
    persons = tables["persons"].copy()
    persons["person_id"] = ["ann@example.org", "bob@example.org", "cy@example.org", "di@example.org"]
    persons["birth_year"] = ["1957-03-02", "1990-11-30", "1948-01-01", "2001-07-04"]
    persons["region"] = ["SW1A 1AA", "North", "North", "North"]
    tables["persons"] = persons
    tables["prescriptions"] = tables["prescriptions"].assign(
        indication=["anxiety", "she says she cannot sleep since her husband died in March", "panic", "other"])
    found = {(f.column, f.kind) for f in check_tables(tables)}
    assert found == {("person_id", "e-mail address"), ("birth_year", "date of birth"),
                     ("region", "full UK postcode"), ("indication", "free text")}


def test_refusal_is_one_line_naming_table_column_kind_but_no_value():
    secret_values = ["ann.smith@example.org", "943 476 5919", "SW1A 1AA", "123-45-6789"]
    tables = demo_like_tables()
    tables["persons"] = tables["persons"].assign(contact=secret_values, patient_name=["Ann Smith"] * 4)
    with pytest.raises(PrivacyError) as caught:
        refuse_if_identifiers(tables)
    message = str(caught.value)
    assert "\n" not in message
    assert "persons.contact" in message and "e-mail address" in message and "NHS number" in message
    assert "persons.patient_name: person name (by its name)" in message
    for secret in secret_values + ["Ann Smith", "Smith", "9434765919"]:
        assert secret not in message
    assert caught.value.exit_code == 3


def test_duckdb_relation_is_sampled_in_duckdb(tmp_path):
    path = tmp_path / "persons.csv"
    rows = ["person_id,birth_year,sex,contact"] + [
        f"P{i:06d},{1950 + i % 50},F,{'x' + str(i) + '@example.org' if i % 1000 == 0 else ''}" for i in range(20000)
    ]
    path.write_text("\n".join(rows) + "\n")
    con = duckdb.connect()
    relation = con.sql(f"select * from read_csv('{path}', all_varchar = true)")
    findings = check_extract({"persons": relation}, sample_rows=20000)
    assert [(f.table, f.column, f.kind) for f in findings] == [("persons", "contact", "e-mail address")]
    with pytest.raises(PrivacyError, match="persons.contact: e-mail address"):
        refuse_if_identifiers({"persons": relation}, sample_rows=20000)


# ---------------------------------------------------------------- k-anonymity


def test_k_anonymity_reports_small_groups():
    con = duckdb.connect()
    con.execute("""
        create table raw_persons as
        select 'P' || range as person_id, 1950 + range % 10 as birth_year,
               case when range % 2 = 0 then 'F' else 'M' end as sex,
               case when range < 3 then 'Islands' else 'North' end as region
        from range(1000)""")
    result = k_anonymity(con, k=11)
    assert result["quasi_identifiers"] == ["birth_year", "sex", "region"]
    assert result["persons"] == 1000
    assert result["smallest_group"] == 1
    assert result["groups_below_k"] == 3
    assert result["persons_in_small_groups"] == 3
    assert result["share_in_small_groups"] == 0.003
    assert k_anonymity(con, quasi_identifiers=("sex",), k=11)["groups_below_k"] == 0
