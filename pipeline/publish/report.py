"""The offline HTML report, ``reports/index.html``.

Plain HTML and CSS, one copy of plotly.js beside the page (``plotly.min.js``),
no fonts, scripts or styles fetched from anywhere. Every number on the page
comes from the suppressed tables in ``Published``: a suppressed cell has no
point, no bar and no hover, only a note that it is withheld.

Each chart sits beside a two-line text summary and carries a title that states
its finding, so a reader never needs to hover. Colours are Okabe-Ito
(colour-blind safe); primary estimates are blue, complete-case ones orange.

>>> pct(0.3149), pct(None), pct(0.0)
('31.5%', 'not published', '0.0%')
>>> level_label("duration_band", ">=182"), level_label("misuse|gt_4_weeks", "true")
('>= 182 days', 'misuse (documented or in prescription records)')
>>> variable_label("sex|gt_4_weeks")
'Sex (treated more than 4 weeks)'

>>> headline_sentence({"estimate": 0.315, "ci_low": 0.29, "ci_high": 0.341, "n": 4210, "events": 1326, "method": "IPW"},
...                   {"estimate": 0.062, "ci_low": 0.051, "ci_high": 0.074, "n": 5102, "events": 316, "method": "IPW"},
...                   "clonazepam", 0.95)
'Among 4,210 people whose first clonazepam treatment lasted more than 4 weeks, an estimated 31.5% (95% CI 29.0% to 34.1%) developed physical dependence, against 6.2% (95% CI 5.1% to 7.4%) of 5,102 people treated for up to 4 weeks.'
"""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
import math
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd
import plotly.graph_objects as go
import plotly.offline

from pipeline.config import Config
from pipeline.publish.tables import Published, is_complete_case, published_level_order

log = logging.getLogger(__name__)

# Okabe & Ito, "Color Universal Design" (2008): distinguishable with the common colour-vision deficiencies.
OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky_blue": "#56B4E9", "bluish_green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "reddish_purple": "#CC79A7",
}
SERIES_COLOURS = [OKABE_ITO[c] for c in ("blue", "orange", "bluish_green", "reddish_purple", "sky_blue", "vermillion")]
PRIMARY_COLOUR, COMPLETE_COLOUR, ANCHOR_COLOUR = OKABE_ITO["blue"], OKABE_ITO["orange"], OKABE_ITO["vermillion"]
GREY = "#6b6b6b"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
PLOT_CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["select2d", "lasso2d"]}

# Published anchors (shared/REFERENCES.md).
MARRIOTT_1993 = ("Marriott & Tyrer 1993 (Drug Safety 9:93-103): dependence in \"almost one-third\" of patients "
                 "on regular prescriptions for 4 weeks or longer")
RICKELS_1983 = ("Rickels et al. 1983 (JAMA 250:767-71): withdrawal in 5% after less than 8 months of use "
                "vs 43% after 8 months or more")
MARRIOTT_SHARE, RICKELS_SHORT, RICKELS_LONG = 1 / 3, 0.05, 0.43

VARIABLE_LABELS = {
    "headline_group": "Treatment duration", "duration_band": "Treatment duration (days)",
    "misuse": "Misuse", "indication": "Indication", "dose_band": "Daily dose (diazepam-equivalent mg/day)",
    "age_band": "Age at start (years)", "sex": "Sex", "ending": "How treatment ended",
    "component": "Outcome component", "ingredient": "Ingredient", "region": "Region",
}
_LEVEL_LABELS = {
    ("headline_group", "le_4_weeks"): "up to 4 weeks", ("headline_group", "gt_4_weeks"): "more than 4 weeks",
    ("misuse", "true"): "misuse (documented or in prescription records)",
    ("misuse", "false"): "no misuse signal (supervised use)",
    ("misuse", "misuse"): "misuse (documented or in prescription records)",
    ("misuse", "supervised"): "supervised use (no misuse)",
    ("sex", "F"): "female", ("sex", "M"): "male", ("sex", "X"): "another sex (X)", ("sex", "U"): "sex unknown",
    ("ending", "taper"): "tapered", ("ending", "abrupt"): "stopped abruptly", ("ending", "ongoing"): "still ongoing",
}
QUALIFIERS = {
    "gt_4_weeks": "treated more than 4 weeks", "le_4_weeks": "treated up to 4 weeks", "all": "whole cohort",
    "ascertained": "people with a known outcome", "dependent": "people who became dependent",
}
_COMPONENT_LABELS = {
    "dep_icd": "ICD-10 F13.2-F13.4 diagnosis", "dep_withdrawal": "withdrawal symptoms documented",
    "dep_assessed": "clinician judged dependent", "dep_sds": "Severity of Dependence Scale at or above cut-off",
    "any": "any component (the outcome)",
}


# ---------------------------------------------------------------- formatting


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def pct(value: Any, digits: int = 1) -> str:
    """A proportion as a percentage; 'not published' for a null."""
    return "not published" if _missing(value) else f"{100 * float(value):.{digits}f}%"


def count(value: Any) -> str:
    return "not published" if _missing(value) else f"{int(value):,}"


def number(value: Any, digits: int = 2) -> str:
    return "not published" if _missing(value) else f"{float(value):.{digits}f}"


def ci_text(low: Any, high: Any, level: float, fmt: Callable[[Any], str] = pct) -> str:
    if _missing(low) or _missing(high):
        return "interval not available"
    return f"{round(100 * level)}% CI {fmt(low)} to {fmt(high)}"


def level_label(variable: str, level: Any) -> str:
    """How a level reads in the report."""
    variable, level = base_variable(variable), str(level)
    if (variable, level.lower()) in _LEVEL_LABELS:
        return _LEVEL_LABELS[(variable, level.lower())]
    if (variable, level) in _LEVEL_LABELS:
        return _LEVEL_LABELS[(variable, level)]
    if variable == "duration_band":
        return level.replace(">=", ">= ").replace("<", "< ").replace("  ", " ") + " days"
    if level in _COMPONENT_LABELS:
        return _COMPONENT_LABELS[level]
    if variable == "misuse" and level.lower() in ("1", "yes"):
        return _LEVEL_LABELS[("misuse", "true")]
    return level.replace("_", " ")


def base_variable(variable: Any) -> str:
    """The variable without its population qualifier ('sex|gt_4_weeks' -> 'sex')."""
    return str(variable).split("|")[0]


def variable_label(variable: str) -> str:
    """'sex|gt_4_weeks' -> 'Sex (treated more than 4 weeks)'."""
    base, _, qualifier = str(variable).partition("|")
    label = VARIABLE_LABELS.get(base, base.replace("_", " "))
    return f"{label} ({QUALIFIERS.get(qualifier, qualifier.replace('_', ' '))})" if qualifier else label


def series_label(analysis: str, method: Any) -> str:
    if str(method).startswith("exposure:"):
        return "treated more than 4 weeks (share of new users)"
    if is_complete_case(analysis, method):
        return "complete case (ascertained outcomes only)"
    return "primary (weighted for ascertainment)"


def esc(value: Any) -> str:
    return html.escape("" if _missing(value) else str(value))


def headline_sentence(gt: dict, le: dict, drug: str, level: float) -> str:
    """The report's first sentence, built from headline.json's primary entries."""
    if _missing(gt.get("estimate")):
        return (f"No publishable estimate of dependence after more than 4 weeks of {drug} was produced "
                "(no headline rows, or the counts were too small to publish).")
    people = f"{count(gt['n'])} people" if not _missing(gt.get("n")) else "people"
    sentence = (f"Among {people} whose first {drug} treatment lasted more than 4 weeks, an estimated "
                f"{pct(gt['estimate'])} ({ci_text(gt['ci_low'], gt['ci_high'], level)}) developed physical dependence")
    if _missing(le.get("estimate")):
        return sentence + "; the estimate for up to 4 weeks is not published."
    others = f" of {count(le['n'])} people" if not _missing(le.get("n")) else " of people"
    return (sentence + f", against {pct(le['estimate'])} ({ci_text(le['ci_low'], le['ci_high'], level)})"
            f"{others} treated for up to 4 weeks.")


def _against_one_third(entry: dict, who: str) -> str:
    low, high = entry.get("ci_low"), entry.get("ci_high")
    if _missing(entry.get("estimate")) or _missing(low) or _missing(high):
        return ""
    if low <= MARRIOTT_SHARE <= high:
        return f" The interval for {who} includes one-third."
    if high < MARRIOTT_SHARE:
        return f" The estimate for {who} is below one-third (the whole interval is)."
    return f" The estimate for {who} is above one-third (the whole interval is)."


def anchor_sentence(gt: dict, supervised: dict | None = None, level: float = 0.95) -> str:
    """The anchors, and where our estimates stand against one-third.

    Marriott & Tyrer describe patients on regular prescriptions, i.e. supervised
    use: the closest comparison is the > 4 weeks estimate among people with no
    sign of misuse, given beside the all-comers estimate when it is published.
    """
    comparison = _against_one_third(gt, "everyone treated more than 4 weeks")
    if supervised and not _missing(supervised.get("estimate")):
        comparison += (
            f" Among people treated more than 4 weeks with no misuse signal in their prescription records "
            f"(supervised use, the population "
            f"Marriott & Tyrer describe) the estimate is {pct(supervised['estimate'])} "
            f"({ci_text(supervised['ci_low'], supervised['ci_high'], level)})."
            + _against_one_third(supervised, "supervised use")
        )
    return (f"Published anchors: {MARRIOTT_1993}; {RICKELS_1983}.{comparison} The anchors come from small "
            "clinical samples with other outcome definitions: they set the scale, not a target.")


# ---------------------------------------------------------------- data helpers


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns with None for nulls: simpler to format than pandas' nullable scalars."""
    out = frame.astype(object)
    return out.where(frame.notna(), None)


def _analysis(published: Published, *names: str) -> pd.DataFrame:
    est = published.estimates
    return _plain(est[est["analysis"].isin(names)].reset_index(drop=True))


def _primary_first(rows: pd.DataFrame) -> list[tuple[str, Any]]:
    """(analysis, method) series, primary before complete case."""
    pairs = list(dict.fromkeys(zip(rows["analysis"], rows["method"])))
    return sorted(pairs, key=lambda p: is_complete_case(p[0], p[1]))


def _shown(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[(~rows["suppressed"].astype(bool)) & rows["estimate"].notna()]


def _wrap(text: str, width: int = 95) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return "<br>".join(lines)


def _layout(fig: go.Figure, title: str, subtitle: str, height: int) -> go.Figure:
    fig.update_layout(
        template="simple_white",
        title={"text": _wrap(title) + f"<br><span style='font-size:12px;color:{GREY}'>{_wrap(subtitle, 120)}</span>",
               "x": 0, "xanchor": "left", "font": {"size": 16}},
        font={"family": FONT, "size": 13, "color": "#1a1a1a"},
        height=height,
        margin={"l": 80, "r": 30, "t": 100, "b": 60},
        legend={"orientation": "h", "yanchor": "top", "y": -0.18, "x": 0},
        hoverlabel={"font": {"family": FONT}},
        paper_bgcolor="white",
        plot_bgcolor="white",
    )
    return fig


def _hover(rows: pd.DataFrame, is_percent: bool) -> list[str]:
    fmt = pct if is_percent else number
    return [
        f"{esc(r.get('_label'))}<br>{fmt(r['estimate'])} ({esc(ci_text(r['ci_low'], r['ci_high'], 0.95, fmt))})"
        f"<br>{count(r['events'])} of {count(r['n'])} persons<br>{esc(r['method'])}"
        for _, r in rows.iterrows()
    ]


# ---------------------------------------------------------------- charts


def dot_chart(rows: pd.DataFrame, *, title: str, subtitle: str, axis_title: str, is_percent: bool,
              levels: list[tuple[str, str]], min_cell_count: int, log_axis: bool = False,
              reference: float | None = None) -> go.Figure:
    """Horizontal dots with interval whiskers, one row per (variable, level), one colour per series.

    A suppressed row keeps its label and says it is withheld; it gets no point and no hover.
    """
    fig = go.Figure()
    multi_variable = len({v for v, _ in levels}) > 1
    labels = [f"{variable_label(v)}: {level_label(v, l)}" if multi_variable else level_label(v, l) for v, l in levels]
    position = {key: i for i, key in enumerate(levels)}
    series = _primary_first(rows)
    offsets = [0.0] if len(series) == 1 else [(-0.18 + 0.36 * i / (len(series) - 1)) for i in range(len(series))]
    scale = 100 if is_percent else 1
    fmt = (lambda v: f"{100 * v:.1f}%") if is_percent else (lambda v: f"{v:.2f}")
    for colour_index, ((analysis, method), offset) in enumerate(zip(series, offsets)):
        part = rows[(rows["analysis"] == analysis) & (rows["method"].astype(str) == str(method))].copy()
        part["_label"] = [labels[position[(r["variable"], str(r["level"]))]]
                          if (r["variable"], str(r["level"])) in position else str(r["level"]) for _, r in part.iterrows()]
        shown = _shown(part)
        shown = shown[[(v, str(l)) in position for v, l in zip(shown["variable"], shown["level"])]]
        colour = COMPLETE_COLOUR if is_complete_case(analysis, method) else SERIES_COLOURS[colour_index % len(SERIES_COLOURS)]
        if not shown.empty:
            est = shown["estimate"].astype(float)
            low = shown["ci_low"].astype(float).fillna(est)
            high = shown["ci_high"].astype(float).fillna(est)
            text = [fmt(e) + (f" ({fmt(lo)}-{fmt(hi)})" if not _missing(r["ci_low"]) else (" reference" if log_axis else ""))
                    for e, lo, hi, (_, r) in zip(est, low, high, shown.iterrows())]
            fig.add_trace(go.Scatter(
                x=est * scale, y=[position[(v, str(l))] + offset for v, l in zip(shown["variable"], shown["level"])],
                mode="markers+text", text=text, textposition="top center", textfont={"size": 11, "color": colour},
                marker={"color": colour, "size": 9, "symbol": "circle" if colour_index == 0 else "diamond"},
                error_x={"type": "data", "symmetric": False, "array": (high - est) * scale,
                         "arrayminus": (est - low) * scale, "color": colour, "thickness": 1.6, "width": 4},
                name=series_label(analysis, method), hovertext=_hover(shown, is_percent), hoverinfo="text",
            ))
    withheld = rows[rows["suppressed"].astype(bool)]
    withheld_positions = sorted({position[(v, str(l))] for v, l in zip(withheld["variable"], withheld["level"])
                                 if (v, str(l)) in position})
    for i in withheld_positions:
        fig.add_annotation(x=0, xref="paper", y=i, yref="y", xanchor="left", showarrow=False,
                           text="withheld (disclosure control)", font={"size": 11, "color": GREY})
    if reference is not None:
        fig.add_vline(x=reference, line={"color": GREY, "dash": "dot", "width": 1})
    fig.update_yaxes(tickvals=list(range(len(labels))), ticktext=labels, autorange="reversed",
                     range=[len(labels) - 0.5, -0.7], showgrid=False, ticks="")
    fig.update_xaxes(title_text=axis_title, showgrid=True, gridcolor="#e5e5e5", zeroline=False,
                     type="log" if log_axis else "linear", rangemode="tozero" if not log_axis else "normal")
    return _layout(fig, title, subtitle, height=150 + 48 * max(len(labels), 2) * max(1, len(series) // 2 + 1) // 1)


def duration_chart(rows: pd.DataFrame, band_labels: list[str], split_days: int, title: str, subtitle: str,
                   min_cell_count: int) -> go.Figure:
    """Dependence by duration band (vertical), with the published anchors as reference marks."""
    fig = go.Figure()
    bands = published_level_order("duration_band", list(rows["level"].astype(str)), band_labels)
    x_of = {band: i for i, band in enumerate(bands)}
    series = _primary_first(rows)
    offsets = [0.0] if len(series) == 1 else [(-0.15 + 0.3 * i / (len(series) - 1)) for i in range(len(series))]
    for colour_index, ((analysis, method), offset) in enumerate(zip(series, offsets)):
        part = rows[(rows["analysis"] == analysis) & (rows["method"].astype(str) == str(method))].copy()
        part["_label"] = [level_label("duration_band", level) for level in part["level"]]
        shown = _shown(part)
        if shown.empty:
            continue
        colour = COMPLETE_COLOUR if is_complete_case(analysis, method) else SERIES_COLOURS[colour_index]
        est = shown["estimate"].astype(float)
        low, high = shown["ci_low"].astype(float).fillna(est), shown["ci_high"].astype(float).fillna(est)
        fig.add_trace(go.Scatter(
            x=[x_of[str(level)] + offset for level in shown["level"]], y=est * 100,
            mode="markers+text", text=[f"{100 * e:.0f}%" for e in est], textposition="middle right",
            textfont={"size": 11, "color": colour},
            marker={"color": colour, "size": 10, "symbol": "circle" if colour_index == 0 else "diamond"},
            error_y={"type": "data", "symmetric": False, "array": (high - est) * 100, "arrayminus": (est - low) * 100,
                     "color": colour, "thickness": 1.8, "width": 5},
            name=series_label(analysis, method), hovertext=_hover(shown, True), hoverinfo="text",
        ))
    for band in sorted({str(level) for level in rows.loc[rows["suppressed"].astype(bool), "level"]}):
        fig.add_annotation(x=x_of[band], y=0, yref="paper", yanchor="bottom", showarrow=False, textangle=-90,
                           text="withheld (disclosure control)", font={"size": 11, "color": GREY})
    # Anchor reference marks: Marriott & Tyrer over bands of 4 weeks or more; Rickels under / over ~8 months.
    long_bands = [x_of[b] for b in bands if _band_low(b) is not None and _band_low(b) >= split_days]
    if long_bands:
        _reference_segment(fig, min(long_bands) - 0.4, max(long_bands) + 0.4, 100 * MARRIOTT_SHARE, "dash",
                           "Marriott & Tyrer 1993: almost one-third (4 weeks or longer)")
    short = [x_of[b] for b in bands if _band_low(b) is not None and _band_low(b) < 182]
    longest = [x_of[b] for b in bands if _band_low(b) is not None and _band_low(b) >= 182]
    if short:
        _reference_segment(fig, min(short) - 0.4, max(short) + 0.4, 100 * RICKELS_SHORT, "dot",
                           "Rickels 1983: 5% withdrawal under 8 months")
    if longest:
        _reference_segment(fig, min(longest) - 0.4, max(longest) + 0.4, 100 * RICKELS_LONG, "dot",
                           "Rickels 1983: 43% after 8 months or more", above=True)
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name="published anchor (reference)",
                             line={"color": ANCHOR_COLOUR, "dash": "dash"}, hoverinfo="skip"))
    fig.update_xaxes(tickvals=list(range(len(bands))), ticktext=[level_label("duration_band", b) for b in bands],
                     title_text="Length of first treatment episode (days)", range=[-0.6, len(bands) - 0.4])
    fig.update_yaxes(title_text="Dependence (% of people)", rangemode="tozero",
                     showgrid=True, gridcolor="#e5e5e5")
    return _layout(fig, title, subtitle, height=470)


def _band_low(band: str) -> int | None:
    digits = "".join(ch if ch.isdigit() else " " for ch in band).split()
    if not digits:
        return None
    return 0 if band.strip().startswith("<") else int(digits[0])


def _reference_segment(fig: go.Figure, x0: float, x1: float, y: float, dash: str, label: str,
                       above: bool = False) -> None:
    fig.add_shape(type="line", x0=x0, x1=x1, y0=y, y1=y, xref="x", yref="y",
                  line={"color": ANCHOR_COLOUR, "dash": dash, "width": 2})
    fig.add_annotation(x=x1 if above else x0, y=y, xref="x", yref="y", xanchor="right" if above else "left",
                       yanchor="bottom" if not above else "top",
                       yshift=2 if not above else -2, showarrow=False, text=label,
                       font={"size": 11, "color": ANCHOR_COLOUR})


def incidence_chart(rows: pd.DataFrame, title: str, subtitle: str, level: float) -> go.Figure:
    """Cumulative incidence curves (step lines) with their confidence bands."""
    fig = go.Figure()
    groups = list(dict.fromkeys(zip(rows["variable"], rows["level"].astype(str))))
    groups = [(v, l) for v in dict.fromkeys(v for v, _ in groups)
              for l in published_level_order(v, [l for vv, l in groups if vv == v], [])]
    for i, (variable, group) in enumerate(groups):
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        part = rows[(rows["variable"] == variable) & (rows["level"].astype(str) == group)].sort_values("time_days")
        shown = part[~part["suppressed"].astype(bool)]
        # Only published points are drawn: the step line holds each published value until
        # the next one (disclosure control coarsens the curve; it adds nothing in between).
        shown = shown[shown["estimate"].notna()]
        y = [100 * float(e) for e in shown["estimate"]]
        lo = [None if _missing(e) else 100 * float(e) for e in shown["ci_low"]]
        hi = [None if _missing(e) else 100 * float(e) for e in shown["ci_high"]]
        x = [int(t) for t in shown["time_days"]]
        name = level_label(variable, group)
        fill = _rgba(colour, 0.18)
        fig.add_trace(go.Scatter(x=x, y=hi, mode="lines", line={"width": 0, "shape": "hv"}, hoverinfo="skip",
                                 showlegend=False, legendgroup=name, connectgaps=False))
        fig.add_trace(go.Scatter(x=x, y=lo, mode="lines", line={"width": 0, "shape": "hv"}, fill="tonexty",
                                 fillcolor=fill, hoverinfo="skip", showlegend=False, legendgroup=name,
                                 connectgaps=False))
        hover = [None if yy is None else f"{esc(name)}<br>day {xx}: {yy:.1f}%" for xx, yy in zip(x, y)]
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", line={"color": colour, "width": 2.5, "shape": "hv"},
                                 name=name, legendgroup=name, hovertext=hover, hoverinfo="text", connectgaps=False))
        if not shown.empty and not _missing(shown.iloc[-1]["estimate"]):
            last = shown.iloc[-1]
            fig.add_annotation(x=int(last["time_days"]), y=100 * float(last["estimate"]), xanchor="left",
                               showarrow=False, text=f" {name}: {pct(last['estimate'])}",
                               font={"size": 11, "color": colour})
    fig.update_xaxes(title_text="Days since the start of treatment", rangemode="tozero")
    fig.update_yaxes(title_text="Cumulative incidence of dependence (%)", rangemode="tozero",
                     showgrid=True, gridcolor="#e5e5e5")
    fig.update_layout(margin={"r": 190})
    return _layout(fig, title, subtitle + f" Shaded: {round(100 * level)}% confidence band.", height=460)


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


# ---------------------------------------------------------------- titles that state the finding


def _by_level(rows: pd.DataFrame) -> list[tuple[str, str, Any]]:
    """(variable, level, estimate) of the primary series' published rows."""
    series = _primary_first(rows)
    if not series:
        return []
    analysis, method = series[0]
    part = _shown(rows[(rows["analysis"] == analysis) & (rows["method"].astype(str) == str(method))])
    return [(r["variable"], str(r["level"]), r["estimate"]) for _, r in part.iterrows()]


def contrast_title(rows: pd.DataFrame, outcome: str, is_percent: bool = True) -> str:
    fmt = pct if is_percent else number
    values = _by_level(rows)
    if not values:
        return f"No published estimate of {outcome}"
    if len(values) == 1:
        v, l, e = values[0]
        return f"{outcome.capitalize()}: {fmt(e)} ({level_label(v, l)})"
    high = max(values, key=lambda t: t[2])
    low = min(values, key=lambda t: t[2])
    if len(values) == 2:
        return (f"{outcome.capitalize()}: {fmt(high[2])} {level_label(high[0], high[1])} "
                f"vs {fmt(low[2])} {level_label(low[0], low[1])}")
    return (f"{outcome.capitalize()} highest for {level_label(high[0], high[1])} ({fmt(high[2])}), "
            f"lowest for {level_label(low[0], low[1])} ({fmt(low[2])})")


_BAND_ORDER = ["<14", "14-27", "28-55", "56-83", "84-181", ">=182"]  # reading order only; labels come from the data


def _summary_list(rows: pd.DataFrame, is_percent: bool, level: float) -> str:
    fmt = pct if is_percent else number
    series = _primary_first(rows)
    if not series:
        return ""
    analysis, method = series[0]
    part = rows[(rows["analysis"] == analysis) & (rows["method"].astype(str) == str(method))]
    order = {key: i for i, key in enumerate(_levels(part, _BAND_ORDER))}
    part = part.iloc[sorted(range(len(part)), key=lambda i: order.get((part.iloc[i]["variable"], str(part.iloc[i]["level"])), 0))]
    items = []
    for _, r in part.iterrows():
        label = level_label(r["variable"], r["level"])
        if r["suppressed"]:
            items.append(f"<li>{esc(label)}: withheld (small count)</li>")
        elif _missing(r["estimate"]):
            items.append(f"<li>{esc(label)}: no estimate</li>")
        else:
            items.append(f"<li>{esc(label)}: <b>{fmt(r['estimate'])}</b> "
                         f"<span class='ci'>({esc(ci_text(r['ci_low'], r['ci_high'], level, fmt))})</span>, "
                         f"{count(r['events'])} of {count(r['n'])}</li>")
    return f"<ul class='values'>{''.join(items)}</ul>"


# ---------------------------------------------------------------- tables


def estimates_table(rows: pd.DataFrame, level: float, is_percent: bool | None = None) -> str:
    if rows.empty:
        return ""
    head = ["variable", "level", "day", "estimate", f"{round(100 * level)}% interval", "events", "n", "method"]
    body = []
    for _, r in rows.iterrows():
        percent = is_percent if is_percent is not None else _looks_like_proportion(r)
        fmt = pct if percent else number
        if r["suppressed"]:
            value, interval = "withheld", esc(r["suppression_reason"] or "small count")
        elif "(1 = yes, 0 = no)" in str(r["method"]) and not _missing(r["estimate"]):
            value, interval = ("yes" if float(r["estimate"]) else "no"), ""
        else:
            value = fmt(r["estimate"])
            interval = "" if _missing(r["ci_low"]) else f"{fmt(r['ci_low'])} to {fmt(r['ci_high'])}"
        body.append([esc(variable_label(r["variable"]) if r["variable"] else ""), esc(level_label(r["variable"] or "", r["level"])),
                     "" if _missing(r["time_days"]) else str(int(r["time_days"])), value, interval,
                     count(r["events"]) if not _missing(r["events"]) else "", count(r["n"]) if not _missing(r["n"]) else "",
                     esc(r["method"])])
    return _html_table(head, body)


def _looks_like_proportion(row: pd.Series) -> bool:
    return not _missing(row["events"]) or (not _missing(row["estimate"]) and 0 <= float(row["estimate"]) <= 1
                                          and "ratio" not in str(row["method"]).lower())


def _html_table(head: list[str], body: Iterable[list[str]], cls: str = "") -> str:
    rows = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in body)
    return (f"<div class='table-wrap'><table class='{cls}'><thead><tr>"
            + "".join(f"<th>{esc(h)}</th>" for h in head) + f"</tr></thead><tbody>{rows}</tbody></table></div>")


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
    """Collects sections and figures; renders one HTML document."""

    def __init__(self) -> None:
        self.sections: list[str] = []
        self.figures: dict[str, go.Figure] = {}
        self.toc: list[tuple[str, str]] = []

    def section(self, anchor: str, heading: str, body: str) -> None:
        self.toc.append((anchor, heading))
        self.sections.append(f"<section id='{anchor}'><h2>{esc(heading)}</h2>{body}</section>")

    def chart(self, name: str, fig: go.Figure, summary: str) -> str:
        self.figures[name] = fig
        div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig-{name}", config=PLOT_CONFIG)
        return (f"<div class='chart-row'><div class='chart'>{div}</div>"
                f"<aside class='summary'>{summary}</aside></div>")


def empty_note(what: str) -> str:
    return f"<p class='empty'>No estimates for {esc(what)} were produced in this run, so there is nothing to show.</p>"


def _is_percent(rows: pd.DataFrame) -> bool:
    values = pd.to_numeric(rows["estimate"], errors="coerce").dropna()
    return values.empty or bool(((values >= 0) & (values <= 1)).all())


def _levels(rows: pd.DataFrame, band_labels: list[str]) -> list[tuple[str, str]]:
    out = []
    for variable in dict.fromkeys(rows["variable"]):
        levels = rows.loc[rows["variable"] == variable, "level"].astype(str).tolist()
        out += [(variable, level) for level in published_level_order(str(variable), levels, band_labels)]
    return out


def build_report(published: Published, config: Config, manifest: dict[str, Any], out_dir: Path,
                 notes: list[str] | None = None) -> tuple[Path, dict[str, go.Figure]]:
    """Write ``index.html`` and ``plotly.min.js`` into ``out_dir``; return the page and its figures."""
    page = _Page()
    level = config.estimate.confidence_level
    k = published.min_cell_count
    bands = config.estimate.band_labels()
    drug = " / ".join(config.drugs.ingredients)
    ci_name = f"{round(100 * level)}% confidence interval"

    gt, le = published.headline["headline"]["gt_4_weeks"], published.headline["headline"]["le_4_weeks"]
    cc_gt, cc_le = published.headline["complete_case"]["gt_4_weeks"], published.headline["complete_case"]["le_4_weeks"]
    sentence = headline_sentence(gt, le, drug, level)
    cards = "".join(
        f"<div class='card'><div class='card-label'>{esc(label)}</div><div class='card-value'>{pct(entry['estimate'])}</div>"
        f"<div class='card-ci'>{esc(ci_text(entry['ci_low'], entry['ci_high'], level))}</div>"
        f"<div class='card-n'>{count(entry['events'])} of the {count(entry.get('n_assessed'))} people whose outcome "
        f"was assessed (complete case {pct(cc['estimate'])}); {count(entry['n'])} people treated, weighted estimate "
        f"{pct(entry['estimate'])}</div></div>"
        for label, entry, cc in (("Treated more than 4 weeks", gt, cc_gt), ("Treated up to 4 weeks", le, cc_le))
    )
    fixed = published.headline.get("fixed_window_headline") or {}
    fixed_cc = published.headline.get("fixed_window_complete_case") or {}
    if fixed:
        cards += "".join(
            f"<div class='card'><div class='card-label'>{esc(label)}, fixed window (b)</div>"
            f"<div class='card-value'>{pct(entry['estimate'])}</div>"
            f"<div class='card-ci'>{esc(ci_text(entry['ci_low'], entry['ci_high'], level))}</div>"
            f"<div class='card-n'>{count(entry['events'])} of the {count(entry.get('n_assessed'))} people whose outcome "
            f"was assessed (complete case {pct(cc.get('estimate'))}); {count(entry['n'])} people whose treatment ended, "
            f"weighted estimate {pct(entry['estimate'])}</div></div>"
            for label, entry, cc in (("More than 4 weeks", fixed.get("gt_4_weeks") or {}, fixed_cc.get("gt_4_weeks") or {}),
                                     ("Up to 4 weeks", fixed.get("le_4_weeks") or {}, fixed_cc.get("le_4_weeks") or {}))
            if entry
        )
    estimands_html = (
        f"<p class='howto'><b>Two questions.</b> (a) How often does dependence develop during treatment and the "
        f"{config.outcome.window_after_end_days} days after it (the window grows with the treatment)? "
        f"(b) How often are people dependent or in withdrawal within {config.outcome.fixed_window_days} days after "
        f"their treatment ends (the same window for every duration, among people whose treatment ended while "
        f"observed)?</p>"
    )
    strata = _analysis(published, "by_stratum")
    supervised_rows = strata[(strata["variable"] == "misuse") & (strata["level"] == "supervised")] if not strata.empty else strata
    supervised_rows = [r for r in supervised_rows.to_dict("records") if not is_complete_case(r["analysis"], r["method"])]
    supervised = supervised_rows[0] if supervised_rows else None
    demo_note = (
        "<p class='demo'><b>Synthetic data.</b> This report is built on the demo extract: made-up persons generated "
        "from a documented model calibrated to the published figures (docs/demo_model.md). Its numbers show what the "
        "pipeline does; they are not evidence.</p>"
        if manifest.get("demo") else ""
    )
    headline_html = (
        f"{demo_note}<p id='headline-sentence' class='headline'>{esc(sentence)}</p>{estimands_html}"
        f"<div class='cards'>{cards}</div>"
        f"<p class='anchors'>{esc(anchor_sentence(gt, supervised, level))}</p>"
        f"<p class='howto'><b>How to read this report.</b> Percentages are the share of people who developed physical "
        f"dependence (any of: ICD-10 F13.2-F13.4, documented withdrawal symptoms, a clinician's judgement, Severity "
        f"of Dependence Scale &ge; {config.outcome.sds_cutoff}) between the start of their first treatment episode and "
        f"{config.outcome.window_after_end_days} days after it ended. Each estimate has a {ci_name} (whiskers and shaded bands): the "
        f"range of values compatible with the data; narrower means more certain. <b>Primary</b> estimates (blue) "
        f"weight people whose outcome was recorded to stand for everyone; <b>complete-case</b> estimates (orange) use "
        f"recorded outcomes only. Disclosure control: a group whose count of people or events is below the "
        f"minimum cell size (k = {k}), or would give such a count back, is withheld and marked as such; every other "
        f"count is rounded to the middle of its band of {published.rounding_base} (bands start at k), so counts "
        f"shown beside each other need not add up exactly.</p>"
    )
    page.section("headline", "Headline", headline_html)

    # Duration bands with anchors.
    rows = _analysis(published, "by_duration_band")
    if rows.empty:
        body = empty_note("dependence by duration band")
    else:
        title = contrast_title(rows, "dependence")
        fig = duration_chart(rows, bands, config.estimate.headline_split_days, title,
                             "Share of people who developed physical dependence, by length of their first "
                             "treatment episode. Red lines: published anchors.", k)
        body = page.chart("duration_bands", fig, f"<p>{esc(title)}.</p>{_summary_list(rows, True, level)}"
                          "<p class='note'>Red reference lines are published figures from other study designs "
                          "(Rickels: withdrawal, diazepam, 8 months = about 243 days).</p>")
    page.section("duration", "Dependence by treatment duration", body)

    # Cumulative incidence.
    rows = _analysis(published, "cumulative_incidence")
    if not rows.empty:
        series = _primary_first(rows)
        primary = rows[(rows["analysis"] == series[0][0]) & (rows["method"].astype(str) == str(series[0][1]))]
        primary = primary[primary["time_days"].notna()]
    if rows.empty or primary.empty:
        body = empty_note("cumulative incidence over time")
    else:
        last = []
        for (variable, group), part in primary.groupby(["variable", primary["level"].astype(str)], sort=False):
            part = _shown(part.sort_values("time_days"))
            if not part.empty:
                last.append((level_label(variable, group), part.iloc[-1]))
        title = ("Dependence over time among people still in their outcome window (censored when it closes): " + "; ".join(f"{name} {pct(r['estimate'])} by day {int(r['time_days'])}"
                                                       for name, r in last)) if last else "No published curve points"
        fig = incidence_chart(primary, title, "Cumulative incidence of dependence (Aalen-Johansen, death as a "
                              "competing risk).", level)
        summary = "".join(f"<li>{esc(name)}: <b>{pct(r['estimate'])}</b> by day {int(r['time_days'])} "
                          f"<span class='ci'>({esc(ci_text(r['ci_low'], r['ci_high'], level))})</span></li>"
                          for name, r in last)
        body = page.chart("cumulative_incidence", fig, f"<p>{esc(title)}.</p><ul class='values'>{summary}</ul>"
                          f"<p class='note'>How to read it: people leave the curve when their outcome window ends "
                          f"(their treatment episode ended {config.outcome.window_after_end_days} days earlier). The "
                          f"curve therefore shows how risk builds up for people who stay on treatment -- late points "
                          f"rest on the few treated longest -- not the share of the whole cohort, which the duration "
                          f"bands above give.</p>"
                          f"<p class='note'>Method: {esc(primary.iloc[0]['method'])}.</p>")
    page.section("over-time", "Dependence over time since starting treatment", body)

    # Strata.
    rows = _analysis(published, "by_stratum")
    if not rows.empty and (~rows.apply(lambda r: is_complete_case(r["analysis"], r["method"]), axis=1)).any():
        # one series per chart keeps five charts readable; complete-case strata are in the exports
        rows = rows[~rows.apply(lambda r: is_complete_case(r["analysis"], r["method"]), axis=1).astype(bool)]
    present = list(dict.fromkeys(base_variable(v) for v in rows["variable"])) if not rows.empty else []
    preferred = ["misuse", "indication", "dose_band", "age_band", "sex"]
    parts = []
    for variable in preferred + [v for v in present if v not in preferred]:
        subset = rows[rows["variable"].map(base_variable) == variable] if not rows.empty else rows
        if subset.empty:
            parts.append(f"<h3>{esc(variable_label(variable))}</h3>" + empty_note(f"{variable_label(variable).lower()}"))
            continue
        title = contrast_title(subset, "dependence")
        fig = dot_chart(subset, title=title, subtitle=f"Dependence by {variable_label(variable).lower()}.",
                        axis_title="Developed physical dependence (% of people)", is_percent=True,
                        levels=_levels(subset, bands), min_cell_count=k)
        parts.append(f"<h3>{esc(variable_label(variable))}</h3>"
                     + page.chart(f"stratum_{variable}", fig, f"<p>{esc(title)}.</p>{_summary_list(subset, True, level)}"))
    page.section("strata", "Who is most affected: misuse, indication, dose, age and sex", "".join(parts))

    # Components of the outcome.
    rows = _analysis(published, "components")
    if rows.empty:
        body = empty_note("the outcome's components")
    else:
        title = contrast_title(rows, "component of the outcome")
        fig = dot_chart(rows, title=title, subtitle="Each part of the dependence definition counted on its own "
                        "(a person can meet several).", axis_title="People meeting the component (%)",
                        is_percent=True, levels=_levels(rows, bands), min_cell_count=k)
        body = page.chart("components", fig, f"<p>{esc(title)}.</p>{_summary_list(rows, True, level)}")
    page.section("components", "Which parts of the definition were met", body)

    # Dose-response odds ratios.
    rows = _analysis(published, "dose_response")
    if rows.empty:
        body = empty_note("the dose-response model")
    else:
        shown = _shown(rows)
        shown = shown[shown["ci_low"].notna()]
        if shown.empty:
            title = "No published odds ratio"
        else:
            top = shown.loc[shown["estimate"].astype(float).idxmax()]
            title = (f"Highest adjusted odds of dependence: {variable_label(top['variable']).lower()} "
                     f"{level_label(top['variable'], top['level'])} (odds ratio {number(top['estimate'])}, "
                     f"{ci_text(top['ci_low'], top['ci_high'], level, number)})")
        fig = dot_chart(rows, title=title, subtitle="Odds ratios from one model adjusting for duration, dose, age, sex, "
                        "indication and misuse; 1 = same odds as the reference group (dotted line); log scale.",
                        axis_title="Odds ratio (log scale)", is_percent=False, levels=_levels(rows, bands),
                        min_cell_count=k, log_axis=True, reference=1.0)
        body = page.chart("dose_response", fig, f"<p>{esc(title)}.</p><p>An odds ratio above 1 means higher odds of "
                          "dependence than the reference level of the same variable, with everything else in the "
                          "model held equal. Intervals that cross 1 are compatible with no difference.</p>"
                          + _summary_list(rows, False, level))
    page.section("dose-response", "Dose-response: adjusted odds ratios", body)

    # Tolerance and withdrawal.
    parts = []
    for analysis, heading, outcome, what in (
        ("tolerance", "Tolerance: dose escalation during treatment", "dose escalation", "dose escalation"),
        ("withdrawal_by_ending", "Withdrawal after a taper vs an abrupt stop", "withdrawal", "withdrawal by ending"),
    ):
        rows = _analysis(published, analysis)
        ratios = rows.iloc[0:0]
        if analysis == "tolerance" and not rows.empty:  # a median ratio is not a share: a table, not the % chart
            is_ratio = rows["method"].astype(str).str.contains("median", regex=False)
            rows, ratios = rows[~is_ratio], rows[is_ratio]
        if rows.empty:
            parts.append(f"<h3>{esc(heading)}</h3>" + empty_note(what))
            continue
        is_percent = _is_percent(rows)
        title = contrast_title(rows, outcome, is_percent)
        fig = dot_chart(rows, title=title, subtitle=heading + ".",
                        axis_title=f"People with {outcome} (%)" if is_percent else f"{outcome} (ratio)",
                        is_percent=is_percent, levels=_levels(rows, bands), min_cell_count=k)
        parts.append(f"<h3>{esc(heading)}</h3>" + page.chart(analysis, fig, f"<p>{esc(title)}.</p>"
                                                            + _summary_list(rows, is_percent, level)))
        if not ratios.empty:
            parts.append("<p>Median dose escalation ratio (last / first daily dose; 1 = no change):</p>"
                         + estimates_table(ratios, level, is_percent=False))
    page.section("tolerance-withdrawal", "Tolerance and withdrawal", "".join(parts))

    # Sensitivity and anchors.
    rows = _analysis(published, "sensitivity")
    if not rows.empty:  # 30 before 90 before 180, not text order
        numeric = pd.to_numeric(rows["level"], errors="coerce")
        rows = rows.assign(_value=numeric).sort_values(["variable", "method", "_value"], kind="stable").drop(
            columns="_value")
    body = ("<p>Each setting varied alone, the others at their defaults. A headline that moves little across "
            "these rows does not hinge on that choice.</p>" + estimates_table(rows, level)) if not rows.empty \
        else empty_note("sensitivity analyses")
    anchors = _analysis(published, "anchors")
    if not anchors.empty:
        body += "<h3>Estimates over the anchors' own windows</h3>" + estimates_table(anchors, level)
    page.section("sensitivity", "Sensitivity analyses", body)

    # Trends and geography (issue 15): share treated > 4 weeks and dependence, per calendar year and region.
    parts = []
    for analysis, name in (("by_calendar_year", "calendar year of treatment start"), ("by_region", "region")):
        rows = _analysis(published, analysis)
        rows = rows[~rows.apply(lambda r: is_complete_case(r["analysis"], r["method"]), axis=1).astype(bool)] \
            if not rows.empty else rows
        rows = rows[rows["variable"].map(lambda v: "|" not in str(v) or str(v).endswith("|all"))].copy()
        if rows.empty:
            continue
        rows["variable"] = rows["variable"].map(base_variable)
        fig = dot_chart(rows, title=f"By {name}: share of new users treated more than 4 weeks, and dependence",
                        subtitle="All new users; dependence weighted for ascertainment.",
                        axis_title="% of new users", is_percent=True, levels=_levels(rows, bands), min_cell_count=k)
        parts.append(f"<h3>By {esc(name)}</h3>" + page.chart(analysis, fig, "<p>Two series: the share of new users whose "
                     "first treatment lasted more than 4 weeks (prescribing guidance: 2-4 weeks), and the share who "
                     "developed dependence (weighted for ascertainment). Rows marked withheld had too few people."
                     "</p>"))
    if parts:
        page.section("trends", "Trends and geography", "".join(parts))

    # Anything else the estimate stage produced, shown rather than dropped.
    known = {"headline", "headline_complete_case", "by_duration_band", "cumulative_incidence", "by_stratum",
             "components", "dose_response", "tolerance", "withdrawal_by_ending", "sensitivity", "anchors", "weights",
             "by_calendar_year", "by_region"}
    others = published.estimates[~published.estimates["analysis"].isin(known)]
    if not others.empty:
        headings = {"by_stratum_overall": "Dependence by stratum, whole cohort (every treatment duration)"}
        body = "".join(f"<h3>{esc(headings.get(name, str(name).replace('_', ' ').capitalize()))}</h3>"
                       + estimates_table(_analysis(published, name), level)
                       for name in dict.fromkeys(others["analysis"]))
        page.section("other", "Other estimates", body)

    page.section("attrition", "Who is in the cohort", _attrition_html(published, config))
    page.section("quality", "Data quality", _quality_html(published))
    page.section("methods", "Methods and settings", _methods_html(published, config, level))
    page.section("manifest", "Run manifest", _manifest_html(manifest, notes or []))

    generated = manifest.get("finished_at") or manifest.get("generated_at") or dt.datetime.now().isoformat(timespec="seconds")
    document = _document(page, drug, str(generated))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "plotly.min.js").write_text(plotly.offline.get_plotlyjs(), encoding="utf-8")
    index = out_dir / "index.html"
    index.write_text(document, encoding="utf-8")
    return index, page.figures


def _attrition_html(published: Published, config: Config) -> str:
    attrition = _plain(published.attrition)
    if attrition.empty:
        return "<p class='empty'>No cohort attrition table was produced in this run.</p>"
    first = attrition.iloc[0]
    steps = [f"<div class='flow-box start'>{count(first['persons_before'])} people with a {esc(' / '.join(config.drugs.ingredients))} "
             "dispensing in the extract</div>"]
    for _, r in attrition.iterrows():
        excluded = count(r["excluded"]) if not _missing(r["excluded"]) else "withheld (disclosure control)"
        after = count(r["persons_after"]) if not _missing(r["persons_after"]) else "withheld (would reveal a small count)"
        steps.append(f"<div class='flow-step'><div class='flow-arrow' aria-hidden='true'>&darr;</div>"
                     f"<div class='flow-excluded'>Step {esc(r['step'])}: {esc(r['reason'])} &mdash; excluded {excluded}</div>"
                     f"<div class='flow-box'>{after} remain</div></div>")
    last = attrition.iloc[-1]
    return (f"<p>Each step keeps the people who meet it; the last box is the analysed cohort "
            f"({count(last['persons_after'])} new users).</p><div class='flow'>{''.join(steps)}</div>")


def _quality_html(published: Published) -> str:
    quality = _plain(published.quality)
    if quality.empty:
        return "<p class='empty'>No load, validation or quarantine records were found for this run.</p>"
    parts = []
    validation = quality[quality["source"] == "validation"]
    if not validation.empty:
        failed = validation[validation["status"] == "fail"]
        errors = failed[failed["severity"] == "error"]
        parts.append(f"<p><b>{len(validation) - len(failed)} of {len(validation)} validation checks passed</b>; "
                     f"{len(failed)} failed ({len(errors)} of them errors, whose rows were quarantined or which would "
                     "have stopped the run). Failing checks:</p>")
        shown = failed if not failed.empty else validation.head(0)
        parts.append(_html_table(
            ["table", "column", "check", "category", "severity", "action", "failing rows", "rows checked", "share"],
            [[esc(r["table_name"]), esc(r["column_name"]), esc(r["check_id"]), esc(r["category"]), esc(r["severity"]),
              esc(r["action"]), count(r["count"]) if not r["suppressed"] else "withheld", count(r["total"]),
              pct(r["share"], 2)] for _, r in shown.iterrows()]) if not shown.empty else "<p>None.</p>")
    quarantine = quality[quality["source"] == "quarantine"]
    parts.append("<h3>Rows quarantined (set aside with a reason, never silently dropped)</h3>")
    parts.append(_html_table(["table", "stage", "rule", "rows"],
                             [[esc(r["table_name"]), esc(r["category"]), esc(r["check_id"]),
                               count(r["count"]) if not r["suppressed"] else "withheld"]
                              for _, r in quarantine.iterrows()]) if not quarantine.empty else "<p>No rows were quarantined.</p>")
    load = quality[quality["source"] == "load"]
    if not load.empty:
        wide = {}
        for _, r in load.iterrows():
            wide.setdefault(r["table_name"], {})[r["check_id"]] = r["count"]
        parts.append("<h3>Rows loaded per input table</h3>")
        parts.append(_html_table(["table", "rows read", "rows loaded", "rows quarantined"],
                                 [[esc(t), count(v.get("rows_read")), count(v.get("rows_loaded")),
                                   count(v.get("rows_quarantined"))] for t, v in wide.items()]))
    parts.append("<p class='note'>This section and <code>quality/validation.json</code> beside this page are the "
                 "published view of data quality: rule descriptions and rounded counts only. Which records failed "
                 "which rule stays in the warehouse (<code>audit_validation</code>, <code>audit_quarantine</code>); "
                 "the full validation results and Great Expectations Data Docs are written for the analyst to "
                 "<code>data/quality-internal/</code>, outside the published folder.</p>")
    return "".join(parts)


def _methods_html(published: Published, config: Config, level: float) -> str:
    c = config
    items = [
        f"Drugs: {esc(', '.join(c.drugs.ingredients))}; doses in diazepam equivalents ({esc(c.drugs.equivalence_table)} table).",
        f"Treatment episode: dispensings joined while the gap after the supply ends is at most "
        f"{c.episodes.persistence_window_days} days (Bushnell et al. 2017); stockpiling "
        f"{'on' if c.episodes.stockpiling else 'off'}.",
        f"Cohort: new users aged &ge; {c.cohort.min_age_years} with &ge; {c.cohort.washout_days} days of prior "
        "observation and no benzodiazepine dispensing in it; first episode only.",
        f"Outcome: physical dependence from episode start to {c.outcome.window_after_end_days} days after its end: "
        f"ICD-10 {esc(', '.join(c.outcome.dependence_icd10_prefixes))} (ICD-10-CM "
        f"{esc(', '.join(c.outcome.dependence_icd10cm_prefixes))}), documented withdrawal, a clinician's judgement, "
        f"or SDS &ge; {c.outcome.sds_cutoff} (de las Cuevas et al. 2000).",
        "People with no follow-up or diagnosis in the window have an unknown outcome, not a negative one; the primary "
        "estimate weights ascertained people by the inverse probability of ascertainment, the complete-case estimate "
        "is shown beside it.",
        f"Intervals: {round(100 * level)}% (Wilson for proportions). Disclosure control "
        f"(<code>disclosure.min_cell_count</code> = {published.min_cell_count}, <code>disclosure.rounding_base</code> "
        f"= {published.rounding_base}): no count below {published.min_cell_count} is published, nor any number that "
        f"would give one back; every published count is rounded to the middle of its band of "
        f"{published.rounding_base} values (bands start at {published.min_cell_count}; 0 stays 0); a proportion "
        f"events / n is computed from the rounded counts (with the Wilson interval of those), any other estimate is "
        f"rounded so that estimate &times; n is uncertain by at least the rounding base (persons) "
        f"(docs/privacy.md).",
    ]
    weights = _analysis(published, "weights")
    weights_html = ("<h3>Ascertainment weights</h3>" + estimates_table(weights, level, is_percent=False)) if not weights.empty else ""
    settings = _html_table(["setting", "value"], [[f"<code>{esc(k)}</code>", esc(v)] for k, v in _flatten(config.to_dict())],
                           cls="settings")
    return (f"<ul>{''.join(f'<li>{i}</li>' for i in items)}</ul>{weights_html}"
            f"<h3>Every setting used</h3>{settings}")


def _manifest_html(manifest: dict[str, Any], notes: list[str]) -> str:
    rows = [[f"<code>{esc(k)}</code>", esc(v)] for k, v in _flatten(manifest) if k != "config"]
    note_html = "".join(f"<li>{esc(n)}</li>" for n in notes)
    return ((f"<ul class='notes'>{note_html}</ul>" if note_html else "")
            + (_html_table(["item", "value"], rows, cls="manifest") if rows else "<p class='empty'>No manifest was given.</p>")
            + "<p class='note'>Also in <code>manifest.json</code>; dashboard tables in <code>exports/</code> "
              "(see <code>exports/data_dictionary.md</code>).</p>")


_CSS = """
:root { --ink:#1a1a1a; --muted:#5a5a5a; --line:#d9d9d9; --blue:#0072B2; --orange:#E69F00; --bg:#fafafa; }
* { box-sizing: border-box; }
body { margin:0; font-family: %(font)s; color: var(--ink); background: var(--bg); line-height: 1.5; }
header { background: white; border-bottom: 1px solid var(--line); padding: 1.2rem 2rem; }
header h1 { margin: 0; font-size: 1.5rem; }
header p { margin: .2rem 0 0; color: var(--muted); }
nav { padding: .5rem 2rem; background: white; border-bottom: 1px solid var(--line); font-size: .9rem; }
nav a { margin-right: 1rem; color: var(--blue); }
main { max-width: 1280px; margin: 0 auto; padding: 1rem 2rem 3rem; }
section { background: white; border: 1px solid var(--line); border-radius: 6px; padding: 1rem 1.5rem; margin: 1rem 0; }
h2 { font-size: 1.25rem; margin: .2rem 0 .8rem; } h3 { font-size: 1.05rem; margin: 1.2rem 0 .4rem; }
.headline { font-size: 1.3rem; font-weight: 600; max-width: 70rem; }
.cards { display: flex; gap: 1rem; flex-wrap: wrap; margin: .8rem 0; }
.card { border: 1px solid var(--line); border-left: 6px solid var(--blue); border-radius: 4px; padding: .6rem 1rem; min-width: 16rem; }
.card-label { color: var(--muted); font-size: .9rem; } .card-value { font-size: 2rem; font-weight: 700; color: var(--blue); }
.card-ci, .card-n { font-size: .9rem; color: var(--muted); }
.anchors { border-left: 4px solid #D55E00; padding-left: .8rem; }
.howto { font-size: .92rem; color: var(--muted); }
.chart-row { display: grid; grid-template-columns: minmax(0, 3fr) minmax(230px, 1fr); gap: 1rem; align-items: start; }
@media (max-width: 900px) { .chart-row { grid-template-columns: 1fr; } }
.summary { font-size: .92rem; border-left: 3px solid var(--line); padding-left: .8rem; }
.summary p:first-child { font-weight: 600; }
ul.values { padding-left: 1.1rem; margin: .3rem 0; } .ci { color: var(--muted); }
.note { color: var(--muted); font-size: .85rem; } .empty { color: var(--muted); font-style: italic; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: .88rem; margin: .4rem 0 1rem; }
th, td { border-bottom: 1px solid var(--line); padding: .25rem .6rem; text-align: left; vertical-align: top; }
th { background: #f1f1f1; } td:nth-child(n+3) { font-variant-numeric: tabular-nums; }
p.demo { background: #fff4d6; border-left: 4px solid #E69F00; padding: .5rem .8rem; }
table.settings td, table.manifest td { font-size: .82rem; word-break: break-all; }
.flow { display: flex; flex-direction: column; align-items: flex-start; }
.flow-box { border: 2px solid var(--blue); border-radius: 4px; padding: .4rem .8rem; background: #eef6fb; font-weight: 600; }
.flow-box.start { border-color: var(--ink); background: #f4f4f4; }
.flow-step { margin-left: 1.2rem; } .flow-arrow { font-size: 1.2rem; color: var(--muted); margin-left: 1rem; }
.flow-excluded { margin: 0 0 .3rem 2.5rem; color: #8a4b00; font-size: .9rem; }
footer { color: var(--muted); font-size: .8rem; text-align: center; padding: 1rem; }
""" % {"font": FONT}


def _document(page: _Page, drug: str, generated: str) -> str:
    nav = "".join(f"<a href='#{a}'>{esc(h)}</a>" for a, h in page.toc)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Benzodiazepine dependence by treatment duration ({esc(drug)})</title>
<style>{_CSS}</style>
<script src="plotly.min.js"></script>
</head>
<body>
<header><h1>How often does physical dependence follow {esc(drug)} treatment, by how long it lasted?</h1>
<p>People starting treatment (new users) in the extract; results generated {esc(generated)}. Inputs and versions: see the run manifest at the end.</p></header>
<nav>{nav}</nav>
<main>
{''.join(page.sections)}
</main>
<footer>benzo-outcomes report &middot; opens without a network connection &middot; colours: Okabe-Ito palette</footer>
</body>
</html>
"""


def write_manifest(manifest: dict[str, Any], config: Config, path: Path) -> None:
    """``manifest.json``: the run manifest with the resolved configuration printed into it."""
    content = dict(manifest)
    content.setdefault("config", config.to_dict())
    path.write_text(json.dumps(content, indent=2, default=str) + "\n", encoding="utf-8")
