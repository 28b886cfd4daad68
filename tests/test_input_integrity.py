"""Input integrity as a data manager meets it (issue 13): files on disk, the CLI as a user runs it.

* every data line of a file is loaded or quarantined, counted against the file
  itself; quoting that runs over a line end is refused naming the line;
* an extract is one snapshot: all four raw tables are replaced together, and no
  stage runs on tables of two extracts;
* kill -9 part-way leaves the previous or the new warehouse; a second run at
  once gets one line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from pipeline.config import PROJECT_ROOT

PERSONS_HEADER = "person_id,birth_year,sex,region,observation_start,observation_end,death_date"
PRESCRIPTIONS_HEADER = (
    "prescription_id,person_id,dispensed_on,drug,strength_mg,quantity,days_supply,daily_dose_mg,indication,"
    "prescriber_id,pharmacy_id"
)
N_PERSONS = 40
N_PRESCRIPTIONS = 3000


def persons_lines(n: int = N_PERSONS, region: str = "North") -> list[str]:
    return [f"P{i},{1950 + i % 40},{'FM'[i % 2]},{region},2010-01-01,2023-12-31," for i in range(n)]


def prescription_lines(n: int = N_PRESCRIPTIONS) -> list[str]:
    return [
        f"R{i},P{i % N_PERSONS},2020-{1 + i % 12:02d}-{1 + i % 28:02d},clonazepam,0.5,60,30,,panic,D{i % 7},PH{i % 5}"
        for i in range(n)
    ]


DIAGNOSES = "diagnosis_id,person_id,recorded_on,code,code_system\nD1,P1,2020-03-01,F13.2,ICD10\nD2,P2,2020-04-01,F41.0,ICD10\n"
FOLLOW_UPS = (
    "follow_up_id,person_id,assessed_on,sds_score,withdrawal_symptoms,dependence_assessed,misuse\n"
    "F1,P1,2020-03-15,8,true,false,false\nF2,P2,2020-04-15,,,,\n"
)


def write_extract(folder: Path, prescriptions: list[str] | bytes | None = None,
                  persons: list[str] | bytes | None = None) -> Path:
    """A native extract on disk: data lines are joined with LF and end with one."""
    folder.mkdir(parents=True, exist_ok=True)

    def text(header: str, lines) -> bytes:
        return lines if isinstance(lines, bytes) else ("\n".join([header, *lines]) + "\n").encode()

    (folder / "persons.csv").write_bytes(text(PERSONS_HEADER, persons if persons is not None else persons_lines()))
    (folder / "prescriptions.csv").write_bytes(
        text(PRESCRIPTIONS_HEADER, prescriptions if prescriptions is not None else prescription_lines())
    )
    (folder / "diagnoses.csv").write_text(DIAGNOSES)
    (folder / "follow_ups.csv").write_text(FOLLOW_UPS)
    return folder


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
        env={**os.environ, "GX_ANALYTICS_ENABLED": "false"}, timeout=timeout,
    )


def ingest(source: Path, warehouse: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_cli("ingest", "--source", str(source), "--warehouse", str(warehouse), *extra)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The single line a refused run prints (no traceback, nothing else)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    return lines[0]


def query(warehouse: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def audit_counts(warehouse: Path) -> dict[str, tuple[int, int, int]]:
    """(read, loaded, quarantined) per table of the current load."""
    rows = query(warehouse, "select table_name, rows_read, rows_loaded, rows_quarantined from audit_load_current")
    return {table: tuple(counts) for table, *counts in rows}


def snapshots(warehouse: Path) -> dict[str, str]:
    rows = query(warehouse, "select table_name, comment from duckdb_tables() where table_name like 'raw_%'")
    return dict(rows)


# ------------------------------------------------------------ 1. rows counted against the file


def test_stray_quote_is_refused_naming_the_line_and_the_previous_load_stays(tmp_path):
    """The issue's file: one unmatched quote at data row 2,500 of 3,000 used to swallow the rest silently."""
    warehouse = tmp_path / "w.duckdb"
    assert ingest(write_extract(tmp_path / "good"), warehouse).returncode == 0
    before = audit_counts(warehouse)
    lines = prescription_lines()
    lines[2499] = lines[2499].replace(",panic,", ',"panic,')  # data row 2500 = file line 2501
    result = ingest(write_extract(tmp_path / "bad", prescriptions=lines), warehouse)
    assert result.returncode == 2
    message = one_error_line(result)
    assert message.startswith("error: prescriptions.csv: line 2501 (data row 2500): a quoted field opens")
    assert "fields may not span lines" in message
    assert audit_counts(warehouse) == before == {
        "persons": (40, 40, 0), "prescriptions": (3000, 3000, 0), "diagnoses": (2, 2, 0), "follow_ups": (2, 2, 0)
    }
    assert query(warehouse, "select count(*) from audit_load") == [(4,)]


def test_two_stray_quotes_100_rows_apart_are_refused_not_merged(tmp_path):
    """Two quotes 100 rows apart made the 100 rows between them vanish with no trace."""
    lines = prescription_lines()
    lines[1999] = lines[1999].replace(",D", ',"D', 1)
    lines[2099] = lines[2099].replace(",PH", ',PH"', 1)
    warehouse = tmp_path / "w.duckdb"
    result = ingest(write_extract(tmp_path / "x", prescriptions=lines), warehouse)
    assert result.returncode == 2
    assert "prescriptions.csv: line 2001 (data row 2000): a quoted field opens and does not close on that line " \
           "(it runs on to line 2101" in one_error_line(result)
    assert query(warehouse, "select count(*) from audit_load") == [(0,)]


def test_stray_quote_in_the_first_rows_of_a_small_file_gets_the_same_line(tmp_path):
    lines = prescription_lines(5)
    lines[1] = lines[1].replace("clonazepam", '"clonazepam')
    result = ingest(write_extract(tmp_path / "x", prescriptions=lines), tmp_path / "w.duckdb")
    assert result.returncode == 2
    assert one_error_line(result).startswith("error: prescriptions.csv: line 3 (data row 2): a quoted field opens")


def test_quoted_line_break_is_refused_as_fields_may_not_span_lines(tmp_path):
    """RFC 4180 allows a line break inside quotes; the contract has no free text, so it is refused (documented)."""
    lines = prescription_lines(50)
    lines[9] = lines[9].replace(",panic,", ',"pan\nic",')
    result = ingest(write_extract(tmp_path / "x", prescriptions=lines), tmp_path / "w.duckdb")
    assert result.returncode == 2
    assert "prescriptions.csv: line 11 (data row 10): a quoted field opens and does not close on that line " \
           "(it runs on to line 12" in one_error_line(result)


def test_quote_running_to_the_end_of_a_large_file_is_refused(tmp_path):
    lines = prescription_lines(30_000)  # more than 1 MB after the stray quote
    lines[100] = lines[100].replace(",panic,", ',"panic,')
    result = ingest(write_extract(tmp_path / "x", prescriptions=lines), tmp_path / "w.duckdb")
    assert result.returncode == 2
    message = one_error_line(result)
    assert "prescriptions.csv: line 102 (data row 101): a quoted field opens" in message
    assert "runs on for more than 1 MB" in message


def test_ragged_lines_are_quarantined_one_for_one(tmp_path):
    lines = prescription_lines()
    lines[99] += ",extra"  # too many fields
    lines[199] = lines[199].rsplit(",", 3)[0]  # too few
    lines[299] = lines[299].replace(",panic,", ',"panic"x,')  # text after a closing quote
    warehouse = tmp_path / "w.duckdb"
    result = ingest(write_extract(tmp_path / "x", prescriptions=lines), warehouse)
    assert result.returncode == 0, result.stderr
    assert "prescriptions  3,000 read, 2,997 loaded, 3 quarantined" in result.stderr
    assert audit_counts(warehouse)["prescriptions"] == (3000, 2997, 3)
    assert query(warehouse, "select source_row, rule_id from audit_quarantine order by 1") == [
        (100, "ingest.unreadable_line.too_many_columns"),
        (200, "ingest.unreadable_line.missing_columns"),
        (300, "ingest.unreadable_line.unquoted_value"),
    ]
    # rows after the quarantined lines keep the file's numbering (data row = file line - 1)
    assert query(warehouse, "select _source_row from raw_prescriptions where prescription_id = 'R2999'") == [(3000,)]


def test_a_few_non_utf8_lines_are_quarantined_a_latin1_file_is_refused(tmp_path):
    lines = persons_lines()
    lines[5] = lines[5].replace("North", "N\u00f6rth")
    lines[6] = lines[6].replace("North", "N\u00f6rth")
    mixed = ("\n".join([PERSONS_HEADER, *lines[:6]]) + "\n").encode() + \
        ("\n".join(lines[6:]) + "\n").encode("latin-1")
    warehouse = tmp_path / "w.duckdb"
    result = ingest(write_extract(tmp_path / "mixed", persons=mixed), warehouse)
    assert result.returncode == 0, result.stderr
    assert audit_counts(warehouse)["persons"] == (40, 39, 1)
    assert query(warehouse, "select source_row, rule_id from audit_quarantine") == [(7, "ingest.unreadable_line.invalid_encoding")]

    latin1 = ("\n".join([PERSONS_HEADER, *persons_lines(region="S\u00fcd")]) + "\n").encode("latin-1")
    result = ingest(write_extract(tmp_path / "latin1", persons=latin1), warehouse)
    assert result.returncode == 2
    assert one_error_line(result).startswith(
        "error: persons.csv: 40 of 40 rows unusable (most common: ingest.unreadable_line.invalid_encoding, 40 rows)"
    )
    assert audit_counts(warehouse)["persons"] == (40, 39, 1)  # the previous load stays


def test_nul_bytes_are_quarantined(tmp_path):
    lines = prescription_lines()
    data = ("\n".join([PRESCRIPTIONS_HEADER, *lines]) + "\n").encode()
    data = data.replace(b"\nR41,P1,", b"\nR41,P\x001,").replace(b",D2,PH4\nR1235,", b",D\x002,PH4\nR1235,")
    warehouse = tmp_path / "w.duckdb"
    result = ingest(write_extract(tmp_path / "x", prescriptions=data), warehouse)
    assert result.returncode == 0, result.stderr
    assert audit_counts(warehouse)["prescriptions"] == (3000, 2998, 2)
    assert query(warehouse, "select source_row, record_id, rule_id from audit_quarantine order by 1") == [
        (42, "R41", "ingest.control_character.person_id"),
        (1235, "R1234", "ingest.control_character.prescriber_id"),
    ]


def test_empty_file_is_refused_and_header_only_loads_zero_rows(tmp_path):
    warehouse = tmp_path / "w.duckdb"
    result = ingest(write_extract(tmp_path / "empty", prescriptions=b""), warehouse)
    assert result.returncode == 2
    assert one_error_line(result) == "error: prescriptions.csv: file is empty (expected a header row)"
    assert query(warehouse, "select count(*) from audit_load") == [(0,)]

    for name, data in {"lf": PRESCRIPTIONS_HEADER.encode() + b"\n", "bare": PRESCRIPTIONS_HEADER.encode(),
                       "blank": PRESCRIPTIONS_HEADER.encode() + b"\r\n\r\n\r\n"}.items():
        result = ingest(write_extract(tmp_path / name, prescriptions=data), warehouse)
        # loaded and counted; then the drugs check that follows every ingest stops the run in one line
        assert result.returncode == 2, result.stderr
        assert "hold no drug at all" in result.stderr.splitlines()[-1]
        assert audit_counts(warehouse)["prescriptions"] == (0, 0, 0), name


def test_line_ends_bom_blank_lines_and_no_final_newline_are_counted_as_lines(tmp_path):
    """read = data lines of the file: BOM, CRLF, a blank line inside, blank lines at the end, no final newline."""
    lines = prescription_lines()
    body = "\r\n".join([PRESCRIPTIONS_HEADER, *lines[:1500], "", *lines[1500:]])  # blank line = file line 1502
    warehouse = tmp_path / "w.duckdb"
    for name, data in {
        "crlf_bom_blank": b"\xef\xbb\xbf" + body.encode() + b"\r\n\r\n\r\n",
        "no_final_newline": body.encode(),
        "cr_only": "\r".join([PRESCRIPTIONS_HEADER, *lines]).encode() + b"\r",
    }.items():
        result = ingest(write_extract(tmp_path / name, prescriptions=data), warehouse)
        assert result.returncode == 0, (name, result.stderr)
        assert audit_counts(warehouse)["prescriptions"] == (3000, 3000, 0), name
        expected_row = 1502 if name != "cr_only" else 1501  # R1500 is on file line 1503 after the blank line
        assert query(warehouse, "select _source_row from raw_prescriptions where prescription_id = 'R1500'") == [
            (expected_row,)
        ], name


def test_carriage_return_inside_a_line_is_one_line_not_a_traceback(tmp_path):
    lines = prescription_lines()
    lines[9] = lines[9].replace(",panic,", ",pan\ric,")  # CR inside data row 10 of an LF file
    result = ingest(write_extract(tmp_path / "x", prescriptions=lines), tmp_path / "w.duckdb")
    assert result.returncode == 2
    assert one_error_line(result) == (
        "error: prescriptions.csv: line 11 (data row 10): a carriage return (CR) inside the line; "
        "save the file with one kind of line end (LF or CRLF)"
    )


def test_parquet_rows_read_come_from_its_metadata(tmp_path):
    folder = write_extract(tmp_path / "x")
    frame = pd.read_csv(folder / "prescriptions.csv", dtype=str)
    frame.loc[7, "days_supply"] = "thirty"
    frame.to_parquet(folder / "prescriptions.parquet", row_group_size=1000)
    (folder / "prescriptions.csv").unlink()
    warehouse = tmp_path / "w.duckdb"
    result = ingest(folder, warehouse)
    assert result.returncode == 0, result.stderr
    assert audit_counts(warehouse)["prescriptions"] == (3000, 2999, 1)
    assert query(warehouse, "select file_format from audit_load_current where table_name = 'prescriptions'") == [("parquet",)]


def test_quality_export_shows_the_current_load_counts(tmp_path):
    """The report's data-quality section reads the current load's read/loaded/quarantined, not a sum of history."""
    from pipeline.publish.tables import read_quality

    lines = prescription_lines()
    for i in range(10, 30):
        lines[i] += ",extra"
    warehouse = tmp_path / "w.duckdb"
    assert ingest(write_extract(tmp_path / "a"), warehouse).returncode == 0
    assert ingest(write_extract(tmp_path / "b", prescriptions=lines), warehouse).returncode == 0
    con = duckdb.connect(str(warehouse), read_only=True)
    quality = read_quality(con, min_cell_count=11)
    con.close()
    load = quality[(quality["source"] == "load") & (quality["table_name"] == "prescriptions")].set_index("check_id")
    # two loads of 3,000 lines: the section shows this load's 3,000 (loaded and quarantined
    # may be withheld by disclosure control; audit_load_current holds them)
    assert load.loc["rows_read", "count"] == 3000
    assert audit_counts(warehouse)["prescriptions"] == (3000, 2980, 20)


# ------------------------------------------------------------ 2. one extract, one snapshot


def test_native_then_omop_then_a_changed_native_extract_never_mixes(tmp_path, eunomia):
    """The issue's scenario: A, then Eunomia, then A2 (only persons.csv changed), then A again."""
    warehouse = tmp_path / "w.duckdb"
    extract_a = write_extract(tmp_path / "A")
    extract_a2 = write_extract(tmp_path / "A2", persons=persons_lines(N_PERSONS + 10))

    assert ingest(extract_a, warehouse).returncode == 0
    snapshot_a = set(snapshots(warehouse).values())
    omop = ingest(eunomia, warehouse, "--format", "omop", "--set", "drugs.ingredients=acetaminophen")
    assert omop.returncode == 0, omop.stderr
    assert query(warehouse, "select count(*) from raw_prescriptions") == [(14338,)]

    result = ingest(extract_a2, warehouse)
    assert result.returncode == 0, result.stderr
    assert "skipped" not in result.stderr  # every table of A2 is loaded, none kept from the CDM
    assert query(warehouse, "select count(*) from raw_persons") == [(50,)]
    assert query(warehouse, "select count(*) from raw_prescriptions") == [(3000,)]
    assert query(warehouse, "select count(*) from raw_diagnoses") == [(2,)]
    assert query(warehouse, "select count(*) from raw_follow_ups") == [(2,)]
    assert query(warehouse, "select count(*) from raw_prescriptions where prescription_id not like 'R%'") == [(0,)]
    assert query(warehouse, "select count(*) from audit_quarantine where table_name not in "
                            "('persons', 'prescriptions', 'diagnoses', 'follow_ups')") == [(0,)]
    snapshot_a2 = set(snapshots(warehouse).values())
    assert len(snapshot_a2) == 1 and snapshot_a2 != snapshot_a
    assert query(warehouse, "select distinct snapshot_id from audit_load_current") == [(snapshot_a2.pop(),)]

    result = ingest(extract_a, warehouse)  # A again restores A
    assert result.returncode == 0 and "skipped" not in result.stderr
    assert set(snapshots(warehouse).values()) == snapshot_a
    assert query(warehouse, "select count(*) from raw_persons") == [(40,)]
    assert ingest(extract_a, warehouse).stderr.count("unchanged, skipped") == 4


def test_stray_quote_in_an_omop_csv_table_is_refused_naming_the_line(tmp_path, eunomia):
    """A CDM exported to CSV files gets the same rule: a quote running on is refused, not silently merged."""
    folder = tmp_path / "cdm"
    folder.mkdir()
    con = duckdb.connect(str(eunomia), read_only=True)
    for table in ("person", "observation_period", "drug_exposure", "condition_occurrence", "concept", "concept_ancestor"):
        con.execute(f"copy {table} to '{folder / (table + '.csv')}' (header, delimiter ',')")
    con.close()
    warehouse = tmp_path / "w.duckdb"
    settings = ("--format", "omop", "--set", "drugs.ingredients=acetaminophen")
    assert ingest(folder, warehouse, *settings).returncode == 0
    before = query(warehouse, "select count(*) from audit_load")
    lines = (folder / "drug_exposure.csv").read_text().splitlines()
    lines[30000] = lines[30000].replace(",", ',"', 1)  # file line 30001
    (folder / "drug_exposure.csv").write_text("\n".join(lines) + "\n")
    result = ingest(folder, warehouse, *settings)
    assert result.returncode == 2
    assert one_error_line(result).startswith(
        "error: drug_exposure.csv: line 30001 (data row 30000): a quoted field opens and does not close on that line"
    )
    assert query(warehouse, "select count(*) from audit_load") == before


def test_one_changed_file_reloads_all_four_tables_in_one_load(tmp_path):
    warehouse = tmp_path / "w.duckdb"
    folder = write_extract(tmp_path / "x")
    assert ingest(folder, warehouse).returncode == 0
    (folder / "persons.csv").write_text("\n".join([PERSONS_HEADER, *persons_lines(41)]) + "\n")
    result = ingest(folder, warehouse)
    assert result.returncode == 0 and "skipped" not in result.stderr
    loads = query(warehouse, "select load_id, count(*), count(distinct snapshot_id) from audit_load group by 1 order by min(loaded_at)")
    assert [(n, s) for _, n, s in loads] == [(4, 1), (4, 1)]
    assert len(set(snapshots(warehouse).values())) == 1


@pytest.mark.parametrize("stage", ["validate", "transform", "estimate", "report"])
def test_later_stages_refuse_raw_tables_of_different_extracts(tmp_path, stage):
    warehouse = tmp_path / "w.duckdb"
    assert ingest(write_extract(tmp_path / "x"), warehouse).returncode == 0
    con = duckdb.connect(str(warehouse))
    # a table from another extract (a warehouse written before snapshots were recorded, or by hand)
    con.execute("comment on table raw_follow_ups is 'native:2:0000'")
    con.execute("create table analysis_person (person_id varchar); create table estimates (band varchar)")
    con.close()
    result = run_cli(stage, "--warehouse", str(warehouse), "--reports", str(tmp_path / "reports")) if stage == (
        "report") else run_cli(stage, "--warehouse", str(warehouse))
    assert result.returncode == 2
    message = one_error_line(result)
    assert message.startswith("error: the raw tables come from different extracts (")
    assert "follow_ups from native snapshot" in message and "load one extract whole" in message
    assert not (tmp_path / "reports").exists()


def test_estimate_refuses_analysis_tables_built_from_the_previous_extract(tmp_path):
    """ingest A, transform, ingest A2, estimate: the estimate would be A's cohort beside A2's counts."""
    warehouse = tmp_path / "w.duckdb"
    assert ingest(write_extract(tmp_path / "a"), warehouse).returncode == 0
    transformed = run_cli("transform", "--warehouse", str(warehouse))
    assert transformed.returncode == 0, transformed.stderr
    assert ingest(write_extract(tmp_path / "a2", persons=persons_lines(N_PERSONS + 1)), warehouse).returncode == 0
    result = run_cli("estimate", "--warehouse", str(warehouse))
    assert result.returncode == 2
    assert one_error_line(result).startswith("error: the transform results were built from another extract than the one "
                                             "loaded now (snapshot ")
    assert run_cli("transform", "--warehouse", str(warehouse)).returncode == 0
    con = duckdb.connect(str(warehouse), read_only=True)
    snapshot = con.execute("select snapshot_id from audit_run_log where stage = 'transform' order by finished_at desc "
                           "limit 1").fetchall()
    con.close()
    assert snapshot == [(set(snapshots(warehouse).values()).pop(),)]


def test_raw_tables_without_a_snapshot_are_refused(tmp_path):
    warehouse = tmp_path / "w.duckdb"
    assert ingest(write_extract(tmp_path / "x"), warehouse).returncode == 0
    con = duckdb.connect(str(warehouse))
    con.execute("comment on table raw_persons is NULL")
    con.close()
    result = run_cli("transform", "--warehouse", str(warehouse))
    assert result.returncode == 2
    assert one_error_line(result).startswith(
        "error: raw table persons missing or not from a recorded extract snapshot: load the extract again"
    )


# ------------------------------------------------------------ 3. kill -9 and the lock


@pytest.fixture(scope="module")
def big_extract(tmp_path_factory) -> Path:
    """A demo extract that takes a couple of seconds to ingest (seed printed for reruns)."""
    folder = tmp_path_factory.mktemp("big") / "extract"
    result = run_cli("demo", "--out", str(folder), "--persons", "5000", "--seed", "11")
    assert result.returncode == 0, result.stderr
    return folder


def test_kill_9_at_any_moment_leaves_the_previous_or_the_new_extract(tmp_path, big_extract):
    warehouse = tmp_path / "w.duckdb"
    assert ingest(write_extract(tmp_path / "a"), warehouse).returncode == 0
    old = (snapshots(warehouse), audit_counts(warehouse))
    started = time.perf_counter()
    assert ingest(big_extract, warehouse).returncode == 0
    whole_run = time.perf_counter() - started  # kills land across the run, wherever its time goes
    new = (snapshots(warehouse), audit_counts(warehouse))
    assert ingest(write_extract(tmp_path / "a"), warehouse).returncode == 0
    outcomes = []
    for delay in (0.3 * whole_run, 0.55 * whole_run, 0.8 * whole_run, 0.95 * whole_run):
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "ingest", "--source", str(big_extract), "--warehouse", str(warehouse)],
            cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "GX_ANALYTICS_ENABLED": "false"},
        )
        time.sleep(delay)
        was_running = process.poll() is None
        process.send_signal(signal.SIGKILL)
        process.wait()
        state = (snapshots(warehouse), audit_counts(warehouse))
        # the raw tables hold one extract, and audit_load_current counts exactly those rows
        assert len(set(state[0].values())) == 1, state
        for table, (read, loaded, quarantined) in state[1].items():
            if table in state[0] or f"raw_{table}" in state[0]:
                assert query(warehouse, f"select count(*) from raw_{table}") == [(loaded,)]
        assert state in (old, new)
        outcomes.append(("old" if state == old else "new", was_running))
        if state != old:  # back to A for the next kill
            assert ingest(write_extract(tmp_path / "a"), warehouse).returncode == 0
    assert any(running for _, running in outcomes), f"no kill landed while ingest ran: {outcomes}"
    print("kill -9 outcomes (state, was running):", outcomes)


def test_a_second_run_at_once_gets_one_line(tmp_path):
    warehouse = tmp_path / "w.duckdb"
    assert ingest(write_extract(tmp_path / "x"), warehouse).returncode == 0
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
                               "time.sleep(60)", str(warehouse)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        result = ingest(write_extract(tmp_path / "x"), warehouse)
        assert result.returncode == 2
        assert one_error_line(result) == (
            f"error: warehouse {warehouse} is in use by another run (process {holder.pid}): "
            "wait for it to finish, then run again"
        )
    finally:
        holder.kill()
        holder.wait()
