"""Results that dashboards can trust (issue 15).

- ``contract``: the omopgenerics summarised_result contract (13 columns,
  estimate names and types, the data dictionary generated from it);
- ``convert``: published (disclosure-controlled) estimates and attrition ->
  summarised_result rows and the settings table;
- ``export``: writes them into ``reports/exports/``;
- ``store``: the results store ``results/results.duckdb``, one entry per run.

The publish stage calls ``write_exports`` while building reports/ and
``append_to_store`` once the new reports/ is in place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.config import PROJECT_ROOT, Config

DEFAULT_RESULTS_DIR = PROJECT_ROOT / "results"


def results_dir_for(reports_dir: Path) -> Path:
    """The store beside reports/: ``<project>/results`` for the default reports/, ``<x>/results`` for ``<x>/reports``."""
    return Path(reports_dir).resolve().parent / "results"


def write_exports(published, config: Config, manifest: dict[str, Any] | None, exports_dir: Path,
                  con=None) -> list[Path]:
    """summarised_result.csv/.parquet, settings.csv and their dictionary (``con``: the warehouse, for the
    extract's file names and hashes in ``audit_load``)."""
    from pipeline.results import export

    return export.write(published, config, manifest, exports_dir, con)


def append_to_store(exports_dir: Path, results_dir: Path) -> dict:
    from pipeline.results import store

    try:
        return store.append_exports(exports_dir, results_dir)
    except store.StoreError as error:
        raise store.StoreError(f"{error} (the reports are published; append them later with "
                               f"`python -m pipeline.results append {exports_dir} --results {results_dir}`)") from None
