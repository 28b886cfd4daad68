"""The report rendered from a real pipeline run speaks in words, not in internal names.

One small demo run (CLI, as a user runs it) feeds these tests: the estimates
table it writes is the source of the internal names (analysis ids, variables,
population qualifiers, levels) that must never reach the page raw. Setting keys
inside <code> are literal on purpose (they are how a reader changes a setting)
and are the one exception.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import duckdb
import pytest

from pipeline.config import load_config
from pipeline.publish import labels
from pipeline.publish.report import build_report
from pipeline.publish.tables import collect
from test_publish_fixtures import real_run as real_run_paths


@pytest.fixture(scope="module")
def real_run():
    """The session's real pipeline run (test_publish_fixtures.real_run: a demo extract through `pipeline run`)."""
    run = real_run_paths()
    con = duckdb.connect(str(run["warehouse"]), read_only=True)
    estimates = con.execute("select analysis, population, variable, level, method from estimates").df()
    config = load_config()
    published = collect(con, config, None)
    _, figures = build_report(published, config, {"demo": True}, run["root"] / "rebuilt")
    con.close()
    yield {"html": (run["reports"] / "index.html").read_text(encoding="utf-8"), "estimates": estimates,
           "figures": figures, "published": published, "config": config}


class _VisibleText(HTMLParser):
    """Text a reader sees: no script, style or <code>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "code"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style", "code") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def _figure_strings(value, key: str = "") -> list[str]:
    """Every string a chart can show: titles, tick labels, trace names, point text, hover text, annotations."""
    if isinstance(value, dict):
        return [s for k, v in value.items() if k not in ("type", "mode", "color", "fillcolor", "shape", "dash",
                                                         "family", "textposition", "symbol", "legendgroup",
                                                         "xref", "yref", "xanchor", "yanchor", "hoverinfo")
                for s in _figure_strings(v, k)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _figure_strings(v, key)]
    return [value] if isinstance(value, str) else []


def _internal_tokens(estimates) -> set[str]:
    tokens = set(estimates["analysis"].astype(str))
    for variable in estimates["variable"].dropna().astype(str):
        tokens.update(part for part in variable.split("|") if part)
    tokens.update(level for level in estimates["level"].dropna().astype(str))
    return {t for t in tokens if re.fullmatch(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+", t)}


def test_the_display_name_table_covers_every_name_of_a_real_run(real_run):
    rows = real_run["estimates"][["analysis", "population", "variable", "level"]].itertuples(index=False)
    assert labels.Names().missing(rows) == []


def test_no_internal_identifier_in_the_visible_text_or_the_charts(real_run):
    tokens = _internal_tokens(real_run["estimates"])
    assert {"by_stratum_overall", "rx_misuse_signal", "dep_icd", "gt_4_weeks"} <= tokens  # the check has teeth
    parser = _VisibleText()
    parser.feed(real_run["html"])
    visible = " ".join(parser.parts)
    charts = " ".join(s for fig in real_run["figures"].values() for s in _figure_strings(fig.to_plotly_json()))
    for where, text in (("page text", visible), ("chart text", charts)):
        leaked = sorted(t for t in tokens if re.search(rf"(?<![\w.]){re.escape(t)}(?![\w])", text))
        assert not leaked, f"raw internal names in the {where}: {leaked}"


def test_a_missing_label_is_humanised_and_reported():
    names = labels.Names()
    assert names.variable("brand_new_variable", "gt_split") == "brand new variable (treated more than 4 weeks)"
    assert names.level("sex", "not_recorded") == "not recorded"
    assert names.missing([("brand_new", "all", "sex", "F")]) == ["brand_new"]


def test_labels_follow_the_headline_split_setting(real_run, tmp_path):
    """headline_split_days = 30: every label of the split says 30 days, none says 4 weeks (the
    Marriott & Tyrer anchor keeps its own "4 weeks or longer": that is the paper's population)."""
    config = real_run["config"].replace(estimate={"headline_split_days": 30})
    index, figures = build_report(real_run["published"], config, {}, tmp_path)
    parser = _VisibleText()
    parser.feed(index.read_text(encoding="utf-8"))
    visible = " ".join(parser.parts)
    charts = " ".join(s for fig in figures.values() for s in _figure_strings(fig.to_plotly_json()))
    for text in (visible, charts):
        assert "more than 30 days" in text or "up to 30 days" in text
        assert "more than 4 weeks" not in text and "up to 4 weeks" not in text
    assert "Treated more than 30 days" in visible
    assert "4 weeks or longer" in visible  # the anchor's own figure, not a setting


def test_tolerance_ratio_is_never_a_percentage(real_run):
    figure = real_run["figures"].get("tolerance")
    assert figure is not None
    text = " ".join(_figure_strings(figure.to_plotly_json()))
    assert "dose increase" in text
    assert "100.0%" not in text  # a median ratio of 1 drawn as a share
    assert "not published of" not in real_run["html"]
    assert "Median dose-escalation ratio" in real_run["html"]


def test_dose_response_legend_and_ticks(real_run):
    figure = real_run["figures"]["dose_response"]
    names = [trace.name for trace in figure.data]
    assert len(names) == len(set(names)), names
    colours = {trace.name: trace.marker.color for trace in figure.data}
    assert all(colour != "#E69F00" for name, colour in colours.items() if "complete case" not in name)
    ticks = [float(t) for t in figure.layout.xaxis.tickvals]
    assert 1.0 in ticks and all(t in labels_ticks() for t in ticks)
    assert all(trace.cliponaxis is False for trace in figure.data)


def labels_ticks() -> list[float]:
    from pipeline.publish.report import LOG_TICKS

    return [float(t) for t in LOG_TICKS]


def test_titles_compare_within_one_population(real_run):
    components = real_run["figures"]["components"].layout.title.text
    assert "Most often met" in components and "4 weeks vs" not in components
    withdrawal = real_run["figures"]["withdrawal_by_ending"].layout.title.text
    assert withdrawal.startswith("Withdrawal among people who became dependent")
    assert "known outcome" not in withdrawal


def test_sensitivity_rows_in_numeric_order_and_anchor_flags_in_words(real_run):
    html = real_run["html"]
    start = html.index("id='sensitivity'")
    section = html[start:html.index("</section>", start)]
    window = re.findall(r"Outcome window after treatment ends \(days\) \(treated more than 4 weeks\)</td><td>(\d+)</td>", section)
    numbers = [int(w) for w in window]
    assert numbers and numbers == sorted(numbers), numbers
    cells = re.findall(r"<td>published figure inside our interval</td>", section)
    assert cells, "anchor flag rows missing"
    flags = re.findall(r"<td>(yes|no|[\d.]+%)</td><td></td><td></td><td></td><td>published figure inside", section)
    assert flags and set(flags) <= {"yes", "no"}, flags


def test_the_report_does_not_link_to_data_docs(real_run):
    html = real_run["html"]
    assert not re.search(r"href=['\"][^'\"]*(data_docs|quality-internal|great_expectations)", html, re.IGNORECASE)
