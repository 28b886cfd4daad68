"""Configuration: one TOML file (``config/default.toml``), loaded once, overridden
from the command line, checked before any work, passed down explicitly as a ``Config``.

Every default lives in ``config/default.toml`` and nowhere else: ``Config()``
*is* that file (each section fills the settings it is not given from it).
This module declares only each setting's type and allowed range, once; a
setting's sensitivity list reuses the same type, so both are held to one rule.

>>> cfg = load_config(overrides=["episodes.persistence_window_days=60", "drugs.ingredients=clonazepam,diazepam"])
>>> cfg.episodes.persistence_window_days, cfg.drugs.ingredients
(60, ('clonazepam', 'diazepam'))
>>> Config() == load_config()
True
>>> load_config(overrides=["episodes.nope=1"])
Traceback (most recent call last):
...
pipeline.errors.ConfigError: unknown setting 'episodes.nope' (known in [episodes]: persistence_window_days, stockpiling)
>>> load_config(overrides=["estimate.confidence_level=1.5"])
Traceback (most recent call last):
...
pipeline.errors.ConfigError: setting 'estimate.confidence_level' = '1.5' is not allowed: must be a number > 0 and < 1

Adding a setting: declare it (name, type, range) in its section class below and
give its value, with a comment saying why, in ``config/default.toml``. Nothing
else: parsing, ``--set``, checking, ``to_dict()`` and ``Config()`` follow, and
``tests/test_settings.py`` fails if the two disagree.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from pipeline.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "config" / "default.toml"

# Every benzodiazepine by ATC: N05BA (anxiolytics), N05CD (hypnotics and
# sedatives), N03AE01 (clonazepam, an antiepileptic). WHO ATC/DDD index 2024.
# A native extract's drugs.ingredients must be one of these or have an entry
# in drugs.mg_equivalent_to_10mg_diazepam.
BENZODIAZEPINES: tuple[str, ...] = (
    # N05BA
    "diazepam", "chlordiazepoxide", "medazepam", "oxazepam", "clorazepate", "lorazepam", "adinazolam",
    "bromazepam", "clobazam", "ketazolam", "prazepam", "alprazolam", "halazepam", "pinazepam", "camazepam",
    "nordazepam", "fludiazepam", "ethyl loflazepate", "etizolam", "clotiazepam", "cloxazolam", "tofisopam",
    "bentazepam",
    # N05CD
    "flurazepam", "nitrazepam", "flunitrazepam", "estazolam", "triazolam", "lormetazepam", "temazepam",
    "midazolam", "brotizolam", "quazepam", "loprazolam", "doxefazepam", "cinolazepam", "remimazolam",
    # N03AE01
    "clonazepam",
)

# An ingredient's name as the contract writes it: a lower-case INN ("clonazepam",
# "ethyl loflazepate"). An OMOP CDM also takes RxNorm names ("acetaminophen")
# and concept ids ("798874").
INN_SHAPE = re.compile(r"[a-z][a-z -]{0,58}[a-z]")
OMOP_DRUG_SHAPE = re.compile(r"[a-z][a-z0-9 ,.()/-]{0,98}[a-z0-9)]|[0-9]{1,18}")
MEMORY_SHAPE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB|%)\s*", re.IGNORECASE)
_BYTES = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
MIN_MEMORY_BYTES = 100 * 10**6  # DuckDB cannot run a join in less

# Types with their allowed range, each used by a setting and by its sensitivity list.
Days = Annotated[int, Ge(0), Le(36500)]
PositiveDays = Annotated[int, Ge(1), Le(36500)]
SdsCutoff = Annotated[int, Ge(1), Le(15)]  # the Severity of Dependence Scale runs 0 .. 15
Seed = Annotated[int, Ge(0), Le(2**32 - 1)]  # numpy's seeds are 0 .. 2**32 - 1
Milligrams = Annotated[float, Gt(0), Lt(100_000)]
Count = Annotated[int, Ge(2), Le(1000)]  # "several" prescribers / pharmacies
DrugName = str  # shape checked by the validators below (it depends on the extract's format)


def _default_raw(section: str) -> dict[str, Any]:
    """The ``[section]`` table of config/default.toml (the only place defaults live)."""
    return dict(_read_default_toml().get(section, {}))


@functools.cache
def _read_default_toml() -> dict[str, Any]:
    return _read_toml(DEFAULT_CONFIG_PATH)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {path}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"configuration file {path} is not valid TOML: {error}") from None


def _is_sequence(annotation: Any) -> bool:
    return typing.get_origin(annotation) is tuple


class _Settings(BaseModel):
    """Frozen, no unknown keys, no NaN / infinity."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, validate_default=True)


class _Section(_Settings):
    SECTION: ClassVar[str]

    @model_validator(mode="before")
    @classmethod
    def _defaults_from_toml(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {**_default_raw(cls.SECTION), **data}
        return data

    @field_validator("*", mode="before")
    @classmethod
    def _split_lists(cls, value: Any, info: Any) -> Any:
        """``--set section.key=a,b,c`` gives a list."""
        if isinstance(value, str) and _is_sequence(cls.model_fields[info.field_name].annotation):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value


class ExtractConfig(_Section):
    SECTION: ClassVar[str] = "extract"
    format: Literal["native", "omop"]
    extract_date: str
    # The source's name in summarised_result and the results store; empty = the extract folder's name.
    cdm_name: Annotated[str, MaxLen(100)]

    @field_validator("extract_date", mode="before")
    @classmethod
    def _toml_date(cls, value: Any) -> Any:
        """A TOML date (``extract_date = 2024-06-30``, unquoted) is taken as written."""
        return value.isoformat() if isinstance(value, dt.date) and not isinstance(value, dt.datetime) else value

    @field_validator("extract_date")
    @classmethod
    def _iso_date(cls, value: str) -> str:
        value = value.strip()
        if value:
            try:
                day = dt.date.fromisoformat(value)
            except ValueError:
                raise ValueError("must be a date written YYYY-MM-DD, or empty for today") from None
            if day.year < 1900:
                raise ValueError("must be a date after 1900, written YYYY-MM-DD, or empty for today")
        return value

    @property
    def extract_day(self) -> dt.date:
        """The extract's own date; today when not set."""
        return dt.date.fromisoformat(self.extract_date) if self.extract_date else dt.date.today()


class DrugsConfig(_Section):
    SECTION: ClassVar[str] = "drugs"
    ingredients: Annotated[tuple[DrugName, ...], MinLen(1), MaxLen(50)]
    class_level: bool
    equivalence_table: Annotated[str, MinLen(1), MaxLen(80)]
    mg_equivalent_to_10mg_diazepam: dict[DrugName, Milligrams]
    labelled_max_daily_mg: dict[DrugName, Milligrams]

    @field_validator("ingredients")
    @classmethod
    def _ingredient_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        names = tuple(item.strip().lower() for item in value)
        for name in names:
            if not OMOP_DRUG_SHAPE.fullmatch(name):
                raise ValueError(f"{name!r} is not a drug name (lower-case letters, e.g. clonazepam) "
                                 "or an OMOP concept id (digits)")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"names {', '.join(repeated)} more than once; list each drug once")
        return names

    @field_validator("mg_equivalent_to_10mg_diazepam", "labelled_max_daily_mg")
    @classmethod
    def _drug_keys(cls, value: dict[str, float]) -> dict[str, float]:
        for name in value:
            if not INN_SHAPE.fullmatch(name):
                raise ValueError(f"has the entry {name!r}: each name must be a lower-case INN such as clonazepam")
        return value


class EpisodesConfig(_Section):
    SECTION: ClassVar[str] = "episodes"
    persistence_window_days: Days
    stockpiling: bool


class CohortConfig(_Section):
    SECTION: ClassVar[str] = "cohort"
    min_age_years: Annotated[int, Ge(0), Le(120)]
    washout_days: Days


class OutcomeConfig(_Section):
    SECTION: ClassVar[str] = "outcome"
    window_after_end_days: Days
    fixed_window_days: PositiveDays
    sds_cutoff: SdsCutoff

    # The F13 codes and their roles live in ONE concept list,
    # pipeline/ingest/concept_sets/dependence_conditions.json ("outcome_codes");
    # these read-only views of it serve the OMOP loader and the report.
    @property
    def dependence_icd10_prefixes(self) -> tuple[str, ...]:
        return outcome_code_prefixes("ICD10", ("dependence", "withdrawal", "remission"))

    @property
    def dependence_icd10cm_prefixes(self) -> tuple[str, ...]:
        return outcome_code_prefixes("ICD10CM", ("dependence", "withdrawal", "remission"))

    @property
    def misuse_icd10_prefixes(self) -> tuple[str, ...]:
        return outcome_code_prefixes("ICD10", ("misuse",))


@functools.cache
def outcome_code_prefixes(code_system: str, roles: tuple[str, ...]) -> tuple[str, ...]:
    """Code prefixes (dots removed) of the concept list with one of ``roles``.

    >>> outcome_code_prefixes("ICD10", ("withdrawal",))
    ('F133', 'F134')
    """
    import json

    path = PROJECT_ROOT / "pipeline" / "ingest" / "concept_sets" / "dependence_conditions.json"
    codes = json.loads(path.read_text(encoding="utf-8"))["outcome_codes"]
    return tuple(c["code_prefix"] for c in codes if c["code_system"] == code_system and c["role"] in roles)


class MisuseConfig(_Section):
    SECTION: ClassVar[str] = "misuse"
    distinct_prescribers: Count
    distinct_pharmacies: Count
    window_days: PositiveDays
    early_refill_fraction: Annotated[float, Gt(0), Le(1)]
    early_refills: Annotated[int, Ge(1), Le(1000)]


class EstimateConfig(_Section):
    SECTION: ClassVar[str] = "estimate"
    duration_band_lower_days: Annotated[tuple[Days, ...], MinLen(2), MaxLen(50)]
    # Lower bounds of the age bands (years at episode start) above cohort.min_age_years,
    # and of the dose bands (diazepam-equivalent mg/day, starting at 0).
    age_band_lower_years: Annotated[tuple[Annotated[int, Ge(0), Le(120)], ...], MaxLen(20)]
    dose_band_lower_mg: Annotated[tuple[Annotated[float, Ge(0), Le(10000)], ...], MinLen(1), MaxLen(20)]
    headline_split_days: PositiveDays
    confidence_level: Annotated[float, Gt(0), Lt(1)]
    seed: Seed
    sensitivity_persistence_window_days: Annotated[tuple[Days, ...], MaxLen(20)]
    sensitivity_sds_cutoff: Annotated[tuple[SdsCutoff, ...], MaxLen(20)]
    sensitivity_window_after_end_days: Annotated[tuple[Days, ...], MaxLen(20)]
    # Truncated-weight sensitivity analysis: IPW weights clipped to these percentiles.
    weight_truncation_percentiles: Annotated[tuple[Annotated[float, Ge(0), Le(100)], ...], MinLen(2), MaxLen(2)]

    @field_validator("duration_band_lower_days")
    @classmethod
    def _bands(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if value[0] != 0:
            raise ValueError("must start at 0 (the first band holds the shortest episodes)")
        if any(later <= earlier for earlier, later in zip(value, value[1:])):
            raise ValueError("must be strictly increasing lower bounds, e.g. 0,14,28,56,84,182")
        return value

    @field_validator("age_band_lower_years", "dose_band_lower_mg")
    @classmethod
    def _increasing(cls, value: tuple) -> tuple:
        if any(later <= earlier for earlier, later in zip(value, value[1:])):
            raise ValueError("must be strictly increasing lower bounds, e.g. 18,35,50,65")
        return value

    @field_validator("dose_band_lower_mg")
    @classmethod
    def _dose_from_zero(cls, value: tuple) -> tuple:
        if value[0] != 0:
            raise ValueError("must start at 0 (the first band holds the lowest doses)")
        return value

    @field_validator("sensitivity_persistence_window_days", "sensitivity_sds_cutoff",
                     "sensitivity_window_after_end_days")
    @classmethod
    def _distinct(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if len(set(value)) != len(value):
            raise ValueError("lists a value more than once; list each value once")
        return value

    def band_labels(self) -> list[str]:
        """Human labels of the duration bands.

        >>> EstimateConfig(duration_band_lower_days=(0, 14, 28, 56, 84, 182)).band_labels()
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


class DisclosureConfig(_Section):
    SECTION: ClassVar[str] = "disclosure"
    # k = 1 would publish every count; 2 is the least that suppresses anything.
    min_cell_count: Annotated[int, Ge(2), Le(1000)]
    # Every published count is rounded to the middle of its band of this width
    # (docs/privacy.md); 1 and 2 would let differences pin small counts.
    rounding_base: Annotated[int, Ge(3), Le(1000)]


class WarehouseConfig(_Section):
    SECTION: ClassVar[str] = "warehouse"
    memory_limit: str
    threads: Annotated[int, Ge(0), Le(1024)]

    @field_validator("memory_limit")
    @classmethod
    def _memory(cls, value: str) -> str:
        match = MEMORY_SHAPE.fullmatch(value)
        if not match:
            raise ValueError("must be a size such as 2GB, 512MB, 4GiB or a share of the machine's memory such as 50%")
        number, unit = float(match.group(1)), match.group(2).upper()
        if unit == "%":
            if not 1 <= number <= 100:
                raise ValueError("must be a share from 1% to 100% of the machine's memory")
        elif number * _BYTES[unit] < MIN_MEMORY_BYTES:
            raise ValueError("must be at least 100MB (DuckDB needs it to run a join)")
        return value.strip()


# A Spark master (local[N], local[*], spark://host:port, yarn, k8s://...) or Spark Connect URL (sc://host:port).
SPARK_MASTER_SHAPE = re.compile(r"local(\[([0-9]+|\*)\])?|(spark|k8s|mesos)://[^\s;'\"]+|yarn")
SPARK_REMOTE_SHAPE = re.compile(r"sc://[^\s;'\"]+")
SPARK_SETTING_SHAPE = re.compile(r"(spark|hive)\.[A-Za-z0-9_.-]+")


class EngineConfig(_Section):
    """Where the SQL stages run: DuckDB on this machine (default) or Apache Spark (docs/spark.md).

    The engine changes where the work runs, never a result: it is not an analysis setting.
    """

    SECTION: ClassVar[str] = "engine"
    name: Literal["duckdb", "spark"]
    master: str
    remote: str
    warehouse_dir: str
    settings: dict[str, str]

    @field_validator("master")
    @classmethod
    def _master(cls, value: str) -> str:
        if not SPARK_MASTER_SHAPE.fullmatch(value.strip()):
            raise ValueError("must be a Spark master such as local[2], local[*], spark://host:7077 or yarn")
        return value.strip()

    @field_validator("remote")
    @classmethod
    def _remote(cls, value: str) -> str:
        if value.strip() and not SPARK_REMOTE_SHAPE.fullmatch(value.strip()):
            raise ValueError("must be empty or a Spark Connect URL such as sc://host:15002")
        return value.strip()

    @field_validator("settings", mode="before")
    @classmethod
    def _settings(cls, value: Any) -> Any:
        if isinstance(value, dict):
            bad = [key for key in value if not SPARK_SETTING_SHAPE.fullmatch(str(key))]
            if bad:
                raise ValueError("keys must be Spark settings such as spark.sql.shuffle.partitions")
            return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}
        return value


class DemoConfig(_Section):
    SECTION: ClassVar[str] = "demo"
    seed: Seed
    persons: Annotated[int, Ge(200), Le(9_000_000)]  # the generator's own bounds


class Config(_Settings):
    extract: ExtractConfig
    drugs: DrugsConfig
    episodes: EpisodesConfig
    cohort: CohortConfig
    outcome: OutcomeConfig
    misuse: MisuseConfig
    estimate: EstimateConfig
    disclosure: DisclosureConfig
    warehouse: WarehouseConfig
    demo: DemoConfig
    engine: EngineConfig

    def __init__(self, **sections: Any) -> None:
        """Every setting checked; a mistake is a ConfigError with one line per wrong setting."""
        try:
            super().__init__(**sections)
        except ValidationError as error:
            raise ConfigError(describe_errors(error)) from None

    @model_validator(mode="before")
    @classmethod
    def _every_section(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {name: data.get(name, {}) for name in cls.model_fields} | data
        return data

    @model_validator(mode="after")
    def _known_drugs(self) -> "Config":
        """A native extract names drugs by INN: each must be a benzodiazepine the pipeline knows."""
        if self.extract.format == "native":
            known = set(BENZODIAZEPINES) | set(self.drugs.mg_equivalent_to_10mg_diazepam)
            unknown = [name for name in self.drugs.ingredients if name not in known]
            if unknown:
                raise ValueError(
                    f"setting 'drugs.ingredients' = {','.join(unknown)!r} is not allowed: a native extract's drugs must "
                    "be benzodiazepines (ATC N05BA, N05CD, N03AE01: clonazepam, diazepam, alprazolam, lorazepam, ...; "
                    "the list is BENZODIAZEPINES in pipeline/config.py) or have a dose under "
                    "[drugs.mg_equivalent_to_10mg_diazepam]; an OMOP CDM (--format omop) takes any RxNorm ingredient"
                )
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every setting (printed with every result)."""
        return self.model_dump(mode="json")

    def replace(self, **sections: dict[str, Any]) -> "Config":
        """A checked copy with some settings changed, e.g. ``cfg.replace(outcome={"sds_cutoff": 6})``."""
        data = self.model_dump()
        for name, values in sections.items():
            if name not in data:
                raise ConfigError(f"unknown configuration section [{name}] (known: {', '.join(data)})")
            data[name] = {**data[name], **values}
        return Config(**data)


SECTIONS: dict[str, type[_Section]] = {
    name: typing.cast(type[_Section], field.annotation) for name, field in Config.model_fields.items()
}


# --------------------------------------------------------------------------- one line per mistake


def _bounds(metadata: list[Any]) -> str:
    words = []
    for item in metadata:
        for kind, attribute, symbol in ((Ge, "ge", ">="), (Gt, "gt", ">"), (Le, "le", "<="), (Lt, "lt", "<")):
            if isinstance(item, kind):
                bound = getattr(item, attribute)
                words.append(f"{symbol} {bound:,}" if isinstance(bound, int) and bound >= 10_000 else f"{symbol} {bound}")
    return " and ".join(words)


def _allowed(annotation: Any, metadata: list[Any] | None = None) -> str:
    """What a setting of this type may be, in words."""
    metadata = list(metadata or [])
    if typing.get_origin(annotation) is Annotated:
        annotation, *extra = typing.get_args(annotation)
        metadata += extra
    bounds = _bounds(metadata)
    origin = typing.get_origin(annotation)
    if annotation is bool:
        return "true or false (also on/off, yes/no)"
    if annotation is int:
        return f"a whole number {bounds}".rstrip()
    if annotation is float:
        return f"a number {bounds}".rstrip()
    if origin is Literal:
        return "one of " + ", ".join(str(v) for v in typing.get_args(annotation))
    if origin is tuple:
        size = [m for m in metadata if isinstance(m, MinLen) and m.min_length > 0]
        return ("a comma-separated list" + (" of at least one" if size else "") +
                ", each " + _allowed(typing.get_args(annotation)[0]))
    if origin is dict:
        return "a table of drug = " + _allowed(typing.get_args(annotation)[1])
    if annotation is str:
        return "text"
    if isinstance(annotation, types.UnionType):
        return " or ".join(_allowed(a) for a in typing.get_args(annotation))
    return str(annotation)


def describe_errors(error: ValidationError) -> str:
    """One line per wrong setting: its name, the value given and what is allowed."""
    lines: list[str] = []
    seen: set[str] = set()
    for item in error.errors():
        loc = [str(part) for part in item["loc"]]
        message = item["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if len(loc) < 2:  # a check across settings names them itself
            line = message
            name = line
        else:
            name = f"{loc[0]}.{loc[1]}"
            cls = SECTIONS.get(loc[0])
            field = cls.model_fields.get(loc[1]) if cls else None
            if item["type"] == "extra_forbidden" or field is None:
                known = ", ".join(sorted(cls.model_fields)) if cls else ", ".join(SECTIONS)
                line = f"unknown setting '{name}' (known in [{loc[0]}]: {known})"
            elif item["type"] == "too_short":
                line = f"setting '{name}' = {_shown(item['input'])} is not allowed: must list at least one value"
            elif item["type"] == "value_error":
                line = f"setting '{name}' = {_shown(item['input'])} is not allowed: {message}"
            elif len(loc) > 2:  # one entry of a list or table
                annotation = field.annotation
                args = typing.get_args(annotation)
                entry = {tuple: args[:1], dict: args[-1:]}.get(typing.get_origin(annotation), [annotation])[0]
                where = f"entry {loc[2]!r}" if typing.get_origin(annotation) is dict else "a value"
                line = (f"setting '{name}' has {where} {_shown(item['input'])} that is not allowed: "
                        f"each must be {_allowed(entry)}")
            else:
                line = f"setting '{name}' = {_shown(item['input'])} is not allowed: must be {_allowed(field.annotation, field.metadata)}"
        if name not in seen:
            seen.add(name)
            lines.append(line)
    return "\n".join(lines)


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


# --------------------------------------------------------------------------- loading


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``section.key=value`` (or ``section.table.entry=value``) strings as nested TOML-like tables.

    >>> parse_overrides(["episodes.stockpiling=on", "drugs.mg_equivalent_to_10mg_diazepam.clorazepate=7.5"])
    {'episodes': {'stockpiling': 'on'}, 'drugs': {'mg_equivalent_to_10mg_diazepam': {'clorazepate': '7.5'}}}
    """
    raw: dict[str, dict[str, Any]] = {}
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        dotted, value = item.split("=", 1)
        section, key = (part.strip() for part in dotted.split(".", 1))
        key, _, entry = key.partition(".")
        if entry:
            raw.setdefault(section, {}).setdefault(key, {})
            if not isinstance(raw[section][key], dict):
                raise ConfigError(f"override {item!r}: '{section}.{key}' is set twice")
            raw[section][key][entry.strip()] = value.strip()
        else:
            raw.setdefault(section, {})[key] = value.strip()
    return raw


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _check_names(raw: dict[str, Any]) -> None:
    for section, values in raw.items():
        if section not in SECTIONS:
            raise ConfigError(f"unknown configuration section [{section}] (known: {', '.join(SECTIONS)})")
        if not isinstance(values, dict):
            raise ConfigError(f"configuration section [{section}] must be a table of settings")
        known = SECTIONS[section].model_fields
        for key in values:
            if key not in known:
                raise ConfigError(f"unknown setting '{section}.{key}' (known in [{section}]: {', '.join(sorted(known))})")


def load_config(path: Path | str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load the TOML configuration, apply ``section.key=value`` overrides, check every setting.

    A file other than default.toml need only hold the settings it changes.
    """
    raw = {section: dict(values) for section, values in _read_default_toml().items()}
    if path:
        given = _read_toml(Path(path))
        _check_names(given)
        for section, values in given.items():  # a setting (or a whole table) given replaces the default
            raw.setdefault(section, {}).update(values)
    raw = _merge(raw, parse_overrides(overrides))  # one entry of a table changes that entry only
    _check_names(raw)
    return Config(**raw)
