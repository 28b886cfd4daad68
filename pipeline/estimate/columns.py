"""The ``estimates`` table's contract: its columns and the vocabularies of its explicit columns.

Every row of ``estimates`` says what it is in five columns set where the row is
built (``pipeline.estimate.run``), so nothing downstream reads ``method`` (human
text only) to learn what a row means:

- ``estimand``: ``episode_window`` (a) or ``fixed_window`` (b);
- ``estimator``: how ``estimate`` was computed (``ESTIMATORS``);
- ``population``: who the row's groups are drawn from (``POPULATIONS``);
  ``variable`` / ``level`` then split that population;
- ``estimate_name``: the quantity ``estimate`` holds (``ESTIMATE_NAMES``);
- ``estimate_type``: its kind (``ESTIMATE_TYPES``).

This module is the one description of the table: the warehouse's column types,
the publish stage's exports and their data dictionary are generated from
``COLUMNS`` and the vocabularies below.

>>> [c.name for c in COLUMNS][:5]
['analysis', 'estimand', 'estimator', 'population', 'variable']
>>> estimator_kind("aalen_johansen_ipw"), estimator_kind("complete_case"), estimator_kind("median")
('primary', 'complete_case', 'descriptive')
>>> population_of_group("gt_4_weeks"), population_of_group("le_4_weeks"), population_of_group("all")
('gt_split', 'le_split', 'all')
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str  # DuckDB type in the warehouse
    meaning: str


COLUMNS: tuple[Column, ...] = (
    Column("analysis", "varchar",
           "which analysis the row belongs to (ANALYSES: headline, by_duration_band, by_stratum, ...)"),
    Column("estimand", "varchar",
           "episode_window = estimand (a), dependence from episode start to episode end + the outcome window; "
           "fixed_window = estimand (b), dependence or withdrawal assessed in the same fixed window after treatment "
           "ends, among persons whose treatment ended while observed"),
    Column("estimator", "varchar", "how `estimate` was computed (see the estimators below)"),
    Column("population", "varchar",
           "who the row's groups are drawn from (see the populations below); `variable` and `level` split it"),
    Column("variable", "varchar",
           "the grouping variable within the analysis: headline_group, duration_band, a stratum (misuse, "
           "indication, dose_band, age_band, sex), an outcome component, a model term, a weight statistic, a "
           "sensitivity setting, calendar_year, region"),
    Column("level", "varchar", "the value of `variable` this row describes, e.g. gt_4_weeks, 28-55 (days), F"),
    Column("time_days", "integer", "days since the start of the treatment episode (cumulative_incidence only)"),
    Column("n", "bigint",
           "persons in the group (hajek_ipw rows: all persons, assessed or not; complete_case rows: assessed "
           "persons; curves: number at risk; weights: persons in the group)"),
    Column("n_assessed", "bigint", "persons in the group whose outcome was assessed"),
    Column("events", "bigint", "persons with the outcome among the assessed (unweighted)"),
    Column("estimate_name", "varchar", "the quantity `estimate` holds (see the estimate names below)"),
    Column("estimate_type", "varchar", "the kind of quantity (see the estimate types below)"),
    Column("estimate", "double", "the number; a proportion is in [0, 1]"),
    Column("ci_low", "double", "lower bound of its confidence interval (estimate.confidence_level)"),
    Column("ci_high", "double", "upper bound of its confidence interval"),
    Column("method", "varchar", "the estimator in words, for a reader; never parsed"),
)
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)

ESTIMANDS = {"a": "episode_window", "b": "fixed_window"}
ESTIMAND_MEANINGS = {
    "episode_window": "estimand (a): dependence recorded from episode start to episode end + outcome.window_after_end_days",
    "fixed_window": "estimand (b): dependence or withdrawal assessed within outcome.fixed_window_days after treatment "
                    "ends, the same window for every duration, among persons whose treatment ended while observed",
}

# estimator -> (kind, meaning). kind: primary (weighted for ascertainment), complete_case
# (assessed persons only, unweighted) or descriptive (no outcome ascertainment involved).
ESTIMATORS: dict[str, tuple[str, str]] = {
    "hajek_ipw": ("primary", "share weighted by the inverse probability of ascertainment (Hajek), Wilson interval at "
                             "the sandwich effective n, the weight model stacked"),
    "complete_case": ("complete_case", "share among persons whose outcome was assessed, unweighted, Wilson interval"),
    "aalen_johansen_ipw": ("primary", "IPW Aalen-Johansen cumulative incidence (death competing), delta-method "
                                      "variance, log-log interval"),
    "aalen_johansen": ("complete_case", "Aalen-Johansen cumulative incidence among assessed persons, unweighted"),
    "logistic_or_ipw": ("primary", "IPW logistic regression (bands model), odds ratio, stacked sandwich interval"),
    "logistic_or_ipw_trend": ("primary", "IPW logistic regression with log2(duration) (trend model), odds ratio "
                                         "per doubling of duration"),
    "reference_level": ("primary", "reference level of the bands model: odds ratio 1 by definition, no interval"),
    "wilson": ("descriptive", "share of all persons in the group, unweighted (known for everyone), Wilson interval"),
    "median": ("descriptive", "median with an order-statistic interval"),
    "published": ("descriptive", "a published figure (an anchor), not estimated here"),
    "interval_check": ("descriptive", "1 when the published figure lies inside our interval, 0 when not"),
    "weight_summary": ("descriptive", "distribution of the inverse-probability weights"),
    "diagnostic": ("descriptive", "an estimation diagnostic"),
}

POPULATIONS: dict[str, str] = {
    "all": "every cohort person of the estimand",
    "gt_split": "persons treated longer than estimate.headline_split_days",
    "le_split": "persons treated estimate.headline_split_days or less",
    "dependent": "persons who became dependent",
}

# estimate_name -> (estimate_type, meaning)
ESTIMATE_NAMES: dict[str, tuple[str, str]] = {
    "dependence": ("proportion", "share who developed physical dependence (estimand (b): dependence or withdrawal "
                                 "assessed in the fixed window)"),
    "withdrawal": ("proportion", "share with withdrawal symptoms documented"),
    "dep_icd": ("proportion", "share with an ICD-10 F13.2-F13.4 diagnosis"),
    "dep_withdrawal": ("proportion", "share with withdrawal symptoms documented"),
    "dep_assessed": ("proportion", "share a clinician judged dependent"),
    "dep_sds": ("proportion", "share with a Severity of Dependence Scale score at or above outcome.sds_cutoff"),
    "cumulative_incidence": ("proportion", "cumulative incidence of dependence by time_days (death competing)"),
    "odds_ratio": ("odds_ratio", "odds ratio of dependence against the variable's reference level"),
    "dose_increase": ("proportion", "share whose daily dose rose above its starting level"),
    "dose_escalation_ratio": ("ratio", "highest / starting daily dose"),
    "treated_gt_split": ("proportion", "share of new users treated longer than estimate.headline_split_days"),
    "weight": ("weight", "an inverse-probability weight statistic named by `variable` (a percentile, min, max)"),
    "effective_sample_size": ("count", "Kish effective sample size (sum w)^2 / sum w^2"),
    "published_inside_ci": ("flag", "1 = the published figure lies inside our interval, 0 = it does not"),
    "persons": ("count", "persons (the diagnostic's count is in `events`, its denominator in `n`)"),
    "converged": ("flag", "1 = the weight model converged, 0 = it did not"),
    "truncation_bounds": ("weight", "weights at the truncation percentiles (ci_low, ci_high)"),
}

ESTIMATE_TYPES: dict[str, str] = {
    "proportion": "a share in [0, 1]",
    "odds_ratio": "an odds ratio (1 = same odds as the reference)",
    "ratio": "a ratio of two quantities of the same unit",
    "weight": "an inverse-probability weight",
    "count": "a number of persons (possibly weighted)",
    "flag": "1 = yes, 0 = no",
}

# The headline groups of analysis_person (03_cohort.sql) and the population each one is.
HEADLINE_GROUP_POPULATIONS = {"gt_4_weeks": "gt_split", "le_4_weeks": "le_split", "all": "all"}

# The analyses, each once: result type (the analysis without its estimand), estimand, meaning.
ANALYSES: dict[str, tuple[str, str, str]] = {
    "headline": ("headline", "a", "dependence by headline group (treated longer than the split, up to it, everyone)"),
    "by_duration_band": ("by_duration_band", "a", "dependence by treatment duration band"),
    "by_stratum": ("by_stratum", "a", "dependence by stratum among persons treated longer than the split"),
    "by_stratum_overall": ("by_stratum_overall", "a", "dependence by stratum in the whole cohort"),
    "components": ("components", "a", "each part of the outcome definition on its own"),
    "cumulative_incidence": ("cumulative_incidence", "a", "cumulative incidence of dependence over days since start"),
    "dose_response": ("dose_response", "a", "adjusted odds ratios of dependence"),
    "tolerance": ("tolerance", "a", "dose escalation by indication (from prescriptions, everyone)"),
    "withdrawal_by_ending": ("withdrawal_by_ending", "a", "withdrawal by how treatment ended"),
    "weights": ("weights", "a", "distribution of the ascertainment weights"),
    "anchors": ("anchors", "a", "our estimates beside published figures"),
    "sensitivity": ("sensitivity", "a", "the headline with one setting varied (estimand in `estimand`)"),
    "by_calendar_year": ("by_calendar_year", "a", "exposure and dependence by calendar year of treatment start"),
    "by_region": ("by_region", "a", "exposure and dependence by region"),
    "diagnostics": ("diagnostics", "a", "positivity, convergence, weight truncation, records that assess nothing "
                                        "(estimand in `estimand`)"),
    "headline_fixed_window": ("headline", "b", "estimand (b)'s headline"),
    "by_duration_band_fixed_window": ("by_duration_band", "b", "estimand (b) by treatment duration band"),
    "weights_fixed_window": ("weights", "b", "estimand (b)'s ascertainment weights"),
}


def estimand_of(analysis: str) -> str:
    """``a`` or ``b``: the estimand an analysis belongs to (rows of shared analyses say it themselves)."""
    return ANALYSES.get(str(analysis), ("", "a", ""))[1]


def estimator_kind(estimator: str) -> str:
    """primary, complete_case or descriptive (an unknown estimator is descriptive)."""
    return ESTIMATORS.get(str(estimator), ("descriptive", ""))[0]


def estimate_type(estimate_name: str) -> str:
    return ESTIMATE_NAMES[estimate_name][0]


def population_of_group(group: str) -> str:
    """The population a headline group is (``gt_4_weeks`` -> ``gt_split``)."""
    return HEADLINE_GROUP_POPULATIONS[str(group)]


def result_type(analysis: str) -> str:
    """The analysis without its estimand (``headline_fixed_window`` -> ``headline``); unknown ones as they are."""
    return ANALYSES.get(str(analysis), (str(analysis), "a", ""))[0]


def select_list(relation_columns: tuple[str, ...] = COLUMN_NAMES) -> str:
    """The typed select list that writes a frame into the warehouse's ``estimates``.

    >>> select_list()[:44]
    'analysis::varchar as analysis, estimand::var'
    """
    return ", ".join(f"{c.name}::{c.sql_type} as {c.name}" for c in COLUMNS if c.name in relation_columns)


def dictionary_rows() -> list[dict[str, str]]:
    """Every column and every value of the explicit columns, with its meaning (for the data dictionary)."""
    rows = [{"kind": "column", "name": c.name, "type": c.sql_type, "meaning": c.meaning} for c in COLUMNS]
    rows += [{"kind": "analysis", "name": k, "type": "", "meaning": m} for k, (_, _, m) in ANALYSES.items()]
    rows += [{"kind": "estimand", "name": v, "type": "", "meaning": ESTIMAND_MEANINGS[v]} for v in ESTIMANDS.values()]
    rows += [{"kind": "estimator", "name": k, "type": kind, "meaning": m} for k, (kind, m) in ESTIMATORS.items()]
    rows += [{"kind": "population", "name": k, "type": "", "meaning": m} for k, m in POPULATIONS.items()]
    rows += [{"kind": "estimate_name", "name": k, "type": t, "meaning": m} for k, (t, m) in ESTIMATE_NAMES.items()]
    rows += [{"kind": "estimate_type", "name": k, "type": "", "meaning": m} for k, m in ESTIMATE_TYPES.items()]
    return rows
