"""The dashboard in a real, offline, headless Chromium, over a store built from two real runs.

``python -m pipeline.dashboard`` is started in a subprocess on a free port
against the store of ``test_results.build_two_runs`` (demo, then site_b);
the test clicks through the filters and checks what the page shows against
each run's exports (summarised_result.csv). Only 127.0.0.1 may be reached.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from pipeline.config import PROJECT_ROOT
from pipeline.dashboard.app import count, percent
from pipeline.results.contract import COLUMNS, parse_value
from pipeline.results.export import read_export
from test_report_browser import CHROMIUM, LAUNCH_ARGS
from test_results import two_runs

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return two_runs(tmp_path_factory)


@pytest.fixture(scope="module")
def server(runs):
    port = free_port()
    env = {**os.environ, "GX_ANALYTICS_ENABLED": "false"}
    process = subprocess.Popen([sys.executable, "-m", "pipeline.dashboard", "--port", str(port),
                                "--results", str(runs / "results")], cwd=PROJECT_ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the dashboard did not start:\n{process.stdout.read()[-3000:]}")
        time.sleep(0.3)
    yield url
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


def expected(runs: Path, name: str) -> pd.DataFrame:
    """The run's exported rows of estimand (a), the estimand the dashboard opens on."""
    rows, settings = read_export(runs / f"exports_{name}")
    rows = rows.merge(settings[["result_id", "result_type", "estimator", "estimand", "run_id"]], on="result_id")
    return rows[rows["estimand"] == "episode_window"]


def value(rows: pd.DataFrame, result_type: str, estimator: str, strata_name: str, strata_level: str,
          estimate_name: str, variable_name: str = "dependence"):
    match = rows[(rows["result_type"] == result_type) & (rows["estimator"] == estimator)
                 & (rows["strata_name"] == strata_name) & (rows["strata_level"] == strata_level)
                 & (rows["variable_name"] == variable_name) & (rows["estimate_name"] == estimate_name)]
    assert len(match) == 1, (result_type, estimator, strata_name, strata_level, estimate_name, len(match))
    parsed = parse_value(match["estimate_value"].iloc[0], match["estimate_type"].iloc[0])
    return float("nan") if parsed is None else parsed


def same(shown, exported: float) -> bool:
    """A plotted percentage against an exported proportion; a suppressed one is not plotted (None)."""
    if exported != exported:
        return shown is None
    return shown is not None and abs(shown - exported * 100) <= 1e-9


def eventually(check, what: str, seconds: float = 15.0) -> None:
    """Charts redraw a moment after the callback returns: poll until ``check()`` holds."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if check():
                return
            last = "values differ"
        except AssertionError as error:  # e.g. the chart still shows the previous selection's levels
            last = str(error).splitlines()[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"not shown within {seconds:.0f} s: {what} ({last})")
        time.sleep(0.2)


def choose(page, dropdown: str, option_text: str) -> None:
    page.click(f"#{dropdown}")
    page.get_by_role("option", name=option_text, exact=True).click()


def graph_data(page, graph_id: str) -> list[dict]:
    return page.evaluate("""id => [...document.getElementById(id).querySelector('.js-plotly-plot').data]
        .map(t => ({name: t.name, x: [...t.x], y: [...t.y].map(v => v === null ? null : Number(v))}))""", graph_id)


def wait_text(page, selector: str, text: str) -> None:
    page.wait_for_function("([s, t]) => document.querySelector(s) && document.querySelector(s).innerText === t",
                           arg=[selector, text], timeout=15_000)


def test_dashboard_shows_the_exported_figures_for_both_runs(runs, server, tmp_path):
    from playwright import sync_api  # a test dependency: missing is a failure, not a skip
    demo, site_b = expected(runs, "demo"), expected(runs, "site_b")
    demo_id, site_b_id = demo["run_id"].iloc[0], site_b["run_id"].iloc[0]
    problems: list[str] = []
    outside: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)

            def local_only(route):
                if route.request.url.startswith("http://127.0.0.1:"):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            context.route("**/*", local_only)
            page = context.new_page()
            page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
                    if msg.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.goto(server, wait_until="load")

            # The latest run (site_b) is shown first.
            for group in ("gt_4_weeks", "le_4_weeks"):
                wait_text(page, f"#headline-{group}-value",
                          percent(value(site_b, "headline", "primary", "headline_group", group, "proportion")))
                n = count(value(site_b, "headline", "primary", "headline_group", group, "denominator_count"))
                wait_text(page, f"#headline-{group}-n", f"n = {n}")

            # Another run, the complete-case estimator.
            choose(page, "run", next(o for o in page_run_labels(page) if demo_id in o))
            wait_text(page, "#headline-gt_4_weeks-value",
                      percent(value(demo, "headline", "primary", "headline_group", "gt_4_weeks", "proportion")))
            choose(page, "estimator", "complete case (assessed persons only)")
            wait_text(page, "#headline-gt_4_weeks-value",
                      percent(value(demo, "headline", "complete_case", "headline_group", "gt_4_weeks", "proportion")))
            choose(page, "estimator", "primary (weighted for ascertainment)")
            wait_text(page, "#headline-gt_4_weeks-value",
                      percent(value(demo, "headline", "primary", "headline_group", "gt_4_weeks", "proportion")))

            # Bands chart = the exported band proportions (in %).
            def bands_match() -> bool:
                bands = graph_data(page, "bands-graph")[0]
                return len(bands["x"]) == 6 and all(
                    same(shown, value(demo, "by_duration_band", "primary", "duration_band", level, "proportion"))
                    for level, shown in zip(bands["x"], bands["y"]))

            eventually(bands_match, "bands chart = exported primary band proportions")

            # Stratum: age band within > 4 weeks.
            choose(page, "stratum", "age_band")

            def strata_match() -> bool:
                strata = graph_data(page, "stratum-graph")[0]
                return len(strata["x"]) >= 3 and all(
                    same(shown, value(demo, "by_stratum", "primary", "headline_group &&& age_band",
                                      f"gt_4_weeks &&& {level}", "proportion"))
                    for level, shown in zip(strata["x"], strata["y"]))

            eventually(strata_match, "age band chart = exported by_stratum proportions")

            # Year: the selection card gives the exported share treated > 4 weeks and the dependence.
            choose(page, "year", "2015")
            share = value(demo, "by_calendar_year", "descriptive", "calendar_year", "2015", "proportion",
                          variable_name="treated_gt_split")
            wait_text(page, "#selected-calendar_year-exposure", percent(share))
            wait_text(page, "#selected-calendar_year-dependence",
                      percent(value(demo, "by_calendar_year", "primary", "calendar_year", "2015", "proportion")))

            def trend_match() -> bool:
                exposure = {t["name"]: t for t in graph_data(page, "trend-graph")}["treated more than 4 weeks"]
                return len(exposure["x"]) >= 10 and all(
                    same(shown, value(demo, "by_calendar_year", "descriptive", "calendar_year", year, "proportion",
                                      variable_name="treated_gt_split"))
                    for year, shown in zip(exposure["x"], exposure["y"]))

            eventually(trend_match, "trend of the share treated > 4 weeks = exports")

            # Region: the bar chart by region = the exports; the chosen region's card too.
            choose(page, "region", "North")
            wait_text(page, "#selected-region-dependence",
                      percent(value(demo, "by_region", "primary", "region", "North", "proportion")))

            def regions_match() -> bool:
                bars = {t["name"]: t for t in graph_data(page, "region-graph")}["dependence (all new users)"]
                return len(bars["x"]) >= 5 and all(
                    same(shown, value(demo, "by_region", "primary", "region", level, "proportion"))
                    for level, shown in zip(bars["x"], bars["y"]))

            eventually(regions_match, "bar chart by region = exported proportions")

            # Two runs side by side: demo (chosen) and site_b.
            choose(page, "compare-run", next(o for o in page_run_labels(page, "compare-run") if site_b_id in o))
            for key, rows in (("run-a", demo), ("run-b", site_b)):
                proportion = value(rows, "headline", "primary", "headline_group", "gt_4_weeks", "proportion")
                n = value(rows, "headline", "primary", "headline_group", "gt_4_weeks", "denominator_count")
                wait_text(page, f"#compare-{key}-0", f"{percent(proportion)} (n = {count(n)})")
            compared = graph_data(page, "compare-graph")
            assert len(compared) == 2 and demo_id in compared[0]["name"] and site_b_id in compared[1]["name"]

            page.screenshot(path=str(runs / "dashboard.png"), full_page=True)

            # Download of the filtered rows: a summarised_result of both runs, year 2015 and region North only.
            with page.expect_download() as download_info:
                page.click("#download-button")
            download = tmp_path / "filtered.csv"
            download_info.value.save_as(download)
        finally:
            browser.close()
    assert not problems, problems
    assert not outside, f"the dashboard tried the network: {outside}"
    filtered = pd.read_csv(download, dtype=str, keep_default_na=False)
    assert tuple(filtered.columns) == COLUMNS
    assert set(filtered["cdm_name"]) == {"demo", "site_b"}
    years = filtered[filtered["strata_name"].str.contains("calendar_year")]
    assert not years.empty and set(years["strata_level"].str.split(" &&& ").str[-1]) == {"2015"}
    regions = filtered[filtered["strata_name"].str.contains("region")]
    assert not regions.empty and set(regions["strata_level"].str.split(" &&& ").str[-1]) == {"North"}
    assert (filtered["strata_name"] == "duration_band").any()  # the rest of the results stay


def page_run_labels(page, dropdown: str = "run") -> list[str]:
    page.click(f"#{dropdown}")
    options = page.get_by_role("option")
    options.first.wait_for(timeout=10_000)
    labels = [options.nth(i).inner_text() for i in range(options.count())]
    page.keyboard.press("Escape")
    return labels


def test_serve_names_a_missing_store_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pipeline.dashboard", "--results", str(tmp_path / "none"),
                             "--port", str(free_port())], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "no results store" in result.stderr
