"""The one display-name table: how every internal name reads in the report.

Analysis ids, variables, levels, population qualifiers, outcome components,
series and settings are internal names (``rx_misuse_signal``, ``dep_icd``,
``gt_4_weeks``). Every chart, table and sentence of the report gets its words
from here, so a label is written once. A name missing from the table is not
shown raw: it is humanised (underscores become spaces) and logged once as a
warning naming this file, and ``missing_labels`` lists such names so a test
can require the table to be complete for a real run.

>>> variable_label("sex|gt_4_weeks")
'Sex (treated more than 4 weeks)'
>>> level_label("duration_band", ">=182"), level_label("misuse|gt_4_weeks", "true")
('182 days or more', 'misuse (documented or in prescription records)')
>>> level_label("components", "dep_icd"), analysis_label("by_stratum_overall")
('ICD-10 F13.2-F13.4 diagnosis', 'Dependence by group, whole cohort')
>>> method_label("complete_case: Wilson (complete case, unweighted)")
'complete case: Wilson (complete case, unweighted)'
"""

from __future__ import annotations

import logging
import re
from typing import Any, Iterable

log = logging.getLogger(__name__)

ANALYSES = {
    "headline": "Headline", "headline_complete_case": "Headline (complete case)",
    "by_duration_band": "Dependence by treatment duration", "cumulative_incidence": "Dependence over time",
    "by_stratum": "Dependence by group (treated more than 4 weeks)",
    "by_stratum_overall": "Dependence by group, whole cohort",
    "components": "Parts of the outcome definition", "dose_response": "Adjusted odds ratios",
    "tolerance": "Tolerance (dose escalation)", "withdrawal_by_ending": "Withdrawal by how treatment ended",
    "sensitivity": "Sensitivity analyses", "anchors": "Published anchors", "weights": "Ascertainment weights",
    "by_calendar_year": "By calendar year of treatment start", "by_region": "By region",
    "headline_fixed_window": "Headline, fixed assessment window after treatment ends",
    "by_duration_band_fixed_window": "Dependence by treatment duration, fixed assessment window",
    "weights_fixed_window": "Ascertainment weights, fixed assessment window",
    "diagnostics": "Estimation diagnostics",
}

VARIABLES = {
    "headline_group": "Treatment duration", "duration_band": "Treatment duration (days)",
    "duration_days": "Treatment duration",
    "misuse": "Misuse", "rx_misuse_signal": "Misuse signal in prescription records",
    "indication": "Indication", "dose_band": "Daily dose (diazepam-equivalent mg/day)",
    "age_band": "Age at start (years)", "sex": "Sex", "ending": "How treatment ended",
    "ending_among_ascertained": "Withdrawal among people with a known outcome",
    "ending_among_dependent": "Withdrawal among people who became dependent",
    "component": "Outcome component", "ingredient": "Ingredient", "region": "Region",
    "calendar_year": "Calendar year of treatment start",
    # sensitivity settings
    "persistence_window_days": "Gap allowed between supplies (days)",
    "sds_cutoff": "Severity of Dependence Scale cut-off",
    "window_after_end_days": "Outcome window after treatment ends (days)",
    "washout_days": "Washout before the first dispensing (days)",
    "stockpiling": "Stockpiling of early refills",
    # anchors
    "marriott_tyrer_1993": "Marriott & Tyrer 1993", "marriott_1993": "Marriott & Tyrer 1993",
    "rickels_1983": "Rickels et al. 1983", "anchor": "Published anchor",
    "effective_sample_size": "Effective sample size (Kish)", "ipw": "Inverse-probability weights",
    # ascertainment weights
    "ess": "Effective sample size (Kish)", "max": "Largest weight", "min": "Smallest weight",
    "p50": "Median weight", "p99": "99th percentile weight", "mean": "Mean weight",
    "p1": "1st percentile weight", "p5": "5th percentile weight", "p25": "25th percentile weight",
    "p75": "75th percentile weight", "p95": "95th percentile weight",
    # estimand (b) and diagnostics
    "drop_ongoing": "Episodes ended by observation end left out",
    "weights_truncated": "Weights truncated at percentiles",
    "weights_truncated_fixed_window": "Weights truncated at percentiles (fixed assessment window)",
    "only_unassessing_records": "People whose only records in the window assess nothing",
    "weight_model_converged": "Weight model converged (1 = yes)",
    "weight_truncation_bounds": "Weights at the truncation percentiles",
    "positivity_violation": "Weight-model level without any assessed person",
}

# Short forms for chart axis labels, where a row label is "<variable>: <level>" (falls back to VARIABLES).
SHORT_VARIABLES = {
    "ending_among_ascertained": "Known outcome", "ending_among_dependent": "Became dependent",
    "dose_band": "Dose (mg/day)", "age_band": "Age", "duration_band": "Duration", "duration_days": "Duration",
    "rx_misuse_signal": "Prescription misuse signal",
    "dep_icd": "ICD-10 diagnosis", "dep_withdrawal": "Withdrawal documented", "dep_assessed": "Clinician judged",
    "dep_sds": "SDS at or above cut-off",
}

# Outcome components (the ``variable`` of ``components`` rows).
COMPONENTS = {
    "dep_icd": "ICD-10 F13.2-F13.4 diagnosis", "dep_withdrawal": "withdrawal symptoms documented",
    "dep_assessed": "clinician judged dependent", "dep_sds": "Severity of Dependence Scale at or above cut-off",
    "any": "any component (the outcome)",
}

# Population qualifiers: after ``|`` in a variable, or a level naming a population.
POPULATIONS = {
    "gt_4_weeks": "treated more than 4 weeks", "le_4_weeks": "treated up to 4 weeks", "all": "whole cohort",
    "ascertained": "people with a known outcome", "dependent": "people who became dependent",
    "ge_4_weeks": "treated 4 weeks or longer", "lt_8_months": "treated under 8 months",
    "ge_8_months": "treated 8 months or longer",
}

LEVELS = {
    ("headline_group", "le_4_weeks"): "up to 4 weeks", ("headline_group", "gt_4_weeks"): "more than 4 weeks",
    ("headline_group", "all"): "everyone",
    ("only_unassessing_records", "estimand_a"): "estimand (a): episode window",
    ("only_unassessing_records", "estimand_b"): "estimand (b): fixed window after treatment",
    ("weight_model_converged", "estimand_a"): "estimand (a): episode window",
    ("weight_model_converged", "estimand_b"): "estimand (b): fixed window after treatment",
    ("weight_truncation_bounds", "estimand_a"): "estimand (a): episode window",
    ("weight_truncation_bounds", "estimand_b"): "estimand (b): fixed window after treatment",
    ("misuse", "true"): "misuse (documented or in prescription records)",
    ("misuse", "false"): "no misuse signal (supervised use)",
    ("misuse", "misuse"): "misuse (documented or in prescription records)",
    ("misuse", "supervised"): "supervised use (no misuse)",
    ("rx_misuse_signal", "signal"): "misuse signal in prescription records",
    ("rx_misuse_signal", "no_signal"): "no misuse signal in prescription records",
    ("sex", "F"): "female", ("sex", "M"): "male", ("sex", "X"): "another sex (X)", ("sex", "U"): "sex unknown",
    ("ending", "taper"): "tapered", ("ending", "abrupt"): "stopped abruptly", ("ending", "ongoing"): "still ongoing",
    ("indication", "muscle_spasm"): "muscle spasm", ("indication", "all"): "all indications",
    ("duration_days", "per doubling"): "per doubling of duration (trend)",
    ("stockpiling", "true"): "on", ("stockpiling", "false"): "off",
}
for _ending in ("ending_among_ascertained", "ending_among_dependent"):
    LEVELS.update({(_ending, "taper"): "tapered", (_ending, "abrupt"): "stopped abruptly",
                   (_ending, "ongoing"): "still ongoing"})

# Series of estimates drawn or listed side by side (``series_key`` names them).
SERIES = {
    "primary": "primary (weighted for ascertainment)",
    "complete_case": "complete case (ascertained outcomes only)",
    "reference": "reference level (odds ratio 1 by definition)",
    "trend": "trend model (per doubling of duration)",
    "median_ratio": "median dose-escalation ratio",
    "share_increase": "share with a dose increase",
    "anchor": "published figure",
    "anchor_inside": "published figure inside our interval",
    "exposure": "treated more than 4 weeks (share of new users)",
}

_warned: set[str] = set()


def _fallback(name: str) -> str:
    if name not in _warned:
        _warned.add(name)
        log.warning("no display name for %r: add it to pipeline/publish/labels.py", name)
    return name.replace("_", " ")


def base_variable(variable: Any) -> str:
    """The variable without its population qualifier ('sex|gt_4_weeks' -> 'sex')."""
    return str(variable).split("|")[0]


def population_label(qualifier: str) -> str:
    return POPULATIONS[qualifier] if qualifier in POPULATIONS else _fallback(qualifier)


def variable_label(variable: Any) -> str:
    """'sex|gt_4_weeks' -> 'Sex (treated more than 4 weeks)'."""
    base, _, qualifier = str(variable or "").partition("|")
    if not base:
        return ""
    label = VARIABLES.get(base) or (COMPONENTS[base][:1].upper() + COMPONENTS[base][1:] if base in COMPONENTS
                                    else _fallback(base))
    return f"{label} ({population_label(qualifier)})" if qualifier else label


def short_variable_label(variable: Any) -> str:
    """The short form for a chart's row label ('ending_among_dependent' -> 'Became dependent')."""
    base, _, qualifier = str(variable or "").partition("|")
    if base not in SHORT_VARIABLES:
        return variable_label(variable)
    return f"{SHORT_VARIABLES[base]} ({population_label(qualifier)})" if qualifier else SHORT_VARIABLES[base]


def _band(level: str) -> str | None:
    """Duration-band style levels: '<14' -> 'under 14 days', '>=182' -> '182 days or more', '14-27' -> '14-27 days'."""
    match = re.fullmatch(r"\s*(<|>=|>|<=)?\s*(\d+)(?:\s*-\s*(\d+))?\s*", level)
    if not match:
        return None
    op, low, high = match.groups()
    if high:
        return f"{low}-{high} days"
    return {"<": f"under {low} days", ">=": f"{low} days or more", ">": f"more than {low} days",
            "<=": f"{low} days or fewer", None: f"{low} days"}[op]


def level_label(variable: Any, level: Any) -> str:
    """How a level of a variable reads in the report."""
    variable, level = base_variable(variable), str(level)
    for key in ((variable, level), (variable, level.lower())):
        if key in LEVELS:
            return LEVELS[key]
    if variable == "duration_band" and _band(level):
        return _band(level)
    if level in COMPONENTS:
        return COMPONENTS[level]
    if level in POPULATIONS:
        return POPULATIONS[level]
    if variable == "misuse" and level.lower() in ("1", "yes"):
        return LEVELS[("misuse", "true")]
    if "_" in level:
        return _fallback(level)
    return level


def analysis_label(analysis: Any) -> str:
    return ANALYSES[str(analysis)] if str(analysis) in ANALYSES else _fallback(str(analysis))


def method_label(method: Any) -> str:
    """The estimator text with its internal prefix in words ('complete_case: ...' -> 'complete case: ...')."""
    text = "" if method is None else str(method)
    return re.sub(r"\b([a-z]+(?:_[a-z0-9]+)+)\b", lambda m: VARIABLES.get(m.group(1), m.group(1).replace("_", " ")),
                  text)


def series_key(analysis: Any, method: Any) -> str:
    """Which series a row belongs to, from its analysis and estimator (one place reads method text)."""
    text = str(method or "").lower().replace("-", " ").replace("_", " ")
    if "inside our ci" in text or "inside our interval" in text:
        return "anchor_inside"
    if text.startswith("anchor"):
        return "anchor"
    if text.startswith("exposure"):
        return "exposure"
    if "reference level" in text:
        return "reference"
    if "trend model" in text:
        return "trend"
    if "median dose escalation ratio" in text or "escalation ratio" in text:
        return "median_ratio"
    if "share with a dose increase" in text:
        return "share_increase"
    if "complete_case" in str(analysis) or text.startswith("complete case") or "complete case" in text:
        return "complete_case"
    return "primary"


def series_label(analysis: Any, method: Any) -> str:
    return SERIES[series_key(analysis, method)]


def missing_labels(names: Iterable[tuple[str, str, str]]) -> list[str]:
    """Internal names of (analysis, variable, level) rows that this table does not label.

    >>> missing_labels([("by_stratum", "sex|gt_4_weeks", "F"), ("new_thing", "odd_var", "x_y")])
    ['new_thing', 'odd_var', 'x_y']
    """
    missing: list[str] = []
    for analysis, variable, level in names:
        if str(analysis) not in ANALYSES:
            missing.append(str(analysis))
        base, _, qualifier = str(variable or "").partition("|")
        if base and base not in VARIABLES and base not in COMPONENTS:
            missing.append(base)
        if qualifier and qualifier not in POPULATIONS:
            missing.append(qualifier)
        level = str(level)
        if "_" in level and (base, level) not in LEVELS and (base, level.lower()) not in LEVELS \
                and level not in COMPONENTS and level not in POPULATIONS:
            missing.append(level)
    return list(dict.fromkeys(missing))
