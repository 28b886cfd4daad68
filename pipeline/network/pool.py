"""Pool several sites' result packages: ``python -m pipeline pool SITE [SITE ...] --out DIR``.

1. Read each package (folder or .zip) and check it: manifest present and of a
   known format, every listed file matching its sha256, ``pooling.csv`` with
   the expected columns and sane values, no count from 1 to k-1.
2. Refuse, with one line naming the setting, when the sites' analysis settings
   differ (``package.analysis_settings``; format, machine and demo sections may
   differ), or when two packages name the same source.
3. Pool every cell (analysis x variable x level x estimator x estimand) by
   random-effects meta-analysis on the logit / log-odds scale
   (``meta.random_effects``). A site whose cell was withheld, or gives no
   standard error, is left out of that cell with a note -- never imputed; a
   cell with fewer than 2 sites left is not pooled, with a note.
4. Write ``DIR/`` laid out as a run's ``reports/``: ``index.html`` (forest
   plots) and ``exports/`` -- ``headline.json`` (a run's format, docs/report.md, pooled),
   ``pooled_estimates.csv`` (every cell: pooled value, HKSJ and Wald
   intervals, prediction interval, tau^2, I^2, Q, sites used and left out),
   ``summarised_result.csv`` + ``settings.csv`` (omopgenerics' 13 columns; each
   site's rows beside the pooled rows, cdm_name = "pooled"), ``sites.csv``,
   ``notes.csv``; plus ``manifest.json`` (with the store's ``run_id``).
5. Append to the results store (``--results``; default results/ beside the
   ``--out`` folder's parent): the pooled run (cdm_name "pooled", shaped as a
   site run's export so the dashboard shows it beside a site) and each site's
   own run from its package's exports (a run already stored is skipped).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline import __version__
from pipeline.errors import PipelineError, PrivacyError
from pipeline.network import meta
from pipeline.network.package import (
    ESTIMATORS, PACKAGE_FORMAT, PACKAGE_VERSION, POOLING_COLUMNS, SCALES, analysis_settings, check_source_name,
    settings_hash, sha256_bytes,
)

HEADLINE_GROUPS = ("gt_4_weeks", "le_4_weeks")
HEADLINE_KEYS = ("estimate", "ci_low", "ci_high", "n", "events", "method")
CELL_KEYS = ("analysis", "variable", "level", "estimator", "estimand")
POOLED_COLUMNS = (
    *CELL_KEYS, "scale", "reference", "sites", "sites_pooled", "sites_left_out", "estimate", "ci_low", "ci_high",
    "ci_low_wald", "ci_high_wald", "pi_low", "pi_high", "theta", "se", "se_hksj", "tau2", "i2", "q", "q_pvalue",
    "n", "events", "method", "note",
)
SUMMARISED_RESULT_COLUMNS = (
    "result_id", "cdm_name", "group_name", "group_level", "strata_name", "strata_level", "variable_name",
    "variable_level", "estimate_name", "estimate_type", "estimate_value", "additional_name", "additional_level",
)
SITE_RESULT_ID, POOLED_RESULT_ID = 1, 2
POOLED_CDM_NAME = "pooled"
_REQUIRED_FILES = ("pooling.csv", "exports/headline.json")
MAX_LABEL = 100  # an analysis, variable or level name; longer is free text, not a category


@dataclass
class SitePackage:
    path: Path
    name: str
    manifest: dict[str, Any]
    pooling: pd.DataFrame
    headline: dict[str, Any]
    sha256: str
    notes: list[str] = field(default_factory=list)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``.

    >>> _flatten({"episodes": {"persistence_window_days": 30}, "drugs": {"ingredients": ["clonazepam"]}})
    {'episodes.persistence_window_days': 30, 'drugs.ingredients': ['clonazepam']}
    """
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flatten(inner, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


class _Files:
    """Read-only access to a package's files, in a folder or a zip (never extracted)."""

    def __init__(self, path: Path):
        self.path = path
        self.archive: zipfile.ZipFile | None = None
        if path.is_file():
            try:
                self.archive = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError):
                raise PipelineError(f"package {path}: not a folder and not a readable zip file") from None
        elif not path.is_dir():
            raise PipelineError(f"package {path}: not found (give a package folder or .zip made by `python -m pipeline package`)")

    def read(self, name: str) -> bytes | None:
        if self.archive is not None:
            try:
                return self.archive.read(name)
            except KeyError:
                return None
        target = (self.path / name).resolve()
        if self.path.resolve() not in target.parents or not target.is_file():
            return None
        return target.read_bytes()


def _json(data: bytes | None, where: str) -> dict:
    if data is None:
        raise PipelineError(f"{where} is missing: not a site package (make one with `python -m pipeline package`)")
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise PipelineError(f"{where}: not valid JSON") from None
    if not isinstance(value, dict):
        raise PipelineError(f"{where}: expected a JSON object")
    return value


def read_package(path: Path) -> SitePackage:
    """Read and check one package; a problem is one ``PipelineError`` line naming the package and file."""
    path = Path(path)
    files = _Files(path)
    manifest = _json(files.read("manifest.json"), f"package {path}: manifest.json")
    if manifest.get("format") != PACKAGE_FORMAT:
        raise PipelineError(f"package {path}: manifest.json is not a '{PACKAGE_FORMAT}' manifest")
    version = str(manifest.get("package_version") or "")
    if version.split(".")[0] != PACKAGE_VERSION.split(".")[0]:
        raise PipelineError(f"package {path}: package_version {version or '(none)'} cannot be read by this pipeline "
                            f"(reads {PACKAGE_VERSION.split('.')[0]}.x); repackage the site with this version")
    listed = manifest.get("files")
    if not isinstance(listed, list) or not all(isinstance(f, dict) and "path" in f and "sha256" in f for f in listed):
        raise PipelineError(f"package {path}: manifest.json has no valid 'files' list")
    hashes = {str(f["path"]): str(f["sha256"]) for f in listed}
    for required in _REQUIRED_FILES:
        if required not in hashes:
            raise PipelineError(f"package {path}: manifest.json does not list {required}")
    for name, expected in hashes.items():
        data = files.read(name)
        if data is None:
            raise PipelineError(f"package {path}: {name} is listed in manifest.json but missing")
        if sha256_bytes(data) != expected:
            raise PipelineError(f"package {path}: {name} does not match its sha256 in manifest.json "
                                "(changed after packaging); repackage the site")
    try:
        name = check_source_name(str(manifest.get("source_name") or ""))
    except PipelineError:
        raise PipelineError(f"package {path}: manifest.json source_name must be 1-64 letters, digits, '_', '.' or '-'") from None
    settings = manifest.get("settings")
    if not isinstance(settings, dict) or settings_hash(settings) != manifest.get("settings_hash"):
        raise PipelineError(f"package {path}: manifest.json settings do not match its settings_hash")
    headline = _json(files.read("exports/headline.json"), f"package {path}: exports/headline.json")
    if not isinstance(headline.get("config"), dict) or settings_hash(analysis_settings(headline["config"])) != manifest["settings_hash"]:
        raise PipelineError(f"package {path}: exports/headline.json config does not match the manifest's settings")
    k = int(settings.get("disclosure", {}).get("min_cell_count", 11))
    pooling = _check_pooling(files.read("pooling.csv"), f"package {path}: pooling.csv", k)
    data = path.read_bytes() if path.is_file() else json.dumps(hashes, sort_keys=True).encode()
    return SitePackage(path=path, name=name, manifest=manifest, pooling=pooling, headline=headline, sha256=sha256_bytes(data))


def _check_pooling(data: bytes | None, where: str, k: int) -> pd.DataFrame:
    if data is None:
        raise PipelineError(f"{where} is missing")
    try:
        frame = pd.read_csv(io.BytesIO(data), dtype={c: "string" for c in (*CELL_KEYS, "scale", "reference", "se_basis", "note")},
                            keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as error:
        raise PipelineError(f"{where}: cannot be read as CSV ({type(error).__name__})") from None
    missing = [c for c in POOLING_COLUMNS if c not in frame.columns]
    if missing:
        raise PipelineError(f"{where}: column(s) {', '.join(missing)} missing")

    def refuse(column: str, rule: str, bad: pd.Series) -> None:
        if bool(bad.any()):
            raise PipelineError(f"{where}: column {column} {rule} in {int(bad.sum())} row(s)")

    for column in ("estimate", "ci_low", "ci_high", "theta", "se", "n", "n_assessed", "events"):
        values = pd.to_numeric(frame[column].astype("object"), errors="coerce")
        refuse(column, "is not a number", frame[column].notna() & values.isna())
        refuse(column, "is not finite", values.notna() & ~values.apply(lambda v: math.isfinite(v) if pd.notna(v) else True).astype(bool))
        frame[column] = values.astype("float64")
    refuse("estimator", f"is not one of {', '.join(ESTIMATORS)}", ~frame["estimator"].isin(list(ESTIMATORS)))
    refuse("scale", f"is not one of {', '.join(SCALES.values())}", ~frame["scale"].isin(list(SCALES.values())))
    for column in CELL_KEYS:
        refuse(column, "is empty", frame[column].isna())
        refuse(column, f"is longer than {MAX_LABEL} characters", frame[column].fillna("").str.len() > MAX_LABEL)
    refuse("se", "is not > 0", frame["se"].notna() & ~(frame["se"] > 0))
    refuse("se", "is given without theta (or theta without se)", frame["se"].isna() != frame["theta"].isna())
    for column in ("n", "n_assessed", "events"):
        values = frame[column]
        refuse(column, "is negative or not a whole number", values.notna() & ((values < 0) | (values != values.round())))
        refuse(column, f"holds a count from 1 to {k - 1} (disclosure control)", values.notna() & (values > 0) & (values < k))
    refuse("events", "exceeds n", frame["events"].notna() & frame["n"].notna() & (frame["events"] > frame["n"]))
    proportion = frame["scale"] == "logit"
    estimate = frame["estimate"]
    refuse("estimate", "is outside [0, 1] for a proportion", proportion & estimate.notna() & ((estimate < 0) | (estimate > 1)))
    refuse("estimate", "is not > 0 for an odds ratio", ~proportion & estimate.notna() & ~(estimate > 0))
    refuse("theta", "does not match the estimate", frame["theta"].notna() & ~_theta_matches(frame))
    refuse("(analysis, variable, level, estimator, estimand)", "repeats", frame.duplicated(list(CELL_KEYS)))
    frame["suppressed"] = frame["suppressed"].astype("string").str.lower().isin(["true", "1"])
    return frame


def _theta_matches(frame: pd.DataFrame) -> pd.Series:
    def ok(row) -> bool:
        if pd.isna(row["theta"]):
            return True
        est = row["estimate"]
        if pd.isna(est):
            return False
        if row["scale"] == "logit":
            expected = meta.logit(est) if 0 < est < 1 else float("nan")
        else:
            expected = math.log(est) if est > 0 else float("nan")
        return math.isfinite(expected) and abs(expected - row["theta"]) <= 1e-6 * max(1.0, abs(expected))

    return frame.apply(ok, axis=1).astype(bool)


def check_same_settings(packages: list[SitePackage]) -> None:
    """Refuse (one line, naming the first differing setting) unless every site used the same analysis settings."""
    first = packages[0]
    reference = _flatten(first.manifest["settings"])
    for other in packages[1:]:
        if other.manifest["settings_hash"] == first.manifest["settings_hash"]:
            continue
        theirs = _flatten(other.manifest["settings"])
        for key in sorted(set(reference) | set(theirs)):
            if reference.get(key, "(not set)") != theirs.get(key, "(not set)"):
                raise PipelineError(
                    f"sites used different analysis settings: {key} is {json.dumps(theirs.get(key, '(not set)'))} "
                    f"at '{other.name}' but {json.dumps(reference.get(key, '(not set)'))} at '{first.name}'; "
                    "rerun the sites with the same settings"
                )
        raise PipelineError(f"sites used different analysis settings ('{other.name}' vs '{first.name}')")


def read_packages(paths: list[Path]) -> list[SitePackage]:
    if len(paths) < 2:
        raise PipelineError(f"pooling needs at least 2 site packages, got {len(paths)}")
    packages = [read_package(Path(p)) for p in paths]
    seen: dict[str, Path] = {}
    for package in packages:
        if package.name in seen:
            raise PipelineError(f"two packages name the same source '{package.name}' ({seen[package.name]} and "
                                f"{package.path}): repackage one with --name")
        seen[package.name] = package.path
    hashes: dict[str, Path] = {}
    for package in packages:
        if package.sha256 in hashes:
            raise PipelineError(f"packages {hashes[package.sha256]} and {package.path} are the same package")
        hashes[package.sha256] = package.path
    check_same_settings(packages)
    return packages


# --------------------------------------------------------------------------- pooling


def _back(value: float | None, scale: str) -> float | None:
    if value is None:
        return None
    return meta.expit(value) if scale == "logit" else math.exp(value)


def pool_cells(packages: list[SitePackage], method: str = "reml") -> tuple[pd.DataFrame, list[dict]]:
    """Pool every cell; return the pooled table and the notes (site, cell, what happened)."""
    confidence = float(packages[0].manifest.get("confidence_level", 0.95))
    stacked = pd.concat([p.pooling.assign(site=p.name) for p in packages], ignore_index=True)
    order = {name: i for i, name in enumerate(p.name for p in packages)}
    rows, notes = [], []
    for key, cell in stacked.groupby(list(CELL_KEYS), sort=False, dropna=False):
        cell = cell.sort_values("site", key=lambda s: s.map(order))
        reference = _shared_reference(cell)
        left_out = []
        for index, site_row in cell.iterrows():
            site_reference = "" if pd.isna(site_row["reference"]) else str(site_row["reference"])
            if pd.isna(site_row["theta"]):
                reason = site_row["note"] if isinstance(site_row["note"], str) and site_row["note"] else "no standard error"
            elif site_reference != reference:
                reason = (f"odds ratio against reference level '{site_reference}', the pool's is '{reference}' "
                          "(not comparable)")
                cell.loc[index, "theta"] = float("nan")
            else:
                continue
            left_out.append(site_row["site"])
            notes.append({"site": site_row["site"], **dict(zip(CELL_KEYS, key)), "note": f"left out of this pool: {reason}"})
        absent = [p.name for p in packages if p.name not in set(cell["site"])]
        for name in absent:
            left_out.append(name)
            notes.append({"site": name, **dict(zip(CELL_KEYS, key)), "note": "left out of this pool: the site has no such cell"})
        used = cell[cell["theta"].notna()]
        scale = str(cell["scale"].iloc[0])
        row: dict[str, Any] = {**dict(zip(CELL_KEYS, key)), "scale": scale, "reference": reference, "sites": len(packages),
                               "sites_pooled": len(used), "sites_left_out": "; ".join(left_out)}
        counts = {c: (int(used[c].sum()) if len(used) and used[c].notna().all() else None) for c in ("n", "events")}
        if len(used) < 2:
            notes.append({"site": "", **dict(zip(CELL_KEYS, key)),
                          "note": f"not pooled: {len(used)} site(s) with an estimate (2 needed)"})
            rows.append({**row, "note": f"not pooled: {len(used)} site(s) with an estimate", "n": None, "events": None})
            continue
        fit = meta.random_effects(used["theta"].to_numpy(), used["se"].to_numpy(), method=method, confidence=confidence)
        rows.append({
            **row,
            "estimate": _back(fit["mu"], scale),
            "ci_low": _back(fit["ci_low"], scale),
            "ci_high": _back(fit["ci_high"], scale),
            "ci_low_wald": _back(fit["wald_low"], scale),
            "ci_high_wald": _back(fit["wald_high"], scale),
            "pi_low": _back(fit["pi_low"], scale),
            "pi_high": _back(fit["pi_high"], scale),
            "theta": fit["mu"],
            "se": fit["se"],
            "se_hksj": fit["hksj_se"],
            "tau2": fit["tau2"],
            "i2": fit["i2"],
            "q": fit["q"],
            "q_pvalue": fit["q_pvalue"],
            **counts,
            "method": method_text(method, fit["k"], scale),
            "note": "" if fit["converged"] else f"{meta.METHOD_LABELS[method]} did not converge",
        })
        if fit["pi_low"] is None:
            notes.append({"site": "", **dict(zip(CELL_KEYS, key)),
                          "note": "no prediction interval: it needs at least 3 sites"})
    frame = pd.DataFrame(rows, columns=list(POOLED_COLUMNS))
    for column in ("n", "events"):
        frame[column] = pd.array(frame[column].astype("object").where(frame[column].notna(), None), dtype="Int64")
    return _reading_order(frame, packages[0].manifest["settings"]), notes


def _reading_order(frame: pd.DataFrame, settings: dict[str, Any]) -> pd.DataFrame:
    """Analyses as listed in POOLED_ANALYSES, headline groups short to long, bands in their configured order."""
    from pipeline.config import EstimateConfig
    from pipeline.network.package import POOLED_ANALYSES

    lows = (settings.get("estimate") or {}).get("duration_band_lower_days") or EstimateConfig().duration_band_lower_days
    bands = EstimateConfig(duration_band_lower_days=tuple(lows)).band_labels()
    level_rank = {"le_4_weeks": 0, "gt_4_weeks": 1, "all": 2, **{band: i for i, band in enumerate(bands)}}
    analysis_rank = {name: i for i, name in enumerate(POOLED_ANALYSES)}
    first_seen = {key: i for i, key in enumerate(dict.fromkeys(zip(frame["analysis"], frame["variable"])))}
    keys = pd.DataFrame({
        "analysis": frame["analysis"].map(lambda a: analysis_rank.get(a, len(analysis_rank))),
        "variable": [first_seen[k] for k in zip(frame["analysis"], frame["variable"])],
        "level": frame["level"].map(lambda lvl: level_rank.get(lvl, len(level_rank))),
        "estimator": frame["estimator"].map(lambda e: ESTIMATORS.index(e) if e in ESTIMATORS else len(ESTIMATORS)),
    })
    order = keys.sort_values(["analysis", "variable", "estimator", "level"], kind="stable").index
    return frame.loc[order].reset_index(drop=True)


def _shared_reference(cell: pd.DataFrame) -> str:
    """The reference level most sites with an estimate used (first site's on a tie); '' for proportions."""
    used = cell[cell["theta"].notna()]["reference"].fillna("").astype(str)
    if used.empty:
        return ""
    return str(used.value_counts(sort=False).idxmax())  # order of appearance breaks ties


def method_text(method: str, k: int, scale: str) -> str:
    """The method line printed with every pooled estimate.

    >>> method_text("reml", 4, "logit")
    'pooled: random-effects meta-analysis of 4 sites on the logit scale, tau^2 by REML, Hartung-Knapp-Sidik-Jonkman CI (scale floored at 1)'
    """
    return (f"pooled: random-effects meta-analysis of {k} sites on the {scale.replace('_', ' ')} scale, "
            f"tau^2 by {meta.METHOD_LABELS[method]}, Hartung-Knapp-Sidik-Jonkman CI (scale floored at 1)")


def pooled_headline(pooled: pd.DataFrame, config: dict[str, Any]) -> dict[str, Any]:
    """headline.json (docs/report.md) from the pooled headline cells (primary and complete case)."""
    out: dict[str, Any] = {"headline": {}, "complete_case": {}, "config": config}
    for block, estimator in (("headline", "primary"), ("complete_case", "complete_case")):
        for group in HEADLINE_GROUPS:
            match = pooled[(pooled["analysis"] == "headline") & (pooled["variable"] == "headline_group")
                           & (pooled["level"] == group) & (pooled["estimator"] == estimator)]
            entry = {key: None for key in HEADLINE_KEYS}
            if len(match):
                first = match.iloc[0]
                for key in HEADLINE_KEYS:
                    value = first[key]
                    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
                        continue
                    entry[key] = int(value) if key in ("n", "events") else (str(value) if key == "method" else float(value))
            out[block][group] = entry
    return out


# --------------------------------------------------------------------------- summarised result


def _sr_rows(result_id: int, cdm_name: str, cell: dict, estimates: dict[str, tuple[str, Any]]) -> list[dict]:
    rows = []
    reference = cell.get("reference")
    reference = "" if reference is None or reference is pd.NA or (isinstance(reference, float) and math.isnan(reference)) else str(reference)
    for name, (kind, value) in estimates.items():
        if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
            continue
        text = str(int(value)) if kind == "integer" else repr(float(value))
        rows.append({
            "result_id": result_id, "cdm_name": cdm_name,
            "group_name": "analysis", "group_level": cell["analysis"],
            "strata_name": cell["variable"], "strata_level": cell["level"],
            "variable_name": "dependence" if cell["scale"] == "logit" else "dependence_odds_ratio",
            "variable_level": cell["estimator"],
            "estimate_name": name, "estimate_type": kind, "estimate_value": text,
            "additional_name": "estimand &&& reference_level" if reference else "estimand",
            "additional_level": f"{cell['estimand']} &&& {reference}" if reference else cell["estimand"],
        })
    return rows


def summarised_result(packages: list[SitePackage], pooled: pd.DataFrame) -> pd.DataFrame:
    """omopgenerics' summarised_result: every site's poolable cells beside the pooled cells."""
    rows: list[dict] = []
    for package in packages:
        for cell in package.pooling.to_dict("records"):
            rows += _sr_rows(SITE_RESULT_ID, package.name, cell, {
                "estimate": ("numeric", cell["estimate"]), "ci_low": ("numeric", cell["ci_low"]),
                "ci_high": ("numeric", cell["ci_high"]), "theta": ("numeric", cell["theta"]),
                "se": ("numeric", cell["se"]), "n": ("integer", cell["n"]), "events": ("integer", cell["events"]),
            })
    for cell in pooled.to_dict("records"):
        rows += _sr_rows(POOLED_RESULT_ID, POOLED_CDM_NAME, cell, {
            "estimate": ("numeric", cell["estimate"]), "ci_low": ("numeric", cell["ci_low"]),
            "ci_high": ("numeric", cell["ci_high"]), "ci_low_wald": ("numeric", cell["ci_low_wald"]),
            "ci_high_wald": ("numeric", cell["ci_high_wald"]), "pi_low": ("numeric", cell["pi_low"]),
            "pi_high": ("numeric", cell["pi_high"]), "theta": ("numeric", cell["theta"]), "se": ("numeric", cell["se"]),
            "tau2": ("numeric", cell["tau2"]), "i2": ("numeric", cell["i2"]), "q": ("numeric", cell["q"]),
            "sites_pooled": ("integer", cell["sites_pooled"]), "n": ("integer", cell["n"]),
            "events": ("integer", cell["events"]),
        })
    return pd.DataFrame(rows, columns=list(SUMMARISED_RESULT_COLUMNS))


def settings_table(packages: list[SitePackage], method: str) -> pd.DataFrame:
    """omopgenerics' settings: one row per result_id; the shared analysis settings flattened into columns."""
    shared = {f"setting.{k}": json.dumps(v) if isinstance(v, (list, dict)) else v
              for k, v in _flatten(packages[0].manifest["settings"]).items()}
    base = {"package_name": "benzo-outcomes", "package_version": __version__,
            "settings_hash": packages[0].manifest["settings_hash"]}
    return pd.DataFrame([
        {"result_id": SITE_RESULT_ID, "result_type": "site_estimates", **base, "pooling_method": "", **shared},
        {"result_id": POOLED_RESULT_ID, "result_type": "random_effects_meta_analysis", **base,
         "pooling_method": f"{meta.METHOD_LABELS[method]} tau^2, HKSJ interval, t(k-2) prediction interval", **shared},
    ])


# --------------------------------------------------------------------------- run


def _is_pooled_folder(folder: Path) -> bool:
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and "pooling_method" in manifest


def store_tables(packages: list[SitePackage], pooled: pd.DataFrame, method: str, run_id: str,
                 run_time: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The pooled cells as one results-store run (cdm_name "pooled"), shaped as a site run's export.

    Each pooled cell becomes the rows a site run publishes for the same (analysis, estimator,
    estimand) -- same strata, estimate names and settings columns -- so the dashboard shows the
    pooled run beside a site's run. Cells not pooled (fewer than 2 sites) are left out.
    """
    from pipeline.config import Config
    from pipeline.results import convert

    config = Config(**packages[0].headline["config"])
    cells = pooled[pooled["estimate"].notna()]
    estimates = pd.DataFrame({
        "analysis": cells["analysis"].astype(str), "variable": cells["variable"].astype(str),
        "level": cells["level"].astype(str), "estimator": cells["estimator"].astype(str),
        "estimand": cells["estimand"].astype(str), "estimate": cells["estimate"], "ci_low": cells["ci_low"],
        "ci_high": cells["ci_high"], "n": cells["n"].astype("object"), "events": cells["events"].astype("object"),
        "method": cells["method"].astype(str), "suppressed": False,
    })
    # the explicit columns of an estimates row (pipeline/estimate/columns.py) that convert maps by
    odds = estimates["analysis"] == "dose_response"
    primary = estimates["estimator"] == "primary"
    estimates["estimator"] = np.select(
        [odds & (estimates["variable"] == "duration_days"), odds, primary],
        ["logistic_or_ipw_trend", "logistic_or_ipw", "hajek_ipw"], default="complete_case")
    estimates["population"] = "all"
    estimates["estimate_name"] = np.where(odds, "odds_ratio", "dependence")
    estimates["estimate_type"] = np.where(odds, "odds_ratio", "proportion")
    rows, result_settings = convert.summarised_rows(estimates, None, config, POOLED_CDM_NAME)
    settings = convert.settings_table(result_settings, config, {
        "run_id": run_id, "run_time": run_time, "cdm_name": POOLED_CDM_NAME, "code_version": __version__})
    settings["pooling_method"] = f"{meta.METHOD_LABELS[method]} tau^2, HKSJ interval"
    settings["pooled_sites"] = ", ".join(p.name for p in packages)
    return rows, settings.astype("string")


def append_pooled_to_store(packages: list[SitePackage], pooled: pd.DataFrame, method: str, run_id: str,
                           run_time: str, results_dir: Path) -> dict[str, Any]:
    """Append the pooled run, and each site's own run when its package carries its exports, to the store.

    A site run already stored (same run_id) is left as it is. Returns {pooled: run_id, sites: [run_id, ...]}.
    """
    from pipeline.results import store

    site_runs = []
    for package in packages:
        files = _Files(package.path)
        data = {name: files.read(f"exports/{name}") for name in ("summarised_result.csv", "settings.csv")}
        if any(value is None for value in data.values()):
            continue
        try:
            rows, settings = (pd.read_csv(io.BytesIO(data[name]), dtype="string", keep_default_na=False, na_values=[""])
                              for name in ("summarised_result.csv", "settings.csv"))
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as error:
            raise PipelineError(f"package {package.path}: exports/settings.csv or summarised_result.csv cannot be "
                                f"read as CSV ({type(error).__name__})") from None
        done = store.append(rows, settings, results_dir, where=f"package {package.path}: exports")
        if done["run_id"]:
            site_runs.append(done["run_id"])
    rows, settings = store_tables(packages, pooled, method, run_id, run_time)
    done = store.append(rows, settings, results_dir, where="pooled result")
    return {"pooled": done["run_id"], "sites": site_runs, "results_dir": str(results_dir)}


def run_pool(paths: list[Path], out: Path, method: str = "reml", results: Path | None = None) -> dict[str, Any]:
    """Read, check and pool the packages; publish ``out`` whole (atomically), then append the pooled
    run (and the sites' runs) to the results store ``results`` (default: results/ beside ``out``'s
    parent, so the default reports/network goes to the project's results/). Returns a summary."""
    from pipeline.network.report import build_pooled_report
    from pipeline.privacy.disclosure import scan_for_small_counts
    from pipeline.publish.atomic import atomic_reports
    from pipeline.warehouse import new_id

    if method not in meta.METHODS:
        raise PipelineError(f"--method must be one of {', '.join(meta.METHODS)}, got '{method}'")
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not _is_pooled_folder(out))):
        raise PipelineError(f"{out} exists and is not a pooled result folder: choose an empty or new --out "
                            "(it would be replaced whole)")
    packages = read_packages(paths)
    pooled, notes = pool_cells(packages, method)
    config = packages[0].headline["config"]
    headline = pooled_headline(pooled, config)
    sites = pd.DataFrame([{
        "site": p.name, "package_created_at": p.manifest.get("created_at"), "run_created_at": p.manifest.get("run_created_at"),
        "pipeline_version": p.manifest.get("pipeline_version"), "settings_hash": p.manifest["settings_hash"],
        "package_sha256": p.sha256,
    } for p in packages])
    notes_frame = pd.DataFrame(notes, columns=["site", *CELL_KEYS, "note"])
    k = int(packages[0].manifest["settings"].get("disclosure", {}).get("min_cell_count", 11))
    run_id = new_id()
    run_time = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    with atomic_reports(Path(out), new_id()) as build:
        exports = build / "exports"
        exports.mkdir()
        (exports / "headline.json").write_text(json.dumps(headline, indent=2) + "\n", encoding="utf-8")
        pooled.to_csv(exports / "pooled_estimates.csv", index=False)
        summarised_result(packages, pooled).to_csv(exports / "summarised_result.csv", index=False)
        settings_table(packages, method).to_csv(exports / "settings.csv", index=False)
        sites.to_csv(exports / "sites.csv", index=False)
        notes_frame.to_csv(exports / "notes.csv", index=False)
        findings = [f for name in ("headline.json", "pooled_estimates.csv")
                    for f in scan_for_small_counts(exports / name, k)]
        if findings:
            raise PrivacyError(f"refusing to publish the pooled result: small counts ({findings[0]})")
        manifest = {
            "created_at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
            "pipeline_version": __version__, "run_id": run_id, "pooling_method": method, "settings_hash": packages[0].manifest["settings_hash"],
            "sites": sites.to_dict("records"), "config": config,
        }
        (build / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        build_pooled_report(build, packages, pooled, notes_frame, headline, method)
    from pipeline.results import results_dir_for

    results = Path(results) if results is not None else results_dir_for(out.resolve().parent)  # reports/network -> results/
    stored = append_pooled_to_store(packages, pooled, method, run_id, run_time, results)
    return {"sites": [p.name for p in packages], "headline": headline, "pooled": pooled, "notes": notes_frame,
            "store": stored}
