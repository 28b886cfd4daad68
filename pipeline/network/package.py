"""A site's result package: what a site releases to a network study.

``python -m pipeline package --out F`` reads the last run's published folder
(``reports/`` or ``--reports``), never the warehouse, so everything in the
package has already passed disclosure control:

- ``exports/``       the run's exports, copied as they are (headline.json,
                     estimates, summarised_result/settings when present, ...)
- ``pooling.csv``    one row per poolable cell (POOLED_ANALYSES): the published
                     estimate, interval, n and events, plus ``theta`` and ``se``
                     on the pooling scale (logit, or log odds ratio) derived from
                     the published interval (``pipeline.network.meta``)
- ``manifest.json``  package format version, source name, settings and their
                     hash, creation time, and the sha256 of every file

``F`` is a folder, or a zip file when it ends in ``.zip``.

The standard error is a function of numbers the site already publishes
(estimate and interval), so it releases nothing new.

>>> analysis_settings({"extract": {"format": "omop"}, "episodes": {"stockpiling": False}, "demo": {"seed": 1}})
{'episodes': {'stockpiling': False}}
>>> settings_hash({"episodes": {"stockpiling": False}})[:12]
'88ddf348af5e'
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline import __version__
from pipeline.errors import PipelineError, PrivacyError, StageOrderError
from pipeline.estimate.columns import estimator_kind
from pipeline.network import meta
from pipeline.privacy.disclosure import estimate_step, published_number

PACKAGE_FORMAT = "benzo-outcomes site package"
PACKAGE_VERSION = "1.0"
# Sections of the configuration that describe the machine or the input format,
# not the analysis: sites may differ in them (one site OMOP, another native).
NON_ANALYSIS_SECTIONS = ("extract", "warehouse", "demo", "engine")
# Analyses pooled across sites and the scale each is pooled on.
POOLED_ANALYSES = {"headline": "proportion", "by_duration_band": "proportion", "dose_response": "odds_ratio"}
SCALES = {"proportion": "logit", "odds_ratio": "log_odds_ratio"}
ESTIMATORS = ("primary", "complete_case")  # estimator kinds pooled (pipeline.estimate.columns.estimator_kind)
# The interval each pooled estimator publishes, by its name in the estimates' ``estimator`` column
# (pipeline/estimate/columns.py ESTIMATORS describes them; tests/test_network_meta.py checks the names).
INTERVALS = {"hajek_ipw": "wilson", "complete_case": "wilson", "logistic_or_ipw": "log_wald",
             "logistic_or_ipw_trend": "log_wald"}
REFERENCE_LEVEL = "reference_level"  # the estimator of an odds-ratio model's reference rows (OR 1, no interval)
# The estimand when the exports name none: estimand (a) (docs/estimation.md, "Two estimands").
DEFAULT_ESTIMAND = "episode_window"
POOLING_COLUMNS = (
    "analysis", "variable", "level", "estimator", "estimand", "scale", "reference", "estimate", "ci_low", "ci_high",
    "theta", "se", "se_basis", "n", "n_assessed", "events", "suppressed", "note",
)
SOURCE_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def analysis_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The configuration without the sections that may differ between sites."""
    return {section: values for section, values in config.items() if section not in NON_ANALYSIS_SECTIONS}


def settings_hash(settings: dict[str, Any]) -> str:
    """sha256 of the settings as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_source_name(name: str) -> str:
    """A source name is a short label (letters, digits, ``_ . -``): it becomes a folder name and a cdm_name.

    >>> check_source_name("north-1")
    'north-1'
    """
    if not name or len(name) > 64 or not set(name) <= SOURCE_NAME_CHARS or name[0] in ".-":
        raise PipelineError("source name must be 1-64 letters, digits, '_', '.' or '-' (not starting with '.' or '-'); "
                            "give one with --name")
    return name


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _estimator(row: pd.Series) -> str | None:
    """``primary`` or ``complete_case``: the kind of the row's ``estimator`` (pipeline/estimate/columns.py);
    None for descriptive rows, which are not pooled."""
    kind = estimator_kind(row["estimator"])
    return kind if kind in ESTIMATORS else None


def interval_kind(estimator: str) -> str | None:
    """How the interval of an estimator's rows was built (``meta.se_from_interval`` inverts it).

    >>> interval_kind("hajek_ipw"), interval_kind("logistic_or_ipw"), interval_kind("median")
    ('wilson', 'log_wald', None)
    """
    return INTERVALS.get(str(estimator))


def _count(value: Any) -> int | None:
    number = published_number(value)
    return None if number is None else int(round(number))


def pooling_rows(estimates: pd.DataFrame, confidence: float, rounding_base: int = 1) -> pd.DataFrame:
    """``pooling.csv`` from the published estimates table (one row per poolable cell).

    Reference rows of the odds-ratio model (OR = 1 by definition, no interval)
    and rows of other analyses are left out.
    """
    missing = [c for c in ("analysis", "estimator", "variable", "level", "estimate", "ci_low", "ci_high", "n", "events")
               if c not in estimates.columns]
    if missing:
        raise PipelineError(f"exports/estimates.csv lacks column(s) {', '.join(missing)}: not an export of this pipeline")
    rows = []
    selected = estimates[estimates["analysis"].isin(list(POOLED_ANALYSES))]
    if "time_days" in selected.columns:
        selected = selected[selected["time_days"].isna()]
    # An odds ratio means something only against its reference level, which each site's model
    # chose for itself (the most frequent level, unless configured): carried so pooling can check it.
    is_reference = (selected["estimator"].astype("string") == REFERENCE_LEVEL).fillna(False)
    references = dict(zip(selected.loc[is_reference, "variable"].astype(str), selected.loc[is_reference, "level"].astype(str)))
    for _, row in selected[~is_reference].iterrows():
        estimator = _estimator(row)
        if estimator is None:
            continue
        kind = POOLED_ANALYSES[row["analysis"]]
        suppressed = str(row.get("suppressed")).strip().lower() in ("true", "1", "1.0")
        estimate, low, high = published_number(row["estimate"]), published_number(row["ci_low"]), published_number(row["ci_high"])
        if suppressed or estimate is None:
            se, basis, theta = None, "", None
            note = "withheld by disclosure control" if suppressed else "no estimate published"
        else:
            step = estimate_step(published_number(row.get("n")), rounding_base)  # disclosure control's rounding
            se, basis = meta.se_from_interval(estimate, low, high, confidence, interval_kind(row["estimator"]) or "unknown",
                                              rounding_step=step)
            note = "" if se is not None else basis
            basis = basis if se is not None else ""
            theta = None
            if se is not None:
                theta = math.log(estimate) if kind == "odds_ratio" else meta.logit(estimate)
        estimand = row.get("estimand") if "estimand" in row.index and isinstance(row.get("estimand"), str) else DEFAULT_ESTIMAND
        rows.append({
            "analysis": str(row["analysis"]),
            "variable": str(row["variable"]),
            "level": str(row["level"]),
            "estimator": estimator,
            "estimand": estimand,
            "scale": SCALES[kind],
            "reference": references.get(str(row["variable"]), "") if kind == "odds_ratio" else "",
            "estimate": estimate,
            "ci_low": low,
            "ci_high": high,
            "theta": theta,
            "se": se,
            "se_basis": basis,
            "n": _count(row["n"]),
            "n_assessed": _count(row["n_assessed"]) if "n_assessed" in row.index else None,
            "events": _count(row["events"]),
            "suppressed": suppressed,
            "note": note,
        })
    frame = pd.DataFrame(rows, columns=list(POOLING_COLUMNS))
    for column in ("n", "n_assessed", "events"):
        frame[column] = pd.array(frame[column].astype("object").where(frame[column].notna(), None), dtype="Int64")
    for column in ("estimate", "ci_low", "ci_high", "theta", "se"):
        frame[column] = pd.to_numeric(frame[column].astype("object"), errors="coerce").astype("float64")
    return frame


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StageOrderError(f"{path} is missing: run `python -m pipeline run` first (or give --reports)") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise PipelineError(f"{path}: not valid JSON") from None
    if not isinstance(value, dict):
        raise PipelineError(f"{path}: expected a JSON object")
    return value


def build_package(reports: Path, out: Path, name: str | None = None) -> dict:
    """Write the package for the run published in ``reports`` to ``out`` (folder or .zip); return its manifest."""
    reports, out = Path(reports), Path(out)
    exports = reports / "exports"
    if not (exports / "estimates.csv").exists():
        raise StageOrderError(f"{exports / 'estimates.csv'} is missing: run `python -m pipeline run` first (or give --reports)")
    run_manifest = _read_json(reports / "manifest.json")
    headline = _read_json(exports / "headline.json")
    config = headline.get("config") or run_manifest.get("config")
    if not isinstance(config, dict):
        raise PipelineError(f"{exports / 'headline.json'}: no 'config' section (the settings of the run)")
    source = check_source_name(name or str(run_manifest.get("source") or ""))
    try:
        estimates = pd.read_csv(exports / "estimates.csv", dtype={"analysis": "string", "variable": "string", "level": "string"},
                                keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
        raise PipelineError(f"{exports / 'estimates.csv'}: cannot be read as CSV ({type(error).__name__})") from None
    confidence = float((config.get("estimate") or {}).get("confidence_level", 0.95))
    k = int((config.get("disclosure") or {}).get("min_cell_count", 11))
    rounding_base = int((config.get("disclosure") or {}).get("rounding_base", 1))
    pooling = pooling_rows(estimates, confidence, rounding_base)

    from pipeline.privacy.disclosure import scan_for_small_counts

    findings = scan_for_small_counts(pooling, k)
    if findings:
        raise PrivacyError(f"refusing to package: pooling.csv would hold counts below {k} ({findings[0]})")

    settings = analysis_settings(config)
    with tempfile.TemporaryDirectory(prefix="package-", dir=out.parent if out.parent.exists() else None) as tmp:
        staging = Path(tmp) / "package"
        shutil.copytree(exports, staging / "exports")
        pooling.to_csv(staging / "pooling.csv", index=False)
        files = sorted(p for p in staging.rglob("*") if p.is_file())
        manifest = {
            "format": PACKAGE_FORMAT,
            "package_version": PACKAGE_VERSION,
            "pipeline_version": __version__,
            "code_version": run_manifest.get("code_version"),
            "source_name": source,
            "created_at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
            "run_created_at": run_manifest.get("created_at"),
            "settings_hash": settings_hash(settings),
            "settings": settings,
            "min_cell_count": k,
            "confidence_level": confidence,
            "pooled_analyses": POOLED_ANALYSES,
            "files": [{"path": p.relative_to(staging).as_posix(), "sha256": sha256_bytes(p.read_bytes()),
                       "bytes": p.stat().st_size} for p in files],
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _place(staging, out)
    return manifest


def _place(staging: Path, out: Path) -> None:
    """Move the finished package to ``out`` (a folder or a .zip), replacing an earlier one whole."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".zip":
        partial = out.with_name(out.name + ".partial")
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(p for p in staging.rglob("*") if p.is_file()):
                archive.write(path, path.relative_to(staging).as_posix())
        partial.replace(out)
        return
    if out.exists() and not out.is_dir():
        raise PipelineError(f"{out} exists and is not a folder: choose another --out")
    if out.exists() and any(out.iterdir()) and not (out / "manifest.json").exists():
        raise PipelineError(f"{out} is a folder that is not a site package: choose an empty or new --out")
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    shutil.move(str(staging), str(out))
    shutil.rmtree(old, ignore_errors=True)
