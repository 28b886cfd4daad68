"""The pooled report: ``DIR/index.html`` with forest plots, offline (plotly.js beside the page).

One forest plot per pooled analysis (headline pair, duration bands, dose-response
odds ratios; primary estimator): each site's estimate and interval, sized by
its random-effects weight, then the pooled estimate as a diamond spanning the
HKSJ interval and the prediction interval as a thin bar. Everything shown was
already published by the sites or is pooled from it.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import plotly.offline

from pipeline.network import meta

SITE_COLOUR = "#1f5f8b"
POOLED_COLOUR = "#b03a2e"
PLOT_CONFIG = {"displaylogo": False, "responsive": True}
SECTIONS = (
    ("headline", "headline_group", "Dependence by treatment duration: the headline pair", False),
    ("by_duration_band", "duration_band", "Dependence by duration band", False),
    ("dose_response", None, "Dose-response odds ratios (bands model and trend)", True),
)
GROUP_LABELS = {"gt_4_weeks": "> 4 weeks", "le_4_weeks": "<= 4 weeks", "all": "all durations"}


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def pct(value: Any) -> str:
    return "--" if _missing(value) else f"{float(value) * 100:.1f}%"


def ratio(value: Any) -> str:
    return "--" if _missing(value) else f"{float(value):.2f}"


def _cell_label(row: pd.Series) -> str:
    """A cell's label, HTML-escaped (plotly renders tick text as HTML; levels come from the packages)."""
    level = GROUP_LABELS.get(str(row["level"]), str(row["level"]))
    if row["analysis"] == "dose_response":
        return esc(f"{row['variable']}: {level}")
    if row["analysis"] == "by_duration_band":
        return esc(f"{level} days")
    return esc(level)


def forest_figure(sites: pd.DataFrame, pooled: pd.DataFrame, title: str, is_ratio: bool, site_order: list[str]) -> go.Figure:
    """Forest plot: one block per cell (sites, then the pooled diamond), top to bottom."""
    fig = go.Figure()
    fmt = ratio if is_ratio else pct
    y, tick_text, tick_values = 0.0, [], []
    site_x, site_y, site_low, site_high, site_text, site_size = [], [], [], [], [], []
    for _, cell in pooled.iterrows():
        match = sites[(sites["analysis"] == cell["analysis"]) & (sites["variable"] == cell["variable"])
                      & (sites["level"] == cell["level"]) & (sites["estimator"] == cell["estimator"])]
        weights = {}
        reference = "" if _missing(cell["reference"]) else str(cell["reference"])
        match = match.assign(theta=match["theta"].where(match["reference"].fillna("").astype(str) == reference))
        used = match[match["theta"].notna()]
        if len(used) >= 2:
            fit = meta.random_effects(used["theta"].to_numpy(), used["se"].to_numpy())
            weights = dict(zip(used["site"], fit["weights"]))
        for site in site_order:
            row = match[match["site"] == site]
            tick_values.append(-y)
            if len(row) and not _missing(row.iloc[0]["estimate"]) and not _missing(row.iloc[0]["theta"]):
                r = row.iloc[0]
                site_x.append(r["estimate"])
                site_y.append(-y)
                site_low.append(r["estimate"] - r["ci_low"])
                site_high.append(r["ci_high"] - r["estimate"])
                site_size.append(6 + 14 * math.sqrt(weights.get(site, 0.0)))
                site_text.append(f"{site}: {fmt(r['estimate'])} ({fmt(r['ci_low'])} to {fmt(r['ci_high'])}), "
                                 f"weight {weights.get(site, 0.0):.0%}")
                tick_text.append(f"{_cell_label(cell)} · {site}")
            else:
                why = "withheld" if len(row) and bool(row.iloc[0]["suppressed"]) else ("no such cell" if not len(row) else "no SE")
                tick_text.append(f"{_cell_label(cell)} · {site} (left out: {why})")
            y += 1
        tick_values.append(-y)
        tick_text.append(f"<b>{_cell_label(cell)} · pooled</b>")
        if not _missing(cell["estimate"]):
            lo, mid, hi = cell["ci_low"], cell["estimate"], cell["ci_high"]
            fig.add_trace(go.Scatter(
                x=[lo, mid, hi, mid, lo], y=[-y, -y + 0.3, -y, -y - 0.3, -y], fill="toself", mode="lines",
                line={"color": POOLED_COLOUR}, fillcolor=POOLED_COLOUR, showlegend=False, hoverinfo="text",
                text=(f"pooled: {fmt(mid)} (HKSJ {fmt(lo)} to {fmt(hi)}); prediction {fmt(cell['pi_low'])} to "
                      f"{fmt(cell['pi_high'])}; tau^2 {cell['tau2']:.4f}, I^2 {cell['i2']:.0%}; "
                      f"{int(cell['sites_pooled'])} sites"),
            ))
            if not _missing(cell["pi_low"]):
                fig.add_trace(go.Scatter(x=[cell["pi_low"], cell["pi_high"]], y=[-y - 0.45, -y - 0.45], mode="lines",
                                         line={"color": POOLED_COLOUR, "width": 2}, showlegend=False, hoverinfo="skip"))
        y += 1.6
    fig.add_trace(go.Scatter(
        x=site_x, y=site_y, mode="markers", name="site (95% CI)", marker={"color": SITE_COLOUR, "size": site_size, "symbol": "square"},
        error_x={"type": "data", "symmetric": False, "array": site_high, "arrayminus": site_low, "color": SITE_COLOUR},
        hoverinfo="text", text=site_text,
    ))
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="pooled (diamond: HKSJ CI; bar: prediction interval)",
                             marker={"color": POOLED_COLOUR, "symbol": "diamond", "size": 12}))
    if is_ratio:
        fig.add_vline(x=1.0, line={"color": "#888", "dash": "dot"})
    fig.update_layout(
        title={"text": esc(title), "x": 0.0, "xanchor": "left"},
        height=max(260, int(26 * (y + 2))), margin={"l": 260, "r": 30, "t": 60, "b": 50},
        plot_bgcolor="white", legend={"orientation": "h", "y": -0.08 if y > 20 else -0.2},
        yaxis={"tickvals": tick_values, "ticktext": tick_text, "showgrid": False, "zeroline": False},
        xaxis={"type": "log" if is_ratio else "linear", "title": "odds ratio (log scale)" if is_ratio else "proportion dependent",
               "tickformat": None if is_ratio else ".0%", "gridcolor": "#eee"},
    )
    return fig


def _table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in row) + "</tr>" for row in frame.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pooled_table(pooled: pd.DataFrame) -> str:
    rows = []
    for _, cell in pooled.iterrows():
        fmt = ratio if cell["scale"] == "log_odds_ratio" else pct
        rows.append({
            "analysis": cell["analysis"], "variable": cell["variable"], "level": cell["level"],
            "estimator": cell["estimator"], "estimate": fmt(cell["estimate"]),
            "95% CI (HKSJ)": f"{fmt(cell['ci_low'])} to {fmt(cell['ci_high'])}" if not _missing(cell["estimate"]) else "--",
            "prediction interval": f"{fmt(cell['pi_low'])} to {fmt(cell['pi_high'])}" if not _missing(cell["pi_low"]) else "--",
            "tau^2": "--" if _missing(cell["tau2"]) else f"{cell['tau2']:.4f}",
            "I^2": "--" if _missing(cell["i2"]) else f"{cell['i2']:.0%}",
            "sites pooled": int(cell["sites_pooled"]),
            "left out": cell["sites_left_out"] or "",
        })
    return _table(pd.DataFrame(rows))


def headline_sentence(pooled: pd.DataFrame, group: str) -> str:
    match = pooled[(pooled["analysis"] == "headline") & (pooled["level"] == group) & (pooled["estimator"] == "primary")]
    if not len(match) or _missing(match.iloc[0]["estimate"]):
        return f"{GROUP_LABELS[group]}: not pooled (see the notes)."
    cell = match.iloc[0]
    pi = (f"; prediction interval for a new site {pct(cell['pi_low'])} to {pct(cell['pi_high'])}"
          if not _missing(cell["pi_low"]) else "")
    return (f"Treated {GROUP_LABELS[group]}: <b>{pct(cell['estimate'])}</b> developed dependence (95% CI "
            f"{pct(cell['ci_low'])} to {pct(cell['ci_high'])}, {int(cell['sites_pooled'])} sites{pi}; "
            f"tau<sup>2</sup> = {cell['tau2']:.4f}, I<sup>2</sup> = {cell['i2']:.0%}).")


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.6rem} h2{font-size:1.25rem;margin-top:2.2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85rem;margin:.6rem 0} td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left}
th{background:#f4f4f4} .lead{font-size:1.05rem} .muted{color:#666;font-size:.9rem}
@media print{.plotly-graph-div{page-break-inside:avoid}}
"""


def build_pooled_report(out_dir: Path, packages: list, pooled: pd.DataFrame, notes: pd.DataFrame,
                        headline: dict, method: str) -> Path:
    """Write ``out_dir/index.html`` and ``out_dir/plotly.min.js``."""
    site_order = [p.name for p in packages]
    sites = pd.concat([p.pooling.assign(site=p.name) for p in packages], ignore_index=True)
    parts = [
        f"<h1>Pooled result of {len(packages)} sites</h1>",
        "<p class='lead'>" + "<br>".join(headline_sentence(pooled, g) for g in ("gt_4_weeks", "le_4_weeks")) + "</p>",
        "<p class='muted'>Each site ran the same analysis on its own data and released only disclosure-controlled "
        f"aggregates. Estimates are pooled by random-effects meta-analysis on the logit scale (odds ratios on the "
        f"log scale), tau<sup>2</sup> by {meta.METHOD_LABELS[method]}, 95% intervals by Hartung-Knapp-Sidik-Jonkman; "
        "the prediction interval is where a new site's estimate would be expected to fall (t with k-2 degrees of "
        "freedom; it needs 3 sites). A site whose cell was withheld is left out of that cell, never imputed.</p>",
        "<h2>Sites</h2>",
        _table(pd.DataFrame([{"site": p.name, "package made": p.manifest.get("created_at"),
                              "run": p.manifest.get("run_created_at"),
                              "settings hash": str(p.manifest["settings_hash"])[:12]} for p in packages])),
    ]
    primary = pooled[pooled["estimator"] == "primary"]
    for number, (analysis, variable, title, is_ratio) in enumerate(SECTIONS):
        cells = primary[primary["analysis"] == analysis]
        if variable:
            cells = cells[cells["variable"] == variable]
        parts.append(f"<h2>{esc(title)}</h2>")
        if cells.empty:
            parts.append("<p>No cell of this analysis was published by the sites.</p>")
            continue
        fig = forest_figure(sites, cells, title + " (primary estimator)", is_ratio, site_order)
        parts.append(fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"forest-{number}", config=PLOT_CONFIG))
    parts += ["<h2>Every pooled cell</h2>", _pooled_table(pooled)]
    parts.append("<h2>Notes</h2>")
    if notes.empty:
        parts.append("<p>No site was left out of any cell.</p>")
    else:
        shown = notes.assign(cell=notes["analysis"] + " / " + notes["variable"] + " / " + notes["level"] + " / " + notes["estimator"])
        parts.append(_table(shown[["site", "cell", "note"]]))
    parts.append("<p class='muted'>Exports: <a href='exports/headline.json'>headline.json</a>, "
                 "<a href='exports/pooled_estimates.csv'>pooled_estimates.csv</a>, "
                 "<a href='exports/summarised_result.csv'>summarised_result.csv</a>, "
                 "<a href='exports/settings.csv'>settings.csv</a>, <a href='exports/notes.csv'>notes.csv</a>.</p>")
    page = ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Pooled result</title>"
            f"<style>{STYLE}</style><script src='plotly.min.js'></script></head><body>"
            + "\n".join(parts) + "</body></html>\n")
    index = Path(out_dir) / "index.html"
    index.write_text(page, encoding="utf-8")
    (Path(out_dir) / "plotly.min.js").write_text(plotly.offline.get_plotlyjs(), encoding="utf-8")
    return index
