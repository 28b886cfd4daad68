"""The offline HTML report, ``reports/index.html``, rendered from Jinja2 templates.

One template per section in ``pipeline/publish/templates/`` (``headline.html.j2``,
``duration.html.j2``, ...), the page around them in ``report.html.j2``. This module
only chooses rows and computes what each section says; the templates hold the words
and the markup. Every number comes from the suppressed tables in ``Published``
(a suppressed cell has no point, no bar and no hover, only a note that it is
withheld), rows are chosen by their explicit columns (``estimator``, ``population``,
``estimate_name``, ``estimate_type``; pipeline/estimate/columns.py) and every name
reads as ``labels.Names`` says, worded from the run's settings. The page is plain
HTML and CSS with one copy of plotly.js beside it: nothing is fetched.

>>> names = Names(28)
>>> headline_sentence({"estimate": 0.315, "ci_low": 0.29, "ci_high": 0.341, "n": 4210, "events": 1326, "method": "IPW"},
...                   {"estimate": 0.062, "ci_low": 0.051, "ci_high": 0.074, "n": 5102, "events": 316, "method": "IPW"},
...                   "clonazepam", 0.95, names)
'Among 4,210 people whose first clonazepam treatment lasted more than 4 weeks, an estimated 31.5% (95% CI 29.0% to 34.1%) developed physical dependence, against 6.2% (95% CI 5.1% to 7.4%) of 5,102 people treated for up to 4 weeks.'
>>> headline_sentence({"estimate": None}, {}, "diazepam", 0.95, Names(30))
'No publishable estimate of dependence after more than 30 days of diazepam was produced (no headline rows, or the counts were too small to publish).'
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
import plotly.graph_objects as go
import plotly.offline
from markupsafe import Markup

from pipeline.config import Config
from pipeline.estimate.anchors import MARRIOTT_TYRER, RICKELS
from pipeline.estimate.columns import estimator_kind
from pipeline.publish.charts import (  # noqa: F401  (LOG_TICKS: the dose-response axis, read by tests)
    FONT, LOG_TICKS, PLOT_CONFIG, SERIES_ORDER, dot_chart, duration_chart, incidence_chart, series_of, series_rows,
    shown, trend_chart,
)
from pipeline.publish.format import ci_text, count, esc, missing as _missing, number, pct  # noqa: F401
from pipeline.publish.labels import SERIES, Names
from pipeline.publish.tables import Published, published_level_order

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                          undefined=jinja2.StrictUndefined, trim_blocks=False, lstrip_blocks=False)


# ---------------------------------------------------------------- sentences


def headline_sentence(gt: dict, le: dict, drug: str, level: float, names: Names) -> str:
    """The report's first sentence, built from headline.json's primary entries."""
    if _missing(gt.get("estimate")):
        return (f"No publishable estimate of dependence after {names.longer} of {drug} was produced "
                "(no headline rows, or the counts were too small to publish).")
    people = f"{count(gt['n'])} people" if not _missing(gt.get("n")) else "people"
    sentence = (f"Among {people} whose first {drug} treatment lasted {names.longer}, an estimated "
                f"{pct(gt['estimate'])} ({ci_text(gt['ci_low'], gt['ci_high'], level)}) developed physical dependence")
    if _missing(le.get("estimate")):
        return sentence + f"; the estimate for {names.shorter} is not published."
    others = f" of {count(le['n'])} people" if not _missing(le.get("n")) else " of people"
    return (sentence + f", against {pct(le['estimate'])} ({ci_text(le['ci_low'], le['ci_high'], level)})"
            f"{others} treated for {names.shorter}.")


def _against_one_third(entry: dict, who: str) -> str:
    low, high = entry.get("ci_low"), entry.get("ci_high")
    if _missing(entry.get("estimate")) or _missing(low) or _missing(high):
        return ""
    if low <= MARRIOTT_TYRER.value <= high:
        return f" The interval for {who} includes one-third."
    if high < MARRIOTT_TYRER.value:
        return f" The estimate for {who} is below one-third (the whole interval is)."
    return f" The estimate for {who} is above one-third (the whole interval is)."


def anchor_sentence(gt: dict, names: Names, supervised: dict | None = None, level: float = 0.95) -> str:
    """The anchors, and where our estimates stand against one-third.

    Marriott & Tyrer describe patients on regular prescriptions, i.e. supervised
    use: the closest comparison is the estimate for those treated longer than the
    split among people with no sign of misuse, given beside the all-comers estimate.
    """
    comparison = _against_one_third(gt, f"everyone treated {names.longer}")
    if supervised and not _missing(supervised.get("estimate")):
        comparison += (
            f" Among people treated {names.longer} with no misuse signal in their prescription records "
            f"(supervised use, the population {MARRIOTT_TYRER.short} describe) the estimate is "
            f"{pct(supervised['estimate'])} ({ci_text(supervised['ci_low'], supervised['ci_high'], level)})."
            + _against_one_third(supervised, "supervised use")
        )
    return (f"Published anchors: {MARRIOTT_TYRER.finding}; {RICKELS.finding}.{comparison} The anchors come from "
            "small clinical samples with other outcome definitions: they set the scale, not a target.")


# ---------------------------------------------------------------- rows


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns with None for nulls: simpler to format than pandas' nullable scalars."""
    out = frame.astype(object)
    return out.where(frame.notna(), None)


def _analysis(published: Published, *names: str) -> pd.DataFrame:
    est = published.estimates
    return _plain(est[est["analysis"].isin(names)].reset_index(drop=True))


def _kind(rows: pd.DataFrame) -> pd.Series:
    """primary / complete_case / descriptive of each row, from its estimator."""
    return rows["estimator"].map(estimator_kind) if not rows.empty else pd.Series(dtype="object")


def _without_complete_case(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[_kind(rows) != "complete_case"] if not rows.empty else rows


def _primary_part(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of the first series (primary before complete case)."""
    series = series_of(rows)
    return series_rows(rows, series[0]) if series else rows.head(0)


def _levels(rows: pd.DataFrame, band_labels: list[str]) -> list[tuple[str, str]]:
    out = []
    for variable in dict.fromkeys(rows["variable"]):
        levels = rows.loc[rows["variable"] == variable, "level"].astype(str).tolist()
        out += [(variable, level) for level in published_level_order(str(variable), levels, band_labels)]
    return out


def _people(row: Any) -> str:
    """', 120 of 1,048 people' -- or ', 1,048 people' when the estimate has no event count."""
    if not _missing(row["events"]) and not _missing(row["n"]):
        return f", {count(row['events'])} of {count(row['n'])} people"
    if not _missing(row["n"]):
        return f", {count(row['n'])} people"
    return ""


def value_items(rows: pd.DataFrame, is_percent: bool, level: float, names: Names, band_labels: list[str],
                with_variable: bool = False) -> list[dict[str, Any]]:
    """The first series' values, in reading order, for the list beside a chart (``_macros.values``)."""
    fmt = pct if is_percent else number
    part = _primary_part(rows)
    order = {key: i for i, key in enumerate(_levels(part, band_labels))}
    part = part.iloc[sorted(range(len(part)),
                            key=lambda i: order.get((part.iloc[i]["variable"], str(part.iloc[i]["level"])), 0))]
    with_variable = with_variable or part["variable"].nunique() > 1
    items = []
    for _, r in part.iterrows():
        label = names.level(r["variable"], r["level"])
        if with_variable:
            label = f"{names.variable(r['variable'])}: {label}"
        withheld = bool(r["suppressed"])
        value = None if withheld or _missing(r["estimate"]) else fmt(r["estimate"])
        items.append({"label": label, "withheld": withheld, "value": value,
                      "ci": ci_text(r["ci_low"], r["ci_high"], level, fmt), "people": _people(r)})
    return items


def _level_key(level: Any) -> tuple:
    """Numeric levels in numeric order (30 before 90 before 180), others after, A-Z."""
    text = str(level)
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)


def estimates_table(rows: pd.DataFrame, level: float, names: Names, is_percent: bool | None = None) -> dict | None:
    """One row per estimate, sorted by variable, then level (numerically when numeric), then series:
    ``{"head": [...], "body": [[cell, ...], ...]}`` for ``_macros.table``."""
    if rows.empty:
        return None
    rows = rows.copy()
    rows["_series"] = [SERIES_ORDER.index(Names.series_key(e, n)) for e, n in zip(rows["estimator"], rows["estimate_name"])]
    rows["_variable_order"] = rows["variable"].map({v: i for i, v in enumerate(dict.fromkeys(rows["variable"]))})
    rows = rows.iloc[sorted(range(len(rows)), key=lambda i: (
        rows.iloc[i]["_variable_order"], str(rows.iloc[i]["population"]), _level_key(rows.iloc[i]["level"]),
        -1 if _missing(rows.iloc[i]["time_days"]) else float(rows.iloc[i]["time_days"]), rows.iloc[i]["_series"]))]
    show_day = rows["time_days"].notna().any()
    head = ["variable", "level"] + (["day"] if show_day else []) + [
        "estimate", f"{round(100 * level)}% interval", "events", "n", "series", "method"]
    body = []
    for _, r in rows.iterrows():
        key = Names.series_key(r["estimator"], r["estimate_name"])
        percent = is_percent if is_percent is not None else r["estimate_type"] == "proportion"
        fmt = pct if percent else number
        if r["suppressed"]:
            value, interval = "withheld", r["suppression_reason"] or "small count"
        elif r["estimate_type"] == "flag":  # a 0/1 flag, not a proportion
            value = "not published" if _missing(r["estimate"]) else ("yes" if float(r["estimate"]) >= 0.5 else "no")
            interval = ""
        else:
            value = fmt(r["estimate"])
            interval = "" if _missing(r["ci_low"]) else f"{fmt(r['ci_low'])} to {fmt(r['ci_high'])}"
        body.append([names.variable(r["variable"], r["population"]) if r["variable"] else "",
                     names.level(r["variable"] or "", r["level"])]
                    + (["" if _missing(r["time_days"]) else str(int(r["time_days"]))] if show_day else [])
                    + [value, interval, count(r["events"]) if not _missing(r["events"]) else "",
                       count(r["n"]) if not _missing(r["n"]) else "", names.series_names[key], names.method(r["method"])])
    return {"head": head, "body": body}


# ---------------------------------------------------------------- titles that state the finding


def _by_level(rows: pd.DataFrame) -> list[tuple[str, str, Any]]:
    """(variable, level, estimate) of the primary series' published rows."""
    return [(r["variable"], str(r["level"]), r["estimate"]) for _, r in shown(_primary_part(rows)).iterrows()]


def contrast_title(rows: pd.DataFrame, outcome: str, names: Names, is_percent: bool = True,
                   variable: str | None = None) -> str:
    """A title stating the finding: highest vs lowest level of ONE variable (one population).

    When the rows hold several variables (populations, e.g. withdrawal among people with a known
    outcome and among people who became dependent), only ``variable`` -- by default the first --
    is compared, and the title names it.
    """
    fmt = pct if is_percent else number
    values = _by_level(rows)
    variables = list(dict.fromkeys(v for v, _, _ in values))
    prefix = outcome.capitalize()
    if len(variables) > 1:
        chosen = variable if variable in variables else variables[0]
        values = [t for t in values if t[0] == chosen]
        prefix = names.variable(chosen)
    if not values:
        return f"No published estimate of {outcome}"
    if len(values) == 1:
        v, lv, e = values[0]
        return f"{prefix}: {fmt(e)} ({names.level(v, lv)})"
    high = max(values, key=lambda t: t[2])
    low = min(values, key=lambda t: t[2])
    if len(values) == 2:
        return (f"{prefix}: {fmt(high[2])} {names.level(high[0], high[1])} "
                f"vs {fmt(low[2])} {names.level(low[0], low[1])}")
    joiner = ":" if prefix != outcome.capitalize() else ""
    return (f"{prefix}{joiner} highest for {names.level(high[0], high[1])} ({fmt(high[2])}), "
            f"lowest for {names.level(low[0], low[1])} ({fmt(low[2])})")


def components_title(rows: pd.DataFrame, names: Names) -> str:
    """Which component of the outcome was met most and least often, within one population."""
    values = _by_level(rows)
    populations = list(dict.fromkeys(lv for _, lv, _ in values))
    if not values:
        return "No published estimate for the outcome's components"
    population = "all" if "all" in populations else populations[0]
    values = [t for t in values if t[1] == population]
    high = max(values, key=lambda t: t[2])
    low = min(values, key=lambda t: t[2])
    who = names.level("components", population)
    if high == low:
        return f"Component of the outcome ({who}): {names.level('components', high[0])} {pct(high[2])}"
    return (f"Most often met ({who}): {names.level('components', high[0])} ({pct(high[2])}); least often: "
            f"{names.level('components', low[0])} ({pct(low[2])})")


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        out: list[tuple[str, Any]] = []
        for key, inner in value.items():
            out += _flatten(inner, f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = []
        for i, inner in enumerate(value):
            out += _flatten(inner, f"{prefix}[{i}]")
        return out
    if isinstance(value, (list, tuple)):
        return [(prefix, ", ".join(str(v) for v in value))]
    return [(prefix, value)]


# ---------------------------------------------------------------- the page


class _Page:
    """Collects sections (each rendered from its template) and figures; renders one HTML document."""

    def __init__(self) -> None:
        self.sections: list[dict[str, Any]] = []
        self.figures: dict[str, go.Figure] = {}

    def section(self, anchor: str, heading: str, template: str, **context: Any) -> None:
        body = _ENV.get_template(template).render(**context)
        self.sections.append({"anchor": anchor, "heading": heading, "body": Markup(body)})

    def chart(self, name: str, fig: go.Figure) -> Markup:
        self.figures[name] = fig
        return Markup(fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig-{name}", config=PLOT_CONFIG))


def _code(value: Any) -> Markup | str:
    """A file, column or rule name of the input, shown literally (it is what a data manager fixes)."""
    return Markup(f"<code>{esc(value)}</code>") if not _missing(value) and str(value) else ""


def _ratio_context(ratios: pd.DataFrame, level: float, names: Names, bands: list[str]) -> dict[str, Any]:
    """The median dose-escalation ratio (highest / starting daily dose) as a ratio, never a percentage."""
    visible = shown(ratios)
    if visible.empty:
        return {"all_equal": None, "entries": []}
    values = {number(e) for e in visible["estimate"]}
    if len(values) == 1 and visible["ci_low"].notna().all() and \
            {number(v) for v in visible["ci_low"]} | {number(v) for v in visible["ci_high"]} == values:
        return {"all_equal": values.pop(), "entries": []}
    return {"all_equal": None, "entries": value_items(ratios, False, level, names, bands)}


def build_report(published: Published, config: Config, manifest: dict[str, Any], out_dir: Path,
                 notes: list[str] | None = None) -> tuple[Path, dict[str, go.Figure]]:
    """Write ``index.html`` and ``plotly.min.js`` into ``out_dir``; return the page and its figures.

    ``manifest``: the live run manifest (pipeline.manifest.build_manifest); its ``created_at``
    is the time the results were generated."""
    page = _Page()
    names = Names.of(config)
    level = config.estimate.confidence_level
    k = published.min_cell_count
    bands = config.estimate.band_labels()
    drug = " / ".join(config.drugs.ingredients)
    common = {"config": config, "names": names}

    # Headline.
    block, complete = published.headline["headline"], published.headline["complete_case"]
    gt, le = block["gt_4_weeks"], block["le_4_weeks"]
    cards = [_card(names.group(group), block[group], complete[group], "people treated", level)
             for group in ("gt_4_weeks", "le_4_weeks")]
    fixed = published.headline.get("fixed_window_headline") or {}
    fixed_cc = published.headline.get("fixed_window_complete_case") or {}
    cards += [_card(f"{label}, fixed window (b)", fixed[group], fixed_cc.get(group) or {},
                    "people whose treatment ended", level)
              for group, label in (("gt_4_weeks", names.longer.capitalize()), ("le_4_weeks", names.shorter.capitalize()))
              if fixed.get(group)]
    strata = _analysis(published, "by_stratum")
    supervised = strata[(strata["variable"] == "misuse") & (strata["level"] == "supervised")
                        & (_kind(strata) == "primary")] if not strata.empty else strata
    page.section("headline", "Headline", "headline.html.j2", **common, demo=bool(manifest.get("demo")),
                 sentence=headline_sentence(gt, le, drug, level, names), cards=cards,
                 anchors=anchor_sentence(gt, names, supervised.iloc[0].to_dict() if len(supervised) else None, level),
                 k=k, rounding_base=published.rounding_base, ci_name=f"{round(100 * level)}% confidence interval")

    # Duration bands with anchors.
    rows = _analysis(published, "by_duration_band")
    context: dict[str, Any] = {"chart": None, "rickels": RICKELS, "marriott": MARRIOTT_TYRER}
    if not rows.empty:
        title = contrast_title(rows, "dependence", names)
        fig = duration_chart(rows, names, bands, title, "Share of people who developed physical dependence, by length "
                             "of their first treatment episode. Red lines: published anchors.", k)
        context.update(chart=page.chart("duration_bands", fig), title=title,
                       entries=value_items(rows, True, level, names, bands))
    page.section("duration", "Dependence by treatment duration", "duration.html.j2", **context)

    # Cumulative incidence.
    rows = _analysis(published, "cumulative_incidence")
    primary = _primary_part(rows) if not rows.empty else rows
    primary = primary[primary["time_days"].notna()] if not primary.empty else primary
    context = {**common, "chart": None}
    if not primary.empty:
        ends = []
        for (variable, group), part in primary.groupby(["variable", primary["level"].astype(str)], sort=False):
            part = shown(part.sort_values("time_days"))
            if not part.empty:
                r = part.iloc[-1]
                ends.append({"name": names.level(variable, group), "value": pct(r["estimate"]), "day": int(r["time_days"]),
                             "ci": ci_text(r["ci_low"], r["ci_high"], level)})
        title = ("Dependence over time among people still in their outcome window (censored when it closes): "
                 + "; ".join(f"{e['name']} {e['value']} by day {e['day']}" for e in ends)) if ends \
            else "No published curve points"
        fig = incidence_chart(primary, names, title, "Cumulative incidence of dependence (Aalen-Johansen, death as a "
                              "competing risk).", level)
        context.update(chart=page.chart("cumulative_incidence", fig), title=title, ends=ends,
                       method=primary.iloc[0]["method"])
    page.section("over-time", "Dependence over time since starting treatment", "over_time.html.j2", **context)

    # Strata: one series per chart keeps five charts readable; complete-case strata are in the exports.
    rows = _analysis(published, "by_stratum")
    if not rows.empty and (_kind(rows) != "complete_case").any():
        rows = _without_complete_case(rows)
    present = list(dict.fromkeys(rows["variable"])) if not rows.empty else []
    preferred = ["misuse", "indication", "dose_band", "age_band", "sex"]
    parts = []
    for variable in preferred + [v for v in present if v not in preferred]:
        subset = rows[rows["variable"] == variable] if not rows.empty else rows
        heading = names.variable(variable)
        if subset.empty:
            parts.append({"heading": heading, "chart": None})
            continue
        title = contrast_title(subset, "dependence", names)
        population = names.population(subset["population"].iloc[0])
        fig = dot_chart(subset, names=names, title=title,
                        subtitle=f"Dependence by {heading.lower()}, among people {population}.",
                        axis_title="Developed physical dependence (% of people)", is_percent=True,
                        levels=_levels(subset, bands), min_cell_count=k)
        parts.append({"heading": heading, "chart": page.chart(f"stratum_{variable}", fig), "title": title,
                      "entries": value_items(subset, True, level, names, bands)})
    page.section("strata", "Who is most affected: misuse, indication, dose, age and sex", "strata.html.j2",
                 parts=parts)

    # Components of the outcome: one series keeps twelve rows readable; complete case is in the exports.
    rows = _analysis(published, "components")
    context = {"chart": None}
    if not rows.empty:
        primary_only = rows[_kind(rows) == "primary"]
        rows = primary_only if not primary_only.empty else rows
        title = components_title(rows, names)
        fig = dot_chart(rows, names=names, title=title, subtitle="Each part of the dependence definition counted on "
                        "its own (a person can meet several).", axis_title="People meeting the component (%)",
                        is_percent=True, levels=_levels(rows, bands), min_cell_count=k)
        context.update(chart=page.chart("components", fig), title=title,
                       entries=value_items(rows, True, level, names, bands))
    page.section("components", "Which parts of the definition were met", "components.html.j2", **context)

    # Dose-response odds ratios.
    rows = _analysis(published, "dose_response")
    context = {"chart": None}
    if not rows.empty:
        with_interval = shown(rows)
        with_interval = with_interval[with_interval["ci_low"].notna()]
        if with_interval.empty:
            title = "No published odds ratio"
        else:
            top = with_interval.loc[with_interval["estimate"].astype(float).idxmax()]
            what = names.level(top["variable"], top["level"])
            name = names.variable(top["variable"])
            name = name.replace(" (days)", "") if "days" in what else name  # the level already says days
            title = (f"Highest adjusted odds of dependence: {name.lower()} {what} "
                     f"(odds ratio {number(top['estimate'])}, "
                     f"{ci_text(top['ci_low'], top['ci_high'], level, number)})")
        fig = dot_chart(rows, names=names, title=title, subtitle="Odds ratios from one model adjusting for duration, "
                        "dose, age, sex, indication and misuse; 1 = same odds as the reference group (dotted line); "
                        "log scale.", axis_title="Odds ratio (log scale)", is_percent=False,
                        levels=_levels(rows, bands), min_cell_count=k, log_axis=True, reference=1.0)
        context.update(chart=page.chart("dose_response", fig), title=title,
                       entries=value_items(rows, False, level, names, bands))
    page.section("dose-response", "Dose-response: adjusted odds ratios", "dose_response.html.j2", **context)

    # Tolerance and withdrawal.
    rows = _analysis(published, "tolerance")
    tolerance = None
    if not rows.empty:
        is_ratio = rows["estimate_type"] == "ratio"
        ratios, shares = rows[is_ratio], rows[~is_ratio]
        tolerance = {"chart": None, "ratio": None}
        if not shares.empty:
            title = contrast_title(shares, "dose increase", names)
            fig = dot_chart(shares, names=names, title=title, subtitle="Share of people whose daily dose rose above "
                            "its starting level during the first treatment episode.",
                            axis_title="People with a dose increase (%)", is_percent=True,
                            levels=_levels(shares, bands), min_cell_count=k)
            tolerance.update(chart=page.chart("tolerance", fig), title=title,
                             entries=value_items(shares, True, level, names, bands))
        if not ratios.empty:
            tolerance["ratio"] = _ratio_context(ratios, level, names, bands)
    rows = _analysis(published, "withdrawal_by_ending")
    withdrawal = None
    if not rows.empty:
        title = contrast_title(rows, "withdrawal", names, True, variable="ending_among_dependent")
        fig = dot_chart(rows, names=names, title=title, subtitle="Share of people with documented withdrawal, by how "
                        "their treatment ended, in two populations.", axis_title="People with withdrawal (%)",
                        is_percent=True, levels=_levels(rows, bands), min_cell_count=k)
        withdrawal = {"chart": page.chart("withdrawal_by_ending", fig), "title": title,
                      "entries": value_items(rows, True, level, names, bands)}
    page.section("tolerance-withdrawal", "Tolerance and withdrawal", "tolerance_withdrawal.html.j2",
                 tolerance=tolerance, withdrawal=withdrawal)

    # Sensitivity and anchors.
    rows = _analysis(published, "sensitivity")
    anchors = _analysis(published, "anchors")
    page.section("sensitivity", "Sensitivity analyses", "sensitivity.html.j2",
                 settings=_sensitivity_summary(rows, names), table=estimates_table(rows, level, names),
                 anchors=estimates_table(anchors, level, names))

    # Trends and geography (issue 15): share treated longer than the split and dependence, per year and region.
    parts = []
    for analysis, name in (("by_calendar_year", "calendar year of treatment start"), ("by_region", "region")):
        rows = _without_complete_case(_analysis(published, analysis))
        rows = rows[rows["population"] == "all"] if not rows.empty else rows
        if rows.empty:
            continue
        title = f"By {name}: share of new users treated {names.longer}, and dependence"
        subtitle = "All new users; dependence weighted for ascertainment."
        fig = (trend_chart(rows, names, title, subtitle) if analysis == "by_calendar_year" else
               dot_chart(rows, names=names, title=title, subtitle=subtitle, axis_title="% of new users",
                         is_percent=True, levels=_levels(rows, bands), min_cell_count=k))
        parts.append({"name": name, "chart": page.chart(analysis, fig)})
    if parts:
        page.section("trends", "Trends and geography", "trends.html.j2", parts=parts, longer=names.longer)

    # Anything else the estimate stage produced, shown rather than dropped.
    known = {"headline", "by_duration_band", "cumulative_incidence", "by_stratum", "components", "dose_response",
             "tolerance", "withdrawal_by_ending", "sensitivity", "anchors", "weights", "by_calendar_year", "by_region"}
    others = published.estimates[~published.estimates["analysis"].isin(known)]
    if not others.empty:
        page.section("other", "Other estimates", "other.html.j2", parts=[
            {"heading": names.analysis(name), "table": estimates_table(_analysis(published, name), level, names)}
            for name in dict.fromkeys(others["analysis"])])

    page.section("attrition", "Who is in the cohort", "attrition.html.j2", **_attrition_context(published, drug))
    page.section("quality", "Data quality", "quality.html.j2", **_quality_context(published))
    weights = _analysis(published, "weights")
    page.section("methods", "Methods and settings", "methods.html.j2", config=config, longer=names.longer,
                 shorter=names.shorter, level_percent=round(100 * level), k=k, rounding_base=published.rounding_base,
                 weights=estimates_table(weights, level, names, is_percent=False),
                 settings=[[_code(key), value] for key, value in _flatten(config.to_dict())])
    page.section("manifest", "Run manifest", "manifest.html.j2", notes=notes or [],
                 rows=[[_code(key), value] for key, value in _flatten(manifest) if key != "config"])

    document = _ENV.get_template("report.html.j2").render(
        drug=drug, generated=generated_at(manifest), sections=page.sections, font=FONT)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "plotly.min.js").write_text(plotly.offline.get_plotlyjs(), encoding="utf-8")
    index = out_dir / "index.html"
    index.write_text(document, encoding="utf-8")
    return index, page.figures


def generated_at(manifest: dict[str, Any]) -> str:
    """When the results were generated: the live manifest's ``created_at`` (pipeline/manifest.py).

    >>> generated_at({"created_at": "2026-11-22T03:05:00+00:00"})
    '2026-11-22T03:05:00+00:00'
    >>> generated_at({})
    'not recorded (no run manifest)'
    """
    return str(manifest.get("created_at") or "not recorded (no run manifest)")


def _card(label: str, entry: dict, complete: dict, who: str, level: float) -> dict[str, Any]:
    return {"label": label, "value": pct(entry.get("estimate")), "ci": ci_text(entry.get("ci_low"), entry.get("ci_high"), level),
            "events": count(entry.get("events")), "n_assessed": count(entry.get("n_assessed")),
            "complete_case": pct(complete.get("estimate")), "n": count(entry.get("n")), "who": who}


def _sensitivity_summary(rows: pd.DataFrame, names: Names) -> list[dict[str, Any]]:
    """Per setting and population: the primary estimate at each value, values in numeric order."""
    if rows.empty:
        return []
    primary = shown(rows[_kind(rows) == "primary"])
    out = []
    for (variable, population), part in primary.groupby(["variable", "population"], sort=True):
        part = part.iloc[sorted(range(len(part)), key=lambda i: _level_key(part.iloc[i]["level"]))]
        out.append({"label": names.variable(variable, population),
                    "points": [{"level": names.level(variable, r["level"]), "estimate": pct(r["estimate"])}
                               for _, r in part.iterrows()]})
    return out


def _attrition_context(published: Published, drug: str) -> dict[str, Any]:
    attrition = _plain(published.attrition)
    if attrition.empty:
        return {"steps": None}
    steps = [{"step": r["step"], "reason": r["reason"],
              "excluded": count(r["excluded"]) if not _missing(r["excluded"]) else "withheld (disclosure control)",
              "after": count(r["persons_after"]) if not _missing(r["persons_after"])
              else "withheld (would reveal a small count)"} for _, r in attrition.iterrows()]
    return {"steps": steps, "first": count(attrition.iloc[0]["persons_before"]), "drug": drug,
            "last": count(attrition.iloc[-1]["persons_after"])}


def _quality_context(published: Published) -> dict[str, Any]:
    quality = _plain(published.quality)
    if quality.empty:
        return {"empty": True}
    context: dict[str, Any] = {"empty": False, "validation": None}
    validation = quality[quality["source"] == "validation"]
    if not validation.empty:
        failed = validation[validation["status"] == "fail"]
        context["validation"] = {
            "checks": len(validation), "passed": len(validation) - len(failed), "failed": len(failed),
            "errors": int((failed["severity"] == "error").sum()),
            "body": [[_code(r["table_name"]), _code(r["column_name"]), _code(r["check_id"]), r["category"],
                      r["severity"], r["action"], count(r["count"]) if not r["suppressed"] else "withheld",
                      count(r["total"]), pct(r["share"], 2)] for _, r in failed.iterrows()]}
    quarantine = quality[quality["source"] == "quarantine"]
    context["quarantine"] = [[_code(r["table_name"]), r["category"], _code(r["check_id"]),
                              count(r["count"]) if not r["suppressed"] else "withheld"] for _, r in quarantine.iterrows()]
    wide: dict[str, dict[str, Any]] = {}
    for _, r in quality[quality["source"] == "load"].iterrows():
        wide.setdefault(r["table_name"], {})[r["check_id"]] = r["count"]
    context["load"] = [[_code(t), count(v.get("rows_read")), count(v.get("rows_loaded")), count(v.get("rows_quarantined"))]
                       for t, v in wide.items()]
    return context


def write_manifest(manifest: dict[str, Any], config: Config, path: Path) -> None:
    """``manifest.json``: the run manifest with the resolved configuration printed into it."""
    content = dict(manifest)
    content.setdefault("config", config.to_dict())
    path.write_text(json.dumps(content, indent=2, default=str) + "\n", encoding="utf-8")
