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
* **Group links**: the cells of a group (same ``analysis, estimand, population,
  variable, method, time_days``; levels partition the same persons) add up to a total that we
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

# estimand and population: columns of ``estimates`` (pipeline/estimate/columns.py); absent ones are ignored
DEFAULT_GROUP_COLS = ("analysis", "estimand", "population", "variable", "method", "time_days")
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


def published_number(value: Any) -> float | None:
    """A published cell read as a number: None when it is empty, suppressed, text,
    a boolean, NaN or infinite (the one reading disclosure control, the release
    checker, the network packages and the attacker tests share).

    >>> [published_number(v) for v in (13, "13", 0.25, None, "", "-", True, float("nan"), float("inf"))]
    [13.0, 13.0, 0.25, None, None, None, None, None, None]
    """
    if value is None or value is pd.NA or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


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
    n_values = out[n_col].map(published_number) if n_col in out else pd.Series([None] * len(out), dtype=object)
    e_values = out[events_col].map(published_number) if events_col in out else pd.Series([None] * len(out), dtype=object)
    levels = out["level"].astype("string").str.strip().str.lower() if "level" in out else pd.Series([""] * len(out))
    times = out["time_days"].map(published_number) if "time_days" in out else pd.Series([None] * len(out), dtype=object)

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
    """The headline.json dict (docs/report.md) with its counts suppressed.

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
            values = [published_number(v) for v in out[col]]
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
    excluded = [published_number(v) for v in out[excluded_col]]
    befores = [published_number(v) for v in out[before_col]]
    afters = [published_number(v) for v in out[after_col]]
    start = befores[0]
    if is_small(start, k):
        for i in range(steps):
            for col in (before_col, excluded_col, after_col):
                if published_number(out.at[i, col]):
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
# Rounding: after suppression, every published count is rounded
# --------------------------------------------------------------------------

# Steps a published proportion / interval bound is rounded to (see ``estimate_step``).
_STEPS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
# Rows of the long estimates table whose ``estimate`` is itself a (weighted) count of
# persons: the Kish effective sample size of the ascertainment weights.
WEIGHTED_COUNT_VARIABLES = frozenset({"ess"})


def rounding_base_of(setting: Any) -> int:
    """``b`` from an int or a ``Config`` (``config.disclosure.rounding_base``), at least 3.

    1 (no rounding) is refused: differences of exact counts give small counts
    back. 2 is refused too: two counts in the same band of two differ by 0 or 1,
    and a suppressed count known to be 1..k-1 would be pinned at 1.

    >>> from pipeline.config import Config
    >>> rounding_base_of(Config()), rounding_base_of(10)
    (5, 10)
    >>> rounding_base_of(2)
    Traceback (most recent call last):
    ...
    pipeline.errors.ConfigError: setting 'disclosure.rounding_base' must be at least 3 (see docs/privacy.md), got 2
    """
    from pipeline.errors import ConfigError

    b = setting.disclosure.rounding_base if hasattr(setting, "disclosure") else setting
    try:
        b = int(b)
    except (TypeError, ValueError):
        raise ConfigError(f"setting 'disclosure.rounding_base' must be an integer, got {b!r}") from None
    if b < 3:
        raise ConfigError(f"setting 'disclosure.rounding_base' must be at least 3 (see docs/privacy.md), got {b}")
    return b


def _base(setting: Any) -> int:
    # The setting is checked by ``rounding_base_of``; the functions below also take a
    # plain int, 1 included (no rounding), so tests can build an unrounded release.
    return rounding_base_of(setting) if hasattr(setting, "disclosure") else int(setting)


def round_count(value: Any, min_cell_count: int, base: int) -> int | None:
    """A count as published: 0 stays 0, ``x >= k`` goes to the middle of its band of ``base``
    values, bands starting at ``k`` (k..k+b-1, k+b..k+2b-1, ...). Null stays null.

    Weighted (non-integer) counts are banded by their integer part. A count from 1 to
    k-1 must have been suppressed before: it raises rather than being published.

    >>> [round_count(v, 11, 5) for v in (0, 11, 12, 15, 16, 20, 21, 1234.7, None)]
    [0, 13, 13, 13, 18, 18, 23, 1233, None]
    >>> [round_count(v, 11, 1) for v in (0, 11, 12)]
    [0, 11, 12]
    >>> round_count(3, 11, 5)
    Traceback (most recent call last):
    ...
    ValueError: count 1..10 reached rounding unsuppressed
    """
    number = published_number(value)
    if number is None:
        return None
    if number < 0:
        raise ValueError("a count cannot be negative")
    whole = math.floor(number + 1e-9)
    if whole <= 0 and number < 1:
        if number > 0:
            raise ValueError(f"count 1..{min_cell_count - 1} reached rounding unsuppressed")
        return 0
    if whole < min_cell_count:
        raise ValueError(f"count 1..{min_cell_count - 1} reached rounding unsuppressed")
    band_start = min_cell_count + base * ((whole - min_cell_count) // base)
    return int(band_start + (base - 1) // 2)


def count_band(published: Any, min_cell_count: int, base: int) -> tuple[int, int] | None:
    """What a published count says about the true count: the closed range it came from.

    >>> count_band(13, 11, 5), count_band(0, 11, 5), count_band(None, 11, 5)
    ((11, 15), (0, 0), None)
    """
    number = published_number(published)
    if number is None:
        return None
    if number == 0:
        return (0, 0)
    low = int(number) - (base - 1) // 2
    return (low, low + base - 1)


def is_published_count(value: Any, min_cell_count: int, base: int) -> bool:
    """True for a value the policy can publish as a count: null, 0, or the middle of a band.

    >>> [is_published_count(v, 11, 5) for v in (None, 0, 13, 18, 10, 11, 14, 12.5)]
    [True, True, True, True, False, False, False, False]
    """
    number = published_number(value)
    if number is None or number == 0:
        return True
    if number != math.floor(number) or number < min_cell_count:
        return False
    return (int(number) - min_cell_count) % base == (base - 1) // 2


def estimate_step(n_published: Any, base: int) -> float | None:
    """The step a non-count estimate computed over ``n`` persons is rounded to: the
    smallest of 0.0001, 0.0002, 0.0005, 0.001, ... with ``step * n >= base``, so that
    ``estimate * n`` is uncertain by at least ``base`` persons -- no sharper than the
    rounded count itself. None when there is nothing to round (no rounding, no n).

    >>> estimate_step(10_898, 5), estimate_step(303, 5), estimate_step(23, 5), estimate_step(100, 1)
    (0.0005, 0.02, 0.5, None)
    """
    n = published_number(n_published)
    if base <= 1 or n is None or n <= 0:
        return None
    need = base / n
    return next((step for step in _STEPS if step >= need - 1e-12), 1.0)


def round_to_step(value: Any, step: float | None) -> float | None:
    """``value`` rounded to a multiple of ``step`` (unchanged without a step).

    >>> round_to_step(0.38302, 0.0005), round_to_step(None, 0.1), round_to_step(0.123, None)
    (0.383, None, 0.123)
    """
    number = published_number(value)
    if number is None:
        return None
    if step is None or not math.isfinite(number):
        return number  # an infinite odds ratio (a level with no events) says nothing more than its counts
    decimals = max(0, -math.floor(math.log10(step)) + 1)
    return round(round(number / step) * step, decimals)


def wilson_interval(events: float, n: float, level: float) -> tuple[float | None, float | None]:
    """Wilson score interval of ``events / n``.

    >>> [round(x, 4) for x in wilson_interval(20, 100, 0.95)]
    [0.1334, 0.2888]
    """
    from statistics import NormalDist

    if not n:
        return None, None
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = events / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _is_plain_proportion(estimate: float | None, n: float | None, events: float | None) -> bool:
    return (estimate is not None and n is not None and events is not None and n > 0
            and abs(estimate - events / n) <= 1e-9)


def round_estimates(table: pd.DataFrame, min_cell_count: Any = 11, base: Any = 5,
                    confidence_level: float = 0.95) -> pd.DataFrame:
    """The suppressed long estimates table with every count rounded and every estimate
    made unable to give an exact count back (see docs/privacy.md, "Rounding"):

    * ``n`` and ``events`` -> ``round_count``; the ``estimate`` of a weighted-count row
      (``variable`` in ``WEIGHTED_COUNT_VARIABLES``) too.
    * A plain proportion (``estimate == events / n``) is republished as
      rounded events / rounded n with the Wilson interval of those rounded counts:
      ``estimate * n`` then gives the rounded count back, nothing more.
    * Any other estimate with an ``n`` (weighted, Aalen-Johansen, ratios) and its
      interval are rounded to ``estimate_step(n)`` -- for a curve, the largest ``n`` of
      the curve (its starting population): ``estimate * n`` is then uncertain by at
      least ``base`` persons.

    >>> t = pd.DataFrame({"analysis": "a", "variable": "sex", "level": ["F", "M"], "time_days": None,
    ...                   "n": [200, 1000], "events": [50, 300], "estimate": [0.25, 0.31234],
    ...                   "ci_low": [0.19, 0.28], "ci_high": [0.31, 0.34], "method": "m"})
    >>> round_estimates(t, 11, 5)[["n", "events", "estimate", "ci_low"]].round(4)
         n  events  estimate  ci_low
    0  198      48    0.2424   0.188
    1  998     298      0.31    0.28
    """
    k, b = min_cell_count_of(min_cell_count), _base(base)
    out = table.copy().reset_index(drop=True)
    if out.empty:
        return out
    columns = [c for c in ("n", "events", "estimate", "ci_low", "ci_high") if c in out]
    values = {c: [published_number(v) for v in out[c].tolist()] for c in columns}
    rows = len(out)
    n_raw = values.get("n", [None] * rows)
    e_raw = values.get("events", [None] * rows)
    est = values.get("estimate", [None] * rows)
    low = values.get("ci_low", [None] * rows)
    high = values.get("ci_high", [None] * rows)
    n_pub = [round_count(v, k, b) for v in n_raw]
    e_pub = [round_count(v, k, b) for v in e_raw]
    variables = out["variable"].astype("string").fillna("").tolist() if "variable" in out else [""] * rows
    # A curve's starting population: the largest n over its points.
    curve_n: dict[tuple, float] = {}
    curve_key = [None] * rows
    if "time_days" in out:
        times = [published_number(v) for v in out["time_days"].tolist()]
        keys = [tuple("" if pd.isna(x) else str(x) for x in row)
                for row in out.reindex(columns=["analysis", "variable", "level", "method"]).itertuples(index=False)]
        for i in range(rows):
            if times[i] is not None and n_pub[i] is not None:
                curve_key[i] = keys[i]
                curve_n[keys[i]] = max(curve_n.get(keys[i], 0), n_pub[i])
    new_est, new_low, new_high = list(est), list(low), list(high)
    for i in range(rows):
        if variables[i] in WEIGHTED_COUNT_VARIABLES and est[i] is not None:
            new_est[i] = None if is_small(est[i], k) else round_count(est[i], k, b)
            continue
        if b == 1 or est[i] is None:
            continue
        if _is_plain_proportion(est[i], n_raw[i], e_raw[i]) and n_pub[i]:
            new_est[i] = e_pub[i] / n_pub[i]
            if low[i] is not None and high[i] is not None:
                new_low[i], new_high[i] = wilson_interval(e_pub[i], n_pub[i], confidence_level)
            continue
        reference = curve_n.get(curve_key[i]) if curve_key[i] is not None else n_pub[i]
        step = estimate_step(reference, b)
        if step is not None:
            new_est[i], new_low[i], new_high[i] = (round_to_step(v, step) for v in (est[i], low[i], high[i]))
    if "n" in out:
        out["n"] = pd.array(n_pub, dtype="Int64")
    if "events" in out:
        out["events"] = pd.array(e_pub, dtype="Int64")
    for col, new in (("estimate", new_est), ("ci_low", new_low), ("ci_high", new_high)):
        if col in out:
            out[col] = pd.array(new, dtype="Float64")
    return out


def round_count_columns(frame: pd.DataFrame, count_cols: Sequence[str], min_cell_count: Any = 11,
                        base: Any = 5) -> pd.DataFrame:
    """A suppressed count table with its count columns rounded (``round_count``).

    >>> round_count_columns(pd.DataFrame({"excluded": [0, 12, None]}), ["excluded"], 11, 5)["excluded"].tolist()
    [0, 13, <NA>]
    """
    k, b = min_cell_count_of(min_cell_count), _base(base)
    out = frame.copy()
    for col in count_cols:
        if col in out:
            out[col] = pd.array([round_count(v, k, b) for v in out[col].tolist()], dtype="Int64")
    return out


def publish_count(value: Any, min_cell_count: Any = 11, base: Any = 5) -> int | None:
    """One count as published on its own: suppressed (None) when 1..k-1, else rounded.

    >>> publish_count(7, 11, 5), publish_count(0, 11, 5), publish_count(20_001, 11, 5)
    (None, 0, 20003)
    """
    k, b = min_cell_count_of(min_cell_count), _base(base)
    return None if is_small(value, k) else round_count(value, k, b)


# --------------------------------------------------------------------------
# The last guard: scan published files
# --------------------------------------------------------------------------

# Column / key names that hold counts of persons or rows.
_COUNT_NAME = re.compile(
    r"^(n|events|non_?events|persons(_\w+)?|\w+_persons|count|\w+_count|n_\w+|excluded|included|"
    r"at_risk|n_at_risk|number_at_risk|failing_rows|rows_\w+|\w+_rows|deaths|censored|"
    r"smallest_group|persons_in_small_groups|groups_below_k|persons_in_groups_below_k|cases|controls|total|"
    r"total_rows|rows|ess|effective_n)$",
    re.IGNORECASE,
)
# Settings, not counts, even when named like one.
# Settings (flattened as <section>_<key> in settings.csv) and file hashes are not counts.
_NOT_COUNT_NAME = re.compile(
    r"^(min_cell_count|rounding_base|\w*_days|bootstrap_replicates|seed|\w*sha256\w*|"
    r"(extract|drugs|episodes|cohort|outcome|misuse|estimate|disclosure|warehouse|demo)_\w+)$",
    re.IGNORECASE,
)
_SKIP_JSON_KEYS = frozenset({"config"})


def is_count_column(name: str) -> bool:
    """True for a column name that holds a count of persons or rows.

    >>> [is_count_column(c) for c in ("n", "events", "persons_after", "failing_rows", "estimate", "min_cell_count")]
    [True, True, True, True, False, False]
    >>> [is_count_column(c) for c in ("extract_sha256_persons", "demo_persons", "n_assessed")]
    [False, False, True]
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
