"""Benchmark harness smoke tests: the pure parts (tables, verdicts, summaries), no subprocesses."""

from __future__ import annotations

from pipeline.bench import Measurement, format_table, linearity, markdown_table, parse_sizes, summarise_size


def stage(name, seconds, peak_mb=100.0, status="ok"):
    return Measurement(name, status, seconds, peak_mb, 0 if status == "ok" else 2, "" if status == "ok" else "error: x")


def test_table_aligns_text_left_numbers_right():
    text = format_table(["stage", "seconds", "peak MB"], [["ingest", 12.345, 1019], ["validate", None, 449]])
    assert text.splitlines() == [
        "stage     seconds  peak MB",
        "--------  -------  -------",
        "ingest      12.35    1,019",
        "validate        -      449",
    ]
    assert markdown_table(["stage", "s"], [["report", None]]).splitlines()[-1] == "| report | - |"


def test_sizes_accept_suffixes():
    assert parse_sizes("10M, 1000000") == [1_000_000, 10_000_000]


def test_summary_uses_the_smaller_bare_load_and_judges_targets():
    extract = {"rows": {"prescriptions": 10_000_000}}
    stages = [stage("ingest", 20.0), stage("validate", 15.0, 2500.0), stage("transform", 5.0)]
    result = summarise_size(10_000_000, extract, [stage("bare", 12.0), stage("bare", 10.0)], stages)
    assert result["bare_load_seconds"] == 10.0
    assert result["pipeline_ratio"] == 4.0
    assert [t["verdict"] for t in result["targets"]] == ["not met", "met", "met", "not met"]


def test_a_failed_stage_leaves_targets_unjudged():
    extract = {"rows": {"prescriptions": 1_000_000}}
    stages = [stage("ingest", 2.0), stage("validate", 1.0, status="failed")]
    result = summarise_size(1_000_000, extract, [stage("bare", 1.0)], stages)
    assert not result["pipeline_complete"] and not result["targets_binding"]
    assert [t["verdict"] for t in result["targets"]] == ["n/a"] * 4
    small = {**result, "label": "1M"}
    big = {**result, "label": "10M", "extract": {"rows": {"prescriptions": 10_000_000}}}
    assert linearity([small, big])[0]["verdict"] == "n/a"
