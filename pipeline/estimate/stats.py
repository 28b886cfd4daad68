"""Pure, vectorised estimators: Wilson intervals, inverse probability of
ascertainment weighting (IPW), Aalen-Johansen cumulative incidence and
weighted logistic regression, all with honest confidence intervals.

Every function takes numpy arrays (or pandas columns) with one entry per
row and returns plain numbers, dicts or DataFrames. A row is a covariate
pattern: ``count`` (frequency weights) says how many cohort persons share it
(default 1 = one row per person). Persons of one pattern contribute identical
terms to every estimating equation and influence function, so each sum over
persons is a sum over patterns times ``count`` -- the results equal the
person-level ones (tests/test_aggregated_estimators.py checks 1e-9 on the demo
against the frozen person-level reference). Nothing here reads the warehouse;
``pipeline.estimate.aggregate`` builds the patterns and ``pipeline.estimate.run``
the tables.

Variance of IPW estimators (why a "stacked sandwich"): the weights 1/p are
estimated by a logistic model, so each estimate solves two sets of
estimating equations at once -- the weight model's score
``X_i (R_i - p_i)`` and the estimate's own equation. The influence function
of the estimate (M-estimation, Stefanski & Boos 2002; Lunceford & Davidian
2004) is

    IF_i = A_tt^-1 [ psi_i - A_tb H X_i (R_i - p_i) ]

with ``A_tt`` the estimate's bread, ``A_tb`` the derivative of its equation
with respect to the weight-model coefficients and ``H`` the inverse Fisher
information of the weight model. ``Var = sum_i IF_i IF_i'`` (HC0). One fit of
the weight model serves every group: the same formula with ``psi_i = 0``
outside the group.

>>> import numpy as np
>>> low, high = wilson_interval(3, 10)
>>> round(float(low), 4), round(float(high), 4)
(0.1078, 0.6032)
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.special

# scipy.stats and statsmodels are imported where they are used (the binomial quantile of
# median_interval; the GLM fallback of fit_binomial_glm): together they are ~0.8 s of every
# stage's start-up, and most runs never reach them.


def z_value(confidence: float = 0.95) -> float:
    """Two-sided normal quantile.

    >>> round(z_value(0.95), 4)
    1.96
    """
    return float(scipy.special.ndtri(0.5 + confidence / 2.0))  # the standard normal quantile (norm.ppf)


def as_float(values: Iterable) -> np.ndarray:
    """A column (bool, nullable bool, int, float) as float64 with NaN for missing.

    >>> as_float(pd.array([True, None, False], dtype="boolean")).tolist()
    [1.0, nan, 0.0]
    """
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    return series.astype("Float64").to_numpy(dtype="float64", na_value=np.nan)


def frequencies(count, n: int) -> np.ndarray:
    """The frequency weights as float64 (ones when ``count`` is None)."""
    if count is None:
        return np.ones(n)
    c = np.asarray(count, dtype=float)
    if c.shape != (n,):
        raise ValueError(f"count has shape {c.shape}, expected ({n},)")
    return c


def weighted_percentile(values, count, q) -> np.ndarray:
    """``np.percentile(np.repeat(values, count), q)`` (method "linear") without repeating.

    The person-level array is sorted; position ``h = (N - 1) q / 100`` and the
    result interpolates between the order statistics at ``floor(h)`` and
    ``floor(h) + 1`` exactly as numpy does (its ``_lerp``). The order statistic
    of rank ``k`` is the value whose cumulative count first exceeds ``k``.

    >>> v, c = np.array([4.0, 1.0, 2.0]), np.array([1, 2, 1])
    >>> weighted_percentile(v, c, [1, 50, 99]).tolist() == np.percentile([1, 1, 2, 4.0], [1, 50, 99]).tolist()
    True
    """
    v = np.asarray(values, dtype=float)
    c = np.asarray(count, dtype=float)
    order = np.argsort(v, kind="stable")
    v, c = v[order], c[order]
    cumulative = np.cumsum(c)
    total = cumulative[-1]
    h = (total - 1) * (np.asarray(q, dtype=float) / 100.0)
    below = np.floor(h)
    above = np.minimum(below + 1, total - 1)
    gamma = h - below
    a = v[np.searchsorted(cumulative, below, side="right")]
    b = v[np.searchsorted(cumulative, above, side="right")]
    difference = b - a
    return np.where(gamma >= 0.5, b - difference * (1 - gamma), a + difference * gamma)


# --------------------------------------------------------------------------- proportions


def wilson_interval(events, n, confidence: float = 0.95):
    """Wilson score interval for ``events`` out of ``n`` (scalars or arrays).

    Closed form (Wilson 1927): centre ``(p + z^2/2n) / (1 + z^2/n)``, half-width
    ``z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n)``. ``n`` may be fractional (an
    effective sample size). ``n = 0`` gives NaN.

    >>> low, high = wilson_interval([0, 10], [10, 10])
    >>> low.round(4).tolist(), high.round(4).tolist()
    ([0.0, 0.7225], [0.2775, 1.0])
    >>> wilson_interval(0, 0)
    (nan, nan)
    """
    events_arr = np.asarray(events, dtype=float)
    n_arr = np.asarray(n, dtype=float)
    z = z_value(confidence)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = events_arr / n_arr
        denominator = 1.0 + z * z / n_arr
        centre = (p + z * z / (2.0 * n_arr)) / denominator
        half = z * np.sqrt(p * (1.0 - p) / n_arr + z * z / (4.0 * n_arr * n_arr)) / denominator
        low = np.clip(centre - half, 0.0, 1.0)
        high = np.clip(centre + half, 0.0, 1.0)
        low = np.where(events_arr <= 0, 0.0, low)  # exact ends, free of rounding
        high = np.where(events_arr >= n_arr, 1.0, high)
    low = np.where(n_arr > 0, low, np.nan)
    high = np.where(n_arr > 0, high, np.nan)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def complete_case_proportion(outcome, include=None, confidence: float = 0.95, count=None) -> dict:
    """Share of ``outcome`` among persons with a known outcome (NaN = unknown), Wilson CI.

    ``include`` restricts to a group. ``n`` = persons with a known outcome,
    ``events`` = those with the outcome.

    >>> result = complete_case_proportion([1, 0, 0, np.nan, 1], include=[True, True, True, True, False])
    >>> {k: round(v, 4) for k, v in result.items()}
    {'estimate': 0.3333, 'ci_low': 0.0615, 'ci_high': 0.7923, 'n': 3, 'events': 1}
    """
    y = as_float(outcome)
    c = frequencies(count, len(y))
    known = ~np.isnan(y)
    if include is not None:
        known &= np.asarray(include, dtype=bool)
    n = int(round(c[known].sum()))
    events = int(round(float(np.nansum(c[known] * y[known]))))
    low, high = wilson_interval(events, n, confidence)
    return {"estimate": events / n if n else float("nan"), "ci_low": low, "ci_high": high, "n": n, "events": events}


def weight_summary(weights, count=None) -> dict:
    """Distribution of positive weights: min, percentiles 1/5/25/50/75/95/99, max and
    Kish's effective sample size ``(sum w)^2 / sum w^2``.

    >>> {k: round(v, 4) for k, v in weight_summary([1.0, 1.0, 2.0, 4.0, 0.0]).items()}
    {'min': 1.0, 'p1': 1.0, 'p5': 1.0, 'p25': 1.0, 'p50': 1.5, 'p75': 2.5, 'p95': 3.7, 'p99': 3.94, 'max': 4.0, 'ess': 2.9091, 'n': 4}
    """
    w = np.asarray(weights, dtype=float)
    c = frequencies(count, len(w))
    positive = (w > 0) & (c > 0)
    w, c = w[positive], c[positive]
    names = ("p1", "p5", "p25", "p50", "p75", "p95", "p99")
    if not len(w):
        return {"min": np.nan, **{k: np.nan for k in names}, "max": np.nan, "ess": 0.0, "n": 0}
    values = weighted_percentile(w, c, [1, 5, 25, 50, 75, 95, 99])
    return {
        "min": float(w.min()),
        **{k: float(v) for k, v in zip(names, values)},
        "max": float(w.max()),
        "ess": float((c * w).sum() ** 2 / (c * np.square(w)).sum()),
        "n": int(round(c.sum())),
    }


def median_interval(values, confidence: float = 0.95, count=None) -> dict:
    """Median with a distribution-free order-statistic CI (binomial(n, 1/2) ranks).

    >>> median_interval([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
    {'estimate': 6.0, 'ci_low': 2.0, 'ci_high': 10.0, 'n': 11}
    """
    v = as_float(values)
    c = frequencies(count, len(v))
    present = ~np.isnan(v) & (c > 0)
    v, c = v[present], c[present]
    n = int(round(c.sum()))
    if not n:
        return {"estimate": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n": 0}
    alpha = 1.0 - confidence
    # ranks j, k with P(B < j) <= alpha/2, B ~ Binomial(n, 1/2): [x_(j), x_(n-j+1)]
    import scipy.stats  # here, not at the top: see the imports

    j = int(scipy.stats.binom.ppf(alpha / 2.0, n, 0.5))
    j = max(j, 1)
    order = np.argsort(v, kind="stable")
    v, cumulative = v[order], np.cumsum(c[order])

    def rank(k: int) -> float:  # the order statistic x_(k+1), 0-based k
        return float(v[np.searchsorted(cumulative, k, side="right")])

    middle = rank((n - 1) // 2) if n % 2 else (rank(n // 2 - 1) + rank(n // 2)) / 2.0
    return {"estimate": middle, "ci_low": rank(j - 1), "ci_high": rank(n - j), "n": n}


# --------------------------------------------------------------------------- design matrices


def design_matrix(
    frame: pd.DataFrame,
    categorical: Sequence[str] = (),
    binary: Sequence[str] = (),
    continuous: Sequence[str] = (),
    references: Mapping[str, str] | None = None,
    drop_collinear: bool = True,
    count=None,
) -> tuple[np.ndarray, list[str]]:
    """Intercept + treatment-coded dummies + 0/1 flags + centred numbers.

    Categorical NULLs become the level ``"unknown"``; flag NULLs count as 0
    (not flagged). The reference level is ``references[column]`` when given,
    else the most frequent level. Columns that are constant or linear
    combinations of earlier ones are dropped (pivoted QR), so the model is
    always identifiable. With ``count`` (persons per row) the most frequent
    level, the centring mean and the collinearity check are those of the
    persons (the QR runs on rows scaled by ``sqrt(count)``, whose Gram matrix is
    the persons' ``X'X``).

    >>> frame = pd.DataFrame({"sex": ["F", "M", "F", None], "flag": [True, False, None, True]})
    >>> X, names = design_matrix(frame, categorical=["sex"], binary=["flag"])
    >>> names
    ['intercept', 'sex[M]', 'sex[unknown]', 'flag']
    >>> X.tolist()
    [[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 1.0, 1.0]]
    """
    references = dict(references or {})
    n = len(frame)
    c = frequencies(count, n)
    columns: list[np.ndarray] = [np.ones(n)]
    names = ["intercept"]
    for column in categorical:
        codes, levels = pd.factorize(frame[column].astype("str").fillna("unknown"), sort=True)
        counts = np.bincount(codes, weights=c, minlength=len(levels))
        reference = references.get(column)
        if reference is None or reference not in set(levels):
            reference = levels[int(np.argmax(counts))]
        for position, level in enumerate(levels):
            if level != reference:
                columns.append((codes == position).astype(float))
                names.append(f"{column}[{level}]")
    for column in binary:
        columns.append(np.nan_to_num(as_float(frame[column]), nan=0.0))
        names.append(column)
    for column in continuous:
        x = as_float(frame[column])
        seen = ~np.isnan(x)
        columns.append(x - (c[seen] * x[seen]).sum() / c[seen].sum())
        names.append(column)
    X = np.column_stack(columns)
    if drop_collinear and X.shape[1] > 1:
        _, r, pivot = scipy.linalg.qr(X * np.sqrt(c)[:, None], mode="economic", pivoting=True)
        diag = np.abs(np.diag(r))
        rank = int((diag > diag[0] * 1e-9).sum())
        keep = np.sort(pivot[:rank])
        X = X[:, keep]
        names = [names[i] for i in keep]
    return X, names


# --------------------------------------------------------------------------- weight model


@dataclass(frozen=True)
class AscertainmentModel:
    """A fitted logistic model of ascertainment on covariates known for everyone.

    ``weight`` is ``1/p`` for ascertained persons and 0 otherwise.
    ``inverse_information`` is ``(sum_i X_i X_i' p_i (1 - p_i))^-1``.
    Rows are covariate patterns with ``count`` persons each (None = one person a row).
    """

    design: np.ndarray
    names: tuple[str, ...]
    ascertained: np.ndarray
    probability: np.ndarray
    weight: np.ndarray
    inverse_information: np.ndarray
    converged: bool
    fit_warnings: tuple[str, ...] = ()
    count: np.ndarray | None = None

    @property
    def frequency(self) -> np.ndarray:
        """Persons per row (float)."""
        return frequencies(self.count, len(self.probability))

    @property
    def n_ascertained(self) -> int:
        return int(round(self.frequency[self.ascertained].sum()))

    def residual_moment(self) -> np.ndarray:
        """``sum_i X_i X_i' (R_i - p_i)^2`` over the persons (the meat of the correction terms);
        computed once per model (every stacked variance of the stage asks for it)."""
        cached = self.__dict__.get("_residual_moment")
        if cached is None:
            residual = self.ascertained.astype(float) - self.probability
            cached = (self.design * (self.frequency * residual * residual)[:, None]).T @ self.design
            object.__setattr__(self, "_residual_moment", cached)
        return cached

    def rows(self, index, count) -> "AscertainmentModel":
        """The model at rows ``index`` (with ``count`` persons each): design, probability, assessment
        and weight of those rows, the same ``H`` and the whole cohort's residual moment -- what the
        stacked variance of an estimator over those rows alone needs (:func:`logistic_odds_ratios`).
        """
        index = np.asarray(index, dtype=np.int64)
        view = dataclasses.replace(
            self, design=self.design[index], ascertained=self.ascertained[index],
            probability=self.probability[index], weight=self.weight[index],
            count=np.asarray(count, dtype=float))
        object.__setattr__(view, "_residual_moment", self.residual_moment())
        return view

    def correction(self, cross: np.ndarray) -> np.ndarray:
        """Per-row (per-person) term ``A_tb H X_i (R_i - p_i)`` for one or more estimates.

        ``cross`` has shape (k,) or (q, k); the result (n,) or (n, q).
        """
        residual = self.ascertained.astype(float) - self.probability
        projected = self.design @ (self.inverse_information @ np.atleast_2d(cross).T)
        out = projected * residual[:, None]
        return out[:, 0] if np.ndim(cross) == 1 else out


def _irls_logit(X: np.ndarray, y: np.ndarray, weight: np.ndarray, max_iterations: int = 100,
                tolerance: float = 1e-8) -> np.ndarray | None:
    """Logit coefficients by statsmodels' own IRLS iterations (``GLM.fit``: start at mu = (y + 1/2) / 2,
    stop when the deviance changes by at most ``tolerance``), each weighted least-squares step
    solved by the k x k normal equations instead of a least-squares solve over every row --
    the same iterates, so the same coefficients (to rounding). ``weight`` = frequency x variance
    weight per row. None when the fit does not settle cleanly (no convergence, a singular or
    ill-conditioned information matrix, floating-point trouble, a fitted probability within
    1e-6 of 0 or 1): the caller then runs statsmodels itself, whose warnings it reports.

    >>> X = np.column_stack([np.ones(6), [0, 0, 0, 1, 1, 1]])
    >>> np.round(_irls_logit(X, np.array([0, 1, 1, 0, 0, 1.0]), np.ones(6)), 3).tolist()
    [0.693, -1.386]
    >>> _irls_logit(X, np.array([0, 1, 1, 1, 1, 1.0]), np.ones(6)) is None   # separated
    True
    """
    used = weight > 0  # rows without weight add nothing to either fit
    X, y, weight = X[used], y[used], weight[used]
    if not len(y):
        return None

    def deviance(eta: np.ndarray) -> float:
        return float(-2.0 * (weight * (y * eta - np.logaddexp(0.0, eta))).sum())

    try:
        with np.errstate(all="raise"), warnings.catch_warnings():
            warnings.simplefilter("error")
            mu = (y + 0.5) / 2.0
            eta = np.log(mu / (1.0 - mu))
            previous = float(-2.0 * (weight * (y * np.log(mu) + (1.0 - y) * np.log(1.0 - mu))).sum())
            for _ in range(max_iterations):
                variance = mu * (1.0 - mu)
                working = weight * variance
                response = eta + (y - mu) / variance
                information = (X * working[:, None]).T @ X
                beta = scipy.linalg.solve(information, X.T @ (working * response), assume_a="pos")
                eta = X @ beta
                mu = scipy.special.expit(eta)
                current = deviance(eta)
                if abs(current - previous) <= tolerance:
                    if np.any((mu < 1e-6) | (mu > 1.0 - 1e-6)):
                        return None
                    return beta
                previous = current
    except (ArithmeticError, np.linalg.LinAlgError, scipy.linalg.LinAlgError, Warning):
        return None
    return None


def fit_binomial_glm(
    X: np.ndarray, y: np.ndarray, var_weights: np.ndarray | None = None, count=None
) -> tuple[np.ndarray, bool, tuple[str, ...]]:
    """Coefficients, convergence and the fit's warnings of a binomial GLM, fitted on distinct rows.

    Persons sharing a covariate pattern, outcome and weight contribute
    identical score terms, so fitting the distinct rows with their counts as
    frequency weights gives the same maximum-likelihood coefficients as the
    person-level fit -- with a design of a few thousand rows instead of one row
    per person (the person-level design is what used the memory at scale).
    Warnings (e.g. perfect separation) are not silenced: they are returned,
    deduplicated, for the caller to log and show. A regular problem is solved
    by statsmodels' IRLS iterations on the normal equations (``_irls_logit``); anything else
    (separation, no convergence) by statsmodels' IRLS as before.

    >>> X = np.column_stack([np.ones(6), [0, 0, 0, 1, 1, 1]])
    >>> coef, converged, notes = fit_binomial_glm(X, np.array([0, 1, 1, 0, 0, 1.0]))
    >>> np.round(coef, 3).tolist(), converged, notes
    ([0.693, -1.386], True, ())
    """
    w = np.ones(len(y)) if var_weights is None else np.asarray(var_weights, dtype=float)
    stacked = np.ascontiguousarray(np.column_stack([X, y, w]), dtype=float)
    # Hash the rows (each row's bytes as one value): pandas' factorize is a hash
    # table, an order of magnitude faster than np.unique's sort over rows.
    codes, _ = pd.factorize(stacked.view(np.dtype((np.void, 8 * stacked.shape[1]))).ravel())
    counts = np.bincount(codes, weights=frequencies(count, len(y)))
    first = np.zeros(len(counts), dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes))[::-1]
    distinct = stacked[first]
    coef = _irls_logit(distinct[:, :-2], distinct[:, -2], counts * distinct[:, -1])
    if coef is not None:
        return coef, True, ()
    import statsmodels.api as sm  # the fallback only: see the imports

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = sm.GLM(
            distinct[:, -2], distinct[:, :-2], family=sm.families.Binomial(),
            freq_weights=counts.astype(float), var_weights=distinct[:, -1],
        ).fit(maxiter=100)
    notes = tuple(dict.fromkeys(f"{w.category.__name__}: {str(w.message).splitlines()[0]}" for w in caught))
    return np.asarray(fit.params, dtype=float), bool(getattr(fit, "converged", True)), notes


def fit_ascertainment_model(design: np.ndarray, ascertained, names: Sequence[str] = (), count=None) -> AscertainmentModel:
    """Fit ``P(ascertained | X)`` by a binomial GLM (statsmodels, IRLS) on the whole cohort.

    >>> rng = np.random.default_rng(1)
    >>> x = rng.integers(0, 2, 2000).astype(float)
    >>> r = rng.random(2000) < np.where(x == 1, 0.8, 0.4)
    >>> model = fit_ascertainment_model(np.column_stack([np.ones(2000), x]), r)
    >>> [round(float(model.probability[x == v][0]), 2) for v in (0, 1)]
    [0.41, 0.8]
    >>> bool(np.allclose(model.weight[r], 1 / model.probability[r]))
    True
    """
    X = np.asarray(design, dtype=float)
    r = np.nan_to_num(as_float(ascertained), nan=0.0) > 0
    c = frequencies(count, len(r))
    coef, converged, notes = fit_binomial_glm(X, r.astype(float), count=c)
    raw = scipy.special.expit(X @ coef)
    extreme = int(round(c[(raw < 1e-6) | (raw > 1 - 1e-6)].sum()))
    if extreme:
        # quasi-separation: a covariate pattern (almost) always or never ascertained
        notes = notes + (f"fitted probability of ascertainment within 1e-6 of 0 or 1 for {extreme} persons "
                         "(quasi-separation: a covariate pattern is (almost) always or never assessed)",)
    p = np.clip(raw, 1e-12, 1 - 1e-12)
    information = (X * (c * p * (1 - p))[:, None]).T @ X
    weight = np.where(r, 1.0 / p, 0.0)
    return AscertainmentModel(
        design=X,
        names=tuple(names) or tuple(f"x{i}" for i in range(X.shape[1])),
        ascertained=r,
        probability=p,
        weight=weight,
        inverse_information=np.linalg.pinv(information),
        converged=converged,
        fit_warnings=notes,
        count=None if count is None else c,
    )


def truncate_weights(model: AscertainmentModel, low_percentile: float = 1.0, high_percentile: float = 99.0) -> AscertainmentModel:
    """The model with the assessed persons' weights clipped to two percentiles of their distribution.

    A sensitivity analysis (Cole & Hernan 2008): a few extreme weights can drive
    an IPW estimate. The variance keeps the stacked formula with the clipped
    weights (an approximation: clipping is not the weight model's score).

    >>> X = np.column_stack([np.ones(6), [0, 0, 0, 1, 1, 1]])
    >>> model = fit_ascertainment_model(X, [1, 1, 0, 1, 0, 0])   # weights 1.5, 1.5, 3
    >>> truncate_weights(model, 0, 50).weight.round(2).tolist()
    [1.5, 1.5, 0.0, 1.5, 0.0, 0.0]
    """
    assessed = model.weight[model.ascertained]
    frequency = model.frequency[model.ascertained]
    if not frequency.sum() > 0:
        return model
    low, high = weighted_percentile(assessed, frequency, [low_percentile, high_percentile])
    clipped = np.where(model.ascertained, np.clip(model.weight, low, high), 0.0)
    return dataclasses.replace(model, weight=clipped)


# --------------------------------------------------------------------------- IPW proportion


def ipw_proportion(
    outcome,
    model: AscertainmentModel,
    group=None,
    among=None,
    confidence: float = 0.95,
) -> dict:
    """Hajek (weight-normalised) IPW proportion of ``outcome`` in ``group``.

    ``outcome`` is 0/1 for ascertained persons (NaN elsewhere is fine);
    ``among`` optionally restricts the denominator further (e.g. dependent
    persons only). The CI is a Wilson interval at the effective sample size
    ``n_eff = p(1-p) / Var`` where Var is the stacked sandwich variance that
    accounts for the estimated weights. When the estimate is 0 or 1
    the Kish effective sample size of the weights is used instead.

    Returns estimate, ci_low, ci_high, se, n (persons in the group [and
    ``among``]), events (observed, unweighted, among ascertained),
    n_ascertained, n_effective and the weight distribution.

    >>> X = np.column_stack([np.ones(6), [0, 0, 0, 1, 1, 1]])
    >>> model = fit_ascertainment_model(X, [1, 1, 0, 1, 0, 0])   # p = 2/3 and 1/3
    >>> result = ipw_proportion([1, 0, np.nan, 1, np.nan, np.nan], model)
    >>> round(result["estimate"], 4)   # (1.5 * 1 + 1.5 * 0 + 3 * 1) / (1.5 + 1.5 + 3)
    0.75
    >>> result["n"], result["events"], result["n_ascertained"]
    (6, 2, 3)
    """
    n_all = len(model.probability)
    c = model.frequency
    y = np.nan_to_num(as_float(outcome), nan=0.0)
    in_group = np.ones(n_all, dtype=bool) if group is None else np.asarray(group, dtype=bool)
    if among is not None:
        in_group = in_group & (np.nan_to_num(as_float(among), nan=0.0) > 0)
    included = in_group & model.ascertained
    w = np.where(included, model.weight, 0.0)
    total = (c * w).sum()
    summary = weight_summary(w, count=c)
    base = {
        "n": int(round(c[in_group].sum())),
        "events": int(round((c * y)[included].sum())),
        "n_ascertained": int(round(c[included].sum())),
        "weights": summary,
    }
    if total <= 0:
        return {"estimate": np.nan, "ci_low": np.nan, "ci_high": np.nan, "se": np.nan, "n_effective": 0.0, **base}
    estimate = float((c * w * y).sum() / total)
    residual = np.where(included, y - estimate, 0.0)
    psi = w * residual
    cross = (c * w * (1 - model.probability) * residual) @ model.design
    influence = (psi - model.correction(cross)) / total
    variance = float((c * np.square(influence)).sum())
    return {**_wilson_effective(estimate, variance, summary["ess"], confidence), **base}


def ipw_proportion_from_sums(sums: Mapping[str, float], model: AscertainmentModel, confidence: float = 0.95) -> dict:
    """:func:`ipw_proportion` of a group from its sums over persons, without rows.

    ``sums``: n (persons in the group), n_assessed, events, w (sum of weights of the assessed), w2
    (of squared weights), wy, w2yy, and the vectors a = sum w (1 - p) X and b = sum w (1 - p) y X over
    the assessed. With est = wy / w and cross = b - est a, the stacked variance
    ``sum_i (psi_i - c_i)^2 / W^2`` expands to
    ``[sum w^2 (y - est)^2 - 2 cross H cross' + cross H M H cross'] / W^2`` (M the model's
    residual moment over the cohort), as for the curves. The fallback effective n is Kish's
    ``w^2 / w2``. Returns what ``ipw_proportion`` returns except the weight distribution.

    >>> X = np.column_stack([np.ones(6), [0, 0, 0, 1, 1, 1]])
    >>> model = fit_ascertainment_model(X, [1, 1, 0, 1, 0, 0])
    >>> y = np.array([1, 0, 0, 1, 0, 0.0]); w = model.weight; s = (w * (1 - model.probability))[:, None] * X
    >>> sums = {"n": 6, "n_assessed": 3, "events": 2, "w": w.sum(), "w2": (w * w).sum(), "wy": (w * y).sum(),
    ...         "w2yy": (w * w * y * y).sum(), "a": s.sum(axis=0), "b": (y[:, None] * s).sum(axis=0)}
    >>> rows = ipw_proportion([1, 0, np.nan, 1, np.nan, np.nan], model)
    >>> bool(np.isclose(ipw_proportion_from_sums(sums, model)["se"], rows["se"]))
    True
    """
    base = {"n": int(round(sums["n"])), "events": int(round(sums["events"])),
            "n_ascertained": int(round(sums["n_assessed"]))}
    total = float(sums["w"])
    if total <= 0:
        return {"estimate": np.nan, "ci_low": np.nan, "ci_high": np.nan, "se": np.nan, "n_effective": 0.0, **base}
    estimate = float(sums["wy"]) / total
    # sum w^2 (y - est)^2 with y in {0, 1}: w2yy - 2 est w2y + est^2 w2, and w2y = w2yy for 0/1 outcomes
    squares = float(sums["w2yy"]) * (1.0 - 2.0 * estimate) + estimate * estimate * float(sums["w2"])
    cross = np.asarray(sums["b"], dtype=float) - estimate * np.asarray(sums["a"], dtype=float)
    H = model.inverse_information
    variance = (squares - 2.0 * float(cross @ H @ cross) + float(cross @ H @ model.residual_moment() @ H @ cross)) / (total * total)
    variance = max(variance, 0.0)
    ess = total * total / float(sums["w2"]) if sums["w2"] > 0 else 0.0
    return {**_wilson_effective(estimate, variance, ess, confidence), **base}


def _wilson_effective(estimate: float, variance: float, fallback_n: float, confidence: float) -> dict:
    if 0.0 < estimate < 1.0 and variance > 0:
        n_effective = estimate * (1 - estimate) / variance
    else:
        n_effective = fallback_n
    low, high = wilson_interval(estimate * n_effective, n_effective, confidence)
    return {
        "estimate": estimate,
        "ci_low": low,
        "ci_high": high,
        "se": float(np.sqrt(variance)),
        "n_effective": float(n_effective),
    }


# --------------------------------------------------------------------------- Aalen-Johansen


def _rows_and_weights(values: np.ndarray, frequency: np.ndarray, include, model: AscertainmentModel | None,
                      weight=None) -> tuple[np.ndarray, np.ndarray]:
    """The rows an estimator uses and their weights, as ``aalen_johansen`` and ``logistic_odds_ratios``
    both need them: a known value, persons in the row, inside ``include``; with ``model`` only
    ascertained persons, weighted by ``model.weight``; else by ``weight`` (default 1).

    >>> mask, w = _rows_and_weights(np.array([1.0, np.nan, 0.0, 1.0]), np.ones(4), [True, True, True, False], None)
    >>> mask.tolist(), w.tolist()
    ([True, False, True, False], [1.0, 1.0, 1.0, 1.0])
    """
    mask = ~np.isnan(values) & (frequency > 0)
    if include is not None:
        mask &= np.asarray(include, dtype=bool)
    if model is not None:
        return mask & model.ascertained, model.weight
    return mask, (np.ones(len(values)) if weight is None else as_float(weight))


def aalen_johansen(time, cause, *, include=None, weight=None, model: AscertainmentModel | None = None, count=None,
                   **curve) -> pd.DataFrame:
    """Cumulative incidence of cause 1 with cause 2 competing (Aalen-Johansen).

    ``cause``: 0 censored, 1 event of interest, 2 competing event (death).
    Ties are handled exactly: at each distinct time all cause-1 and cause-2
    events leave together (hazards d1/Y and d2/Y) and censorings at that time
    are still in the risk set Y (censored after events). Weights enter the
    counts d1, d2 and Y. With ``model``, weights are ``model.weight`` and only
    ascertained persons enter; the variance then also accounts for estimating
    the weights. Rows may be patterns of ``count`` persons (with ``model``: the
    model's counts). This wrapper sums the rows into the sufficient statistics
    of :func:`aalen_johansen_cells`, which does the work; ``curve`` (``times``,
    ``confidence``) goes to it as it is.

    Variance: delta-method / influence-function (Greenwood-type) variance,
    exact for tied discrete times; without competing events it equals
    Greenwood's formula. CI on the log(-log F) scale,
    ``F ** exp(+-z se / (F |log F|))``, which stays inside (0, 1).

    ``times``: days at which to report the curve (right-continuous step
    function); default the distinct event times. Returns time_days, at_risk
    (unweighted persons with time >= t), events (unweighted cumulative cause-1
    events <= t), estimate, se, ci_low, ci_high.

    Hand example (no weights): times 1, 2, 2, 2, 3, 4 with causes 1, 1, 2, 0,
    1, 0. At t=1: Y=6, d1=1 -> F = 1/6, S = 5/6. At t=2: Y=5, d1=1, d2=1 ->
    F += 5/6 * 1/5 = 1/6 -> 1/3; S = 5/6 * 3/5 = 1/2. At t=3: Y=2, d1=1 ->
    F += 1/2 * 1/2 -> 7/12.

    >>> curve = aalen_johansen([1, 2, 2, 2, 3, 4], [1, 1, 2, 0, 1, 0])
    >>> curve["estimate"].round(4).tolist(), curve["time_days"].tolist()
    ([0.1667, 0.3333, 0.5833], [1.0, 2.0, 3.0])
    """
    t_all = as_float(time)
    c_all = np.nan_to_num(as_float(cause), nan=0.0).astype(int)
    n_all = len(t_all)
    frequency = model.frequency if model is not None else frequencies(count, n_all)
    mask, w_all = _rows_and_weights(t_all, frequency, include, model, weight)
    mask &= w_all > 0
    f, w = frequency[mask], w_all[mask]
    correction = None
    if model is not None:
        score = (f * w * (1 - model.probability[mask]))[:, None] * model.design[mask]
        correction = WeightCorrection(score, model.inverse_information, model.residual_moment())
    return aalen_johansen_cells(t_all[mask], c_all[mask], count=f, weight_sum=f * w, weight_square=f * w * w,
                                correction=correction, **curve)


@dataclass(frozen=True)
class WeightCorrection:
    """What the stacked variance of a curve needs from the weight model, summed over persons.

    ``score``: one row per cell, ``sum_i w_i (1 - p_i) X_i`` over the cell's
    persons; ``inverse_information``: the weight model's ``H``;
    ``residual_moment``: ``sum_i X_i X_i' (R_i - p_i)^2`` over the whole cohort.
    """

    score: np.ndarray
    inverse_information: np.ndarray
    residual_moment: np.ndarray


def aalen_johansen_cells(
    time,
    cause,
    *,
    count,
    weight_sum=None,
    weight_square=None,
    correction: WeightCorrection | None = None,
    times=None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Aalen-Johansen curve from an event table: one row per cell of persons with the same time and cause.

    ``count`` persons per cell, ``weight_sum`` the sum of their weights
    (default ``count``: unweighted), ``weight_square`` the sum of their squared
    weights (default ``weight_sum**2 / count``). A person's influence on the
    curve depends only on their (time, cause), so the variance
    ``sum_i (psi_i - c_i)^2`` with ``psi_i = w_i IF(t_i, cause_i) / W`` and the
    weight-model correction ``c_i = X_i H cross' (R_i - p_i)`` expands into cell
    sums: ``sum_cells wsq IF^2 / W^2 - 2 cross H cross' + cross H M H cross'``
    with ``cross = sum_cells IF score / W`` and ``M`` the residual moment.

    >>> curve = aalen_johansen_cells([1, 2, 2, 2, 3, 4], [1, 1, 2, 0, 1, 0], count=[1, 1, 1, 1, 1, 1])
    >>> curve["estimate"].round(4).tolist()
    [0.1667, 0.3333, 0.5833]
    >>> cells = aalen_johansen_cells([1, 2, 2, 3, 4], [1, 1, 2, 1, 0], count=[1, 1, 1, 1, 2])
    >>> cells["at_risk"].tolist(), cells["estimate"].round(4).tolist()
    ([6, 5, 3], [0.1667, 0.3333, 0.5])
    """
    t = np.asarray(time, dtype=float)
    c = np.asarray(cause, dtype=int)
    n = np.asarray(count, dtype=float)
    w = n.copy() if weight_sum is None else np.asarray(weight_sum, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        wsq = np.where(n > 0, w * w / n, 0.0) if weight_square is None else np.asarray(weight_square, dtype=float)
    keep = ~np.isnan(t) & (n > 0) & (w > 0)
    t, c, n, w, wsq = t[keep], c[keep], n[keep], w[keep], wsq[keep]
    score = None if correction is None else np.asarray(correction.score, dtype=float)[keep]
    columns = ["time_days", "at_risk", "events", "estimate", "se", "ci_low", "ci_high"]
    if not len(t):
        return pd.DataFrame({k: pd.Series(dtype=float) for k in columns})
    total = w.sum()
    distinct, index = np.unique(t, return_inverse=True)
    m = len(distinct)
    d1 = np.bincount(index, weights=w * (c == 1), minlength=m)
    d2 = np.bincount(index, weights=w * (c == 2), minlength=m)
    leaving = np.bincount(index, weights=w, minlength=m)
    at_risk = total - np.cumsum(leaving) + leaving  # weighted persons with time >= t_j
    hazard1 = d1 / at_risk
    hazard = (d1 + d2) / at_risk
    # Everyone still at risk has an event: the hazard is 1, not 1 -+ a rounding error of the summed
    # weights (whose order DuckDB's threads decide), which would make 1 / (1 - hazard) below explode.
    hazard = np.where(np.abs(1.0 - hazard) <= 1e-12, 1.0, hazard)
    survival = np.cumprod(1.0 - hazard)
    survival_before = np.concatenate([[1.0], survival[:-1]])
    cif = np.cumsum(survival_before * hazard1)

    # unweighted counts for reporting
    n_events = np.cumsum(np.bincount(index, weights=n * (c == 1), minlength=m))
    persons_before = np.concatenate([[0.0], np.cumsum(np.bincount(index, weights=n, minlength=m))])

    if times is None:
        targets = distinct[d1 > 0]
    else:
        targets = np.asarray(times, dtype=float)
    position = np.searchsorted(distinct, targets, side="right") - 1  # last distinct time <= target

    # Influence function (weighted empirical measure, y = Y / total):
    # IF_i(t) = sum_{v<=t} S(v-) dM1_i(v) / y(v) - [F(t) - F(v)] dM_i(v) / (y(v) (1 - dL(v)))
    y_share = at_risk / total
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(1.0 - hazard > 0, 1.0 / (y_share * (1.0 - hazard)), 0.0)
    cum_term1 = np.cumsum(survival_before * hazard1 / y_share)
    cum_a = np.cumsum(a * hazard)
    cum_fa = np.cumsum(cif * a * hazard)
    event1 = (c == 1).astype(float)
    event_any = (c > 0).astype(float)

    estimate = np.where(position >= 0, cif[np.maximum(position, 0)], 0.0)
    variance = np.zeros(len(targets))
    if correction is not None:
        H = np.asarray(correction.inverse_information, dtype=float)
        HMH = H @ np.asarray(correction.residual_moment, dtype=float) @ H
    chunk = max(1, 4_000_000 // max(len(t), 1))
    for start in range(0, len(targets), chunk):
        J = position[start : start + chunk]
        valid = J >= 0
        Jc = np.maximum(J, 0)
        F_t = cif[Jc][None, :]
        K = np.minimum(index[:, None], Jc[None, :])
        happened = index[:, None] <= Jc[None, :]
        term1 = happened * (event1 * survival_before[index] / y_share[index])[:, None] - cum_term1[K]
        term2 = happened * (event_any * a[index])[:, None] * (F_t - cif[index][:, None]) - (F_t * cum_a[K] - cum_fa[K])
        influence = (term1 - term2) * valid[None, :]  # (cells, targets): one person's influence
        part = (wsq[:, None] * np.square(influence)).sum(axis=0) / (total * total)
        if correction is not None:
            cross = influence.T @ score / total  # (targets, k)
            part = part - 2.0 * ((cross @ H) * cross).sum(axis=1) + ((cross @ HMH) * cross).sum(axis=1)
        variance[start : start + chunk] = part
    se = np.sqrt(np.maximum(variance, 0.0))
    z = z_value(confidence)
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = np.exp(z * se / np.abs(estimate * np.log(estimate)))
        low = np.where((estimate > 0) & (estimate < 1), estimate**spread, estimate)
        high = np.where((estimate > 0) & (estimate < 1), estimate ** (1.0 / spread), estimate)
    Pc = np.maximum(position, 0)
    before_target = np.searchsorted(distinct, targets, side="left")  # distinct times < target
    return pd.DataFrame(
        {
            "time_days": targets,
            "at_risk": np.rint(n.sum() - persons_before[before_target]).astype(int),
            "events": np.rint(np.where(position >= 0, n_events[Pc], 0.0)).astype(int),
            "estimate": estimate,
            "se": se,
            "ci_low": low,
            "ci_high": high,
        }
    )


# --------------------------------------------------------------------------- logistic regression


def logistic_odds_ratios(
    outcome,
    design: np.ndarray,
    names: Sequence[str],
    *,
    include=None,
    model: AscertainmentModel | None = None,
    confidence: float = 0.95,
    count=None,
) -> pd.DataFrame:
    """Logistic regression of a 0/1 outcome -> odds ratios with Wald CIs.

    Fitted by statsmodels' binomial GLM with ``var_weights`` = the IPW weights
    (when ``model`` is given) among ascertained persons. The covariance is a
    stacked sandwich (HC0) that also accounts for the estimated weights;
    without ``model`` it is the ordinary robust (HC0) sandwich.

    Returns one row per coefficient except the intercept: term, estimate (OR),
    ci_low, ci_high, se (log-odds scale), n (persons with the term = 1, or all
    for numbers) and events among them.

    >>> rng = np.random.default_rng(7)
    >>> x = rng.integers(0, 2, 4000).astype(float)
    >>> y = (rng.random(4000) < np.where(x == 1, 0.5, 0.2)).astype(float)   # OR = 4
    >>> table = logistic_odds_ratios(y, np.column_stack([np.ones(4000), x]), ["intercept", "x"])
    >>> round(float(table["estimate"].iloc[0]), 1), bool(table["ci_low"].iloc[0] < 4 < table["ci_high"].iloc[0])
    (3.5, True)
    """
    y_all = as_float(outcome)
    Z = np.asarray(design, dtype=float)
    c = model.frequency if model is not None else frequencies(count, len(y_all))
    mask, w_all = _rows_and_weights(y_all, c, include, model)
    y = np.where(mask, np.nan_to_num(y_all), 0.0)
    w = np.where(mask, w_all, 0.0)
    keep_columns = np.flatnonzero(Z[mask].std(axis=0) > 0)
    keep_columns = np.union1d([0], keep_columns) if names and names[0] == "intercept" else keep_columns
    Z = Z[:, keep_columns]
    names = [names[i] for i in keep_columns]
    # separation warnings of the outcome model are not silenced: they reach the caller's log
    coef, _, notes = fit_binomial_glm(Z[mask], y[mask], w[mask], count=c[mask])
    for note in notes:
        warnings.warn(f"dose-response model: {note}", RuntimeWarning, stacklevel=2)
    mu = scipy.special.expit(Z @ coef)
    residual = np.where(mask, y - mu, 0.0)
    psi = (w * residual)[:, None] * Z
    bread = (Z * (c * w * mu * (1 - mu))[:, None]).T @ Z
    meat = (psi * c[:, None]).T @ psi
    if model is not None:
        # sum_i (psi_i - c_i)(psi_i - c_i)' with c_i = cross H X_i (R_i - p_i): psi_i is zero outside the
        # assessed (R_i = 1), so sum psi c' = cross H cross' and sum c c' = cross H M H cross' (M the
        # model's residual moment) -- only assessed rows needed (a model of :meth:`AscertainmentModel.rows`)
        cross = (Z * (c * w * (1 - model.probability) * residual)[:, None]).T @ model.design
        projected = cross @ model.inverse_information
        meat = meat - 2.0 * projected @ cross.T + projected @ model.residual_moment() @ projected.T
    bread_inverse = np.linalg.pinv(bread)
    covariance = bread_inverse @ meat @ bread_inverse.T
    se = np.sqrt(np.diag(covariance))
    z = z_value(confidence)
    rows = []
    for j, name in enumerate(names):
        if name == "intercept":
            continue
        column = Z[:, j]
        is_indicator = set(np.unique(column[mask])) <= {0.0, 1.0}
        members = mask & (column == 1) if is_indicator else mask
        rows.append(
            {
                "term": name,
                "estimate": float(np.exp(coef[j])),
                "ci_low": float(np.exp(coef[j] - z * se[j])),
                "ci_high": float(np.exp(coef[j] + z * se[j])),
                "se": float(se[j]),
                "n": int(round(c[members].sum())),
                "events": int(round((c * y)[members].sum())),
            }
        )
    return pd.DataFrame(rows, columns=["term", "estimate", "ci_low", "ci_high", "se", "n", "events"])
