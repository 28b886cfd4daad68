"""Sufficient statistics of ``analysis_person``, built by DuckDB GROUP BY queries.

The estimate stage never loads one row per person. Every estimator of
``pipeline.estimate.stats`` is a sum over persons of terms that depend only on
a person's covariates, outcome and group memberships, so persons sharing all of
those (a *pattern*) contribute identical terms: the sums become sums over
patterns times their ``_count`` (frequency weights), with the same results.

- :func:`patterns`: one row per distinct combination of the columns the
  estimators use (weight-model covariates, grouping columns, outcomes of both
  estimands), with ``_count``. Columns are normalised on the way (flags NULL ->
  false; outcomes only where assessed), exactly as ``run.prepare`` would, so
  that needless distinctions do not multiply patterns. Every weight-model
  covariate is categorical (duration enters through its band), so no
  day-level column is in the key: the number of patterns is bounded by the
  levels of the categorical columns, not by persons or distinct durations.
  The anchors' duration thresholds come as flags (``ANCHOR_FLAGS``).
- :func:`trend_cells`: the assessed persons per weight pattern x misuse x
  duration in days x outcome, for the one model that needs days (the
  dose-response trend, log2 duration): only assessed persons, so it grows
  with (weight patterns x distinct durations) among them.
- :func:`event_cells`: the Aalen-Johansen event table, one row per
  (headline group, day, cause) with the persons, their summed weights, summed
  squared weights and summed weight-model scores ``w (1 - p) X`` -- weights
  joined in DuckDB from a small table of weight-model patterns.
- :func:`ratio_counts`: (indication, dose escalation ratio) -> persons, for
  the tolerance medians (order statistics need the distinct values; the
  table grows with distinct ratios, which is the one place that can approach
  the number of persons).
- :func:`totals`: whole-cohort counts for the diagnostics.

- :func:`group_sums`: for the trends by calendar year and region, the
  sufficient statistics of the Hajek proportion and its stacked sandwich per
  (year, region, headline group): persons, assessed, events, sums of w, w^2,
  w y, w^2 y^2 and of the scores ``w (1 - p) X`` and ``w (1 - p) y X``
  (adding year and region to the pattern key would make nearly every person a
  pattern of their own).

``relation`` is a table or view name in ``con`` (``analysis_person`` in the
warehouse, or a registered DataFrame); names are quoted, never values pasted.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

CATEGORICAL = ("duration_band", "headline_group", "age_band", "sex", "indication", "dose_band", "ending")
FLAGS = ("rx_many_prescribers", "rx_many_pharmacies", "rx_early_refills", "rx_high_dose", "rx_misuse_signal",
         "died_in_window", "fixed_window_defined", "misuse")
COMPONENTS = ("dep_icd", "dep_withdrawal", "dep_assessed", "dep_sds")
# The weight model's covariates (run.WEIGHT_*: categorical, flags, _gt_4_weeks from headline_group):
# the key of the weight table that event_cells, ratio_counts, group_sums and trend_cells join.
WEIGHT_KEY = ("age_band", "sex", "indication", "dose_band", "duration_band", "headline_group",
              "rx_many_prescribers", "rx_many_pharmacies", "rx_early_refills", "rx_high_dose", "rx_misuse_signal",
              "died_in_window")


def anchor_flags(duration: str = "duration_days") -> dict[str, str]:
    """Pattern flag -> its expression over ``duration`` (a column): the published anchors' duration groups
    (pipeline/estimate/anchors.py), the only day-level facts the estimators need besides the trend
    model. A NULL duration is in none of the groups (as ``NaN >= d`` and ``NaN < d`` are both false).

    >>> anchor_flags()["duration_lt_rickels"]
    'coalesce(cast(duration_days as double) < 240, false)'
    """
    from pipeline.estimate.anchors import MARRIOTT_TYRER, RICKELS

    conditions = {"duration_ge_marriott_tyrer": (">=", MARRIOTT_TYRER.days), "duration_lt_rickels": ("<", RICKELS.days),
                  "duration_ge_rickels": (">=", RICKELS.days)}
    return {flag: f"coalesce(cast({duration} as double) {op} {int(days)}, false)"
            for flag, (op, days) in conditions.items()}


ANCHOR_FLAGS = tuple(anchor_flags())


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _flag(column: str) -> str:
    """A 0/1/bool/NULL column as a non-NULL boolean (positive = true), as ``np.nan_to_num(as_float(x)) > 0``."""
    return f"coalesce(cast({_q(column)} as double) > 0, false)"


KNOWN = f"({_flag('ascertained')} and dependence is not null)"
KNOWN_FIXED = f"({_flag('fixed_window_defined')} and {_flag('ascertained_fixed')} and dependence_fixed is not null)"


# The categorical members of WEIGHT_KEY; the rest are 0/1 flags.
_WEIGHT_KEY_CATEGORICAL = ("age_band", "sex", "indication", "dose_band", "duration_band", "headline_group")


def _weight_key_select() -> list[str]:
    """Select expressions of WEIGHT_KEY's categorical and flag columns, normalised as the weight patterns are."""
    return ([f"cast({_q(c)} as varchar) as {_q(c)}" for c in _WEIGHT_KEY_CATEGORICAL]
            + [f"{_flag(c)} as {_q(c)}" for c in WEIGHT_KEY if c not in _WEIGHT_KEY_CATEGORICAL])


def _base_select() -> str:
    """The normalised per-person columns the patterns are made of (one expression each)."""
    parts = [f"cast({_q(c)} as varchar) as {_q(c)}" for c in CATEGORICAL]
    parts += [f"{_flag(c)} as {_q(c)}" for c in FLAGS]
    parts += [
        f"{KNOWN} as ascertained",
        f"case when {KNOWN} then cast(dependence as double) end as dependence",
        *(f"case when {KNOWN} then coalesce(cast({_q(c)} as double), 0) end as {_q(c)}" for c in COMPONENTS),
        f"{KNOWN_FIXED} as ascertained_fixed",
        f"case when {KNOWN_FIXED} then cast(dependence_fixed as double) end as dependence_fixed",
        "days_to_first_increase is not null as increased",
        *(f"{expression} as {_q(flag)}" for flag, expression in anchor_flags().items()),
    ]
    return ",\n       ".join(parts)


PATTERN_COLUMNS = (*CATEGORICAL, *FLAGS, "ascertained", "dependence", *COMPONENTS,
                   "ascertained_fixed", "dependence_fixed", "increased", *ANCHOR_FLAGS)


def columns_of(con: duckdb.DuckDBPyConnection, relation: str) -> list[str]:
    cursor = con.execute(f"select * from {_q(relation)} limit 0")
    names = [row[0] for row in cursor.description]
    cursor.fetchall()
    return names


def patterns(con: duckdb.DuckDBPyConnection, relation: str) -> pd.DataFrame:
    """One row per covariate pattern x outcomes x assessment of ``relation``, with ``_count`` persons.

    Rows come sorted by every key column, so the result does not depend on DuckDB's thread scheduling.
    """
    keys = ", ".join(_q(c) for c in PATTERN_COLUMNS)
    frame = con.execute(
        f"select {keys}, count(*) as _count from (select {_base_select()} from {_q(relation)}) "
        f"group by all order by {keys} nulls first"
    ).df()
    frame["_count"] = frame["_count"].astype("int64")
    return frame


def totals(con: duckdb.DuckDBPyConnection, relation: str) -> dict:
    """Whole-cohort counts for the diagnostics (persons whose only records assess nothing)."""
    row = con.execute(
        f"select count(*) filter (where {_flag('only_unassessing_records')}), "
        f"count(*) filter (where {_flag('fixed_window_defined')} and {_flag('only_unassessing_records_fixed')}) "
        f"from {_q(relation)}"
    ).fetchall()[0]
    return {"only_unassessing_records": int(row[0]), "only_unassessing_records_fixed": int(row[1])}


def _register_weights(con: duckdb.DuckDBPyConnection, weights: pd.DataFrame) -> str:
    name = "_estimate_weight_patterns"
    con.register(name, weights)
    return name


def _join_on(left: str, right: str) -> str:
    return " and ".join(f"{left}.{_q(c)} is not distinct from {right}.{_q(c)}" for c in WEIGHT_KEY)


def _cells(con: duckdb.DuckDBPyConnection, relation: str, weights: pd.DataFrame, extra: dict[str, str],
           select: str, where: str = "true", order: str = "all") -> pd.DataFrame:
    """Persons of ``relation`` counted (``e._n``) per weight pattern and ``extra`` columns (name ->
    expression over the person row; persons filtered by ``where``, NULL-free rows only where the
    caller's expressions say so), joined to the weight patterns ``w`` (``weights``, registered for
    the query): ``select`` over ``e`` and ``w``, grouped by all its plain columns."""
    base = ", ".join(_weight_key_select() + [f"{expression} as {column}" for column, expression in extra.items()])
    keys = ", ".join([f"p.{_q(c)}" for c in WEIGHT_KEY] + [f"p.{column}" for column in extra])
    name = _register_weights(con, weights)
    try:
        return con.execute(
            f"""
            with e as (
                select {keys}, count(*) as _n
                from (select {base} from {_q(relation)} where {where}) as p
                group by all
            )
            select {select}
            from e join {_q(name)} as w on {_join_on('e', 'w')}
            group by all
            order by {order}
            """
        ).df()
    finally:
        con.unregister(name)


def event_cells(con: duckdb.DuckDBPyConnection, relation: str, weights: pd.DataFrame) -> pd.DataFrame:
    """The Aalen-Johansen event table of the assessed persons: one row per (headline_group, time, cause).

    ``weights``: one row per weight-model pattern kept in the estimand (``WEIGHT_KEY`` columns as in
    :func:`patterns`), with ``_w`` (the weight 1/p) and ``_s0 .. _s{k-1}`` (``w (1 - p) X``). Persons
    whose pattern is not in ``weights`` (levels excluded for positivity) drop out with the inner join.
    Returns headline_group, time, cause, count, weight_sum, weight_square and the summed scores.

    Time = days from episode start to dependence (cause 1) for the dependent, to death (cause 2) for
    those who died in the window, else to the end of follow-up (cause 0, censored).
    """
    score_columns = [c for c in weights.columns if c.startswith("_s")]
    dependent = f"({KNOWN} and cast(dependence as double) > 0)"
    died = _flag("died_in_window")
    time = (f"cast(case when {dependent} then days_to_dependence when {died} then days_to_death "
            f"else days_followed end as double)")
    sums = "".join(f", sum(e._n * w.{_q(c)}) as {_q(c)}" for c in score_columns)
    return _cells(
        con, relation, weights,
        extra={"_time": time, "_cause": f"case when {dependent} then 1 when {died} then 2 else 0 end"},
        where=f"{KNOWN} and {time} is not null",
        select=("e.headline_group, e._time as time, e._cause as cause, sum(e._n) as count, "
                f"sum(e._n * w._w) as weight_sum, sum(e._n * w._w * w._w) as weight_square{sums}"),
        order="e.headline_group nulls first, time, cause",
    )


def ratio_counts(con: duckdb.DuckDBPyConnection, relation: str, weights: pd.DataFrame | None) -> pd.DataFrame:
    """(indication, dose_escalation_ratio) -> persons, among the persons whose weight pattern is kept
    (all persons when ``weights`` is None)."""
    base = ", ".join(["dose_escalation_ratio"] + _weight_key_select())
    source = f"(select {base} from {_q(relation)} where dose_escalation_ratio is not null) as p"
    if weights is None:
        return con.execute(f"select p.indication, cast(p.dose_escalation_ratio as double) as ratio, count(*) as count "
                           f"from {source} group by all order by all").df()
    name = _register_weights(con, weights[list(WEIGHT_KEY)])
    try:
        return con.execute(
            f"select p.indication, cast(p.dose_escalation_ratio as double) as ratio, count(*) as count "
            f"from {source} semi join {_q(name)} as w on {_join_on('p', 'w')} group by all order by all"
        ).df()
    finally:
        con.unregister(name)


def weight_table(frame: pd.DataFrame, model) -> pd.DataFrame:
    """Distinct weight-model patterns of ``frame`` (rows aligned with ``model``) with ``_w`` and the
    score columns ``_s{j} = w (1 - p) X_j`` (for the curve's stacked variance)."""
    score = (model.weight * (1 - model.probability))[:, None] * model.design
    table = frame[list(WEIGHT_KEY)].reset_index(drop=True).copy()
    table["_w"] = model.weight
    for j in range(score.shape[1]):
        table[f"_s{j}"] = score[:, j]
    keep = np.asarray(model.ascertained, dtype=bool)
    return table[keep].drop_duplicates(subset=list(WEIGHT_KEY)).reset_index(drop=True)


def inverse_probability_table(frame: pd.DataFrame, model) -> pd.DataFrame:
    """Distinct weight-model patterns of ``frame`` (all of them, assessed or not; rows aligned with
    ``model``) with ``_w = 1/p`` and ``_s{j} = (1/p) (1 - p) X_j``: an assessed person's weight and score."""
    inverse = 1.0 / model.probability
    score = (inverse * (1 - model.probability))[:, None] * model.design
    table = frame[list(WEIGHT_KEY)].reset_index(drop=True).copy()
    table["_w"] = inverse
    for j in range(score.shape[1]):
        table[f"_s{j}"] = score[:, j]
    return table.drop_duplicates(subset=list(WEIGHT_KEY)).reset_index(drop=True)


def group_sums(con: duckdb.DuckDBPyConnection, relation: str, weights: pd.DataFrame) -> pd.DataFrame | None:
    """Per (episode_start year, region, headline_group) the sufficient statistics of the Hajek proportion of
    dependence (estimand (a)) and its stacked sandwich, among persons whose weight pattern is in ``weights``
    (``inverse_probability_table``: the positivity restriction is the inner join).

    Columns: episode_start (1 January of the year; NULL when unknown or unparsable), region (as stored),
    headline_group, count (persons), n_assessed, events, w, w2, wy, w2yy, a{j} = sum w (1 - p) X_j and
    b{j} = sum w (1 - p) y X_j over the assessed. None when ``relation`` has neither column.
    """
    present = set(columns_of(con, relation))
    year = ("cast(date_trunc('year', try_cast(episode_start as date)) as date)" if "episode_start" in present
            else "cast(null as date)")
    region = "cast(region as varchar)" if "region" in present else "cast(null as varchar)"
    if "episode_start" not in present and "region" not in present:
        return None
    breakdowns = {"episode_start": "episode_start" in present, "region": "region" in present}
    score_columns = [c for c in weights.columns if c.startswith("_s")]
    a_sums = "".join(f", sum(e._n * e._known::int * w.{_q(c)}) as a{c[2:]}" for c in score_columns)
    b_sums = "".join(f", sum(e._n * e._known::int * e._y * w.{_q(c)}) as b{c[2:]}" for c in score_columns)
    frame = _cells(
        con, relation, weights,
        extra={"_year": year, "_region": region, "_known": KNOWN,
               "_y": f"case when {KNOWN} then cast(dependence as double) else 0 end"},
        select=("e._year as episode_start, e._region as region, e.headline_group, "
                "sum(e._n) as count, sum(e._n * e._known::int) as n_assessed, "
                "sum(e._n * e._known::int * e._y) as events, "
                "sum(e._n * e._known::int * w._w) as w, sum(e._n * e._known::int * w._w * w._w) as w2, "
                "sum(e._n * e._known::int * w._w * e._y) as wy, "
                f"sum(e._n * e._known::int * w._w * w._w * e._y * e._y) as w2yy{a_sums}{b_sums}"),
        order="all nulls first",
    )
    frame.attrs["breakdowns"] = breakdowns  # which of the two columns the person table has
    return frame


def row_table(frame: pd.DataFrame, model) -> pd.DataFrame:
    """Distinct weight-model patterns of ``frame`` (rows aligned with ``model``) with ``_row``: the index of
    one of the pattern's rows in ``model``, an assessed one where the pattern has one (every row of a
    pattern has the same design and probability, every assessed row the same weight)."""
    table = frame[list(WEIGHT_KEY)].reset_index(drop=True).copy()
    table["_row"] = np.arange(len(table), dtype=np.int64)
    assessed_first = np.argsort(~np.asarray(model.ascertained, dtype=bool), kind="stable")
    table = table.iloc[assessed_first].drop_duplicates(subset=list(WEIGHT_KEY))
    return table.sort_values("_row").reset_index(drop=True)


def trend_cells(con: duckdb.DuckDBPyConnection, relation: str, rows: pd.DataFrame) -> pd.DataFrame:
    """The assessed persons of ``relation`` per weight pattern, misuse, duration in days and outcome: what
    the dose-response trend model (log2 duration) needs and nothing else. Unassessed persons enter that
    model only through the weight model's residual moment, which the caller has on the patterns.

    ``rows``: :func:`row_table` (weight patterns kept in the estimand, ``_row`` = their row in the
    model); persons of other patterns drop out with the inner join. Returns dose_band, age_band, sex,
    indication, misuse (bool), duration_days, dependence (0/1), _row and _count, in a fixed order.
    """
    return _cells(
        con, relation, rows,
        extra={"_misuse": _flag("misuse"), "_duration": "cast(duration_days as double)",
               "_y": "cast(dependence as double)"},
        where=KNOWN,
        select=("e.dose_band, e.age_band, e.sex, e.indication, e._misuse as misuse, e._duration as duration_days, "
                "e._y as dependence, w._row, sum(e._n) as _count"),
        order="all nulls first",
    )
