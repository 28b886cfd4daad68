"""Estimation core: tiny literal fixtures with hand-computed expectations.

Random data are seeded; each seed is printed by the test that uses it.
"""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pandas as pd
import pytest

from pipeline.config import Config
from pipeline.errors import PipelineError, StageOrderError
from pipeline.estimate import run as estimate_run
from pipeline.estimate import stats
from bench.simulate import main as simulation_main
from bench.simulate import make_mar_person_table

Z95 = 1.959963984540054


# --------------------------------------------------------------------------- Wilson


def test_wilson_3_of_10_matches_closed_form():
    # p = 0.3, n = 10, z^2 = 3.841459
    # centre = (0.3 + z^2/20) / (1 + z^2/10) = 0.492073 / 1.384146 = 0.355506
    # half   = z * sqrt(0.3*0.7/10 + z^2/400) / 1.384146 = 1.959964 * 0.174939 / 1.384146 = 0.247717
    p, n, z2 = 0.3, 10, Z95**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    low, high = stats.wilson_interval(3, 10)
    assert low == pytest.approx(centre - half, abs=1e-12)
    assert high == pytest.approx(centre + half, abs=1e-12)
    assert (round(low, 4), round(high, 4)) == (0.1078, 0.6032)


def test_wilson_is_vectorised_and_handles_edges():
    low, high = stats.wilson_interval(np.array([0, 3, 10]), np.array([10, 10, 10]))
    assert low[0] == 0.0 and high[2] == 1.0
    # 0/10: upper = z^2 / (n + z^2) = 3.841459 / 13.841459
    assert high[0] == pytest.approx(Z95**2 / (10 + Z95**2))
    assert np.isnan(stats.wilson_interval(0, 0)[0])


def test_complete_case_ignores_unknown_outcomes():
    result = stats.complete_case_proportion([1, 0, None, 1, None], include=[True, True, True, True, False])
    assert (result["n"], result["events"], result["estimate"]) == (3, 2, pytest.approx(2 / 3))


# --------------------------------------------------------------------------- IPW


def _two_cell_model():
    # cell A (x=0): 4 persons, 2 ascertained -> p = 1/2, weight 2; outcomes 1, 0
    # cell B (x=1): 4 persons, 1 ascertained -> p = 1/4, weight 4; outcome 1
    x = np.array([0, 0, 0, 0, 1, 1, 1, 1], dtype=float)
    ascertained = np.array([1, 1, 0, 0, 1, 0, 0, 0], dtype=bool)
    outcome = np.array([1, 0, np.nan, np.nan, 1, np.nan, np.nan, np.nan])
    model = stats.fit_ascertainment_model(np.column_stack([np.ones(8), x]), ascertained)
    return model, outcome


def test_weighted_hajek_proportion_by_hand():
    model, outcome = _two_cell_model()
    assert model.weight[:2] == pytest.approx([2, 2], rel=1e-6)
    assert model.weight[4] == pytest.approx(4, rel=1e-6)
    result = stats.ipw_proportion(outcome, model)
    # (2*1 + 2*0 + 4*1) / (2 + 2 + 4) = 6/8: the cell means 1/2 and 1 averaged over 4 + 4 persons
    assert result["estimate"] == pytest.approx(0.75, rel=1e-6)
    assert (result["n"], result["events"], result["n_ascertained"]) == (8, 2, 3)
    assert result["weights"]["max"] == pytest.approx(4, rel=1e-6)
    # Kish ESS: (2+2+4)^2 / (4+4+16) = 64/24
    assert result["weights"]["ess"] == pytest.approx(64 / 24, rel=1e-6)
    complete = stats.complete_case_proportion(outcome)
    assert complete["estimate"] == pytest.approx(2 / 3)


def test_ipw_recovers_truth_on_simulated_mar_data():
    seed = 20261122
    print("seed", seed)
    rng = np.random.default_rng(seed)
    n = 20000
    x = rng.random(n) < 0.5
    y = (rng.random(n) < np.where(x, 0.6, 0.2)).astype(float)  # truth: 0.5*0.2 + 0.5*0.6 = 0.4
    r = rng.random(n) < np.where(x, 0.9, 0.3)  # complete case -> (0.3*0.2 + 0.9*0.6)/1.2 = 0.5
    model = stats.fit_ascertainment_model(np.column_stack([np.ones(n), x]), r)
    result = stats.ipw_proportion(np.where(r, y, np.nan), model)
    complete = stats.complete_case_proportion(np.where(r, y, np.nan))
    # within 3 standard errors of the truth (coverage of the 95% CI is measured by simulate.py)
    assert abs(result["estimate"] - 0.4) < 3 * result["se"]
    p = result["estimate"]
    assert result["se"] == pytest.approx(np.sqrt(p * (1 - p) / result["n_effective"]))
    assert complete["estimate"] == pytest.approx(0.5, abs=0.015)


def test_stacked_variance_matches_bootstrap():
    seed = 7
    print("seed", seed)
    rng = np.random.default_rng(seed)
    n = 3000
    x = rng.integers(0, 3, n)
    X = np.column_stack([np.ones(n), x == 1, x == 2]).astype(float)
    y = (rng.random(n) < np.array([0.1, 0.3, 0.6])[x]).astype(float)
    r = rng.random(n) < np.array([0.8, 0.5, 0.3])[x]
    model = stats.fit_ascertainment_model(X, r)
    se = stats.ipw_proportion(np.where(r, y, np.nan), model)["se"]
    replicates = []
    for _ in range(150):
        i = rng.integers(0, n, n)
        m = stats.fit_ascertainment_model(X[i], r[i])
        replicates.append(stats.ipw_proportion(np.where(r[i], y[i], np.nan), m)["estimate"])
    assert se == pytest.approx(np.std(replicates, ddof=1), rel=0.2)


# --------------------------------------------------------------------------- Aalen-Johansen


def test_aalen_johansen_with_ties_and_competing_death():
    # time  1  2  2  2  3  4      cause 1 = dependence, 2 = death, 0 = censored
    # cause 1  1  2  0  1  0
    # t=1: Y=6, d1=1, d2=0 -> F1 = 1/6;               S = 5/6
    # t=2: Y=5 (the censoring at 2 is still at risk), d1=1, d2=1
    #      -> F1 += S(1) * 1/5 = 1/6 -> 1/3;  F2 = 5/6 * 1/5 = 1/6;  S = 5/6 * 3/5 = 1/2
    # t=3: Y=2, d1=1 -> F1 += 1/2 * 1/2 -> 7/12;      S = 1/4
    # t=4: censored only -> F1 stays 7/12
    time_days = [1, 2, 2, 2, 3, 4]
    cause = [1, 1, 2, 0, 1, 0]
    curve = stats.aalen_johansen(time_days, cause, times=[0, 1, 2, 3, 4, 10])
    assert curve["estimate"].tolist() == pytest.approx([0, 1 / 6, 1 / 3, 7 / 12, 7 / 12, 7 / 12])
    assert curve["at_risk"].tolist() == [6, 6, 5, 2, 1, 0]
    assert curve["events"].tolist() == [0, 1, 2, 3, 3, 3]
    deaths = stats.aalen_johansen(time_days, [2 if c == 1 else 1 if c == 2 else 0 for c in cause], times=[2])
    # F1 + F2 + S = 1 at t = 2: 1/3 + 1/6 + 1/2
    assert deaths["estimate"].iloc[0] == pytest.approx(1 / 6)


def test_aalen_johansen_without_competing_events_is_greenwood():
    # time 1 2 2 3, cause 1 1 0 0: t=1 Y=4 d=1 -> S=3/4, sum d/(Y(Y-d)) = 1/12
    # t=2 Y=3 d=1 -> S=1/2, sum += 1/6 -> 1/4.  F = 1/2, Var = S^2 * 1/4 = 1/16 -> se 1/4
    curve = stats.aalen_johansen([1, 2, 2, 3], [1, 1, 0, 0], times=[2])
    assert curve["estimate"].iloc[0] == pytest.approx(0.5)
    assert curve["se"].iloc[0] == pytest.approx(0.25)
    low, high = curve["ci_low"].iloc[0], curve["ci_high"].iloc[0]
    assert 0 < low < 0.5 < high < 1


def test_weighted_aalen_johansen_equals_duplicated_rows():
    time_days = np.array([1, 2, 2, 3, 5, 5])
    cause = np.array([1, 2, 0, 1, 1, 0])
    weight = np.array([2, 1, 3, 1, 2, 1])
    weighted = stats.aalen_johansen(time_days, cause, weight=weight, times=[1, 3, 5])
    duplicated = stats.aalen_johansen(np.repeat(time_days, weight), np.repeat(cause, weight), times=[1, 3, 5])
    assert weighted["estimate"].tolist() == pytest.approx(duplicated["estimate"].tolist())


# --------------------------------------------------------------------------- the stage


@pytest.fixture(scope="module")
def warehouse():
    seed = 11
    print("seed", seed)
    person, truth = make_mar_person_table(seed=seed, persons=6000)
    con = duckdb.connect(":memory:")
    con.register("person_frame", person)
    con.execute("create table analysis_person as select * from person_frame")
    con.unregister("person_frame")
    result = estimate_run.run(con, Config())
    return con, result, truth


def test_headline_dict_has_design_shape(warehouse):
    con, result, _ = warehouse
    headline = result["headline_json"]
    assert list(headline) == ["headline", "complete_case", "config"]
    for key in ("headline", "complete_case"):
        assert set(headline[key]) == {"gt_4_weeks", "le_4_weeks"}
        for entry in headline[key].values():
            assert list(entry) == ["estimate", "ci_low", "ci_high", "n", "n_assessed", "events", "method"]
            assert 0 <= entry["ci_low"] <= entry["estimate"] <= entry["ci_high"] <= 1
            assert isinstance(entry["n"], int) and isinstance(entry["events"], int)
            # events are counted among the assessed: n_assessed <= n, and events / n_assessed is the complete case
            assert entry["events"] <= entry["n_assessed"] <= entry["n"]
        for group in ("gt_4_weeks", "le_4_weeks"):
            primary, complete = headline["headline"][group], headline["complete_case"][group]
            assert primary["n_assessed"] == complete["n"] == complete["n_assessed"] < primary["n"]
            assert complete["estimate"] == pytest.approx(primary["events"] / primary["n_assessed"])
    assert headline["headline"]["gt_4_weeks"]["method"].startswith("primary: ")
    assert headline["complete_case"]["gt_4_weeks"]["method"].startswith("complete_case: ")
    assert "complete case" in headline["complete_case"]["gt_4_weeks"]["method"]  # how publish tells them apart
    assert "complete case" not in headline["headline"]["gt_4_weeks"]["method"]
    assert result["headline"] == headline["headline"] and result["complete_case"] == headline["complete_case"]
    assert headline["config"] == Config().to_dict()
    estimates = con.execute("select * from estimates").df()
    assert estimate_run.headline_from_estimates(estimates, Config()) == headline


def test_estimates_table_conventions(warehouse):
    con, result, _ = warehouse
    estimates = con.execute("select * from estimates").df()
    assert list(estimates.columns) == list(estimate_run.ESTIMATE_COLUMNS)
    assert set(estimates["analysis"]) == {
        "headline", "by_duration_band", "by_stratum", "by_stratum_overall", "components", "cumulative_incidence",
        "dose_response", "tolerance", "withdrawal_by_ending", "weights", "anchors", "diagnostics", "sensitivity",
        "headline_fixed_window", "by_duration_band_fixed_window", "weights_fixed_window",
    }
    sensitivity = estimates[estimates["analysis"] == "sensitivity"]
    assert set(zip(sensitivity["variable"], sensitivity["population"], sensitivity["estimand"])) == {
        (name, population, estimand)
        for name, estimand in (("weights_truncated", "episode_window"), ("weights_truncated_fixed_window", "fixed_window"),
                               ("drop_ongoing", "episode_window"))
        for population in ("gt_split", "le_split")
    }
    # every row names its estimand, estimator, population and quantity from the one contract
    from pipeline.estimate import columns
    assert set(estimates["estimand"]) == set(columns.ESTIMANDS.values())
    assert set(estimates["estimator"]) <= set(columns.ESTIMATORS)
    assert set(estimates["population"]) <= set(columns.POPULATIONS)
    assert all(columns.estimate_type(name) == kind for name, kind in zip(estimates["estimate_name"], estimates["estimate_type"]))
    curve_methods = estimates.loc[estimates["analysis"] == "cumulative_incidence", "method"]
    assert curve_methods.str.contains("censored when the outcome window closes").all()
    weights = estimates[estimates["analysis"] == "weights"]
    assert {"p1", "p5", "p25", "p50", "p75", "p95", "p99", "ess"} <= set(weights["variable"])
    primary = estimates[estimates["estimator"] == "hajek_ipw"]
    assert (primary["n_assessed"] <= primary["n"]).all() and (primary["events"] <= primary["n_assessed"]).all()
    proportions = estimates[estimates["estimator"].isin(("hajek_ipw", "complete_case"))]
    assert ((proportions["ci_low"] <= proportions["estimate"]) & (proportions["estimate"] <= proportions["ci_high"])).all()
    bands = estimates[estimates["analysis"] == "by_duration_band"]
    assert list(pd.unique(bands["level"])) == Config().estimate.band_labels()
    strata = estimates[estimates["analysis"] == "by_stratum"]
    assert set(strata["variable"]) == {"misuse", "rx_misuse_signal", "indication", "dose_band", "age_band", "sex"}
    assert set(strata.loc[strata["variable"] == "misuse", "level"]) == {"misuse", "supervised"}
    overall = estimates[(estimates["analysis"] == "by_stratum_overall") & (estimates["variable"] == "sex")]
    within = strata[strata["variable"] == "sex"]
    assert overall["n"].sum() > within["n"].sum()  # whole cohort vs > 4 weeks only
    curve = estimates[(estimates["analysis"] == "cumulative_incidence") & (estimates["level"] == "gt_4_weeks")]
    for _, one in curve.groupby("method"):
        assert one["estimate"].is_monotonic_increasing and one["time_days"].notna().all()
    assert len(result["anchor_sentences"]) == 3


def test_run_replaces_the_table(warehouse):
    con, result, _ = warehouse
    again = estimate_run.run(con, Config())
    assert con.execute("select count(*) from estimates").fetchall()[0][0] == again["rows"] == result["rows"]


def test_headline_recovers_mar_truth_and_complete_case_is_biased():
    seed = 5
    print("seed", seed)
    person, truth = make_mar_person_table(seed=seed, persons=20000)
    result = estimate_run.headline_from_person_table(person, Config())
    for group in ("gt_4_weeks", "le_4_weeks"):
        primary = result["headline"][group]
        assert primary["ci_low"] <= truth["headline"][group] <= primary["ci_high"]
    # MAR by design: long, high-dose, misuse-signal persons are ascertained more and depend more
    assert result["complete_case"]["gt_4_weeks"]["estimate"] > truth["headline"]["gt_4_weeks"] + 0.01


def test_sensitivity_needs_the_transform_tables_not_a_person_table(warehouse):
    """The sensitivity variants come from the transform's tables (episodes' gaps, outcome
    records); a bare analysis_person is not enough, and the error says which stage to run."""
    from pipeline.estimate.sensitivity import run as sensitivity_run

    con, _, _ = warehouse
    with pytest.raises(StageOrderError, match=r"dispensing_gaps.*run the transform stage first"):
        sensitivity_run(con, Config())


def test_sensitivity_command_before_estimate_is_one_line(tmp_path):
    import os
    import subprocess
    import sys

    from pipeline.config import PROJECT_ROOT

    duckdb.connect(str(tmp_path / "w.duckdb")).close()
    env = {**os.environ, "GX_ANALYTICS_ENABLED": "false"}
    result = subprocess.run([sys.executable, "-m", "pipeline", "sensitivity", "--warehouse", str(tmp_path / "w.duckdb")],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode != 0
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "estimate" in lines[0] and "Traceback" not in result.stderr, result.stderr


def test_missing_column_is_one_clear_error():
    person, _ = make_mar_person_table(seed=1, persons=50)
    with pytest.raises(PipelineError, match="lacks column.*dep_sds.*rerun the transform"):
        estimate_run.headline_from_person_table(person.drop(columns=["dep_sds"]), Config())
    with pytest.raises(StageOrderError, match="analysis_person not found"):
        estimate_run.run(duckdb.connect(":memory:"), Config())


def test_simulation_harness_accepts_a_generator():
    summary = simulation_main(n_sims=2, persons=1500, seed=3, make_person_table=make_mar_person_table, verbose=False)
    assert set(summary["method"]) == {"primary", "complete_case"}
    assert {"bias_pp", "coverage", "empirical_se_pp"} <= set(summary.columns)


def test_weighted_aalen_johansen_variance_matches_bootstrap():
    seed = 4
    print("seed", seed)
    rng = np.random.default_rng(seed)
    n = 2000
    x = rng.integers(0, 3, n)
    X = np.column_stack([np.ones(n), x == 1, x == 2]).astype(float)
    r = rng.random(n) < np.array([0.8, 0.5, 0.3])[x]
    event_day = np.ceil(rng.exponential(np.array([60, 30, 15])[x]))
    cause = rng.choice([1, 2], n, p=[0.8, 0.2])
    censored_day = rng.integers(1, 80, n)
    cause = np.where(event_day <= censored_day, cause, 0)
    time_days = np.minimum(event_day, censored_day)
    model = stats.fit_ascertainment_model(X, r)
    se = stats.aalen_johansen(time_days, cause, model=model, times=[10, 30])["se"].to_numpy()
    replicates = []
    for _ in range(120):
        i = rng.integers(0, n, n)
        m = stats.fit_ascertainment_model(X[i], r[i])
        replicates.append(stats.aalen_johansen(time_days[i], cause[i], model=m, times=[10, 30])["estimate"].to_numpy())
    assert se == pytest.approx(np.std(replicates, axis=0, ddof=1), rel=0.2)


# --------------------------------------------------------------------------- issue 14: estimands and diagnostics


def test_fixed_window_estimand_recovers_its_truth_beside_the_growing_window():
    seed = 6
    print("seed", seed)
    person, truth = make_mar_person_table(seed=seed, persons=20000)
    fixed = estimate_run.headline_from_person_table(person, Config(), estimand="b")
    for group in ("gt_4_weeks", "le_4_weeks"):
        entry = fixed["headline"][group]
        assert entry["ci_low"] <= truth["headline_fixed_window"][group] <= entry["ci_high"]
        # (b) is defined only for treatments that ended while observed (no 'ongoing' episode)
        assert entry["n"] == int(((person["headline_group"] == group) & person["fixed_window_defined"]).sum())


def test_positivity_violation_restricts_the_estimand_labels_it_and_warns(caplog):
    seed = 8
    print("seed", seed)
    person, _ = make_mar_person_table(seed=seed, persons=4000)
    seizure = person["indication"] == "seizure"
    person.loc[seizure, "ascertained"] = False  # nobody with a seizure indication was ever assessed
    person["dependence"] = person["dependence"].mask(seizure, pd.NA)
    con = duckdb.connect(":memory:")
    con.register("person_frame", person)
    con.execute("create table analysis_person as select * from person_frame")
    with caplog.at_level("WARNING"):
        result = estimate_run.run(con, Config())
    entry = result["headline"]["gt_4_weeks"]
    assert "RESTRICTED" in entry["method"] and "indication: seizure" in entry["method"]
    assert entry["n"] == int(((person["headline_group"] == "gt_4_weeks") & ~seizure).sum())
    assert any("indication: seizure" in w for w in result["warnings"])
    assert "indication: seizure" in caplog.text
    logged = con.execute("select message from audit_run_log where status = 'warning'").fetchall()
    assert any("indication: seizure" in m for (m,) in logged)
    diagnostics = con.execute("select level, n, events from estimates where variable = 'positivity_violation'").fetchall()
    assert diagnostics == [("estimand_a|indication: seizure", int(seizure.sum()), 0)]
    primary = con.execute("select method from estimates where method like 'primary: IPW (Hajek)%' "
                          "and analysis not like '%fixed_window' and variable not like '%fixed_window%'").fetchall()
    assert primary and all("RESTRICTED" in m for (m,) in primary)
    fixed = con.execute("select method from estimates where analysis = 'headline_fixed_window'").fetchall()
    assert fixed and not any("RESTRICTED" in m for (m,) in fixed)  # (b)'s own ascertainment still covers seizure


def test_separation_and_fit_warnings_are_returned_not_silenced(monkeypatch):
    X = np.column_stack([np.ones(8), [0, 0, 0, 0, 1, 1, 1, 1]])
    model = stats.fit_ascertainment_model(X, [1, 0, 1, 0, 1, 1, 1, 1])  # everyone with x = 1 assessed
    assert any("quasi-separation" in note for note in model.fit_warnings)
    import statsmodels.api as sm  # the fallback imports it where it is used

    original = sm.GLM.fit

    def noisy_fit(self, *args, **kwargs):
        import warnings

        warnings.warn("something the fit wants you to know", RuntimeWarning)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(sm.GLM, "fit", noisy_fit)
    # a separated problem goes to statsmodels' IRLS, whose warnings come back
    _, _, notes = stats.fit_binomial_glm(X, np.array([1, 0, 1, 0, 1, 1, 1, 1.0]))
    assert "RuntimeWarning: something the fit wants you to know" in notes
    # a regular one: the same IRLS iterates on the normal equations, the same coefficients, nothing to report
    y = np.array([1, 0, 1, 0, 1, 0, 0, 1.0])
    coef, converged, notes = stats.fit_binomial_glm(X, y)
    assert converged and notes == ()
    reference = original(sm.GLM(y, X, family=sm.families.Binomial()))
    np.testing.assert_allclose(coef, reference.params, rtol=0, atol=1e-9)


def test_truncated_weights_are_clipped_to_percentiles():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 4, 4000)
    X = np.column_stack([np.ones(4000), x == 1, x == 2, x == 3]).astype(float)
    r = rng.random(4000) < np.array([0.9, 0.6, 0.3, 0.05])[x]
    model = stats.fit_ascertainment_model(X, r)
    clipped = stats.truncate_weights(model, 1, 99)
    assessed = model.weight[model.ascertained]
    assert clipped.weight[model.ascertained].max() == pytest.approx(np.percentile(assessed, 99))
    assert clipped.weight[model.ascertained].min() == pytest.approx(np.percentile(assessed, 1))
    assert (clipped.weight[~model.ascertained] == 0).all()


def test_supervised_stratum_is_defined_from_prescription_records_known_for_everyone(warehouse):
    con, _, _ = warehouse
    person = con.execute("select * from analysis_person").df()
    rows = con.execute("select n from estimates where analysis = 'by_stratum_overall' and variable = 'misuse' "
                       "and level = 'supervised' and method like 'primary:%'").fetchall()
    assert rows == [(int((~person["rx_misuse_signal"]).sum()),)]


def test_nobody_assessed_is_not_estimable_with_a_warning():
    person, _ = make_mar_person_table(seed=9, persons=600)
    person["ascertained"] = False
    person["ascertained_fixed"] = False
    for column in ("dependence", "dependence_fixed", "dep_icd", "dep_withdrawal", "dep_assessed", "dep_sds"):
        person[column] = pd.array([None] * len(person), dtype="boolean")
    frame, extras = estimate_run.estimate_tables(person, Config())
    entry = extras["headline_json"]["headline"]["gt_4_weeks"]
    assert entry["estimate"] is None and entry["n_assessed"] == 0 and entry["n"] > 0
    assert sum("not estimable" in w for w in extras["warnings"]) == 2  # estimands (a) and (b)
