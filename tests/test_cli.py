"""One command-line app: every entry point is a command of pipeline.cli's typer app;
module entry points are thin wrappers; mistakes are one line and an exit code."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from pipeline.cli import app
from pipeline.config import PROJECT_ROOT

ENV = {**os.environ, "GX_ANALYTICS_ENABLED": "false", "OPENBLAS_NUM_THREADS": "1"}
COMMANDS = {"demo", "ingest", "validate", "transform", "estimate", "report", "run", "check", "stamp", "docs",
            "split", "package", "pool", "serve", "results"}
# The benchmark and simulation tools (issue 19: one bench/ tool outside the stages) keep their own parsers.
BENCH_TOOLS = {"pipeline/bench.py", "pipeline/estimate/simulate.py", "pipeline/validate/bench.py",
               "pipeline/transform/benchmark.py"}


def cli(*args: str, module: str = "pipeline") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          env=ENV, timeout=120)


def test_every_entry_point_is_a_command_of_the_one_app():
    import typer.main

    group = typer.main.get_command(app)
    assert COMMANDS <= set(group.commands)
    assert set(group.commands["results"].commands) == {"append", "runs"}


def test_no_second_argument_parser_or_main_block_in_the_package():
    parsers, mains = set(), set()
    for path in (PROJECT_ROOT / "pipeline").rglob("*.py"):
        name = path.relative_to(PROJECT_ROOT).as_posix()
        text = path.read_text(encoding="utf-8")
        if re.search(r"^import argparse|^from argparse", text, re.M):
            parsers.add(name)
        if "__main__" in text and path.name != "__main__.py":
            mains.add(name)
    assert parsers <= BENCH_TOOLS and mains <= BENCH_TOOLS
    for path in (PROJECT_ROOT / "pipeline").rglob("__main__.py"):
        assert "from pipeline.cli import main" in path.read_text(encoding="utf-8"), path


def test_the_console_command_is_declared():
    text = (PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'benzo-outcomes = "pipeline.cli:main"' in text


@pytest.mark.parametrize("args, message", [
    (("split", "--source", "nowhere-at-all", "--site", "bad site"), "--site 'bad site' must look like"),
    (("docs", "--check", "--nonsense"), "No such option"),
])
def test_a_mistake_is_one_line_and_exit_code_2(args, message):
    done = cli(*args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_module_wrappers_reach_the_same_commands(tmp_path):
    done = cli("runs", "--results", str(tmp_path / "none"), module="pipeline.results")
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "no results store" in done.stderr
    assert cli("--help", module="pipeline.dashboard").returncode == 0


def test_docs_check_passes_on_the_committed_documents():
    done = cli("docs", "--check")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("stage, missing", [("validate", "raw_prescriptions"), ("transform", "raw_prescriptions"),
                                            ("estimate", "analysis_person"), ("report", "estimates")])
def test_a_stage_before_its_input_names_the_missing_table_in_one_line(tmp_path, stage, missing):
    done = cli(stage, "--warehouse", str(tmp_path / "empty.duckdb"))
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and f"table '{missing}' is missing" in done.stderr


@pytest.mark.parametrize("stage", ["ingest", "validate", "transform", "estimate", "sensitivity", "report"])
def test_a_single_stage_under_engine_spark_stops_before_reading_anything(tmp_path, stage):
    """engine.name = "spark" (a cluster's configuration) must never load person-level rows into this
    machine's DuckDB through a single-stage command: one line pointing at `run`, and no warehouse."""
    warehouse = tmp_path / "w.duckdb"
    extra = ("--source", str(tmp_path / "nowhere")) if stage == "ingest" else ()
    done = cli(stage, "--warehouse", str(warehouse), "--set", "engine.name=spark", *extra)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert f"`{stage}` runs on DuckDB only" in done.stderr and "run --engine spark" in done.stderr
    assert not warehouse.exists()
