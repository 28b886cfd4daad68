"""Network study end to end, as a user runs it: the demo split into four regional
sites, each run with the CLI in its own warehouse and reports folder, packaged,
and pooled; compared with the same demo analysed in one warehouse.

One module-scoped fixture does the split and the runs once (two at a time).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from pipeline.network import meta
from pipeline.network.package import POOLING_COLUMNS, settings_hash, sha256_bytes
from pipeline.network.pool import SUMMARISED_RESULT_COLUMNS, pool_cells, read_package, read_packages
from pipeline.network.split import parse_site, split_extract
from pipeline.errors import PipelineError

PERSONS = 20000  # the demo's own size: the split demo of the issue
SEED = 20261122
SITES = (("north", "North,Highlands"), ("south", "South,Coast,West"), ("east", "East,Central,*"), ("islands", "Islands"))
pytestmark = pytest.mark.slow  # the module fixture runs the pipeline six times, two at a time
ENV = {**os.environ, "GX_ANALYTICS_ENABLED": "false", "OPENBLAS_NUM_THREADS": "1"}


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=ENV, timeout=600)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done


def run_all(commands: list[list[str]], at_once: int = 2) -> None:
    for start in range(0, len(commands), at_once):
        batch = [subprocess.Popen([sys.executable, "-m", *c], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True, env=ENV) for c in commands[start:start + at_once]]
        for command, process in zip(commands[start:start + at_once], batch):
            _, err = process.communicate(timeout=900)
            assert process.returncode == 0, f"{' '.join(command)} failed: {err[-2000:]}"


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    root = tmp_path_factory.mktemp("network")
    print(f"demo seed {SEED}, {PERSONS} persons")
    cli("pipeline", "demo", "--out", str(root / "demo"), "--persons", str(PERSONS), "--seed", str(SEED))
    site_args = [a for name, regions in SITES for a in ("--site", f"{name}={regions}")]
    cli("pipeline", "split", "--source", str(root / "demo"), "--out", str(root / "sites"), *site_args)
    runs = [["pipeline", "run", "--source", str(root / "demo"), "--warehouse", str(root / "single.duckdb"),
             "--reports", str(root / "single")]]
    for name, _ in SITES:
        runs.append(["pipeline", "run", "--source", str(root / "sites" / name), "--warehouse",
                     str(root / "wh" / f"{name}.duckdb"), "--reports", str(root / "reports" / name)])
    # The same small site, run with another persistence window: a site that did not follow the protocol.
    runs.append(["pipeline", "run", "--source", str(root / "sites" / "islands"), "--warehouse", str(root / "wh" / "other.duckdb"),
                 "--reports", str(root / "reports" / "other"), "--set", "episodes.persistence_window_days=60"])
    run_all(runs)
    packages = []
    for name, _ in SITES:
        out = root / "packages" / (f"{name}.zip" if name == "south" else name)  # one site sends a zip
        cli("pipeline", "package", "--reports", str(root / "reports" / name), "--out", str(out))
        packages.append(out)
    cli("pipeline", "package", "--reports", str(root / "reports" / "other"), "--out", str(root / "packages" / "other"),
        "--name", "islands-60")
    pooled = root / "pooled"
    done = cli("pipeline", "pool", *map(str, packages), "--out", str(pooled))
    return {"root": root, "packages": packages, "pooled": pooled, "stderr": done.stderr,
            "truth": json.loads((root / "demo" / "truth.json").read_text())}


def pooled_table(network) -> pd.DataFrame:
    return pd.read_csv(network["pooled"] / "exports" / "pooled_estimates.csv", keep_default_na=False, na_values=[""])


def test_pooled_headline_matches_one_warehouse_and_covers_the_truth(network):
    pooled = json.loads((network["pooled"] / "exports" / "headline.json").read_text())
    single = json.loads((network["root"] / "single" / "exports" / "headline.json").read_text())
    table = pooled_table(network)
    for group in ("gt_4_weeks", "le_4_weeks"):
        ours, one = pooled["headline"][group], single["headline"][group]
        truth = network["truth"]["headline"][group]["proportion"]
        cell = table[(table["analysis"] == "headline") & (table["level"] == group) & (table["estimator"] == "primary")].iloc[0]
        print(f"{group}: pooled {ours['estimate']:.4f} ({ours['ci_low']:.4f}-{ours['ci_high']:.4f}), one warehouse "
              f"{one['estimate']:.4f} ({one['ci_low']:.4f}-{one['ci_high']:.4f}), truth {truth:.4f}, "
              f"tau2 {cell['tau2']:.5f}, I2 {cell['i2']:.3f}, sites {cell['sites_pooled']}")
        assert abs(ours["estimate"] - one["estimate"]) < 0.01
        assert ours["ci_low"] <= truth <= ours["ci_high"]
        # every site published its headline pair here; the pooled counts are sums of what they published
        published = [json.loads(_site_file(p, "exports/headline.json"))["headline"][group] for p in network["packages"]]
        assert cell["sites_pooled"] == len(SITES) == sum(entry["estimate"] is not None for entry in published)
        assert ours["n"] == sum(entry["n"] for entry in published)
    assert "pooled over 4 sites" in network["stderr"]


def _site_file(package: Path, name: str) -> str:
    if package.suffix == ".zip":
        import zipfile

        return zipfile.ZipFile(package).read(name).decode()
    return (package / name).read_text()


def test_pooled_folder_is_laid_out_as_a_run(network):
    out = network["pooled"]
    assert (out / "index.html").exists() and (out / "plotly.min.js").exists()
    page = (out / "index.html").read_text()
    assert page.count("forest-") >= 3 and "http" not in page.split("<body>")[0].replace("https://", "")
    headline = json.loads((out / "exports" / "headline.json").read_text())
    assert set(headline) == {"headline", "complete_case", "config"}
    for block in ("headline", "complete_case"):
        for group in ("gt_4_weeks", "le_4_weeks"):
            assert set(headline[block][group]) == {"estimate", "ci_low", "ci_high", "n", "events", "method"}
    result = pd.read_csv(out / "exports" / "summarised_result.csv", dtype=str, keep_default_na=False)
    assert list(result.columns) == list(SUMMARISED_RESULT_COLUMNS)
    assert set(result["cdm_name"]) == {"pooled", *(name for name, _ in SITES)}
    gt = result[(result["cdm_name"] == "pooled") & (result["group_level"] == "headline") & (result["strata_level"] == "gt_4_weeks")
                & (result["variable_level"] == "primary") & (result["estimate_name"] == "estimate")]
    assert float(gt["estimate_value"].iloc[0]) == pytest.approx(headline["headline"]["gt_4_weeks"]["estimate"], rel=1e-12)
    settings = pd.read_csv(out / "exports" / "settings.csv")
    assert set(result["result_id"].astype(int)) <= set(settings["result_id"])
    # each package holds the site's exports as released plus pooling.csv and the manifest
    for package in network["packages"]:
        manifest = json.loads(_site_file(package, "manifest.json"))
        assert {"package_version", "settings_hash", "source_name", "created_at", "files"} <= set(manifest)
        assert {f["path"] for f in manifest["files"]} >= {"pooling.csv", "exports/headline.json", "exports/estimates.csv"}


def test_counts_in_packages_and_pooled_exports_are_publishable(network):
    from pipeline.privacy.disclosure import scan_for_small_counts

    for package in network["packages"]:
        pooling = pd.read_csv(package / "pooling.csv") if package.is_dir() else None
        if pooling is not None:
            assert list(pooling.columns) == list(POOLING_COLUMNS)
            assert scan_for_small_counts(pooling, 11) == []
    assert scan_for_small_counts(network["pooled"] / "exports", 11) == []


def test_a_site_with_other_settings_is_refused_with_one_line(network):
    out = network["root"] / "refused"
    done = cli("pipeline", "pool", *map(str, network["packages"][:2]), str(network["root"] / "packages" / "other"),
               "--out", str(out), check=False)
    assert done.returncode != 0
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "episodes.persistence_window_days" in lines[0] and "islands-60" in lines[0]
    assert not out.exists()


def test_a_suppressed_cell_is_left_out_of_its_pool_and_said_so(network):
    islands = read_package(network["packages"][-1])
    withheld = islands.pooling[islands.pooling["suppressed"] & (islands.pooling["analysis"] == "by_duration_band")]
    assert len(withheld), "the small site should have at least one duration band withheld by disclosure control"
    table = pooled_table(network)
    notes = pd.read_csv(network["pooled"] / "exports" / "notes.csv", keep_default_na=False)
    packages = [read_package(p) for p in network["packages"]]
    for _, cell in withheld.iterrows():
        key = (table["analysis"] == cell["analysis"]) & (table["variable"] == cell["variable"]) \
            & (table["level"] == cell["level"]) & (table["estimator"] == cell["estimator"])
        pooled = table[key].iloc[0]
        assert "islands" in pooled["sites_left_out"].split("; ")
        said = notes[(notes["site"] == "islands") & (notes["level"] == cell["level"]) & (notes["estimator"] == cell["estimator"])
                     & (notes["analysis"] == cell["analysis"])]
        assert len(said) == 1 and "withheld by disclosure control" in said["note"].iloc[0]
        # never imputed: the pooled value is the meta-analysis of the other sites alone
        others = [p.pooling for p in packages if p.name != "islands"]
        rows = [o[(o["analysis"] == cell["analysis"]) & (o["variable"] == cell["variable"]) & (o["level"] == cell["level"])
                  & (o["estimator"] == cell["estimator"]) & o["theta"].notna()] for o in others]
        rows = pd.concat(rows)
        if len(rows) >= 2:
            fit = meta.random_effects(rows["theta"].to_numpy(), rows["se"].to_numpy())
            assert pooled["theta"] == pytest.approx(fit["mu"], rel=1e-9)
            assert pooled["sites_pooled"] == len(rows)
    assert "withheld by disclosure control" in (network["pooled"] / "index.html").read_text()


def test_fewer_than_two_sites_in_a_cell_gives_no_pooled_estimate(network):
    packages = [read_package(network["packages"][0]), read_package(network["packages"][-1])]
    pooled, notes = pool_cells(packages)
    single = pooled[pooled["sites_pooled"] < 2]
    assert len(single), "islands withholds cells the other site publishes"
    assert single["estimate"].isna().all() and single["ci_low"].isna().all()
    assert all(note.startswith("not pooled") for note in single["note"])
    assert any(n["note"].startswith("not pooled") for n in notes)


def test_logit_se_is_the_estimators_own_variance(network):
    """The package's se, derived from the published Wilson interval, equals the IPW sandwich on the logit scale
    up to disclosure control's rounding (estimate and bounds to a step with step x n >= 5, counts to a band
    midpoint: docs/privacy.md), which moves it by a few percent at most here."""
    from pipeline.config import load_config
    from pipeline.estimate import run as estimate_run
    from pipeline.estimate import stats

    config = load_config()
    con = duckdb.connect(str(network["root"] / "wh" / "north.duckdb"), read_only=True)
    try:
        person = con.execute("select * from analysis_person").df()
    finally:
        con.close()
    person = estimate_run.prepare(person, config)
    model = estimate_run.fit_weights(person, config)
    pooling = pd.read_csv(network["packages"][0] / "pooling.csv")
    groups = person["headline_group"].astype("str").to_numpy(dtype=object)
    for group in ("gt_4_weeks", "le_4_weeks"):
        result = stats.ipw_proportion(person["_dependence"], model, group=groups == group)
        p = result["estimate"]
        row = pooling[(pooling["analysis"] == "headline") & (pooling["level"] == group) & (pooling["estimator"] == "primary")].iloc[0]
        print(f"north {group}: sandwich se(logit) {result['se'] / (p * (1 - p)):.6f}, package {row['se']:.6f}")
        # disclosure rounding of the estimate and bounds moves the derived se by ~9% for north's le_4_weeks
        # (p ~ 0.12, CI ~ 0.093 to 0.147 before rounding; se 0.1332 from the unrounded interval, 0.1211 published)
        assert row["se"] == pytest.approx(result["se"] / (p * (1 - p)), rel=0.12)
        # person is a pattern table (prepare aggregates): its rows count _count persons each
        complete = stats.complete_case_proportion(person["_dependence"], include=groups == group,
                                                  count=person["_count"])
        row = pooling[(pooling["analysis"] == "headline") & (pooling["level"] == group)
                      & (pooling["estimator"] == "complete_case")].iloc[0]
        q = complete["estimate"]
        assert row["se"] == pytest.approx(1 / np.sqrt(complete["n"] * q * (1 - q)), rel=0.05)


# --------------------------------------------------------------------------- hostile or broken packages


def _copy(network, name: str) -> Path:
    target = network["root"] / "hostile" / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(network["packages"][0], target)
    return target


def _rehash(package: Path) -> None:
    """Re-sign a tampered package as an attacker would (so only the content checks can catch it)."""
    manifest = json.loads((package / "manifest.json").read_text())
    for entry in manifest["files"]:
        entry["sha256"] = sha256_bytes((package / entry["path"]).read_bytes())
    (package / "manifest.json").write_text(json.dumps(manifest))


def _refused(network, package: Path, through_cli: bool = False) -> str:
    """The one-line refusal (in-process, or through the CLI as a user sees it)."""
    if not through_cli:
        with pytest.raises(PipelineError) as refusal:
            read_packages([package, network["packages"][1]])
        assert "\n" not in str(refusal.value)
        return str(refusal.value)
    done = cli("pipeline", "pool", str(package), str(network["packages"][1]), "--out", str(network["root"] / "never"),
               check=False)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert not (network["root"] / "never").exists()
    return lines[0]


def test_a_changed_file_is_refused(network):
    package = _copy(network, "changed")
    text = (package / "pooling.csv").read_text().replace("headline,headline_group", "headline,headline_group", 1)
    (package / "pooling.csv").write_text(text + "\n")
    assert "pooling.csv does not match its sha256" in _refused(network, package, through_cli=True)


def test_a_small_count_slipped_into_a_package_is_refused(network):
    package = _copy(network, "small")
    pooling = pd.read_csv(package / "pooling.csv")
    pooling.loc[pooling.index[:3], "events"] = 3
    pooling.to_csv(package / "pooling.csv", index=False)
    _rehash(package)
    line = _refused(network, package)
    assert "column events holds a count from 1 to 10" in line and "3 row(s)" in line


@pytest.mark.parametrize("column, value, message", [
    ("se", -0.1, "column se is not > 0"),
    ("estimate", 1.7, "column estimate is outside [0, 1]"),
    ("theta", 9.0, "column theta does not match the estimate"),
    ("estimator", "bootstrap", "column estimator is not one of"),
    ("n", "many", "column n is not a number"),
])
def test_impossible_values_are_refused(network, column, value, message):
    package = _copy(network, f"bad-{column}")
    pooling = pd.read_csv(package / "pooling.csv", dtype=str, keep_default_na=False)
    row = pooling.index[(pooling["analysis"] == "headline") & (pooling["estimator"] == "primary")][0]
    pooling.loc[row, column] = str(value)
    pooling.to_csv(package / "pooling.csv", index=False)
    _rehash(package)
    assert message in _refused(network, package)


def test_a_package_missing_its_pooling_file_or_manifest_is_refused(network):
    package = _copy(network, "no-manifest")
    (package / "manifest.json").unlink()
    assert "manifest.json is missing" in _refused(network, package)
    package = _copy(network, "no-pooling")
    (package / "pooling.csv").unlink()
    assert "pooling.csv is listed in manifest.json but missing" in _refused(network, package)
    broken = network["root"] / "hostile" / "broken.zip"
    broken.write_bytes(b"not a zip")
    assert "not a folder and not a readable zip" in _refused(network, broken)


def test_settings_edited_in_the_manifest_are_refused(network):
    package = _copy(network, "edited-settings")
    manifest = json.loads((package / "manifest.json").read_text())
    manifest["settings"]["episodes"]["persistence_window_days"] = 60
    (package / "manifest.json").write_text(json.dumps(manifest))
    assert "settings do not match its settings_hash" in _refused(network, package)
    manifest["settings_hash"] = settings_hash(manifest["settings"])
    (package / "manifest.json").write_text(json.dumps(manifest))
    assert "headline.json config does not match" in _refused(network, package)


def test_the_same_source_twice_or_one_site_is_refused(network):
    with pytest.raises(PipelineError, match="two packages name the same source 'north'"):
        read_packages([network["packages"][0], _copy(network, "north-again")])
    with pytest.raises(PipelineError, match="at least 2 site packages, got 1"):
        read_packages([network["packages"][0]])
    done = cli("pipeline", "pool", *map(str, network["packages"][:2]), "--method", "fe", "--out",
               str(network["root"] / "never"), check=False)
    assert done.returncode != 0 and "--method must be one of reml, dl, pm" in done.stderr


def test_package_needs_a_run_first(tmp_path):
    done = cli("pipeline", "package", "--reports", str(tmp_path / "nothing"), "--out", str(tmp_path / "pkg"), check=False)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "run `python -m pipeline run` first" in done.stderr


# --------------------------------------------------------------------------- split


def test_split_carries_every_row_with_its_person(tmp_path):
    source = tmp_path / "extract"
    source.mkdir()
    (source / "persons.csv").write_text(
        "person_id,birth_year,sex,region,observation_start,observation_end\n"
        "P1,1970,F,North,2010-01-01,2020-01-01\nP2,1980,M,South,2010-01-01,2020-01-01\n"
        "P3,1990,F,,2010-01-01,2020-01-01\nP4,1960,M,Moon,2010-01-01,2020-01-01\n")
    (source / "prescriptions.csv").write_text(
        "prescription_id,person_id,dispensed_on,drug,strength_mg,quantity,days_supply\n"
        "R1,P1,2015-01-01,clonazepam,0.5,30,30\nR2,P2,2015-01-01,clonazepam,0.5,30,30\n"
        "R3,P3,2015-01-01,clonazepam,0.5,30,30\nR4,P9,2015-01-01,clonazepam,0.5,30,30\n")
    (source / "diagnoses.csv").write_text("diagnosis_id,person_id,recorded_on,code,code_system\nD1,P2,2015-02-01,F13.20,ICD10\n")
    (source / "follow_ups.csv").write_text("follow_up_id,person_id,assessed_on,sds_score\nF1,P1,2015-03-01,9\nF2,P4,2015-03-01,2\n")
    summary = split_extract(source, tmp_path / "sites", (parse_site("a=North"), parse_site("b=South,*")))
    a = pd.read_csv(tmp_path / "sites" / "a" / "prescriptions.csv")
    b = pd.read_csv(tmp_path / "sites" / "b" / "prescriptions.csv")
    assert a["prescription_id"].tolist() == ["R1"]
    assert sorted(b["prescription_id"]) == ["R2", "R3", "R4"]  # empty region, unknown region, unknown person -> '*'
    assert pd.read_csv(tmp_path / "sites" / "b" / "follow_ups.csv")["follow_up_id"].tolist() == ["F2"]
    assert summary["sites"]["a"]["persons"] == 1 and summary["sites"]["b"]["persons"] == 3
    assert pd.read_csv(tmp_path / "sites" / "a" / "persons.csv")["observation_start"].tolist() == ["2010-01-01"]
    left = split_extract(source, tmp_path / "sites2", (parse_site("a=North"), parse_site("b=South")))
    assert left["left_out_rows"] == {"persons": 2, "prescriptions": 2, "follow_ups": 1}
    with pytest.raises(PipelineError, match="more than one site"):
        split_extract(source, tmp_path / "x", (parse_site("a=North"), parse_site("b=North")))
    with pytest.raises(PipelineError, match="must look like"):
        parse_site("North")


def test_odds_ratios_against_another_reference_level_are_not_pooled(network):
    package = _copy(network, "other-reference")
    pooling = pd.read_csv(package / "pooling.csv", dtype=str, keep_default_na=False)
    pooling.loc[pooling["variable"] == "age_band", "reference"] = "50-64"
    pooling.to_csv(package / "pooling.csv", index=False)
    manifest = json.loads((package / "manifest.json").read_text())
    manifest["source_name"] = "elsewhere"
    (package / "manifest.json").write_text(json.dumps(manifest))
    _rehash(package)
    packages = read_packages([network["packages"][0], network["packages"][2], package])
    pooled, notes = pool_cells(packages)
    age = pooled[(pooled["analysis"] == "dose_response") & (pooled["variable"] == "age_band")]
    assert len(age) and (age["reference"] != "50-64").all()
    assert all("elsewhere" in left.split("; ") for left in age["sites_left_out"])
    said = [n for n in notes if n["site"] == "elsewhere" and n["variable"] == "age_band"]
    assert len(said) == len(age) and all("reference level '50-64'" in n["note"] for n in said)
    misuse = pooled[(pooled["analysis"] == "dose_response") & (pooled["variable"] == "misuse")].iloc[0]
    assert misuse["sites_pooled"] == 3  # other variables keep every site


def test_pool_never_replaces_a_folder_that_is_not_a_pooled_result(network, tmp_path):
    keep = tmp_path / "my-reports"
    keep.mkdir()
    (keep / "precious.txt").write_text("keep me")
    with pytest.raises(PipelineError, match="is not a pooled result folder"):
        from pipeline.network.pool import run_pool

        run_pool(network["packages"][:2], keep)
    assert (keep / "precious.txt").read_text() == "keep me"


def test_a_label_carrying_markup_is_escaped_in_the_report(network, tmp_path):
    from pipeline.network.pool import run_pool

    packages = []
    for number, source in enumerate(network["packages"][:2]):
        package = _copy(network, f"markup-{number}") if number == 0 else None
        if package is None:
            package = network["root"] / "hostile" / "markup-1"
            shutil.rmtree(package, ignore_errors=True)
            shutil.copytree(network["packages"][2], package)
        pooling = pd.read_csv(package / "pooling.csv", dtype=str, keep_default_na=False)
        pooling.loc[pooling["variable"] == "duration_band", "level"] = pooling["level"] + "<script>alert(1)</script>"
        pooling.to_csv(package / "pooling.csv", index=False)
        _rehash(package)
        packages.append(package)
    run_pool(packages, tmp_path / "pooled")
    page = (tmp_path / "pooled" / "index.html").read_text()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page


def test_dashboard_store_shows_sites_and_the_pooled_run_side_by_side(network):
    """`pool` appends the pooled run and each site's run to results/ beside --out's parent; the
    dashboard's queries give the pooled headline of headline.json and each site's own headline."""
    from pipeline.dashboard import data

    manifest = json.loads((network["pooled"] / "manifest.json").read_text())
    from pipeline.results import results_dir_for

    store_dir = results_dir_for(network["pooled"].parent)  # beside --out's parent, as reports/network -> results/
    view = data.load(store_dir)
    pooled_run = view.runs[view.runs["run_id"] == manifest["run_id"]]
    assert list(pooled_run["cdm_name"]) == ["pooled"]
    assert view.run_label(manifest["run_id"]).startswith("pooled - ")

    def headline(run_id: str, estimator: str) -> pd.DataFrame:
        part = data.select(view, run_id, "headline", estimator, "episode_window", strata={"headline_group": None})
        return data.wide(part, "headline_group").set_index("level")

    def check(run_id: str, expected: dict) -> None:
        for block, estimator in (("headline", "primary"), ("complete_case", "complete_case")):
            table = headline(run_id, estimator)
            for group in ("gt_4_weeks", "le_4_weeks"):
                want = expected[block][group]
                assert table.loc[group, "proportion"] == pytest.approx(want["estimate"], rel=1e-12)
                assert table.loc[group, "lower"] == pytest.approx(want["ci_low"], rel=1e-12)
                assert table.loc[group, "upper"] == pytest.approx(want["ci_high"], rel=1e-12)
                assert table.loc[group, "n"] == want["n"]

    check(manifest["run_id"], json.loads((network["pooled"] / "exports" / "headline.json").read_text()))
    for package in network["packages"]:
        site_settings = pd.read_csv(io.StringIO(_site_file(package, "exports/settings.csv")), dtype="string")
        site_run = site_settings["run_id"].iloc[0]
        assert site_run in set(view.runs["run_id"])
        check(site_run, json.loads(_site_file(package, "exports/headline.json")))
    # the two runs side by side, as the dashboard's compare view and download give them
    both = data.filtered_rows(view, [site_run, manifest["run_id"]], "primary", "episode_window", None, None, None, None)
    assert set(both["cdm_name"]) == {"pooled", view.runs.set_index("run_id").loc[site_run, "cdm_name"]}
    # pooling again appends one more pooled run; the site runs, already stored, are not repeated
    before = len(view.runs)
    done = cli("pipeline", "pool", *map(str, network["packages"]), "--out", str(network["root"] / "pooled-again"),
               "--results", str(store_dir))
    assert "pooled run" in done.stdout + done.stderr
    assert len(data.load(store_dir).runs) == before + 1
