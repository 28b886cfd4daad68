"""Static copies of the report's charts (PNG and SVG) in ``reports/figures/``, via kaleido.

Kaleido 1.x drives a Chrome/Chromium. Without one the figures are skipped with
a logged note: the HTML report never depends on them.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import plotly.graph_objects as go

log = logging.getLogger(__name__)

CHROME_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
# Seconds allowed for any one image; a hung browser must not hold up the run.
RENDER_TIMEOUT_SECONDS = 30
# Each image takes ~0.5-1 s in headless Chromium (more tabs do not help on a 2-CPU runner), so only
# the charts a slide or paper would reuse are exported; the report itself has them all.
STATIC_FIGURES = ("duration_bands", "cumulative_incidence", "dose_response", "withdrawal_by_ending")


def find_chrome() -> str | None:
    """The browser kaleido should drive: $BROWSER_PATH if set, else a system Chromium/Chrome."""
    configured = os.environ.get("BROWSER_PATH")
    if configured and Path(configured).exists():
        return configured
    for candidate in CHROME_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    return shutil.which("chromium") or shutil.which("google-chrome")


def write_static_figures(figures: dict[str, go.Figure], figures_dir: Path) -> list[Path]:
    """Write ``<name>.png`` and ``<name>.svg`` for the ``STATIC_FIGURES`` present; return what was written.

    Returns [] (and logs why) when there is no browser or kaleido fails.
    """
    figures = {name: figures[name] for name in STATIC_FIGURES if name in figures}
    chrome = find_chrome()
    if chrome is None:
        log.info("static figures skipped: no Chrome/Chromium found (set BROWSER_PATH); the HTML report is complete")
        return []
    if not figures:
        return []
    try:
        import kaleido
    except ImportError:
        log.info("static figures skipped: kaleido is not installed")
        return []
    for noisy in ("kaleido", "choreographer"):  # per-tab INFO lines would drown the pipeline's own log
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("BROWSER_PATH", chrome)  # read by choreographer when kaleido starts the browser
    figures_dir.mkdir(parents=True, exist_ok=True)
    jobs = []
    for name, figure in figures.items():
        for fmt in ("png", "svg"):
            jobs.append({"fig": figure, "path": str(figures_dir / f"{name}.{fmt}"),
                         "opts": {"format": fmt, "width": 1000, "height": max(420, int(figure.layout.height or 450)),
                                  "scale": 1}})
    started = time.monotonic()
    try:
        errors = kaleido.write_fig_from_object_sync(
            jobs, kopts={"mathjax": False, "timeout": RENDER_TIMEOUT_SECONDS}, cancel_on_error=False
        )
    except Exception as error:  # the report stands without them
        log.warning("static figures skipped: kaleido failed (%s)", error)
        return []
    for error in errors or ():
        log.warning("a static figure failed: %s", error)
    written = sorted(p for p in figures_dir.iterdir() if p.suffix in (".png", ".svg"))
    log.info("wrote %d static figures in %.1f s", len(written), time.monotonic() - started)
    return written
