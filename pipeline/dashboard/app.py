"""``make serve``: a Dash dashboard over the results store (``results/results.duckdb``).

It reads only the store (published, disclosure-controlled summarised results;
no person-level row) and works offline: Dash serves its own scripts
(``serve_locally``), no external stylesheet or font is requested.

Choose a run (source and time), drug, estimand, estimator, stratum, year and
region; see the headline, the duration bands, strata, trends by calendar year
and a bar chart by region; compare two runs side by side; download the
filtered rows as a summarised_result CSV.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from dash import Dash, Input, Output, State, dcc, html

from pipeline.dashboard import data
from pipeline.dashboard.data import ALL, HEADLINE_GROUPS, group_label

COLOURS = {"primary": "#1f5f8b", "complete_case": "#8c8c8c", "exposure": "#b5651d", "compare": "#5a9e6f"}
STRATA = ("sex", "age_band", "indication", "dose_band", "misuse", "rx_misuse_signal")
_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #222; background: #f6f7f9; }
header { background: #1f5f8b; color: white; padding: 12px 24px; }
header h1 { margin: 0; font-size: 1.3rem; } header p { margin: 4px 0 0; font-size: .85rem; opacity: .9; }
main { padding: 12px 24px; }
.filters { display: grid; grid-template-columns: repeat(4, minmax(180px, 1fr)); gap: 10px 18px; background: white;
           padding: 12px; border-radius: 6px; }
.filters label { font-size: .8rem; font-weight: 600; display: block; margin-bottom: 2px; }
.cards { display: flex; gap: 12px; margin: 12px 0; flex-wrap: wrap; }
.card { background: white; border-radius: 6px; padding: 10px 16px; min-width: 220px; }
.card .value { font-size: 1.8rem; font-weight: 700; } .card .ci, .card .n { font-size: .85rem; color: #555; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
.panel { background: white; border-radius: 6px; padding: 8px; }
table.compare { border-collapse: collapse; width: 100%; font-size: .9rem; }
table.compare th, table.compare td { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: left; }
.note { font-size: .8rem; color: #555; }
"""


def percent(value: float) -> str:
    """A proportion as the dashboard shows it.

    >>> percent(0.38302), percent(float("nan"))
    ('38.3%', 'suppressed')
    """
    return "suppressed" if value is None or math.isnan(value) else f"{100 * value:.1f}%"


def interval(low: float, high: float) -> str:
    """A confidence interval as the dashboard shows it.

    >>> interval(0.3723, 0.3938)
    '95% CI 37.2% to 39.4%'
    """
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return "95% CI not published"
    return f"95% CI {100 * low:.1f}% to {100 * high:.1f}%"


def count(value: float) -> str:
    """A count as the dashboard shows it.

    >>> count(10897.0), count(float("nan"))
    ('10,897', 'suppressed')
    """
    return "suppressed" if value is None or math.isnan(value) else f"{int(value):,}"


def _dropdown(id_: str, label: str, options: list, value, clearable: bool = False) -> html.Div:
    return html.Div([html.Label(label, htmlFor=id_), dcc.Dropdown(id=id_, options=options, value=value,
                                                                 clearable=clearable, searchable=False)])


def _figure(title: str, y_title: str = "share (%)") -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title={"text": title, "font": {"size": 14}}, margin={"l": 50, "r": 20, "t": 40, "b": 60},
                      height=340, template="plotly_white", yaxis_title=y_title,
                      legend={"orientation": "h", "y": -0.25})
    return fig


def _numbers(values) -> list:
    """Values as plain floats, None for missing.

    >>> _numbers(pd.Series([0.5, float("nan")]))
    [0.5, None]
    """
    return [None if v is None or math.isnan(v) else float(v) for v in pd.to_numeric(pd.Series(values), errors="coerce")]


def _bars(fig: go.Figure, frame: pd.DataFrame, name: str, colour: str, labels: dict | None = None) -> None:
    if frame.empty:
        return
    y = frame["proportion"] * 100
    # plain lists: the browser (and the test reading it) sees numbers, not base64 typed arrays
    fig.add_bar(x=[(labels or {}).get(level, level) for level in frame["level"]], y=_numbers(y), name=name,
                marker_color=colour, customdata=_numbers(frame["proportion"]),
                error_y={"type": "data", "symmetric": False, "array": _numbers(frame["upper"] * 100 - y),
                         "arrayminus": _numbers(y - frame["lower"] * 100)},
                hovertemplate="%{x}: %{y:.1f}%<extra>" + name + "</extra>")


def _choices(view: data.StoreView, run_id: str, drug, estimand, year, region) -> tuple:
    """Options and values of the filters that depend on the run (a value the run lacks falls back)."""
    drugs = data.options(view, "group_level", run_id)
    estimands = data.options(view, "estimand", run_id)
    years = data.stratum_levels(view, run_id, "calendar_year")
    regions = sorted(data.stratum_levels(view, run_id, "region"), key=data.level_key)
    return ([{"label": d, "value": d} for d in drugs], drug if drug in drugs else (drugs[0] if drugs else None),
            [{"label": e, "value": e} for e in estimands],
            estimand if estimand in estimands else (estimands[0] if estimands else None),
            [{"label": "all years", "value": ALL}] + [{"label": y, "value": y} for y in years],
            year if year in years else ALL,
            [{"label": "all regions", "value": ALL}] + [{"label": r, "value": r} for r in regions],
            region if region in regions else ALL)


def create_app(results_dir: Path | str) -> Dash:
    """The Dash app over the store in ``results_dir`` (read on each change of the store file)."""
    results_dir = Path(results_dir)
    view = data.load(results_dir)  # fails with one clear line when there is no store
    runs = view.runs
    latest = runs["run_id"].iloc[-1]
    previous = runs["run_id"].iloc[-2] if len(runs) > 1 else latest
    run_options = [{"label": label, "value": run_id} for run_id, label in zip(runs["run_id"], runs["label"])]

    initial = _choices(view, latest, None, None, ALL, ALL)
    app = Dash(__name__, serve_locally=True, title="benzo-outcomes results", assets_folder=str(Path(__file__).parent / "assets"),
               update_title=None)
    app.index_string = app.index_string.replace("{%css%}", "{%css%}<style>" + _STYLE + "</style>")
    app.layout = html.Div([
        html.Header([html.H1("benzo-outcomes: physical dependence by treatment duration"),
                     html.P(f"Results store {data.store.store_path(results_dir)}: {len(runs)} run(s). Published, "
                            "disclosure-controlled results only.", id="store-note")]),
        html.Main([
            html.Div(className="filters", children=[
                _dropdown("run", "Run (source and time)", run_options, latest),
                _dropdown("drug", "Drug", initial[0], initial[1]),
                _dropdown("estimand", "Estimand", initial[2], initial[3]),
                _dropdown("estimator", "Estimator", [
                    {"label": "primary (weighted for ascertainment)", "value": "primary"},
                    {"label": "complete case (assessed persons only)", "value": "complete_case"}], "primary"),
                _dropdown("stratum", "Stratum (among those treated longer than the headline split)",
                          [{"label": s, "value": s} for s in STRATA], "sex"),
                _dropdown("year", "Calendar year of treatment start", initial[4], ALL),
                _dropdown("region", "Region", initial[6], ALL),
                _dropdown("compare-run", "Compare with run", run_options, previous),
            ]),
            html.Div(id="headline", className="cards"),
            html.Div(id="selection", className="cards"),
            html.Div(className="grid", children=[
                html.Div(dcc.Graph(id="bands-graph", config={"displaylogo": False}), className="panel"),
                html.Div(dcc.Graph(id="stratum-graph", config={"displaylogo": False}), className="panel"),
                html.Div(dcc.Graph(id="trend-graph", config={"displaylogo": False}), className="panel"),
                html.Div(dcc.Graph(id="region-graph", config={"displaylogo": False}), className="panel"),
            ]),
            html.H2("Two runs side by side", style={"fontSize": "1.1rem"}),
            html.Div(className="grid", children=[
                html.Div(id="compare-table", className="panel"),
                html.Div(dcc.Graph(id="compare-graph", config={"displaylogo": False}), className="panel"),
            ]),
            html.P([html.Button("Download filtered rows (summarised_result CSV)", id="download-button"),
                    html.Span(id="download-note", className="note")]),
            dcc.Download(id="download"),
            html.P("Primary: inverse probability of ascertainment weighting; complete case: persons whose outcome "
                   "was assessed. Estimand episode_window: dependence from treatment start to its end + the outcome "
                   "window. Calendar years are those of the (possibly date-shifted) treatment start. Counts below "
                   "the minimum cell size are withheld ('suppressed').", className="note"),
        ]),
    ])

    @app.callback(Output("drug", "options"), Output("drug", "value"), Output("estimand", "options"),
                  Output("estimand", "value"), Output("year", "options"), Output("year", "value"),
                  Output("region", "options"), Output("region", "value"),
                  Input("run", "value"), State("drug", "value"), State("estimand", "value"),
                  State("year", "value"), State("region", "value"))
    def _run_options(run_id, drug, estimand, year, region):
        return _choices(data.load(results_dir), run_id, drug, estimand, year, region)

    @app.callback(Output("headline", "children"), Output("selection", "children"), Output("bands-graph", "figure"),
                  Output("stratum-graph", "figure"), Output("trend-graph", "figure"),
                  Output("region-graph", "figure"), Output("compare-table", "children"),
                  Output("compare-graph", "figure"),
                  Input("run", "value"), Input("drug", "value"), Input("estimand", "value"),
                  Input("estimator", "value"), Input("stratum", "value"), Input("year", "value"),
                  Input("region", "value"), Input("compare-run", "value"))
    def _update(run_id, drug, estimand, estimator, stratum, year, region, compare_run):
        current = data.load(results_dir)
        common = {"estimator": estimator, "estimand": estimand, "drug": drug}
        names = data.names_of(current, run_id)
        longer = f"treated {names.longer}"

        def pick(run, result_type, by, strata, **extra):
            return data.wide(data.select(current, run, result_type, strata=strata, **{**common, **extra}), by)

        headline = pick(run_id, "headline", "headline_group", {"headline_group": None}).set_index("level")
        cards = []
        for group in HEADLINE_GROUPS:
            row = headline.loc[group] if group in headline.index else None
            value = row["proportion"] if row is not None else float("nan")
            cards.append(html.Div(className="card", id=f"headline-{group}", children=[
                html.Div(f"Dependence, treated {group_label(names, group)}"),
                html.Div(percent(value), className="value", id=f"headline-{group}-value"),
                html.Div(interval(row["lower"], row["upper"]) if row is not None else "", className="ci"),
                html.Div(f"n = {count(row['n']) if row is not None else 'none'}", className="n",
                         id=f"headline-{group}-n"),
            ]))

        selection = []
        for variable, chosen, result_type in (("calendar_year", year, "by_calendar_year"),
                                              ("region", region, "by_region")):
            if not chosen or chosen == ALL:
                continue
            exposure = pick(run_id, result_type, variable, {variable: chosen}, estimator="descriptive",
                            variable_name="treated_gt_split")
            dependence = pick(run_id, result_type, variable, {variable: chosen})
            share = exposure["proportion"].iloc[0] if len(exposure) else float("nan")
            dep = dependence["proportion"].iloc[0] if len(dependence) else float("nan")
            selection.append(html.Div(className="card", id=f"selected-{variable}", children=[
                html.Div(f"{variable.replace('_', ' ')} {chosen}"),
                html.Div(percent(share), className="value", id=f"selected-{variable}-exposure"),
                html.Div(f"of new users {longer}", className="ci"),
                html.Div(["dependence ", html.Span(percent(dep), id=f"selected-{variable}-dependence")], className="n"),
            ]))

        bands = _figure("Dependence by duration of the first treatment (days)")
        _bars(bands, pick(run_id, "by_duration_band", "duration_band", {"duration_band": None}),
              data.store_label(estimator), COLOURS.get(estimator, COLOURS["primary"]))

        strata = _figure(f"Dependence by {stratum} ({longer})")
        _bars(strata, pick(run_id, "by_stratum", stratum, {"headline_group": "gt_4_weeks", stratum: None}),
              data.store_label(estimator), COLOURS.get(estimator, COLOURS["primary"]))

        trend = _figure("Trends by calendar year of treatment start")
        exposure = pick(run_id, "by_calendar_year", "calendar_year", {"calendar_year": None}, estimator="descriptive",
                        variable_name="treated_gt_split")
        dependence = pick(run_id, "by_calendar_year", "calendar_year", {"calendar_year": None})
        for frame, name, colour in ((exposure, longer, COLOURS["exposure"]),
                                    (dependence, "dependence (all new users)", COLOURS["primary"])):
            if not frame.empty:
                trend.add_scatter(x=list(frame["level"]), y=_numbers(frame["proportion"] * 100), mode="lines+markers",
                                  name=name, line={"color": colour}, customdata=_numbers(frame["proportion"]),
                                  hovertemplate="%{x}: %{y:.1f}%<extra>" + name + "</extra>")
        if year and year != ALL:  # the chosen year's points drawn larger
            for trace in trend.data:
                trace.marker.size = [13 if x == year else 6 for x in trace.x]
        trend.update_xaxes(type="category", categoryorder="array",
                           categoryarray=sorted({x for t in trend.data for x in t.x}, key=data.level_key))

        regions = _figure("By region")
        exposure = pick(run_id, "by_region", "region", {"region": None}, estimator="descriptive",
                        variable_name="treated_gt_split")
        dependence = pick(run_id, "by_region", "region", {"region": None})
        _bars(regions, exposure, longer, COLOURS["exposure"])
        _bars(regions, dependence, "dependence (all new users)", COLOURS["primary"])
        if region and region != ALL:
            for trace in regions.data:
                trace.marker.opacity = [1.0 if x == region else 0.35 for x in trace.x]

        compare_rows, compare_fig = [], _figure("Dependence by duration band: two runs")
        runs_shown = [(run_id, "run-a"), (compare_run, "run-b")]
        tables = {}
        for run, key in runs_shown:
            head = pick(run, "headline", "headline_group", {"headline_group": None})
            band = pick(run, "by_duration_band", "duration_band", {"duration_band": None})
            tables[key] = pd.concat([head, band], ignore_index=True).set_index("level")
            _bars(compare_fig, band, current.run_label(run), COLOURS["primary"] if key == "run-a" else COLOURS["compare"])
        levels = list(dict.fromkeys([*tables["run-a"].index, *tables["run-b"].index]))
        header = html.Tr([html.Th("group")] + [html.Th(current.run_label(run)) for run, _ in runs_shown])
        for i, level in enumerate(levels):
            cells = [html.Td(group_label(names, level))]
            for run, key in runs_shown:
                table = tables[key]
                if level in table.index:
                    row = table.loc[level]
                    text = f"{percent(row['proportion'])} (n = {count(row['n'])})"
                else:
                    text = "not in this run"
                cells.append(html.Td(text, id=f"compare-{key}-{i}", **{"data-level": level}))
            compare_rows.append(html.Tr(cells))
        compare_table = html.Table([html.Thead(header), html.Tbody(compare_rows)], className="compare")
        return cards, selection, bands, strata, trend, regions, compare_table, compare_fig

    @app.callback(Output("download", "data"), Output("download-note", "children"),
                  Input("download-button", "n_clicks"),
                  State("run", "value"), State("compare-run", "value"), State("estimator", "value"),
                  State("estimand", "value"), State("drug", "value"), State("stratum", "value"),
                  State("year", "value"), State("region", "value"), prevent_initial_call=True)
    def _download(_, run_id, compare_run, estimator, estimand, drug, stratum, year, region):
        current = data.load(results_dir)
        run_ids = list(dict.fromkeys([run_id, compare_run]))
        rows = data.filtered_rows(current, run_ids, estimator, estimand, drug, stratum, year, region)
        return (dcc.send_data_frame(rows.to_csv, "summarised_result_filtered.csv", index=False),
                f" {len(rows):,} rows")

    return app
