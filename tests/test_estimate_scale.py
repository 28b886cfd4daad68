"""The estimate stage at scale (issue 16): what its memory and time grow with.

- The covariate patterns have no day-level column: persons whose durations differ only inside a
  duration band (and on the same side of the headline split and the anchors' thresholds) share a
  pattern, and every estimate but the dose-response trend (log2 duration) is unchanged.
- The trend model runs on the assessed persons' cells alone: its stacked sandwich in sum form equals
  the person-level influence-function sum over the whole cohort.
- The Aalen-Johansen curve does not depend on the order DuckDB sums the cells in, even at a final step
  that takes everyone still at risk (a hazard of 1 up to rounding).

Random data are seeded; each seed is printed by the test that uses it.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
import scipy.special

from bench.simulate import make_mar_person_table
from pipeline.config import Config
from pipeline.estimate import aggregate, stats
from pipeline.estimate import run as estimate_run
from pipeline.estimate.anchors import MARRIOTT_TYRER, RICKELS

TREND = "logistic_or_ipw_trend"


def _redraw_durations(person: pd.DataFrame, config: Config, seed: int) -> pd.DataFrame:
    """``person`` with every duration redrawn inside its cell of (duration band, headline group, anchors'
    groups): nothing the patterns hold changes, only the day count."""
    rng = np.random.default_rng(seed)
    edges = sorted({*config.estimate.duration_band_lower_days, config.estimate.headline_split_days + 1,
                    MARRIOTT_TYRER.days, RICKELS.days, 1})
    duration = person["duration_days"].to_numpy(dtype=int)
    cell = np.searchsorted(edges, duration, side="right") - 1
    low = np.asarray(edges)[cell]
    high = np.append(edges[1:], 10 * max(edges))[cell]  # exclusive
    redrawn = low + np.floor(rng.random(len(person)) * (high - low)).astype(int)
    out = person.copy()
    out["duration_days"] = redrawn
    return out


@pytest.mark.parametrize("seed", [5, 11])
def test_patterns_hold_no_day_level_column(seed):
    print("seed", seed)
    cfg = Config()
    person, _ = make_mar_person_table(seed=seed, persons=4000)
    redrawn = _redraw_durations(person, cfg, seed + 100)
    assert (redrawn["duration_days"] != person["duration_days"]).mean() > 0.5  # the redraw did move days
    assert "duration_days" not in aggregate.PATTERN_COLUMNS and "duration_days" not in aggregate.WEIGHT_KEY
    before, after = estimate_run.patterns_of_frame(person), estimate_run.patterns_of_frame(redrawn)
    pd.testing.assert_frame_equal(before, after)
    # every estimate but the trend row is the same; the trend sees the new days
    first, _ = estimate_run.estimate_tables(person, cfg)
    second, _ = estimate_run.estimate_tables(redrawn, cfg)
    trend = (first["estimator"] == TREND).to_numpy()
    assert trend.sum() == 1
    pd.testing.assert_frame_equal(first[~trend].reset_index(drop=True), second[~trend].reset_index(drop=True))
    assert first.loc[trend, "estimate"].item() != second.loc[trend, "estimate"].item()


def test_anchor_flags_split_at_the_published_thresholds():
    frame = pd.DataFrame({"duration_days": [None, 1, MARRIOTT_TYRER.days - 1, MARRIOTT_TYRER.days,
                                            RICKELS.days - 1, RICKELS.days]}, dtype="Int64")
    con = duckdb.connect()
    try:
        con.register("frame", frame)
        flags = con.execute("select " + ", ".join(f"{e} as {n}" for n, e in aggregate.anchor_flags().items())
                            + " from frame").df()
    finally:
        con.close()
    assert flags["duration_ge_marriott_tyrer"].tolist() == [False, False, False, True, True, True]
    assert flags["duration_lt_rickels"].tolist() == [False, True, True, True, True, False]
    assert flags["duration_ge_rickels"].tolist() == [False, False, False, False, False, True]


@pytest.mark.parametrize("seed", [2, 8])
def test_trend_sandwich_on_assessed_cells_equals_the_person_level_sum(seed):
    """Person-level: IF_i = B^-1 (psi_i - cross H X_i (R_i - p_i)) over EVERY cohort person (the unassessed
    too, through the weight model's residual), Var = sum IF IF'. Production sees only assessed cells
    (``AscertainmentModel.rows``) and the cohort's residual moment."""
    print("seed", seed)
    rng = np.random.default_rng(seed)
    n = 3000
    X = np.column_stack([np.ones(n), rng.integers(0, 2, n), rng.integers(0, 3, n) == 1, rng.normal(size=n)])
    assessed = rng.random(n) < scipy.special.expit(-0.3 + 0.8 * X[:, 1] - 0.5 * X[:, 2] + 0.4 * X[:, 3])
    model = stats.fit_ascertainment_model(X, assessed, ["intercept", "a", "b", "c"])
    days = rng.integers(1, 400, n).astype(float)
    Z = np.column_stack([np.ones(n), X[:, 1], np.log2(days)])
    y = np.where(assessed, (rng.random(n) < scipy.special.expit(-2 + 0.5 * np.log2(days))).astype(float), np.nan)
    table = stats.logistic_odds_ratios(y, Z, ["intercept", "a", "log2_days"], model=model)
    # the person-level influence functions, written out
    w, p = model.weight, model.probability
    mask = assessed
    yy = np.nan_to_num(y)
    coef = stats.fit_binomial_glm(Z[mask], yy[mask], w[mask])[0]
    np.testing.assert_allclose(np.exp(coef[1:]), table["estimate"].to_numpy(), rtol=1e-12)
    mu = scipy.special.expit(Z @ coef)
    residual = np.where(mask, yy - mu, 0.0)
    psi = (w * residual)[:, None] * Z
    bread = (Z * (w * mu * (1 - mu))[:, None]).T @ Z
    cross = (Z * (w * (1 - p) * residual)[:, None]).T @ X
    correction = (X @ (model.inverse_information @ cross.T)) * (assessed.astype(float) - p)[:, None]
    influence = (psi - correction) @ np.linalg.pinv(bread).T
    se_person = np.sqrt(np.diag(influence.T @ influence))[1:]
    np.testing.assert_allclose(table["se"].to_numpy(), se_person, rtol=1e-9)
    # only the assessed rows, as cells of 1 person: the same numbers
    rows = np.flatnonzero(assessed)
    cells = stats.logistic_odds_ratios(y[rows], Z[rows], ["intercept", "a", "log2_days"],
                                       model=model.rows(rows, np.ones(len(rows))))
    np.testing.assert_allclose(cells["se"].to_numpy(), se_person, rtol=1e-9)
    np.testing.assert_allclose(cells["estimate"].to_numpy(), table["estimate"].to_numpy(), rtol=1e-9)


@pytest.mark.parametrize("seed", [3, 6, 13])
def test_curve_does_not_depend_on_the_order_of_the_cells(seed):
    """A final step that takes everyone still at risk: summed in another order, 1 - hazard is a rounding
    residue of either sign, and dividing by it made the curve's interval vary from run to run."""
    print("seed", seed)
    rng = np.random.default_rng(seed)
    k = 400
    time = np.concatenate([rng.integers(1, 50, k), [60, 60, 60]]).astype(float)
    cause = np.concatenate([rng.integers(0, 3, k), [1, 1, 2]])
    count = rng.integers(1, 5, k + 3).astype(float)
    weight_sum = count * rng.uniform(1.0, 9.0, k + 3) / 3.0
    weight_square = weight_sum * weight_sum / count
    score = rng.normal(size=(k + 3, 3))
    information = np.cov(rng.normal(size=(3, 50))) + np.eye(3)
    correction = stats.WeightCorrection(score, np.linalg.inv(information), information)
    curves = []
    for permutation in range(6):
        order = rng.permutation(k + 3) if permutation else np.arange(k + 3)
        curves.append(stats.aalen_johansen_cells(
            time[order], cause[order], count=count[order], weight_sum=weight_sum[order],
            weight_square=weight_square[order], times=[7, 30, 59, 60, 63],
            correction=stats.WeightCorrection(score[order], correction.inverse_information,
                                              correction.residual_moment)))
    for curve in curves[1:]:
        for column in ("estimate", "se", "ci_low", "ci_high"):
            np.testing.assert_allclose(curve[column].to_numpy(), curves[0][column].to_numpy(), rtol=1e-9,
                                       err_msg=column)
    last = curves[0].iloc[-1]
    assert last["at_risk"] == 0 and np.isfinite(last["se"]) and 0 <= last["ci_low"] <= last["ci_high"] <= 1
