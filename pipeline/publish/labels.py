"""The one display-name table: how every internal name reads in the report.

Analysis ids, variables, levels, populations, outcome components, series and
settings are internal names (``rx_misuse_signal``, ``dep_icd``, ``gt_split``).
Every chart, table and sentence of the report gets its words from ``Names``,
built once from the run's settings, so a label is written once and follows the
settings: the headline split reads "4 weeks" at ``headline_split_days = 28`` and
"30 days" at 30. A name missing from the table is not shown raw: it is humanised
(underscores become spaces) and logged once as a warning naming this file, and
``Names.missing`` lists such names so a test can require the table to be
complete for a real run.

>>> names = Names(split_days=28)
>>> names.variable("sex", "gt_split"), Names(split_days=30).variable("sex", "gt_split")
('Sex (treated more than 4 weeks)', 'Sex (treated more than 30 days)')
>>> names.level("duration_band", ">=182"), names.level("misuse", "true")
('182 days or more', 'misuse (documented or in prescription records)')
>>> names.level("components", "dep_icd"), names.analysis("by_stratum_overall")
('ICD-10 F13.2-F13.4 diagnosis', 'Dependence by group, whole cohort')
>>> names.level("headline_group", "le_4_weeks"), names.group("gt_4_weeks")
('up to 4 weeks', 'Treated more than 4 weeks')
>>> names.series_key("complete_case", "dependence"), names.series_key("wilson", "treated_gt_split")
('complete_case', 'exposure')
>>> names.method("complete_case: Wilson (complete case, unweighted)")
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

# Populations (the ``population`` column; pipeline/estimate/columns.py) that do not depend on a setting;
# the two sides of the headline split are worded from estimate.headline_split_days (``Names``).
POPULATIONS = {"all": "whole cohort", "dependent": "people who became dependent"}

LEVELS = {
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
}

# Series by estimator (pipeline/estimate/columns.py ESTIMATORS); "wilson" shares by estimate_name.
SERIES_OF_ESTIMATOR = {
    "hajek_ipw": "primary", "aalen_johansen_ipw": "primary", "logistic_or_ipw": "primary",
    "complete_case": "complete_case", "aalen_johansen": "complete_case", "logistic_or_ipw_trend": "trend",
    "reference_level": "reference", "median": "median_ratio", "published": "anchor", "interval_check": "anchor_inside",
}
SERIES_OF_SHARE = {"dose_increase": "share_increase", "treated_gt_split": "exposure"}

_warned: set[str] = set()


def _fallback(name: str) -> str:
    if name not in _warned:
        _warned.add(name)
        log.warning("no display name for %r: add it to pipeline/publish/labels.py", name)
    return name.replace("_", " ")


def split_phrase(days: int) -> str:
    """The headline split in words: whole weeks as weeks, otherwise days.

    >>> split_phrase(28), split_phrase(30), split_phrase(7)
    ('4 weeks', '30 days', '1 week')
    """
    if days % 7 == 0:
        weeks = days // 7
        return f"{weeks} week{'s' if weeks != 1 else ''}"
    return f"{days} days"


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


class Names:
    """The display names of one run: the tables above, with the headline split worded from its setting."""

    def __init__(self, split_days: int = 28) -> None:
        self.split_days = split_days
        self.split = split_phrase(split_days)
        self.longer, self.shorter = f"more than {self.split}", f"up to {self.split}"
        self.populations = {**POPULATIONS, "gt_split": f"treated {self.longer}", "le_split": f"treated {self.shorter}"}
        # the headline groups of analysis_person, by the population they are
        self.groups = {"gt_4_weeks": "gt_split", "le_4_weeks": "le_split"}
        self.levels = {**LEVELS, ("headline_group", "gt_4_weeks"): self.longer,
                       ("headline_group", "le_4_weeks"): self.shorter}
        self.analyses = {**ANALYSES, "by_stratum": f"Dependence by group (treated {self.longer})"}
        self.series_names = {**SERIES, "exposure": f"treated {self.longer} (share of new users)"}

    @classmethod
    def of(cls, config) -> "Names":
        return cls(config.estimate.headline_split_days)

    def population(self, population: Any) -> str:
        return self.populations[str(population)] if str(population) in self.populations else _fallback(str(population))

    def group(self, group: str) -> str:
        """'gt_4_weeks' -> 'Treated more than 4 weeks' (a card's or a table's heading)."""
        text = self.population(self.groups.get(group, group))
        return text[:1].upper() + text[1:]

    def variable(self, variable: Any, population: Any = None) -> str:
        """('sex', 'gt_split') -> 'Sex (treated more than 4 weeks)'; no population (or 'all') -> 'Sex'."""
        base = str(variable or "")
        if not base:
            return ""
        label = VARIABLES.get(base) or (COMPONENTS[base][:1].upper() + COMPONENTS[base][1:] if base in COMPONENTS
                                        else _fallback(base))
        return f"{label} ({self.population(population)})" if population not in (None, "all") else label

    def short_variable(self, variable: Any, population: Any = None) -> str:
        """The short form for a chart's row label ('ending_among_dependent' -> 'Became dependent')."""
        base = str(variable or "")
        if base not in SHORT_VARIABLES:
            return self.variable(variable, population)
        return (f"{SHORT_VARIABLES[base]} ({self.population(population)})" if population not in (None, "all")
                else SHORT_VARIABLES[base])

    def level(self, variable: Any, level: Any) -> str:
        """How a level of a variable reads in the report."""
        variable, level = str(variable or ""), str(level)
        for key in ((variable, level), (variable, level.lower())):
            if key in self.levels:
                return self.levels[key]
        if variable == "duration_band" and _band(level):
            return _band(level)
        if level in COMPONENTS:
            return COMPONENTS[level]
        if level in self.groups:
            return self.population(self.groups[level])
        if level in self.populations:
            return self.populations[level]
        if variable == "misuse" and level.lower() in ("1", "yes"):
            return self.levels[("misuse", "true")]
        if "_" in level:
            return _fallback(level)
        return level

    def analysis(self, analysis: Any) -> str:
        return self.analyses[str(analysis)] if str(analysis) in self.analyses else _fallback(str(analysis))

    @staticmethod
    def method(method: Any) -> str:
        """The estimator text with its internal prefix in words ('complete_case: ...' -> 'complete case: ...')."""
        text = "" if method is None else str(method)
        return re.sub(r"\b([a-z]+(?:_[a-z0-9]+)+)\b",
                      lambda m: VARIABLES.get(m.group(1), m.group(1).replace("_", " ")), text)

    @staticmethod
    def series_key(estimator: Any, estimate_name: Any = None) -> str:
        """Which series a row belongs to, from its explicit columns (never its method text)."""
        if str(estimator) == "wilson":
            return SERIES_OF_SHARE.get(str(estimate_name), "primary")
        return SERIES_OF_ESTIMATOR.get(str(estimator), "primary")

    def series(self, estimator: Any, estimate_name: Any = None) -> str:
        return self.series_names[self.series_key(estimator, estimate_name)]

    def missing(self, names: Iterable[tuple[str, str, str, str]]) -> list[str]:
        """Internal names of (analysis, population, variable, level) rows that this table does not label.

        >>> Names().missing([("by_stratum", "gt_split", "sex", "F"), ("new_thing", "all", "odd_var", "x_y")])
        ['new_thing', 'odd_var', 'x_y']
        """
        missing: list[str] = []
        for analysis, population, variable, level in names:
            if str(analysis) not in self.analyses:
                missing.append(str(analysis))
            if str(population) not in self.populations:
                missing.append(str(population))
            base = str(variable or "")
            if base and base not in VARIABLES and base not in COMPONENTS:
                missing.append(base)
            level = str(level)
            if "_" in level and (base, level) not in self.levels and (base, level.lower()) not in self.levels \
                    and level not in COMPONENTS and level not in self.populations and level not in self.groups:
                missing.append(level)
        return list(dict.fromkeys(missing))
