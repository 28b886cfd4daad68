"""Configuration: one TOML file (``config/default.toml``), loaded once, overridden
from the command line, passed down explicitly as a ``Config``.

>>> cfg = load_config(overrides=["episodes.persistence_window_days=60", "drugs.ingredients=clonazepam,diazepam"])
>>> cfg.episodes.persistence_window_days, cfg.drugs.ingredients
(60, ('clonazepam', 'diazepam'))
>>> load_config(overrides=["episodes.nope=1"])
Traceback (most recent call last):
...
pipeline.errors.ConfigError: unknown setting 'episodes.nope' (known in [episodes]: persistence_window_days, stockpiling)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "config" / "default.toml"


@dataclass(frozen=True)
class ExtractConfig:
    format: str = "native"
    extract_date: str = ""
    cdm_name: str = ""  # the source's name in summarised_result; empty = the extract folder's name

    @property
    def extract_day(self) -> dt.date:
        """The extract's own date; today when not set."""
        return dt.date.fromisoformat(self.extract_date) if self.extract_date else dt.date.today()


@dataclass(frozen=True)
class DrugsConfig:
    ingredients: tuple[str, ...] = ("clonazepam",)
    class_level: bool = False
    equivalence_table: str = "Ashton"
    mg_equivalent_to_10mg_diazepam: dict[str, float] = field(default_factory=dict)
    labelled_max_daily_mg: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EpisodesConfig:
    persistence_window_days: int = 30
    stockpiling: bool = False


@dataclass(frozen=True)
class CohortConfig:
    min_age_years: int = 18
    washout_days: int = 365


@dataclass(frozen=True)
class OutcomeConfig:
    window_after_end_days: int = 90
    sds_cutoff: int = 7
    dependence_icd10_prefixes: tuple[str, ...] = ("F132", "F133", "F134")
    dependence_icd10cm_prefixes: tuple[str, ...] = ("F132", "F1313", "F1393")
    misuse_icd10_prefixes: tuple[str, ...] = ("F131",)


@dataclass(frozen=True)
class MisuseConfig:
    distinct_prescribers: int = 3
    distinct_pharmacies: int = 3
    window_days: int = 180
    early_refill_fraction: float = 0.75
    early_refills: int = 2


@dataclass(frozen=True)
class EstimateConfig:
    duration_band_lower_days: tuple[int, ...] = (0, 14, 28, 56, 84, 182)
    headline_split_days: int = 28
    confidence_level: float = 0.95
    seed: int = 20261122
    sensitivity_persistence_window_days: tuple[int, ...] = (10, 30, 60)
    sensitivity_sds_cutoff: tuple[int, ...] = (6, 7, 8)
    sensitivity_window_after_end_days: tuple[int, ...] = (30, 90, 180)

    def band_labels(self) -> list[str]:
        """Human labels of the duration bands.

        >>> EstimateConfig().band_labels()
        ['<14', '14-27', '28-55', '56-83', '84-181', '>=182']
        """
        lows = list(self.duration_band_lower_days)
        labels = []
        for i, low in enumerate(lows):
            if i == 0:
                labels.append(f"<{lows[1]}")
            elif i == len(lows) - 1:
                labels.append(f">={low}")
            else:
                labels.append(f"{low}-{lows[i + 1] - 1}")
        return labels


@dataclass(frozen=True)
class DisclosureConfig:
    min_cell_count: int = 11


@dataclass(frozen=True)
class WarehouseConfig:
    memory_limit: str = "2GB"
    threads: int = 0


@dataclass(frozen=True)
class DemoConfig:
    seed: int = 20261122
    persons: int = 20000


@dataclass(frozen=True)
class Config:
    extract: ExtractConfig = ExtractConfig()
    drugs: DrugsConfig = DrugsConfig()
    episodes: EpisodesConfig = EpisodesConfig()
    cohort: CohortConfig = CohortConfig()
    outcome: OutcomeConfig = OutcomeConfig()
    misuse: MisuseConfig = MisuseConfig()
    estimate: EstimateConfig = EstimateConfig()
    disclosure: DisclosureConfig = DisclosureConfig()
    warehouse: WarehouseConfig = WarehouseConfig()
    demo: DemoConfig = DemoConfig()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every setting (printed with every result)."""
        return _jsonable(dataclasses.asdict(self))

    def replace(self, **sections: dict[str, Any]) -> "Config":
        """A copy with some settings changed, e.g. ``cfg.replace(outcome={"sds_cutoff": 6})``."""
        changed = {}
        for name, values in sections.items():
            changed[name] = dataclasses.replace(getattr(self, name), **values)
        return dataclasses.replace(self, **changed)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value



def _coerce(section: str, key: str, value: Any, default: Any) -> Any:
    """Turn a TOML value or a command-line string into the type of the default."""
    name = f"{section}.{key}"
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered in {"true", "on", "yes", "1"}:
                    return True
                if lowered in {"false", "off", "no", "0"}:
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(default, tuple):
            items = value.split(",") if isinstance(value, str) else list(value)
            kind = type(default[0]) if default else str
            return tuple(kind(item.strip() if isinstance(item, str) else item) for item in items if str(item).strip())
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ValueError(value)
            return {str(k): float(v) for k, v in value.items()}
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"setting '{name}' must be like {default!r}, got {value!r}") from None


def _build(raw: dict[str, dict[str, Any]]) -> Config:
    sections = {}
    types = {f.name: f.default.__class__ for f in dataclasses.fields(Config)}
    for section, values in raw.items():
        if section not in types:
            raise ConfigError(f"unknown configuration section [{section}] (known: {', '.join(types)})")
        cls = types[section]
        defaults = cls()
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(
                    f"unknown setting '{section}.{key}' (known in [{section}]: {', '.join(sorted(known))})"
                )
            kwargs[key] = _coerce(section, key, value, getattr(defaults, key))
        sections[section] = cls(**kwargs)
    return Config(**sections)


def load_config(path: Path | str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load the TOML configuration and apply ``section.key=value`` overrides."""
    path = Path(path) if path else DEFAULT_CONFIG_PATH
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {path}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"configuration file {path} is not valid TOML: {error}") from None
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"override '{item}' must look like section.key=value")
        dotted, value = item.split("=", 1)
        section, key = dotted.strip().split(".", 1)
        raw.setdefault(section, {})[key] = value.strip()
    return _build(raw)
