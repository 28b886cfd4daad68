"""publish stage: ``reports/`` -- the offline report, the dashboard exports, the run manifest.

Everything published is read from the warehouse and passed through
``pipeline.privacy.disclosure`` once (``tables.collect``); the exports and the
report only ever see the suppressed tables. The new set is built beside
``reports/`` and swapped in whole (``atomic``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import duckdb

from pipeline import results
from pipeline.config import Config
from pipeline.publish.atomic import atomic_reports
from pipeline.publish.exports import write_exports
from pipeline.publish.figures import write_static_figures
from pipeline.publish.report import build_report, write_manifest
from pipeline.publish.tables import collect
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

    ``manifest``: input files and sha256, row counts, package versions, time
    (see ``pipeline.publish.manifest.collect_manifest``). ``estimate_result``:
    the estimate stage's return value; its headline is used only when the
    ``estimates`` table has no headline rows. ``results_dir``: the results store
    the run is appended to once reports/ is in place (default: ``results/``
    beside ``reports_dir``; see ``pipeline.results``).
    """
    reports_dir = Path(reports_dir)
    published = collect(con, config, estimate_result)
    with atomic_reports(reports_dir, new_id()) as build:
        write_exports(published, config, build / "exports")
        results.write_exports(published, config, manifest, build / "exports", con)
        _, figures = build_report(published, config, manifest, build, notes=published.notes)
        write_manifest(manifest, config, build / "manifest.json")
        write_static_figures(figures, build / "figures")
    stored = results.append_to_store(reports_dir / "exports", results_dir or results.results_dir_for(reports_dir))
    log.info("published %s; results store: run %s %s", reports_dir, stored["run_id"],
             "appended" if stored["appended"] else "already stored")
    return reports_dir / "index.html"
