"""Random-effects meta-analysis and the standard errors it needs: pure functions.

Scale: proportions are pooled as logits, odds ratios as log odds ratios (both
close to normal at the sample sizes a site publishes; the pooled value and its
limits are transformed back).

Standard errors from what a site publishes (``se_from_interval``): a site
releases an estimate and a 95% interval, not a standard error. The pipeline's
intervals are of three kinds, each inverted exactly:

- **Wilson** (complete-case proportions at n, IPW proportions at the effective
  sample size ``n_eff = p(1-p)/Var``): both limits L, U solve Wilson's score
  equation ``(p - L)^2 = z^2 L(1-L) / n_eff``, so
  ``n_eff = z^2 [L(1-L) + U(1-U)] / [(p-L)^2 + (U-p)^2]``; the delta method then
  gives ``se(logit p) = 1 / sqrt(n_eff p (1-p))`` -- for an IPW row exactly
  ``se_sandwich(p) / (p(1-p))``, the estimator's own variance on the logit scale.
- **logit-Wald** (symmetric on the logit scale): ``(logit U - logit L) / 2z``.
- **log-Wald** for odds ratios: ``(log U - log L) / 2z``.

Which of the three an interval is comes from the estimator's method (the
numbers cannot tell Wilson from logit-Wald: both are symmetric on the logit
scale); the numbers are checked to have that shape. An interval of unknown
method or the wrong shape gives no standard error, never a guess.

Random effects (``random_effects``): between-site variance tau^2 by REML
(default; Fisher scoring, Viechtbauer 2005), DerSimonian-Laird or Paule-Mandel;
the pooled mean's interval by Hartung-Knapp-Sidik-Jonkman (t with k-1 degrees
of freedom, variance rescaled by the weighted residual mean square q*; the usual
Wald interval beside it). By default q* is floored at 1 (the "modified" HKSJ of
Knapp & Hartung 2003, recommended by Roever, Knapp & Friede 2015 and Jackson et
al. 2017): plain HKSJ is *narrower* than the Wald interval whenever the sites
agree more closely than their standard errors predict, which with a handful of
homogeneous sites is common (the split demo: q* = 0.3);
Cochran's Q, I^2 = max(0, (Q - (k-1)) / Q) (Higgins & Thompson 2002) and the
prediction interval ``mu +- t_{k-2} sqrt(tau^2 + se(mu)^2)`` (Higgins, Thompson &
Spiegelhalter 2009), for k >= 3.

>>> round(se_from_interval(0.5, 0.4314, 0.5686, 0.95, "wilson")[0], 3)   # 100 of 200: 1/sqrt(200 * .25)
0.141
>>> fit = random_effects([0.1, 0.3, 0.2], [0.05, 0.05, 0.05], method="dl")
>>> round(fit["mu"], 3), round(fit["tau2"], 4), round(fit["i2"], 3), fit["k"]
(0.2, 0.0075, 0.75, 3)
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import scipy.stats

METHODS = ("reml", "dl", "pm")
METHOD_LABELS = {"reml": "REML", "dl": "DerSimonian-Laird", "pm": "Paule-Mandel"}
# Relative asymmetry tolerated (on the logit / log scale) before an interval is not of its
# stated kind: published CSVs keep 17 significant digits, so an honest interval is
# symmetric to ~1e-12; 1e-4 still accepts limits rounded to 4 decimals.
_SYMMETRY_TOLERANCE = 1e-4


def z_value(confidence: float) -> float:
    """Two-sided normal quantile.

    >>> round(z_value(0.95), 3)
    1.96
    """
    return float(scipy.stats.norm.ppf(0.5 + confidence / 2.0))


def logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _finite(*values) -> bool:
    return all(v is not None and isinstance(v, (int, float)) and math.isfinite(v) for v in values)


INTERVALS = ("wilson", "logit_wald", "log_wald")



def se_from_interval(estimate, low, high, confidence: float, interval: str,
                     rounding_step: float | None = None) -> tuple[float | None, str]:
    """(standard error on the pooling scale, how it was derived) from a published estimate and interval.

    ``interval``: ``wilson`` or ``logit_wald`` (a proportion, logit scale) or
    ``log_wald`` (an odds ratio, log scale) -- the method the estimator used,
    which the numbers alone cannot tell: a Wilson interval is itself exactly
    symmetric on the logit scale (``L U / ((1-L)(1-U)) = (p / (1-p))^2``), so
    both proportion kinds pass the same shape check but imply different
    standard errors. The standard error is None, with the reason, when it
    cannot be derived honestly. ``rounding_step``: the step disclosure control
    rounded the published estimate and bounds to (``disclosure.estimate_step``);
    the shape check then allows what rounding each number by half a step can do,
    and the standard error carries that rounding.

    >>> se_from_interval(0.0, 0.0, 0.2775, 0.95, "wilson")
    (None, 'estimate 0 or 1: no logit')
    >>> round(se_from_interval(2.0, 1.0, 4.0, 0.95, "log_wald")[0], 4), se_from_interval(2.0, 1.0, 4.0, 0.95, "log_wald")[1]
    (0.3537, 'log-Wald interval')
    >>> se_from_interval(0.3, 0.1, 0.4, 0.95, "wilson")
    (None, 'interval is not symmetric on the logit scale: not a Wilson interval')
    """
    if interval not in INTERVALS:
        return None, "interval method unknown"
    if not _finite(estimate, low, high):
        return None, "no estimate or interval published"
    z = z_value(confidence)
    if interval == "log_wald":
        if not (0 < low <= estimate <= high) or low == high:
            return None, "odds ratio interval not positive and ordered"
        centre = (math.log(low) + math.log(high)) / 2.0
        slack = (rounding_step or 0.0) / 2 * (1 / low + 2 / estimate + 1 / high)
        if abs(centre - math.log(estimate)) > _SYMMETRY_TOLERANCE * max(1.0, abs(math.log(high) - math.log(low))) + slack:
            return None, "interval is not symmetric on the log scale: not a log-Wald interval"
        return (math.log(high) - math.log(low)) / (2.0 * z), "log-Wald interval"
    if not 0.0 < estimate < 1.0:
        return None, "estimate 0 or 1: no logit"
    if not (0.0 < low < estimate < high < 1.0):
        return None, "interval does not enclose the estimate inside (0, 1)"
    half_low, half_high = logit(estimate) - logit(low), logit(high) - logit(estimate)
    # Disclosure control publishes estimates and bounds rounded to a step (docs/privacy.md): allow the
    # asymmetry that rounding each of the three numbers by half a step can make.
    slack = (rounding_step or 0.0) / 2 * (
        1 / (low * (1 - low)) + 2 / (estimate * (1 - estimate)) + 1 / (high * (1 - high)))
    if abs(half_low - half_high) > _SYMMETRY_TOLERANCE * max(half_low, half_high) + slack:
        label = "a Wilson" if interval == "wilson" else "a logit-Wald"
        return None, f"interval is not symmetric on the logit scale: not {label} interval"
    if interval == "logit_wald":
        return (logit(high) - logit(low)) / (2.0 * z), "logit-Wald interval"
    n_eff = z * z * (low * (1 - low) + high * (1 - high)) / ((estimate - low) ** 2 + (high - estimate) ** 2)
    return 1.0 / math.sqrt(n_eff * estimate * (1.0 - estimate)), "Wilson interval at effective n"


# --------------------------------------------------------------------------- tau^2


def _dl(y: np.ndarray, v: np.ndarray) -> float:
    w = 1.0 / v
    mu = (w * y).sum() / w.sum()
    q = (w * (y - mu) ** 2).sum()
    c = w.sum() - (w**2).sum() / w.sum()
    return max(0.0, (q - (len(y) - 1)) / c) if c > 0 else 0.0


def _reml(y: np.ndarray, v: np.ndarray, tol: float = 1e-10, maxiter: int = 200) -> tuple[float, bool]:
    """REML tau^2 by the fixed-point (Fisher scoring) iteration
    ``tau2 = sum w^2 ((y - mu)^2 - v) / sum w^2 + 1 / sum w``, truncated at 0."""
    tau2 = _dl(y, v)
    for _ in range(maxiter):
        w = 1.0 / (v + tau2)
        mu = (w * y).sum() / w.sum()
        new = max(0.0, float((w**2 * ((y - mu) ** 2 - v)).sum() / (w**2).sum() + 1.0 / w.sum()))
        if abs(new - tau2) <= tol * max(1.0, tau2):
            return new, True
        tau2 = new
    return tau2, False


def _pm(y: np.ndarray, v: np.ndarray, tol: float = 1e-10, maxiter: int = 200) -> tuple[float, bool]:
    """Paule-Mandel: tau^2 with generalised Q = k - 1 (0 when Q(0) < k - 1); bisection on a monotone function."""
    k = len(y)

    def excess(tau2: float) -> float:
        w = 1.0 / (v + tau2)
        mu = (w * y).sum() / w.sum()
        return float((w * (y - mu) ** 2).sum() - (k - 1))

    if excess(0.0) <= 0:
        return 0.0, True
    high = max(1e-8, float(np.var(y, ddof=1)))
    while excess(high) > 0:
        high *= 2.0
    low = 0.0
    for _ in range(maxiter):
        mid = (low + high) / 2.0
        if excess(mid) > 0:
            low = mid
        else:
            high = mid
        if high - low <= tol * max(1.0, high):
            return (low + high) / 2.0, True
    return (low + high) / 2.0, False


def random_effects(theta: Sequence[float], se: Sequence[float], method: str = "reml", confidence: float = 0.95,
                   hksj_floor: bool = True) -> dict:
    """Pool estimates ``theta`` (one per site, on the pooling scale) with standard errors ``se``.

    Returns k, mu (pooled), se (random-effects, 1/sqrt(sum w)), ci_low/ci_high
    (HKSJ; ``hksj_floor``: q* at least 1), hksj_se, hksj_scale (q*), wald_low/wald_high, tau2, tau, q, q_df, q_pvalue, i2,
    pi_low/pi_high (None when k < 3), weights (relative, summing to 1),
    fixed-effect mu_fe/se_fe, method and converged. Needs k >= 2.

    >>> fit = random_effects([0.0, 0.0], [0.1, 0.1])
    >>> fit["mu"], fit["tau2"], fit["i2"], fit["pi_low"]
    (0.0, 0.0, 0.0, None)
    """
    y = np.asarray(theta, dtype=float)
    s = np.asarray(se, dtype=float)
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    k = len(y)
    if k < 2:
        raise ValueError("random_effects needs at least 2 estimates")
    if y.shape != s.shape or not np.all(np.isfinite(y)) or not np.all(np.isfinite(s)) or not np.all(s > 0):
        raise ValueError("theta and se must be finite, the same length, and se > 0")
    v = s**2
    w_fe = 1.0 / v
    mu_fe = float((w_fe * y).sum() / w_fe.sum())
    q = float((w_fe * (y - mu_fe) ** 2).sum())
    df = k - 1
    converged = True
    if method == "dl":
        tau2 = _dl(y, v)
    elif method == "pm":
        tau2, converged = _pm(y, v)
    else:
        tau2, converged = _reml(y, v)
    w = 1.0 / (v + tau2)
    mu = float((w * y).sum() / w.sum())
    se_mu = float(math.sqrt(1.0 / w.sum()))
    z = z_value(confidence)
    alpha = 1.0 - confidence
    # HKSJ: the random-effects variance rescaled by the weighted residual mean square, t_{k-1}.
    hksj_scale = float((w * (y - mu) ** 2).sum() / df)
    hksj_se = float(math.sqrt((max(1.0, hksj_scale) if hksj_floor else hksj_scale) / w.sum()))
    t_ci = float(scipy.stats.t.isf(alpha / 2.0, df))
    out = {
        "k": k,
        "mu": mu,
        "se": se_mu,
        "hksj_se": hksj_se,
        "hksj_scale": hksj_scale,
        "ci_low": mu - t_ci * hksj_se,
        "ci_high": mu + t_ci * hksj_se,
        "wald_low": mu - z * se_mu,
        "wald_high": mu + z * se_mu,
        "tau2": float(tau2),
        "tau": float(math.sqrt(tau2)),
        "q": q,
        "q_df": df,
        "q_pvalue": float(scipy.stats.chi2.sf(q, df)),
        "i2": float(max(0.0, (q - df) / q)) if q > 0 else 0.0,
        "pi_low": None,
        "pi_high": None,
        "weights": (w / w.sum()).tolist(),
        "mu_fe": mu_fe,
        "se_fe": float(math.sqrt(1.0 / w_fe.sum())),
        "method": method,
        "converged": bool(converged),
    }
    if k >= 3:
        t_pi = float(scipy.stats.t.isf(alpha / 2.0, k - 2))
        half = t_pi * math.sqrt(tau2 + se_mu**2)
        out["pi_low"], out["pi_high"] = mu - half, mu + half
    return out
