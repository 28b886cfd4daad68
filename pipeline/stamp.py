"""The source stamp: what make's rebuild rule compares (``data/.source-stamp``).

It holds the resolved settings and, for every file of the extract, its name,
size and sha256, and is rewritten only when one of them changes, so that make
reruns the pipeline when the extract's *content* changes -- also when new
files carry older modification times (``cp -p``, ``rsync -a``, ``tar``,
``unzip`` keep them), when the extract folder or its files are symlinks, and
when a folder is swapped for another -- and does nothing when only times
changed.

Hashing a national extract takes seconds, so a file whose size, mtime,
ctime, inode and device are those recorded last time keeps its recorded
sha256 (``<stamp>.cache``). ctime cannot be set back by a copy tool: a file
rewritten in place has a new ctime even when its mtime is old.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> _ = (folder / "persons.csv").write_text("person_id\\nP1\\n")
>>> [(f["name"], f["size"]) for f in describe_files(folder, {})]
[('persons.csv', 13)]
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pipeline.errors import ExtractError

CHUNK = 1 << 20


def extract_files(source: Path) -> list[Path]:
    """The files an extract consists of: the file itself, or a folder's visible files (symlinks followed)."""
    if source.is_file():
        return [source]
    if source.is_dir():
        return sorted((p for p in source.iterdir() if not p.name.startswith(".") and p.is_file()), key=lambda p: p.name)
    raise ExtractError(f"extract not found: {source} is neither a folder nor a file")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _fingerprint(path: Path) -> list[int]:
    info = path.stat()  # follows symlinks: the file's own identity
    return [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev]


def describe_files(source: Path, cache: dict[str, Any]) -> list[dict[str, Any]]:
    """Name, size and sha256 of each file; ``cache`` (resolved path -> fingerprint, sha256) is read and updated."""
    files = []
    for path in extract_files(source):
        key = str(path.resolve())
        fingerprint = _fingerprint(path)
        known = cache.get(key)
        if known and known.get("fingerprint") == fingerprint:
            sha256 = known["sha256"]
        else:
            sha256 = _sha256(path)
            if _fingerprint(path) != fingerprint:  # written while we read it: do not trust the cache
                raise ExtractError(f"extract file {path} changed while it was read; wait until it is fully copied")
            cache[key] = {"fingerprint": fingerprint, "sha256": sha256}
        files.append({"name": path.name, "size": fingerprint[0], "sha256": sha256})
    return files


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def write_stamp(out: Path, source: Path, settings: dict[str, Any]) -> bool:
    """Write the stamp when the extract's content or the settings differ from it; True when written."""
    cache_path = out.with_name(out.name + ".cache")
    cache = _read_json(cache_path)
    cache = cache if isinstance(cache, dict) else {}
    stamp = {"source": str(source), "settings": settings, "files": describe_files(source, cache)}
    text = json.dumps(stamp, indent=1, sort_keys=True) + "\n"
    changed = _read_json(out) != json.loads(text)
    if changed:
        _write_atomically(out, text)
    current = {str(path.resolve()) for path in extract_files(source)}
    cache = {key: value for key, value in cache.items() if key in current}
    _write_atomically(cache_path, json.dumps(cache, sort_keys=True) + "\n")
    return changed
