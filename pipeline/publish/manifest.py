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


POLICY = ("counts from 1 to min_cell_count - 1 suppressed (with every count that would give one back), then every "
          "published count rounded to the middle of its band of rounding_base values (bands start at "
          "min_cell_count; 0 stays 0); proportions recomputed from the rounded counts, other estimates rounded so "
          "that estimate x n is uncertain by at least rounding_base persons (docs/privacy.md)")


def release_manifest(manifest: dict[str, Any], min_cell_count: int, rounding_base: int) -> dict[str, Any]:
    """The manifest as published: input row counts rounded, k-anonymity counts suppressed and
    rounded with their share recomputed from the published counts, the disclosure settings stated.

    >>> m = release_manifest({"inputs": [{"table": "persons", "rows_read": 20_001}],
    ...                       "k_anonymity": {"k": 11, "persons": 20_000, "persons_in_groups_below_k": 3961,
    ...                                       "groups_below_k": 900}}, 11, 5)
    >>> m["inputs"][0]["rows_read"], m["k_anonymity"]["persons_in_groups_below_k"]
    (20003, 3963)
    >>> m["k_anonymity"]["share_of_persons_in_groups_below_k"], m["disclosure"]["rounding_base"]
    (0.1982, 5)
    """
    from pipeline.privacy.disclosure import publish_count

    out = dict(manifest)
    out["inputs"] = [
        {**item, **({"rows_read": publish_count(item["rows_read"], min_cell_count, rounding_base)}
                    if "rows_read" in item else {})}
        for item in manifest.get("inputs") or []
    ]
    risk = manifest.get("k_anonymity")
    if isinstance(risk, dict):
        published = {key: risk[key] for key in ("quasi_identifiers", "k") if key in risk}
        persons = publish_count(risk.get("persons"), min_cell_count, rounding_base)
        in_small = publish_count(risk.get("persons_in_groups_below_k"), min_cell_count, rounding_base)
        published["persons"] = persons
        published["persons_in_groups_below_k"] = in_small
        published["groups_below_k"] = publish_count(risk.get("groups_below_k"), min_cell_count, rounding_base)
        # From the published counts only: share x published persons gives back the published count.
        published["share_of_persons_in_groups_below_k"] = (
            round(in_small / persons, 4) if persons and in_small is not None else None)
        out["k_anonymity"] = published
    out["disclosure"] = {"min_cell_count": min_cell_count, "rounding_base": rounding_base, "policy": POLICY}
    return out
