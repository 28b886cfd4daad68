"""The one output checker: every file of a release is read before it is published.

``check_release(folder, k, b)`` walks *every* file under the folder (the new
``reports/`` being built) and returns one ``Violation`` per problem; the
publish stage refuses the whole set on the first one (``require_clean``), and
``reports/`` keeps its previous content. It knows no fixed list of files: a
file is judged by its type, a field by its name.

Rules (``docs/privacy.md``, "The output checker"):

* **count**: a field named like a count (``n``, ``events``, ``*_count``,
  ``persons*``, ``rows_*``, ``total``, ``excluded``, ...) in a CSV, Parquet or
  JSON file -- or a weighted count (``estimate`` of an ``ess`` row), or in a
  long table the ``<x>_value`` of a row whose ``<x>_name`` names a count
  (omopgenerics' ``estimate_name = count``) -- holds
  null, 0, or a rounded value: the middle of a band of ``b`` values starting at
  ``k`` (13, 18, 23, ... for k = 11, b = 5). A value from 1 to k-1 breaks
  "count below k", any other value "count not rounded".
* **share**: a ``share`` beside ``count`` and ``total`` must equal
  count / total of the published (rounded) counts.
* **record**: no field that holds row-level detail (record ids, examples,
  source rows, GX unexpected values / indexes), no text quoting a value
  (``column=value``, "Sampled Unexpected Values").
* **text** (HTML, Markdown, SVG, plain text): a number written as a count of
  people or rows ("1,234 people", "excluded 40", "3 of 120 persons", a table
  cell under a count heading) obeys the count rule; nothing is loaded from the
  network (``src``/``href`` to ``http(s)://`` or ``//``).
* **file type**: only CSV, Parquet, JSON, HTML, Markdown, text and SVG files can
  be read; a PNG is accepted only beside the SVG it was rendered with, and
  ``plotly.min.js`` only as plotly's own bundle. Anything else is refused.

The ``config`` section of a JSON file (settings, not data) is not read as data.

>>> import tempfile, json
>>> root = Path(tempfile.mkdtemp())
>>> _ = (root / "t.csv").write_text("level,n,events\\na,13,0\\nb,18,7\\n")
>>> [str(v) for v in check_release(root, 11, 5)]
['t.csv: events (row 2): count below k (1..10)']
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from pipeline.errors import PrivacyError
from pipeline.privacy.disclosure import _number as disclosure_number
from pipeline.privacy.disclosure import (
    WEIGHTED_COUNT_VARIABLES,
    is_count_column,
    is_published_count,
    is_small,
)
from pipeline.results.contract import SUPPRESSED  # omopgenerics' mark of a suppressed estimate_value

# Fields that carry row-level detail; never published.
_RECORD_FIELDS = re.compile(
    r"^(record_ids?|examples?|source_rows?|_source_row|row_ids?|unexpected_(list|index_list|index_query|rows|values)|"
    r"partial_unexpected_(list|index_list|counts)|sampled_unexpected_values|failing_record_ids|raw_value|value)$",
    re.IGNORECASE,
)
# Text that quotes a value or carries GX's per-row output.
_VALUE_TEXT = re.compile(r"(?<![<>!=\w])[A-Za-z_][A-Za-z0-9_]*=(?![=\s])|Sampled Unexpected Values|unexpected_index",
                         re.IGNORECASE)
_SKIP_JSON_KEYS = frozenset({"config"})
_TEXT_SUFFIXES = {".html", ".htm", ".md", ".txt", ".svg"}
_COUNT_NOUNS = r"(?:people|persons?|rows|new users|individuals|patients)"
_NUMBER = r"(\d{1,3}(?:,\d{3})+|\d+)"
_TEXT_COUNTS = (
    re.compile(_NUMBER + r"\s+" + _COUNT_NOUNS + r"\b", re.IGNORECASE),
    re.compile(_NUMBER + r"\s+of\s+" + _NUMBER + r"\s+" + _COUNT_NOUNS + r"\b", re.IGNORECASE),
    re.compile(r"\bexcluded\s+" + _NUMBER + r"\b", re.IGNORECASE),
    re.compile(_NUMBER + r"\s+(?:remain|quarantined|loaded|dependent)\b", re.IGNORECASE),
)
_NETWORK = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)
# Table headings whose cells are counts of rows or people.
_COUNT_HEADING = re.compile(r"^(n|events|rows.*|.*\brows|.*\bpersons|.*\bpeople|excluded|count|total|persons.*)$",
                            re.IGNORECASE)


@dataclass(frozen=True)
class Violation:
    file: str
    field: str
    rule: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.rule}"


def _count_rule(value: Any, k: int, b: int) -> str | None:
    if is_published_count(value, k, b):
        return None
    if is_small(value, k):
        return f"count below k (1..{k - 1})"
    return f"count not rounded (base {b}, bands from {k})"


def _number(value: Any) -> float | None:
    """A published number, as disclosure control reads one; a boolean is a flag, not a count."""
    return None if isinstance(value, bool) else disclosure_number(value)


# ---------------------------------------------------------------- tables


def _check_frame(frame: pd.DataFrame, where: str, k: int, b: int) -> Iterator[Violation]:
    columns = [str(c) for c in frame.columns]
    for col in columns:
        if _RECORD_FIELDS.match(col):
            yield Violation(where, col, "row-level detail (record ids, values) is never published")
    for col in columns:
        if not is_count_column(col):
            continue
        for i, value in enumerate(frame[col].tolist()):
            number = _number(value)
            if number is None:
                if value is None or pd.isna(value) or not str(value).strip():
                    continue
                rule = "count field holds a non-number"
            else:
                rule = _count_rule(number, k, b)
            if rule:
                yield Violation(where, f"{col} (row {i + 1})", rule)
                break  # one line per column is enough to stop the publish
    if "estimate" in columns and "variable" in columns:
        weighted = frame["variable"].astype("string").isin(WEIGHTED_COUNT_VARIABLES).fillna(False)
        for i in frame.index[weighted.to_numpy()]:
            rule = _count_rule(_number(frame.at[i, "estimate"]), k, b)
            if rule:
                yield Violation(where, f"estimate (row {list(frame.index).index(i) + 1}, weighted count)", rule)
                break
    # Long formats (omopgenerics summarised_result: estimate_name / estimate_value): a value whose
    # name says it is a count is a count; "-" is omopgenerics' mark of a suppressed value.
    for name_col in [c for c in columns if c.endswith("_name") and c[: -len("_name")] + "_value" in columns]:
        value_col = name_col[: -len("_name")] + "_value"
        for i, (name, value) in enumerate(zip(frame[name_col], frame[value_col])):
            if isinstance(name, str) and is_count_column(name):
                number = _number(value)
                rule = _count_rule(number, k, b) if number is not None else (
                    None if value is None or pd.isna(value) or str(value).strip() in ("", SUPPRESSED)
                    else "count field holds a non-number")
                if rule:
                    yield Violation(where, f"{value_col} (row {i + 1}, {name_col} {name})", rule)
                    break
    if {"share", "count", "total"} <= set(columns):
        for i, (share, count, total) in enumerate(zip(frame["share"], frame["count"], frame["total"])):
            share, count, total = _number(share), _number(count), _number(total)
            if share is None:
                continue
            if count is None or not total or abs(share - count / total) > 1e-9:
                yield Violation(where, f"share (row {i + 1})", "share not computed from the published count and total")
                break
    for col in columns:
        if frame[col].dtype == object or str(frame[col].dtype).startswith("string"):
            texts = frame[col].dropna().astype(str)
            hits = texts[texts.str.contains(_VALUE_TEXT, regex=True)]
            if len(hits):
                yield Violation(where, f"{col} (row {list(texts.index).index(hits.index[0]) + 1})",
                                "text quotes a value (column=value or GX unexpected values)")


# ---------------------------------------------------------------- JSON


def _check_json(value: Any, where: str, path: str, k: int, b: int) -> Iterator[Violation]:
    if isinstance(value, dict):
        variable = value.get("variable") if isinstance(value.get("variable"), str) else None
        for key, item in value.items():
            key = str(key)
            if key in _SKIP_JSON_KEYS:
                continue
            child = f"{path}.{key}" if path else key
            if _RECORD_FIELDS.match(key) and item not in (None, [], {}, ""):
                yield Violation(where, child, "row-level detail (record ids, values) is never published")
                continue
            is_count = is_count_column(key) or (key == "estimate" and variable in WEIGHTED_COUNT_VARIABLES)
            if is_count and not isinstance(item, (dict, list)):
                number = _number(item)
                if number is None and item is not None:
                    yield Violation(where, child, "count field holds a non-number")
                else:
                    rule = _count_rule(number, k, b)
                    if rule:
                        yield Violation(where, child, rule)
            else:
                yield from _check_json(item, where, child, k, b)
        if {"share", "count", "total"} <= set(value):
            share, count, total = (_number(value.get(x)) for x in ("share", "count", "total"))
            if share is not None and (count is None or not total or abs(share - count / total) > 1e-9):
                yield Violation(where, f"{path}.share" if path else "share",
                                "share not computed from the published count and total")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _check_json(item, where, f"{path}[{i}]", k, b)
    elif isinstance(value, str) and _VALUE_TEXT.search(value):
        yield Violation(where, path, "text quotes a value (column=value or GX unexpected values)")


# ---------------------------------------------------------------- text and HTML


class _Tables(HTMLParser):
    """Cells of every HTML table, with the heading of their column."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.cells: list[tuple[str, str]] = []
        self._heads: list[str] = []
        self._row: list[str] = []
        self._cell: list[str] | None = None
        self._in_head = False

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._heads = []
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
            self._in_head = tag == "th"

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            text = " ".join("".join(self._cell).split())
            if self._in_head:
                self._heads.append(text)
            else:
                heading = self._heads[len(self._row)] if len(self._row) < len(self._heads) else ""
                self.cells.append((heading, text))
                self._row.append(text)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _check_text(text: str, where: str, k: int, b: int, is_html: bool) -> Iterator[Violation]:
    plain = html.unescape(text)
    if _NETWORK.search(text):
        yield Violation(where, "src/href", "loads a resource from the network (the report must open offline)")
    for pattern in _TEXT_COUNTS:
        for match in pattern.finditer(plain):
            for group in match.groups():
                value = int(group.replace(",", ""))
                rule = _count_rule(value, k, b)
                if rule:
                    start = max(0, match.start() - 20)
                    context = " ".join(plain[start:match.end()].split())
                    yield Violation(where, f"text '...{context}'", rule)
                    return
    if re.search(r"Sampled Unexpected Values|unexpected_index_list|partial_unexpected", plain, re.IGNORECASE):
        yield Violation(where, "text", "GX per-row output (unexpected values or indexes) is never published")
    if is_html:
        parser = _Tables()
        parser.feed(text)
        for heading, cell in parser.cells:
            if not _COUNT_HEADING.match(heading) or not re.fullmatch(_NUMBER, cell):
                continue
            rule = _count_rule(int(cell.replace(",", "")), k, b)
            if rule:
                yield Violation(where, f"table column '{heading}'", rule)
                return


# ---------------------------------------------------------------- files


def _plotly_bundle() -> str | None:
    try:
        import plotly.offline

        return plotly.offline.get_plotlyjs()
    except Exception:  # noqa: BLE001 - without plotly no bundle can be vouched for
        return None


def check_file(path: Path, root: Path, k: int, b: int) -> list[Violation]:
    """Violations in one file of the release (``root`` only names it)."""
    where = path.relative_to(root).as_posix()
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return list(_check_frame(pd.read_csv(path, dtype=object, keep_default_na=True), where, k, b))
        if suffix == ".parquet":
            return list(_check_frame(pd.read_parquet(path).astype(object), where, k, b))
        if suffix == ".json":
            return list(_check_json(json.loads(path.read_text(encoding="utf-8")), where, "", k, b))
        if suffix in _TEXT_SUFFIXES:
            return list(_check_text(path.read_text(encoding="utf-8"), where, k, b, suffix in (".html", ".htm")))
    except (ValueError, UnicodeDecodeError, OSError) as error:
        return [Violation(where, "file", f"cannot be read to be checked ({type(error).__name__})")]
    if suffix == ".png" and path.with_suffix(".svg").is_file():
        return []  # rendered from the same figure as the SVG beside it, which is read
    if path.name == "plotly.min.js" and path.read_text(encoding="utf-8", errors="replace") == _plotly_bundle():
        return []
    return [Violation(where, "file", f"file type '{suffix or path.name}' cannot be checked, so it is not published")]


def check_release(root: Path, min_cell_count: int, rounding_base: int) -> list[Violation]:
    """Every violation in every file under ``root`` (sorted by path)."""
    root = Path(root)
    violations: list[Violation] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        violations += check_file(path, root, min_cell_count, rounding_base)
    return violations


def require_clean(root: Path, min_cell_count: int, rounding_base: int) -> None:
    """Raise ``PrivacyError`` (one line: file, field, rule) when the release breaks a rule."""
    violations = check_release(root, min_cell_count, rounding_base)
    if violations:
        more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
        raise PrivacyError(f"refusing to publish: {violations[0]}{more}; the previous reports/ is unchanged")
