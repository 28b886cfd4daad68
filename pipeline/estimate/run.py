"""Estimate stage: read ``analysis_person``, write the long ``estimates`` table.

The person table is never loaded: DuckDB aggregates it to covariate patterns
(``pipeline.estimate.aggregate``), and every estimator runs on the patterns
with their counts as frequency weights -- same numbers, memory that grows with
patterns, not persons (docs/estimation.md, "Sufficient statistics").

Conventions of ``estimates`` (columns and vocabularies: ``pipeline.estimate.columns``, the one
description of the table; docs/estimation.md for the estimators):

- ``analysis``: headline, by_duration_band, by_stratum, components,
  cumulative_incidence, dose_response, tolerance, withdrawal_by_ending,
  weights, anchors, sensitivity, by_calendar_year, by_region (estimand (a));
  headline_fixed_window, by_duration_band_fixed_window, weights_fixed_window
  (estimand (b)); diagnostics.
- Every row says what it is in ``estimand``, ``estimator``, ``population``,
  ``estimate_name`` and ``estimate_type``, set here where the row is built;
  ``method`` is the same in words, for a reader, and is never parsed. Select
  primary rows with ``estimator == "hajek_ipw"``, not by method text.
- ``population`` is who the row's groups are drawn from: ``"sex"`` rows of
  ``by_stratum`` have population ``gt_split`` (treated longer than
  ``headline_split_days``), of ``by_stratum_overall`` ``all``.
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
import duckdb
import numpy as np
import pandas as pd

from pipeline.config import Config
from pipeline.errors import PipelineError, StageOrderError
from pipeline.estimate import aggregate, stats
from pipeline.estimate.columns import COLUMN_NAMES, ESTIMANDS as ESTIMAND_NAMES, estimate_type, population_of_group
from pipeline.estimate.anchors import MARRIOTT_TYRER, RICKELS
from pipeline.estimate.columns import estimand_of, select_list
from pipeline.warehouse import table_exists

log = logging.getLogger(__name__)

PRIMARY = "primary: "
COMPLETE_CASE = "complete_case: "
METHOD_PRIMARY = PRIMARY + "IPW (Hajek), Wilson CI at sandwich effective n, weight model stacked"
METHOD_COMPLETE_CASE = COMPLETE_CASE + "Wilson (complete case, unweighted)"
# The curve's censoring rule, carried in every exported row: people leave it when
# their outcome window (a) closes, so late points describe those treated longest.
CIF_CENSORING = ("curve over days since episode start; each person censored when the outcome window closes "
                 "(episode end + the outcome window after treatment) or observation ends, so late points describe only those "
                 "still treated, not the cohort; the cohort's share is the headline / duration bands")
METHOD_AJ_PRIMARY = PRIMARY + "IPW Aalen-Johansen (death competing), delta-method variance, log-log CI; " + CIF_CENSORING
METHOD_AJ_COMPLETE_CASE = (COMPLETE_CASE + "Aalen-Johansen (complete case, unweighted; death competing), "
                           "Greenwood-type variance, log-log CI; " + CIF_CENSORING)
METHOD_OR = PRIMARY + "IPW logistic regression, odds ratio, stacked sandwich CI"
HEADLINE_GROUPS = ("le_4_weeks", "gt_4_weeks")
COMPONENTS = ("dep_icd", "dep_withdrawal", "dep_assessed", "dep_sds")
RX_FLAGS = ("rx_many_prescribers", "rx_many_pharmacies", "rx_early_refills", "rx_high_dose", "rx_misuse_signal")
# Weight model: covariates known for every cohort person (from prescriptions and persons).
WEIGHT_CATEGORICAL = ("age_band", "sex", "indication", "dose_band", "duration_band")
WEIGHT_BINARY = RX_FLAGS + ("_gt_4_weeks", "died_in_window")
# Estimand (b): columns of the fixed assessment window after treatment ends.
FIXED = "_fixed_window"
ESTIMANDS = {
    "a": "(a) dependence recorded from episode start to episode end + the outcome window: how often dependence "
         "develops during and soon after treatment (the window grows with the treatment)",
    "b": "(b) dependence or withdrawal assessed within the same fixed number of days after treatment ends, for "
         "every duration: how often people are dependent once a treatment of that length stops",
}
# No continuous covariate: duration enters through its band (duration_band above), so the covariate
# patterns have no day-level column and their number does not grow with persons (docs/estimation.md).
WEIGHT_CONTINUOUS: tuple[str, ...] = ()
STRATA = ("misuse", "rx_misuse_signal", "indication", "dose_band", "age_band", "sex")
# The "supervised use" stratum is defined from what is known for everyone: no
# misuse signal in the prescription records. Documented misuse and F13.1 codes
# are seen only in people with a record in the window, so using them would put
# unrecorded misusers into "supervised" among exactly the people IPW stands for.
MISUSE_STRATUM_SOURCE = "rx_misuse_signal"
STRATUM_LABELS = {
    "misuse": {"true": "misuse", "false": "supervised"},
    "rx_misuse_signal": {"true": "signal", "false": "no_signal"},
}
DOSE_RESPONSE_CATEGORICAL = ("duration_band", "dose_band", "age_band", "sex", "indication")
CIF_GRID_DAYS = 7  # curve reported weekly (exact values of the step function on those days)
# The anchors' figures live once in pipeline/estimate/anchors.py (the report reads them there too).
MARRIOTT_TYRER_DAYS, MARRIOTT_TYRER_VALUE = MARRIOTT_TYRER.days, MARRIOTT_TYRER.value
RICKELS_DAYS = RICKELS.days
RICKELS_VALUES = {f"lt_{RICKELS.days}_days": RICKELS.short_value, f"ge_{RICKELS.days}_days": RICKELS.long_value}

REQUIRED_COLUMNS = (
    "duration_days", "duration_band", "headline_group", "age_band", "sex", "indication", "dose_band", "ending",
    "ascertained", "dependence", *COMPONENTS, "days_to_dependence", "died_in_window", "days_to_death",
    "fixed_window_defined", "ascertained_fixed", "dependence_fixed", "only_unassessing_records",
    "only_unassessing_records_fixed",
    "days_followed", *RX_FLAGS, "documented_misuse", "icd_misuse", "misuse",
    "mean_daily_dose_dde_mg", "days_to_first_increase", "dose_escalation_ratio",
)
ESTIMATE_COLUMNS = COLUMN_NAMES  # pipeline/estimate/columns.py describes each once

# --------------------------------------------------------------------------- input


def _counts(frame: pd.DataFrame) -> np.ndarray:
    """Persons per row: ``_count`` of a pattern table (one person a row without it)."""
    if "_count" in frame.columns:
        return frame["_count"].to_numpy(dtype=float)
    return np.ones(len(frame))


def check_columns(columns) -> None:
    """One clear error when ``analysis_person`` lacks a column the estimators need."""
    missing = [c for c in REQUIRED_COLUMNS if c not in set(columns)]
    if missing:
        raise PipelineError(
            f"analysis_person lacks column(s) {', '.join(missing)}; rerun the transform stage "
            "(python -m pipeline transform) so it matches docs/ARCHITECTURE.md"
        )


def patterns_of_frame(person: pd.DataFrame) -> pd.DataFrame:
    """The pattern table (``aggregate.patterns``) of an ``analysis_person`` DataFrame; a pattern table as it is."""
    if "_count" in person.columns:
        return person
    check_columns(person.columns)
    con = duckdb.connect()
    try:
        con.register("analysis_person_frame", person)
        return aggregate.patterns(con, "analysis_person_frame")
    finally:
        con.close()


def prepare(person: pd.DataFrame, config: Config) -> pd.DataFrame:
    """Add helper columns to a pattern table (``aggregate.patterns``: one row per pattern, ``_count`` persons).

    Helper columns start with ``_``: ``_outcome_known`` (ascertained and
    dependence not NULL), ``_gt_4_weeks``,
    ``_in_fixed_window`` / ``_outcome_known_fixed`` / ``_dependence_fixed``
    (estimand (b)). A person-level ``analysis_person`` DataFrame is aggregated first.
    """
    person = patterns_of_frame(person)
    if not _counts(person).sum() > 0:
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
    person["_gt_4_weeks"] = (person["headline_group"].astype("str") == "gt_4_weeks").to_numpy(dtype=float)
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
    count = _counts(person)
    keep = np.ones(len(person), dtype=bool)
    violations = []
    for column in WEIGHT_CATEGORICAL:
        values = person[column].astype("str").fillna("unknown").to_numpy(dtype=object)
        for level in sorted(set(values)):
            members = values == level
            if not (members & known).any():
                violations.append({"variable": column, "level": str(level), "persons": int(count[members].sum())})
                keep &= ~members
    for column in WEIGHT_BINARY:
        members = np.nan_to_num(stats.as_float(person[column]), nan=0.0) > 0
        if members.any() and not (members & known).any():
            violations.append({"variable": column, "level": "true", "persons": int(count[members].sum())})
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
        count=_counts(person),
    )
    return stats.fit_ascertainment_model(X, person["_outcome_known"].to_numpy(), names, count=_counts(person))


def truncated(model: stats.AscertainmentModel, config: Config) -> stats.AscertainmentModel:
    """The weight model with weights clipped to ``estimate.weight_truncation_percentiles``."""
    low, high = config.estimate.weight_truncation_percentiles
    return stats.truncate_weights(model, low, high)


# --------------------------------------------------------------------------- rows


def _row(analysis, variable, level, result, method, time_days=None, n=None, events=None, n_assessed=None, *,
         estimator, estimate_name, population="all", estimand=None) -> dict:
    """One ``estimates`` row; what it is lives in its explicit columns (pipeline/estimate/columns.py)."""
    return {
        "analysis": analysis,
        "estimand": ESTIMAND_NAMES[estimand or estimand_of(analysis)],
        "estimator": estimator,
        "population": population,
        "variable": variable,
        "level": str(level),
        "time_days": time_days,
        "n": result.get("n") if n is None else n,
        "n_assessed": result.get("n_ascertained") if n_assessed is None else n_assessed,
        "events": result.get("events") if events is None else events,
        "estimate_name": estimate_name,
        "estimate_type": estimate_type(estimate_name),
        "estimate": result.get("estimate"),
        "ci_low": result.get("ci_low"),
        "ci_high": result.get("ci_high"),
        "method": method,
    }


def _proportion_rows(analysis, variable, level, person, model, group, outcome="_dependence", among=None, confidence=0.95,
                     label="", estimate_name="dependence", population="all", estimand=None):
    primary = stats.ipw_proportion(person[outcome], model, group=group, among=among, confidence=confidence)
    include = group if among is None else group & (np.nan_to_num(stats.as_float(among), nan=0.0) > 0)
    complete = stats.complete_case_proportion(person[outcome], include=include, confidence=confidence,
                                              count=_counts(person))
    complete["n_ascertained"] = complete["n"]
    shape = {"estimate_name": estimate_name, "population": population, "estimand": estimand}
    return [
        _row(analysis, variable, level, primary, METHOD_PRIMARY + label, estimator="hajek_ipw", **shape),
        _row(analysis, variable, level, complete, METHOD_COMPLETE_CASE + label, estimator="complete_case", **shape),
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


def headline_rows(person, model, config, analysis="headline", label="", estimand=None) -> tuple[list[dict], dict]:
    """Rows of analysis ``headline`` (or ``headline_fixed_window``) and the headline.json dict."""
    conf = config.estimate.confidence_level
    rows, out = [], {"headline": {}, "complete_case": {}, "config": config.to_dict()}
    group_values = person["headline_group"].astype("str").to_numpy(dtype=object)
    for group in HEADLINE_GROUPS:
        new, primary, complete = _proportion_rows(analysis, "headline_group", group, person, model, group_values == group,
                                                  confidence=conf, label=label, estimand=estimand)
        rows += new
        out["headline"][group] = _headline_entry(primary, METHOD_PRIMARY + label)
        out["complete_case"][group] = _headline_entry(complete, METHOD_COMPLETE_CASE + label)
    new, _, _ = _proportion_rows(analysis, "headline_group", "all", person, model, np.ones(len(person), bool),
                                 confidence=conf, label=label, estimand=estimand)
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
        return headline_rows(person, _unassessed_model(person), config)[1]
    keep, violations = positivity(person)
    person = person[keep].reset_index(drop=True)
    return headline_rows(person, fit_weights(person, config), config, label=restriction_label(violations))[1]


def headline_from_estimates(estimates: pd.DataFrame, config: Config, analysis: str = "headline") -> dict:
    """Rebuild the headline.json dict from the ``estimates`` table (for the publish stage)."""
    rows = estimates[(estimates["analysis"] == analysis) & (estimates["variable"] == "headline_group")]
    out = {"headline": {}, "complete_case": {}, "config": config.to_dict()}
    for key, estimator in (("headline", "hajek_ipw"), ("complete_case", "complete_case")):
        for group in HEADLINE_GROUPS:
            match = rows[(rows["level"] == group) & (rows["estimator"] == estimator)]
            if len(match) != 1:
                raise StageOrderError(f"estimates has {len(match)} '{estimator}' headline rows for {group}; rerun the estimate stage")
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
    populations = {"by_stratum": ("gt_split", person["_gt_4_weeks"].to_numpy() > 0),
                   "by_stratum_overall": ("all", np.ones(len(person), dtype=bool))}
    for column in STRATA:
        values, levels = _levels(person["_misuse_known"] if column == "misuse" else person[column])
        labels = STRATUM_LABELS.get(column, {})
        for analysis, (population, in_population) in populations.items():
            for level in levels:
                group = in_population & (values == level)
                rows += _proportion_rows(
                    analysis, column, labels.get(level, level), person, model, group,
                    confidence=config.estimate.confidence_level, population=population,
                )[0]
    return rows


def component_rows(person, model, config) -> list[dict]:
    rows = []
    group_values = person["headline_group"].astype("str").to_numpy(dtype=object)
    groups = {g: group_values == g for g in HEADLINE_GROUPS} | {"all": np.ones(len(person), dtype=bool)}
    for component in COMPONENTS:
        for level, group in groups.items():
            rows += _proportion_rows("components", component, level, person, model, group, outcome="_" + component,
                                     confidence=config.estimate.confidence_level, estimate_name=component)[0]
    return rows


def cumulative_incidence_rows(cells: pd.DataFrame, model, config) -> list[dict]:
    """Curves per headline group from the event table ``aggregate.event_cells`` (one row per
    (headline_group, day, cause) with persons, summed weights, squared weights and weight-model scores)."""
    rows = []
    conf = config.estimate.confidence_level
    if cells is None or not len(cells):
        return rows
    time_days = cells["time"].to_numpy(dtype=float)
    grid = np.arange(0, np.nanmax(time_days) + CIF_GRID_DAYS, CIF_GRID_DAYS)
    group_values = cells["headline_group"].astype("str").to_numpy(dtype=object)
    groups = {g: group_values == g for g in HEADLINE_GROUPS} | {"all": np.ones(len(cells), dtype=bool)}
    score_columns = [c for c in cells.columns if c.startswith("_s")]
    moment = model.residual_moment()
    for level, group in groups.items():
        if not group.any():
            continue
        part = cells[group]
        last = np.nanmax(time_days[group])
        times = grid[grid <= last + CIF_GRID_DAYS - 1]
        correction = stats.WeightCorrection(part[score_columns].to_numpy(dtype=float), model.inverse_information, moment)
        primary = {"weight_sum": part["weight_sum"].to_numpy(dtype=float),
                   "weight_square": part["weight_square"].to_numpy(dtype=float), "correction": correction}
        for method, estimator, kwargs in ((METHOD_AJ_PRIMARY, "aalen_johansen_ipw", primary),
                                          (METHOD_AJ_COMPLETE_CASE, "aalen_johansen", {})):
            curve = stats.aalen_johansen_cells(part["time"].to_numpy(dtype=float), part["cause"].to_numpy(dtype=int),
                                               count=part["count"].to_numpy(dtype=float), times=times,
                                               confidence=conf, **kwargs)
            for record in curve.to_dict("records"):
                rows.append(
                    _row("cumulative_incidence", "headline_group", level, record, method,
                         time_days=int(record["time_days"]), n=int(record["at_risk"]), events=int(record["events"]),
                         estimator=estimator, estimate_name="cumulative_incidence")
                )
    return rows


def dose_response_rows(person, model, config, trend: pd.DataFrame | None = None) -> list[dict]:
    """Odds ratios of dependence: bands model (duration band, dose band, age, sex,
    indication, misuse) on the patterns, and a trend model with log2(duration) instead of bands
    on ``trend`` (``aggregate.trend_cells``: the assessed persons per weight pattern and day count;
    ``_row`` = their row in ``model``). Without ``trend`` no trend row."""
    rows = []
    conf = config.estimate.confidence_level
    known = person["_outcome_known"].to_numpy(dtype=bool)
    outcome = np.nan_to_num(stats.as_float(person["_dependence"]))[known]
    if outcome.size == 0 or outcome.min() == outcome.max():
        # No persons with a known outcome, or no contrast (zero events is a result,
        # but no model can be fitted to it): the report says there is no model.
        return rows
    references = {"duration_band": config.estimate.band_labels()[0]}
    count = _counts(person)
    frame = person.assign(misuse=np.nan_to_num(stats.as_float(person["misuse"]), nan=0.0))
    specs = [("bands", DOSE_RESPONSE_CATEGORICAL, ("misuse",), (), frame, model, person["_dependence"])]
    if trend is not None and len(trend):
        cells = trend.assign(misuse=np.nan_to_num(stats.as_float(trend["misuse"]), nan=0.0),
                             log2_duration_days=np.log2(np.maximum(stats.as_float(trend["duration_days"]), 1.0)))
        specs.append(("trend", DOSE_RESPONSE_CATEGORICAL[1:], ("misuse",), ("log2_duration_days",), cells,
                      model.rows(cells["_row"].to_numpy(), _counts(cells)), cells["dependence"]))
    for label, categorical, binary, continuous, data, rows_model, outcome in specs:
        X, names = stats.design_matrix(data, categorical, binary, continuous, references=references,
                                       count=rows_model.frequency)
        table = stats.logistic_odds_ratios(outcome, X, names, model=rows_model, confidence=conf)
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
            rows.append(_row("dose_response", variable, level, record, f"{METHOD_OR} ({label} model)",
                             estimator="logistic_or_ipw" if label == "bands" else "logistic_or_ipw_trend",
                             estimate_name="odds_ratio"))
        if label == "bands":
            for column in categorical:  # reference rows: OR 1 by definition
                values, levels = _levels(frame[column])
                used = {r["term"][len(column) + 1 : -1] for r in table.to_dict("records") if r["term"].startswith(column + "[")}
                for level in levels:
                    if level not in used:
                        members = known & (values == level)
                        rows.append(_row("dose_response", column, level, {"estimate": 1.0}, f"{METHOD_OR} (bands model; reference level)",
                                         n=int(round(count[members].sum())), events=int(round((count * y)[members].sum())),
                                         estimator="reference_level", estimate_name="odds_ratio"))
            members = known & (frame["misuse"].to_numpy() == 0)
            rows.append(_row("dose_response", "misuse", "false", {"estimate": 1.0}, f"{METHOD_OR} (bands model; reference level)",
                             n=int(round(count[members].sum())), events=int(round((count * y)[members].sum())),
                             estimator="reference_level", estimate_name="odds_ratio"))
    return rows


def tolerance_rows(person, config, ratios: pd.DataFrame) -> list[dict]:
    """Dose escalation by indication (all cohort persons; from prescriptions, so no weighting).

    The share with an increase comes from the patterns (``increased``); the median escalation ratio
    from ``ratios`` (``aggregate.ratio_counts``: persons per (indication, ratio) value)."""
    rows = []
    conf = config.estimate.confidence_level
    count = _counts(person)
    values, levels = _levels(person["indication"])
    increased = np.nan_to_num(stats.as_float(person["increased"]), nan=0.0)
    ratio_values = _levels(ratios["indication"])[0] if len(ratios) else np.array([], dtype=object)
    ratio = ratios["ratio"].to_numpy(dtype=float)
    ratio_count = ratios["count"].to_numpy(dtype=float)
    for level in [*levels, "all"]:
        group = np.ones(len(person), bool) if level == "all" else values == level
        share = stats.complete_case_proportion(np.where(group, increased, np.nan), confidence=conf, count=count)
        rows.append(_row("tolerance", "indication", level, share, "tolerance: share with a dose increase, Wilson CI",
                         estimator="wilson", estimate_name="dose_increase"))
        in_level = np.ones(len(ratios), bool) if level == "all" else ratio_values == level
        median = stats.median_interval(ratio[in_level], conf, count=ratio_count[in_level])
        rows.append(_row("tolerance", "indication", level, median, "tolerance: median dose escalation ratio, order-statistic CI",
                         events=None, estimator="median", estimate_name="dose_escalation_ratio"))
    return rows


def withdrawal_rows(person, model, config) -> list[dict]:
    """Withdrawal symptoms by how the episode ended: among ascertained and among dependent persons."""
    rows = []
    values, levels = _levels(person["ending"], ["taper", "abrupt", "ongoing"])
    dependent = np.nan_to_num(person["_dependence"].to_numpy(), nan=0.0)
    for level in levels:
        group = values == level
        rows += _proportion_rows("withdrawal_by_ending", "ending_among_ascertained", level, person, model, group,
                                 outcome="_dep_withdrawal", confidence=config.estimate.confidence_level,
                                 estimate_name="withdrawal")[0]
        rows += _proportion_rows("withdrawal_by_ending", "ending_among_dependent", level, person, model, group,
                                 outcome="_dep_withdrawal", among=dependent, confidence=config.estimate.confidence_level,
                                 estimate_name="withdrawal", population="dependent")[0]
    return rows


WEIGHT_STATS = ("min", "p1", "p5", "p25", "p50", "p75", "p95", "p99", "max", "ess")


def weight_rows(person, model, analysis="weights", label="") -> tuple[list[dict], dict]:
    """Distribution of the weights (percentiles, Kish effective sample size) per headline group."""
    rows, summaries = [], {}
    group_values = person["headline_group"].astype("str").to_numpy(dtype=object)
    groups = {"all": np.ones(len(person), dtype=bool)} | {g: group_values == g for g in HEADLINE_GROUPS}
    for population, group in groups.items():
        summary = stats.weight_summary(np.where(group, model.weight, 0.0), count=model.frequency)
        summaries[population] = summary
        for stat in WEIGHT_STATS:
            rows.append(_row(analysis, stat, population, {"estimate": summary[stat]},
                             "weights: inverse probability of ascertainment (ess = Kish effective sample size)" + label,
                             n=int(round(model.frequency[group].sum())), events=summary["n"], n_assessed=summary["n"],
                             estimator="weight_summary",
                             estimate_name="effective_sample_size" if stat == "ess" else "weight"))
    return rows, summaries


def anchor_rows(person, model, config) -> tuple[list[dict], dict]:
    """Our estimates for the groups comparable to the published anchors."""
    conf = config.estimate.confidence_level
    flag = {name: np.nan_to_num(stats.as_float(person[name]), nan=0.0) > 0 for name in aggregate.ANCHOR_FLAGS}
    ended = person["ending"].astype("str").isin(["taper", "abrupt"]).to_numpy()
    weeks, months, days = MARRIOTT_TYRER.days // 7, RICKELS.months, RICKELS.days
    specs = [
        (MARRIOTT_TYRER.key, f">={MARRIOTT_TYRER.days} days", flag["duration_ge_marriott_tyrer"], "_dependence",
         MARRIOTT_TYRER.value,
         f"Marriott & Tyrer (1993) reported dependence in '{MARRIOTT_TYRER.value_words}' of patients on regular "
         f"prescriptions for {weeks} weeks or longer",
         f"of persons treated for {weeks} weeks or longer developed physical dependence within the outcome window"),
        (RICKELS.key, f"<{days} days, ended", flag["duration_lt_rickels"] & ended, "_dep_withdrawal", RICKELS.short_value,
         f"Rickels et al. (1983) reported withdrawal in {RICKELS.short_value:.0%} after < {months} months of diazepam",
         f"of persons whose episode ended after less than {months} months ({days} days) had withdrawal symptoms recorded"),
        (RICKELS.key, f">={days} days, ended", flag["duration_ge_rickels"] & ended, "_dep_withdrawal", RICKELS.long_value,
         f"Rickels et al. (1983) reported withdrawal in {RICKELS.long_value:.0%} after >= {months} months of diazepam",
         f"of persons whose episode ended after {months} months ({days} days) or more had withdrawal symptoms recorded"),
    ]
    rows, anchors = [], {}
    for key, level, group, outcome, value, published, ours in specs:
        result = stats.ipw_proportion(person[outcome], model, group=group, confidence=conf)
        estimable = not np.isnan(result["estimate"])
        consistent = bool(estimable and result["ci_low"] <= value <= result["ci_high"])
        name = outcome.lstrip("_").replace("dep_withdrawal", "withdrawal")
        rows.append(_row("anchors", key, level, result, METHOD_PRIMARY, estimator="hajek_ipw", estimate_name=name))
        rows.append(_row("anchors", key, level, {"estimate": value}, f"anchor: {published}", n=None, events=None,
                         estimator="published", estimate_name=name))
        rows.append(_row("anchors", key, level, {"estimate": float(consistent) if estimable else None},
                         "anchor: published figure inside our CI (1 = yes, 0 = no)", n=None, events=None,
                         estimator="interval_check", estimate_name="published_inside_ci"))
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


METHOD_EXPOSURE = "exposure: share of new users whose first treatment lasted more than the headline split, Wilson CI"


def trend_rows(cells, model, config) -> list[dict]:
    """Trends and geography (issue 15): per calendar year of treatment start and per region,
    the share of new users treated > ``headline_split_days`` (exposure rows: n = new users,
    events = those treated longer; duration is known for everyone, so no weighting) and
    dependence among all new users and among those treated longer (primary and complete case).

    Analyses ``by_calendar_year`` / ``by_region``; ``variable`` is ``calendar_year`` or
    ``region`` with the population after ``|`` for the dependence rows, as in ``by_stratum``.
    Years come from ``episode_start``: a provider's per-person date shift moves them too.
    ``cells``: ``aggregate.group_sums`` (sums per year x region x headline group; None when the
    person table has neither column, e.g. a simulation's).
    """
    rows = []
    if cells is None or not len(cells):
        return rows
    conf = config.estimate.confidence_level
    longer = cells["headline_group"].astype("str").to_numpy(dtype=object) == "gt_4_weeks"
    count = cells["count"].to_numpy(dtype=float)
    present = cells.attrs.get("breakdowns", {"episode_start": True, "region": True})
    breakdowns = {}  # a person table without the column (e.g. a simulation's) has no such breakdown
    if present["episode_start"]:
        start = pd.to_datetime(cells["episode_start"], errors="coerce")
        breakdowns["by_calendar_year"] = ("calendar_year", start.dt.year.astype("Int64").astype("string").fillna("unknown"))
    if present["region"]:
        region = cells["region"].astype("string").str.strip()
        breakdowns["by_region"] = ("region", region.where(region != "", pd.NA).fillna("unknown"))
    a_columns = sorted((c for c in cells.columns if c[0] == "a" and c[1:].isdigit()), key=lambda c: int(c[1:]))
    b_columns = ["b" + c[1:] for c in a_columns]
    for analysis, (column, series) in breakdowns.items():
        values, levels = _levels(series)
        for level in levels:
            group = values == level
            share = stats.complete_case_proportion(np.where(group, longer, np.nan), confidence=conf, count=count)
            rows.append(_row(analysis, column, level, share, METHOD_EXPOSURE, estimator="wilson",
                             estimate_name="treated_gt_split"))
            for population, among in (("all", np.ones(len(cells), dtype=bool)), ("gt_split", longer)):
                part = cells[group & among]
                sums = {k: part[k].sum() for k in ("count", "n_assessed", "events", "w", "w2", "wy", "w2yy")}
                sums.update(n=sums["count"], a=part[a_columns].sum().to_numpy(dtype=float),
                            b=part[b_columns].sum().to_numpy(dtype=float))
                primary = stats.ipw_proportion_from_sums(sums, model, confidence=conf)
                n_assessed, events = int(round(sums["n_assessed"])), int(round(sums["events"]))
                low, high = stats.wilson_interval(events, n_assessed, conf)
                complete = {"estimate": events / n_assessed if n_assessed else float("nan"), "ci_low": low,
                            "ci_high": high, "n": n_assessed, "events": events, "n_ascertained": n_assessed}
                shape = {"estimate_name": "dependence", "population": population}
                rows += [_row(analysis, column, level, primary, METHOD_PRIMARY, estimator="hajek_ipw", **shape),
                         _row(analysis, column, level, complete, METHOD_COMPLETE_CASE, estimator="complete_case", **shape)]
    return rows


def to_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows as the typed ``estimates`` frame."""
    frame = pd.DataFrame(rows, columns=list(ESTIMATE_COLUMNS))
    for column in ("analysis", "estimand", "estimator", "population", "variable", "level", "estimate_name",
                   "estimate_type", "method"):
        frame[column] = frame[column].astype("str")
    for column in ("time_days", "n", "n_assessed", "events"):
        frame[column] = pd.array([None if v is None or (isinstance(v, float) and np.isnan(v)) else int(v) for v in frame[column]], dtype="Int64")
    for column in ("estimate", "ci_low", "ci_high"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return frame


# Estimators computed on the positivity-restricted cohort with (or beside) the weight model.
RESTRICTED_ESTIMATORS = ("hajek_ipw", "complete_case", "aalen_johansen_ipw", "aalen_johansen", "logistic_or_ipw",
                         "logistic_or_ipw_trend", "reference_level", "weight_summary")


def _labelled(rows: list[dict], label: str) -> list[dict]:
    """Append the positivity restriction label to the method of every row that used the weight model
    (primary, complete case on the restricted cohort, weights) and does not yet carry it."""
    if not label:
        return rows
    for row in rows:
        method = row["method"]
        if row["estimator"] in RESTRICTED_ESTIMATORS and not method.endswith(label):
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


def _unassessed_model(person: pd.DataFrame) -> stats.AscertainmentModel:
    """The weight model when nobody was assessed: every weight 0, so every estimate is NaN (not estimable)."""
    n = len(person)
    return stats.AscertainmentModel(
        design=np.ones((n, 1)), names=("intercept",), ascertained=np.zeros(n, dtype=bool),
        probability=np.full(n, 1e-12), weight=np.zeros(n), inverse_information=np.zeros((1, 1)), converged=True,
        count=_counts(person),
    )


def _fit_logged(person: pd.DataFrame, config: Config, estimand: str, warnings_out: list[str]) -> stats.AscertainmentModel:
    if not person["_outcome_known"].any():
        return _unassessed_model(person)
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


def diagnostic_rows(estimand: str, person: pd.DataFrame, kept: pd.DataFrame, model, violations, config,
                    unassessing: int) -> list[dict]:
    """Positivity, convergence, weight truncation and records that assess nothing, for one estimand.

    ``person`` / ``kept``: the estimand's pattern table before / after the positivity restriction;
    ``unassessing``: persons whose only records assess nothing (``aggregate.totals``)."""
    rows = []
    tag = f"estimand_{estimand}"
    count = _counts(person)
    shape = {"estimator": "diagnostic", "estimand": estimand}
    rows.append(_row("diagnostics", "only_unassessing_records", tag, {"estimate": None},
                     "diagnostics: persons whose only records in the window assess nothing (another diagnosis, "
                     "an empty visit): outcome unknown, not negative (events = such persons, n = persons)",
                     n=int(round(count.sum())), events=unassessing,
                     n_assessed=int(round(count[person["_outcome_known"].to_numpy(dtype=bool)].sum())),
                     estimate_name="persons", **shape))
    for violation in violations:
        rows.append(_row("diagnostics", "positivity_violation", f"{tag}|{violation['variable']}: {violation['level']}",
                         {"estimate": None}, "diagnostics: weight-model level without any assessed person; "
                         "excluded from the estimand (n = persons excluded)",
                         n=violation["persons"], events=0, n_assessed=0, estimate_name="persons", **shape))
    n_kept = int(round(_counts(kept).sum()))
    rows.append(_row("diagnostics", "weight_model_converged", tag, {"estimate": float(model.converged)},
                     "diagnostics: 1 = the weight model (logistic, IRLS) converged, 0 = it did not",
                     n=n_kept, events=None, n_assessed=model.n_ascertained, estimate_name="converged", **shape))
    low, high = config.estimate.weight_truncation_percentiles
    bounds = (stats.weighted_percentile(model.weight[model.ascertained], model.frequency[model.ascertained], [low, high])
              if model.ascertained.any() else (None, None))
    rows.append(_row("diagnostics", "weight_truncation_bounds", tag,
                     {"estimate": None, "ci_low": None if bounds[0] is None else float(bounds[0]),
                      "ci_high": None if bounds[1] is None else float(bounds[1])},
                     f"diagnostics: weights at the {low:g}th and {high:g}th percentiles (ci_low, ci_high), the "
                     "truncation bounds of the truncated-weight sensitivity analysis",
                     n=n_kept, events=None, n_assessed=model.n_ascertained, estimate_name="truncation_bounds", **shape))
    return rows


def estimate_tables(person: pd.DataFrame, config: Config) -> tuple[pd.DataFrame, dict]:
    """Every analysis except the rebuild-based sensitivity analyses, from an ``analysis_person`` DataFrame
    (registered in an in-memory DuckDB and aggregated there, like the warehouse table in ``run``)."""
    check_columns(person.columns)
    con = duckdb.connect()
    try:
        con.register("analysis_person_frame", person)
        frame, extras, _ = _estimate(con, "analysis_person_frame", config)
    finally:
        con.close()
    return frame, extras


def _estimate(con: duckdb.DuckDBPyConnection, relation: str, config: Config) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """The estimates frame and extras from ``relation`` (person rows in DuckDB), and its pattern table.

    Reads from DuckDB only aggregates: the pattern table, the event table of the curves, the
    (indication, ratio) counts of the tolerance medians and the diagnostics' totals."""
    check_columns(aggregate.columns_of(con, relation))
    warnings_out: list[str] = []
    current = aggregate.patterns(con, relation)
    totals = aggregate.totals(con, relation)
    full = prepare(current, config)
    # ---- estimand (a)
    person, violations, label = _restrict(full, "a", warnings_out)
    model = _fit_logged(person, config, "a", warnings_out)
    rows, headline = headline_rows(person, model, config, label=label)
    rows += duration_band_rows(person, model, config)
    rows += stratum_rows(person, model, config)
    rows += component_rows(person, model, config)
    cells = (aggregate.event_cells(con, relation, aggregate.weight_table(person, model))
             if model.ascertained.any() else None)
    rows += cumulative_incidence_rows(cells, model, config)
    trend = (aggregate.trend_cells(con, relation, aggregate.row_table(person, model))
             if model.ascertained.any() else None)
    rows += dose_response_rows(person, model, config, trend)
    kept_patterns = person[list(aggregate.WEIGHT_KEY)].drop_duplicates() if violations else None
    rows += tolerance_rows(person, config, aggregate.ratio_counts(con, relation, kept_patterns))
    rows += withdrawal_rows(person, model, config)
    rows += trend_rows(aggregate.group_sums(con, relation, aggregate.inverse_probability_table(person, model)),
                       model, config)
    new, weights = weight_rows(person, model)
    rows += new
    new, anchors = anchor_rows(person, model, config)
    rows += new
    rows = _labelled(rows, label)
    rows += diagnostic_rows("a", full, person, model, violations, config, totals["only_unassessing_records"])
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
        rows += diagnostic_rows("b", fixed_full, fixed, model_b, violations_b, config,
                                totals["only_unassessing_records_fixed"])
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
    return to_frame(rows), extras, current


def in_sample_sensitivity_rows(person, model, config, estimand: str, label: str) -> list[dict]:
    """Sensitivity analyses that need no rebuild: truncated weights, and (estimand a) dropping
    episodes ended by observation end (ongoing: censored durations and windows)."""
    rows = []
    if not model.ascertained.any():
        return rows
    suffix = "" if estimand == "a" else FIXED
    low, high = config.estimate.weight_truncation_percentiles
    clipped = truncated(model, config)
    for row in headline_rows(person, clipped, config, label=label, estimand=estimand)[0]:
        if row["level"] in HEADLINE_GROUPS and row["estimator"] == "hajek_ipw":
            rows.append({**sensitivity_row(row, f"weights_truncated{suffix}", f"p{low:g}-p{high:g}"),
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
                    rows.append(sensitivity_row(row, "drop_ongoing", "episodes ended by observation end excluded"))
    return rows


def sensitivity_row(row: dict, setting: str, value) -> dict:
    """A headline row as a ``sensitivity`` row: ``variable`` = the varied setting, ``level`` = its value,
    ``population`` = the headline group's (``gt_split`` / ``le_split``)."""
    return {**row, "analysis": "sensitivity", "variable": setting, "population": population_of_group(row["level"]),
            "level": str(value)}


# --------------------------------------------------------------------------- warehouse


def _require_person(con: duckdb.DuckDBPyConnection) -> str:
    if not table_exists(con, "analysis_person"):
        raise StageOrderError("table analysis_person not found: run the transform stage first (python -m pipeline transform)")
    return "analysis_person"


def _read_patterns(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    relation = _require_person(con)
    check_columns(aggregate.columns_of(con, relation))
    return aggregate.patterns(con, relation)


def _write(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame, replace_settings: tuple[str, ...] | None = None) -> None:
    """Replace ``estimates``; with ``replace_settings`` replace only the sensitivity rows of those settings."""
    select = f"select {select_list()} from _estimates_frame"  # columns and types: pipeline/estimate/columns.py
    con.register("_estimates_frame", frame)
    try:
        if replace_settings is None or not table_exists(con, "estimates"):
            con.execute("create or replace table estimates as " + select)
        else:
            con.execute("delete from estimates where analysis = 'sensitivity' and list_contains(?, split_part(variable, '|', 1))",
                        [list(replace_settings)])
            con.execute("insert into estimates " + select)
    finally:
        con.unregister("_estimates_frame")


def run(con: duckdb.DuckDBPyConnection, config: Config, with_sensitivity: bool = False) -> dict:
    """Aggregate ``analysis_person`` in DuckDB, replace ``estimates``; with ``with_sensitivity`` also add the
    sensitivity rows (else the sensitivity stage, ``pipeline.estimate.sensitivity.run``, adds them).

    Returns the headline.json dict (docs/report.md) (not yet disclosure-controlled)
    both spread at the top level (``headline``, ``complete_case``, ``config``)
    and whole as ``headline_json``; plus ``anchors`` and ``anchor_sentences``, ``weights``
    (distribution per headline group), ``weight_model``, ``rows`` and ``seconds``.
    """
    started = time.perf_counter()
    frame, extras, current = _estimate(con, _require_person(con), config)
    _write(con, frame)
    rows = len(frame)
    if with_sensitivity:
        rows += len(sensitivity(con, config, current=current))
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


SENSITIVITY_SETTINGS = (
    ("episodes", "persistence_window_days", "sensitivity_persistence_window_days"),
    ("outcome", "sds_cutoff", "sensitivity_sds_cutoff"),
    ("outcome", "window_after_end_days", "sensitivity_window_after_end_days"),
)


def sensitivity(con: duckdb.DuckDBPyConnection, config: Config, current: pd.DataFrame | None = None) -> pd.DataFrame:
    """Headline estimates with one setting varied at a time; rows replace analysis ``sensitivity``.

    The variants' pattern tables come from one DuckDB query over the transform's tables
    (``pipeline.estimate.sensitivity``); the value equal to the current setting reuses
    ``current`` (the pattern table of ``analysis_person``, or the person table itself).
    Rows: variable = the setting, population = the headline group, level = the value.
    """
    from pipeline.estimate import sensitivity as variants_sql

    variants_sql.require_inputs(con)
    current = _read_patterns(con) if current is None else patterns_of_frame(current)
    variants = variants_sql.variants(config)
    varied = iter(variants_sql.variant_patterns(con, config, [v for v in variants if not v.current]))
    rows = []
    for variant in variants:
        person = prepare(current if variant.current else next(varied), variant.config)
        if not person["_outcome_known"].any():
            model, violations = _unassessed_model(person), []
        else:
            keep, violations = positivity(person)
            person = person[keep].reset_index(drop=True)
            model = fit_weights(person, variant.config)
        headline = headline_rows(person, model, variant.config, label=restriction_label(violations))[0]
        for row in headline:
            if row["level"] in HEADLINE_GROUPS:
                rows.append(sensitivity_row(row, variant.key, variant.value))
    frame = to_frame(rows)
    _write(con, frame, replace_settings=tuple(key for _, key, _ in SENSITIVITY_SETTINGS))
    return frame
