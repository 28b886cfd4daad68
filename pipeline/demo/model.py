"""The demo extract's ground-truth model: every number the generator draws from.

Documented in ``docs/demo_model.md`` (what is true, why those numbers, which
paper). This module holds only constants and small pure helpers; the drawing
itself is in ``generator.py``.

>>> round(float(logistic(0.0)), 2)
0.5
>>> band_index(np.array([1, 13, 14, 27, 28, 55, 56, 83, 84, 181, 182, 900]), (0, 14, 28, 56, 84, 182)).tolist()
[0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
"""

from __future__ import annotations

import numpy as np

from pipeline import contract

GENERATOR_VERSION = "1.1.0"

# --- persons -----------------------------------------------------------------
SEX_CODES = contract.SEXES  # F, M, X, U
SEX_PROBS = (0.60, 0.38, 0.01, 0.01)  # benzodiazepine users are ~60-65% women (Blanco 2018)
REGIONS = ("North", "South", "East", "West", "Central", "Coast", "Highlands", "Islands")
REGION_PROBS = (0.16, 0.18, 0.14, 0.14, 0.16, 0.10, 0.07, 0.05)

# Exclusion groups, drawn as exact counts so that each excluded person fails
# exactly one cohort rule (the attrition counts then do not depend on the
# order the pipeline applies the rules in).
GROUPS = ("eligible", "no_clonazepam", "minor", "short_prior", "recent_other_benzo", "prior_dependence")
GROUP_SHARES = {"no_clonazepam": 0.02, "minor": 0.03, "short_prior": 0.05, "recent_other_benzo": 0.06,
                "prior_dependence": 0.01}
MIN_GROUP_COUNT = 8  # planted invalid rows hang on minors: there must be some

# --- drugs ---------------------------------------------------------------------
INDICATIONS = contract.INDICATIONS  # anxiety, panic, seizure, insomnia, muscle_spasm, other, unknown
INDICATION_PROBS = (0.38, 0.20, 0.10, 0.14, 0.06, 0.07, 0.05)
OTHER_BENZOS = ("diazepam", "lorazepam", "alprazolam")
DRUGS = ("clonazepam",) + OTHER_BENZOS
# (strength_mg, units per day) of each clonazepam dose level: units per day are
# whole numbers so quantity = units * days_supply is whole and
# strength_mg * quantity / days_supply reproduces daily_dose_mg exactly.
CLONAZEPAM_LEVELS = (
    (0.25, 1), (0.5, 1), (0.25, 3), (1.0, 1), (0.5, 3), (1.0, 2), (1.0, 3), (2.0, 2), (2.0, 3), (2.0, 4),
    (2.0, 12), (2.0, 15),  # 24 and 30 mg/day: above the labelled maximum (20 mg/day), misuse only
)
MAX_SUPERVISED_LEVEL = 9  # 8 mg/day
HIGH_DOSE_LEVELS = (10, 11)
# Starting dose level (index into CLONAZEPAM_LEVELS) by indication; label: panic
# target 1 mg/day (max 4), seizures up to 20 mg/day.
START_LEVEL_PROBS = {
    "anxiety":      (0.08, 0.30, 0.07, 0.30, 0.08, 0.12, 0.05, 0.00, 0.00, 0.00),
    "panic":        (0.00, 0.20, 0.00, 0.35, 0.10, 0.25, 0.07, 0.03, 0.00, 0.00),
    "seizure":      (0.00, 0.10, 0.00, 0.20, 0.10, 0.25, 0.15, 0.12, 0.05, 0.03),
    "insomnia":     (0.15, 0.45, 0.00, 0.30, 0.00, 0.10, 0.00, 0.00, 0.00, 0.00),
    "muscle_spasm": (0.00, 0.40, 0.00, 0.40, 0.00, 0.20, 0.00, 0.00, 0.00, 0.00),
    "other":        (0.08, 0.30, 0.07, 0.30, 0.08, 0.12, 0.05, 0.00, 0.00, 0.00),
    "unknown":      (0.08, 0.30, 0.07, 0.30, 0.08, 0.12, 0.05, 0.00, 0.00, 0.00),
}
MISUSE_EXTRA_LEVELS = 2  # misusers take more (Busto 1989)
# Other benzodiazepines: (strength_mg, max units per day).
OTHER_STRENGTH = {"diazepam": (5.0, 4), "lorazepam": (1.0, 3), "alprazolam": (0.5, 4)}

# --- episodes ------------------------------------------------------------------
# Target duration band of the first episode (realised durations drift a little).
TARGET_BAND_PROBS = (0.19, 0.15, 0.21, 0.13, 0.17, 0.15)
SHORT_SINGLE_FILL_SUPPLY = ((3, 5, 7, 7, 7, 10, 10, 7), (14, 14, 14, 15, 20, 21, 21, 14))
# First fill days' supply: median 15 (Bushnell 2017: median 15, IQR 10-30).
FIRST_FILL_SUPPLY = (7, 10, 14, 15, 20, 28, 30)
FIRST_FILL_PROBS = (0.18, 0.12, 0.18, 0.10, 0.05, 0.15, 0.22)
MAX_GAP_DAYS = 20  # between end of supply and next fill: always <= 25 -> unambiguous at 30
NORMAL_OVERLAP_SHARE = 0.15  # a normal refill comes at >= 85% of the previous supply
EARLY_REFILL_SHARE = 0.5  # an early refill comes at <= 50% (misuse rule: < 75%)
SECOND_EPISODE_MIN_GAP = 121  # days after the first episode's end: separate even at 60

# --- misuse (Blanco 2018: 17.1% of users misuse; Maust 2019: more in the young) --
MISUSE_LOGIT_INTERCEPT = -0.55  # at age 18
MISUSE_LOGIT_PER_YEAR = -0.045
# Visible prescription-record signal of a misuser: shopping (>= 3 prescribers and
# pharmacies within 180 days), >= 3 early refills, or > 20 mg/day; or none.
SIGNALS = ("none", "shopping", "early_refills", "high_dose")
MISUSER_SIGNAL_PROBS = (0.40, 0.30, 0.22, 0.08)
SUPERVISED_SIGNAL_PROBS = (0.985, 0.015, 0.0, 0.0)  # a locum / a move: false positives

# --- latent dependence -----------------------------------------------------------
# logit p = a + b_short*min(x, 0) + b_long*max(x, 0) + c_dose*log(dde/20)
#           + c_age*(age-50)/10 + c_misuse*misuse,      x = log(duration_days / 28)
# (a linear spline in log duration, knot at 4 weeks: steep rise below 4 weeks,
# slower above, as Rickels 1983's 5% < 8 months vs 43% >= 8 months).
DEPENDENCE_COEF = {
    "intercept": -1.68,
    "log_duration_below_28": 1.25,
    "log_duration_above_28": 0.65,
    "log_dde_over_20mg": 0.45,
    "age_per_10_years_over_50": 0.20,
    "misuse": 1.55,
}

# --- ascertainment (missing at random given covariates known for everyone) ------
AGE_BANDS = ("18-34", "35-49", "50-64", "65+")
ASCERTAINMENT_COEF = {
    "intercept": 1.0,
    "age_band": (-0.40, -0.10, 0.0, 0.50),
    "sex": (0.15, 0.0, 0.0, 0.0),  # F, M, X, U
    "indication": (0.0, 0.10, 0.55, -0.20, -0.20, -0.10, -0.30),
    "duration_band": (-1.35, -1.30, -1.30, -0.30, 0.70, 2.20),
    "rx_misuse_signal": -0.20,
}
# Estimand (b): the outcome is assessed in the fixed window after treatment ends
# with log-odds = the log-odds above + this shift per duration band (all <= 0,
# so P(b) <= P(a) in every cell and one uniform draw nests (b) inside (a)). The
# shifts flatten the duration gradient: a fixed window is one post-treatment
# contact, not more chances the longer the treatment.
FIXED_WINDOW_SHIFT = (-0.30, -0.40, -0.60, -1.00, -1.60, -2.60)

# --- evidence ----------------------------------------------------------------------
DEPENDENCE_CODES = (
    ("F13.2", "ICD10"), ("F132", "ICD10"), ("F13.3", "ICD10"), ("F13.4", "ICD10"),
    ("F13.20", "ICD10CM"), ("F13.230", "ICD10CM"), ("F13239", "ICD10CM"), ("F13.930", "ICD10CM"),
)
MISUSE_CODES = (("F13.1", "ICD10"), ("F131", "ICD10"), ("F13.10", "ICD10CM"))
# Background diagnosis by indication (never an F13 code); also the indication
# coded on the first dispensing day (records that assess nothing).
NOISE_CODES = {
    "anxiety": ("F41.1", "ICD10"), "panic": ("F41.0", "ICD10"), "seizure": ("G40.9", "ICD10"),
    "insomnia": ("G47.0", "ICD10"), "muscle_spasm": ("M62.838", "ICD10CM"), "other": ("F32.9", "ICD10"),
    "unknown": ("F419", "ICD10"),
}


def logistic(x):
    """Inverse logit.

    >>> [round(float(v), 3) for v in logistic(np.array([-2.0, 2.0]))]
    [0.119, 0.881]
    """
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def band_index(duration_days, lower_days):
    """Index of the duration band each duration falls in (bands given by lower bounds)."""
    return np.searchsorted(np.asarray(lower_days), np.asarray(duration_days), side="right") - 1


def age_band_index(age):
    """Index into AGE_BANDS (minors fall in the first band).

    >>> age_band_index(np.array([17, 18, 34, 35, 49, 50, 64, 65, 90])).tolist()
    [0, 0, 0, 1, 1, 2, 2, 3, 3]
    """
    return np.searchsorted(np.array([35, 50, 65]), np.asarray(age), side="right")


def draw_categorical(rng, probs, size):
    """Indices drawn with the given probabilities (vectorised).

    >>> draw_categorical(np.random.default_rng(1), (0.0, 1.0, 0.0), 4).tolist()
    [1, 1, 1, 1]
    """
    cumulative = np.cumsum(np.asarray(probs, dtype=float))
    cumulative /= cumulative[-1]
    return np.minimum(np.searchsorted(cumulative, rng.random(size), side="right"), len(cumulative) - 1)


def uniform_int(rng, low, high):
    """One integer uniformly in [low, high] (inclusive) per element; high >= low.

    >>> uniform_int(np.random.default_rng(1), np.array([3, 5]), np.array([3, 5])).tolist()
    [3, 5]
    """
    low = np.asarray(low, dtype=np.int64)
    high = np.asarray(high, dtype=np.int64)
    return low + np.floor(rng.random(low.shape) * (high - low + 1)).astype(np.int64)


def dependence_logit(duration_days, dde_mg, age, misuse, coef=DEPENDENCE_COEF):
    """Log-odds of latent physical dependence (see DEPENDENCE_COEF).

    >>> round(float(logistic(dependence_logit(28, 20.0, 50, False))), 3)  # 4 weeks, 1 mg/day clonazepam, 50 y
    0.157
    """
    x = np.log(np.asarray(duration_days, dtype=float) / 28.0)
    return (
        coef["intercept"]
        + coef["log_duration_below_28"] * np.minimum(x, 0.0)
        + coef["log_duration_above_28"] * np.maximum(x, 0.0)
        + coef["log_dde_over_20mg"] * np.log(np.asarray(dde_mg, dtype=float) / 20.0)
        + coef["age_per_10_years_over_50"] * (np.asarray(age, dtype=float) - 50.0) / 10.0
        + coef["misuse"] * np.asarray(misuse, dtype=float)
    )


def ascertainment_logit(age_band, sex, indication, duration_band, rx_signal, coef=ASCERTAINMENT_COEF):
    """Log-odds of having any follow-up or diagnosis in the outcome window.

    A function of covariates the pipeline knows for everyone (index arrays into
    AGE_BANDS, SEX_CODES, INDICATIONS, the duration bands, and the realised
    prescription-record misuse signal), so the outcome is missing at random.

    >>> round(float(ascertainment_logit(2, 1, 0, 5, False)), 2)  # 50-64, M, anxiety, >= 182 days
    3.2
    """
    return (
        coef["intercept"]
        + np.asarray(coef["age_band"])[age_band]
        + np.asarray(coef["sex"])[sex]
        + np.asarray(coef["indication"])[indication]
        + np.asarray(coef["duration_band"])[duration_band]
        + coef["rx_misuse_signal"] * np.asarray(rx_signal, dtype=float)
    )


INDICATION_CODED_ON_DAY_0 = 0.70  # share of persons whose indication is coded on the first dispensing day
EMPTY_VISIT_SHARE = 0.25  # share of persons not assessed with an empty follow-up visit in the window


def min_ascertainment_probability(coef=ASCERTAINMENT_COEF) -> float:
    """The smallest P(ascertained) over all covariate cells.

    >>> min_ascertainment_probability() >= 0.2
    True
    """
    worst = (
        coef["intercept"] + min(coef["age_band"]) + min(coef["sex"]) + min(coef["indication"])
        + min(coef["duration_band"]) + min(coef["rx_misuse_signal"], 0.0)
    )
    return float(logistic(worst))
