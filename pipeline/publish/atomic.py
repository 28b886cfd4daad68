"""Atomic publication of ``reports/``: a dashboard sees the old set or the new one, never half of one.

The new set is built in ``reports.tmp-<id>`` beside ``reports/``; on success the
old folder is renamed to ``reports.old-<id>``, the new one renamed into place and
the old one removed. A failure anywhere before the swap -- including the output
checker (``check``), which reads the finished build -- removes the build and
leaves ``reports/`` byte for byte as it was. No other stage writes into
``reports/``: validation's full results and Data Docs go to
``data/quality-internal/``; only the version-controlled ``README.md`` is carried
into the new set (and checked with it).

>>> import tempfile
>>> root = Path(tempfile.mkdtemp())
>>> with atomic_reports(root / "reports", "demo") as build:
...     _ = (build / "index.html").write_text("new")
>>> sorted(p.name for p in root.iterdir()), (root / "reports" / "index.html").read_text()
(['reports'], 'new')
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path
from typing import Callable, Iterator

log = logging.getLogger(__name__)

# Kept in version control in reports/, or the products of a network study (make network: site
# reports, packages, the pooled report), which are their own releases; carried over into every
# new set (and checked with it).
CARRIED_OVER = ("README.md", "network", "sites", "packages")


@contextlib.contextmanager
def atomic_reports(reports_dir: Path, build_id: str, check: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Yield an empty build folder; swap it in for ``reports_dir`` when the block succeeds and
    ``check(build)`` (the output checker, run on the finished set) raises nothing."""
    reports_dir = Path(reports_dir)
    build = reports_dir.parent / f"{reports_dir.name}.tmp-{build_id}"
    old = reports_dir.parent / f"{reports_dir.name}.old-{build_id}"
    reports_dir.parent.mkdir(parents=True, exist_ok=True)
    for stale in sorted(reports_dir.parent.glob(f"{reports_dir.name}.tmp-*")) + sorted(
        reports_dir.parent.glob(f"{reports_dir.name}.old-*")
    ):
        log.warning("left over from an interrupted publication (safe to delete): %s", stale)
    build.mkdir()
    try:
        yield build
        for name in CARRIED_OVER:
            source = reports_dir / name
            if source.is_dir() and not (build / name).exists():
                shutil.copytree(source, build / name)
            elif source.is_file() and not (build / name).exists():
                shutil.copy2(source, build / name)
        if check is not None:
            check(build)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    _swap(build, reports_dir, old)


def _swap(build: Path, reports_dir: Path, old: Path) -> None:
    had_old = reports_dir.exists()
    if had_old:
        reports_dir.rename(old)
    try:
        build.rename(reports_dir)
    except BaseException:
        if had_old:
            old.rename(reports_dir)  # put the previous set back
        shutil.rmtree(build, ignore_errors=True)
        raise
    if had_old:
        shutil.rmtree(old, ignore_errors=True)
