"""The run manifest: how a set of results was made (inputs, versions, settings, time)."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import platform
import subprocess
from typing import Any

import duckdb

from pipeline import __version__
from pipeline.config import PROJECT_ROOT, Config
from pipeline.warehouse import table_exists

PACKAGES = ("duckdb", "pandas", "numpy", "great-expectations", "plotly", "statsmodels", "scipy", "pyarrow")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "benzo-outcomes": __version__}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def build_manifest(con: duckdb.DuckDBPyConnection, config: Config, extra: dict[str, Any]) -> dict[str, Any]:
    """Inputs (latest load of each table: file name, sha256, rows read), versions, config and time.

    Rows loaded and quarantined are left out: they can be small counts, and are
    published, suppressed, in ``exports/data_quality``.
    """
    inputs = []
    if table_exists(con, "audit_load"):
        rows = con.execute(
            """select table_name, regexp_extract(source_file, '[^/]+$'), file_format, sha256, rows_read, loaded_at
               from audit_load_current qualify row_number() over (partition by table_name order by loaded_at desc) = 1
               order by table_name"""
        ).fetchall()
        keys = ("table", "file", "format", "sha256", "rows_read", "loaded_at")
        inputs = [dict(zip(keys, row)) for row in rows]
        for item in inputs:
            item["loaded_at"] = item["loaded_at"].isoformat(timespec="seconds")
    return {
        "created_at": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "code_version": git_commit(),
        "versions": package_versions(),
        "inputs": inputs,
        "config": config.to_dict(),
        **extra,
    }
