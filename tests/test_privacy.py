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
from pipeline.contract import TABLES
from pipeline.privacy.gate import (
    check_header,
    check_tables,
    identifier_kind_of_name,
    k_anonymity,
    looks_like_value,
    refuse_if_identifiers,
    scan_table,
)

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


# ---------------------------------------------------------------- column names

NAMED = [
    # (column name, kind) -- English and the major European languages, accents/case/punctuation varied
    ("DoB", "date of birth"), ("D.O.B.", "date of birth"), ("dob", "date of birth"), ("birth_date", "date of birth"),
    ("BirthDate", "date of birth"), ("date_of_birth", "date of birth"), ("Geburtsdatum", "date of birth"),
    ("date_naissance", "date of birth"), ("Date de naissance", "date of birth"), ("fecha_nacimiento", "date of birth"),
    ("data_nascita", "date of birth"), ("geboortedatum", "date of birth"), ("Födelsedatum", "date of birth"),
    ("NOM", "person name"), ("Prénom", "person name"), ("fname", "person name"), ("lname", "person name"),
    ("surname", "person name"), ("Vorname", "person name"), ("Nachname", "person name"), ("nombre", "person name"),
    ("apellido", "person name"), ("apellidos", "person name"), ("cognome", "person name"), ("achternaam", "person name"),
    ("voornaam", "person name"), ("first_name", "person name"), ("patient_name", "person name"), ("name", "person name"),
    ("email", "e-mail address"), ("E-Mail", "e-mail address"), ("courriel", "e-mail address"),
    ("phone", "phone number"), ("telefono", "phone number"), ("Telefonnummer", "phone number"), ("mobile", "phone number"),
    ("ssn", "social security number"), ("codice_fiscale", "social security number"), ("BSN", "social security number"),
    ("nhs_number", "NHS number"), ("NHS No.", "NHS number"), ("MRN", "national identifier"),
    ("passport_no", "national identifier"), ("address_line_1", "address"), ("Adresse", "address"),
    ("Straße", "address"), ("indirizzo", "address"), ("postcode", "postcode or ZIP code"), ("ZIP", "postcode or ZIP code"),
    ("PLZ", "postcode or ZIP code"), ("code_postal", "postcode or ZIP code"), ("latitude", "geolocation"),
    ("ip_address", "network address"), ("notes", "free text"), ("Bemerkung", "free text"),
    ("place_of_birth", "place of birth"), ("Geburtsort", "place of birth"),
]


@pytest.mark.parametrize("column, kind", NAMED)
def test_identifier_column_names(column, kind):
    assert identifier_kind_of_name(column)[0] == kind


@pytest.mark.parametrize("column", [
    "birth_year", "year_of_birth", "Geburtsjahr", "annee_naissance", "country_of_birth", "drug_name", "nominal_dose",
    "denominator", "prescriber_id", "pharmacy_id", "atc_code", "route", "ship_to", "hotel", "cellular_type",
])
def test_harmless_column_names(column):
    assert identifier_kind_of_name(column) is None


def test_no_contract_column_is_flagged_by_its_name():
    names = [c.name for t in TABLES.values() for c in t.columns]
    assert [n for n in names if identifier_kind_of_name(n)] == []


def test_date_typed_extra_column_is_a_possible_birth_date():
    findings = check_header("persons", "persons.parquet", ["person_id", "observation_start", "visit"],
                            ["VARCHAR", "DATE", "TIMESTAMP"])
    assert [(f.column, f.rule) for f in findings] == [("visit", "gate.name.extra_date_column")]


@pytest.mark.parametrize("header", [
    ["P000001", "1957", "F", "North", "2010-01-01", "2020-01-01", "column6"],
    ["ann@example.org", "1957", "F"],
    ["Doe, Jane", "birth_year", "sex", "observation_start", "observation_end"],
    ["Jane Doe", "x", "y"],
])
def test_header_row_that_is_data_is_refused_without_its_values(header):
    with pytest.raises(PrivacyError) as caught:
        check_header("persons", "persons.csv", header)
    message = str(caught.value)
    assert message.startswith("persons.csv: the first row looks like data") and "\n" not in message
    for cell in header:
        if cell not in ("F", "x", "y") and cell not in {c.name for c in TABLES["persons"].columns}:
            assert cell not in message


def test_header_with_a_typo_is_left_to_ingest():
    """A real header missing a required column is not a privacy matter: ingest names the column."""
    assert check_header("persons", "persons.csv", ["person_id", "birthyear", "sex", "observation_start", "observation_end"]) == []


def test_column_names_that_are_values_are_never_printed():
    assert looks_like_value("ann@example.org") and looks_like_value("Doe, Jane") and looks_like_value("07700 900123")
    findings = check_header("persons", "persons.csv",
                            ["person_id", "birth_year", "sex", "observation_start", "observation_end", "ann@example.org"])
    assert [(f.column, f.rule) for f in findings] == [("column 6", "gate.name.value_like")]


# ---------------------------------------------------------------- values

VALUES = [
    # (column, value, kind): one value among 300 pseudonymous rows is enough
    ("indication", "ann.smith@example.org", "e-mail address"),
    ("indication", "ANN@EXAMPLE.CO.UK", "e-mail address"),
    ("indication", "NHS 943 476 5919", "NHS number"),
    ("indication", "NHS: 9434765919", "NHS number"),
    ("indication", "943-476-5919", "NHS number"),
    ("prescriber_id", "9434765919", "NHS number"),
    ("indication", "943\u00a0476\u00a05919", "NHS number"),
    ("indication", "SSN 219-09-9999", "social security number"),
    ("indication", "219-09-9999", "social security number"),
    ("indication", "07700 900123", "phone number"),
    ("indication", "07700\u202f900123", "phone number"),
    ("indication", "+44 7700 900123", "phone number"),
    ("indication", "+44 (0)20 7946 0958", "phone number"),
    ("indication", "(020) 7946 0958", "phone number"),
    ("indication", "0161 496 0000", "phone number"),
    ("indication", "(555) 123-4567", "phone number"),
    ("indication", "555.123.4567", "phone number"),
    ("indication", "1-800-555-0199", "phone number"),
    ("indication", "+33 1 23 45 67 89", "phone number"),
    ("indication", "tel. 07700900123", "phone number"),
    ("indication", "07700900123", "phone number"),
    ("indication", "LS1 4AP", "full UK postcode"),
    ("indication", "Leeds LS1 4AP", "full UK postcode"),
    ("indication", "Leeds LS14AP", "full UK postcode"),
    ("indication", "sw1a 1aa", "full UK postcode"),
    ("indication", "LS14AP", "full UK postcode"),
    ("region", "90210", "US ZIP code"),
    ("region", "Beverly Hills 90210", "US ZIP code"),
    ("indication", "Springfield, IL 62704", "US ZIP code"),
    ("indication", "62704-1234", "US ZIP code"),
    ("indication", "http://example.org", "web address (URL)"),
    ("indication", "www.example.co.uk", "web address (URL)"),
    ("indication", "10.0.0.254", "IP address"),
    ("indication", "fe80::1ff:fe23:4567:890a", "IP address"),
    ("indication", "12 Baker Street", "street address"),
    ("indication", "221B Baker St", "street address"),
    ("indication", "Hauptstraße 5", "street address"),
    ("indication", "she says she cannot sleep since her husband died in March", "free text"),
    ("indication", "Doe, Jane", "person name"),
    ("indication", "SMITH, John", "person name"),
    ("indication", "O'Brien, Mary-Jane", "person name"),
    ("indication", "Smith, J.", "person name"),
    ("indication", "John Smith", "person name"),
    ("indication", "JOHN SMITH", "person name"),
    ("indication", "Jean Dupont", "person name"),
    ("indication", "Mrs Jones", "person name"),
    ("drug", "Dr. Patel", "person name"),
    ("prescriber_id", "Smith Jones", "person name"),
    ("person_id", "Okonkwo Adaeze", "person name"),
    ("prescriber_id", "Élodie Martin", "person name"),
]


def prescriptions(rows: int = 300) -> pd.DataFrame:
    rng = random.Random(SEED)
    return pd.DataFrame({
        "prescription_id": [f"RX{i:09d}" for i in range(rows)],
        "person_id": [f"P{rng.randrange(10**6):06d}" for _ in range(rows)],
        "dispensed_on": [f"2020-{1 + i % 12:02d}-{1 + i % 28:02d}" for i in range(rows)],
        "drug": rng.choices(["clonazepam", "diazepam", "alprazolam"], k=rows),
        "strength_mg": rng.choices(["0.5", "1.0", "2"], k=rows),
        "quantity": rng.choices(["28", "56.0", "100"], k=rows),
        "days_supply": rng.choices(["7", "28", "30"], k=rows),
        "daily_dose_mg": rng.choices(["1.0714285714285714", "0.5", ""], k=rows),
        "indication": rng.choices(["anxiety", "panic", "seizure", "insomnia", "muscle_spasm", "other", "unknown"], k=rows),
        "prescriber_id": [f"PR{rng.randrange(500):05d}" for _ in range(rows)],
        "pharmacy_id": [f"PH{rng.randrange(300):05d}" for _ in range(rows)],
    })


def persons(rows: int = 300) -> pd.DataFrame:
    rng = random.Random(SEED)
    return pd.DataFrame({
        "person_id": [f"P{i:06d}" for i in range(rows)],
        "birth_year": [str(1930 + i % 70) for i in range(rows)],
        "sex": rng.choices(["F", "M", "X", "U"], k=rows),
        "region": rng.choices(["North East", "North West", "Yorkshire and The Humber", "East Midlands", "London",
                               "East of England", "South West", ""], k=rows),
        "observation_start": ["2010-01-01"] * rows,
        "observation_end": ["2024-12-31"] * rows,
        "death_date": [""] * rows,
    })


@pytest.mark.parametrize("column, value, kind", VALUES)
def test_one_identifier_value_is_found(column, value, kind):
    table = "persons" if column == "region" else "prescriptions"
    frame = persons() if table == "persons" else prescriptions()
    frame.loc[271, column] = value
    findings = check_tables({table: frame})
    assert [(f.column, f.kind, f.rows) for f in findings] == [(column, kind, 1)], findings


NEGATIVES = [
    # (column, values): realistic content that must pass
    ("person_id", ["P000123", "3f2a9b1c4d5e6f708192a3b4c5d6e7f8", "550e8400-e29b-41d4-a716-446655440000",
                   "550E8400-E29B-41D4-A716-446655440000", "da39a3ee5e6b4b0d3255bfef95601890afd80709", "AB12CD34"]),
    ("prescription_id", ["RX000000001", "0000123456", "2019-000123", "ORD/2020/00017", "E4B2AB"]),
    ("indication", ["anxiety", "muscle_spasm", "F41.1", "F13.20", "G40.909", "unknown", "N/A", "not recorded",
                    "Generalised anxiety disorder", "Panic disorder [episodic paroxysmal anxiety]"]),
    ("drug", ["clonazepam", "chlordiazepoxide", "Klonopin", "diazepam 5 mg tablets", "Rivotril 0.5mg"]),
    ("strength_mg", ["0.25", "1.0714285714285714", "12345.5", "1e-3"]),
    ("dispensed_on", ["2020-01-01", "2020-01-01 10:00:00", "2020-01-01T10:00:00Z", "01/02/2020"]),
]


@pytest.mark.parametrize("column, values", NEGATIVES)
def test_realistic_values_pass(column, values):
    frame = prescriptions()
    for i, value in enumerate(values):
        frame.loc[10 + 20 * i, column] = value
    assert check_tables({"prescriptions": frame}) == []


def test_region_names_and_category_values_pass():
    frame = persons()
    frame["region"] = (["North East", "Yorkshire and The Humber", "East Midlands", "Bristol, City of",
                        "Kingston upon Hull, City of", "Milton Keynes", "Isle of Wight", "Greater London",
                        "Northern Ireland", "Marion County"] * 30)
    assert check_tables({"persons": frame}) == []


def test_numeric_pseudonyms_are_not_nhs_numbers_or_zip_codes():
    rng = random.Random(SEED)
    print("seed", SEED)
    frame = persons(500).assign(person_id=[str(rng.randrange(10**9, 10**10)) for _ in range(500)],
                                household_id=[str(rng.randrange(10**4, 10**5)) for _ in range(500)],
                                practice=[f"{rng.choice('ABCDEFGHJKLMNPY')}{rng.randrange(10**4, 10**5)}" for _ in range(500)])
    assert check_tables({"persons": frame}) == []


def test_many_distinct_names_in_a_category_column_are_refused():
    rng = random.Random(SEED)
    surnames = ["Okafor", "Lindqvist", "Brennan", "Moreau", "Kowalski", "Haddad", "Nakamura", "Ferreira", "Olsen",
                "Castellano"]
    frame = prescriptions().assign(clinician=[f"{rng.choice(surnames)} {rng.choice(surnames)}x{i % 60}"[:-3]
                                              + rng.choice(["a", "o", "e"]) * (i % 3) for i in range(300)])
    assert [(f.column, f.rule) for f in check_tables({"prescriptions": frame})] == [("clinician", "gate.names")]


def test_extra_column_of_full_dates_is_a_possible_birth_date():
    frame = persons().assign(visit=["1961-04-02"] * 300)
    assert [(f.column, f.rule) for f in check_tables({"persons": frame})] == [("visit", "gate.extra_dates")]


def test_contract_columns_are_checked_by_value_too():
    frame = persons()
    frame.loc[3, "person_id"] = "ann@example.org"
    frame.loc[5, "birth_year"] = "1957-03-02"
    frame.loc[6, "birth_year"] = "19570302"  # casts to an integer: the gate must still read it
    frame.loc[7, "region"] = "SW1A 1AA"
    found = {(f.column, f.kind, f.rows) for f in check_tables({"persons": frame})}
    assert found == {("person_id", "e-mail address", 1), ("birth_year", "date of birth", 2),
                     ("region", "full UK postcode", 1)}


def test_refusal_is_one_line_naming_file_column_rule_and_rows_but_no_value():
    secret_values = ["ann.smith@example.org", "943 476 5919", "SW1A 1AA", "219-09-9999"]
    frame = persons()
    for i, value in enumerate(secret_values):
        frame.loc[40 + i, "contact"] = value
    frame["patient_name"] = "Ann Smith"
    with pytest.raises(PrivacyError) as caught:
        refuse_if_identifiers({"persons": frame})
    message = str(caught.value)
    assert "\n" not in message
    assert "persons, column 'contact': e-mail address (rule gate.email), 1 row" in message
    assert "persons, column 'patient_name': person name (rule gate.name.person_name), by its name" in message
    for secret in secret_values + ["Ann Smith", "9434765919"]:
        assert secret not in message
    assert caught.value.exit_code == 3


def test_every_value_is_read_not_a_sample():
    """One e-mail address in 200,000 rows, in the last row, is found (and counted)."""
    con = duckdb.connect()
    con.execute("create table t as select 'P' || lpad(range::varchar, 7, '0') as person_id, "
                "case when range = 199999 then 'x@example.org' end as contact from range(200000)")
    findings = scan_table(con, "t", "persons")
    assert [(f.column, f.kind, f.rows) for f in findings] == [("contact", "e-mail address", 1)]


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


def test_parsed_table_with_its_extra_columns_is_read_in_one_pass():
    """Ingest hands the gate one text table holding the contract's columns and the file's extra
    columns: a clean table costs one aggregate query over it, and extra columns are judged as
    extra columns (full dates there are possible birth dates) with their place in the file as label."""
    from pipeline.privacy.gate import IdentifierGate

    con = duckdb.connect()
    rows = 2_000
    con.execute(f"""create table parsed as select 'P' || lpad(range::varchar, 6, '0') as person_id,
                    (1950 + range % 40)::varchar as birth_year, 'F' as sex, 'North' as region,
                    '2010-01-01' as observation_start, '2023-12-31' as observation_end, null::varchar as death_date,
                    'ok' as note_code, '1961-04-' || lpad((1 + range % 28)::varchar, 2, '0') as "Visit"
                    from range({rows})""")
    con.execute("create table file as select * from parsed")  # the file as read, columns in file order
    statements = []

    class Recording:
        def execute(self, sql, *args):
            statements.append(sql)
            return con.execute(sql, *args)

        def sql(self, sql, *args):
            return con.sql(sql, *args)

    gate = IdentifierGate()
    assert gate.values(Recording(), "persons", "persons.csv", "(select * exclude (\"Visit\") from parsed)", "file",
                       ["note_code"]) == []
    assert len(statements) == 1 and "from (select * exclude" in statements[0]  # one pass, extras included
    with pytest.raises(PrivacyError) as refused:
        gate.values(Recording(), "persons", "persons.csv", "parsed", "file", ["note_code", "Visit"])
    assert "column 'Visit': full dates outside the contract (possible date of birth) (rule gate.extra_dates), 2,000 rows" \
        in str(refused.value) and "1961" not in str(refused.value)
