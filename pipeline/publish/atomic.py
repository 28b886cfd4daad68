"""Atomic publication of ``reports/``: a dashboard sees the old set or the new one, never half of one.

The new set is built in ``reports.tmp-<id>`` beside ``reports/``; on success the
old folder is renamed to ``reports.old-<id>``, the new one renamed into place and
the old one removed. A failure anywhere before the swap removes the build and
leaves ``reports/`` exactly as it was. Folders written earlier in the run by
other stages (``quality/``) are carried into the new set before the swap.

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
from typing import Iterator

log = logging.getLogger(__name__)

# Written into reports/ by earlier stages of the same run (validation's results and Data Docs),
# or kept in version control there; carried over into every new set. A network study's
# site reports, packages and pooled report (make network) are their own products: kept too.
CARRIED_OVER = ("quality", "README.md", "network", "sites", "packages")


@contextlib.contextmanager
def atomic_reports(reports_dir: Path, build_id: str) -> Iterator[Path]:
    """Yield an empty build folder; swap it in for ``reports_dir`` when the block succeeds."""
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
