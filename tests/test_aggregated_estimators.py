"""The estimators on sufficient statistics (covariate patterns with counts, event cells) give the
person-level results: the whole ``estimates`` table to 1e-9 on the demo, against the frozen
person-level reference (tests/reference_estimators.py + tests/reference_stats.py).

Random data are seeded; each seed is printed by the test that uses it.
"""

from __future__ import annotations

import os
import subprocess
import sys

import duckdb
import numpy as np
import pandas as pd
import pytest
import reference_estimators as reference
import reference_stats

from pipeline.config import PROJECT_ROOT, Config, load_config
from pipeline.estimate import aggregate, stats
from pipeline.estimate import run as estimate_run
from bench.simulate import make_mar_person_table

TOLERANCE = 1e-9
KEYS = ["analysis", "variable", "level", "time_days", "method"]


def assert_same_estimates(expected: pd.DataFrame, actual: pd.DataFrame) -> None:
    """Same rows in the same order; counts exact; numbers within 1e-9 (relative above 1)."""
    assert list(actual.columns) == list(expected.columns)
    assert len(actual) == len(expected)
    expected, actual = expected.reset_index(drop=True), actual.reset_index(drop=True)
    for column in KEYS:
        left = expected[column].astype("str").fillna("<NA>").tolist()
        right = actual[column].astype("str").fillna("<NA>").tolist()
        assert left == right, column
    for column in ("n", "n_assessed", "events"):
        left = pd.to_numeric(expected[column]).astype("Float64").to_numpy(dtype=float, na_value=np.nan)
        right = pd.to_numeric(actual[column]).astype("Float64").to_numpy(dtype=float, na_value=np.nan)
        np.testing.assert_array_equal(left, right, err_msg=column)
    for column in ("estimate", "ci_low", "ci_high"):
        left, right = expected[column].to_numpy(dtype=float), actual[column].to_numpy(dtype=float)
        assert np.array_equal(np.isnan(left), np.isnan(right)), column
        both = ~np.isnan(left)
        scale = np.maximum(1.0, np.abs(left[both]))
        error = np.abs(left[both] - right[both]) / scale
        worst = float(np.max(error, initial=0.0))
        assert worst <= TOLERANCE, (column, worst)


def assert_close_nested(expected, actual, path="") -> None:
    if isinstance(expected, dict):
        assert set(expected) == set(actual), path
        for key in expected:
            assert_close_nested(expected[key], actual[key], f"{path}.{key}")
    elif isinstance(expected, (list, tuple)):
        assert len(expected) == len(actual), path
        for i, (a, b) in enumerate(zip(expected, actual)):
            assert_close_nested(a, b, f"{path}[{i}]")
    elif isinstance(expected, float) and isinstance(actual, float):
        if np.isnan(expected):
            assert np.isnan(actual), path
        else:
            assert abs(expected - actual) <= TOLERANCE * max(1.0, abs(expected)), (path, expected, actual)
    elif isinstance(expected, str) and isinstance(actual, str) and path.endswith("sentence"):
        assert expected == actual, path  # rounded to 0.1%: equal unless an estimate sits on a rounding edge
    else:
        assert expected == actual, path


def assert_same_column_space(person: pd.DataFrame, cfg: Config, expected_terms, actual_terms) -> None:
    """The weight model keeps a maximal set of linearly independent columns. When covariates are exactly
    collinear (on the demo rx_misuse_signal is a sum of the other prescription flags) which one is dropped
    is decided by rounding in the pivoted QR -- for the person-level code it even depends on the row order
    DuckDB returns. Any maximal independent set spans the same space, so the fitted probabilities, and every
    estimate compared above, are the same; here: same number of terms, each set of full rank."""
    prepared = reference.prepare(person, cfg)
    X, names = reference_stats.design_matrix(
        prepared, reference.WEIGHT_CATEGORICAL, reference.WEIGHT_BINARY, reference.WEIGHT_CONTINUOUS,
        references={"duration_band": cfg.estimate.band_labels()[0]}, drop_collinear=False)
    rank = np.linalg.matrix_rank(X)
    assert len(expected_terms) == len(actual_terms) == rank
    for terms in (expected_terms, actual_terms):
        assert np.linalg.matrix_rank(X[:, [names.index(t) for t in terms]]) == rank


# --------------------------------------------------------------------------- the demo


def _cli(*args: str) -> None:
    env = {**os.environ, "GX_ANALYTICS_ENABLED": "false"}
    result = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=PROJECT_ROOT, capture_output=True,
                            text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The default demo (20,000 persons, default seed) through ingest and transform: its analysis_person."""
    root = tmp_path_factory.mktemp("aggregated_demo")
    cfg = load_config()
    warehouse = root / "warehouse.duckdb"
    _cli("demo", "--out", str(root / "extract"), "--persons", str(cfg.demo.persons), "--seed", str(cfg.demo.seed))
    _cli("ingest", "--source", str(root / "extract"), "--warehouse", str(warehouse))
    _cli("transform", "--warehouse", str(warehouse))
    con = duckdb.connect(str(warehouse))
    person = con.execute("select * from analysis_person").df()
    yield {"con": con, "person": person, "config": cfg}
    con.close()


def test_demo_estimates_equal_the_person_level_reference(demo):
    con, person, cfg = demo["con"], demo["person"], demo["config"]
    expected, expected_extras = reference.estimate_tables(person, cfg)
    # production path: GROUP BY queries on the warehouse table, never the person rows
    result = estimate_run.run(con, cfg)
    stored = con.execute("select * from estimates").df()
    assert_same_estimates(expected, stored)
    # the DataFrame entry point aggregates the same way
    actual, extras = estimate_run.estimate_tables(person, cfg)
    assert_same_estimates(expected, actual)
    for key in ("headline_json", "fixed_window_headline_json", "weights", "anchors", "warnings"):
        assert_close_nested(expected_extras[key], extras[key], key)
    for key in ("weight_model", "weight_model_fixed_window"):
        assert_close_nested({k: v for k, v in expected_extras[key].items() if k != "terms"},
                            {k: v for k, v in extras[key].items() if k != "terms"}, key)
    assert_same_column_space(person, cfg, expected_extras["weight_model"]["terms"], extras["weight_model"]["terms"])
    assert_close_nested(expected_extras["headline_json"], {k: result[k] for k in ("headline", "complete_case", "config")})
    # the demo really is aggregated: fewer patterns than persons, event cells fewer than assessed persons
    patterns = aggregate.patterns(con, "analysis_person")
    assert int(patterns["_count"].sum()) == len(person)
    assert len(patterns) < len(person)


def rebuild_analysis_person(con: duckdb.DuckDBPyConnection, config: Config, schema: str = "sensitivity_reference"):
    """The reference for the sensitivity stage: ``analysis_person`` rebuilt under ``config`` by the
    transform's own SQL files (episodes onwards, staging read from ``main``) in a scratch schema."""
    from pipeline.transform import sql_files, sql_parameters
    from pipeline.warehouse import run_sql_file

    cursor = con.cursor()
    try:
        cursor.execute(f"create schema if not exists {schema}")
        cursor.execute(f"set schema = '{schema}'")
        cursor.execute(f"set search_path = '{schema},main'")
        for path in sql_files():
            if path.name >= "02" or path.name.startswith("00"):
                run_sql_file(cursor, path, **sql_parameters(config))
        return cursor.execute("select * from analysis_person").df()
    finally:
        cursor.execute(f"drop schema if exists {schema} cascade")
        cursor.close()


def test_demo_sensitivity_rows_equal_the_reference(demo):
    """One query over the transform's tables (no rebuild) gives what rebuilding analysis_person
    under each varied setting and the person-level estimators give."""
    con, cfg = demo["con"], demo["config"]

    def rebuild(varied: Config) -> pd.DataFrame:
        return rebuild_analysis_person(con, varied)

    expected = reference.sensitivity(con, cfg, rebuild)
    actual = estimate_run.sensitivity(con, cfg)
    assert len(actual) == 3 * 3 * 2 * 2
    assert_same_estimates(expected, actual)


def test_sensitivity_stage_replaces_only_its_rows(demo):
    """The stage after estimate: its 36 rows replace the previous ones (a second run adds none);
    the in-sample sensitivity rows of the estimate stage (truncated weights, drop ongoing) stay."""
    from pipeline.estimate.sensitivity import run as sensitivity_run

    con, cfg = demo["con"], demo["config"]
    in_sample = ("select count(*) from estimates where variable like 'weights_truncated%' "
                 "or variable like 'drop_ongoing%'")
    estimate_run.run(con, cfg)
    before = con.execute("select count(*) from estimates").fetchall()[0][0]
    kept = con.execute(in_sample).fetchall()[0][0]
    assert kept == 2 + 2 * 2 + 2  # (a) truncated (primary), drop_ongoing (primary, complete case), (b) truncated
    assert sensitivity_run(con, cfg)["rows"] == 36
    assert sensitivity_run(con, cfg)["rows"] == 36
    assert con.execute("select count(*) from estimates").fetchall()[0][0] == before + 36
    assert con.execute(in_sample).fetchall()[0][0] == kept
    levels = con.execute("select distinct level from estimates where variable = 'sds_cutoff' and population = 'gt_split' "
                         "order by level").fetchall()
    assert levels == [("6",), ("7",), ("8",)]


def test_demo_sensitivity_with_other_settings_equals_the_reference(demo):
    """Other varied values, a second persistence window off the default, stockpiling, another
    headline split and other misuse thresholds: still the rebuild's results."""
    con = demo["con"]
    cfg = demo["config"].replace(
        estimate={"sensitivity_persistence_window_days": (0, 45), "sensitivity_sds_cutoff": (3, 10),
                  "sensitivity_window_after_end_days": (0, 365), "headline_split_days": 56},
        misuse={"early_refills": 1, "distinct_prescribers": 2},
        episodes={"stockpiling": True},
    )
    # the warehouse holds the default settings' tables: build cfg's own in a scratch schema first
    scratch = con.cursor()
    try:
        scratch.execute("create schema if not exists other_settings")
        scratch.execute("set schema = 'other_settings'")
        scratch.execute("set search_path = 'other_settings,main'")
        from pipeline.transform import sql_files, sql_parameters
        from pipeline.warehouse import run_sql_file

        for path in sql_files():
            if path.name >= "02" or path.name.startswith("00"):
                run_sql_file(scratch, path, **sql_parameters(cfg))
        expected = reference.sensitivity(scratch, cfg, lambda varied: rebuild_analysis_person(scratch, varied, "inner_rebuild"))
        actual = estimate_run.sensitivity(scratch, cfg)
    finally:
        scratch.execute("drop schema if exists other_settings cascade")
        scratch.close()
    assert len(actual) == 2 * 3 * 2 * 2
    assert_same_estimates(expected, actual)


# --------------------------------------------------------------------------- hostile shapes


def _hostile_person_table(seed: int) -> pd.DataFrame:
    """A simulated analysis_person with the shapes a real extract can have: NULL categories, NULL flags,
    flags and outcomes as 0/1 numbers with NaN, a category nobody in it was assessed in (positivity)."""
    person, _ = make_mar_person_table(seed=seed, persons=3000)
    rng = np.random.default_rng(seed)
    person = person.copy()
    for column in ("sex", "age_band"):
        person[column] = person[column].astype("object").mask(rng.random(len(person)) < 0.03, None)
    for column in ("rx_early_refills", "died_in_window", "misuse"):
        person[column] = person[column].astype("boolean").mask(rng.random(len(person)) < 0.05, pd.NA)
    person["ascertained"] = person["ascertained"].astype("Float64")
    person["dep_sds"] = person["dep_sds"].astype("Float64").mask(rng.random(len(person)) < 0.1, pd.NA)
    # trends: dates with NULLs and garbage, regions with spaces, empty strings and NULLs
    start = pd.Timestamp("2015-01-01") + pd.to_timedelta(rng.integers(0, 9 * 365, len(person)), unit="D")
    person["episode_start"] = pd.Series(start.strftime("%Y-%m-%d"), dtype="object").mask(
        rng.random(len(person)) < 0.02, None).mask(rng.random(len(person)) < 0.01, "not a date")
    person["region"] = pd.Series(rng.choice(["North", " North ", "South", "", "East"], len(person)),
                                 dtype="object").mask(rng.random(len(person)) < 0.03, None)
    seizure = person["indication"] == "seizure"
    person.loc[seizure, "ascertained"] = 0.0
    person["dependence"] = person["dependence"].mask(seizure, pd.NA)
    return person


@pytest.mark.parametrize("seed", [4, 9])
def test_hostile_person_tables_equal_the_reference(seed):
    print("seed", seed)
    person = _hostile_person_table(seed)
    expected, expected_extras = reference.estimate_tables(person, Config())
    actual, extras = estimate_run.estimate_tables(person, Config())
    assert extras["weight_model"]["restricted"]
    assert {"by_calendar_year", "by_region"} <= set(actual["analysis"])
    assert_same_estimates(expected, actual)
    assert_close_nested(expected_extras["weights"], extras["weights"])


def test_duplicated_persons_only_multiply_the_counts():
    seed = 12
    print("seed", seed)
    person, _ = make_mar_person_table(seed=seed, persons=1500)
    once = estimate_run.patterns_of_frame(person)
    thrice = estimate_run.patterns_of_frame(pd.concat([person] * 3, ignore_index=True))
    assert len(once) == len(thrice)
    assert (thrice["_count"].to_numpy() == 3 * once["_count"].to_numpy()).all()
    a = estimate_run.headline_from_person_table(person, Config())["headline"]["gt_4_weeks"]
    b = estimate_run.headline_from_person_table(pd.concat([person] * 3, ignore_index=True), Config())["headline"]["gt_4_weeks"]
    assert b["n"] == 3 * a["n"] and b["events"] == 3 * a["events"]
    assert b["estimate"] == pytest.approx(a["estimate"], rel=1e-12)
    assert b["ci_high"] - b["ci_low"] < a["ci_high"] - a["ci_low"]


# --------------------------------------------------------------------------- the pieces


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_weighted_percentile_is_numpys_linear_percentile_of_the_repeated_values(seed):
    print("seed", seed)
    rng = np.random.default_rng(seed)
    values = np.round(rng.lognormal(size=40), 2)  # ties between patterns too
    counts = rng.integers(1, 9, size=40)
    q = [0, 1, 5, 25, 33.3, 50, 75, 95, 99, 100]
    expected = np.percentile(np.repeat(values, counts), q)
    np.testing.assert_allclose(stats.weighted_percentile(values, counts, q), expected, rtol=1e-15, atol=0)
    assert stats.weighted_percentile([2.5], [7], [1, 99]).tolist() == [2.5, 2.5]


def test_median_interval_from_counts_equals_the_person_level_one():
    rng = np.random.default_rng(5)
    for n in (1, 2, 7, 40):
        values = rng.integers(0, 6, size=n).astype(float)
        counts = rng.integers(1, 4, size=n)
        expected = reference_stats.median_interval(np.repeat(values, counts))
        assert stats.median_interval(values, count=counts) == expected


def test_curve_from_event_cells_equals_the_person_level_stacked_variance():
    seed = 21
    print("seed", seed)
    rng = np.random.default_rng(seed)
    n = 3000
    x = rng.integers(0, 3, n)
    X = np.column_stack([np.ones(n), x == 1, x == 2]).astype(float)
    r = rng.random(n) < np.array([0.3, 0.6, 0.8])[x]
    time_days = rng.integers(1, 60, n).astype(float)
    cause = rng.choice([0, 1, 2], size=n, p=[0.6, 0.3, 0.1])
    person_model = reference_stats.fit_ascertainment_model(X, r)
    expected = reference_stats.aalen_johansen(time_days, cause, model=person_model, times=[7, 14, 28, 56])
    # cells: persons of one (time, cause) summed, whatever their covariates
    model = stats.fit_ascertainment_model(X, r)
    frame = pd.DataFrame({"t": time_days, "c": cause, "n": 1.0, "w": model.weight, "w2": model.weight ** 2})
    score = (model.weight * (1 - model.probability))[:, None] * X
    for j in range(3):
        frame[f"s{j}"] = score[:, j]
    cells = frame[r].groupby(["t", "c"], as_index=False).sum()
    correction = stats.WeightCorrection(cells[["s0", "s1", "s2"]].to_numpy(), model.inverse_information,
                                        model.residual_moment())
    actual = stats.aalen_johansen_cells(cells["t"], cells["c"], count=cells["n"], weight_sum=cells["w"],
                                        weight_square=cells["w2"], correction=correction, times=[7, 14, 28, 56])
    assert len(cells) < r.sum()
    pd.testing.assert_frame_equal(expected, actual, check_exact=False, rtol=TOLERANCE, atol=0, check_dtype=False)


def test_pattern_fit_equals_person_fit():
    seed = 6
    print("seed", seed)
    rng = np.random.default_rng(seed)
    n = 2000
    frame = pd.DataFrame({"a": rng.choice(["x", "y", "z"], n), "b": rng.random(n) < 0.3,
                          "d": rng.integers(1, 30, n).astype(float)})
    r = rng.random(n) < 0.5 + 0.2 * frame["b"]
    X, names = reference_stats.design_matrix(frame, ["a"], ["b"], ["d"])
    expected = reference_stats.fit_ascertainment_model(X, r, names)
    grouped = frame.assign(r=r).groupby(["a", "b", "d", "r"], as_index=False).size()
    Xp, names_p = stats.design_matrix(grouped, ["a"], ["b"], ["d"], count=grouped["size"])
    model = stats.fit_ascertainment_model(Xp, grouped["r"], names_p, count=grouped["size"])
    assert names_p == names
    np.testing.assert_allclose(model.inverse_information, expected.inverse_information, rtol=1e-9, atol=1e-15)
    y = np.where(r, (rng.random(n) < 0.4).astype(float), np.nan)
    grouped_y = frame.assign(r=r, y=y).groupby(["a", "b", "d", "r", "y"], as_index=False, dropna=False).size()
    Xy, _ = stats.design_matrix(grouped_y, ["a"], ["b"], ["d"], count=grouped_y["size"])
    model_y = stats.fit_ascertainment_model(Xy, grouped_y["r"], names_p, count=grouped_y["size"])
    a = reference_stats.ipw_proportion(y, expected)
    b = stats.ipw_proportion(grouped_y["y"], model_y)
    for key in ("estimate", "ci_low", "ci_high", "se", "n_effective"):
        assert b[key] == pytest.approx(a[key], rel=TOLERANCE)
    assert (b["n"], b["events"], b["n_ascertained"]) == (a["n"], a["events"], a["n_ascertained"])
    assert_close_nested(a["weights"], b["weights"])
