"""REFERENCE ONLY (used by tests/test_aggregated_estimators.py, never by the pipeline): the
person-level estimate stage before it moved to sufficient statistics. Frozen copy of
pipeline/estimate/run.py at ce1a28a (main), with ``stats`` the frozen person-level reference_stats.

Estimate stage: read ``analysis_person``, write the long ``estimates`` table.

Conventions of ``estimates`` (see docs/estimation.md for the full list):

- ``analysis``: headline, by_duration_band, by_stratum, components,
  cumulative_incidence, dose_response, tolerance, withdrawal_by_ending,
  weights, anchors, sensitivity (estimand (a): episode start to episode end
  + 90 days); headline_fixed_window, by_duration_band_fixed_window,
  weights_fixed_window (estimand (b): the fixed window after treatment ends);
  diagnostics (positivity, convergence, records that assess nothing).
- ``method`` starts with ``"primary: "`` (ascertainment-corrected, IPW) or
  ``"complete_case: "`` (ascertained persons only, unweighted); other
  prefixes (``anchor: ``, ``tolerance: ``, ``weights: ``) are descriptive.
  Filter with ``method.str.startswith(PRIMARY)``.
- the population of a row is production's explicit ``population`` column (not compared
  here; ``variable`` is the bare variable, as production writes it).
- ``n`` of a primary row = all persons in the group (ascertained or not);
  ``n_assessed`` = those whose outcome was assessed; ``events`` = observed
  events among the assessed (unweighted): ``events / n_assessed`` is the
  complete-case share, ``events / n`` is nothing. ``n`` of a complete-case
  row = ``n_assessed``.

>>> from bench.simulate import make_mar_person_table
>>> person, _ = make_mar_person_table(seed=3, persons=2000)
>>> result = headline_from_person_table(person, Config())
>>> sorted(result), sorted(result["headline"]["gt_4_weeks"])
(['complete_case', 'config', 'headline'], ['ci_high', 'ci_low', 'estimate', 'events', 'method', 'n', 'n_assessed'])
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import duckdb
import numpy as np
import pandas as pd

from pipeline.config import Config
from pipeline.errors import PipelineError, StageOrderError
import reference_stats as stats
from pipeline.warehouse import table_exists

log = logging.getLogger(__name__)

# The labels, method texts, covariate lists and anchor figures are production's own (one
# place holds them); what is frozen here is the person-level estimator logic.
from pipeline.estimate.run import (  # noqa: E402
    COMPLETE_CASE, COMPONENTS, DOSE_RESPONSE_CATEGORICAL, ESTIMANDS, ESTIMATE_COLUMNS, FIXED, HEADLINE_GROUPS,
    MARRIOTT_TYRER_DAYS, MARRIOTT_TYRER_VALUE, METHOD_AJ_COMPLETE_CASE, METHOD_AJ_PRIMARY, METHOD_COMPLETE_CASE,
    METHOD_EXPOSURE, METHOD_OR, METHOD_PRIMARY, MISUSE_STRATUM_SOURCE, PRIMARY, REQUIRED_COLUMNS, RICKELS_DAYS,
    RICKELS_VALUES, RX_FLAGS, SENSITIVITY_SETTINGS, STRATA, STRATUM_LABELS, CIF_GRID_DAYS, WEIGHT_BINARY,
    WEIGHT_CATEGORICAL, WEIGHT_CONTINUOUS, WEIGHT_STATS,
)

Rebuild = Callable[[Config], pd.DataFrame]


# --------------------------------------------------------------------------- input


def prepare(person: pd.DataFrame, config: Config) -> pd.DataFrame:
    """Check ``analysis_person`` has what the estimators need; add helper columns.

    Helper columns start with ``_``: ``_outcome_known`` (ascertained and
    dependence not NULL), ``_gt_4_weeks``, ``_log_duration_days``, and
    ``_cif_time`` / ``_cif_cause`` (days from episode start; 1 dependence,
    2 death, 0 censored at days_followed).
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in person.columns]
    if missing:
        raise PipelineError(
            f"analysis_person lacks column(s) {', '.join(missing)}; rerun the transform stage "
            "(python -m pipeline transform) so it matches docs/ARCHITECTURE.md"
        )
    if not len(person):
        raise PipelineError("analysis_person is empty: no cohort persons to estimate from; check cohort_attrition")
    person = person.reset_index(drop=True).copy()
    dependence = stats.as_float(person["dependence"])
    ascertained = np.nan_to_num(stats.as_float(person["ascertained"]), nan=0.0) > 0
    known = ascertained & ~np.isnan(dependence)
    person["_outcome_known"] = known
    person["_dependence"] = np.where(known, dependence, np.nan)
    for column in COMPONENTS:
        # among ascertained persons a NULL component means "not recorded" = 0
        person["_" + column] = np.where(known, np.nan_to_num(stats.as_float(person[column]), nan=0.0), np.nan)
    duration = stats.as_float(person["duration_days"])
    person["_gt_4_weeks"] = (person["headline_group"].astype("str") == "gt_4_weeks").to_numpy(dtype=float)
    person["_log_duration_days"] = np.log(np.maximum(duration, 1.0))
    died = np.nan_to_num(stats.as_float(person["died_in_window"]), nan=0.0) > 0
    dependent = known & (dependence > 0)
    time_days = np.where(
        dependent,
        stats.as_float(person["days_to_dependence"]),
        np.where(died, stats.as_float(person["days_to_death"]), stats.as_float(person["days_followed"])),
    )
    person["_cif_time"] = np.where(known, time_days, np.nan)
    person["_cif_cause"] = np.where(dependent, 1, np.where(died, 2, 0))
    # estimand (b): defined when the treatment ended while observed
    person["_in_fixed_window"] = np.nan_to_num(stats.as_float(person["fixed_window_defined"]), nan=0.0) > 0
    dependence_fixed = stats.as_float(person["dependence_fixed"])
    known_fixed = (np.nan_to_num(stats.as_float(person["ascertained_fixed"]), nan=0.0) > 0) & ~np.isnan(dependence_fixed)
    person["_outcome_known_fixed"] = known_fixed & person["_in_fixed_window"].to_numpy()
    person["_dependence_fixed"] = np.where(person["_outcome_known_fixed"], dependence_fixed, np.nan)
    person["_misuse_known"] = person[MISUSE_STRATUM_SOURCE]
    return person


def fixed_window_view(person: pd.DataFrame) -> pd.DataFrame:
    """Estimand (b)'s person table: persons whose treatment ended while observed, with the
    fixed window's ascertainment and outcome in ``_outcome_known`` / ``_dependence``."""
    view = person[person["_in_fixed_window"].to_numpy(dtype=bool)].reset_index(drop=True).copy()
    view["_outcome_known"] = view["_outcome_known_fixed"].to_numpy(dtype=bool)
    view["_dependence"] = view["_dependence_fixed"]
    return view


def positivity(person: pd.DataFrame) -> tuple[np.ndarray, list[dict]]:
    """Persons in weight-model levels that have assessed persons, and the levels that have none.

    Without an assessed person in a level, no weight can stand for that level's
    persons (a positivity violation): the estimand is restricted to the other
    levels and labelled so. Dropping such a level drops no assessed person, so
    one pass suffices.

    >>> frame = pd.DataFrame({"sex": ["F", "F", "M", "M"], "_outcome_known": [True, False, False, False]})
    >>> frame = frame.assign(age_band="50-64", indication="anxiety", dose_band="<5", duration_band="<14")
    >>> for flag in WEIGHT_BINARY: frame[flag] = False
    >>> keep, violations = positivity(frame)
    >>> keep.tolist(), violations
    ([True, True, False, False], [{'variable': 'sex', 'level': 'M', 'persons': 2}])
    """
    known = person["_outcome_known"].to_numpy(dtype=bool)
    keep = np.ones(len(person), dtype=bool)
    violations = []
    for column in WEIGHT_CATEGORICAL:
        values = person[column].astype("str").fillna("unknown").to_numpy(dtype=object)
        for level in sorted(set(values)):
            members = values == level
            if not (members & known).any():
                violations.append({"variable": column, "level": str(level), "persons": int(members.sum())})
                keep &= ~members
    for column in WEIGHT_BINARY:
        members = np.nan_to_num(stats.as_float(person[column]), nan=0.0) > 0
        if members.any() and not (members & known).any():
            violations.append({"variable": column, "level": "true", "persons": int(members.sum())})
            keep &= ~members
    return keep, violations


def restriction_label(violations: list[dict]) -> str:
    """Suffix of every primary method string when positivity fails (no counts: methods are not suppressed).

    >>> restriction_label([{"variable": "sex", "level": "M", "persons": 2}])
    '; RESTRICTED to weight-model levels with assessed persons (excluded: sex: M)'
    """
    if not violations:
        return ""
    return "; RESTRICTED to weight-model levels with assessed persons (excluded: " + ", ".join(
        f"{v['variable']}: {v['level']}" for v in violations) + ")"


def fit_weights(person: pd.DataFrame, config: Config) -> stats.AscertainmentModel:
    """The weight model, fitted once on the whole cohort (``person`` from ``prepare``)."""
    X, names = stats.design_matrix(
        person,
        categorical=WEIGHT_CATEGORICAL,
        binary=WEIGHT_BINARY,
        continuous=WEIGHT_CONTINUOUS,
        references={"duration_band": config.estimate.band_labels()[0]},
    )
    return stats.fit_ascertainment_model(X, person["_outcome_known"].to_numpy(), names)


def truncated(model: stats.AscertainmentModel, config: Config) -> stats.AscertainmentModel:
    """The weight model with weights clipped to ``estimate.weight_truncation_percentiles``."""
    low, high = config.estimate.weight_truncation_percentiles
    return stats.truncate_weights(model, low, high)


# --------------------------------------------------------------------------- rows


def _row(analysis, variable, level, result, method, time_days=None, n=None, events=None, n_assessed=None) -> dict:
    return {
        "analysis": analysis,
        "variable": variable,
        "level": str(level),
        "time_days": time_days,
        "n": result.get("n") if n is None else n,
        "n_assessed": result.get("n_ascertained") if n_assessed is None else n_assessed,
        "events": result.get("events") if events is None else events,
        "estimate": result.get("estimate"),
        "ci_low": result.get("ci_low"),
        "ci_high": result.get("ci_high"),
        "method": method,
    }


def _proportion_rows(analysis, variable, level, person, model, group, outcome="_dependence", among=None, confidence=0.95,
                     label=""):
    primary = stats.ipw_proportion(person[outcome], model, group=group, among=among, confidence=confidence)
    include = group if among is None else group & (np.nan_to_num(stats.as_float(among), nan=0.0) > 0)
    complete = stats.complete_case_proportion(person[outcome], include=include, confidence=confidence)
    complete["n_ascertained"] = complete["n"]
    return [
        _row(analysis, variable, level, primary, METHOD_PRIMARY + label),
        _row(analysis, variable, level, complete, METHOD_COMPLETE_CASE + label),
    ], primary, complete


def _levels(values: pd.Series, order=None) -> tuple[np.ndarray, list[str]]:
    text = values.astype("str").fillna("unknown")
    text = text.str.lower() if values.dtype == "boolean" or values.dtype == bool else text
    present = list(pd.unique(text))
    if order:
        ordered = [lvl for lvl in order if lvl in present] + sorted(lvl for lvl in present if lvl not in order)
    else:
        ordered = sorted(present)
    return text.to_numpy(dtype=object), ordered


def headline_rows(person, model, config, analysis="headline", label="") -> tuple[list[dict], dict]:
    """Rows of analysis ``headline`` (or ``headline_fixed_window``) and the headline.json dict."""
    conf = config.estimate.confidence_level
    rows, out = [], {"headline": {}, "complete_case": {}, "config": config.to_dict()}
    group_values = person["headline_group"].astype("str").to_numpy(dtype=object)
    for group in HEADLINE_GROUPS:
        new, primary, complete = _proportion_rows(analysis, "headline_group", group, person, model, group_values == group,
                                                  confidence=conf, label=label)
        rows += new
        out["headline"][group] = _headline_entry(primary, METHOD_PRIMARY + label)
        out["complete_case"][group] = _headline_entry(complete, METHOD_COMPLETE_CASE + label)
    new, _, _ = _proportion_rows(analysis, "headline_group", "all", person, model, np.ones(len(person), bool),
                                 confidence=conf, label=label)
    return rows + new, out


def _headline_entry(result: dict, method: str) -> dict:
    def number(value):
        return None if value is None or (isinstance(value, float) and np.isnan(value)) else float(value)

    return {
        "estimate": number(result["estimate"]),
        "ci_low": number(result["ci_low"]),
        "ci_high": number(result["ci_high"]),
        "n": int(result["n"]),
        "n_assessed": int(result.get("n_ascertained", result.get("n_assessed", result["n"]))),
        "events": int(result["events"]),
        "method": method,
    }


def headline_from_person_table(person: pd.DataFrame, config: Config, estimand: str = "a") -> dict:
    """The headline.json dict straight from an ``analysis_person`` DataFrame (``estimand`` "a" or "b")."""
    person = prepare(person, config)
    if estimand == "b":
        person = fixed_window_view(person)
    if not person["_outcome_known"].any():
        return headline_rows(person, _unassessed_model(len(person)), config)[1]
    keep, violations = positivity(person)
    person = person[keep].reset_index(drop=True)
    return headline_rows(person, fit_weights(person, config), config, label=restriction_label(violations))[1]


def headline_from_estimates(estimates: pd.DataFrame, config: Config, analysis: str = "headline") -> dict:
    """Rebuild the headline.json dict from the ``estimates`` table (for the publish stage)."""
    rows = estimates[(estimates["analysis"] == analysis) & (estimates["variable"] == "headline_group")]
    out = {"headline": {}, "complete_case": {}, "config": config.to_dict()}
    for key, prefix in (("headline", PRIMARY), ("complete_case", COMPLETE_CASE)):
        for group in HEADLINE_GROUPS:
            match = rows[(rows["level"] == group) & rows["method"].str.startswith(prefix)]
            if len(match) != 1:
                raise StageOrderError(f"estimates has {len(match)} '{prefix.strip()}' headline rows for {group}; rerun the estimate stage")
            out[key][group] = _headline_entry(match.iloc[0].to_dict(), match.iloc[0]["method"])
    return out


def duration_band_rows(person, model, config, analysis="by_duration_band", label="") -> list[dict]:
    rows = []
    values, levels = _levels(person["duration_band"], config.estimate.band_labels())
    for level in levels:
        rows += _proportion_rows(analysis, "duration_band", level, person, model, values == level,
                                 confidence=config.estimate.confidence_level, label=label)[0]
    return rows


def stratum_rows(person, model, config) -> list[dict]:
    rows = []
    # by_stratum: within > 4 weeks (the population of the headline question); by_stratum_overall: whole cohort
    populations = {"by_stratum": person["_gt_4_weeks"].to_numpy() > 0, "by_stratum_overall": np.ones(len(person), dtype=bool)}
    for column in STRATA:
        values, levels = _levels(person["_misuse_known"] if column == "misuse" else person[column])
        labels = STRATUM_LABELS.get(column, {})
        for analysis, in_population in populations.items():
            for level in levels:
                group = in_population & (values == level)
                rows += _proportion_rows(
                    analysis, column, labels.get(level, level), person, model, group,
                    confidence=config.estimate.confidence_level,
                )[0]
    return rows


def component_rows(person, model, config) -> list[dict]:
    rows = []
    group_values = person["headline_group"].astype("str").to_numpy(dtype=object)
    groups = {g: group_values == g for g in HEADLINE_GROUPS} | {"all": np.ones(len(person), dtype=bool)}
    for component in COMPONENTS:
        for level, group in groups.items():
            rows += _proportion_rows("components", component, level, person, model, group, outcome="_" + component, confidence=config.estimate.confidence_level)[0]
    return rows


def cumulative_incidence_rows(person, model, config) -> list[dict]:
    rows = []
    conf = config.estimate.confidence_level
    time_days = person["_cif_time"].to_numpy()
    cause = person["_cif_cause"].to_numpy()
    known = ~np.isnan(time_days)
    if not known.any():
        return rows
    grid = np.arange(0, np.nanmax(time_days) + CIF_GRID_DAYS, CIF_GRID_DAYS)
    group_values = person["headline_group"].astype("str").to_numpy(dtype=object)
    groups = {g: group_values == g for g in HEADLINE_GROUPS} | {"all": np.ones(len(person), dtype=bool)}
    for level, group in groups.items():
        if not (group & known).any():
            continue
        last = np.nanmax(time_days[group & known])
        times = grid[grid <= last + CIF_GRID_DAYS - 1]
        for method, kwargs in ((METHOD_AJ_PRIMARY, {"model": model}), (METHOD_AJ_COMPLETE_CASE, {})):
            curve = stats.aalen_johansen(time_days, cause, include=group, times=times, confidence=conf, **kwargs)
            for record in curve.to_dict("records"):
                rows.append(
                    _row("cumulative_incidence", "headline_group", level, record, method,
                         time_days=int(record["time_days"]), n=int(record["at_risk"]), events=int(record["events"]))
                )
    return rows


def dose_response_rows(person, model, config) -> list[dict]:
    """Odds ratios of dependence: bands model (duration band, dose band, age, sex,
    indication, misuse) and a trend model with log2(duration) instead of bands."""
    rows = []
    conf = config.estimate.confidence_level
    known = person["_outcome_known"].to_numpy(dtype=bool)
    outcome = np.nan_to_num(stats.as_float(person["_dependence"]))[known]
    if outcome.size == 0 or outcome.min() == outcome.max():
        # No persons with a known outcome, or no contrast (zero events is a result,
        # but no model can be fitted to it): the report says there is no model.
        return rows
    references = {"duration_band": config.estimate.band_labels()[0]}
    frame = person.assign(
        misuse=np.nan_to_num(stats.as_float(person["misuse"]), nan=0.0),
        log2_duration_days=np.log2(np.maximum(stats.as_float(person["duration_days"]), 1.0)),
    )
    specs = (
        ("bands", DOSE_RESPONSE_CATEGORICAL, ("misuse",), ()),
        ("trend", DOSE_RESPONSE_CATEGORICAL[1:], ("misuse",), ("log2_duration_days",)),
    )
    for label, categorical, binary, continuous in specs:
        X, names = stats.design_matrix(frame, categorical, binary, continuous, references=references)
        table = stats.logistic_odds_ratios(person["_dependence"], X, names, model=model, confidence=conf)
        known = person["_outcome_known"].to_numpy()
        y = np.nan_to_num(person["_dependence"].to_numpy())
        for record in table.to_dict("records"):
            term = record["term"]
            if label == "trend" and term != "log2_duration_days":
                continue  # the trend model's other terms repeat the bands model
            if "[" in term:
                variable, level = term[:-1].split("[", 1)
            elif term == "log2_duration_days":
                variable, level = "duration_days", "per doubling"
            else:
                variable, level = term, "true"
            rows.append(_row("dose_response", variable, level, record, f"{METHOD_OR} ({label} model)"))
        if label == "bands":
            for column in categorical:  # reference rows: OR 1 by definition
                values, levels = _levels(frame[column])
                used = {r["term"][len(column) + 1 : -1] for r in table.to_dict("records") if r["term"].startswith(column + "[")}
                for level in levels:
                    if level not in used:
                        members = known & (values == level)
                        rows.append(_row("dose_response", column, level, {"estimate": 1.0}, f"{METHOD_OR} (bands model; reference level)",
                                         n=int(members.sum()), events=int(y[members].sum())))
            members = known & (frame["misuse"].to_numpy() == 0)
            rows.append(_row("dose_response", "misuse", "false", {"estimate": 1.0}, f"{METHOD_OR} (bands model; reference level)",
                             n=int(members.sum()), events=int(y[members].sum())))
    return rows


def tolerance_rows(person, config) -> list[dict]:
    """Dose escalation by indication (all cohort persons; from prescriptions, so no weighting)."""
    rows = []
    conf = config.estimate.confidence_level
    values, levels = _levels(person["indication"])
    increased = stats.as_float(person["days_to_first_increase"])
    ratio = stats.as_float(person["dose_escalation_ratio"])
    for level in [*levels, "all"]:
        group = np.ones(len(person), bool) if level == "all" else values == level
        share = stats.complete_case_proportion(np.where(group, ~np.isnan(increased), np.nan), confidence=conf)
        rows.append(_row("tolerance", "indication", level, share, "tolerance: share with a dose increase, Wilson CI"))
        median = stats.median_interval(ratio[group], conf)
        rows.append(_row("tolerance", "indication", level, median, "tolerance: median dose escalation ratio, order-statistic CI", events=None))
    return rows


def withdrawal_rows(person, model, config) -> list[dict]:
    """Withdrawal symptoms by how the episode ended: among ascertained and among dependent persons."""
    rows = []
    values, levels = _levels(person["ending"], ["taper", "abrupt", "ongoing"])
    dependent = np.nan_to_num(person["_dependence"].to_numpy(), nan=0.0)
    for level in levels:
        group = values == level
        rows += _proportion_rows("withdrawal_by_ending", "ending_among_ascertained", level, person, model, group,
                                 outcome="_dep_withdrawal", confidence=config.estimate.confidence_level)[0]
        rows += _proportion_rows("withdrawal_by_ending", "ending_among_dependent", level, person, model, group,
                                 outcome="_dep_withdrawal", among=dependent, confidence=config.estimate.confidence_level)[0]
    return rows




def weight_rows(person, model, analysis="weights", label="") -> tuple[list[dict], dict]:
    """Distribution of the weights (percentiles, Kish effective sample size) per headline group."""
    rows, summaries = [], {}
    group_values = person["headline_group"].astype("str").to_numpy(dtype=object)
    groups = {"all": np.ones(len(person), dtype=bool)} | {g: group_values == g for g in HEADLINE_GROUPS}
    for population, group in groups.items():
        summary = stats.weight_summary(np.where(group, model.weight, 0.0))
        summaries[population] = summary
        for stat in WEIGHT_STATS:
            rows.append(_row(analysis, stat, population, {"estimate": summary[stat]},
                             "weights: inverse probability of ascertainment (ess = Kish effective sample size)" + label,
                             n=int(group.sum()), events=summary["n"], n_assessed=summary["n"]))
    return rows, summaries


def anchor_rows(person, model, config) -> tuple[list[dict], dict]:
    """Our estimates for the groups comparable to the published anchors."""
    conf = config.estimate.confidence_level
    duration = stats.as_float(person["duration_days"])
    ended = person["ending"].astype("str").isin(["taper", "abrupt"]).to_numpy()
    specs = [
        ("marriott_tyrer_1993", ">=28 days", duration >= MARRIOTT_TYRER_DAYS, "_dependence", MARRIOTT_TYRER_VALUE,
         "Marriott & Tyrer (1993) reported dependence in 'almost one-third' of patients on regular prescriptions for 4 weeks or longer",
         "of persons treated for 4 weeks or longer developed physical dependence within the outcome window"),
        ("rickels_1983", "<240 days, ended", (duration < RICKELS_DAYS) & ended, "_dep_withdrawal", RICKELS_VALUES["lt_240_days"],
         "Rickels et al. (1983) reported withdrawal in 5% after < 8 months of diazepam",
         "of persons whose episode ended after less than 8 months (240 days) had withdrawal symptoms recorded"),
        ("rickels_1983", ">=240 days, ended", (duration >= RICKELS_DAYS) & ended, "_dep_withdrawal", RICKELS_VALUES["ge_240_days"],
         "Rickels et al. (1983) reported withdrawal in 43% after >= 8 months of diazepam",
         "of persons whose episode ended after 8 months (240 days) or more had withdrawal symptoms recorded"),
    ]
    rows, anchors = [], {}
    for key, level, group, outcome, value, published, ours in specs:
        result = stats.ipw_proportion(person[outcome], model, group=group, confidence=conf)
        estimable = not np.isnan(result["estimate"])
        consistent = bool(estimable and result["ci_low"] <= value <= result["ci_high"])
        rows.append(_row("anchors", key, level, result, METHOD_PRIMARY))
        rows.append(_row("anchors", key, level, {"estimate": value}, f"anchor: {published}", n=None, events=None))
        rows.append(_row("anchors", key, level, {"estimate": float(consistent) if estimable else None},
                         "anchor: published figure inside our CI (1 = yes, 0 = no)", n=None, events=None))
        if estimable:
            sentence = (
                f"An estimated {result['estimate']:.1%} (95% CI {result['ci_low']:.1%} to {result['ci_high']:.1%}) {ours}. "
                f"{published}: our interval {'is consistent with' if consistent else 'excludes'} {value:.0%}."
            )
        else:
            sentence = f"Not estimable: no ascertained persons in the group comparable to {published.split(' reported')[0]}."
        anchors[f"{key}|{level}"] = {
            "group": level, "outcome": outcome.lstrip("_"), "anchor": value, "estimate": result["estimate"],
            "ci_low": result["ci_low"], "ci_high": result["ci_high"], "consistent": consistent, "sentence": sentence,
        }
    return rows, anchors




def trend_rows(person, model, config) -> list[dict]:
    """Trends and geography (issue 15): per calendar year of treatment start and per region,
    the share of new users treated > ``headline_split_days`` (exposure rows: n = new users,
    events = those treated longer; duration is known for everyone, so no weighting) and
    dependence among all new users and among those treated longer (primary and complete case).

    Analyses ``by_calendar_year`` / ``by_region``; ``variable`` is ``calendar_year`` or
    ``region`` with the population after ``|`` for the dependence rows, as in ``by_stratum``.
    Years come from ``episode_start``: a provider's per-person date shift moves them too.
    """
    rows = []
    conf = config.estimate.confidence_level
    longer = person["_gt_4_weeks"].to_numpy() > 0
    breakdowns = {}  # a person table without the column (e.g. a simulation's) has no such breakdown
    if "episode_start" in person.columns:
        start = pd.to_datetime(person["episode_start"], errors="coerce")
        breakdowns["by_calendar_year"] = ("calendar_year", start.dt.year.astype("Int64").astype("string").fillna("unknown"))
    if "region" in person.columns:
        region = person["region"].astype("string").str.strip()
        breakdowns["by_region"] = ("region", region.where(region != "", pd.NA).fillna("unknown"))
    for analysis, (column, series) in breakdowns.items():
        values, levels = _levels(series)
        for level in levels:
            group = values == level
            share = stats.complete_case_proportion(np.where(group, longer, np.nan), confidence=conf)
            rows.append(_row(analysis, column, level, share, METHOD_EXPOSURE))
            for population, among in (("all", np.ones(len(person), dtype=bool)), ("gt_4_weeks", longer)):
                rows += _proportion_rows(analysis, column, level, person, model, group & among,
                                         confidence=conf)[0]
    return rows


def to_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows as the typed ``estimates`` frame."""
    frame = pd.DataFrame(rows, columns=list(ESTIMATE_COLUMNS))
    for column in ("analysis", "variable", "level", "method"):
        frame[column] = frame[column].astype("str")
    for column in ("time_days", "n", "events"):
        frame[column] = pd.array([None if v is None or (isinstance(v, float) and np.isnan(v)) else int(v) for v in frame[column]], dtype="Int64")
    for column in ("estimate", "ci_low", "ci_high"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return frame


def _labelled(rows: list[dict], label: str) -> list[dict]:
    """Append the positivity restriction label to every primary / complete-case method not yet carrying it."""
    if not label:
        return rows
    for row in rows:
        method = row["method"]
        if method.startswith((PRIMARY, COMPLETE_CASE, "weights: ")) and not method.endswith(label):
            row["method"] = method + label
    return rows


def _restrict(person: pd.DataFrame, estimand: str, warnings_out: list[str]) -> tuple[pd.DataFrame, list[dict], str]:
    if len(person) and not person["_outcome_known"].any():
        message = (f"estimand ({estimand}): no cohort person's outcome was assessed in the window (no follow-up with an "
                   "outcome field, no dependence or withdrawal code): the estimand is not estimable")
        warnings_out.append(message)
        log.warning(message)
        return person, [], ""
    keep, violations = positivity(person)
    if violations:
        levels = ", ".join(f"{v['variable']}: {v['level']}" for v in violations)
        message = (f"estimand ({estimand}): no person with an assessed outcome in weight-model level(s) {levels}; "
                   f"no weight can stand for them, so estimand ({estimand}) is restricted to the other levels and "
                   "labelled RESTRICTED (positivity)")
        warnings_out.append(message)
        log.warning(message)
    return person[keep].reset_index(drop=True), violations, restriction_label(violations)


def _unassessed_model(n: int) -> stats.AscertainmentModel:
    """The weight model when nobody was assessed: every weight 0, so every estimate is NaN (not estimable)."""
    return stats.AscertainmentModel(
        design=np.ones((n, 1)), names=("intercept",), ascertained=np.zeros(n, dtype=bool),
        probability=np.full(n, 1e-12), weight=np.zeros(n), inverse_information=np.zeros((1, 1)), converged=True,
    )


def _fit_logged(person: pd.DataFrame, config: Config, estimand: str, warnings_out: list[str]) -> stats.AscertainmentModel:
    if not person["_outcome_known"].any():
        return _unassessed_model(len(person))
    model = fit_weights(person, config)
    for text in model.fit_warnings:
        message = f"estimand ({estimand}) weight model: {text}"
        warnings_out.append(message)
        log.warning(message)
    if not model.converged:
        message = f"estimand ({estimand}) weight model did not converge: its weights and estimates are unreliable"
        warnings_out.append(message)
        log.warning(message)
    return model


def diagnostic_rows(estimand: str, person: pd.DataFrame, kept: pd.DataFrame, model, violations, config) -> list[dict]:
    """Positivity, convergence, weight truncation and records that assess nothing, for one estimand."""
    rows = []
    tag = f"estimand_{estimand}"
    unassessing = "only_unassessing_records" if estimand == "a" else "only_unassessing_records_fixed"
    count = int((np.nan_to_num(stats.as_float(person[unassessing]), nan=0.0) > 0).sum())
    rows.append(_row("diagnostics", "only_unassessing_records", tag, {"estimate": None},
                     "diagnostics: persons whose only records in the window assess nothing (another diagnosis, "
                     "an empty visit): outcome unknown, not negative (events = such persons, n = persons)",
                     n=len(person), events=count, n_assessed=int(person["_outcome_known"].sum())))
    for violation in violations:
        rows.append(_row("diagnostics", "positivity_violation", f"{tag}|{violation['variable']}: {violation['level']}",
                         {"estimate": None}, "diagnostics: weight-model level without any assessed person; "
                         "excluded from the estimand (n = persons excluded)",
                         n=violation["persons"], events=0, n_assessed=0))
    rows.append(_row("diagnostics", "weight_model_converged", tag, {"estimate": float(model.converged)},
                     "diagnostics: 1 = the weight model (logistic, IRLS) converged, 0 = it did not",
                     n=len(kept), events=None, n_assessed=int(model.ascertained.sum())))
    low, high = config.estimate.weight_truncation_percentiles
    rows.append(_row("diagnostics", "weight_truncation_bounds", tag,
                     {"estimate": None, "ci_low": float(np.percentile(model.weight[model.ascertained], low))
                      if model.ascertained.any() else None,
                      "ci_high": float(np.percentile(model.weight[model.ascertained], high))
                      if model.ascertained.any() else None},
                     f"diagnostics: weights at the {low:g}th and {high:g}th percentiles (ci_low, ci_high), the "
                     "truncation bounds of the truncated-weight sensitivity analysis",
                     n=len(kept), events=None, n_assessed=int(model.ascertained.sum())))
    return rows


def estimate_tables(person: pd.DataFrame, config: Config) -> tuple[pd.DataFrame, dict]:
    """Every analysis except the rebuild-based sensitivity analyses, from an ``analysis_person`` DataFrame."""
    warnings_out: list[str] = []
    full = prepare(person, config)
    # ---- estimand (a)
    person, violations, label = _restrict(full, "a", warnings_out)
    model = _fit_logged(person, config, "a", warnings_out)
    rows, headline = headline_rows(person, model, config, label=label)
    rows += duration_band_rows(person, model, config)
    rows += stratum_rows(person, model, config)
    rows += component_rows(person, model, config)
    rows += cumulative_incidence_rows(person, model, config)
    rows += dose_response_rows(person, model, config)
    rows += tolerance_rows(person, config)
    rows += withdrawal_rows(person, model, config)
    rows += trend_rows(person, model, config)
    new, weights = weight_rows(person, model)
    rows += new
    new, anchors = anchor_rows(person, model, config)
    rows += new
    rows = _labelled(rows, label)
    rows += diagnostic_rows("a", full, person, model, violations, config)
    rows += in_sample_sensitivity_rows(person, model, config, "a", label)
    # ---- estimand (b)
    fixed_full = fixed_window_view(full)
    fixed, violations_b, label_b = _restrict(fixed_full, "b", warnings_out)
    fixed_headline = None
    model_b = None
    if len(fixed):
        model_b = _fit_logged(fixed, config, "b", warnings_out)
        new, fixed_headline = headline_rows(fixed, model_b, config, analysis="headline" + FIXED, label=label_b)
        rows += new
        rows += _labelled(duration_band_rows(fixed, model_b, config, analysis="by_duration_band" + FIXED), label_b)
        rows += weight_rows(fixed, model_b, analysis="weights" + FIXED, label=label_b)[0]
        rows += diagnostic_rows("b", fixed_full, fixed, model_b, violations_b, config)
        rows += in_sample_sensitivity_rows(fixed, model_b, config, "b", label_b)
    else:
        message = "estimand (b): no cohort person's treatment ended while observed; the fixed-window estimand is empty"
        warnings_out.append(message)
        log.warning(message)
    extras = {
        "headline_json": headline,
        "fixed_window_headline_json": fixed_headline,
        "estimands": ESTIMANDS,
        "anchors": anchors,
        "anchor_sentences": [a["sentence"] for a in anchors.values()],
        "weights": weights,
        "weight_model": {"terms": list(model.names), "converged": model.converged,
                         "positivity_violations": violations, "restricted": bool(violations)},
        "weight_model_fixed_window": None if model_b is None else {
            "terms": list(model_b.names), "converged": model_b.converged,
            "positivity_violations": violations_b, "restricted": bool(violations_b)},
        "warnings": warnings_out,
    }
    return to_frame(rows), extras


def in_sample_sensitivity_rows(person, model, config, estimand: str, label: str) -> list[dict]:
    """Sensitivity analyses that need no rebuild: truncated weights, and (estimand a) dropping
    episodes ended by observation end (ongoing: censored durations and windows)."""
    rows = []
    if not model.ascertained.any():
        return rows
    suffix = "" if estimand == "a" else FIXED
    low, high = config.estimate.weight_truncation_percentiles
    clipped = truncated(model, config)
    for row in headline_rows(person, clipped, config, label=label)[0]:
        if row["level"] in HEADLINE_GROUPS and row["method"].startswith(PRIMARY):
            rows.append({**row, "analysis": "sensitivity", "variable": f"weights_truncated{suffix}",
                         "level": f"p{low:g}-p{high:g}",
                         "method": row["method"] + f"; weights truncated at their {low:g}th/{high:g}th percentiles"})
    if estimand == "a":
        ended = (person["ending"].astype("str") != "ongoing").to_numpy()
        if ended.any() and not ended.all():
            kept = person[ended].reset_index(drop=True)
            if not kept["_outcome_known"].any():
                return rows
            keep, violations = positivity(kept)
            kept = kept[keep].reset_index(drop=True)
            refit = fit_weights(kept, config)
            for row in headline_rows(kept, refit, config, label=label + restriction_label(violations))[0]:
                if row["level"] in HEADLINE_GROUPS:
                    rows.append({**row, "analysis": "sensitivity", "variable": "drop_ongoing",
                                 "level": "episodes ended by observation end excluded"})
    return rows


# --------------------------------------------------------------------------- warehouse


def _read_person(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    if not table_exists(con, "analysis_person"):
        raise StageOrderError("table analysis_person not found: run the transform stage first (python -m pipeline transform)")
    return con.execute("select * from analysis_person").df()


def _write(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame, replace_settings: tuple[str, ...] | None = None) -> None:
    """Replace ``estimates``; with ``replace_settings`` replace only the sensitivity rows of those settings."""
    select = """
        select analysis::varchar as analysis, variable::varchar as variable, level::varchar as level,
               time_days::integer as time_days, n::bigint as n, n_assessed::bigint as n_assessed,
               events::bigint as events, estimate::double as estimate, ci_low::double as ci_low,
               ci_high::double as ci_high, method::varchar as method
        from _estimates_frame"""
    con.register("_estimates_frame", frame)
    try:
        if replace_settings is None or not table_exists(con, "estimates"):
            con.execute("create or replace table estimates as " + select)
        else:
            con.execute("delete from estimates where analysis = 'sensitivity' and list_contains(?, split_part(variable, '|', 1))",
                        [list(replace_settings)])
            con.execute("insert into estimates by name " + select)  # production's explicit columns stay NULL
    finally:
        con.unregister("_estimates_frame")


def run(con: duckdb.DuckDBPyConnection, config: Config, rebuild: Rebuild | None = None) -> dict:
    """Read ``analysis_person``, replace ``estimates``; with ``rebuild`` also add the sensitivity rows.

    Returns DESIGN.md's headline.json dict (not yet disclosure-controlled)
    both spread at the top level (``headline``, ``complete_case``, ``config``)
    and whole as ``headline_json``; plus ``anchors`` and ``anchor_sentences``, ``weights``
    (distribution per headline group), ``weight_model``, ``rows`` and ``seconds``.
    """
    started = time.perf_counter()
    person = _read_person(con)
    frame, extras = estimate_tables(person, config)
    _write(con, frame)
    rows = len(frame)
    if rebuild is not None:
        rows += len(sensitivity(con, config, rebuild, current=person))
    # headline.json's keys at the top level too: result["headline"]["gt_4_weeks"] is the primary entry
    for message in extras["warnings"]:
        _log_warning(con, config, message)
    return {**extras["headline_json"], **extras, "rows": rows, "seconds": round(time.perf_counter() - started, 2)}


def _log_warning(con: duckdb.DuckDBPyConnection, config: Config, message: str) -> None:
    """A warning of the estimate stage, kept in the run log (audit_run_log, status 'warning')."""
    import datetime as dt
    import json

    from pipeline.warehouse import ensure_audit_tables

    ensure_audit_tables(con)
    now = dt.datetime.now()
    con.execute("insert into audit_run_log (run_id, stage, started_at, finished_at, status, message, config_json) "
                "values (?, ?, ?, ?, ?, ?, ?)",
                ["estimate", "estimate", now, now, "warning", message[:500], json.dumps(config.to_dict())])




def sensitivity(con: duckdb.DuckDBPyConnection, config: Config, rebuild: Rebuild, current: pd.DataFrame | None = None) -> pd.DataFrame:
    """Headline estimates with one setting varied at a time; rows replace analysis ``sensitivity``.

    ``rebuild(config) -> analysis_person DataFrame`` is supplied by the
    transform stage and must not overwrite warehouse tables. The value equal
    to the current setting reuses ``analysis_person`` as it is.
    Rows: variable ``"<setting>|<headline group>"``, level = the value.
    """
    if current is None:
        current = _read_person(con)
    rows = []
    for section, key, values_key in SENSITIVITY_SETTINGS:
        for value in getattr(config.estimate, values_key):
            varied = config.replace(**{section: {key: value}})
            person = current if getattr(getattr(config, section), key) == value else rebuild(varied)
            person = prepare(person, varied)
            if not person["_outcome_known"].any():
                model, violations = _unassessed_model(len(person)), []
            else:
                keep, violations = positivity(person)
                person = person[keep].reset_index(drop=True)
                model = fit_weights(person, varied)
            headline = headline_rows(person, model, varied, label=restriction_label(violations))[0]
            for row in headline:
                if row["level"] in HEADLINE_GROUPS:
                    rows.append({**row, "analysis": "sensitivity", "variable": key, "level": str(value)})
    frame = to_frame(rows)
    _write(con, frame, replace_settings=tuple(key for _, key, _ in SENSITIVITY_SETTINGS))
    return frame
