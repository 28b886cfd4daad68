"""Published (already disclosure-controlled) tables -> summarised_result rows and settings.

Input is ``pipeline.publish.tables.Published``: its ``estimates`` and
``attrition`` frames have been through ``pipeline.privacy.disclosure``, so a
count here is exactly what the exports publish (suppressed = null, rounded
when the disclosure module rounds). Nothing is recomputed.

How each analysis of the long ``estimates`` table maps is in ``_SPECS``; an
analysis not listed there is still exported (``_generic``), never dropped.
Every choice is made from the rows' explicit columns (pipeline/estimate/columns.py),
never from ``method``: a row's ``population`` other than ``all`` becomes a stratum
(``headline_group``), its estimator's kind (primary / complete case / descriptive)
and its ``estimand`` become settings of its ``result_id``, its ``estimate_name``
picks the shape where an analysis holds several quantities.

>>> _population("gt_split"), _population("all"), _population("dependent")
([('headline_group', 'gt_4_weeks')], [], [('dependence', 'dependent')])
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd

from pipeline import __version__
from pipeline.config import Config
from pipeline.estimate.columns import HEADLINE_GROUP_POPULATIONS, estimator_kind, result_type
from pipeline.results.contract import (
    COLUMNS,
    OVERALL,
    PACKAGE_NAME,
    SUPPRESSED,
    ci_label,
    estimate_type,
    format_value,
    join_names,
)

DEFAULT_ESTIMAND = "episode_window"  # attrition's (it is about the cohort, before any estimand)
# population -> the stratum it is in summarised_result (headline groups keep their level names)
_POPULATION_STRATA = {population: ("headline_group", group) for group, population in HEADLINE_GROUP_POPULATIONS.items()
                      if population != "all"} | {"dependent": ("dependence", "dependent")}
_DOSE_RESPONSE_MODELS = {"logistic_or_ipw": ("bands", "estimate"), "logistic_or_ipw_trend": ("trend", "estimate"),
                         "reference_level": ("bands", "reference")}
_WEIGHT_STATS = {"min": "min", "p50": "p50", "p99": "p99", "max": "max", "ess": "effective_sample_size"}


@dataclass
class _Shape:
    """Where one estimates row goes: strata, variable, additional, and which column is which estimate."""

    strata: list[tuple[str, str]] = field(default_factory=list)
    variable_name: str = "dependence"
    variable_level: str | None = None
    additional: list[tuple[str, str]] = field(default_factory=list)
    estimates: dict[str, str] = field(default_factory=dict)  # estimates-table column -> estimate name stem


def _text(value: Any) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    return str(value)


def _population(population: str | None) -> list[tuple[str, str]]:
    return [] if population in (None, "all") else [_POPULATION_STRATA[population]]


def _group_stratum(level: str) -> list[tuple[str, str]]:
    return [] if level == "all" else [("headline_group", level)]


_PROPORTION = {"n": "denominator_count", "events": "outcome_count", "n_assessed": "assessed_count",
               "estimate": "proportion", "ci_low": "proportion_lower", "ci_high": "proportion_upper"}


def _headline(row, variable, population, level):
    return _Shape(strata=_group_stratum(level), estimates=_PROPORTION)


def _by_level(row, variable, population, level):
    return _Shape(strata=_population(population) + [(variable, level)], estimates=_PROPORTION)


def _components(row, variable, population, level):
    return _Shape(strata=_group_stratum(level), variable_name=row["estimate_name"], estimates=_PROPORTION)


def _curve(row, variable, population, level):
    return _Shape(strata=_group_stratum(level), additional=[("time_days", _text(row.get("time_days")) or "")],
                  estimates={"n": "number_at_risk_count", "events": "cumulative_outcome_count",
                             "estimate": "cumulative_incidence", "ci_low": "cumulative_incidence_lower",
                             "ci_high": "cumulative_incidence_upper"})


def _dose_response(row, variable, population, level):
    model, role = _DOSE_RESPONSE_MODELS[row["estimator"]]
    return _Shape(variable_name=variable, variable_level=level, additional=[("model", model), ("term_role", role)],
                  estimates={"n": "denominator_count", "events": "outcome_count", "estimate": "odds_ratio",
                             "ci_low": "odds_ratio_lower", "ci_high": "odds_ratio_upper"})


def _tolerance(row, variable, population, level):
    strata = [] if level == "all" else [(variable, level)]
    if row["estimate_name"] == "dose_escalation_ratio":
        return _Shape(strata=strata, variable_name="dose_escalation_ratio",
                      estimates={"n": "denominator_count", "estimate": "median", "ci_low": "median_lower",
                                 "ci_high": "median_upper"})
    return _Shape(strata=strata, variable_name="dose_increase", estimates=_PROPORTION)


def _withdrawal(row, variable, population, level):
    return _Shape(strata=_population(population) + [("ending", level)], variable_name="withdrawal",
                  estimates=_PROPORTION)


def _weights(row, variable, population, level):
    # a statistic this contract does not name keeps its name in variable_level
    stat = _WEIGHT_STATS.get(variable)
    return _Shape(strata=_group_stratum(level), variable_name="ascertainment_weight",
                  variable_level=None if stat else variable,
                  estimates={"n": "denominator_count", "events": "weighted_count", "estimate": stat or "estimate"})


def _anchors(row, variable, population, level):
    estimates = {"interval_check": {"estimate": "published_inside_ci"},
                 "published": {"estimate": "published_proportion"}}.get(row["estimator"], _PROPORTION)
    # the flag row is about its anchor's outcome: the variable_name of its published figure's row
    outcome = row.get("_anchor_outcome") or row["estimate_name"]
    return _Shape(strata=[("anchor_group", level)], variable_name=outcome, additional=[("anchor", variable)],
                  estimates=estimates)


def _sensitivity(row, variable, population, level):
    return _Shape(strata=_population(population), additional=[(variable, level)], estimates=_PROPORTION)


def _trend(row, variable, population, level):
    if row["estimate_name"] == "treated_gt_split":  # exposure: share treated longer than the headline split
        return _Shape(strata=[(variable, level)], variable_name="treated_gt_split", estimates=_PROPORTION)
    return _Shape(strata=_population(population) + [(variable, level)], estimates=_PROPORTION)


def _generic(row, variable, population, level):
    shape = _Shape(strata=_population(population) + ([(variable, level)] if variable else []),
                   variable_name="estimate",
                   estimates={"n": "denominator_count", "events": "outcome_count", "n_assessed": "assessed_count",
                              "estimate": "estimate", "ci_low": "estimate_lower", "ci_high": "estimate_upper"})
    if _text(row.get("time_days")) is not None:
        shape.additional = [("time_days", _text(row.get("time_days")))]
    return shape


_SPECS: dict[str, Callable[..., _Shape]] = {
    "headline": _headline,
    "by_duration_band": _by_level,
    "by_stratum": _by_level,
    "by_stratum_overall": _by_level,
    "components": _components,
    "cumulative_incidence": _curve,
    "dose_response": _dose_response,
    "tolerance": _tolerance,
    "withdrawal_by_ending": _withdrawal,
    "weights": _weights,
    "anchors": _anchors,
    "sensitivity": _sensitivity,
    "by_calendar_year": _trend,
    "by_region": _trend,
}


def _estimate_name(stem: str, ci: str) -> str:
    # "proportion_lower" -> "proportion_95CI_lower"
    for side in ("lower", "upper"):
        if stem.endswith("_" + side):
            return f"{stem[: -len(side) - 1]}_{ci}_{side}"
    return stem


def cdm_name_of(config: Config, manifest: dict[str, Any] | None, extract_files: list[str] = ()) -> str:
    """The source's name: ``extract.cdm_name``, else the extract folder's (or CDM file's) name.

    >>> from pipeline.config import Config
    >>> cdm_name_of(Config(), {"source": "site_a"}), cdm_name_of(Config(), {}, ["/x/cdm_b/persons.csv"])
    ('site_a', 'cdm_b')
    >>> cdm_name_of(Config(), {"source": "cdm.duckdb"})
    'cdm'
    """
    configured = getattr(config.extract, "cdm_name", "") or ""
    if configured.strip():
        return configured.strip()
    source = _text((manifest or {}).get("source"))
    if source:
        name = source.rstrip("/").split("/")[-1]
        return re.sub(r"\.(duckdb|db|parquet|csv)$", "", name) or "unknown"
    folders = {str(f).replace("\\", "/").rsplit("/", 2)[-2] for f in extract_files if "/" in str(f).replace("\\", "/")}
    return folders.pop() if len(folders) == 1 else "unknown"


def _drug_level(config: Config) -> str:
    return join_names(list(config.drugs.ingredients)) if config.drugs.ingredients else OVERALL


def summarised_rows(estimates: pd.DataFrame, attrition: pd.DataFrame, config: Config, cdm_name: str,
                    ) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """summarised_result rows (all text) and, per result_id, the result-level settings.

    Each result_id is one (analysis, estimator, estimand); results are numbered
    in the order the analyses first appear, attrition last.
    """
    ci = ci_label(config.estimate.confidence_level)
    drug = _drug_level(config)
    results: dict[tuple[str, str, str], dict[str, Any]] = {}
    records: list[tuple] = []

    def result_id(result_type: str, estimator: str, estimand: str, method: str | None) -> str:
        key = (result_type, estimator, estimand)
        if key not in results:
            results[key] = {"result_id": str(len(results) + 1), "result_type": result_type, "estimator": estimator,
                            "estimand": estimand, "methods": []}
        if method and method not in results[key]["methods"]:
            results[key]["methods"].append(method)
        return results[key]["result_id"]

    records_in = estimates.astype("object").to_dict("records")
    anchor_outcomes = {(r["variable"], r["level"]): r["estimate_name"] for r in records_in if r["estimator"] == "published"}
    for row in records_in:
        if row["estimator"] == "interval_check":
            row = {**row, "_anchor_outcome": anchor_outcomes.get((row["variable"], row["level"]))}
        analysis = result_type(row["analysis"])  # estimand (b)'s analyses: same shapes, their own results
        estimand = row["estimand"]
        variable, population = _text(row.get("variable")) or "", row["population"]
        level = _text(row.get("level")) or "unknown"
        shape = _SPECS.get(analysis, _generic)(row, variable, population, level)
        rid = result_id(analysis, estimator_kind(row["estimator"]), estimand, _text(row.get("method")))
        suppressed = bool(row.get("suppressed")) if _text(row.get("suppressed")) is not None else False
        strata_name = join_names([s[0] for s in shape.strata])
        strata_level = join_names([s[1] for s in shape.strata])
        additional_name = join_names([a[0] for a in shape.additional])
        additional_level = join_names([a[1] for a in shape.additional])
        for column, stem in shape.estimates.items():
            if column not in row:
                continue
            name = _estimate_name(stem, ci)
            kind = estimate_type(name)
            value = format_value(row[column], kind)
            if value is None and suppressed:
                value = SUPPRESSED
            records.append((rid, cdm_name, "drug", drug, strata_name, strata_level, shape.variable_name,
                            shape.variable_level, name, kind, value, additional_name, additional_level))

    if attrition is not None and len(attrition):
        rid = result_id("cohort_attrition", "descriptive", DEFAULT_ESTIMAND, None)
        for i, row in enumerate(attrition.astype("object").to_dict("records")):
            step = _text(row.get("step")) or str(i + 1)
            reason = _text(row.get("reason")) or "unknown"
            hidden = bool(row.get("suppressed")) if _text(row.get("suppressed")) is not None else False
            cells = [("number_subjects", row.get("persons_after"), reason, step),
                     ("excluded_subjects", row.get("excluded"), reason, step)]
            if i == 0:  # the starting population, as CohortCharacteristics' "Initial qualifying events"
                cells.insert(0, ("number_subjects", row.get("persons_before"), "initial", "0"))
            for variable_name, value, step_reason, step_id in cells:
                text = format_value(value, "integer")
                records.append((rid, cdm_name, "drug", drug, "reason", step_reason, variable_name, None, "count",
                                "integer", SUPPRESSED if text is None and hidden else text, "reason_id", step_id))

    # number results in reading order: the analyses as listed in _SPECS, others A-Z, attrition last
    order = {name: i for i, name in enumerate([*_SPECS, "cohort_attrition"])}
    ranked = sorted(results.values(), key=lambda r: (order.get(r["result_type"], len(_SPECS) - 0.5),
                                                     r["result_type"], r["estimator"] != "primary", r["estimator"],
                                                     r["estimand"]))
    renumber = {r["result_id"]: str(i + 1) for i, r in enumerate(ranked)}
    for r in ranked:
        r["result_id"] = renumber[r["result_id"]]
    records = [(renumber[rec[0]], *rec[1:]) for rec in records]
    results = {i: r for i, r in enumerate(ranked)}
    frame = pd.DataFrame.from_records(records, columns=list(COLUMNS))
    frame = frame.sort_values("result_id", key=lambda ids: ids.astype(int), kind="stable")
    # weights rows repeat their group's counts once per statistic: keep each estimate once
    frame = frame.drop_duplicates().reset_index(drop=True)
    frame = frame.astype({c: "string" for c in COLUMNS})
    settings = [{"result_id": r["result_id"], "result_type": r["result_type"], "estimator": r["estimator"],
                 "estimand": r["estimand"], "method": " &&& ".join(r["methods"])} for r in results.values()]
    return frame, settings


def flatten_settings(config: Config) -> dict[str, str]:
    """Every analysis setting as ``<section>_<key>`` -> text (lists joined with ', ', tables flattened).

    >>> flat = flatten_settings(Config())
    >>> flat["episodes_persistence_window_days"], flat["drugs_ingredients"]
    ('30', 'clonazepam')
    >>> flatten_settings(Config().replace(engine={"settings": {"spark.sql.shuffle.partitions": "2"}}))[
    ...     "engine_settings_spark_sql_shuffle_partitions"]
    '2'

    """
    flat: dict[str, str] = {}

    def add(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():  # a free-form key (e.g. a Spark setting) as a column name: word characters
                add(f"{prefix}_{re.sub(r'[^0-9A-Za-z_]', '_', str(key))}", item)
        elif isinstance(value, (list, tuple)):
            flat[prefix] = ", ".join(str(v) for v in value)
        elif isinstance(value, bool):
            flat[prefix] = "TRUE" if value else "FALSE"
        else:
            flat[prefix] = "" if value is None else str(value)

    for section, values in config.to_dict().items():
        add(section, values)
    return flat


def settings_table(result_settings: list[dict[str, str]], config: Config, run: dict[str, Any]) -> pd.DataFrame:
    """The settings table: one row per result_id, every value text.

    ``run``: run_id, run_time, cdm_name, code_version, extract_sha256 ({table: sha256}).
    """
    common = {
        "package_name": PACKAGE_NAME,
        "package_version": __version__,
        "run_id": str(run["run_id"]),
        "run_time": str(run["run_time"]),
        "cdm_name": str(run["cdm_name"]),
        "min_cell_count": str(config.disclosure.min_cell_count),
        "code_version": str(run.get("code_version") or ""),
        **{f"extract_sha256_{table}": sha for table, sha in sorted((run.get("extract_sha256") or {}).items())},
        **flatten_settings(config),
    }
    rows = [{"result_id": r["result_id"], "result_type": r["result_type"], "package_name": common["package_name"],
             "package_version": common["package_version"], **{k: v for k, v in common.items()
                                                              if k not in ("package_name", "package_version")},
             "estimator": r["estimator"], "estimand": r["estimand"], "method": r["method"]}
            for r in result_settings]
    columns = ["result_id", "result_type", "package_name", "package_version",
               *[k for k in common if k not in ("package_name", "package_version")], "estimator", "estimand", "method"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({c: "string" for c in frame.columns})
