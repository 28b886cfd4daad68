"""The benchmark tool (bench/): its generator passes the contract, its results keep their keys,
its sizes parse, its tables print. No timed assertion: the figures themselves are docs/performance.md's."""

from __future__ import annotations

import doctest
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

import bench.generate
import bench.measure
import bench.report
import bench.run
import bench.simulate
from bench.generate import TABLE_NAMES, ensure_extract, persons_for, write_extract
from bench.measure import Measurement, measure
from bench.report import (SizeError, format_table, linearity, markdown_table, parse_sizes, render, size_label,
                          summarise_size)
from bench.run import PipelineCli, options_in_help, stages_in_help
from pipeline import transform
from pipeline.config import PROJECT_ROOT, Config
from pipeline.contract import CODE_SYSTEMS, INDICATIONS, SEXES, TABLES
from pipeline.warehouse import connect

ENV = {**os.environ, "GX_ANALYTICS_ENABLED": "false", "OPENBLAS_NUM_THREADS": "1", "COLUMNS": "200"}


@pytest.mark.parametrize("module", [bench.generate, bench.measure, bench.report, bench.run, bench.simulate])
def test_doctests_of_the_bench_package(module):
    # bench/ is outside the pytest testpaths (pipeline, tests): its doctests run here
    failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert failures == 0 and tried > 0


# ---------------------------------------------------------------- the generator


@pytest.fixture(scope="module")
def tiny_extract(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench") / "extract"
    info = write_extract(folder, 3_000, seed=11, chunk_persons=250)  # several chunks
    return folder, info


def _read(path: Path):
    con = duckdb.connect()
    try:
        literal = "'" + str(path).replace("'", "''") + "'"
        return con.execute(f"select * from read_csv({literal}, header = true, all_varchar = true)").fetchall(), \
            [d[0] for d in con.execute(f"describe select * from read_csv({literal}, header = true)").fetchall()]
    finally:
        con.close()


def test_generator_writes_the_contract_columns_and_allowed_values(tiny_extract):
    folder, info = tiny_extract
    for name in TABLE_NAMES:
        rows, columns = _read(folder / f"{name}.csv")
        assert columns == TABLES[name].column_names
        assert len(rows) == info["rows"][name] > 0
    persons, _ = _read(folder / "persons.csv")
    assert {r[2] for r in persons} <= set(SEXES)
    assert len({r[0] for r in persons}) == len(persons) == persons_for(3_000)
    prescriptions, _ = _read(folder / "prescriptions.csv")
    assert {r[8] for r in prescriptions} <= set(INDICATIONS)
    assert len({r[0] for r in prescriptions}) == len(prescriptions)
    assert abs(len(prescriptions) / 3_000 - 1) < 0.1
    diagnoses, _ = _read(folder / "diagnoses.csv")
    assert {r[4] for r in diagnoses} <= set(CODE_SYSTEMS)
    assert any(r[3].startswith("F13") for r in diagnoses)  # some outcome codes


def test_generator_is_deterministic_and_independent_of_the_chunk_size(tmp_path, tiny_extract):
    folder, _ = tiny_extract
    again = write_extract(tmp_path / "again", 3_000, seed=11, chunk_persons=10_000)  # one chunk
    for name in TABLE_NAMES:
        assert (tmp_path / "again" / f"{name}.csv").read_bytes() == (folder / f"{name}.csv").read_bytes()
    other = write_extract(tmp_path / "other", 3_000, seed=12)
    assert (tmp_path / "other" / "prescriptions.csv").read_bytes() != (folder / "prescriptions.csv").read_bytes()
    assert again["rows"] == write_extract(tmp_path / "again", 3_000, seed=11)["rows"]
    assert other["seed"] == 12


def test_an_extract_is_reused_only_when_size_seed_and_generator_match(tmp_path):
    first = ensure_extract(tmp_path / "x", 500, seed=1)
    assert not first["reused"]
    assert ensure_extract(tmp_path / "x", 500, seed=1)["reused"]
    assert not ensure_extract(tmp_path / "x", 500, seed=2)["reused"]
    assert not ensure_extract(tmp_path / "x", 600, seed=2)["reused"]


def test_ingest_of_a_generated_extract_succeeds_and_the_transform_holds_its_invariants(tiny_extract, tmp_path):
    folder, info = tiny_extract
    warehouse = tmp_path / "w.duckdb"
    done = subprocess.run([sys.executable, "-m", "pipeline", "ingest", "--source", str(folder),
                           "--warehouse", str(warehouse)], capture_output=True, text=True, cwd=PROJECT_ROOT, env=ENV)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    con = connect(warehouse)
    try:
        loaded = dict(con.execute("select 'prescriptions', count(*) from raw_prescriptions union all "
                                  "select 'persons', count(*) from raw_persons").fetchall())
        assert loaded["persons"] == info["rows"]["persons"]
        assert 0 < loaded["prescriptions"] <= info["rows"]["prescriptions"]
        # (the invariants of the old synthetic transform benchmark, on the one generator's extract)
        summary = transform.run(con, Config())
        assert summary["cohort"] == summary["outcomes"] == summary["analysis_person"] > 0
        assert con.execute(
            """select (select sum(dispensings) from episodes)
                    = (select count(*) from stg_prescriptions rx join stg_persons p using (person_id)
                       where rx.drug = 'clonazepam' and rx.dispensed_on <= least(p.observation_end, p.death_date))"""
        ).fetchall() == [(True,)]
        assert con.execute("select count(*) from episodes where episode_end < episode_start or duration_days < 1"
                           ).fetchall() == [(0,)]
        attrition = con.execute(
            "select persons_before, excluded, persons_after from cohort_attrition order by step").fetchall()
        assert all(before - excluded == after for before, excluded, after in attrition)
        assert attrition[-1][2] == summary["cohort"]
        # the extract asks the estimators real questions: some ascertained, some dependent, some not
        ascertained, dependent = con.execute(
            "select count_if(ascertained), count_if(dependence) from analysis_person").fetchall()[0]
        assert 0 < dependent < ascertained < summary["cohort"]
    finally:
        con.close()


# ---------------------------------------------------------------- sizes


@pytest.mark.parametrize("text, sizes", [
    ("1M", [1_000_000]), ("10M", [10_000_000]), ("100M", [100_000_000]), ("250k", [250_000]),
    ("10M,1M", [1_000_000, 10_000_000]), (" 1m , 250K ,1000000", [250_000, 1_000_000]), ("2.5M", [2_500_000]),
])
def test_sizes_parse(text, sizes):
    assert parse_sizes(text) == sizes
    assert [size_label(s) for s in sizes] == [size_label(parse_sizes(size_label(s))[0]) for s in sizes]


@pytest.mark.parametrize("text", ["", "ten", "1G", "-1M", "0", ",,"])
def test_bad_sizes_are_one_clear_error(text):
    with pytest.raises(SizeError, match="--sizes"):
        parse_sizes(text)


def test_a_bad_size_on_the_command_line_is_one_line_exit_2():
    done = subprocess.run([sys.executable, "-m", "bench", "--sizes", "lots"], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, env=ENV)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: --sizes: 'lots' is not a row count (e.g. 1M, 10M, 100M, 250k)"]


# ---------------------------------------------------------------- stages from the CLI's help


def test_stages_come_from_the_cli_help_in_pipeline_order():
    help_text = ("│ demo       Build\n│ ingest     Load an extract\n│ report     Publish\n│ estimate   Estimate\n"
                 "│            dependence (writes table `estimates`) and the\n│ sensitivity  The sensitivity analyses\n"
                 "│ transform  Build\n│ validate   Run\n│ run        Run every stage: ingest, validate\n")
    assert stages_in_help(help_text) == ["ingest", "validate", "transform", "estimate", "sensitivity", "report"]
    assert stages_in_help(help_text.replace("│ sensitivity  The sensitivity analyses\n", "")) == [
        "ingest", "validate", "transform", "estimate", "report"]


def test_each_stage_gets_only_the_options_it_accepts():
    cli = PipelineCli.__new__(PipelineCli)
    cli.python, cli.stages, cli.top_options = "py", ["ingest", "report"], {"--help"}
    cli.options = {"ingest": options_in_help("--source <path> --warehouse --set --engine"),
                   "report": options_in_help("--warehouse --reports --set")}
    assert not cli.engine_supported()
    assert cli.command("ingest", Path("x"), Path("w.duckdb"), Path("r"), ["a.b=1"], "spark") == [
        "py", "-m", "pipeline", "ingest", "--warehouse", "w.duckdb", "--engine", "spark", "--source", "x",
        "--set", "a.b=1"]
    assert cli.command("report", Path("x"), Path("w.duckdb"), Path("r"), [], None) == [
        "py", "-m", "pipeline", "report", "--warehouse", "w.duckdb", "--reports", "r"]
    cli.top_options = {"--engine"}
    assert cli.engine_supported()
    assert cli.command("report", Path("x"), Path("w"), Path("r"), [], "spark")[:5] == [
        "py", "-m", "pipeline", "--engine", "spark"]


def test_the_real_cli_lists_at_least_the_five_stages():
    cli = PipelineCli(sys.executable)
    assert {"ingest", "validate", "transform", "estimate", "report"} <= set(cli.stages)
    assert "--source" in cli.options["ingest"] and "--reports" in cli.options["report"]


# ---------------------------------------------------------------- measurement


def test_measure_reports_seconds_peak_memory_and_the_error_line(tmp_path):
    ok = measure("grow", [sys.executable, "-c", "x = bytearray(150_000_000); print('done')"], tmp_path / "ok.log")
    assert ok.ok and ok.exit_code == 0 and ok.seconds > 0
    assert ok.peak_mb > 150  # its own peak, in MB of 10^6 bytes
    failed = measure("fail", [sys.executable, "-c", "import sys; print('error: no such table'); sys.exit(3)"],
                     tmp_path / "fail.log")
    assert (failed.status, failed.exit_code, failed.error) == ("failed", 3, "error: no such table")
    slow = measure("slow", [sys.executable, "-c", "import time; time.sleep(30)"], tmp_path / "slow.log", timeout=1.5)
    assert slow.status == "timeout" and slow.seconds < 20


def test_measure_counts_the_cpu_of_a_child_process_never_waited_for(tmp_path):
    """As Spark's JVM: pyspark starts it, the pipeline leaves it to die with it (no wait, no rusage)."""
    burn = "import time\nend = time.process_time() + 1.5\nwhile time.process_time() < end: pass"
    parent = ("import os, subprocess, sys, time\n"
              f"subprocess.Popen([sys.executable, '-c', {burn!r}])\n"
              "time.sleep(3.5)\nos._exit(0)")
    measured = measure("jvm-like", [sys.executable, "-c", parent], tmp_path / "tree.log")
    assert measured.ok
    assert measured.cpu_seconds >= 1.2  # the parent itself sleeps: rusage alone says ~0.05 s


# ---------------------------------------------------------------- results.json and the table


def stage(name, seconds, peak_mb=100.0, status="ok"):
    return Measurement(name, status, seconds, peak_mb, 0 if status == "ok" else 2, "" if status == "ok" else "error: x",
                       cpu_seconds=seconds / 2)


EXTRACT = {"seed": 1, "persons": 2_000_000, "rows": {"persons": 2_000_000, "prescriptions": 10_000_000},
           "bytes": {"persons": 10 ** 8}}


def ten_million(**overrides):
    stages = [stage("ingest", 20.0, 900.0), stage("validate", 15.0, 2500.0), stage("transform", 5.0),
              stage("estimate", 8.0), stage("sensitivity", 4.0), stage("report", 8.0)]
    gate = stage("gate", 4.0, 700.0)
    return summarise_size(10_000_000, EXTRACT, [stage("bare", 12.0, 300.0), stage("bare", 10.0, 310.0)], stages,
                          gate, {"findings": 0})


def test_results_keep_todays_keys_and_add_ratio_peak_and_share_per_stage():
    result = ten_million()
    for key in ("pipeline_seconds", "pipeline_ratio", "pipeline_peak_mb", "pipeline_complete", "bare_load_seconds",
                "stages"):
        assert key in result
    assert result["bare_load_seconds"] == 10.0  # the smaller of the two runs
    assert result["pipeline_seconds"] == 60.0 and result["pipeline_ratio"] == 6.0
    assert result["pipeline_peak_mb"] == 2500.0 and result["pipeline_complete"] is True
    assert [s["name"] for s in result["stages"]] == ["ingest", "validate", "transform", "estimate", "sensitivity",
                                                     "report"]
    for entry in result["stages"]:
        assert {"name", "seconds", "ratio", "peak_mb", "share"} <= set(entry)
    assert result["stages"][0]["ratio"] == 2.0 and result["stages"][0]["share"] == pytest.approx(20 / 60)
    assert sum(s["share"] for s in result["stages"]) == pytest.approx(1.0)
    assert result["gate"]["ratio"] == 0.4 and result["gate"]["share_of_ingest"] == 0.2
    assert result["estimate_and_sensitivity_ratio"] == pytest.approx(1.2)
    assert {t["target"]: t["verdict"] for t in result["targets"]} == {
        "whole pipeline <= 4x bare load": "not met", "peak memory < 2 GB": "not met",
        "estimate + sensitivity <= 1x bare load": "not met", "identifier gate <= 0.5x bare load": "met"}
    json.dumps(result)  # results.json is plain JSON


def test_a_failed_stage_leaves_the_pipeline_targets_unjudged():
    stages = [stage("ingest", 2.0), stage("validate", 1.0, status="failed")]
    result = summarise_size(1_000_000, {**EXTRACT, "rows": {"prescriptions": 1_000_000}}, [stage("bare", 1.0)], stages)
    assert not result["pipeline_complete"] and not result["targets_binding"]
    assert [t["verdict"] for t in result["targets"]] == ["n/a"] * 4
    big = {**ten_million()}
    assert linearity([{**result, "label": "1M"}, big])[0]["verdict"] == "n/a"


def test_100m_adds_its_own_peak_target():
    result = summarise_size(100_000_000, EXTRACT, [stage("bare", 100.0)], [stage("ingest", 200.0, 3500.0)])
    assert result["targets"][-1] == {"target": "100M end to end, peak < 4 GB", "value": 3500.0, "limit": 4000,
                                     "verdict": "met", "binding": True}


def test_the_table_prints_every_stage_the_gate_and_the_whole_pipeline():
    result = {**ten_million(), "label": "10M"}
    small = summarise_size(1_000_000, {**EXTRACT, "rows": {"prescriptions": 1_000_000}}, [stage("bare", 1.0)],
                           [stage(n, 5.0) for n in ("ingest", "validate", "transform", "estimate", "sensitivity",
                                                    "report")])
    text = render({"sizes": [small, result], "linearity": linearity([small, result])})
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("stage "))
    assert lines[header].split() == ["stage", "status", "seconds", "x", "bare", "load", "share", "%", "peak", "MB",
                                     "CPU", "s"]
    names = [line.split("  ")[0].strip() for line in lines[header + 2:header + 12]]
    assert names == ["bare load (before)", "ingest", "validate", "transform", "estimate", "sensitivity", "report",
                     "whole pipeline", "", "target (issue 16, 12; defined at 10M)"]
    assert any(line.startswith("  gate (in ingest)  ok") for line in lines)
    assert any(line.startswith("whole pipeline      ok") and " 6.00 " in line for line in lines)
    assert "linearity 10M/1M: time ratio 2.00 for 10.00x the rows (limit 12): met" in text
    assert "not met (indicative)" in text and "identifier gate <= 0.5x bare load" in text


def test_table_aligns_text_left_numbers_right():
    assert format_table(["stage", "seconds", "peak MB"], [["ingest", 12.345, 1019], ["validate", None, 449]]
                        ).splitlines() == [
        "stage     seconds  peak MB",
        "--------  -------  -------",
        "ingest      12.35    1,019",
        "validate        -      449",
    ]
    assert markdown_table(["stage", "s"], [["report", None]]).splitlines()[-1] == "| report | - |"


def test_the_simulation_study_draws_only_contract_values():
    assert set(bench.simulate.SEX_EFFECTS) <= set(SEXES)
    assert set(bench.simulate.INDICATION_EFFECTS) <= set(INDICATIONS)


def test_the_estimate_stage_imports_no_demo_ingest_transform_or_bench():
    for path in (PROJECT_ROOT / "pipeline" / "estimate").glob("*.py"):
        for line in path.read_text().splitlines():
            code = line.strip()
            if code.startswith(("import ", "from ")):
                assert not any(f"pipeline.{m}" in code or f"from pipeline import {m}" in code
                               for m in ("demo", "ingest", "transform")), (path.name, code)
                assert not code.startswith(("from bench", "import bench")), (path.name, code)
