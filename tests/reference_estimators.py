"""REFERENCE ONLY (used by tests/test_aggregated_estimators.py, never by the pipeline): the estimate
stage on one row per person, with ``stats`` the person-level estimators of tests/reference_stats.py.
Production (pipeline/estimate/run.py) aggregates persons to covariate patterns and event cells first;
tests/test_aggregated_estimators.py checks that both give the same ``estimates`` rows (analysis,
variable, level, time_days, method, counts, and estimates to 1e-9).

What is frozen here is the person-level row building around the estimators being compared. The
labels, method texts, covariate lists, anchor figures and the plumbing that is not being compared
(positivity, restriction labels, level order, headline.json entries, the typed frame) are
production's own; the conventions of ``estimates`` are described in pipeline/estimate/columns.py
and docs/estimation.md.
"""

from __future__ import annotations

import logging
from typing import Callable

import duckdb
import numpy as np
import pandas as pd
import reference_stats as stats

from pipeline.config import Config
from pipeline.estimate.run import (
    COMPLETE_CASE, COMPONENTS, DOSE_RESPONSE_CATEGORICAL, ESTIMANDS, FIXED, HEADLINE_GROUPS, MARRIOTT_TYRER_DAYS,
    MARRIOTT_TYRER_VALUE, METHOD_AJ_COMPLETE_CASE, METHOD_AJ_PRIMARY, METHOD_COMPLETE_CASE, METHOD_EXPOSURE,
    METHOD_OR, METHOD_PRIMARY, MISUSE_STRATUM_SOURCE, PRIMARY, RICKELS_DAYS, RICKELS_VALUES, SENSITIVITY_SETTINGS,
    STRATA, STRATUM_LABELS, CIF_GRID_DAYS, WEIGHT_BINARY, WEIGHT_CATEGORICAL, WEIGHT_CONTINUOUS, WEIGHT_STATS,
    _headline_entry, _levels, _restrict, _unassessed_model, check_columns, fixed_window_view, positivity,
    restriction_label, to_frame,
)
from pipeline.estimate.run import prepare as production_prepare

log = logging.getLogger(__name__)

Rebuild = Callable[[Config], pd.DataFrame]


# --------------------------------------------------------------------------- input


def prepare(person: pd.DataFrame, config: Config) -> pd.DataFrame:
    """Production's helper columns (``_outcome_known``, ``_dependence``, ...) on one row per person (a
    pattern of one person, ``_count`` 1), plus the curve's ``_cif_time`` / ``_cif_cause`` per person (days
    from episode start; 1 dependence, 2 death, 0 censored at days_followed), which production sums
    into event cells in SQL instead."""
    check_columns(person.columns)
    person = production_prepare(person.assign(_count=1), config)
    known = person["_outcome_known"].to_numpy(dtype=bool)
    dependent = known & (np.nan_to_num(person["_dependence"].to_numpy(dtype=float), nan=0.0) > 0)
    died = np.nan_to_num(stats.as_float(person["died_in_window"]), nan=0.0) > 0
    days = {k: stats.as_float(person[k]) for k in ("days_to_dependence", "days_to_death", "days_followed")}
    person["_cif_time"] = np.where(known, np.select([dependent, died], [days["days_to_dependence"],
                                                                         days["days_to_death"]], days["days_followed"]),
                                   np.nan)
    person["_cif_cause"] = np.select([dependent, died], [1, 2], 0)
    return person


def _fit_logged(person: pd.DataFrame, config: Config, estimand: str, warnings_out: list[str]) -> stats.AscertainmentModel:
    """The person-level weight model, its fit's warnings appended to ``warnings_out`` in production's words."""
    if not person["_outcome_known"].any():
        return _unassessed_model(person)
    model = fit_weights(person, config)
    warnings_out += [f"estimand ({estimand}) weight model: {text}" for text in model.fit_warnings]
    if not model.converged:
        warnings_out.append(f"estimand ({estimand}) weight model did not converge: its weights and estimates are unreliable")
    return model


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


def _labelled(rows: list[dict], label: str) -> list[dict]:
    """Append the positivity restriction label to every primary / complete-case method not yet carrying it."""
    if not label:
        return rows
    for row in rows:
        method = row["method"]
        if method.startswith((PRIMARY, COMPLETE_CASE, "weights: ")) and not method.endswith(label):
            row["method"] = method + label
    return rows


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


def sensitivity(con: duckdb.DuckDBPyConnection, config: Config, rebuild: Rebuild, current: pd.DataFrame | None = None) -> pd.DataFrame:
    """The ``sensitivity`` rows (returned; nothing is written): headline estimates with one setting
    varied at a time, each from ``rebuild(varied config) -> analysis_person`` (the value equal to the
    current setting reuses ``analysis_person`` as it is)."""
    if current is None:
        current = con.execute("select * from analysis_person").df()
    rows = []
    for section, key, values_key in SENSITIVITY_SETTINGS:
        for value in getattr(config.estimate, values_key):
            varied = config.replace(**{section: {key: value}})
            person = current if getattr(getattr(config, section), key) == value else rebuild(varied)
            person = prepare(person, varied)
            if not person["_outcome_known"].any():
                model, violations = _unassessed_model(person), []
            else:
                keep, violations = positivity(person)
                person = person[keep].reset_index(drop=True)
                model = fit_weights(person, varied)
            headline = headline_rows(person, model, varied, label=restriction_label(violations))[0]
            for row in headline:
                if row["level"] in HEADLINE_GROUPS:
                    rows.append({**row, "analysis": "sensitivity", "variable": key, "level": str(value)})
    return to_frame(rows)
