"""validate stage: each rule catches a planted bad row; errors stop, warnings do not.

Tiny literal raw tables (contract types + _source_row, _load_id) in an
in-memory DuckDB. GX is imported once per module; each ``run`` builds its own
ephemeral context (cheap once GX is imported).
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import duckdb
import pytest

from pipeline.config import load_config
from pipeline.contract import TABLES
from pipeline.errors import ValidationFailed
from pipeline.validate import run
from pipeline.validate.checks import ROW_LEVEL_TYPES, load_checks
from pipeline.warehouse import connect, ensure_audit_tables

CONFIG = load_config().replace(extract={"extract_date": "2024-06-30"})

# A clean extract: 2 persons, their dispensings, diagnoses and follow-ups.
PERSONS = [
    ("P1", 1970, "F", "north", "2010-01-01", "2020-12-31", None),
    ("P2", 1985, "M", None, "2012-03-01", "2022-06-30", "2022-06-30"),
]
PRESCRIPTIONS = [
    ("R1", "P1", "2015-01-01", "clonazepam", 0.5, 60.0, 30, None, "anxiety", "D1", "H1"),
    ("R2", "P1", "2015-02-01", "clonazepam", 0.5, 60.0, 30, 1.0, None, "D1", "H1"),
    ("R3", "P2", "2016-05-01", "diazepam", 5.0, 30.0, 15, None, "insomnia", None, None),
]
DIAGNOSES = [
    ("G1", "P1", "2015-06-01", "F13.2", "ICD10"),
    ("G2", "P2", "2017-01-01", "F1320", "ICD10CM"),
]
FOLLOW_UPS = [
    ("U1", "P1", "2015-07-01", 8, True, False, None),
    ("U2", "P2", "2017-02-01", None, None, None, False),
]
CLEAN = {"persons": PERSONS, "prescriptions": PRESCRIPTIONS, "diagnoses": DIAGNOSES, "follow_ups": FOLLOW_UPS}


def warehouse(**planted: list[tuple]) -> duckdb.DuckDBPyConnection:
    """The clean extract plus planted rows (appended after the clean ones) per table."""
    con = connect(":memory:")
    ensure_audit_tables(con)
    for name, table in TABLES.items():
        columns = ", ".join(f"{c.name} {c.duckdb_type}" for c in table.columns)
        con.execute(f"create table raw_{name} ({columns}, _source_row BIGINT, _load_id VARCHAR)")
        rows = list(CLEAN[name]) + list(planted.get(name, []))
        marks = ", ".join("?" * (len(table.columns) + 2))
        con.executemany(
            f"insert into raw_{name} values ({marks})", [[*row, i, "L1"] for i, row in enumerate(rows, start=1)]
        )
    return con


def validate(con, tmp_path, **kwargs):
    return run(con, CONFIG, tmp_path / "quality", ":memory:", build_docs=kwargs.pop("build_docs", False), **kwargs)


def quarantined(con) -> set[tuple[str, str]]:
    return set(con.execute("select rule_id, record_id from audit_quarantine where stage = 'validate'").fetchall())


# One planted bad row per rule: (table, row, rule that must catch it, record id).
P = "P1"
PLANTED = [
    ("persons", ("P3", 1970, "Q", None, "2010-01-01", "2020-12-31", None), "persons.sex.allowed", "P3"),
    ("persons", ("P3", 1890, "F", None, "2010-01-01", "2020-12-31", None), "persons.birth_year.range", "P3"),
    ("persons", ("P3", 2025, "F", None, "2010-01-01", "2020-12-31", None), "persons.birth_year.range", "P3"),
    ("persons", ("P3", 1970, "F", None, "2015-01-01", "2014-12-31", None), "persons.observation_end.after_start", "P3"),
    ("persons", ("P3", 1970, "F", None, "2010-01-01", "2020-12-31", "2021-01-01"), "persons.death_date.in_observation", "P3"),
    ("persons", ("P3", 1970, "F", None, "2010-01-01", "2020-12-31", "2009-12-31"), "persons.death_date.in_observation", "P3"),
    ("persons", ("P3", 1970, "F", None, "2010-01-01", "2025-01-01", None), "persons.observation_end.not_future", "P3"),
    ("persons", ("P3", None, "F", None, "2010-01-01", "2020-12-31", None), "persons.birth_year.not_null", "P3"),
    ("persons", ("P1", 1970, "F", "north", "2010-01-01", "2020-12-31", None), "persons.person_id.identical_duplicate", "P1"),
    ("prescriptions", ("R9", P, "2015-01-01", "clonazepam", 0.5, 60.0, 400, None, None, None, None), "prescriptions.days_supply.range", "R9"),
    ("prescriptions", ("R9", P, "2015-01-01", "clonazepam", 0.5, 60.0, 0, None, None, None, None), "prescriptions.days_supply.range", "R9"),
    ("prescriptions", ("R9", P, "2015-01-01", "clonazepam", 0.0, 60.0, 30, None, None, None, None), "prescriptions.strength_mg.positive", "R9"),
    ("prescriptions", ("R9", P, "2015-01-01", "clonazepam", 0.5, -1.0, 30, None, None, None, None), "prescriptions.quantity.positive", "R9"),
    ("prescriptions", ("R9", P, "2015-01-01", "clonazepam", 0.5, 60.0, 30, 0.0, None, None, None), "prescriptions.daily_dose_mg.positive", "R9"),
    ("prescriptions", ("R9", P, "2015-01-01", "Clonazepam", 0.5, 60.0, 30, None, None, None, None), "prescriptions.drug.lower_case", "R9"),
    ("prescriptions", ("R9", P, "2015-01-01", "clonazepam", 0.5, 60.0, 30, None, "fear", None, None), "prescriptions.indication.allowed", "R9"),
    ("prescriptions", ("R9", "P404", "2015-01-01", "clonazepam", 0.5, 60.0, 30, None, None, None, None), "prescriptions.person_id.in_persons", "R9"),
    ("prescriptions", ("R9", P, "2009-01-01", "clonazepam", 0.5, 60.0, 30, None, None, None, None), "prescriptions.dispensed_on.in_observation", "R9"),
    ("prescriptions", ("R9", "P2", "2025-01-01", "clonazepam", 0.5, 60.0, 30, None, None, None, None), "prescriptions.dispensed_on.not_future", "R9"),
    ("prescriptions", ("R1", P, "2015-01-01", "clonazepam", 0.5, 90.0, 30, None, "anxiety", "D1", "H1"), "prescriptions.prescription_id.conflicting_duplicate", "R1"),
    ("diagnoses", ("G9", P, "2015-06-01", "F13-2", "ICD10"), "diagnoses.code.icd10_shape", "G9"),
    ("diagnoses", ("G9", P, "2015-06-01", "f13.2", "ICD10"), "diagnoses.code.icd10_shape", "G9"),
    ("diagnoses", ("G9", P, "2015-06-01", "F13.2", "ICD9"), "diagnoses.code_system.allowed", "G9"),
    ("diagnoses", ("G9", "P404", "2015-06-01", "F13.2", "ICD10"), "diagnoses.person_id.in_persons", "G9"),
    ("diagnoses", ("G9", P, "2021-06-01", "F13.2", "ICD10"), "diagnoses.recorded_on.in_observation", "G9"),
    ("diagnoses", ("G1", "P1", "2015-06-01", "F13.2", "ICD10"), "diagnoses.diagnosis_id.identical_duplicate", "G1"),
    ("follow_ups", ("U9", P, "2015-07-01", 16, None, None, None), "follow_ups.sds_score.range", "U9"),
    ("follow_ups", ("U9", P, "2015-07-01", -1, None, None, None), "follow_ups.sds_score.range", "U9"),
    ("follow_ups", ("U9", "P404", "2015-07-01", 3, None, None, None), "follow_ups.person_id.in_persons", "U9"),
    ("follow_ups", ("U9", P, "2021-07-01", 3, None, None, None), "follow_ups.assessed_on.in_observation", "U9"),
    ("follow_ups", ("U9", P, None, 3, None, None, None), "follow_ups.assessed_on.not_null", "U9"),
]


def test_clean_extract_passes_and_writes_results(tmp_path):
    con = warehouse()
    report = validate(con, tmp_path, run_id="clean", build_docs=True)
    assert report.passed and not report.warnings and not report.gx_errors
    assert quarantined(con) == set()
    # GX judges the table-level checks (for the Data Docs); the row rules are SQL's alone, unless asked
    assert all((r.gx_success is None) == (r.expectation_type in ROW_LEVEL_TYPES) for r in report.results)
    audit = con.execute("select count(*), count(distinct check_id) from audit_validation where run_id = 'clean'").fetchall()[0]
    assert audit == (len(load_checks(CONFIG)), len(load_checks(CONFIG)))
    latest = json.loads((tmp_path / "quality" / "latest.json").read_text())
    assert latest["run_id"] == "clean" and latest["passed"] is True
    assert (tmp_path / "quality" / "validation_clean.json").exists()
    assert (tmp_path / "quality" / "data_docs" / "index.html").exists()
    assert report.data_docs_error is None


@pytest.mark.parametrize("table,row,rule,record_id", PLANTED, ids=[f"{p[2]}-{i}" for i, p in enumerate(PLANTED)])
def test_each_rule_quarantines_its_planted_row(table, row, rule, record_id):
    """Row rules only (no GX): the planted row is set aside by its rule, nothing else is."""
    from pipeline.validate.runner import quarantine_rows

    con = warehouse(**{table: [row]})
    counts = quarantine_rows(con, load_checks(CONFIG))
    assert (rule, record_id) in quarantined(con)
    assert counts[rule] >= 1
    bad_source_row = len(CLEAN[table]) + 1
    clean_rows = con.execute(
        "select count(*) from audit_quarantine where table_name = ? and source_row <> ?", [table, bad_source_row]
    ).fetchall()[0][0]
    if "conflicting_duplicate" not in rule:  # a conflict sets aside every copy, the clean one too
        assert clean_rows == 0


def test_quarantined_person_takes_its_records_along():
    from pipeline.validate.runner import quarantine_rows

    con = warehouse(persons=[("P1", 1971, "F", "north", "2010-01-01", "2020-12-31", None)])  # conflicting P1
    counts = quarantine_rows(con, load_checks(CONFIG))
    assert counts["persons.person_id.conflicting_duplicate"] == 2
    assert counts["prescriptions.person_id.in_persons"] == 2  # R1, R2 belong to P1
    assert {("diagnoses.person_id.in_persons", "G1"), ("follow_ups.person_id.in_persons", "U1")} <= quarantined(con)


def test_error_stops_with_one_line_naming_table_column_rule_count_examples(tmp_path):
    bad = [(f"R{i}", "P1", "2015-01-01", "clonazepam", 0.5, 60.0, 999, None, None, None, None) for i in (7, 8)]
    con = warehouse(prescriptions=bad)
    with pytest.raises(ValidationFailed) as raised:
        validate(con, tmp_path, run_id="stop")
    message = str(raised.value)
    assert "\n" not in message
    for part in ("prescriptions.days_supply", "prescriptions.days_supply.range", "2 of 5 rows", "R7, R8"):
        assert part in message, message
    # results are written before stopping, rows are quarantined, and GX agreed with the row rule
    status = con.execute(
        "select status, failing_rows, examples from audit_validation "
        "where run_id = 'stop' and check_id = 'prescriptions.days_supply.range'"
    ).fetchall()[0]
    assert status == ("fail", 2, "R7, R8")
    latest = json.loads((tmp_path / "quality" / "latest.json").read_text())
    assert latest["stopped_by"] == ["prescriptions.days_supply.range"] and latest["gx_errors"] == []


def test_missing_required_column_stops_before_anything_else(tmp_path):
    con = warehouse()
    con.execute("alter table raw_diagnoses drop column code_system")
    with pytest.raises(ValidationFailed, match=r"diagnoses: rule diagnoses.required_columns .*missing code_system"):
        validate(con, tmp_path)


def test_warning_is_reported_and_run_goes_on(tmp_path):
    # 2 mg x 900 tablets / 30 days = 60 mg/day clonazepam, labelled maximum 20 mg/day
    high_dose = ("R9", "P1", "2015-03-01", "clonazepam", 2.0, 900.0, 30, None, "panic", "D1", "H1")
    con = warehouse(prescriptions=[high_dose])
    report = validate(con, tmp_path)
    assert report.passed
    warning = report.result("prescriptions.daily_dose_mg.above_labelled_max")
    assert (warning.status, warning.severity, warning.action, warning.failing_rows) == ("fail", "warning", "report", 1)
    assert warning.examples == ["R9"]
    assert quarantined(con) == set()  # a misuse signal is kept for the analysis


def test_quarantine_within_threshold_does_not_stop_and_is_idempotent(tmp_path):
    ok = [(f"R{i}", "P1", "2015-01-01", "clonazepam", 0.5, 60.0, 30, None, None, None, None) for i in range(10, 210)]
    bad = [("R999", "P1", "2015-01-01", "clonazepam", 0.5, 60.0, 400, None, None, None, None)]
    con = warehouse(prescriptions=ok + bad)  # 1 of 204 rows = 0.49% <= 1% tolerated
    for _ in range(2):
        report = validate(con, tmp_path)
        assert report.passed
        assert quarantined(con) == {("prescriptions.days_supply.range", "R999")}
        assert report.quarantined_rows == 1
    result = report.result("prescriptions.days_supply.range")
    assert (result.status, result.failing_rows, result.quarantined_rows) == ("pass", 1, 1)
    reason, source_row, load_id, table_name = con.execute(
        "select reason, source_row, load_id, table_name from audit_quarantine"
    ).fetchall()[0]
    # the rule, never the value (a value in a category column may be an identifier)
    assert reason.startswith("days_supply: ") and "400" not in reason
    assert (source_row, load_id, table_name) == (204, "L1", "prescriptions")


def test_gx_and_duckdb_row_rules_agree_on_every_planted_row(tmp_path):
    """Everything planted at once; GX's unexpected counts equal the DuckDB row-rule counts."""
    planted: dict[str, list[tuple]] = {}
    for table, row, _, _ in PLANTED:
        planted.setdefault(table, []).append(row)
    con = warehouse(**planted)
    with pytest.raises(ValidationFailed):
        validate(con, tmp_path, gx_row_rules=True)
    latest = json.loads((tmp_path / "quality" / "latest.json").read_text())
    assert latest["gx_errors"] == []
    assert all(check["gx_success"] is not None for check in latest["checks"])  # GX judged every row rule too
    for check in latest["checks"]:
        if check["action"] == "quarantine":
            assert check["failing_rows"] == check["quarantined_rows"], check["check_id"]


def test_row_rules_read_each_table_once_for_its_column_rules(tmp_path):
    """The column rules of a table (not null, in set, between) are one scan: one INSERT for the
    quarantine, one aggregate for the report-only ones; each query rule is its own statement."""
    from pipeline.validate.runner import quarantine_rows, row_rule_counts

    statements: list[str] = []

    class Recording:
        def __init__(self, con):
            self._con = con

        def execute(self, sql, *args):
            statements.append(" ".join(str(sql).split()))
            return self._con.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(self._con, name)

    planted: dict[str, list[tuple]] = {}
    for table, row, _, _ in PLANTED:
        planted.setdefault(table, []).append(row)
    con = warehouse(**planted)
    checks = load_checks(CONFIG)
    counts = quarantine_rows(Recording(con), checks)
    column_rules = [c for c in checks if c.action == "quarantine" and c.expectation_type != "unexpected_rows_expectation"]
    query_rules = [c for c in checks if c.action == "quarantine" and c.expectation_type == "unexpected_rows_expectation"]
    inserts = [s for s in statements if s.startswith("insert into audit_quarantine")]
    assert len(inserts) == len({c.table for c in column_rules}) + len(query_rules)
    # every planted row is still set aside by its own rule, with the rule (never the value) as reason
    assert {(rule, record) for _, _, rule, record in PLANTED} <= quarantined(con)
    assert all(counts[rule] >= 1 for _, _, rule, _ in PLANTED if rule in counts)
    reasons = con.execute("select distinct rule_id, reason from audit_quarantine").fetchall()
    assert all(reason.endswith(next(c.description for c in checks if c.id == rule)) for rule, reason in reasons)
    statements.clear()
    report_rules = [c for c in checks if c.is_row_rule and c.action == "report"]
    row_rule_counts(Recording(con), checks)
    assert len(statements) == len({c.table for c in report_rules if c.expectation_type != "unexpected_rows_expectation"}) \
        + sum(c.expectation_type == "unexpected_rows_expectation" for c in report_rules)


# --- the GX shim: fails loudly when a GX upgrade breaks it -------------------------------------


def test_gx_shim_patched_attribute_still_exists_and_is_used():
    import great_expectations as gx

    from pipeline.validate import gx_duckdb

    assert gx.__version__ == "1.24.1", "GX upgraded: re-check pipeline/validate/gx_duckdb.py, then update this pin"
    gx_duckdb.patch_gx_for_duckdb()
    assert gx_duckdb.is_patched()
    engine_class = gx_duckdb.PATCHED_MODULE.SqlAlchemyExecutionEngine
    assert gx_duckdb.PATCHED_ATTRIBUTE in engine_class.get_connection.__wrapped__.__code__.co_names


def test_gx_shim_returns_real_metric_results_through_the_pipeline_connection():
    import great_expectations as gx
    import great_expectations.expectations as gxe

    from pipeline.validate.gx_duckdb import duckdb_datasource, new_context

    con = duckdb.connect(":memory:")
    con.execute("create table t as select range as n from range(10)")
    context = new_context()
    with duckdb_datasource(context, con, name="shim_test") as datasource:
        batch = datasource.add_table_asset("t", table_name="t").add_batch_definition_whole_table("all").get_batch()
        between = batch.validate(gxe.ExpectColumnValuesToBeBetween(column="n", min_value=0, max_value=7))
        rows = batch.validate(gxe.UnexpectedRowsExpectation(unexpected_rows_query="select * from {batch} where n > 7"))
    assert not between.exception_info.get("raised_exception"), between.exception_info
    assert (between.success, between.result["element_count"], between.result["unexpected_count"]) == (False, 10, 2)
    assert rows.result["observed_value"] == 2
    assert con.execute("select count(*) from t").fetchall()[0] == (10,)  # the pipeline connection still works
    assert isinstance(gx.__version__, str)
