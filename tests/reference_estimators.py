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

from typing import Callable

import duckdb
import numpy as np
import pandas as pd
import reference_stats as stats

from pipeline.config import Config
from pipeline.estimate.run import (
    COMPLETE_CASE, COMPONENTS, DOSE_RESPONSE_CATEGORICAL, ESTIMANDS, FIXED, HEADLINE_GROUPS, METHOD_AJ_COMPLETE_CASE,
    METHOD_AJ_PRIMARY, METHOD_COMPLETE_CASE, METHOD_EXPOSURE, METHOD_OR, METHOD_PRIMARY, PRIMARY, SENSITIVITY_SETTINGS,
    STRATA, STRATUM_LABELS, CIF_GRID_DAYS, WEIGHT_BINARY, WEIGHT_CATEGORICAL, WEIGHT_CONTINUOUS, WEIGHT_STATS,
    _headline_entry, _levels, _restrict, _unassessed_model, check_columns, fixed_window_view, positivity,
    restriction_label, to_frame,
)
from pipeline.estimate.anchors import MARRIOTT_TYRER, RICKELS
from pipeline.estimate.run import prepare as production_prepare


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
    """The person-level weight model on production's covariates and reference level."""
    design, names = stats.design_matrix(person, WEIGHT_CATEGORICAL, WEIGHT_BINARY, WEIGHT_CONTINUOUS,
                                        references={"duration_band": config.estimate.band_labels()[0]})
    return stats.fit_ascertainment_model(design, person["_outcome_known"].to_numpy(), names)


def truncated(model: stats.AscertainmentModel, config: Config) -> stats.AscertainmentModel:
    """The weight model with weights clipped to ``estimate.weight_truncation_percentiles``."""
    low, high = config.estimate.weight_truncation_percentiles
    return stats.truncate_weights(model, low, high)


# --------------------------------------------------------------------------- rows


def _row(analysis, variable, level, result, method, time_days=None, n=None, events=None, n_assessed=None) -> dict:
    """One row in the columns the comparison reads (production's explicit columns stay empty here)."""
    given = {"n": n, "n_ascertained": n_assessed, "events": events}
    n, n_assessed, events = (result.get(key) if value is None else value for key, value in given.items())
    return {"analysis": analysis, "variable": variable, "level": str(level), "time_days": time_days, "n": n,
            "n_assessed": n_assessed, "events": events, "estimate": result.get("estimate"),
            "ci_low": result.get("ci_low"), "ci_high": result.get("ci_high"), "method": method}


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
    """Rows of each headline group, then of everyone; and the headline.json dict of the two groups."""
    out = {"headline": {}, "complete_case": {}, "config": config.to_dict()}
    rows = []
    for group, members in _by_headline_group(person):
        pair, primary, complete = _proportion_rows(analysis, "headline_group", group, person, model, members,
                                                   confidence=config.estimate.confidence_level, label=label)
        rows += pair
        if group in HEADLINE_GROUPS:
            out["headline"][group] = _headline_entry(primary, METHOD_PRIMARY + label)
            out["complete_case"][group] = _headline_entry(complete, METHOD_COMPLETE_CASE + label)
    return rows, out


def _groups(values: pd.Series, order=None, labels=None) -> list[tuple[str, np.ndarray]]:
    """(label, persons) for each level of ``values`` in production's level order (``_levels``)."""
    text, levels = _levels(values, order)
    return [((labels or {}).get(level, level), text == level) for level in levels]


def _by_headline_group(person: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
    group = person["headline_group"].astype("str").to_numpy(dtype=object)
    return [(name, group == name) for name in HEADLINE_GROUPS] + [("all", np.ones(len(person), dtype=bool))]


def _pairs(analysis, variable, person, model, groups, config, **options) -> list[dict]:
    """The primary and complete-case rows of each (level, persons) in ``groups``."""
    conf = config.estimate.confidence_level
    return [row for level, members in groups
            for row in _proportion_rows(analysis, variable, level, person, model, members, confidence=conf, **options)[0]]


def duration_band_rows(person, model, config, analysis="by_duration_band", label="") -> list[dict]:
    bands = _groups(person["duration_band"], config.estimate.band_labels())
    return _pairs(analysis, "duration_band", person, model, bands, config, label=label)


def stratum_rows(person, model, config) -> list[dict]:
    """Each stratum's levels among those treated longer than the split (by_stratum) and among everyone
    (by_stratum_overall); the misuse stratum is the prescription signal known for everyone."""
    longer = person["_gt_4_weeks"].to_numpy() > 0
    rows = []
    for column in STRATA:
        levels = _groups(person["_misuse_known" if column == "misuse" else column], labels=STRATUM_LABELS.get(column))
        rows += _pairs("by_stratum", column, person, model, [(lvl, longer & m) for lvl, m in levels], config)
        rows += _pairs("by_stratum_overall", column, person, model, levels, config)
    return rows


def component_rows(person, model, config) -> list[dict]:
    return [row for component in COMPONENTS
            for row in _pairs("components", component, person, model, _by_headline_group(person), config,
                              outcome="_" + component)]


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
    """Person-level IPW logistic models of dependence: every term of the bands model, each variable's reference
    level (OR 1, with its persons and events), then the trend model's log2(duration) term."""
    known = person["_outcome_known"].to_numpy(dtype=bool)
    y = np.nan_to_num(person["_dependence"].to_numpy(dtype=float))
    if not known.any() or y[known].min() == y[known].max():
        return []  # nothing assessed, or no contrast: no model can be fitted
    frame = person.assign(misuse=np.nan_to_num(stats.as_float(person["misuse"]), nan=0.0),
                          log2_duration_days=np.log2(np.maximum(stats.as_float(person["duration_days"]), 1.0)))

    def odds_ratios(categorical, continuous) -> list[dict]:
        design, names = stats.design_matrix(frame, categorical, ("misuse",), continuous,
                                            references={"duration_band": config.estimate.band_labels()[0]})
        return stats.logistic_odds_ratios(person["_dependence"], design, names, model=model,
                                          confidence=config.estimate.confidence_level).to_dict("records")

    bands = odds_ratios(DOSE_RESPONSE_CATEGORICAL, ())
    rows = []
    for record in bands:
        variable, _, level = (record["term"][:-1] if record["term"].endswith("]") else record["term"]).partition("[")
        rows.append(_row("dose_response", variable, level or "true", record, f"{METHOD_OR} (bands model)"))
    reference_method = f"{METHOD_OR} (bands model; reference level)"
    for column in DOSE_RESPONSE_CATEGORICAL:
        fitted = {r["term"][len(column) + 1 : -1] for r in bands if r["term"].startswith(column + "[")}
        for level, members in _groups(frame[column]):
            if level not in fitted:
                chosen = known & members
                rows.append(_row("dose_response", column, level, {"estimate": 1.0}, reference_method,
                                 n=int(chosen.sum()), events=int(y[chosen].sum())))
    unflagged = known & (frame["misuse"].to_numpy() == 0)
    rows.append(_row("dose_response", "misuse", "false", {"estimate": 1.0}, reference_method,
                     n=int(unflagged.sum()), events=int(y[unflagged].sum())))
    trend = odds_ratios(DOSE_RESPONSE_CATEGORICAL[1:], ("log2_duration_days",))
    return rows + [_row("dose_response", "duration_days", "per doubling", record, f"{METHOD_OR} (trend model)")
                   for record in trend if record["term"] == "log2_duration_days"]


def tolerance_rows(person, config) -> list[dict]:
    """Per indication and overall: the share with a dose increase and the median escalation ratio (no weights)."""
    conf = config.estimate.confidence_level
    increased = ~np.isnan(stats.as_float(person["days_to_first_increase"]))
    ratio = stats.as_float(person["dose_escalation_ratio"])
    rows = []
    for level, members in _groups(person["indication"]) + [("all", np.ones(len(person), dtype=bool))]:
        share = stats.complete_case_proportion(np.where(members, increased, np.nan), confidence=conf)
        median = stats.median_interval(ratio[members], conf)
        rows += [_row("tolerance", "indication", level, share, "tolerance: share with a dose increase, Wilson CI"),
                 _row("tolerance", "indication", level, median,
                      "tolerance: median dose escalation ratio, order-statistic CI", events=None)]
    return rows


def withdrawal_rows(person, model, config) -> list[dict]:
    """Withdrawal by how the episode ended, among the ascertained and among the dependent."""
    dependent = np.nan_to_num(person["_dependence"].to_numpy(), nan=0.0)
    rows = []
    for level in _groups(person["ending"], ["taper", "abrupt", "ongoing"]):
        rows += _pairs("withdrawal_by_ending", "ending_among_ascertained", person, model, [level], config,
                       outcome="_dep_withdrawal")
        rows += _pairs("withdrawal_by_ending", "ending_among_dependent", person, model, [level], config,
                       outcome="_dep_withdrawal", among=dependent)
    return rows


WEIGHTS_METHOD = "weights: inverse probability of ascertainment (ess = Kish effective sample size)"


def weight_rows(person, model, analysis="weights", label="") -> tuple[list[dict], dict]:
    """The weights' distribution (person-level percentiles, Kish ESS) for everyone and per headline group."""
    groups = _by_headline_group(person)
    summaries = {name: stats.weight_summary(np.where(members, model.weight, 0.0)) for name, members in groups[-1:] + groups[:-1]}
    persons = dict(groups)
    rows = [_row(analysis, statistic, name, {"estimate": summary[statistic]}, WEIGHTS_METHOD + label,
                 n=int(persons[name].sum()), events=summary["n"], n_assessed=summary["n"])
            for name, summary in summaries.items() for statistic in WEIGHT_STATS]
    return rows, summaries


def anchor_rows(person, model, config) -> tuple[list[dict], dict]:
    """The person-level IPW share in each group comparable to a published anchor (pipeline/estimate/anchors.py),
    the published figure, and whether it lies inside our interval."""
    days = stats.as_float(person["duration_days"])
    ended = person["ending"].astype("str").isin(["taper", "abrupt"]).to_numpy()
    mt, rk = MARRIOTT_TYRER, RICKELS
    weeks = mt.days // 7
    anchors_spec = (
        (mt.key, f">={mt.days} days", days >= mt.days, "_dependence", mt.value,
         f"Marriott & Tyrer (1993) reported dependence in '{mt.value_words}' of patients on regular prescriptions "
         f"for {weeks} weeks or longer",
         f"of persons treated for {weeks} weeks or longer developed physical dependence within the outcome window"),
        (rk.key, f"<{rk.days} days, ended", (days < rk.days) & ended, "_dep_withdrawal", rk.short_value,
         f"Rickels et al. (1983) reported withdrawal in {rk.short_value:.0%} after < {rk.months} months of diazepam",
         f"of persons whose episode ended after less than {rk.months} months ({rk.days} days) had withdrawal "
         "symptoms recorded"),
        (rk.key, f">={rk.days} days, ended", (days >= rk.days) & ended, "_dep_withdrawal", rk.long_value,
         f"Rickels et al. (1983) reported withdrawal in {rk.long_value:.0%} after >= {rk.months} months of diazepam",
         f"of persons whose episode ended after {rk.months} months ({rk.days} days) or more had withdrawal "
         "symptoms recorded"),
    )
    rows, anchors = [], {}
    for key, level, members, outcome, value, published, ours in anchors_spec:
        result = stats.ipw_proportion(person[outcome], model, group=members, confidence=config.estimate.confidence_level)
        low, high, share = result["ci_low"], result["ci_high"], result["estimate"]
        estimable = not np.isnan(share)
        inside = bool(estimable and low <= value <= high)
        rows += [_row("anchors", key, level, result, METHOD_PRIMARY),
                 _row("anchors", key, level, {"estimate": value}, f"anchor: {published}", n=None, events=None),
                 _row("anchors", key, level, {"estimate": float(inside) if estimable else None},
                      "anchor: published figure inside our CI (1 = yes, 0 = no)", n=None, events=None)]
        verdict = "is consistent with" if inside else "excludes"
        sentence = (f"An estimated {share:.1%} (95% CI {low:.1%} to {high:.1%}) {ours}. "
                    f"{published}: our interval {verdict} {value:.0%}." if estimable else
                    f"Not estimable: no ascertained persons in the group comparable to {published.split(' reported')[0]}.")
        anchors[f"{key}|{level}"] = {"group": level, "outcome": outcome.lstrip("_"), "anchor": value, "estimate": share,
                                     "ci_low": low, "ci_high": high, "consistent": inside, "sentence": sentence}
    return rows, anchors


def trend_rows(person, model, config) -> list[dict]:
    """Per calendar year of episode_start and per region (when the person table has them): the share treated
    longer than the split (no weights), then dependence among everyone and among those treated longer."""
    longer = person["_gt_4_weeks"].to_numpy() > 0
    everyone = np.ones(len(person), dtype=bool)
    breakdowns = []
    if "episode_start" in person.columns:
        year = pd.to_datetime(person["episode_start"], errors="coerce").dt.year
        breakdowns.append(("by_calendar_year", "calendar_year", year.astype("Int64").astype("string").fillna("unknown")))
    if "region" in person.columns:
        region = person["region"].astype("string").str.strip()
        breakdowns.append(("by_region", "region", region.where(region != "", pd.NA).fillna("unknown")))
    rows = []
    for analysis, column, series in breakdowns:
        for level, members in _groups(series):
            share = stats.complete_case_proportion(np.where(members, longer, np.nan),
                                                   confidence=config.estimate.confidence_level)
            rows.append(_row(analysis, column, level, share, METHOD_EXPOSURE))
            rows += _pairs(analysis, column, person, model, [(level, members & everyone), (level, members & longer)],
                           config)
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
    """Every analysis except the rebuild-based sensitivity analyses, in production's row order: per
    estimand (a, then b over the persons whose treatment ended while observed) the restricted cohort's
    rows with the positivity label, its diagnostics and its in-sample sensitivity rows."""
    warnings_out: list[str] = []
    full = prepare(person, config)
    rows: list[dict] = []
    extras = {"estimands": ESTIMANDS, "warnings": warnings_out, "fixed_window_headline_json": None,
              "weight_model_fixed_window": None}
    for estimand, cohort in (("a", full), ("b", fixed_window_view(full))):
        suffix = "" if estimand == "a" else FIXED
        kept, violations, label = _restrict(cohort, estimand, warnings_out)
        if not len(kept):
            warnings_out.append("estimand (b): no cohort person's treatment ended while observed; "
                                "the fixed-window estimand is empty")
            continue
        model = _fit_logged(kept, config, estimand, warnings_out)
        part, headline = headline_rows(kept, model, config, analysis="headline" + suffix, label=label)
        part += duration_band_rows(kept, model, config, analysis="by_duration_band" + suffix)
        if estimand == "a":
            part += stratum_rows(kept, model, config) + component_rows(kept, model, config)
            part += cumulative_incidence_rows(kept, model, config) + dose_response_rows(kept, model, config)
            part += tolerance_rows(kept, config) + withdrawal_rows(kept, model, config) + trend_rows(kept, model, config)
        weight_part, weights = weight_rows(kept, model, analysis="weights" + suffix, label=label)
        part += weight_part
        if estimand == "a":
            anchor_part, anchors = anchor_rows(kept, model, config)
            part += anchor_part
        rows += _labelled(part, label) + diagnostic_rows(estimand, cohort, kept, model, violations, config)
        rows += in_sample_sensitivity_rows(kept, model, config, estimand, label)
        fit = {"terms": list(model.names), "converged": model.converged, "positivity_violations": violations,
               "restricted": bool(violations)}
        if estimand == "a":
            extras.update(headline_json=headline, weights=weights, anchors=anchors, weight_model=fit,
                          anchor_sentences=[entry["sentence"] for entry in anchors.values()])
        else:
            extras.update(fixed_window_headline_json=headline, weight_model_fixed_window=fit)
    return to_frame(rows), extras


def in_sample_sensitivity_rows(person, model, config, estimand: str, label: str) -> list[dict]:
    """The headline with the weights truncated (primary rows), and for estimand (a) without the episodes that
    observation end cut short (refitted; primary and complete case)."""
    if not model.ascertained.any():
        return []
    low, high = config.estimate.weight_truncation_percentiles
    variable, level = "weights_truncated" + ("" if estimand == "a" else FIXED), f"p{low:g}-p{high:g}"
    note = f"; weights truncated at their {low:g}th/{high:g}th percentiles"
    rows = [{**row, "analysis": "sensitivity", "variable": variable, "level": level, "method": row["method"] + note}
            for row in headline_rows(person, truncated(model, config), config, label=label)[0]
            if row["level"] in HEADLINE_GROUPS and row["method"].startswith(PRIMARY)]
    ended = (person["ending"].astype("str") != "ongoing").to_numpy()
    if estimand != "a" or ended.all() or not ended.any() or not person.loc[ended, "_outcome_known"].any():
        return rows
    subset = person[ended].reset_index(drop=True)
    keep, violations = positivity(subset)
    subset = subset[keep].reset_index(drop=True)
    headline = headline_rows(subset, fit_weights(subset, config), config, label=label + restriction_label(violations))[0]
    return rows + [{**row, "analysis": "sensitivity", "variable": "drop_ongoing",
                    "level": "episodes ended by observation end excluded"}
                   for row in headline if row["level"] in HEADLINE_GROUPS]


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
            unchanged = getattr(getattr(config, section), key) == value
            person, _, label = _restrict(prepare(current if unchanged else rebuild(varied), varied), "a", [])
            headline = headline_rows(person, _fit_logged(person, varied, "a", []), varied, label=label)[0]
            rows += [{**row, "analysis": "sensitivity", "variable": key, "level": str(value)}
                     for row in headline if row["level"] in HEADLINE_GROUPS]
    return to_frame(rows)
