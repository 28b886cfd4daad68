"""Ingest of native extracts: typing, row accounting, idempotence, atomicity, bad files.

Every fixture is a tiny literal extract written by ``write_extract``.
"""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.config import load_config
from pipeline.errors import ExtractError
from pipeline.ingest import native
from pipeline.ingest.native import load_native
from pipeline.warehouse import connect, scalar

PERSONS = """person_id,birth_year,sex,region,observation_start,observation_end,death_date
P1,1970,F,North,2015-01-01,2022-12-31,
P2,1980,M,South,2015-01-01,2022-12-31,
P3,1990,F,South,2016-01-01,2022-12-31,2022-06-30
"""
PRESCRIPTIONS = """prescription_id,person_id,dispensed_on,drug,strength_mg,quantity,days_supply,daily_dose_mg,indication,prescriber_id,pharmacy_id
R1,P1,2020-01-01,clonazepam,0.5,60,30,,panic,D1,PH1
R2,P1,2020-02-01,clonazepam,0.5,60,30,1.0,panic,D1,PH1
R3,P2,2020-03-01,clonazepam,1,30,30,,anxiety,D2,PH2
"""
DIAGNOSES = """diagnosis_id,person_id,recorded_on,code,code_system
D1,P1,2020-03-01,F13.2,ICD10
"""
FOLLOW_UPS = """follow_up_id,person_id,assessed_on,sds_score,withdrawal_symptoms,dependence_assessed,misuse
F1,P1,2020-03-15,8,true,false,false
F2,P2,2020-04-15,,,,
"""
CLEAN = {"persons": PERSONS, "prescriptions": PRESCRIPTIONS, "diagnoses": DIAGNOSES, "follow_ups": FOLLOW_UPS}


def write_extract(folder, overrides=None, encoding="utf-8", newline="\n"):
    folder.mkdir(parents=True, exist_ok=True)
    tables = {**CLEAN, **(overrides or {})}
    for name, text in tables.items():
        if text is None:
            continue
        if isinstance(text, bytes):
            (folder / f"{name}.csv").write_bytes(text)
        else:
            (folder / f"{name}.csv").write_bytes(text.replace("\n", newline).encode(encoding))
    return folder


@pytest.fixture
def cfg():
    return load_config()


@pytest.fixture
def con(tmp_path):
    connection = connect(tmp_path / "warehouse.duckdb")
    yield connection
    connection.close()


def counts(con, table):
    return con.execute(
        "select rows_read, rows_loaded, rows_quarantined from audit_load where table_name = ? order by loaded_at desc limit 1",
        [table],
    ).fetchall()[0]


def test_clean_csv_is_typed_per_contract(tmp_path, con, cfg):
    load_native(con, write_extract(tmp_path / "x"), cfg)
    types = dict(con.execute("select column_name, data_type from information_schema.columns where table_name = 'raw_prescriptions'").fetchall())
    assert types["dispensed_on"] == "DATE" and types["days_supply"] == "BIGINT" and types["strength_mg"] == "DOUBLE"
    assert con.execute("select prescription_id, daily_dose_mg from raw_prescriptions order by 1").fetchall() == [
        ("R1", None), ("R2", 1.0), ("R3", None)
    ]
    assert con.execute("select sds_score, withdrawal_symptoms from raw_follow_ups order by follow_up_id").fetchall() == [
        (8, True), (None, None)
    ]
    assert counts(con, "persons") == (3, 3, 0)


def test_parquet_and_csv_load_the_same_rows(tmp_path, con, cfg):
    folder = write_extract(tmp_path / "pq")
    frame = pd.read_csv(folder / "prescriptions.csv", dtype=str)
    frame["strength_mg"] = frame["strength_mg"].astype(float)
    frame["days_supply"] = frame["days_supply"].astype(int)
    frame["dispensed_on"] = pd.to_datetime(frame["dispensed_on"]).dt.date
    frame.to_parquet(folder / "prescriptions.parquet")
    (folder / "prescriptions.csv").unlink()
    load_native(con, folder, cfg)
    assert con.execute("select prescription_id, dispensed_on::varchar, days_supply, _source_row from raw_prescriptions order by 1").fetchall() == [
        ("R1", "2020-01-01", 30, 1), ("R2", "2020-02-01", 30, 2), ("R3", "2020-03-01", 30, 3)
    ]


def test_reloading_the_same_files_changes_nothing(tmp_path, con, cfg):
    folder = write_extract(tmp_path / "x")
    first = load_native(con, folder, cfg)
    before = con.execute("select count(*) from audit_load").fetchall()
    second = load_native(con, folder, cfg)
    assert first.changed and not second.changed
    assert con.execute("select count(*) from audit_load").fetchall() == before
    assert scalar(con, "select count(*) from raw_prescriptions") == 3


def test_changed_file_replaces_its_table_without_duplicates(tmp_path, con, cfg):
    folder = write_extract(tmp_path / "x")
    load_native(con, folder, cfg)
    write_extract(folder, {"prescriptions": PRESCRIPTIONS + "R4,P2,2020-04-01,clonazepam,1,30,30,,anxiety,D2,PH2\n"})
    load_native(con, folder, cfg)
    assert scalar(con, "select count(*) from raw_prescriptions") == 4
    assert scalar(con, "select count(distinct prescription_id) from raw_prescriptions") == 4


def test_every_row_is_loaded_or_quarantined_with_a_reason(tmp_path, con, cfg):
    bad = PRESCRIPTIONS + (
        "R4,P2,2020-13-01,clonazepam,1,30,30,,anxiety,D2,PH2\n"  # impossible date
        "R5,P2,01/04/2020,clonazepam,1,30,30,,anxiety,D2,PH2\n"  # not ISO
        "R6,P2,2020-04-01,clonazepam,nan,30,30,,anxiety,D2,PH2\n"  # NaN
        "R7,P2,2020-04-01,clonazepam,1,inf,30,,anxiety,D2,PH2\n"  # inf
        "R8,P2,2020-04-01,clonazepam,1,30,thirty,,anxiety,D2,PH2\n"  # wrong type
        "R9,P2,2020-04-01,clonazepam,1,30,30,,anxiety,D2,PH2,extra\n"  # too many fields
        "R10,,2020-04-01,clonazepam,1,30,30,,anxiety,D2,PH2\n"  # required missing
        "R11,P2,2020-04-01,clonazepam,1,30,30,,anxiety,'; drop table raw_persons; --,PH2\n"  # SQL-looking text
    )
    good = "".join(f"G{i},P3,2020-05-01,clonazepam,1,30,30,,anxiety,D2,PH2\n" for i in range(10))
    persons = PERSONS + "".join(f"Q{i},1970,F,North,2015-01-01,2022-12-31,\n" for i in range(20))
    load_native(con, write_extract(tmp_path / "x", {"prescriptions": bad + good, "persons": persons}), cfg)
    read, loaded, quarantined = counts(con, "prescriptions")
    assert (read, loaded, quarantined) == (21, 14, 7)
    rules = dict(con.execute("select record_id, rule_id from audit_quarantine where table_name = 'prescriptions' and record_id is not null").fetchall())
    assert rules == {
        "R4": "ingest.type.dispensed_on", "R5": "ingest.type.dispensed_on", "R6": "ingest.type.strength_mg",
        "R7": "ingest.type.quantity", "R8": "ingest.type.days_supply", "R10": "ingest.required_missing.person_id",
    }
    # The ragged line is quarantined with DuckDB's reason and its data row number.
    assert con.execute("select source_row, rule_id from audit_quarantine where record_id is null").fetchall() == [
        (9, "ingest.unreadable_line.too_many_columns")
    ]
    assert scalar(con, "select count(*) from raw_persons") == 23  # the SQL-looking text was just text
    assert scalar(con, "select prescriber_id from raw_prescriptions where prescription_id = 'R11'").startswith("'; drop")
    # Source rows stay the file's own numbering around the quarantined ones.
    assert scalar(con, "select _source_row from raw_prescriptions where prescription_id = 'R11'") == 11


def test_failed_load_leaves_the_warehouse_as_it_was(tmp_path, con, cfg, monkeypatch):
    load_native(con, write_extract(tmp_path / "a"), cfg)
    before = con.execute("select * from raw_prescriptions order by 1").fetchall()
    audit_before = scalar(con, "select count(*) from audit_load")
    changed = write_extract(tmp_path / "b", {
        "persons": PERSONS + "P9,1960,M,North,2015-01-01,2022-12-31,\n",
        "prescriptions": PRESCRIPTIONS + "R9,P9,2020-04-01,clonazepam,1,30,30,,anxiety,D2,PH2\n",
        "follow_ups": FOLLOW_UPS + "F9,P9,2020-05-01,3,false,false,false\n",
    })
    real = native._stage_table
    calls = []

    def crash_on_third_table(con_, table, *args, **kwargs):
        calls.append(table.name)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C part-way through the load
        return real(con_, table, *args, **kwargs)

    monkeypatch.setattr(native, "_stage_table", crash_on_third_table)
    with pytest.raises(KeyboardInterrupt):
        load_native(con, changed, cfg)
    assert con.execute("select * from raw_prescriptions order by 1").fetchall() == before
    assert scalar(con, "select count(*) from raw_persons") == 3
    assert scalar(con, "select count(*) from audit_load") == audit_before


def test_awkward_but_valid_files_are_accepted(tmp_path, con, cfg):
    """UTF-8 with BOM, CRLF line endings, another delimiter, extra columns, ICD codes without dot."""
    persons_semicolon = PERSONS.replace(",", ";")
    diagnoses = DIAGNOSES.replace("F13.2", "F132").replace("code_system\n", "code_system,source_note\n").replace("ICD10\n", "ICD10,x\n")
    folder = write_extract(tmp_path / "x", {"persons": persons_semicolon, "diagnoses": diagnoses}, encoding="utf-8-sig", newline="\r\n")
    summary = load_native(con, folder, cfg)
    assert [t.rows_loaded for t in summary.tables] == [3, 3, 1, 2]
    assert scalar(con, "select person_id from raw_persons order by 1 limit 1") == "P1"
    assert scalar(con, "select code from raw_diagnoses") == "F132"
    assert next(t for t in summary.tables if t.table == "diagnoses").extra_columns == ["source_note"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"diagnoses": None}, "table 'diagnoses' missing"),
        ({"prescriptions": PRESCRIPTIONS.replace("days_supply,", "supply,")}, "prescriptions.csv: required column 'days_supply' missing"),
        ({"follow_ups": b""}, "follow_ups.csv: file is empty"),
        ({"persons": PERSONS.encode("utf-8").replace(b"North", b"N\xf6rth").replace(b"South", b"S\xf6uth")}, "persons.csv: 3 of 3 rows unusable"),
    ],
)
def test_broken_extracts_get_one_clear_line(tmp_path, con, cfg, overrides, message):
    with pytest.raises(ExtractError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_native(con, write_extract(tmp_path / "x", overrides), cfg)


def test_header_only_file_loads_zero_rows(tmp_path, con, cfg):
    load_native(con, write_extract(tmp_path / "x", {"diagnoses": "diagnosis_id,person_id,recorded_on,code,code_system\n"}), cfg)
    assert counts(con, "diagnoses") == (0, 0, 0)


def test_a_few_bad_rows_in_another_encoding_or_with_nul_are_quarantined(tmp_path, con, cfg):
    persons = (PERSONS + "P4,1970,F,N\xf6rth,2015-01-01,2022-12-31,\n").encode("latin-1")
    persons = persons.replace(b"P2,1980,M,South", b"P2,1980,M,So\x00uth")
    load_native(con, write_extract(tmp_path / "x", {"persons": persons}), cfg)
    assert counts(con, "persons") == (4, 2, 2)
    rules = {r for (r,) in con.execute("select rule_id from audit_quarantine where table_name = 'persons'").fetchall()}
    assert rules == {"ingest.unreadable_line.invalid_encoding", "ingest.control_character.region"}


def test_corrupt_parquet_is_refused(tmp_path, con, cfg):
    folder = write_extract(tmp_path / "x", {"diagnoses": None})
    (folder / "diagnoses.parquet").write_bytes(b"PAR1 this is not really parquet PAR1")
    with pytest.raises(ExtractError, match="diagnoses.parquet: cannot be read as Parquet"):
        load_native(con, folder, cfg)


def test_one_megabyte_field_is_quarantined_not_fatal(tmp_path, con, cfg):
    huge = "x" * 1_000_000
    persons = PERSONS + f"P4,1970,F,{huge},2015-01-01,2022-12-31,\n"
    load_native(con, write_extract(tmp_path / "x", {"persons": persons}), cfg)
    assert counts(con, "persons") == (4, 3, 1)
    assert scalar(con, "select rule_id from audit_quarantine") == "ingest.too_long.region"


def test_missing_folder(tmp_path, con, cfg):
    with pytest.raises(ExtractError, match="extract folder not found"):
        load_native(con, tmp_path / "nope", cfg)


@pytest.mark.parametrize(
    "data, lines, trailing_blank",
    [
        (b"h\n1\n2\n", 3, 0),
        (b"h\n1\n2", 3, 0),  # last line without newline
        (b"h\r\n1\r\n2\r\n\r\n\r\n", 5, 2),  # CRLF, two blank lines at the end
        (b"h\r1\r2\r", 3, 0),  # CR only
        (b"\xef\xbb\xbfh\n1\n\n2\n", 4, 0),  # BOM, a blank line inside (not trailing)
        (b"h", 1, 0),
    ],
)
@pytest.mark.parametrize("block_size", [1, 2, 3, 1 << 22])
def test_line_count_is_the_same_whatever_the_block_boundaries(tmp_path, data, lines, trailing_blank, block_size):
    """CRLF split across two read blocks counts once; the count matches Python's own line splitting."""
    path = tmp_path / "f.csv"
    path.write_bytes(data)
    scan = native.scan_file(path, block_size=block_size)
    assert (scan.lines, scan.trailing_blank) == (lines, trailing_blank)
    assert scan.lines == len(data.decode("utf-8-sig").splitlines())
    assert scan.sha256 == native.sha256_of(path)


def test_snapshot_is_recorded_on_every_raw_table_and_in_audit_load(tmp_path, con, cfg):
    summary = load_native(con, write_extract(tmp_path / "x"), cfg)
    comments = dict(con.execute("select table_name, comment from duckdb_tables() where table_name like 'raw_%'").fetchall())
    assert set(comments.values()) == {summary.snapshot_id} and len(comments) == 4
    assert con.execute("select distinct snapshot_id from audit_load").fetchall() == [(summary.snapshot_id,)]
    assert summary.snapshot_id.startswith(f"native:{native.INGEST_VERSION}:")


# ---------------------------------------------------------------- one parse, numbered by its place in the file


def _small_buffers(monkeypatch):
    """DuckDB reads the CSV in ~256 KB buffers, in parallel: a few MB become many batches."""
    scan_sql = native._scan_sql

    def scan(path, fmt, rejects=None):
        return scan_sql(path, fmt, rejects).replace("max_line_size = 20000000", "max_line_size = 65536, buffer_size = 262144")

    monkeypatch.setattr(native, "_scan_sql", scan)


def _numbered_prescriptions(n, bad=None, newline="\n", bom=False, final_newline=True):
    """Prescription lines whose id is their data row number (R<row>); ``bad`` maps row -> the line to write instead."""
    header = PRESCRIPTIONS.splitlines()[0]
    lines = [header] + [
        (bad or {}).get(row, f"R{row},P{1 + row % 3},2020-01-{1 + row % 28:02d},clonazepam,0.5,60,30,,panic,D1,PH1")
        for row in range(1, n + 1)
    ]
    text = newline.join(lines) + (newline if final_newline else "")
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode()


@pytest.mark.parametrize("newline, bom, final_newline", [("\n", False, True), ("\r\n", True, False), ("\r\n", False, True)])
def test_source_rows_follow_the_file_across_parallel_batches(tmp_path, con, cfg, monkeypatch, newline, bom, final_newline):
    """60,000 rows read as ~20 parallel batches: every loaded row keeps its file row, every bad line is
    quarantined at its own row, whatever the line ends, a BOM or a last line without a line end.
    (With CRLF, DuckDB's own line numbers for rejected lines can be one off at a buffer boundary.)"""
    _small_buffers(monkeypatch)
    n = 60_000
    bad = {
        7: "R7,P1,2020-01-01,clonazepam,0.5,60,30,,panic,D1,PH1,extra",  # ragged: too many fields
        20_001: "R20001,P1,01/02/2020,clonazepam,0.5,60,30,,panic,D1,PH1",  # not an ISO date
        20_002: "R20002,,2020-01-01,clonazepam,0.5,60,30,,panic,D1,PH1",  # required person_id missing
        33_333: '"R33333","P1","2020-01-01","clonazepam","0.5","60","30","","panic, with comma ""quoted""","D1","PH1"',
        45_000: "R45000,P1,2020-01-01,clonazepam,0.5,sixty,30,,panic,D1,PH1",  # not a number
        n: "R60000,P1,2020-01-01",  # ragged last line: too few fields
    }
    folder = write_extract(tmp_path / "x", {"prescriptions": _numbered_prescriptions(n, bad, newline, bom, final_newline)})
    summary = load_native(con, folder, cfg)
    load = next(t for t in summary.tables if t.table == "prescriptions")
    assert (load.rows_read, load.rows_loaded, load.rows_quarantined) == (n, n - 5, 5)
    assert scalar(con, "select count(*) from raw_prescriptions where prescription_id <> 'R' || _source_row") == 0
    assert scalar(con, "select indication from raw_prescriptions where _source_row = 33333") == 'panic, with comma "quoted"'
    quarantined = con.execute(
        "select source_row, rule_id from audit_quarantine where table_name = 'prescriptions' order by 1").fetchall()
    assert quarantined == [
        (7, "ingest.unreadable_line.too_many_columns"), (20_001, "ingest.type.dispensed_on"),
        (20_002, "ingest.required_missing.person_id"), (45_000, "ingest.type.quantity"),
        (n, "ingest.unreadable_line.missing_columns"),
    ]


def test_blank_lines_inside_a_large_file_keep_the_numbering(tmp_path, con, cfg, monkeypatch):
    _small_buffers(monkeypatch)
    data = _numbered_prescriptions(30_000).replace(b"\nR12000,", b"\n\nR12000,").replace(b"\nR29000,", b"\n\n\nR29000,")
    load_native(con, write_extract(tmp_path / "x", {"prescriptions": data}), cfg)
    assert counts(con, "prescriptions") == (30_000, 30_000, 0)
    # R12000 is now on file line 12002 (data row 12001): numbering follows the file, blank lines are not records
    assert scalar(con, "select _source_row from raw_prescriptions where prescription_id = 'R12000'") == 12_001
    assert scalar(con, "select _source_row from raw_prescriptions where prescription_id = 'R29000'") == 29_003


def test_stray_quote_deep_in_a_large_file_is_refused_naming_its_line(tmp_path, con, cfg, monkeypatch):
    _small_buffers(monkeypatch)
    bad = {41_234: 'R41234,P1,2020-01-01,clonazepam,0.5,60,30,,"panic,D1,PH1'}
    folder = write_extract(tmp_path / "x", {"prescriptions": _numbered_prescriptions(50_000, bad)})
    with pytest.raises(ExtractError, match=r"prescriptions.csv: line 41235 \(data row 41234\): a quoted field opens"):
        load_native(con, folder, cfg)
    assert scalar(con, "select count(*) from information_schema.tables where table_name = 'raw_prescriptions'") == 0


@pytest.mark.parametrize("data, message", [
    (b"\xef\xbb\xbf", "the first line is not a header row"),  # a BOM and nothing else
    (b"\r\n\r\n", "the first line is not a header row"),
])
def test_files_without_a_header_line_are_refused_in_one_line(tmp_path, con, cfg, data, message):
    with pytest.raises(ExtractError, match=f"diagnoses.csv: {message}"):
        load_native(con, write_extract(tmp_path / "x", {"diagnoses": data}), cfg)


def test_header_only_file_with_bom_crlf_and_no_final_newline_loads_zero_rows(tmp_path, con, cfg):
    header = b"\xef\xbb\xbfdiagnosis_id,person_id,recorded_on,code,code_system"
    for data in (header, header + b"\r\n", header + b"\r\n\r\n"):
        load_native(con, write_extract(tmp_path / "x", {"diagnoses": data}), cfg)
        assert counts(con, "diagnoses") == (0, 0, 0)


def test_a_quarantined_row_keeps_no_text_value_in_the_raw_table(tmp_path, con, cfg):
    """The rule and the record id go to the quarantine; no value of the row is stored in raw_*."""
    persons = PERSONS + "P4,1970,F," + "Leeds " * 20 + ",2015-01-01,2022-12-31,\n"
    load_native(con, write_extract(tmp_path / "x", {"persons": persons}), cfg)
    assert counts(con, "persons") == (4, 3, 1)
    assert con.execute("select record_id, source_row, rule_id from audit_quarantine").fetchall() == [
        ("P4", 4, "ingest.too_long.region")]
    assert scalar(con, "select count(*) from raw_persons where region like 'Leeds%' or person_id = 'P4'") == 0
    columns = [r[0] for r in con.execute("describe raw_persons").fetchall()]
    assert "_rule" not in columns and "_record_id" not in columns and columns[-2:] == ["_source_row", "_load_id"]


def test_extra_columns_named_like_the_loaders_own_columns_are_ignored(tmp_path, con, cfg):
    diagnoses = "diagnosis_id,person_id,recorded_on,code,code_system,_rule,_source_row,_load_id\n" \
                "D1,P1,2020-03-01,F13.2,ICD10,x,99,y\n"
    summary = load_native(con, write_extract(tmp_path / "x", {"diagnoses": diagnoses}), cfg)
    assert next(t for t in summary.tables if t.table == "diagnoses").extra_columns == ["_rule", "_source_row", "_load_id"]
    assert con.execute("select diagnosis_id, _source_row, _load_id = ? from raw_diagnoses",
                       [summary.load_id]).fetchall() == [("D1", 1, True)]
