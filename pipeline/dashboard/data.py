"""The dashboard's queries over the results store (pure pandas; no Dash here).

``load`` reads the store once per change of its file (read-only, closed at
once, so a pipeline run can append while the dashboard is up) and returns
``StoreView``: one long frame of every run's summarised_result rows with the
settings the filters need (run_id, run_time, source, result_type, estimator,
estimand) and ``value`` parsed to a number (NaN when suppressed or NA).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.publish.labels import Names
from pipeline.results import store
from pipeline.results.contract import COLUMNS, OVERALL, SEPARATOR, SUPPRESSED

HEADLINE_GROUPS = ("gt_4_weeks", "le_4_weeks")
ALL = "__all__"  # the "no filter" choice of a dropdown
SPLIT_SETTING = "estimate_headline_split_days"  # settings.csv: the run's estimate.headline_split_days
_SETTING_COLUMNS = ["run_id", "run_time", "cdm_name", "result_type", "estimator", "estimand", SPLIT_SETTING]


@dataclass
class StoreView:
    rows: pd.DataFrame  # summarised_result + settings columns + value (float) + suppressed (bool)
    runs: pd.DataFrame  # run_id, run_time, cdm_name, label

    def run_label(self, run_id: str) -> str:
        match = self.runs[self.runs["run_id"] == run_id]
        return match["label"].iloc[0] if len(match) else str(run_id)


_CACHE: dict[Path, tuple[tuple[int, int], StoreView]] = {}
_LOCK = threading.Lock()


def load(results_dir: Path | str) -> StoreView:
    """The store as a ``StoreView``, re-read only when the file changed."""
    path = store.store_path(results_dir)
    try:
        stat = path.stat()
        key = (stat.st_mtime_ns, stat.st_size)
    except FileNotFoundError:
        key = (0, 0)
    with _LOCK:
        cached = _CACHE.get(path)
        if cached and cached[0] == key:
            return cached[1]
        view = _build(store.read(results_dir))
        _CACHE[path] = (key, view)
        return view


def _build(tables: dict[str, pd.DataFrame]) -> StoreView:
    rows, settings, runs = tables["summarised_result"], tables["settings"], tables["runs"]
    for column in _SETTING_COLUMNS:
        if column not in settings.columns:
            settings[column] = None
    merged = rows.merge(settings[["result_id", *_SETTING_COLUMNS]].rename(columns={"cdm_name": "source"}),
                        on="result_id", how="left")
    text = merged["estimate_value"].astype("object")
    merged["suppressed"] = (text == SUPPRESSED).to_numpy()
    numeric = merged["estimate_type"].isin(["integer", "numeric", "proportion", "percentage"])
    logical = merged["estimate_type"] == "logical"
    value = pd.to_numeric(text.where(numeric, None), errors="coerce").astype(float)
    merged["value"] = np.where(logical, (text == "TRUE").astype(float), value)
    merged.loc[logical & text.isna(), "value"] = np.nan
    runs = runs.copy()
    runs["label"] = [f"{c} - {t[:16].replace('T', ' ')} ({r})"
                     for c, t, r in zip(runs["cdm_name"], runs["run_time"].astype(str), runs["run_id"])]
    return StoreView(rows=merged, runs=runs)


def names_of(view: StoreView, run_id: str | None) -> Names:
    """The display names of one run, its headline split worded from that run's own setting."""
    values = view.rows.loc[view.rows["run_id"] == run_id, SPLIT_SETTING].dropna() if run_id else pd.Series()
    return Names(int(values.iloc[0])) if len(values) else Names()


def group_label(names: Names, level: str) -> str:
    """'gt_4_weeks' -> 'more than 4 weeks' (as the run's setting says); 'overall' -> 'all new users'.

    >>> group_label(Names(30), "gt_4_weeks"), group_label(Names(), "overall"), group_label(Names(), "<14")
    ('more than 30 days', 'all new users', '<14 days')
    """
    if level == OVERALL:
        return "all new users"
    if level in HEADLINE_GROUPS:
        return names.level("headline_group", level)
    return f"{level} days"


def split(names: str, levels: str) -> dict[str, str]:
    """A row's ``strata_name``/``strata_level`` pair as a dict (``overall`` -> {}).

    >>> split("headline_group &&& sex", "gt_4_weeks &&& F")
    {'headline_group': 'gt_4_weeks', 'sex': 'F'}
    >>> split("overall", "overall")
    {}
    """
    if names == OVERALL:
        return {}
    return dict(zip(str(names).split(SEPARATOR), str(levels).split(SEPARATOR)))


def select(view: StoreView, run_id: str, result_type: str | tuple[str, ...], estimator: str | None = None,
           estimand: str | None = None, drug: str | None = None, variable_name: str | None = "dependence",
           strata: dict[str, str | None] | None = None) -> pd.DataFrame:
    """Rows of one run and result type, filtered; ``strata``: exact strata variables -> level (None = any level)."""
    rows = view.rows
    types = (result_type,) if isinstance(result_type, str) else result_type
    keep = (rows["run_id"] == run_id) & rows["result_type"].isin(types)
    if estimator:
        keep &= rows["estimator"] == estimator
    if estimand and estimand != ALL:
        keep &= rows["estimand"] == estimand
    if drug and drug != ALL:
        keep &= rows["group_level"] == drug
    if variable_name:
        keep &= rows["variable_name"] == variable_name
    part = rows[keep]
    if strata is not None:
        parsed = [split(n, lv) for n, lv in zip(part["strata_name"], part["strata_level"])]
        match = [set(p) == set(strata) and all(v is None or p[k] == v for k, v in strata.items()) for p in parsed]
        part = part[np.array(match, dtype=bool)] if len(part) else part
    return part


def wide(part: pd.DataFrame, by: str | None) -> pd.DataFrame:
    """One row per level of strata variable ``by`` (or one row when None): proportion, bounds, counts.

    Columns: level, proportion, lower, upper, n, events, suppressed (any estimate withheld).
    """
    out = []
    if part.empty:
        return pd.DataFrame(columns=["level", "proportion", "lower", "upper", "n", "events", "suppressed"])
    levels = [split(n, lv).get(by, OVERALL) if by else OVERALL for n, lv in zip(part["strata_name"], part["strata_level"])]
    part = part.assign(_level=levels)
    for level, rows in part.groupby("_level", sort=False):
        values = dict(zip(rows["estimate_name"], rows["value"]))

        def pick(suffix: str) -> float:
            names = [n for n in values if n.endswith(suffix)]
            return values[names[0]] if names else np.nan

        out.append({
            "level": level,
            "proportion": values.get("proportion", np.nan),
            "lower": pick("CI_lower"),
            "upper": pick("CI_upper"),
            "n": values.get("denominator_count", np.nan),
            "events": values.get("outcome_count", np.nan),
            "suppressed": bool(rows["suppressed"].any()),
        })
    frame = pd.DataFrame(out)
    return frame.iloc[sorted(range(len(frame)), key=lambda i: level_key(frame["level"].iloc[i]))].reset_index(drop=True)


def options(view: StoreView, column: str, run_id: str | None = None) -> list[str]:
    rows = view.rows if run_id is None else view.rows[view.rows["run_id"] == run_id]
    return sorted(v for v in rows[column].dropna().unique())


def stratum_levels(view: StoreView, run_id: str, variable: str) -> list[str]:
    """Levels of a strata variable in one run (e.g. the years of calendar_year), in order."""
    rows = view.rows[(view.rows["run_id"] == run_id) & view.rows["strata_name"].str.contains(variable, regex=False)]
    levels = {split(n, lv).get(variable) for n, lv in zip(rows["strata_name"], rows["strata_level"])}
    return sorted(level for level in levels if level)


def filtered_rows(view: StoreView, run_ids: list[str], estimator: str | None, estimand: str | None,
                  drug: str | None, stratum: str | None, year: str | None, region: str | None) -> pd.DataFrame:
    """What the download button gives: the selected runs' rows under the current filters, the 13 columns.

    Rows of the other estimator are left out (descriptive rows stay); with a year, region or
    stratum chosen, rows about another year, region or stratifying variable are left out.
    """
    rows = view.rows[view.rows["run_id"].isin(run_ids)]
    if estimator:
        rows = rows[rows["estimator"].isin([estimator, "descriptive"])]
    if estimand and estimand != ALL:
        rows = rows[rows["estimand"] == estimand]
    if drug and drug != ALL:
        rows = rows[rows["group_level"] == drug]
    parsed = [split(n, lv) for n, lv in zip(rows["strata_name"], rows["strata_level"])]
    keep = np.ones(len(rows), dtype=bool)
    for variable, chosen in (("calendar_year", year), ("region", region)):
        if chosen and chosen != ALL:
            keep &= np.array([p.get(variable, chosen) == chosen for p in parsed], dtype=bool)
    if stratum and stratum != ALL:
        types = rows["result_type"].isin(["by_stratum", "by_stratum_overall"]).to_numpy()
        keep &= ~types | np.array([stratum in p for p in parsed], dtype=bool)
    rows = rows[keep]
    return rows[list(COLUMNS)].reset_index(drop=True)


ESTIMATOR_LABELS = {"primary": "primary (weighted for ascertainment)", "complete_case": "complete case"}


def store_label(estimator: str | None) -> str:
    return ESTIMATOR_LABELS.get(estimator or "", estimator or "")


def level_key(level: str) -> tuple:
    """Reading order of levels: duration bands by their lower bound (``<14`` first), numbers by value,
    names A-Z, ``unknown`` last.

    >>> sorted([">=182", "14-27", "<14", "84-181"], key=level_key)
    ['<14', '14-27', '84-181', '>=182']
    >>> sorted(["West", "unknown", "East"], key=level_key)
    ['East', 'West', 'unknown']
    """
    import re

    text = str(level)
    number = re.search(r"\d+(\.\d+)?", text)
    return (text.lower() == "unknown", number is None, text.startswith(">"),
            -1.0 if text.startswith("<") else (float(number.group()) if number else 0.0), text)
