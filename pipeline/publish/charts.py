"""The report's charts (Plotly): dots with intervals, duration bands with the anchors, incidence curves.

Every chart is drawn from published (suppressed, rounded) rows: a suppressed
cell keeps its label and says it is withheld, with no point and no hover. Series
are told apart by the rows' explicit columns (``estimator``, ``estimate_name``),
their names and colours come from ``labels.Names`` and ``SERIES_STYLE``: primary
is always blue, complete case always orange, a published anchor always red
(Okabe & Ito, colour-blind safe).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from pipeline.estimate.anchors import MARRIOTT_TYRER, RICKELS
from pipeline.publish.format import ci_text, count, esc, missing as _missing, number, pct
from pipeline.publish.labels import Names
from pipeline.publish.tables import published_level_order

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

SERIES_ORDER = ["primary", "share_increase", "exposure", "complete_case", "trend", "median_ratio", "reference",
                "anchor", "anchor_inside"]
SERIES_STYLE = {  # (colour, marker symbol); complete case is always orange, primary always blue
    "primary": (PRIMARY_COLOUR, "circle"), "share_increase": (PRIMARY_COLOUR, "circle"),
    "complete_case": (COMPLETE_COLOUR, "diamond"), "trend": (OKABE_ITO["bluish_green"], "square"),
    "median_ratio": (OKABE_ITO["reddish_purple"], "circle"), "reference": (GREY, "circle-open"),
    "anchor": (ANCHOR_COLOUR, "x"), "anchor_inside": (ANCHOR_COLOUR, "x"),
    "exposure": (OKABE_ITO["reddish_purple"], "square"),
}
def _series_ids(rows: pd.DataFrame) -> list[tuple[str, str, str]]:
    """Each row's series: (analysis, estimator, the quantity where one estimator makes several series)."""
    return [(a, e, n if e == "wilson" else "") for a, e, n in zip(rows["analysis"], rows["estimator"],
                                                                   rows["estimate_name"])]


def series_of(rows: pd.DataFrame) -> list[tuple[str, str, str]]:
    """The series in ``rows`` (``_series_ids``), primary before complete case."""
    keys = list(dict.fromkeys(_series_ids(rows)))
    return sorted(keys, key=lambda k: SERIES_ORDER.index(Names.series_key(k[1], k[2])))


def series_rows(rows: pd.DataFrame, key: tuple[str, str, str]) -> pd.DataFrame:
    return rows[pd.Series([series == key for series in _series_ids(rows)], index=rows.index, dtype=bool)]


def shown(rows: pd.DataFrame) -> pd.DataFrame:
    """The published rows: not suppressed, with an estimate."""
    return rows[(~rows["suppressed"].astype(bool)) & rows["estimate"].notna()]


def _wrap(text: str, width: int = 78) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return "<br>".join(lines)


def _layout(fig: go.Figure, title: str, subtitle: str, height: int, showlegend: bool = True,
            legend_rows: int = 1, margin_right: int = 30) -> go.Figure:
    fig.update_layout(
        showlegend=showlegend,
        template="simple_white",
        title={"text": _wrap(title) + f"<br><span style='font-size:12px;color:{GREY}'>{_wrap(subtitle, 100)}</span>",
               "x": 0, "xanchor": "left", "font": {"size": 16}},
        font={"family": FONT, "size": 13, "color": "#1a1a1a"},
        height=height,
        # top margin from the wrapped title and subtitle, so the plot never runs into them
        margin={"l": 80, "r": margin_right, "t": 36 + 22 * (_wrap(title).count("<br>") + 1)
                + 17 * (_wrap(subtitle, 100).count("<br>") + 1),
                "b": 60 + (22 * legend_rows if showlegend else 0)},
        # legend under the x-axis title, in pixels from the plot so it never overlaps it
        legend={"orientation": "h", "yanchor": "bottom", "y": 0, "yref": "container", "x": 0, "xanchor": "left"},
        hoverlabel={"font": {"family": FONT}},
        paper_bgcolor="white",
        plot_bgcolor="white",
    )
    return fig


def _hover(rows: pd.DataFrame, is_percent: bool, names: Names) -> list[str]:
    fmt = pct if is_percent else number
    return [
        f"{esc(r.get('_label'))}<br>{fmt(r['estimate'])} ({esc(ci_text(r['ci_low'], r['ci_high'], 0.95, fmt))})"
        + (f"<br>{count(r['events'])} of {count(r['n'])} persons" if not _missing(r['events'])
           else (f"<br>{count(r['n'])} persons" if not _missing(r['n']) else ""))
        + f"<br>{esc(names.method(r['method']))}"
        for _, r in rows.iterrows()
    ]


# ---------------------------------------------------------------- charts


LOG_TICKS = [0.0625, 0.125, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128]


def _log_ticks(low: float, high: float) -> tuple[list[float], list[str], list[float]]:
    """Explicit ticks (powers of two around 1) and a padded log10 range covering [low, high]."""
    lo, hi = math.log10(max(min(low, 1.0), 1e-3)), math.log10(max(high, 1.0))
    pad = max(0.08, 0.06 * (hi - lo))
    ticks = [t for t in LOG_TICKS if lo - 3 * pad <= math.log10(t) <= hi + 3 * pad] or [1]
    # value labels are centred over their point: room on both sides
    return ticks, [f"{t:g}" for t in ticks], [lo - 3 * pad, hi + 3 * pad]


def dot_chart(rows: pd.DataFrame, *, names: Names, title: str, subtitle: str, axis_title: str, is_percent: bool,
              levels: list[tuple[str, str]], min_cell_count: int, log_axis: bool = False,
              reference: float | None = None) -> go.Figure:
    """Horizontal dots with interval whiskers, one row per (variable, level), one colour per series.

    Series that share a row are spread vertically; a series alone on its rows (a reference level, a
    trend term) sits on the row itself. A suppressed row keeps its label and says it is withheld; it
    gets no point and no hover.
    """
    fig = go.Figure()
    multi_variable = len({v for v, _ in levels}) > 1
    labels = [f"{names.short_variable(v)}: {names.level(v, l)}" if multi_variable else names.level(v, l)
              for v, l in levels]
    position = {key: i for i, key in enumerate(levels)}
    series = series_of(rows)
    sharing: dict[tuple[str, str], list[int]] = {}
    for index, series_key in enumerate(series):
        part = series_rows(rows, series_key)
        for key in dict.fromkeys(zip(part["variable"], part["level"].astype(str))):
            sharing.setdefault(key, []).append(index)
    per_row = max([len(v) for v in sharing.values()] or [1])
    scale = 100 if is_percent else 1
    fmt = (lambda v: f"{100 * v:.1f}%") if is_percent else (lambda v: f"{v:.2f}")
    lows, highs = [], []
    for index, series_key in enumerate(series):
        key = Names.series_key(series_key[1], series_key[2])
        part = series_rows(rows, series_key).copy()
        part["_label"] = [labels[position[(r["variable"], str(r["level"]))]]
                          if (r["variable"], str(r["level"])) in position else names.level(r["variable"], r["level"])
                          for _, r in part.iterrows()]
        visible = shown(part)
        visible = visible[[(v, str(l)) in position for v, l in zip(visible["variable"], visible["level"])]]
        colour, symbol = SERIES_STYLE.get(key, (SERIES_COLOURS[index % len(SERIES_COLOURS)], "circle"))
        if visible.empty:
            continue
        est = visible["estimate"].astype(float)
        low = visible["ci_low"].astype(float).fillna(est)
        high = visible["ci_high"].astype(float).fillna(est)
        lows += list(low)
        highs += list(high)
        offsets, places = [], []
        for v, l in zip(visible["variable"], visible["level"]):
            together = sharing.get((v, str(l)), [index])
            offsets.append(0.0 if len(together) == 1 else -0.17 + 0.34 * together.index(index) / (len(together) - 1))
            # the upper point of a pair is labelled above it, the lower one below, so no label covers a point
            places.append("bottom center" if len(together) > 1 and together.index(index) == len(together) - 1
                          else "top center")
        text = [fmt(e) + (f" ({fmt(lo)}-{fmt(hi)})" if not _missing(r["ci_low"]) else "")
                for e, lo, hi, (_, r) in zip(est, low, high, visible.iterrows())]
        fig.add_trace(go.Scatter(
            x=est * scale, y=[position[(v, str(l))] + o for v, l, o in zip(visible["variable"], visible["level"], offsets)],
            mode="markers+text", text=text, textposition=places, textfont={"size": 11, "color": colour},
            cliponaxis=False,
            marker={"color": colour, "size": 9, "symbol": symbol, "line": {"width": 2, "color": colour}},
            error_x={"type": "data", "symmetric": False, "array": (high - est) * scale,
                     "arrayminus": (est - low) * scale, "color": colour, "thickness": 1.6, "width": 4},
            name=names.series(series_key[1], series_key[2]), hovertext=_hover(visible, is_percent, names),
            hoverinfo="text",
        ))
    withheld = rows[rows["suppressed"].astype(bool)]
    withheld_positions = sorted({position[(v, str(l))] for v, l in zip(withheld["variable"], withheld["level"])
                                 if (v, str(l)) in position})
    for i in withheld_positions:
        fig.add_annotation(x=0, xref="paper", y=i, yref="y", xanchor="left", showarrow=False,
                           text="withheld (disclosure control)", font={"size": 11, "color": GREY})
    if reference is not None:
        fig.add_vline(x=reference, line={"color": GREY, "dash": "dot", "width": 1})
    fig.update_yaxes(tickvals=list(range(len(labels))), ticktext=labels, autorange=False,
                     range=[len(labels) - 0.5, -0.75], showgrid=False, ticks="", automargin=True)
    fig.update_xaxes(title_text=axis_title, showgrid=True, gridcolor="#e5e5e5", zeroline=False, automargin=True)
    if log_axis:
        tickvals, ticktext, axis_range = _log_ticks(min(lows or [1.0]), max(highs or [1.0]))
        fig.update_xaxes(type="log", tickvals=tickvals, ticktext=ticktext, range=axis_range)
    else:
        top = max([h * scale for h in highs] or [1.0])
        # room on the right for the value label centred over the highest point
        fig.update_xaxes(type="linear", range=[0, top * 1.18 if top > 0 else 1])
    row_height = 30 + 32 * (per_row - 1)
    legend_rows = len(series) if len(series) > 1 else 0
    return _layout(fig, title, subtitle, height=190 + row_height * max(len(labels), 2) + 18 * legend_rows,
                   showlegend=len(series) > 1, legend_rows=max(1, (len(series) + 1) // 2))


def duration_chart(rows: pd.DataFrame, names: Names, band_labels: list[str], title: str, subtitle: str,
                   min_cell_count: int) -> go.Figure:
    """Dependence by duration band (vertical), with the published anchors as reference marks."""
    fig = go.Figure()
    bands = published_level_order("duration_band", list(rows["level"].astype(str)), band_labels)
    x_of = {band: i for i, band in enumerate(bands)}
    series = series_of(rows)
    offsets = [0.0] if len(series) == 1 else [(-0.15 + 0.3 * i / (len(series) - 1)) for i in range(len(series))]
    for colour_index, (series_key, offset) in enumerate(zip(series, offsets)):
        part = series_rows(rows, series_key).copy()
        part["_label"] = [names.level("duration_band", level) for level in part["level"]]
        visible = shown(part)
        if visible.empty:
            continue
        is_complete = Names.series_key(series_key[1], series_key[2]) == "complete_case"
        colour = COMPLETE_COLOUR if is_complete else SERIES_COLOURS[colour_index]
        est = visible["estimate"].astype(float)
        low, high = visible["ci_low"].astype(float).fillna(est), visible["ci_high"].astype(float).fillna(est)
        fig.add_trace(go.Scatter(
            x=[x_of[str(level)] + offset for level in visible["level"]], y=est * 100,
            mode="markers+text", text=[f"{100 * e:.0f}%" for e in est], textposition="middle right",
            textfont={"size": 11, "color": colour}, cliponaxis=False,
            marker={"color": colour, "size": 10, "symbol": "circle" if colour_index == 0 else "diamond"},
            error_y={"type": "data", "symmetric": False, "array": (high - est) * 100, "arrayminus": (est - low) * 100,
                     "color": colour, "thickness": 1.8, "width": 5},
            name=names.series(series_key[1], series_key[2]), hovertext=_hover(visible, True, names), hoverinfo="text",
        ))
    for band in sorted({str(level) for level in rows.loc[rows["suppressed"].astype(bool), "level"]}):
        fig.add_annotation(x=x_of[band], y=0, yref="paper", yanchor="bottom", showarrow=False, textangle=-90,
                           text="withheld (disclosure control)", font={"size": 11, "color": GREY})
    # Anchor reference marks: Marriott & Tyrer over the bands of its own population (4 weeks or more);
    # Rickels under / over 8 months, split at the band that holds RICKELS.days.
    lows = {b: _band_low(b) for b in bands if _band_low(b) is not None}
    long_bands = [x_of[b] for b, low in lows.items() if low >= MARRIOTT_TYRER.days]
    if long_bands:
        _reference_segment(fig, min(long_bands) - 0.4, max(long_bands) + 0.4, 100 * MARRIOTT_TYRER.value, "dash",
                           MARRIOTT_TYRER.chart_label)
    rickels_from = max([low for low in lows.values() if low <= RICKELS.days], default=RICKELS.days)
    short = [x_of[b] for b, low in lows.items() if low < rickels_from]
    longest = [x_of[b] for b, low in lows.items() if low >= rickels_from]
    if short:
        _reference_segment(fig, min(short) - 0.4, max(short) + 0.4, 100 * RICKELS.short_value, "dot",
                           f"Rickels 1983: {RICKELS.short_value:.0%} (< {RICKELS.months} months)")
    if longest:
        _reference_segment(fig, min(longest) - 0.4, max(longest) + 0.4, 100 * RICKELS.long_value, "dot",
                           f"Rickels 1983: {RICKELS.long_value:.0%} ({RICKELS.months}+ months)")
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name="published anchor (reference)",
                             line={"color": ANCHOR_COLOUR, "dash": "dash"}, hoverinfo="skip"))
    fig.update_xaxes(tickvals=list(range(len(bands))), tickangle=0,
                     ticktext=[names.level("duration_band", b).replace(" days", "<br>days") for b in bands],
                     title_text="Length of first treatment episode (days)", range=[-0.6, len(bands) - 0.4])
    top = max([100 * float(h) for h in rows["ci_high"] if not _missing(h)] + [100 * RICKELS.long_value])
    fig.update_yaxes(title_text="Dependence (% of people)", range=[0, top * 1.12],
                     showgrid=True, gridcolor="#e5e5e5")
    # anchor labels sit in the right margin, level with their line, so they never cover a point
    return _layout(fig, title, subtitle, height=500, margin_right=215, legend_rows=2)


def _band_low(band: str) -> int | None:
    digits = "".join(ch if ch.isdigit() else " " for ch in band).split()
    if not digits:
        return None
    return 0 if band.strip().startswith("<") else int(digits[0])


def _reference_segment(fig: go.Figure, x0: float, x1: float, y: float, dash: str, label: str) -> None:
    """An anchor's line over the bands it covers, labelled in the right margin at the line's height."""
    fig.add_shape(type="line", x0=x0, x1=x1, y0=y, y1=y, xref="x", yref="y",
                  line={"color": ANCHOR_COLOUR, "dash": dash, "width": 2})
    fig.add_annotation(x=1.01, y=y, xref="paper", yref="y", xanchor="left", yanchor="middle", align="left",
                       showarrow=False, text=label, font={"size": 11, "color": ANCHOR_COLOUR})


CURVE_COLOURS = [OKABE_ITO[c] for c in ("blue", "reddish_purple", "bluish_green", "sky_blue")]  # no orange/red:
# orange means complete case and red means a published anchor everywhere else on the page


def _spread(values: list[float], gap: float) -> list[float]:
    """Label heights at least ``gap`` apart, pushed down from the highest (for end labels).

    >>> _spread([92.6, 92.2, 13.0], 5.0)
    [92.6, 87.6, 13.0]
    """
    order = sorted(range(len(values)), key=lambda i: -values[i])
    placed = list(values)
    for rank, i in enumerate(order[1:], start=1):
        placed[i] = round(min(values[i], placed[order[rank - 1]] - gap), 1)
    return placed


def incidence_chart(rows: pd.DataFrame, names: Names, title: str, subtitle: str, level: float) -> go.Figure:
    """Cumulative incidence curves (step lines) with their confidence bands.

    The whole-cohort curve ("all"), when drawn beside its subgroups, is a thin dashed black line
    on top without a band, so it cannot hide the subgroup it runs close to. End labels sit in the
    right margin, pushed apart so they never overprint.
    """
    fig = go.Figure()
    groups = list(dict.fromkeys(zip(rows["variable"], rows["level"].astype(str))))
    groups = [(v, l) for v in dict.fromkeys(v for v, _ in groups)
              for l in published_level_order(v, [l for vv, l in groups if vv == v], [])]
    overall = [g for g in groups if g[1] == "all"] if len(groups) > 1 else []
    groups = [g for g in groups if g not in overall] + overall
    ends: list[tuple[float, str, str]] = []
    for i, (variable, group) in enumerate(groups):
        is_overall = (variable, group) in overall
        colour = "#1a1a1a" if is_overall else CURVE_COLOURS[i % len(CURVE_COLOURS)]
        part = rows[(rows["variable"] == variable) & (rows["level"].astype(str) == group)].sort_values("time_days")
        # Only published points are drawn: the step line holds each published value until
        # the next one (disclosure control coarsens the curve; it adds nothing in between).
        visible = shown(part)
        y = [100 * float(e) for e in visible["estimate"]]
        lo = [None if _missing(e) else 100 * float(e) for e in visible["ci_low"]]
        hi = [None if _missing(e) else 100 * float(e) for e in visible["ci_high"]]
        x = [int(t) for t in visible["time_days"]]
        name = names.level(variable, group)
        if not is_overall:
            fill = _rgba(colour, 0.18)
            fig.add_trace(go.Scatter(x=x, y=hi, mode="lines", line={"width": 0, "shape": "hv"}, hoverinfo="skip",
                                     showlegend=False, legendgroup=name, connectgaps=False))
            fig.add_trace(go.Scatter(x=x, y=lo, mode="lines", line={"width": 0, "shape": "hv"}, fill="tonexty",
                                     fillcolor=fill, hoverinfo="skip", showlegend=False, legendgroup=name,
                                     connectgaps=False))
        hover = [None if yy is None else f"{esc(name)}<br>day {xx}: {yy:.1f}%" for xx, yy in zip(x, y)]
        line = ({"color": colour, "width": 1.5, "shape": "hv", "dash": "dash"} if is_overall
                else {"color": colour, "width": 2.5, "shape": "hv"})
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", line=line,
                                 name=name, legendgroup=name, hovertext=hover, hoverinfo="text", connectgaps=False))
        if not visible.empty and not _missing(visible.iloc[-1]["estimate"]):
            last = visible.iloc[-1]
            ends.append((100 * float(last["estimate"]), f"{name}: {pct(last['estimate'])} (day {int(last['time_days'])})",
                         colour))
    top = max([100 * float(h) for h in rows["ci_high"] if not _missing(h)] + [e[0] for e in ends] + [1.0])
    for (value, text, colour), height in zip(ends, _spread([e[0] for e in ends], 0.07 * top)):
        fig.add_annotation(x=1.01, xref="paper", y=height, yref="y", xanchor="left", yanchor="middle",
                           showarrow=False, text=text, font={"size": 11, "color": colour})
    fig.update_xaxes(title_text="Days since the start of treatment", rangemode="tozero")
    fig.update_yaxes(title_text="Cumulative incidence (%)", range=[0, top * 1.05],
                     showgrid=True, gridcolor="#e5e5e5")
    return _layout(fig, title, subtitle + f" Shaded: {round(100 * level)}% confidence band.", height=480,
                   margin_right=230)


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def trend_chart(rows: pd.DataFrame, names: Names, title: str, subtitle: str) -> go.Figure:
    """Series over an ordered variable (calendar years) as lines with interval whiskers: one row of
    points per series, so a long run of years stays one chart high. A withheld point is a gap."""
    fig = go.Figure()
    levels = published_level_order(str(rows["variable"].iloc[0]), list(rows["level"].astype(str)), [])
    tops = [1.0]
    for series_key in series_of(rows):
        key = Names.series_key(series_key[1], series_key[2])
        part = series_rows(rows, series_key).copy()
        part["_label"] = [names.level(v, lv) for v, lv in zip(part["variable"], part["level"])]
        by_level = {str(r["level"]): r for _, r in shown(part).iterrows()}
        colour, symbol = SERIES_STYLE.get(key, (PRIMARY_COLOUR, "circle"))
        est = [None if lv not in by_level else 100 * float(by_level[lv]["estimate"]) for lv in levels]
        low = [None if lv not in by_level or _missing(by_level[lv]["ci_low"]) else 100 * float(by_level[lv]["ci_low"])
               for lv in levels]
        high = [None if lv not in by_level or _missing(by_level[lv]["ci_high"]) else 100 * float(by_level[lv]["ci_high"])
                for lv in levels]
        tops += [h for h in high if h is not None] + [e for e in est if e is not None]
        hover = _hover(pd.DataFrame([by_level[lv] for lv in levels if lv in by_level]), True, names)
        hover_at = dict(zip([lv for lv in levels if lv in by_level], hover))
        fig.add_trace(go.Scatter(
            x=list(range(len(levels))), y=est, mode="lines+markers", connectgaps=False, cliponaxis=False,
            line={"color": colour, "width": 2}, marker={"color": colour, "size": 8, "symbol": symbol},
            error_y={"type": "data", "symmetric": False, "color": colour, "thickness": 1.4, "width": 3,
                     "array": [None if e is None or h is None else h - e for e, h in zip(est, high)],
                     "arrayminus": [None if e is None or lo is None else e - lo for e, lo in zip(est, low)]},
            name=names.series(series_key[1], series_key[2]), hovertext=[hover_at.get(lv) for lv in levels],
            hoverinfo="text",
        ))
    withheld = sorted({str(lv) for lv in rows.loc[rows["suppressed"].astype(bool), "level"]}, key=levels.index)
    for level in withheld:
        fig.add_annotation(x=levels.index(level), y=0, yref="paper", yanchor="bottom", showarrow=False,
                           textangle=-90, text="withheld", font={"size": 10, "color": GREY})
    # positions with the levels as tick labels: the axis reads them in the order given, never as numbers
    fig.update_xaxes(tickvals=list(range(len(levels))), ticktext=[names.level(rows["variable"].iloc[0], lv) for lv in levels],
                     range=[-0.5, len(levels) - 0.5], title_text=names.variable(rows["variable"].iloc[0]))
    fig.update_yaxes(title_text="% of new users", range=[0, max(tops) * 1.1], showgrid=True, gridcolor="#e5e5e5")
    return _layout(fig, title, subtitle, height=430, legend_rows=1)
