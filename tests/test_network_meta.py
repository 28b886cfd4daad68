"""Random-effects estimators and the standard errors derived from published intervals.

Checked against statsmodels' meta-analysis module (DerSimonian-Laird, Paule-Mandel,
HKSJ), the REML likelihood maximised numerically, metafor's published BCG example,
and the project's own estimators (Wilson, IPW sandwich, odds-ratio Wald).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import scipy.stats
from statsmodels.stats.meta_analysis import combine_effects

from pipeline.estimate import stats
from pipeline.network import meta

SEED = 20261130

# BCG vaccine trials (Colditz et al. 1994; metafor's dat.bcg): tpos, tneg, cpos, cneg.
BCG = [(4, 119, 11, 128), (6, 300, 29, 274), (3, 228, 11, 209), (62, 13536, 248, 12619), (33, 5036, 47, 5761),
       (180, 1361, 372, 1079), (8, 2537, 10, 619), (505, 87886, 499, 87892), (29, 7470, 45, 7232),
       (17, 1699, 65, 1600), (186, 50448, 141, 27197), (5, 2493, 3, 2338), (27, 16886, 29, 17825)]


def bcg_log_risk_ratios():
    tpos, tneg, cpos, cneg = (np.array(c, dtype=float) for c in zip(*BCG))
    yi = np.log((tpos / (tpos + tneg)) / (cpos / (cpos + cneg)))
    vi = 1 / tpos - 1 / (tpos + tneg) + 1 / cpos - 1 / (cpos + cneg)
    return yi, np.sqrt(vi)


def test_reml_matches_metafor_bcg_example():
    # metafor: rma(measure="RR", ai=tpos, bi=tneg, ci=cpos, di=cneg, data=dat.bcg)
    # tau^2 = 0.3132, estimate -0.7145, se 0.1798, Q(df = 12) = 152.2330
    y, se = bcg_log_risk_ratios()
    fit = meta.random_effects(y, se, method="reml")
    assert fit["tau2"] == pytest.approx(0.3132, abs=5e-5)
    assert fit["mu"] == pytest.approx(-0.7145, abs=5e-5)
    assert fit["se"] == pytest.approx(0.1798, abs=5e-5)
    assert fit["q"] == pytest.approx(152.2330, abs=5e-4)
    assert fit["i2"] == pytest.approx((fit["q"] - 12) / fit["q"])
    assert fit["converged"]
    # metafor, method="DL": tau^2 = 0.3088, estimate -0.7141, se 0.1787
    dl = meta.random_effects(y, se, method="dl")
    assert (dl["tau2"], dl["mu"], dl["se"]) == pytest.approx((0.3088, -0.7141, 0.1787), abs=5e-5)


def test_reml_maximises_the_restricted_likelihood():
    rng = np.random.default_rng(SEED)
    for _ in range(20):
        k = int(rng.integers(3, 9))
        se = rng.uniform(0.05, 0.4, k)
        y = rng.normal(0.3, 0.2, k) + rng.normal(0, se)
        v = se**2

        def negative_reml(tau2):
            w = 1 / (v + tau2)
            mu = (w * y).sum() / w.sum()
            return 0.5 * (np.log(v + tau2).sum() + math.log(w.sum()) + (w * (y - mu) ** 2).sum())

        best = scipy.optimize.minimize_scalar(negative_reml, bounds=(0, 5), method="bounded", options={"xatol": 1e-10})
        expected = best.x if negative_reml(best.x) < negative_reml(0.0) else 0.0
        assert meta.random_effects(y, se, method="reml")["tau2"] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("method, sm_method", [("dl", "dl"), ("pm", "iterated")])
def test_dl_and_pm_match_statsmodels(method, sm_method):
    y, se = bcg_log_risk_ratios()
    ours = meta.random_effects(y, se, method=method, hksj_floor=False)
    theirs = combine_effects(y, se**2, method_re=sm_method, use_t=True)
    assert ours["tau2"] == pytest.approx(theirs.tau2, rel=1e-4)
    assert ours["mu"] == pytest.approx(theirs.mean_effect_re, rel=1e-4)
    assert ours["se"] == pytest.approx(theirs.sd_eff_w_re, rel=1e-4)
    assert ours["q"] == pytest.approx(theirs.q, rel=1e-9)
    low, high = theirs.conf_int(alpha=0.05, use_t=True)[3]  # random effects, HKSJ (estimated scale), t(k-1)
    assert (ours["ci_low"], ours["ci_high"]) == pytest.approx((low, high), rel=1e-4)
    assert ours["i2"] == pytest.approx(theirs.i2)


def test_statsmodels_dl_is_not_truncated_so_ours_is():
    # Sites agreeing more than their standard errors predict: Q < k - 1.
    y, se = np.array([0.30, 0.31, 0.29, 0.30]), np.array([0.1, 0.1, 0.1, 0.1])
    assert combine_effects(y, se**2, method_re="dl").tau2 < 0  # why we do not take statsmodels' DL as it is
    for method in meta.METHODS:
        fit = meta.random_effects(y, se, method=method)
        assert fit["tau2"] == 0.0 and fit["i2"] == 0.0


def test_hksj_floor_never_narrower_than_wald_t():
    y, se = np.array([0.30, 0.31, 0.29, 0.30]), np.array([0.1, 0.1, 0.1, 0.1])
    plain = meta.random_effects(y, se, hksj_floor=False)
    floored = meta.random_effects(y, se)
    t = scipy.stats.t.isf(0.025, 3)
    assert plain["hksj_scale"] < 1
    assert plain["ci_high"] - plain["ci_low"] < floored["ci_high"] - floored["ci_low"]
    assert floored["ci_high"] == pytest.approx(floored["mu"] + t * floored["se"])


def test_prediction_interval_uses_t_k_minus_2_and_needs_three_sites():
    y, se = bcg_log_risk_ratios()
    fit = meta.random_effects(y, se)
    half = scipy.stats.t.isf(0.025, len(y) - 2) * math.sqrt(fit["tau2"] + fit["se"] ** 2)
    assert (fit["pi_low"], fit["pi_high"]) == pytest.approx((fit["mu"] - half, fit["mu"] + half))
    two = meta.random_effects(y[:2], se[:2])
    assert two["pi_low"] is None and two["pi_high"] is None


def test_weights_sum_to_one_and_bad_input_is_refused():
    fit = meta.random_effects([0.1, 0.2, 0.4], [0.1, 0.2, 0.3])
    assert sum(fit["weights"]) == pytest.approx(1.0)
    for theta, se in (([0.1], [0.1]), ([0.1, 0.2], [0.1, 0.0]), ([0.1, float("nan")], [0.1, 0.1]), ([0.1, 0.2], [0.1])):
        with pytest.raises(ValueError):
            meta.random_effects(theta, se)
    with pytest.raises(ValueError):
        meta.random_effects([0.1, 0.2], [0.1, 0.1], method="fe")


@pytest.mark.parametrize("events, n", [(1, 10), (30, 100), (295, 2572), (3341, 8171), (99, 100)])
def test_wilson_interval_gives_back_its_n(events, n):
    low, high = stats.wilson_interval(events, n)
    p = events / n
    se, basis = meta.se_from_interval(p, low, high, 0.95, "wilson")
    assert basis == "Wilson interval at effective n"
    assert se == pytest.approx(1 / math.sqrt(n * p * (1 - p)), rel=1e-9)


def test_ipw_interval_gives_back_the_sandwich_variance_on_the_logit_scale():
    rng = np.random.default_rng(SEED)
    persons = 3000
    x = rng.integers(0, 3, persons).astype(float)
    design = np.column_stack([np.ones(persons), x == 1, x == 2]).astype(float)
    ascertained = rng.random(persons) < np.array([0.3, 0.6, 0.9])[x.astype(int)]
    outcome = np.where(ascertained, rng.random(persons) < np.array([0.2, 0.35, 0.5])[x.astype(int)], np.nan)
    model = stats.fit_ascertainment_model(design, ascertained)
    for group in (np.ones(persons, bool), x == 0, x == 2):
        result = stats.ipw_proportion(outcome, model, group=group)
        p = result["estimate"]
        se, basis = meta.se_from_interval(p, result["ci_low"], result["ci_high"], 0.95, "wilson")
        assert basis == "Wilson interval at effective n"
        assert se == pytest.approx(result["se"] / (p * (1 - p)), rel=1e-8)


def test_odds_ratio_and_logit_wald_intervals():
    rng = np.random.default_rng(SEED)
    x = rng.integers(0, 2, 4000).astype(float)
    y = (rng.random(4000) < np.where(x == 1, 0.5, 0.2)).astype(float)
    table = stats.logistic_odds_ratios(y, np.column_stack([np.ones(4000), x]), ["intercept", "x"])
    row = table.iloc[0]
    se, basis = meta.se_from_interval(row["estimate"], row["ci_low"], row["ci_high"], 0.95, "log_wald")
    assert basis == "log-Wald interval" and se == pytest.approx(row["se"], rel=1e-9)
    z = scipy.stats.norm.isf(0.025)
    low, high = meta.expit(meta.logit(0.3) - z * 0.2), meta.expit(meta.logit(0.3) + z * 0.2)
    se, basis = meta.se_from_interval(0.3, low, high, 0.95, "logit_wald")
    assert basis == "logit-Wald interval" and se == pytest.approx(0.2)
    # The same numbers read as Wilson: symmetric on the logit scale too, but another standard error.
    wilson_se, basis = meta.se_from_interval(0.3, low, high, 0.95, "wilson")
    assert basis == "Wilson interval at effective n" and wilson_se != pytest.approx(0.2, rel=1e-3)


def test_a_wilson_interval_is_symmetric_on_the_logit_scale():
    for events, n in ((3, 10), (295, 2572), (90, 100)):
        low, high = stats.wilson_interval(events, n)
        p = events / n
        assert meta.logit(low) + meta.logit(high) == pytest.approx(2 * meta.logit(p), abs=1e-12)


@pytest.mark.parametrize("estimate, low, high, kind, reason", [
    (0.0, 0.0, 0.3, "wilson", "estimate 0 or 1"),
    (1.0, 0.7, 1.0, "wilson", "estimate 0 or 1"),
    (0.3, 0.35, 0.5, "wilson", "does not enclose"),
    (0.3, 0.1, 0.4, "wilson", "not symmetric on the logit scale"),
    (0.3, 0.1, 0.4, "logit_wald", "not symmetric on the logit scale"),
    (None, None, None, "wilson", "no estimate"),
    (2.0, 1.0, 3.0, "log_wald", "not symmetric on the log scale"),
    (2.0, -1.0, 3.0, "log_wald", "not positive"),
    (float("nan"), 0.1, 0.2, "wilson", "no estimate"),
    (0.3, 0.2, 0.4, "bootstrap", "method unknown"),
])
def test_no_standard_error_is_guessed(estimate, low, high, kind, reason):
    se, why = meta.se_from_interval(estimate, low, high, 0.95, kind)
    assert se is None and reason in why
