"""How numbers read in the report: percentages, counts, intervals, escaped text.

>>> pct(0.3149), pct(None), pct(0.0), count(12345), number(1.234), ci_text(0.1, 0.2, 0.95)
('31.5%', 'not published', '0.0%', '12,345', '1.23', '95% CI 10.0% to 20.0%')
"""

from __future__ import annotations

import html
import math
from typing import Any, Callable

import pandas as pd


def missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def pct(value: Any, digits: int = 1) -> str:
    """A proportion as a percentage; 'not published' for a null."""
    return "not published" if missing(value) else f"{100 * float(value):.{digits}f}%"


def count(value: Any) -> str:
    return "not published" if missing(value) else f"{int(value):,}"


def number(value: Any, digits: int = 2) -> str:
    return "not published" if missing(value) else f"{float(value):.{digits}f}"


def ci_text(low: Any, high: Any, level: float, fmt: Callable[[Any], str] = pct) -> str:
    if missing(low) or missing(high):
        return "interval not available"
    return f"{round(100 * level)}% CI {fmt(low)} to {fmt(high)}"


def esc(value: Any) -> str:
    return html.escape("" if missing(value) else str(value))
