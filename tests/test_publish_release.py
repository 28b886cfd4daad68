"""Publish is all or nothing, through the CLI as a user runs it.

A run that fails at any stage leaves reports/ byte-identical to before; its
validation results go to the warehouse and to data/quality-internal/ (beside the
warehouse), never under reports/; one run's Data Docs replace the previous
run's there. What is published about quality holds no record id, no value and
no unrounded count.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from pipeline.config import PROJECT_ROOT
from pipeline.publish.checker import check_release

pytestmark = pytest.mark.slow


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GX_ANALYTICS_ENABLED": "false", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          env=env, timeout=900)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its sha256 (and the folder's own listing)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A 300-person demo published once (its planted conflicting duplicate dropped: at 300
    persons it is more than validation tolerates), then the same folders reused."""
    root = tmp_path_factory.mktemp("release")
    good, bad = root / "good", root / "bad"
    assert run_cli("demo", "--out", str(good), "--persons", "300", "--seed", "11").returncode == 0
    prescriptions = pd.read_csv(good / "prescriptions.csv", dtype=str, keep_default_na=False)
    duplicated = prescriptions["prescription_id"].duplicated(keep=False)
    assert duplicated.any()
    bad.mkdir()
    for name in ("persons.csv", "diagnoses.csv", "follow_ups.csv"):
        (bad / name).write_bytes((good / name).read_bytes())
    prescriptions.to_csv(bad / "prescriptions.csv", index=False)  # with the duplicate: validation stops (exit 4)
    prescriptions[~duplicated].to_csv(good / "prescriptions.csv", index=False)
    (good / "truth.json").unlink()
    args = ["--warehouse", str(root / "data" / "warehouse.duckdb"), "--reports", str(root / "reports")]
    first = run_cli("run", "--source", str(good), *args)
    assert first.returncode == 0, first.stderr[-2000:]
    return {"root": root, "good": good, "bad": bad, "args": args, "reports": root / "reports",
            "internal": root / "data" / "quality-internal"}


def test_a_run_stopped_by_validation_leaves_reports_byte_identical(published):
    before = snapshot(published["reports"])
    internal_before = sorted(p.name for p in published["internal"].glob("validation_*.json"))
    failed = run_cli("run", "--source", str(published["bad"]), *published["args"])
    assert failed.returncode == 4, failed.stderr[-2000:]
    assert "validation stopped" in failed.stderr and "Traceback" not in failed.stderr
    assert snapshot(published["reports"]) == before
    assert sorted(p.name for p in published["root"].iterdir()) == ["bad", "data", "good", "reports", "results"]  # no build left (results/: the store, beside reports/)
    # the failed run's results: in the warehouse and the analyst's folder, replacing the previous run's
    latest = json.loads((published["internal"] / "latest.json").read_text())
    assert latest["passed"] is False
    assert "prescriptions.prescription_id.conflicting_duplicate" in latest["stopped_by"]
    now = sorted(p.name for p in published["internal"].glob("validation_*.json"))
    assert len(now) == 1 and now != internal_before
    con = duckdb.connect(str(published["root"] / "data" / "warehouse.duckdb"), read_only=True)
    try:
        stopped = con.execute("select count(*) from audit_validation where run_id = ? and status = 'fail'",
                              [latest["run_id"]]).fetchall()[0][0]
    finally:
        con.close()
    assert stopped >= 1


def test_a_run_refused_by_the_output_checker_leaves_reports_byte_identical(published):
    before = snapshot(published["reports"])
    refused = run_cli("run", "--source", str(published["good"]), "--set", "disclosure.rounding_base=2",
                      *published["args"])
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "disclosure.rounding_base" in refused.stderr and ">= 3" in refused.stderr
    assert snapshot(published["reports"]) == before


def test_data_docs_and_results_stay_outside_reports_and_do_not_pile_up(published):
    reports, internal = published["reports"], published["internal"]
    assert (internal / "data_docs" / "index.html").is_file()
    assert not list(reports.rglob("data_docs")) and not list(reports.rglob("validation_*.json"))
    rerun = run_cli("run", "--source", str(published["good"]), *published["args"])
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert len(list(internal.glob("validation_*.json"))) == 1
    runs = [p for p in (internal / "data_docs" / "validations").rglob("*.html")]
    suites = len(list((internal / "data_docs" / "expectations").rglob("*.html")))
    assert 0 < len(runs) <= suites  # one page per suite of this run only


def test_published_quality_holds_no_record_no_value_and_only_rounded_counts(published):
    reports = published["reports"]
    assert check_release(reports, 11, 5) == []
    text = "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in reports.rglob("*")
                     if p.is_file() and p.suffix in {".json", ".csv", ".html", ".md"})
    for forbidden in ("Sampled Unexpected Values", "unexpected_index", "partial_unexpected", "record_id",
                      "RX0000", '"examples"'):
        assert forbidden not in text, forbidden
    quality = json.loads((reports / "quality" / "validation.json").read_text())
    assert quality["disclosure"] == {"min_cell_count": 11, "rounding_base": 5}
    assert quality["checks"] and {"count", "total", "share", "check_id"} <= set(quality["checks"][0])
    manifest = json.loads((reports / "manifest.json").read_text())
    assert manifest["disclosure"]["rounding_base"] == 5 and manifest["config"]["disclosure"]["rounding_base"] == 5
    assert all((row["rows_read"] - 11) % 5 == 2 for row in manifest["inputs"])
    page = (reports / "index.html").read_text(encoding="utf-8")
    assert "disclosure.rounding_base</code> = 5" in page


def test_quarantine_reasons_name_the_rule_never_the_value(tmp_path):
    """An identifier that reached a category column stays out of the quarantine reason."""
    from pipeline.config import load_config
    from pipeline.validate import run as validate_run
    from pipeline.warehouse import connect, ensure_audit_tables

    con = connect(":memory:")
    ensure_audit_tables(con)
    con.execute("create table raw_persons as select 'P1' as person_id, 1970 as birth_year, 'F' as sex, "
                "'North' as region, date '2010-01-01' as observation_start, date '2020-01-01' as observation_end, "
                "null::date as death_date, 'L1' as _load_id, 1 as _source_row")
    rows = ", ".join(f"('R{i}', 'P1', date '2015-01-01', 'clonazepam', 0.5, 60.0, 30, null::double, "
                     f"'anxiety', null, null, 'L1', {i})" for i in range(1, 300))
    con.execute("create table raw_prescriptions (prescription_id varchar, person_id varchar, dispensed_on date, "
                "drug varchar, strength_mg double, quantity double, days_supply integer, daily_dose_mg double, "
                "indication varchar, prescriber_id varchar, pharmacy_id varchar, _load_id varchar, _source_row integer)")
    con.execute(f"insert into raw_prescriptions values {rows}")
    con.execute("update raw_prescriptions set indication = 'Doe, Jane' where prescription_id = 'R7'")
    con.execute("create table raw_diagnoses (diagnosis_id varchar, person_id varchar, recorded_on date, code varchar, "
                "code_system varchar, _load_id varchar, _source_row integer)")
    con.execute("create table raw_follow_ups (follow_up_id varchar, person_id varchar, assessed_on date, "
                "sds_score integer, withdrawal_symptoms boolean, dependence_assessed boolean, misuse boolean, "
                "_load_id varchar, _source_row integer)")
    cfg = load_config(overrides=["extract.extract_date=2024-01-01"])
    try:
        validate_run(con, cfg, quality_dir=tmp_path / "internal", warehouse_path=":memory:", build_docs=False)
    except Exception:  # noqa: BLE001 - stopping or not, the quarantine table is what is looked at
        pass
    reasons = con.execute("select reason from audit_quarantine where record_id = 'R7'").fetchall()
    assert reasons, "the row with a name in indication is quarantined"
    assert all("Doe" not in r[0] and "Jane" not in r[0] for r in reasons)
    assert any(r[0].startswith("indication: ") for r in reasons)
