"""REFERENCE ONLY (used by tests/test_aggregated_estimators.py, never by the pipeline): the
person-level estimators, one array entry per cohort person, that the estimators on covariate
patterns and event cells (pipeline/estimate/stats.py) must equal to 1e-9.

Only what those tests compare is written here: the weight model's fit, the Hajek IPW proportion
with its stacked sandwich, the Aalen-Johansen curve with its influence-function variance, the
weighted logistic regression, the weight distribution and the median's interval, each summed over
persons. The helpers that are not being compared -- ``z_value``, ``as_float``, ``wilson_interval``,
``design_matrix`` and the ``AscertainmentModel`` container (one person a row when its ``count`` is
None) -- are production's own. Why the variance is a stacked sandwich, with its references, is in
pipeline/estimate/stats.py's docstring and docs/estimation.md.

>>> X = np.column_stack([np.ones(6), [0, 0, 0, 1, 1, 1]])
>>> model = fit_ascertainment_model(X, [1, 1, 0, 1, 0, 0])   # p = 2/3 and 1/3: weights 1.5, 1.5, 3
>>> round(ipw_proportion([1, 0, np.nan, 1, np.nan, np.nan], model)["estimate"], 4)
0.75
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Sequence

import numpy as np
import pandas as pd
import scipy.special
import scipy.stats
import statsmodels.api as sm

from pipeline.estimate.stats import AscertainmentModel, as_float, design_matrix, wilson_interval, z_value

__all__ = [
    "AscertainmentModel", "aalen_johansen", "as_float", "complete_case_proportion", "design_matrix",
    "fit_ascertainment_model", "fit_binomial_glm", "ipw_proportion", "logistic_odds_ratios", "median_interval",
    "truncate_weights", "weight_summary", "wilson_interval", "z_value",
]

PERCENTILES = {"p1": 1, "p5": 5, "p25": 25, "p50": 50, "p75": 75, "p95": 95, "p99": 99}


def complete_case_proportion(outcome, include=None, confidence: float = 0.95) -> dict:
    """Events among persons with a known outcome (NaN = unknown), in ``include``; Wilson CI."""
    y = as_float(outcome)
    selected = ~np.isnan(y) & (True if include is None else np.asarray(include, dtype=bool))
    persons, positive = int(selected.sum()), int(y[selected].sum())
    low, high = wilson_interval(positive, persons, confidence)
    share = positive / persons if persons else float("nan")
    return {"estimate": share, "ci_low": low, "ci_high": high, "n": persons, "events": positive}


def weight_summary(weights) -> dict:
    """Positive weights: min, numpy's percentiles of the persons' weights, max, Kish's ESS, persons."""
    w = np.asarray(weights, dtype=float)
    w = w[w > 0]
    if not w.size:
        return {"min": np.nan, **dict.fromkeys(PERCENTILES, np.nan), "max": np.nan, "ess": 0.0, "n": 0}
    quantiles = np.percentile(w, list(PERCENTILES.values()))
    summary = {"min": float(w.min())} | {k: float(q) for k, q in zip(PERCENTILES, quantiles)}
    return summary | {"max": float(w.max()), "ess": float(w.sum() ** 2 / (w * w).sum()), "n": int(w.size)}


def median_interval(values, confidence: float = 0.95) -> dict:
    """numpy's median of the persons' values; CI between the order statistics of binomial(n, 1/2) ranks."""
    v = np.sort(as_float(values))
    v = v[~np.isnan(v)]
    if not v.size:
        return {"estimate": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n": 0}
    rank = max(int(scipy.stats.binom.ppf((1.0 - confidence) / 2.0, v.size, 0.5)), 1)
    return {"estimate": float(np.median(v)), "ci_low": float(v[rank - 1]), "ci_high": float(v[v.size - rank]),
            "n": int(v.size)}


def fit_binomial_glm(X: np.ndarray, y: np.ndarray, var_weights: np.ndarray | None = None):
    """statsmodels' binomial GLM on one row per person: coefficients, convergence, its warnings (deduplicated)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = sm.GLM(np.asarray(y, dtype=float), np.asarray(X, dtype=float), family=sm.families.Binomial(),
                     var_weights=None if var_weights is None else np.asarray(var_weights, dtype=float)).fit(maxiter=100)
    seen = [f"{w.category.__name__}: {str(w.message).splitlines()[0]}" for w in caught]
    return np.asarray(fit.params, dtype=float), bool(getattr(fit, "converged", True)), tuple(dict.fromkeys(seen))


def fit_ascertainment_model(design: np.ndarray, ascertained, names: Sequence[str] = ()) -> AscertainmentModel:
    """P(ascertained | X) fitted on the persons; weight 1/p for the ascertained, 0 otherwise."""
    X = np.asarray(design, dtype=float)
    r = np.nan_to_num(as_float(ascertained), nan=0.0) > 0
    coef, converged, notes = fit_binomial_glm(X, r.astype(float))
    fitted = scipy.special.expit(X @ coef)
    near_edge = int(np.count_nonzero((fitted < 1e-6) | (fitted > 1 - 1e-6)))
    if near_edge:  # production's wording, compared with the estimate stage's warnings
        notes += (f"fitted probability of ascertainment within 1e-6 of 0 or 1 for {near_edge} persons "
                  "(quasi-separation: a covariate pattern is (almost) always or never assessed)",)
    p = np.clip(fitted, 1e-12, 1 - 1e-12)
    fisher = X.T @ (X * (p * (1 - p))[:, None])
    names = tuple(names) or tuple(f"x{i}" for i in range(X.shape[1]))
    return AscertainmentModel(design=X, names=names, ascertained=r, probability=p, weight=np.where(r, 1.0 / p, 0.0),
                              inverse_information=np.linalg.pinv(fisher), converged=converged, fit_warnings=notes)


def truncate_weights(model: AscertainmentModel, low_percentile: float = 1.0, high_percentile: float = 99.0):
    """The assessed persons' weights clipped to numpy's percentiles of their weights."""
    assessed = model.weight[model.ascertained]
    if not assessed.size:
        return model
    bounds = np.percentile(assessed, [low_percentile, high_percentile])
    return dataclasses.replace(model, weight=np.where(model.ascertained, np.clip(model.weight, *bounds), 0.0))


def ipw_proportion(outcome, model: AscertainmentModel, group=None, among=None, confidence: float = 0.95) -> dict:
    """Hajek IPW share of ``outcome`` in ``group`` (and ``among``), summed over persons.

    Variance: the stacked sandwich ``sum_i (psi_i - A_tb H X_i (R_i - p_i))^2 / W^2`` with
    ``psi_i = w_i (y_i - estimate)``; the CI is Wilson's at ``n_eff = p(1-p)/Var`` (Kish's ESS
    when the share is 0 or 1).
    """
    y = np.nan_to_num(as_float(outcome), nan=0.0)
    members = np.ones(len(y), dtype=bool) if group is None else np.asarray(group, dtype=bool)
    if among is not None:
        members = members & (np.nan_to_num(as_float(among), nan=0.0) > 0)
    counted = members & model.ascertained
    w = np.where(counted, model.weight, 0.0)
    spread = weight_summary(w)
    counts = {"n": int(members.sum()), "events": int(y[counted].sum()), "n_ascertained": int(counted.sum()),
              "weights": spread}
    W = w.sum()
    if not W > 0:
        return {"estimate": np.nan, "ci_low": np.nan, "ci_high": np.nan, "se": np.nan, "n_effective": 0.0, **counts}
    share = float((w * y).sum() / W)  # a sum, not a BLAS dot: all events give exactly 1 (Kish n, as production)
    deviation = np.where(counted, y - share, 0.0)
    derivative = (w * (1.0 - model.probability) * deviation) @ model.design
    variance = float(np.sum(((w * deviation - model.correction(derivative)) / W) ** 2))
    n_eff = share * (1 - share) / variance if 0.0 < share < 1.0 and variance > 0 else spread["ess"]
    low, high = wilson_interval(share * n_eff, n_eff, confidence)
    return {"estimate": share, "ci_low": low, "ci_high": high, "se": float(np.sqrt(variance)),
            "n_effective": float(n_eff), **counts}


def _selected(values: np.ndarray, include, model: AscertainmentModel | None, weight=None):
    """Persons with a known value inside ``include`` (ascertained ones with ``model``), and their weights."""
    chosen = ~np.isnan(values) & (True if include is None else np.asarray(include, dtype=bool))
    if model is not None:
        return chosen & model.ascertained, model.weight
    return chosen, np.ones(len(values)) if weight is None else as_float(weight)


def aalen_johansen(time, cause, *, include=None, weight=None, model: AscertainmentModel | None = None, times=None,
                   confidence: float = 0.95) -> pd.DataFrame:
    """Cumulative incidence of cause 1 (cause 2 competing, 0 censored), one row per person.

    Ties: at a time all events leave together, censorings after them. With ``model`` the
    ascertained persons enter with weights 1/p and the variance adds the weight model's
    correction; CI on the log(-log F) scale. Returns time_days, at_risk, events, estimate, se,
    ci_low, ci_high at ``times`` (default: the cause-1 event times).

    >>> aalen_johansen([1, 2, 2, 2, 3, 4], [1, 1, 2, 0, 1, 0])["estimate"].round(4).tolist()
    [0.1667, 0.3333, 0.5833]
    """
    t_all = as_float(time)
    c_all = np.nan_to_num(as_float(cause), nan=0.0).astype(int)
    chosen, w_all = _selected(t_all, include, model, weight)
    chosen &= w_all > 0
    t, c, w = t_all[chosen], c_all[chosen], w_all[chosen]
    columns = ["time_days", "at_risk", "events", "estimate", "se", "ci_low", "ci_high"]
    if not t.size:
        return pd.DataFrame({k: pd.Series(dtype=float) for k in columns})
    # per distinct time: weighted cause-1 and cause-2 events and persons leaving (pandas, not bincount)
    table = pd.DataFrame({"t": t, "e1": w * (c == 1), "e2": w * (c == 2), "out": w, "n1": (c == 1) * 1.0})
    by_time = table.groupby("t", sort=True).sum()
    distinct = by_time.index.to_numpy(dtype=float)
    index = np.searchsorted(distinct, t)
    W = w.sum()
    risk = W - by_time["out"].cumsum().to_numpy() + by_time["out"].to_numpy()
    dl1 = by_time["e1"].to_numpy() / risk
    dl = (by_time["e1"].to_numpy() + by_time["e2"].to_numpy()) / risk
    # A step that takes everyone still at risk has hazard exactly 1 (as production: stats.aalen_johansen_cells),
    # not 1 minus a summation-order residue that the variance would divide by.
    dl = np.where(np.abs(1.0 - dl) <= 1e-12, 1.0, dl)
    s_before = np.concatenate([[1.0], np.cumprod(1.0 - dl)[:-1]])
    F = np.cumsum(s_before * dl1)
    targets = distinct[by_time["e1"].to_numpy() > 0] if times is None else np.asarray(times, dtype=float)
    at = np.searchsorted(distinct, targets, side="right") - 1  # last distinct time <= target
    # influence of person i on F(t), risk share y = Y / W:
    # sum_{v <= t} S(v-) dM1_i(v) / y(v) - [F(t) - F(v)] dM_i(v) / (y(v) (1 - dL(v)))
    y_share = risk / W
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(1.0 - dl > 0, 1.0 / (y_share * (1.0 - dl)), 0.0)
    cum1, cum_g, cum_fg = np.cumsum(s_before * dl1 / y_share), np.cumsum(g * dl), np.cumsum(F * g * dl)
    estimate = np.where(at >= 0, F[np.maximum(at, 0)], 0.0)
    variance = np.zeros(targets.size)
    step = max(1, 4_000_000 // t.size)
    for first in range(0, targets.size, step):
        J = np.maximum(at[first : first + step], 0)
        F_t = F[J][None, :]
        K = np.minimum(index[:, None], J[None, :])
        before = index[:, None] <= J[None, :]
        own1 = before * ((c == 1) * s_before[index] / y_share[index])[:, None] - cum1[K]
        own = before * ((c > 0) * g[index])[:, None] * (F_t - F[index][:, None]) - (F_t * cum_g[K] - cum_fg[K])
        influence = (own1 - own) * (at[first : first + step] >= 0)[None, :]
        psi = w[:, None] * influence / W
        if model is not None:
            derivative = ((w * (1 - model.probability[chosen]))[:, None] * influence).T @ model.design[chosen] / W
            every = np.zeros((chosen.size, psi.shape[1]))
            every[chosen] = psi
            every -= model.correction(derivative).reshape(chosen.size, -1)
            psi = every
        variance[first : first + step] = (psi * psi).sum(axis=0)
    se = np.sqrt(variance)
    z = z_value(confidence)
    inside = (estimate > 0) & (estimate < 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.exp(z * se / np.abs(estimate * np.log(estimate)))
    cumulative_events = by_time["n1"].cumsum().to_numpy()
    return pd.DataFrame({
        "time_days": targets,
        "at_risk": t.size - np.searchsorted(np.sort(t), targets, side="left"),
        "events": np.where(at >= 0, cumulative_events[np.maximum(at, 0)], 0.0).astype(int),
        "estimate": estimate,
        "se": se,
        "ci_low": np.where(inside, estimate ** factor, estimate),
        "ci_high": np.where(inside, estimate ** (1.0 / factor), estimate),
    })


def logistic_odds_ratios(outcome, design: np.ndarray, names: Sequence[str], *, include=None,
                         model: AscertainmentModel | None = None, confidence: float = 0.95) -> pd.DataFrame:
    """Odds ratios of a 0/1 outcome (IPW-weighted with ``model``), Wald CIs from the person-level stacked
    sandwich (HC0; the weight model's correction with ``model``). One row per term except the intercept."""
    y_all = as_float(outcome)
    Z = np.asarray(design, dtype=float)
    chosen, w_all = _selected(y_all, include, model)
    y = np.where(chosen, np.nan_to_num(y_all), 0.0)
    w = np.where(chosen, w_all, 0.0)
    varying = np.flatnonzero(Z[chosen].std(axis=0) > 0)
    if names and names[0] == "intercept":
        varying = np.union1d([0], varying)
    Z, names = Z[:, varying], [names[i] for i in varying]
    coef, _, notes = fit_binomial_glm(Z[chosen], y[chosen], w[chosen])
    for note in notes:
        warnings.warn(f"dose-response model: {note}", RuntimeWarning, stacklevel=2)
    mu = scipy.special.expit(Z @ coef)
    deviation = np.where(chosen, y - mu, 0.0)
    score = (w * deviation)[:, None] * Z
    if model is not None:
        score = score - model.correction((Z * (w * (1 - model.probability) * deviation)[:, None]).T @ model.design)
    influence = score @ np.linalg.pinv(Z.T @ (Z * (w * mu * (1 - mu))[:, None])).T
    se = np.sqrt(np.diag(influence.T @ influence))
    z = z_value(confidence)
    rows = []
    for j, term in enumerate(names):
        if term == "intercept":
            continue
        indicator = set(np.unique(Z[chosen, j])) <= {0.0, 1.0}
        members = chosen & (Z[:, j] == 1) if indicator else chosen
        rows.append({"term": term, "estimate": float(np.exp(coef[j])), "ci_low": float(np.exp(coef[j] - z * se[j])),
                     "ci_high": float(np.exp(coef[j] + z * se[j])), "se": float(se[j]), "n": int(members.sum()),
                     "events": int(y[members].sum())})
    return pd.DataFrame(rows, columns=["term", "estimate", "ci_low", "ci_high", "se", "n", "events"])
