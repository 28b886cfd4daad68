"""Settings: one source of defaults, every mistake refused before any work in one
line (setting, value, what is allowed), and DRUGS checked against the extract
right after ingest."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from pipeline.config import DEFAULT_CONFIG_PATH, Config, EstimateConfig, load_config
from pipeline.errors import ConfigError

PROJECT = Path(__file__).resolve().parent.parent


def cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=PROJECT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "GX_ANALYTICS_ENABLED": "false"})


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


# --------------------------------------------------------------------------- one source of defaults


def test_config_is_what_default_toml_says():
    shipped = tomllib.loads(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8"))
    assert Config().to_dict() == shipped
    assert Config() == load_config()


def test_every_setting_is_declared_once_and_given_once():
    from pipeline.config import SECTIONS

    shipped = tomllib.loads(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8"))
    assert set(SECTIONS) == set(shipped)
    for name, section in SECTIONS.items():
        assert set(section.model_fields) == set(shipped[name]), f"[{name}] differs between config.py and default.toml"
        assert section() == getattr(Config(), name)  # a section alone is also default.toml's


def test_one_entry_of_a_table_can_be_set_from_the_command_line():
    cfg = load_config(overrides=["drugs.mg_equivalent_to_10mg_diazepam.clorazepate=7.5"])
    assert cfg.drugs.mg_equivalent_to_10mg_diazepam["clorazepate"] == 7.5
    assert cfg.drugs.mg_equivalent_to_10mg_diazepam["diazepam"] == 10.0  # the rest of the table kept


# --------------------------------------------------------------------------- every mistake, one line


@pytest.mark.parametrize("override, setting, allowed", [
    ("estimate.confidence_level=1.5", "estimate.confidence_level", "> 0 and < 1"),
    ("estimate.confidence_level=0", "estimate.confidence_level", "> 0 and < 1"),
    ("estimate.confidence_level=nan", "estimate.confidence_level", "> 0 and < 1"),
    ("disclosure.min_cell_count=0", "disclosure.min_cell_count", ">= 2"),
    ("disclosure.min_cell_count=1", "disclosure.min_cell_count", ">= 2"),
    ("estimate.duration_band_lower_days=0,28,14", "estimate.duration_band_lower_days", "strictly increasing"),
    ("estimate.duration_band_lower_days=0,14,14,28", "estimate.duration_band_lower_days", "strictly increasing"),
    ("estimate.duration_band_lower_days=7,14,28", "estimate.duration_band_lower_days", "start at 0"),
    ("estimate.duration_band_lower_days=0", "estimate.duration_band_lower_days", "at least"),
    ("estimate.duration_band_lower_days=0,two", "estimate.duration_band_lower_days", "whole number"),
    ("estimate.headline_split_days=0", "estimate.headline_split_days", ">= 1"),
    ("estimate.sensitivity_sds_cutoff=6,7,99", "estimate.sensitivity_sds_cutoff", "<= 15"),
    ("estimate.sensitivity_persistence_window_days=10,-30", "estimate.sensitivity_persistence_window_days", ">= 0"),
    ("estimate.sensitivity_window_after_end_days=30,30", "estimate.sensitivity_window_after_end_days", "once"),
    ("estimate.seed=-1", "estimate.seed", ">= 0"),
    ("episodes.persistence_window_days=-1", "episodes.persistence_window_days", ">= 0"),
    ("episodes.persistence_window_days=1.5", "episodes.persistence_window_days", "whole number"),
    ("episodes.stockpiling=maybe", "episodes.stockpiling", "true or false"),
    ("outcome.sds_cutoff=16", "outcome.sds_cutoff", "<= 15"),
    ("outcome.window_after_end_days=ninety", "outcome.window_after_end_days", "whole number"),
    ("outcome.fixed_window_days=0", "outcome.fixed_window_days", ">= 1"),
    ("estimate.weight_truncation_percentiles=1,101", "estimate.weight_truncation_percentiles", "<= 100"),
    ("misuse.early_refill_fraction=1.5", "misuse.early_refill_fraction", "<= 1"),
    ("misuse.distinct_prescribers=1", "misuse.distinct_prescribers", ">= 2"),
    ("cohort.min_age_years=-18", "cohort.min_age_years", ">= 0"),
    ("warehouse.memory_limit=lots", "warehouse.memory_limit", "2GB"),
    ("warehouse.memory_limit=10MB", "warehouse.memory_limit", "at least 100MB"),
    ("warehouse.threads=-2", "warehouse.threads", ">= 0"),
    ("extract.extract_date=2024-02-30", "extract.extract_date", "YYYY-MM-DD"),
    ("extract.format=csv", "extract.format", "native, omop"),
    ("drugs.ingredients=", "drugs.ingredients", "at least one"),
    ("drugs.ingredients=notadrug", "drugs.ingredients", "benzodiazepines"),
    ("drugs.ingredients=x;id", "drugs.ingredients", "drug name"),
    ("drugs.ingredients=clonazepam,clonazepam", "drugs.ingredients", "once"),
    ("drugs.mg_equivalent_to_10mg_diazepam.clorazepate=-7.5", "drugs.mg_equivalent_to_10mg_diazepam", "> 0"),
    ("demo.persons=3", "demo.persons", ">= 200"),
])
def test_a_wrong_setting_is_one_line_naming_setting_value_and_what_is_allowed(override, setting, allowed):
    with pytest.raises(ConfigError) as caught:
        load_config(overrides=[override])
    message = str(caught.value)
    assert len(message.splitlines()) == 1, message
    assert f"'{setting}'" in message and allowed in message, message
    value = override.split("=", 1)[1]
    shown = value.split(",")[-1] if "has a value" in message else value
    assert shown in message, message


def test_each_mistake_gets_its_own_line():
    with pytest.raises(ConfigError) as caught:
        load_config(overrides=["estimate.confidence_level=2", "disclosure.min_cell_count=0", "episodes.stockpiling=x"])
    lines = str(caught.value).splitlines()
    assert len(lines) == 3
    assert [line.split("'")[1] for line in lines] == [
        "episodes.stockpiling", "estimate.confidence_level", "disclosure.min_cell_count"]


def test_unknown_settings_are_refused():
    with pytest.raises(ConfigError, match=r"unknown setting 'episodes.window' \(known in \[episodes\]"):
        load_config(overrides=["episodes.window=3"])
    with pytest.raises(ConfigError, match=r"unknown configuration section \[episode\]"):
        load_config(overrides=["episode.persistence_window_days=3"])


def test_a_config_file_holds_only_what_it_changes_and_is_checked(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text("[episodes]\npersistence_window_days = 60\n", encoding="utf-8")
    cfg = load_config(path)
    assert cfg.episodes.persistence_window_days == 60
    assert cfg.replace(episodes={"persistence_window_days": 30}) == Config()
    path.write_text("[extract]\nextract_date = 2024-06-30\n", encoding="utf-8")  # a TOML date, unquoted
    assert load_config(path).extract.extract_day.isoformat() == "2024-06-30"
    path.write_text("[estimate]\nconfidence_level = 95\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"'estimate.confidence_level' = 95 is not allowed: must be a number > 0 and < 1"):
        load_config(path)


def test_settings_changed_in_code_are_checked_too():
    with pytest.raises(ConfigError, match="estimate.confidence_level"):
        Config().replace(estimate={"confidence_level": 2.0})
    with pytest.raises(ValueError, match="duration_band_lower_days"):  # a section alone: pydantic's own error
        EstimateConfig(duration_band_lower_days=(0, 28, 14))


def test_drug_names_follow_the_extract_format():
    # a native extract names benzodiazepines by INN; an OMOP CDM any RxNorm ingredient or concept id
    assert load_config(overrides=["drugs.ingredients=Clonazepam, Clorazepate"]).drugs.ingredients == (
        "clonazepam", "clorazepate")
    with pytest.raises(ConfigError, match="'acetaminophen' is not allowed"):
        load_config(overrides=["drugs.ingredients=acetaminophen"])
    omop = load_config(overrides=["extract.format=omop", "drugs.ingredients=acetaminophen,1125315"])
    assert omop.drugs.ingredients == ("acetaminophen", "1125315")
    with pytest.raises(ConfigError, match="not a drug name"):
        load_config(overrides=["extract.format=omop", "drugs.ingredients=x;id"])
    # a drug the user gives a diazepam equivalence is known from then on
    cfg = load_config(overrides=["drugs.mg_equivalent_to_10mg_diazepam.newazepam=5", "drugs.ingredients=newazepam"])
    assert cfg.drugs.ingredients == ("newazepam",)


@pytest.mark.parametrize("override", [
    "estimate.confidence_level=1.5",
    "disclosure.min_cell_count=0",
    "estimate.duration_band_lower_days=0,28,14",
])
def test_the_cli_refuses_a_wrong_setting_before_reading_anything(tmp_path, override):
    warehouse, reports = tmp_path / "warehouse.duckdb", tmp_path / "reports"
    started = time.perf_counter()
    result = cli("run", "--source", str(tmp_path / "no extract needed"), "--set", override,
                 "--warehouse", str(warehouse), "--reports", str(reports), timeout=60)
    elapsed = time.perf_counter() - started
    assert result.returncode == 2, result.stderr
    assert len(error_lines(result)) == 1 and override.split("=")[0] in error_lines(result)[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not warehouse.exists() and not reports.exists()
    assert elapsed < 10, f"refusing took {elapsed:.1f} s"


def test_the_cli_prints_one_line_per_mistake(tmp_path):
    result = cli("check", "--set", "estimate.confidence_level=1.5", "--set", "disclosure.min_cell_count=0", timeout=60)
    assert result.returncode == 2
    assert len(error_lines(result)) == 2, result.stderr


# --------------------------------------------------------------------------- DRUGS against the extract


@pytest.fixture(scope="module")
def extract(tmp_path_factory):
    out = tmp_path_factory.mktemp("drugs") / "extract"
    result = cli("demo", "--persons", "400", "--out", str(out))
    assert result.returncode == 0, result.stderr
    # one dispensing whose drug column holds something that is not a drug name
    prescriptions = out / "prescriptions.csv"
    lines = prescriptions.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    row = lines[1].split(",")
    row[header.index("drug")] = "john smith"
    prescriptions.write_text("\n".join([lines[0], ",".join(row), *lines[2:]]) + "\n", encoding="utf-8")
    return out


def test_drugs_absent_from_the_extract_stop_the_run_right_after_ingest(tmp_path, extract):
    reports = tmp_path / "reports"
    result = cli("run", "--source", str(extract), "--set", "drugs.ingredients=flurazepam,triazolam",
                 "--warehouse", str(tmp_path / "w.duckdb"), "--reports", str(reports))
    assert result.returncode == 2, result.stderr
    [line] = error_lines(result)
    assert "flurazepam, triazolam not in the extract's prescriptions" in line
    assert "which hold clonazepam, diazepam" in line  # most dispensed first
    assert "john smith" not in result.stderr  # on one row: could be a stray identifier, never named
    assert "1 other value not named" in line
    assert "done validate" not in result.stderr and "done transform" not in result.stderr
    assert not reports.exists()


def test_a_drug_absent_beside_a_present_one_is_a_warning(tmp_path, extract):
    result = cli("ingest", "--source", str(extract), "--set", "drugs.ingredients=clonazepam,flurazepam",
                 "--warehouse", str(tmp_path / "w.duckdb"))
    assert result.returncode == 0, result.stderr
    assert "warning drugs.ingredients flurazepam: not in the extract's prescriptions" in result.stderr
