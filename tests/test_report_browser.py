"""The report in a real, offline, headless Chromium: every chart drawn, no console or page errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_publish_fixtures import build_warehouse, sample_manifest

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install -y chromium)"),
]
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    import pipeline.publish as publish
    from pipeline.config import load_config
    from pipeline.warehouse import connect

    root = tmp_path_factory.mktemp("browser")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(publish, "write_static_figures", lambda figures, figures_dir: [])
        return publish.run(build_warehouse(connect(":memory:")), load_config(), root / "reports", sample_manifest())


def test_report_renders_offline_without_errors(report):
    from playwright import sync_api  # a test dependency: missing is a failure, not a skip
    problems: list[str] = []
    blocked: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.set_offline(True)

            def only_files(route):
                if route.request.url.startswith("file://"):
                    route.continue_()
                else:
                    blocked.append(route.request.url)
                    route.abort()

            context.route("**/*", only_files)
            page = context.new_page()
            page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
                    if msg.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.goto(report.as_uri(), wait_until="load")
            page.wait_for_function("typeof Plotly !== 'undefined'", timeout=15_000)
            figure_divs = page.locator(".plotly-graph-div").count()
            page.wait_for_function(
                "n => document.querySelectorAll('.js-plotly-plot').length === n", arg=figure_divs, timeout=15_000)
            # each drawn chart owns one or more .main-svg layers; count the charts that have any
            drawn = page.evaluate("""() => [...document.querySelectorAll('.plotly-graph-div')]
                .filter(div => div.classList.contains('js-plotly-plot') && div.querySelector('.main-svg')).length""")
            headline = page.locator("#headline-sentence").inner_text()
            page.screenshot(path=str(report.parent / "screenshot.png"), full_page=False)
            page.screenshot(path=str(report.parent / "screenshot-full.png"), full_page=True)
        finally:
            browser.close()
    assert figure_divs >= 10
    assert drawn == figure_divs, f"{figure_divs - drawn} of {figure_divs} charts not drawn"
    assert not problems, problems
    assert not blocked, f"the page tried the network: {blocked}"
    import json

    gt = json.loads((report.parent / "exports" / "headline.json").read_text())["headline"]["gt_4_weeks"]
    assert headline.startswith(f"Among {gt['n']:,} people")  # the published (rounded) count


def _open(playwright, report: Path, width: int, media: str):
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
    context = browser.new_context(viewport={"width": width, "height": 1000})
    context.set_offline(True)
    page = context.new_page()
    page.emulate_media(media=media)
    page.goto(report.as_uri(), wait_until="load")
    page.wait_for_function("typeof Plotly !== 'undefined' && document.querySelectorAll('.main-svg').length > 0",
                           timeout=15_000)
    return browser, page


def test_screen_page_is_compact_and_secondary_tables_are_collapsed(report):
    from playwright import sync_api  # a test dependency: missing is a failure, not a skip
    with sync_api.sync_playwright() as playwright:
        browser, page = _open(playwright, report, 1400, "screen")
        try:
            height = page.evaluate("document.documentElement.scrollHeight")
            closed = page.evaluate("document.querySelectorAll('details:not([open])').length")
            # a value label must not be cut off at the plot's edge
            clipped = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].filter(div =>
                div._fullData.some(t => t.mode && t.mode.includes('text') && t.cliponaxis !== false)).length""")
        finally:
            browser.close()
    assert closed >= 3
    assert clipped == 0
    # a real run's report (trends by year and region, five strata, estimand (b)); 22,700 px when issue 15 was filed
    assert height < 13_500, f"page is {height} px tall"


def test_print_layout_fits_the_page_without_interactive_chrome(report):
    from playwright import sync_api  # a test dependency: missing is a failure, not a skip
    with sync_api.sync_playwright() as playwright:
        # A4 portrait at 96 dpi is 794 px wide; the page is laid out for print as a printer would
        browser, page = _open(playwright, report, 794, "print")
        try:
            page.wait_for_timeout(500)
            state = page.evaluate("""() => ({
                page: document.documentElement.clientWidth,
                widest: Math.max(...[...document.querySelectorAll('.js-plotly-plot .main-svg')]
                                  .map(svg => svg.getBoundingClientRect().right)),
                nav: getComputedStyle(document.querySelector('nav')).display,
                modebars: [...document.querySelectorAll('.modebar')]
                          .filter(m => getComputedStyle(m).display !== 'none').length,
                hiddenTables: [...document.querySelectorAll('details table')]
                              .filter(t => t.getBoundingClientRect().height === 0).length,
                breaks: [...document.querySelectorAll('section')].slice(1)
                        .filter(s => getComputedStyle(s).breakBefore !== 'page').length,
            })""")
            pdf = page.pdf(format="A4")
        finally:
            browser.close()
    assert state["widest"] <= state["page"] + 1, state
    assert state["nav"] == "none" and state["modebars"] == 0, state
    assert state["hiddenTables"] == 0, state
    assert state["breaks"] == 0, state
    assert pdf.startswith(b"%PDF")
