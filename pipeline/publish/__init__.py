"""publish stage: ``reports/`` -- the offline report, the dashboard exports, the run manifest.

Everything published is read from the warehouse and passed through
``pipeline.privacy.disclosure`` once (``tables.collect``); the exports and the
report only ever see the suppressed, rounded tables. The new set is built beside
``reports/``, read whole by the one output checker (``checker``), and swapped in
only when it passes (``atomic``): a refused or failed publish leaves ``reports/``
as it was.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import duckdb

from pipeline import results
from pipeline.config import Config
from pipeline.privacy.disclosure import min_cell_count_of, rounding_base_of
from pipeline.publish.atomic import atomic_reports
from pipeline.publish.checker import require_clean
from pipeline.publish.exports import write_exports, write_quality
from pipeline.publish.figures import write_static_figures
from pipeline.publish.report import build_report, write_manifest
from pipeline.publish.tables import collect, release_manifest
from pipeline.warehouse import new_id

log = logging.getLogger(__name__)


def run(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    reports_dir: Path,
    manifest: dict[str, Any],
    estimate_result: dict[str, Any] | None = None,
    results_dir: Path | None = None,
) -> Path:
    """Build ``reports_dir`` anew (index.html, exports/, figures/, manifest.json); return index.html's path.

    ``manifest``: the live run manifest (``pipeline.manifest.build_manifest``: input
    files and sha256, row counts, package versions, ``created_at``). ``estimate_result``:
    the estimate stage's return value; its headline is used only when the
    ``estimates`` table has no headline rows. ``results_dir``: the results store
    the run is appended to once reports/ is in place (default: ``results/``
    beside ``reports_dir``; see ``pipeline.results``).
    """
    reports_dir = Path(reports_dir)
    k, b = min_cell_count_of(config), rounding_base_of(config)
    published = collect(con, config, estimate_result)
    manifest = release_manifest(manifest, k, b)
    with atomic_reports(reports_dir, new_id(), check=lambda build: require_clean(build, k, b)) as build:
        _, figures = build_report(published, config, manifest, build, notes=published.notes)
        # Headless Chromium renders the static copies (seconds, in its own process) while
        # this thread writes the exports; both are in place before the checker reads the build.
        # An error there is raised here, as if the figures had been written on this thread.
        failed: list[BaseException] = []

        def render() -> None:
            try:
                write_static_figures(figures, build / "figures")
            except BaseException as error:  # noqa: BLE001 - re-raised on the publishing thread below
                failed.append(error)

        static = threading.Thread(target=render, name="static-figures", daemon=True)
        static.start()
        try:
            write_exports(published, config, build / "exports")
            write_quality(published, build / "quality")
            results.write_exports(published, config, manifest, build / "exports", con)
            write_manifest(manifest, config, build / "manifest.json")
        finally:
            static.join()
        if failed:
            raise failed[0]
    stored = results.append_to_store(reports_dir / "exports", results_dir or results.results_dir_for(reports_dir))
    log.info("published %s; results store: run %s %s", reports_dir, stored["run_id"],
             "appended" if stored["appended"] else "already stored")
    return reports_dir / "index.html"
