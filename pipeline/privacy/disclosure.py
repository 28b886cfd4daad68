"""Disclosure control: the one place every published number goes through.

No published count may lie between 1 and k-1 (k = ``disclosure.min_cell_count``,
11 by default: the CMS cell-size suppression policy), and no such count may be
recoverable from what *is* published (secondary suppression). The rules are
written out, with the reasoning, in ``docs/privacy.md``; in short:

* **Primary**: a count ``x`` with ``0 < x < k`` is suppressed. Zero is
  publishable. Weighted (non-integer) counts follow the same rule.
* **Row links**: for a proportion row (``n`` persons, ``events`` of them with the
  outcome) the non-events ``n - events`` are a count too; when they are small,
  ``events`` is suppressed. A suppressed ``events`` nulls ``estimate``,
  ``ci_low`` and ``ci_high`` (``estimate * n`` gives ``events`` back); a
  suppressed ``n`` nulls the whole row.
* **Group links**: the cells of a group (same ``analysis, variable, method,
  time_days``; levels partition the same persons) add up to a total that we
  assume is published somewhere. For each of ``n``, ``events`` and
  ``n - events``, a group must hide either no cell or at least two, and the
  hidden cells together must not add up to 1..k-1; otherwise the next smallest
  published cell is suppressed too, until both hold.
* **Same cell elsewhere**: a count suppressed in one row is suppressed in
  every row with the same ``variable, level, time_days`` and the same value
  (e.g. the primary and complete-case rows of a headline group).
* **Curves** (rows with ``time_days``; ``n`` = number at risk, ``events`` =
  cumulative events): a point is published whole or not at all; it is dropped
  when at-risk, events or at-risk minus events is 1..k-1, or when the change
  in cumulative events or in the number at risk since the last *published*
  point is 1..k-1 (the curve is coarsened so differencing reveals nothing).

>>> table = pd.DataFrame({
...     "analysis": "by_sex", "variable": "sex", "level": ["F", "M", "X"],
...     "time_days": None, "n": [500, 400, 40], "events": [150, 120, 3],
...     "estimate": [0.30, 0.30, 0.29], "ci_low": [0.26, 0.26, 0.08],
...     "ci_high": [0.34, 0.35, 0.64], "method": "Wilson"})
>>> out = suppress(table, 11)
>>> out[["level", "n", "events", "estimate", "suppressed"]]
  level    n  events  estimate  suppressed
0     F  500     150       0.3       False
1     M  400    <NA>       NaN        True
2     X   40    <NA>       NaN        True
>>> out["suppression_reason"].tolist()
[nan, 'secondary: events recoverable from the group total', 'primary: events 1..10']
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

DEFAULT_GROUP_COLS = ("analysis", "variable", "method", "time_days")
DEFAULT_COUNT_COLS = ("n", "events")
ESTIMATE_COLS = ("estimate", "ci_low", "ci_high")
# Levels that are the total of their group rather than one of its cells.
TOTAL_LEVELS = frozenset({"all", "total", "overall", "any"})

# Hiding state of one row: what of it is withheld.
_PUBLISHED, _EVENTS_HIDDEN, _ALL_HIDDEN = 0, 1, 2


def min_cell_count_of(setting: Any) -> int:
    """``k`` from an int or from a ``Config`` (``config.disclosure.min_cell_count``).

    >>> from pipeline.config import Config
    >>> min_cell_count_of(Config()), min_cell_count_of(5)
    (11, 5)
    """
    k = setting.disclosure.min_cell_count if hasattr(setting, "disclosure") else setting
    k = int(k)
    if k < 1:
        raise ValueError(f"min_cell_count must be >= 1, got {k}")
    return k


def is_small(value: Any, min_cell_count: int) -> bool:
    """True for a count that must not be published: 0 < value < k.

    >>> [is_small(v, 11) for v in (0, 1, 10, 10.5, 11, None, float("nan"))]
    [False, True, True, True, False, False, False]
    """
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return False
    try:
        return 0 < float(value) < min_cell_count
    except (TypeError, ValueError):
        return False


def _number(value: Any) -> float | None:
    if value is None or value is pd.NA:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


# --------------------------------------------------------------------------
# The estimates table
# --------------------------------------------------------------------------


@dataclass
class _Row:
    index: int
    n: float | None
    events: float | None
    is_total: bool
    is_curve: bool
    state: int = _PUBLISHED
    reasons: list[str] = field(default_factory=list)

    @property
    def nonevents(self) -> float | None:
        if self.n is None or self.events is None:
            return None
        return self.n - self.events

    def value(self, column: str) -> float | None:
        return {"n": self.n, "events": self.events, "non-events": self.nonevents}[column]

    def hidden(self, column: str) -> bool:
        if column == "n":
            return self.state >= _ALL_HIDDEN
        return self.state >= _EVENTS_HIDDEN

    def hide(self, column: str, reason: str) -> bool:
        """Withhold ``column`` (and what it implies); True when something changed."""
        wanted = _ALL_HIDDEN if (column == "n" or self.is_curve) else _EVENTS_HIDDEN
        if self.state >= wanted:
            return False
        self.state = wanted
        if reason not in self.reasons:
            self.reasons.append(reason)
        return True


_COLUMNS = ("n", "events", "non-events")


def _primary(row: _Row, k: int) -> None:
    labels = [("n", row.n), ("events", row.events), ("non-events", row.nonevents)]
    for label, value in labels:
        if is_small(value, k):
            # non-events are only recoverable through events: hide events.
            row.hide("events" if label == "non-events" else label, f"primary: {label} 1..{k - 1}")


def _coarsen_curve(points: list[_Row], k: int) -> None:
    """Drop curve points whose change since the last published point is 1..k-1.

    Removing a point never breaks the rule for the others: two changes that
    are each 0 or >= k add up to 0 or >= k (curves are monotone).
    """
    last_events: float | None = None
    last_at_risk: float | None = None
    for point in points:
        if point.state != _PUBLISHED:
            continue
        steps = []
        if last_events is not None and point.events is not None:
            steps.append(("cumulative events", abs(point.events - last_events)))
        if last_at_risk is not None and point.n is not None:
            steps.append(("number at risk", abs(last_at_risk - point.n)))
        small = [label for label, step in steps if is_small(step, k)]
        if small:
            point.hide("n", f"curve: change in {small[0]} since last published point 1..{k - 1}")
            continue
        if point.events is not None:
            last_events = point.events
        if point.n is not None:
            last_at_risk = point.n


def _group_violation(cells: list[_Row], column: str, k: int) -> bool:
    hidden = [c.value(column) for c in cells if c.hidden(column) and c.value(column) is not None]
    total = sum(hidden)
    if is_small(total, k):
        return True  # the hidden cells together are a small count
    return len(hidden) == 1 and total != 0  # the only hidden cell = total - the rest


def _secure_group(rows: list[_Row], k: int) -> bool:
    """Secondary suppression inside one group; True when something changed."""
    changed = False
    cells = [r for r in rows if not r.is_total]
    totals = [r for r in rows if r.is_total]
    if len(cells) == 1 and totals:
        # A lone cell is its own total: they stand or fall together.
        for column in _COLUMNS:
            for a, b in ((cells[0], totals[0]), (totals[0], cells[0])):
                if a.hidden(column) and a.value(column) is not None and not b.hidden(column):
                    changed |= b.hide(column, f"secondary: {column} equals the suppressed group total")
        return changed
    if len(cells) < 2:
        return False
    # For curves, at-risk minus cumulative events is not a count of anyone.
    columns = ("n", "events") if cells[0].is_curve else _COLUMNS
    for column in columns:
        while _group_violation(cells, column, k):
            published = [c for c in cells if not c.hidden(column) and c.value(column) is not None]
            if not published:
                break  # everything that could hide is hidden: the total itself is small
            positive = [c for c in published if c.value(column) > 0]
            # A zero cell cannot lift a small hidden sum, but still stops a
            # lone hidden cell from being read off the total.
            pool = positive or published
            chosen = min(pool, key=lambda c: (c.value(column), c.index))
            changed |= chosen.hide(column, f"secondary: {column} recoverable from the group total")
    return changed


def _link_same_cells(rows: list[_Row], keys: list[tuple]) -> bool:
    """Hide a count wherever the same cell shows the same value unhidden."""
    changed = False
    by_key: dict[tuple, list[_Row]] = {}
    for row, key in zip(rows, keys):
        by_key.setdefault(key, []).append(row)
    for same in by_key.values():
        if len(same) < 2:
            continue
        for column in _COLUMNS:
            hidden_values = {r.value(column) for r in same if r.hidden(column) and r.value(column) is not None}
            for r in same:
                if not r.hidden(column) and r.value(column) in hidden_values:
                    changed |= r.hide(column, f"secondary: {column} suppressed in another row of the same cell")
    return changed


def _count_dtype(series: pd.Series) -> str:
    values = pd.to_numeric(series, errors="coerce").dropna()
    return "Int64" if (values == values.round()).all() else "Float64"


def suppress(
    table: pd.DataFrame,
    min_cell_count: Any = 11,
    group_cols: Sequence[str] = DEFAULT_GROUP_COLS,
    count_cols: Sequence[str] = DEFAULT_COUNT_COLS,
) -> pd.DataFrame:
    """Suppress small counts in the long estimates table (see the module docstring).

    ``table`` has ``analysis, variable, level, time_days, n, events, estimate,
    ci_low, ci_high, method`` (missing optional columns are tolerated);
    ``min_cell_count`` is ``k`` or a ``Config``. Returns a copy with suppressed
    values null and two more columns: ``suppressed`` (bool) and
    ``suppression_reason`` (null when published). The input is not modified.
    ``count_cols`` names the (persons, events) pair, in that order.
    """
    k = min_cell_count_of(min_cell_count)
    n_col, events_col = (tuple(count_cols) + (None, None))[:2]
    out = table.copy().reset_index(drop=True)
    n_values = out[n_col].map(_number) if n_col in out else pd.Series([None] * len(out), dtype=object)
    e_values = out[events_col].map(_number) if events_col in out else pd.Series([None] * len(out), dtype=object)
    levels = out["level"].astype("string").str.strip().str.lower() if "level" in out else pd.Series([""] * len(out))
    times = out["time_days"].map(_number) if "time_days" in out else pd.Series([None] * len(out), dtype=object)

    n_list, e_list, level_list, time_list = n_values.tolist(), e_values.tolist(), levels.tolist(), times.tolist()
    rows = [
        _Row(i, n_list[i], e_list[i], level_list[i] in TOTAL_LEVELS, time_list[i] is not None)
        for i in range(len(out))
    ]
    for row in rows:
        _primary(row, k)

    as_text = {
        c: [None if pd.isna(v) else str(v) for v in out[c].tolist()]
        for c in {*group_cols, "variable", "level", "time_days"} if c in out
    }

    def key_of(i: int, cols: Iterable[str]) -> tuple:
        return tuple(as_text[c][i] for c in cols if c in as_text)

    # Curves: one per (group without time) + level, ordered by time.
    curve_cols = [c for c in group_cols if c != "time_days"] + ["level"]
    curves: dict[tuple, list[_Row]] = {}
    for row in rows:
        if row.is_curve:
            curves.setdefault(key_of(row.index, curve_cols), []).append(row)
    for points in curves.values():
        _coarsen_curve(sorted(points, key=lambda r: time_list[r.index]), k)

    groups: dict[tuple, list[_Row]] = {}
    for row in rows:
        groups.setdefault(key_of(row.index, group_cols), []).append(row)
    cell_keys = [key_of(row.index, ("variable", "level", "time_days")) for row in rows]
    changed = True
    while changed:  # states only grow, so this ends
        changed = False
        for members in groups.values():
            changed |= _secure_group(members, k)
        changed |= _link_same_cells(rows, cell_keys)

    events_hidden = pd.Series([r.state >= _EVENTS_HIDDEN for r in rows], index=out.index)
    all_hidden = pd.Series([r.state >= _ALL_HIDDEN for r in rows], index=out.index)
    if n_col in out:
        out[n_col] = out[n_col].astype(_count_dtype(out[n_col])).mask(all_hidden)
    if events_col in out:
        out[events_col] = out[events_col].astype(_count_dtype(out[events_col])).mask(events_hidden)
    for col in ESTIMATE_COLS:
        if col in out:
            out[col] = pd.to_numeric(out[col], errors="coerce").astype("float64").mask(events_hidden)
    out["suppressed"] = events_hidden.astype(bool)
    out["suppression_reason"] = pd.Series(["; ".join(r.reasons) or None for r in rows], index=out.index, dtype="str")
    return out


def suppress_headline(headline: Mapping[str, Any], min_cell_count: Any = 11) -> dict:
    """The headline.json dict of DESIGN.md with its counts suppressed.

    Every top-level section except ``config`` maps group -> {estimate, ci_low,
    ci_high, n, events, method}; the groups of a section partition the cohort.
    ``n``/``events`` become None when suppressed; estimate and CI too when
    ``events`` is. The input is not modified.

    >>> h = {"headline": {"gt_4_weeks": {"estimate": 0.3, "ci_low": 0.2, "ci_high": 0.4, "n": 300, "events": 90, "method": "IPW"},
    ...                   "le_4_weeks": {"estimate": 0.5, "ci_low": 0.2, "ci_high": 0.8, "n": 8, "events": 4, "method": "IPW"}},
    ...      "config": {"disclosure": {"min_cell_count": 11}}}
    >>> s = suppress_headline(h, 11)["headline"]
    >>> # two cells of a public total: hiding one hides the other
    >>> s["le_4_weeks"]["n"], s["gt_4_weeks"]["n"], s["gt_4_weeks"]["events"], s["gt_4_weeks"]["estimate"]
    (None, None, None, None)
    """
    k = min_cell_count_of(min_cell_count)
    result = copy.deepcopy(dict(headline))
    records = []
    for section, groups in result.items():
        if section == "config" or not isinstance(groups, dict):
            continue
        for group, cell in groups.items():
            if isinstance(cell, dict) and ("n" in cell or "events" in cell):
                records.append({
                    "analysis": "headline", "variable": "headline_group", "level": group, "time_days": None,
                    "n": cell.get("n"), "events": cell.get("events"), "estimate": cell.get("estimate"),
                    "ci_low": cell.get("ci_low"), "ci_high": cell.get("ci_high"), "method": section,
                    "_section": section,
                })
    if not records:
        return result
    frame = pd.DataFrame.from_records(records)
    frame["n"] = pd.to_numeric(frame["n"], errors="coerce")
    frame["events"] = pd.to_numeric(frame["events"], errors="coerce")
    suppressed = suppress(frame, k)
    for _, row in suppressed.iterrows():
        cell = result[row["_section"]][row["level"]]
        for col in ("n", "events", *ESTIMATE_COLS):
            if col in cell:
                value = row[col]
                if pd.isna(value):
                    cell[col] = None
                elif col in ("n", "events") and float(value).is_integer():
                    cell[col] = int(value)
                else:
                    cell[col] = float(value)
    return result


# --------------------------------------------------------------------------
# Simple count tables (attrition)
# --------------------------------------------------------------------------


def suppress_counts(
    frame: pd.DataFrame,
    count_cols: Sequence[str],
    min_cell_count: Any = 11,
    total_cols: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Suppress small counts in a simple count table; returns a copy with
    suppressed values null plus ``suppressed`` and ``suppression_reason``.

    Without ``total_cols`` each count column is a set of cells (one per row)
    adding up to a total assumed public: primary suppression, then the group
    rule of ``suppress`` (no lone hidden cell, hidden cells not adding to 1..k-1).

    With ``total_cols=(before_col, after_col)`` the rows are the ordered steps
    of an attrition table with ``after = before - excluded`` (``count_cols`` =
    the one excluded column) and ``after`` of a step = ``before`` of the next.
    The excluded counts and the final ``after`` partition the starting
    population, so they get the group rule; then the running totals between
    steps are published only where the steps since the last published running
    total hide no lone count and no small sum (otherwise before - after gives
    the small count back).

    >>> attrition = pd.DataFrame({
    ...     "reason": ["start", "under 18", "washout", "no follow-up"],
    ...     "persons_before": [1000, 1000, 996, 900],
    ...     "excluded": [0, 4, 96, 30],
    ...     "persons_after": [1000, 996, 900, 870]})
    >>> out = suppress_counts(attrition, ["excluded"], 11, total_cols=("persons_before", "persons_after"))
    >>> out[["persons_before", "excluded", "persons_after"]]
       persons_before  excluded  persons_after
    0            1000         0           1000
    1            1000      <NA>           <NA>
    2            <NA>        96           <NA>
    3            <NA>      <NA>            870
    """
    k = min_cell_count_of(min_cell_count)
    out = frame.copy().reset_index(drop=True)
    reasons: list[list[str]] = [[] for _ in range(len(out))]
    hidden = {col: [False] * len(out) for col in out.columns}

    def hide(col: str, i: int, reason: str) -> None:
        if not hidden[col][i]:
            hidden[col][i] = True
            if reason not in reasons[i]:
                reasons[i].append(reason)

    if total_cols:
        if len(count_cols) != 1 or len(total_cols) != 2:
            raise ValueError("an attrition table takes one excluded column and total_cols=(before_col, after_col)")
        _suppress_attrition(out, count_cols[0], total_cols[0], total_cols[1], k, hide, hidden)
    else:
        for col in count_cols:
            values = [_number(v) for v in out[col]]
            cells = [_Row(i, v, None, False, False) for i, v in enumerate(values)]
            for cell in cells:
                if is_small(cell.n, k):
                    cell.hide("n", f"primary: {col} 1..{k - 1}")
                    hide(col, cell.index, f"primary: {col} 1..{k - 1}")
            _secure_group(cells, k)
            for cell in cells:
                if cell.state:
                    hide(col, cell.index, f"secondary: {col} recoverable from the column total")

    any_hidden = [False] * len(out)
    for col in out.columns:
        if any(hidden[col]):
            mask = pd.Series(hidden[col], index=out.index)
            out[col] = out[col].astype(_count_dtype(out[col])).mask(mask)
            any_hidden = [a or b for a, b in zip(any_hidden, hidden[col])]
    out["suppressed"] = any_hidden
    out["suppression_reason"] = pd.Series(["; ".join(r) or None for r in reasons], index=out.index, dtype="str")
    return out


def _suppress_attrition(out, excluded_col, before_col, after_col, k, hide, hidden) -> None:
    steps = len(out)
    if steps == 0:
        return
    excluded = [_number(v) for v in out[excluded_col]]
    befores = [_number(v) for v in out[before_col]]
    afters = [_number(v) for v in out[after_col]]
    start = befores[0]
    if is_small(start, k):
        for i in range(steps):
            for col in (before_col, excluded_col, after_col):
                if _number(out.at[i, col]):
                    hide(col, i, f"primary: starting population 1..{k - 1}")
        return
    # Cells partitioning the start: each step's excluded, then the final after.
    cells = [_Row(i, v, None, False, False) for i, v in enumerate(excluded + [afters[-1]])]
    for cell in cells:
        if is_small(cell.n, k):
            cell.hide("n", f"primary: {'persons remaining' if cell.index == steps else excluded_col} 1..{k - 1}")
    _secure_group(cells, k)
    for cell in cells[:steps]:
        if cell.state:
            primary = is_small(cell.n, k)
            hide(excluded_col, cell.index, f"primary: {excluded_col} 1..{k - 1}" if primary
                 else f"secondary: {excluded_col} recoverable from the running totals")
    final_hidden = bool(cells[steps].state)
    # Running total after step i (= before step i+1) is published only at cut
    # points: where the segment of steps since the last cut is safe.
    cut_after = [False] * steps
    segment: list[_Row] = []
    last_cut = -1
    for i in range(steps):
        segment.append(cells[i])
        if not _group_violation(segment, "n", k):
            cut_after[i] = True
            segment, last_cut = [], i
    if segment or final_hidden:
        # The tail since the last cut ends at the final count; merge backwards
        # until the tail (with the final cell) is safe.
        tail = segment + [cells[steps]]
        cut = last_cut
        while cut >= 0 and _group_violation(tail, "n", k):
            cut_after[cut] = False
            previous = cut - 1
            while previous >= 0 and not cut_after[previous]:
                previous -= 1
            tail = cells[previous + 1 : cut + 1] + tail
            cut = previous
        cut_after[steps - 1] = not final_hidden
    reason = "secondary: running total would give back a suppressed count"
    for i in range(steps):
        if not cut_after[i] and afters[i] is not None:
            hide(after_col, i, reason)
        if i + 1 < steps and not cut_after[i] and befores[i + 1] is not None:
            hide(before_col, i + 1, reason)


# --------------------------------------------------------------------------
# The last guard: scan published files
# --------------------------------------------------------------------------

# Column / key names that hold counts of persons or rows.
_COUNT_NAME = re.compile(
    r"^(n|events|non_?events|persons(_\w+)?|\w+_persons|count|\w+_count|n_\w+|excluded|included|"
    r"at_risk|n_at_risk|number_at_risk|failing_rows|rows_\w+|\w+_rows|deaths|censored|"
    r"smallest_group|persons_in_small_groups|cases|controls)$",
    re.IGNORECASE,
)
# Settings, not counts, even when named like one.
_NOT_COUNT_NAME = re.compile(r"^(min_cell_count|\w*_days|bootstrap_replicates|seed|groups_below_k)$", re.IGNORECASE)
_SKIP_JSON_KEYS = frozenset({"config"})


def is_count_column(name: str) -> bool:
    """True for a column name that holds a count of persons or rows.

    >>> [is_count_column(c) for c in ("n", "events", "persons_after", "failing_rows", "estimate", "min_cell_count")]
    [True, True, True, True, False, False]
    """
    return bool(_COUNT_NAME.match(str(name))) and not _NOT_COUNT_NAME.match(str(name))


def _scan_frame(frame: pd.DataFrame, where: str, k: int) -> list[str]:
    findings = []
    for col in frame.columns:
        if not is_count_column(col):
            continue
        values = pd.to_numeric(frame[col], errors="coerce")
        small = values[(values > 0) & (values < k)]
        if len(small):
            rows = ", ".join(str(i) for i in small.index[:5]) + (", ..." if len(small) > 5 else "")
            findings.append(f"{where}: column '{col}' has {len(small)} count(s) between 1 and {k - 1} (rows {rows})")
    return findings


def _scan_json(value: Any, where: str, path: str, k: int) -> list[str]:
    findings = []
    if isinstance(value, dict):
        for key, item in value.items():
            if str(key) in _SKIP_JSON_KEYS:
                continue
            child = f"{path}.{key}" if path else str(key)
            if isinstance(item, (int, float)) and not isinstance(item, bool) and is_count_column(str(key)):
                if is_small(item, k):
                    findings.append(f"{where}: '{child}' is a count between 1 and {k - 1}")
            else:
                findings.extend(_scan_json(item, where, child, k))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            findings.extend(_scan_json(item, where, f"{path}[{i}]", k))
    return findings


def scan_for_small_counts(path_or_frame: Any, min_cell_count: Any = 11) -> list[str]:
    """Findings (one line each) for every count 1..k-1 in a published output.

    Takes a DataFrame, a JSON-like dict/list, or a path to a CSV, Parquet or
    JSON file or to a folder (scanned recursively). Count columns are found by
    name (``n``, ``events``, ``persons*``, ``*_count``, ``excluded``,
    ``failing_rows``, ...); a JSON file's ``config`` section is skipped.
    Values themselves are not echoed.

    >>> scan_for_small_counts(pd.DataFrame({"level": ["a", "b"], "n": [40, 3]}), 11)
    ["frame: column 'n' has 1 count(s) between 1 and 10 (rows 1)"]
    """
    k = min_cell_count_of(min_cell_count)
    if isinstance(path_or_frame, pd.DataFrame):
        return _scan_frame(path_or_frame, "frame", k)
    if isinstance(path_or_frame, (dict, list)):
        return _scan_json(path_or_frame, "json", "", k)
    path = Path(path_or_frame)
    if path.is_dir():
        findings = []
        for child in sorted(path.rglob("*")):
            if child.is_file() and child.suffix.lower() in {".csv", ".parquet", ".json"}:
                findings.extend(scan_for_small_counts(child, k))
        return findings
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _scan_frame(pd.read_csv(path), str(path), k)
    if suffix == ".parquet":
        return _scan_frame(pd.read_parquet(path), str(path), k)
    if suffix == ".json":
        return _scan_json(json.loads(path.read_text(encoding="utf-8")), str(path), "", k)
    return []
