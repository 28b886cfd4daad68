"""summarised_result export and the results store, from two real pipeline runs (the CLI, as a user runs it).

Two extracts -- the demo generator at its default seed (folder ``demo``) and a
second, smaller one at another seed (folder ``site_b``) -- are run through
``python -m pipeline run`` one after the other with the same reports/ folder,
so the second run replaces reports/ and both are appended to ``results/``
beside it. Each run's exports are copied away for comparison. The runs are
built once per test session (``two_runs``), shared with the dashboard's
browser test.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from pipeline.config import PROJECT_ROOT, load_config
from pipeline.errors import PipelineError
from pipeline.results import store
from pipeline.results.contract import COLUMNS, SUPPRESSED, estimate_type, parse_value
from pipeline.results.convert import flatten_settings
from pipeline.results.export import read_export, small_count_findings

pytestmark = pytest.mark.slow
RUNS = {"demo": {"persons": 4000, "seed": None}, "site_b": {"persons": 2500, "seed": 7}}
K = load_config().disclosure.min_cell_count


def run_module(module: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "GX_ANALYTICS_ENABLED": "false", "OPENBLAS_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            env=env, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"{module} {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def build_two_runs(base: Path) -> Path:
    """demo then site_b through the CLI into ``base``; idempotent within a session (``base/done``)."""
    if (base / "done").exists():
        return base
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    seed = load_config().demo.seed
    for name, spec in RUNS.items():
        extract = base / "extracts" / name
        run_module("pipeline", "demo", "--out", str(extract), "--persons", str(spec["persons"]),
                   "--seed", str(spec["seed"] if spec["seed"] is not None else seed))
        run_module("pipeline", "run", "--source", str(extract), "--warehouse", str(base / f"{name}.duckdb"),
                   "--reports", str(base / "reports"))
        shutil.copytree(base / "reports" / "exports", base / f"exports_{name}")
    (base / "done").write_text("ok")
    return base


def two_runs(tmp_path_factory) -> Path:
    """The two runs of this session; RESULTS_TEST_RUNS=<folder> reuses runs built earlier (while iterating)."""
    reuse = os.environ.get("RESULTS_TEST_RUNS")
    return Path(reuse) if reuse else build_two_runs(tmp_path_factory.getbasetemp() / "results_two_runs")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return two_runs(tmp_path_factory)


def exports(runs: Path, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    return read_export(runs / f"exports_{name}")


def with_settings(rows: pd.DataFrame, settings: pd.DataFrame) -> pd.DataFrame:
    return rows.merge(settings[["result_id", "result_type", "estimator", "run_id"]], on="result_id")


def test_the_file_has_exactly_the_13_columns_all_text(runs):
    for name in RUNS:
        csv_header = (runs / f"exports_{name}" / "summarised_result.csv").read_text().splitlines()[0]
        assert tuple(csv_header.split(",")) == COLUMNS
        parquet = pd.read_parquet(runs / f"exports_{name}" / "summarised_result.parquet")
        assert tuple(parquet.columns) == COLUMNS
        assert all(str(dtype) in ("object", "str", "string") for dtype in parquet.dtypes), parquet.dtypes
        rows, _ = exports(runs, name)
        assert len(parquet) == len(rows) > 1000
        for column in ("result_id", "cdm_name", "group_name", "group_level", "strata_name", "strata_level",
                       "variable_name", "estimate_name", "estimate_type", "additional_name", "additional_level"):
            assert rows[column].notna().all(), column  # omopgenerics: "overall", never NA, in these columns


@pytest.mark.parametrize("name", list(RUNS))
def test_headline_rows_give_back_headline_json(runs, name):
    rows, settings = exports(runs, name)
    headline = json.loads((runs / f"exports_{name}" / "headline.json").read_text())
    rows = with_settings(rows, settings).merge(settings[["result_id", "estimand"]], on="result_id")
    names = {"estimate": "proportion", "ci_low": "proportion_95CI_lower", "ci_high": "proportion_95CI_upper",
             "n": "denominator_count", "events": "outcome_count"}

    def differences(estimand: str) -> list:
        found = []
        for block, estimator in (("headline", "primary"), ("complete_case", "complete_case")):
            for group, entry in headline[block].items():
                part = rows[(rows["result_type"] == "headline") & (rows["estimator"] == estimator)
                            & (rows["estimand"] == estimand)
                            & (rows["strata_name"] == "headline_group") & (rows["strata_level"] == group)]
                for key, estimate_name in names.items():
                    match = part[part["estimate_name"] == estimate_name]
                    assert len(match) == 1, (block, group, key, estimand)
                    value = parse_value(match["estimate_value"].iloc[0], match["estimate_type"].iloc[0])
                    if value != entry[key]:
                        found.append((block, group, key, value, entry[key]))
                methods = settings.loc[settings["result_id"] == part["result_id"].iloc[0], "method"].iloc[0]
                if entry["method"] not in methods.split(" &&& "):
                    found.append((block, group, "method", methods, entry["method"]))
        return found

    # headline.json is one estimand's headline: exactly, every value
    estimands = sorted(set(rows.loc[rows["result_type"] == "headline", "estimand"]))
    results = {estimand: differences(estimand) for estimand in estimands}
    assert any(not found for found in results.values()), results


def test_every_estimate_name_is_in_the_contract_with_its_type(runs):
    for name in RUNS:
        rows, _ = exports(runs, name)
        for estimate_name, kind in rows[["estimate_name", "estimate_type"]].drop_duplicates().itertuples(index=False):
            assert estimate_type(estimate_name) == kind
        dictionary = pd.read_csv(runs / f"exports_{name}" / "data_dictionary.csv")  # the one data dictionary
        summarised = dictionary[dictionary["file"] == "summarised_result.csv / .parquet"]
        assert set(rows["estimate_name"]) <= set(summarised.loc[summarised["kind"] == "estimate_name", "name"])
        assert list(summarised.loc[summarised["kind"] == "column", "name"]) == list(COLUMNS)


def test_settings_name_the_source_the_extract_hashes_and_every_setting(runs):
    config_settings = set(flatten_settings(load_config()))
    for name in RUNS:
        rows, settings = exports(runs, name)
        assert set(rows["cdm_name"]) == {name}
        assert set(settings["cdm_name"]) == {name}
        assert settings["result_id"].is_unique and set(rows["result_id"]) == set(settings["result_id"])
        assert list(settings.columns[:4]) == ["result_id", "result_type", "package_name", "package_version"]
        assert config_settings <= set(settings.columns)
        assert settings["run_id"].nunique() == 1
        for table in ("persons", "prescriptions", "diagnoses", "follow_ups"):
            path = runs / "extracts" / name / f"{table}.csv"
            assert settings[f"extract_sha256_{table}"].iloc[0] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_summarised_result_matches_the_published_estimates(runs):
    """Every published count reappears unchanged, suppressed ones as '-'."""
    for name in RUNS:
        rows, settings = exports(runs, name)
        rows = with_settings(rows, settings)
        estimates = pd.read_csv(runs / f"exports_{name}" / "estimates.csv")
        bands = estimates[(estimates["analysis"] == "by_duration_band") & (estimates["estimator"] == "hajek_ipw")]
        for band in bands.itertuples():
            part = rows[(rows["result_type"] == "by_duration_band") & (rows["estimator"] == "primary")
                        & (rows["strata_level"] == band.level)]
            events = part.loc[part["estimate_name"] == "outcome_count", "estimate_value"].iloc[0]
            assert events == (SUPPRESSED if pd.isna(band.events) else str(int(band.events)))


def test_trends_by_year_and_region_are_published_under_disclosure_control(runs):
    for name in RUNS:
        rows, settings = exports(runs, name)
        rows = with_settings(rows, settings)
        assert not small_count_findings(rows, K)
        for result_type, variable in (("by_calendar_year", "calendar_year"), ("by_region", "region")):
            exposure = rows[(rows["result_type"] == result_type) & (rows["variable_name"] == "treated_gt_split")]
            assert set(exposure["strata_name"]) == {variable}
            assert exposure["strata_level"].nunique() >= 5
            dependence = rows[(rows["result_type"] == result_type) & (rows["variable_name"] == "dependence")]
            assert {"primary", "complete_case"} <= set(dependence["estimator"])
            assert {variable, f"headline_group &&& {variable}"} <= set(dependence["strata_name"])
    # the small extract has years with few new users: they are withheld, not published
    rows, settings = exports(runs, "site_b")
    years = with_settings(rows, settings)
    years = years[(years["result_type"] == "by_calendar_year") & years["estimate_name"].str.endswith("count")]
    assert (years["estimate_value"] == SUPPRESSED).any()
    values = pd.to_numeric(years["estimate_value"].where(years["estimate_value"] != SUPPRESSED), errors="coerce")
    assert not ((values > 0) & (values < K)).any()


def test_the_store_holds_each_run_once_with_unique_result_ids(runs):
    tables = store.read(runs / "results")
    assert list(tables["runs"]["cdm_name"]) == ["demo", "site_b"]
    assert tables["settings"]["result_id"].is_unique
    stored = tables["summarised_result"]
    assert tuple(stored.columns) == COLUMNS
    total = 0
    for name in RUNS:
        rows, settings = exports(runs, name)
        run_id = settings["run_id"].iloc[0]
        ids = tables["settings"].loc[tables["settings"]["run_id"] == run_id, "result_id"]
        assert len(ids) == len(settings)
        mine = stored[stored["result_id"].isin(ids)]
        assert len(mine) == len(rows)
        # the same rows, result ids renumbered
        assert sorted(mine.drop(columns="result_id").fillna("").astype(str).agg("|".join, axis=1)) == \
            sorted(rows.drop(columns="result_id").fillna("").astype(str).agg("|".join, axis=1))
        total += len(rows)
    assert len(stored) == total


def test_appending_the_same_run_again_changes_nothing(runs, tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(runs / "results", copy)
    before = {name: len(frame) for name, frame in store.read(copy).items()}
    result = run_module("pipeline.results", "append", str(runs / "exports_demo"), "--results", str(copy))
    assert "already stored" in result.stdout
    assert {name: len(frame) for name, frame in store.read(copy).items()} == before


def test_the_store_holds_no_person_level_rows(runs):
    con = duckdb.connect(str(runs / "results" / "results.duckdb"), read_only=True)
    try:
        columns = {c.lower() for (c,) in con.execute("select column_name from information_schema.columns").fetchall()}
        values = set()
        for table in ("summarised_result", "settings", "runs"):
            frame = con.execute(f"select * from {table}").df().astype(str)
            values |= set(frame.to_numpy().ravel())
    finally:
        con.close()
    assert not columns & {"person_id", "prescription_id", "birth_year", "prescriber_id", "pharmacy_id"}
    for name in RUNS:
        persons = pd.read_csv(runs / "extracts" / name / "persons.csv", dtype=str)
        prescriptions = pd.read_csv(runs / "extracts" / name / "prescriptions.csv", dtype=str)
        identifiers = set(persons["person_id"]) | set(prescriptions["prescription_id"])
        assert not identifiers & values


def test_the_store_refuses_a_run_with_a_person_level_column_or_a_small_count(runs, tmp_path):
    rows, settings = exports(runs, "demo")
    target = tmp_path / "results"
    with pytest.raises(PipelineError, match="exactly the 13 columns"):
        store.append(rows.assign(person_id="P1"), settings, target)
    with pytest.raises(PipelineError, match="person-level column"):
        store.append(rows, settings.assign(person_id="P1"), target)
    tampered = rows.copy()
    first_count = tampered.index[tampered["estimate_name"] == "outcome_count"][0]
    tampered.loc[first_count, "estimate_value"] = "3"
    with pytest.raises(PipelineError, match="small counts") as refused:
        store.append(tampered, settings, target)
    assert "3" not in str(refused.value).split("between")[0]  # the value itself is not echoed
    assert not (target / "results.duckdb").exists() or store.read(target)["runs"].empty


def test_the_append_cli_names_a_missing_export_in_one_line(tmp_path):
    result = run_module("pipeline.results", "append", str(tmp_path / "nowhere"), "--results", str(tmp_path / "r"),
                        check=False)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "summarised_result.csv not found" in result.stderr


@pytest.mark.parametrize("break_it, message", [
    (lambda rows, settings: (rows, settings.drop(columns="min_cell_count")), "lacks min_cell_count"),
    (lambda rows, settings: (rows.assign(result_id="x1"), settings.assign(result_id="x1")), "whole numbers"),
    (lambda rows, settings: (rows, settings.assign(run_id=[f"r{i}" for i in range(len(settings))])), "exactly one run"),
    (lambda rows, settings: (rows, settings.iloc[1:]), "have no settings row"),
    (lambda rows, settings: (rows.drop(columns="additional_level"), settings), "exactly the 13 columns"),
], ids=["no min_cell_count", "non-numeric result_id", "two runs", "orphan result_id", "12 columns"])
def test_the_store_refuses_a_malformed_run_in_one_line(runs, tmp_path, break_it, message):
    rows, settings = break_it(*exports(runs, "site_b"))
    with pytest.raises(PipelineError, match=message) as refused:
        store.append(rows, settings, tmp_path / "results")
    assert "\n" not in str(refused.value)


def test_serve_names_a_corrupt_store_in_one_line(tmp_path):
    (tmp_path / "results.duckdb").write_bytes(b"not a duckdb file at all" * 100)
    result = run_module("pipeline.dashboard", "--results", str(tmp_path), "--port", "1", check=False)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "cannot open the results store" in result.stderr
