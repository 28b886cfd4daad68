"""A site package reads what each estimates row is from the explicit columns (``estimator``), never from
the human ``method`` text: on a real run's published folder, rewording every method leaves the package's
pooling.csv as it was; an export without ``estimator`` is refused in one line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_publish_fixtures import real_run

from pipeline.estimate.columns import ESTIMATORS as CONTRACT_ESTIMATORS, estimator_kind
from pipeline.network.package import ESTIMATORS, INTERVALS, POOLED_ANALYSES, REFERENCE_LEVEL

ENV = {**os.environ, "GX_ANALYTICS_ENABLED": "false", "OPENBLAS_NUM_THREADS": "1"}


def package(reports: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", "package", "--reports", str(reports), "--out", str(out)],
                          capture_output=True, text=True, env=ENV, timeout=300)


def published_copy(tmp_path: Path, name: str) -> Path:
    copy = tmp_path / name
    shutil.copytree(real_run()["reports"], copy)
    return copy


def read_estimates(reports: Path) -> pd.DataFrame:
    return pd.read_csv(reports / "exports" / "estimates.csv", dtype=str, keep_default_na=False)


def test_reworded_methods_do_not_change_the_package(tmp_path):
    original = published_copy(tmp_path, "original")
    reworded = published_copy(tmp_path, "reworded")
    estimates = read_estimates(reworded)
    pooled = estimates["analysis"].isin(list(POOLED_ANALYSES))
    assert (estimates.loc[pooled, "estimator"] == REFERENCE_LEVEL).any()  # the run has reference rows to find
    # Every method reworded: no "primary: " / "complete_case: " prefix, no "Wilson", "odds ratio" or "CI";
    # "reference level" moved from the reference rows onto every other row (a decoy for text sniffing).
    estimates["method"] = [
        "estimated as described in docs/estimation.md" if estimator == REFERENCE_LEVEL
        else f"row {i}: see the reference level of the model in docs/estimation.md"
        for i, estimator in enumerate(estimates["estimator"])
    ]
    estimates.to_csv(reworded / "exports" / "estimates.csv", index=False)
    for reports in (original, reworded):
        done = package(reports, tmp_path / f"{reports.name}-package")
        assert done.returncode == 0, done.stderr[-2000:]
    before = pd.read_csv(tmp_path / "original-package" / "pooling.csv", dtype=str, keep_default_na=False)
    after = pd.read_csv(tmp_path / "reworded-package" / "pooling.csv", dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(before, after)
    # what is pooled: the primary and complete-case rows of the pooled analyses, each with its interval's SE
    assert set(before["estimator"]) == set(ESTIMATORS)
    odds = before[(before["scale"] == "log_odds_ratio") & (before["variable"] != "duration_days")]  # not the trend term
    assert len(odds) and (odds["reference"] != "").all() and not (odds["level"] == odds["reference"]).any()
    published = before[(before["suppressed"] == "False") & (before["estimate"] != "")]
    assert len(published) and (published["se"] != "").all(), published[published["se"] == ""].head().to_string()


def test_an_export_without_the_estimator_column_is_refused_in_one_line(tmp_path):
    reports = published_copy(tmp_path, "old")
    estimates = read_estimates(reports).drop(columns=["estimator"])
    estimates.to_csv(reports / "exports" / "estimates.csv", index=False)
    done = package(reports, tmp_path / "package")
    assert done.returncode != 0
    message = done.stderr.strip().splitlines()
    assert len(message) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "estimates.csv" in message[0] and "estimator" in message[0]
    assert not (tmp_path / "package").exists()


@pytest.mark.parametrize("estimator", sorted(INTERVALS))
def test_each_interval_is_named_for_an_estimator_of_the_contract_that_is_pooled(estimator):
    assert estimator in CONTRACT_ESTIMATORS
    assert estimator_kind(estimator) in ESTIMATORS


def test_every_pooled_estimator_of_a_real_run_has_its_interval():
    estimates = read_estimates(real_run()["reports"])
    pooled = estimates[estimates["analysis"].isin(list(POOLED_ANALYSES)) & (estimates["time_days"] == "")]
    kinds = pooled["estimator"].map(estimator_kind)
    assert set(pooled.loc[kinds.isin(ESTIMATORS), "estimator"]) - {REFERENCE_LEVEL} <= set(INTERVALS)
