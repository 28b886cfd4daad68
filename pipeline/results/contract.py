"""The summarised-result contract: DARWIN EU's omopgenerics ``summarised_result``.

Thirteen columns, every value a string (omopgenerics reads them as character):

- ``result_id`` ties a row to one row of the settings table (result type,
  estimator, estimand and every analysis setting);
- ``group_*`` / ``strata_*`` / ``additional_*`` name the population and its
  qualifiers, several names joined with `` &&& `` (omopgenerics' separator),
  ``overall`` when there is none;
- ``variable_*`` is what is measured; ``estimate_name`` / ``estimate_type`` /
  ``estimate_value`` one number about it.

A suppressed estimate is ``-`` (omopgenerics' suppression marker); an
estimate that could not be computed is empty (NA).

Every estimate name the pipeline emits is listed once in ``ESTIMATES`` with
its type and meaning; the data dictionary (``data_dictionary``) is generated
from ``COLUMNS``, ``ESTIMATES`` and ``SETTINGS``.

>>> COLUMNS[:3], len(COLUMNS)
(('result_id', 'cdm_name', 'group_name'), 13)
>>> format_value(0.1, "proportion"), format_value(12.0, "integer"), format_value(1.0, "logical")
('0.1', '12', 'TRUE')
>>> join_names(["headline_group", "sex"]), join_names([])
('headline_group &&& sex', 'overall')
>>> estimate_type("proportion_95CI_lower"), estimate_type("outcome_count")
('proportion', 'integer')
"""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd

COLUMNS = (
    "result_id", "cdm_name", "group_name", "group_level", "strata_name", "strata_level",
    "variable_name", "variable_level", "estimate_name", "estimate_type", "estimate_value",
    "additional_name", "additional_level",
)
NULLABLE_COLUMNS = ("variable_level", "estimate_value")  # empty = not applicable / not estimable
OVERALL = "overall"
SEPARATOR = " &&& "  # omopgenerics joins several names / levels with this
SUPPRESSED = "-"  # omopgenerics' marker for a suppressed estimate
PACKAGE_NAME = "benzo-outcomes"
# The types omopgenerics accepts in estimate_type.
ESTIMATE_TYPES = ("numeric", "integer", "date", "character", "proportion", "percentage", "logical")

COLUMN_MEANING = {
    "result_id": "integer (as text) linking the row to one row of settings.csv (result_type, estimator, estimand, "
                 "every analysis setting); unique across runs in the results store",
    "cdm_name": "the data source's name (setting extract.cdm_name; default the extract folder's name)",
    "group_name": "what defines the cohort: 'drug' (the ingredients analysed)",
    "group_level": "the ingredients, joined with ' &&& ' when several",
    "strata_name": "the stratifying variables, joined with ' &&& ' (e.g. 'headline_group &&& sex'); 'overall' when "
                   "the row is about the whole cohort",
    "strata_level": "the levels of strata_name, in the same order (e.g. 'gt_4_weeks &&& F'); 'overall' for none",
    "variable_name": "what is measured: dependence, withdrawal, a component (dep_icd, dep_withdrawal, dep_assessed, "
                     "dep_sds), treated_gt_split, dose_increase, dose_escalation_ratio, ascertainment_weight, "
                     "a model term (dose_response), number_subjects / excluded_subjects (attrition)",
    "variable_level": "the level of a model term (dose_response); empty otherwise",
    "estimate_name": "which number: see the estimate names below",
    "estimate_type": "integer, numeric, proportion (in [0, 1]) or logical (TRUE/FALSE)",
    "estimate_value": "the number as text; '-' when disclosure control withheld it, empty when not estimable",
    "additional_name": "further qualifiers joined with ' &&& ': time_days (curves), model and term_role "
                       "(dose_response), the varied setting (sensitivity), anchor, reason_id (attrition); "
                       "'overall' for none",
    "additional_level": "the values of additional_name, in the same order; 'overall' for none",
}

# estimate_name -> (estimate_type, meaning). "{ci}" is e.g. "95CI" (estimate.confidence_level).
ESTIMATES: dict[str, tuple[str, str]] = {
    "denominator_count": ("integer", "persons in the group (primary estimator: all persons, ascertained or not; "
                                     "complete case: ascertained persons)"),
    "outcome_count": ("integer", "persons in the group with the outcome (observed, unweighted)"),
    "assessed_count": ("integer", "persons in the group whose outcome was assessed"),
    "proportion": ("proportion", "share with the outcome, in [0, 1] (primary: weighted for ascertainment)"),
    "proportion_{ci}_lower": ("proportion", "lower bound of the proportion's confidence interval"),
    "proportion_{ci}_upper": ("proportion", "upper bound of the proportion's confidence interval"),
    "cumulative_incidence": ("proportion", "Aalen-Johansen cumulative incidence at additional_level days "
                                           "(death a competing risk)"),
    "cumulative_incidence_{ci}_lower": ("proportion", "lower bound of the cumulative incidence's interval"),
    "cumulative_incidence_{ci}_upper": ("proportion", "upper bound of the cumulative incidence's interval"),
    "number_at_risk_count": ("integer", "persons still at risk at additional_level days"),
    "cumulative_outcome_count": ("integer", "persons with the outcome by additional_level days"),
    "odds_ratio": ("numeric", "odds ratio of dependence against the term's reference level (1 for the reference)"),
    "odds_ratio_{ci}_lower": ("numeric", "lower bound of the odds ratio's interval"),
    "odds_ratio_{ci}_upper": ("numeric", "upper bound of the odds ratio's interval"),
    "median": ("numeric", "median (dose escalation ratio: last / first daily dose)"),
    "median_{ci}_lower": ("numeric", "lower bound of the median's order-statistic interval"),
    "median_{ci}_upper": ("numeric", "upper bound of the median's order-statistic interval"),
    "min": ("numeric", "smallest positive weight"),
    "p50": ("numeric", "median weight"),
    "p99": ("numeric", "99th percentile of the weights"),
    "max": ("numeric", "largest weight"),
    "effective_sample_size": ("numeric", "Kish effective sample size (sum w)^2 / sum w^2"),
    "weighted_count": ("integer", "persons with a positive weight (ascertained persons) in the group"),
    "published_proportion": ("proportion", "the anchor's published figure"),
    "published_inside_ci": ("logical", "TRUE when the anchor's published figure lies inside our interval"),
    "count": ("integer", "persons (attrition: remaining after the step, or excluded by it)"),
    "estimate": ("numeric", "an estimate of an analysis this contract does not know by name"),
    "estimate_{ci}_lower": ("numeric", "lower bound of that estimate's interval"),
    "estimate_{ci}_upper": ("numeric", "upper bound of that estimate's interval"),
}

# Settings every result_id has (beyond the flattened analysis settings).
SETTINGS: dict[str, str] = {
    "result_id": "links to summarised_result.result_id",
    "result_type": "the analysis: headline, by_duration_band, by_stratum, by_stratum_overall, components, "
                   "cumulative_incidence, dose_response, tolerance, withdrawal_by_ending, weights, anchors, "
                   "sensitivity, by_calendar_year, by_region, cohort_attrition",
    "package_name": "benzo-outcomes",
    "package_version": "the pipeline's version",
    "run_id": "one pipeline run (one publication); the results store keeps each run once",
    "run_time": "when the run published (ISO 8601 with offset)",
    "cdm_name": "the data source's name (as in summarised_result)",
    "estimator": "primary (weighted for ascertainment), complete_case (ascertained persons only) or descriptive",
    "estimand": "episode_window (estimand (a): dependence from episode start to episode end + "
                "outcome.window_after_end_days) or fixed_window (estimand (b): dependence or withdrawal assessed in the "
                "outcome.fixed_window_days after treatment ends, the same window for every duration)",
    "method": "the estimator in words (several joined with ' &&& ')",
    "min_cell_count": "disclosure control: no count from 1 to min_cell_count - 1 is published",
    "code_version": "git commit of the pipeline, when known",
    "extract_sha256_<table>": "sha256 of each extract file loaded (persons, prescriptions, diagnoses, follow_ups)",
    "<section>_<setting>": "every analysis setting of the run (config/default.toml plus overrides), flattened; "
                           "lists joined with ', '",
}


def ci_label(confidence: float) -> str:
    """``95CI`` for 0.95, as omopgenerics packages name interval bounds.

    >>> ci_label(0.95), ci_label(0.9), ci_label(0.975)
    ('95CI', '90CI', '97.5CI')
    """
    percent = round(confidence * 100, 6)
    return f"{percent:g}CI"


def estimate_type(name: str) -> str:
    """The type of an estimate name (``proportion_95CI_lower`` -> ``proportion``)."""
    generic = re.sub(r"_\d+(\.\d+)?CI_", "_{ci}_", name)
    if generic not in ESTIMATES:
        raise KeyError(f"estimate name '{name}' is not in the summarised-result contract (pipeline/results/contract.py)")
    return ESTIMATES[generic][0]


def join_names(names: list[str] | tuple[str, ...]) -> str:
    """Several names or levels as omopgenerics writes them; ``overall`` for none."""
    return SEPARATOR.join(str(n) for n in names) if names else OVERALL


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def format_value(value: Any, kind: str) -> str | None:
    """An estimate as text: integers without a decimal point, numbers at full precision
    (``repr`` round-trips a float exactly), logicals as TRUE/FALSE; None when missing."""
    if _missing(value):
        return None
    if kind == "integer":
        return str(int(round(float(value))))
    if kind == "logical":
        return "TRUE" if float(value) else "FALSE"
    if kind in ("numeric", "proportion", "percentage"):
        number = float(value)
        if math.isinf(number):
            return "Inf" if number > 0 else "-Inf"
        return repr(number)
    return str(value)


def parse_value(text: Any, kind: str) -> Any:
    """The inverse of ``format_value``; ``-`` (suppressed) and empty give None.

    >>> parse_value("0.1", "proportion"), parse_value("12", "integer"), parse_value("-", "integer")
    (0.1, 12, None)
    """
    if _missing(text) or text in (SUPPRESSED, "", "NA"):
        return None
    if kind == "integer":
        return int(text)
    if kind == "logical":
        return text == "TRUE"
    if kind in ("numeric", "proportion", "percentage"):
        return float(text)
    return text


def data_dictionary(confidence: float = 0.95) -> pd.DataFrame:
    """Every column of summarised_result.csv and settings.csv, and every estimate name, with its meaning."""
    ci = ci_label(confidence)
    rows = [{"file": "summarised_result.csv / .parquet", "kind": "column", "name": c, "type": "character",
             "meaning": COLUMN_MEANING[c]} for c in COLUMNS]
    rows += [{"file": "summarised_result.csv / .parquet", "kind": "estimate_name", "name": name.format(ci=ci),
              "type": kind, "meaning": meaning} for name, (kind, meaning) in ESTIMATES.items()]
    rows += [{"file": "settings.csv", "kind": "column", "name": name, "type": "character", "meaning": meaning}
             for name, meaning in SETTINGS.items()]
    return pd.DataFrame(rows)
