"""The run manifest printed into ``reports/manifest.json`` and the report's last section.

>>> m = collect_manifest(None, run_id="abc", packages=("duckdb",))
>>> sorted(m), m["run_id"], sorted(m["packages"])
(['generated_at', 'inputs', 'packages', 'python', 'run_id'], 'abc', ['duckdb'])
"""

from __future__ import annotations

import datetime as dt
import platform
from importlib import metadata
from typing import Any

import duckdb

from pipeline.warehouse import table_exists

PACKAGES = ("benzo-outcomes", "duckdb", "pandas", "numpy", "pyarrow", "scipy", "statsmodels",
            "great-expectations", "plotly", "kaleido")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def collect_manifest(con: duckdb.DuckDBPyConnection | None, run_id: str | None = None,
                     packages: tuple[str, ...] = PACKAGES) -> dict[str, Any]:
    """Input files with sha256 and row counts (from ``audit_load``), package versions, time.

    Only rows read are listed per file: loaded and quarantined rows can be small
    counts and are published, suppressed, in ``exports/data_quality``.
    """
    inputs: list[dict[str, Any]] = []
    if con is not None and table_exists(con, "audit_load"):
        frame = con.execute(
            "select table_name, regexp_extract(source_file, '[^/\\\\]+$') as source_file, file_format, sha256, "
            "rows_read, cast(loaded_at as varchar) as loaded_at from audit_load order by loaded_at, table_name"
        ).df()
        inputs = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
    return {
        "run_id": run_id,
        "generated_at": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in packages},
        "inputs": inputs,
    }
