"""The published anchors, each figure once (sources in docs/estimation.md, "Anchors").

The estimate stage estimates the groups comparable to them (``run.anchor_rows``);
the report draws them as reference marks and quotes them. Both read them here.

>>> MARRIOTT_TYRER.days, round(MARRIOTT_TYRER.value, 3), RICKELS.days, RICKELS.short_value, RICKELS.long_value
(28, 0.333, 240, 0.05, 0.43)
>>> RICKELS.months
8
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MarriottTyrer:
    """Marriott & Tyrer 1993: dependence in "almost one-third" of patients on regular prescriptions
    for 4 weeks or longer."""

    key: str = "marriott_tyrer_1993"
    short: str = "Marriott & Tyrer 1993"
    citation: str = "Marriott & Tyrer 1993 (Drug Safety 9:93-103)"
    days: int = 28  # "4 weeks or longer"
    value: float = 1 / 3  # "almost one-third"
    value_words: str = "almost one-third"
    chart_label: str = "Marriott & Tyrer 1993: ~1 in 3"

    @property
    def finding(self) -> str:
        return (f'{self.citation}: dependence in "{self.value_words}" of patients on regular prescriptions for '
                f"{self.days // 7} weeks or longer")


@dataclass(frozen=True)
class Rickels:
    """Rickels et al. 1983: withdrawal in 5% after less than 8 months of diazepam, 43% after 8 months or more."""

    key: str = "rickels_1983"
    short: str = "Rickels et al. 1983"
    citation: str = "Rickels et al. 1983 (JAMA 250:767-71)"
    months: int = 8
    days: int = 240  # 8 months, as 30-day months
    short_value: float = 0.05
    long_value: float = 0.43

    @property
    def finding(self) -> str:
        return (f"{self.citation}: withdrawal in {self.short_value:.0%} after less than {self.months} months of use "
                f"vs {self.long_value:.0%} after {self.months} months or more")


MARRIOTT_TYRER = MarriottTyrer()
RICKELS = Rickels()
