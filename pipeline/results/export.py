"""Write ``summarised_result.csv`` / ``.parquet`` and ``settings.csv`` into exports/ (their columns are in
exports/data_dictionary, generated with the other exports' by ``pipeline.publish.exports.data_dictionary``).

Called by the publish stage with the already suppressed ``Published`` tables.
Before anything is written the rows are checked once more: no count from 1
to k-1 (``pipeline.privacy.disclosure.is_small``), exactly the 13 columns.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import Config
from pipeline.errors import PrivacyError
from pipeline.results.contract import COLUMNS, parse_value
from pipeline.results.convert import cdm_name_of, settings_table, summarised_rows
from pipeline.warehouse import new_id

SUMMARISED_RESULT = "summarised_result"
SETTINGS = "settings"


def small_count_findings(frame: pd.DataFrame, min_cell_count: int) -> list[str]:
    """One line per estimate name whose published counts include a value from 1 to k-1 (values not echoed).

    >>> rows = pd.DataFrame({"estimate_name": ["outcome_count", "outcome_count", "proportion"],
    ...                      "estimate_type": ["integer", "integer", "proportion"],
    ...                      "estimate_value": ["3", "-", "0.5"]})
    >>> small_count_findings(rows, 11)
    ["summarised_result: estimate 'outcome_count' has 1 value(s) between 1 and 10"]
    """
    from pipeline.privacy.disclosure import is_small

    counts = frame[(frame["estimate_type"] == "integer") & frame["estimate_name"].str.endswith("count")]
    findings = []
    for name, part in counts.groupby("estimate_name", sort=True):
        values = [parse_value(v, "integer") for v in part["estimate_value"]]
        small = sum(is_small(v, min_cell_count) for v in values if v is not None)
        if small:
            findings.append(f"summarised_result: estimate '{name}' has {small} value(s) between 1 and {min_cell_count - 1}")
    return findings


def _loaded_files(con) -> list[tuple[str, str, str]]:
    """(table, source file, sha256) of each table's latest load, from the warehouse's ``audit_load``."""
    from pipeline.warehouse import table_exists

    if con is None or not table_exists(con, "audit_load"):
        return []
    return con.execute(
        """select table_name, source_file, sha256 from audit_load
           qualify row_number() over (partition by table_name order by loaded_at desc) = 1
           order by table_name""").fetchall()


def run_identity(config: Config, manifest: dict[str, Any] | None, con=None) -> dict[str, Any]:
    """run_id, run_time, cdm_name, code_version and the extract's sha256 per table.

    From the warehouse's load audit when ``con`` is given, else from the run manifest's inputs.
    """
    manifest = manifest or {}
    loaded = _loaded_files(con)
    if not loaded:
        loaded = [(item.get("table") or item.get("table_name"), item.get("source_file") or item.get("file") or "",
                   item.get("sha256")) for item in manifest.get("inputs") or []]
    hashes = {str(table): str(sha) for table, _, sha in loaded if table and sha}
    files = [str(path) for _, path, _ in loaded if path]
    run_time = manifest.get("created_at") or manifest.get("generated_at") \
        or dt.datetime.now().astimezone().isoformat(timespec="seconds")
    return {
        "run_id": new_id(),
        "run_time": str(run_time),
        "cdm_name": cdm_name_of(config, manifest, files),
        "code_version": manifest.get("code_version"),
        "extract_sha256": hashes,
    }


def build(published, config: Config, manifest: dict[str, Any] | None, con=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summarised_result, settings) from the publish stage's ``Published`` tables."""
    run = run_identity(config, manifest, con)
    rows, result_settings = summarised_rows(published.estimates, published.attrition, config, run["cdm_name"])
    return rows, settings_table(result_settings, config, run)


def write(published, config: Config, manifest: dict[str, Any] | None, exports_dir: Path, con=None) -> list[Path]:
    """Write the summarised result and its settings; refuse on a small count."""
    rows, settings = build(published, config, manifest, con)
    if tuple(rows.columns) != COLUMNS:
        raise AssertionError(f"summarised_result columns drifted: {list(rows.columns)}")
    findings = small_count_findings(rows, published.min_cell_count)
    if findings:
        raise PrivacyError("refusing to publish summarised_result: " + "; ".join(findings))
    exports_dir = Path(exports_dir)
    exports_dir.mkdir(parents=True, exist_ok=True)
    paths = [exports_dir / f"{SUMMARISED_RESULT}.csv", exports_dir / f"{SUMMARISED_RESULT}.parquet",
             exports_dir / f"{SETTINGS}.csv"]
    rows.to_csv(paths[0], index=False)
    schema = pa.schema([(c, pa.string()) for c in COLUMNS])
    pq.write_table(pa.Table.from_pandas(rows, schema=schema, preserve_index=False), paths[1])
    settings.to_csv(paths[2], index=False)
    # their columns and estimate names are in the one exports/data_dictionary (pipeline.publish.exports)
    return paths


def read_export(exports_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summarised_result, settings) as written, every value text (empty = NA)."""
    exports_dir = Path(exports_dir)
    rows = pd.read_csv(exports_dir / f"{SUMMARISED_RESULT}.csv", dtype="string", keep_default_na=False,
                       na_values=[""])
    settings = pd.read_csv(exports_dir / f"{SETTINGS}.csv", dtype="string", keep_default_na=False, na_values=[""])
    return rows, settings
