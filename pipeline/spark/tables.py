"""The Spark side's tables: Parquet folders under one root, each with a temporary view of its name.

Parquet folders and views work on every Spark (local, a cluster, Spark
Connect), with or without a metastore, and outlive the session: a later
process re-registers them (:meth:`SparkTables.restore`). The root is
``engine.warehouse_dir`` (a local folder, or any URL Spark writes:
``s3a://``, ``abfss://``, ``dbfs:/``).
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse


class SparkTables:
    def __init__(self, spark: Any, root: str | Path):
        self.spark = spark
        self.root = Path(root).resolve().as_uri() if isinstance(root, Path) or "://" not in str(root) else str(root)
        self._scratch: str | None = None
        self._shadowed: set[str] = set()

    def location(self, name: str) -> str:
        base = self.root.rstrip("/") + ("/_scratch" if self._scratch else "")
        return f"{base}/{name}"

    def write(self, name: str, frame: Any) -> None:
        """Materialise a DataFrame as table ``name`` (replacing it) and point the view ``name`` at it."""
        path = self.location(name)
        frame.write.mode("overwrite").parquet(path)
        self.spark.read.parquet(path).createOrReplaceTempView(name)
        if self._scratch:
            self._shadowed.add(name)

    def register(self, name: str) -> bool:
        """Point the view ``name`` at its Parquet folder when the folder exists; whether it did."""
        path = self.location(name)
        try:
            self.spark.read.parquet(path).createOrReplaceTempView(name)
        except Exception:  # noqa: BLE001 - a missing or empty folder: no such table
            return False
        return True

    def exists(self, name: str) -> bool:
        return bool(self.spark.catalog.tableExists(name))

    def restore(self, names) -> list[str]:
        """Register the views of the tables a previous run left (those whose folders exist)."""
        return [name for name in names if self.register(name)]

    @contextlib.contextmanager
    def scratch(self) -> Iterator["SparkTables"]:
        """Tables written inside go to a scratch folder and shadow the main ones (the sensitivity
        rebuilds); afterwards the main tables' views are restored and the scratch folder removed."""
        self._scratch, self._shadowed = "_scratch", set()
        try:
            yield self
        finally:
            shadowed, self._scratch, self._shadowed = self._shadowed, None, set()
            for name in shadowed:
                if not self.register(name):
                    self.spark.catalog.dropTempView(name)
            parsed = urlparse(self.root)
            if parsed.scheme == "file":
                shutil.rmtree(Path(parsed.path) / "_scratch", ignore_errors=True)
