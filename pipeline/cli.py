"""Command line: ``python -m pipeline <stage>`` for each stage, ``run`` for all.

Typer (CLI) and Rich (progress on stderr) are used rather than argparse and
print(): typer gives ``--help`` for every stage from the signatures below, rich
gives spinners and timings for long work without our own terminal code.

A user's mistake (``PipelineError``) prints one line and exits non-zero; a bug
keeps its traceback.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape

from pipeline.config import PROJECT_ROOT, Config, load_config
from pipeline.errors import PipelineError, StageOrderError

console = Console(stderr=True, highlight=False)
app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="benzo-outcomes: how often dependence develops on benzodiazepines, by treatment duration.",
)

DEFAULT_DEMO = PROJECT_ROOT / "data" / "demo"
DEFAULT_WAREHOUSE = PROJECT_ROOT / "data" / "warehouse.duckdb"
DEFAULT_REPORTS = PROJECT_ROOT / "reports"

SourceOpt = typer.Option(None, "--source", "-s", help="Extract folder (native) or CDM (.duckdb file or folder, with --format omop). Default: the demo extract.")
FormatOpt = typer.Option(None, "--format", "-f", help="native or omop (default: extract.format in the config).")
ConfigOpt = typer.Option(None, "--config", "-c", help="TOML configuration file (default: config/default.toml).")
SetOpt = typer.Option([], "--set", help="Override a setting, e.g. --set episodes.persistence_window_days=60 (repeatable).")
WarehouseOpt = typer.Option(DEFAULT_WAREHOUSE, "--warehouse", help="DuckDB warehouse file.")
ReportsOpt = typer.Option(DEFAULT_REPORTS, "--reports", help="Folder the report and exports are published to.")


def _config(config_path: Optional[Path], overrides: list[str], fmt: Optional[str]) -> Config:
    cfg = load_config(config_path, overrides)
    if fmt:
        if fmt not in ("native", "omop"):
            raise PipelineError(f"--format must be native or omop, got '{fmt}'")
        cfg = cfg.replace(extract={"format": fmt})
    return cfg


@contextmanager
def step(name: str) -> Iterator[None]:
    """Show a spinner while a stage runs, then its time."""
    started = time.perf_counter()
    with console.status(f"[bold]{name}[/]..."):
        yield
    console.print(f"[green]done[/] {name} ({time.perf_counter() - started:.1f} s)")


_OPEN_CONNECTIONS: list = []  # closed by main() before the process ends


def _connect(warehouse: Path, cfg: Config):
    import duckdb

    from pipeline.warehouse import apply_settings, connect

    try:
        con = connect(warehouse)
        apply_settings(con, cfg)
        _OPEN_CONNECTIONS.append(con)
        return con
    except duckdb.IOException as error:
        raise PipelineError(f"cannot open warehouse {warehouse}: {str(error).splitlines()[0]}") from None


def _require(con, table: str, stage: str) -> None:
    from pipeline.warehouse import table_exists

    if not table_exists(con, table):
        raise StageOrderError(f"table '{table}' is missing: run `python -m pipeline {stage}` first")


def _ensure_demo(source: Optional[Path], cfg: Config) -> Path:
    """The extract to use: the given one, or the demo (built if missing)."""
    if source is not None:
        return source
    if not (DEFAULT_DEMO / "truth.json").exists():
        do_demo(DEFAULT_DEMO, cfg.demo.persons, cfg.demo.seed, "csv", cfg)
    return DEFAULT_DEMO


def do_demo(out: Path, persons: int, seed: int, fmt: str, cfg: Config) -> dict:
    from pipeline.demo.generator import generate

    with step(f"demo extract: {persons:,} persons, seed {seed} -> {out}"):
        truth = generate(out, persons=persons, seed=seed, config=cfg, fmt=fmt)
    return truth


def do_ingest(con, source: Path, cfg: Config):
    from pipeline.ingest.native import load_native
    from pipeline.privacy.gate import refuse_if_identifiers
    from pipeline.warehouse import logged_stage

    if cfg.extract.format == "omop":
        from pipeline.ingest.omop import load_omop

        with step(f"ingest OMOP CDM {source}"), logged_stage(con, "ingest", cfg):
            summary = load_omop(con, source, cfg)
        if summary.skipped:
            console.print("  CDM and mapping unchanged, skipped")
        for load in summary.tables:
            console.print(f"  {load.table:<22} {load.rows_read:,} read, {load.rows_loaded:,} loaded, "
                          f"{load.rows_quarantined:,} quarantined")
        for note in summary.notes:
            console.print(f"  note: {escape(note)}")
        return summary
    with step(f"ingest {source}"), logged_stage(con, "ingest", cfg):
        summary = load_native(con, source, cfg, privacy_gate=refuse_if_identifiers)
    for load in summary.tables:
        state = "unchanged, skipped" if load.skipped else (
            f"{load.rows_read:,} read, {load.rows_loaded:,} loaded, {load.rows_quarantined:,} quarantined"
        )
        extra = f" (ignored extra columns: {', '.join(load.extra_columns)})" if load.extra_columns else ""
        console.print(f"  {load.table:<14} {state}{extra}")
    return summary


def do_privacy_report(con, cfg: Config) -> dict:
    from pipeline.privacy.gate import k_anonymity

    k = cfg.disclosure.min_cell_count
    risk = k_anonymity(con, k=k)
    if risk.get("persons_in_small_groups"):
        console.print(
            f"[yellow]warning[/] k-anonymity over (birth_year, sex, region): smallest group {risk['smallest_group']}, "
            f"{risk['persons_in_small_groups']:,} persons in groups below k={k}"
        )
    # What is published (manifest, report) holds no small count: a share and a group count.
    persons = risk.get("persons") or 0
    return {
        "quasi_identifiers": "birth_year, sex, region",
        "k": k,
        "groups_below_k": risk.get("groups_below_k"),
        "share_of_persons_in_groups_below_k": round(risk["persons_in_small_groups"] / persons, 4) if persons else None,
    }


def do_validate(con, cfg: Config, reports: Path, warehouse: Path):
    from pipeline.validate import run as validate_run
    from pipeline.warehouse import logged_stage

    _require(con, "raw_prescriptions", "ingest")
    with step("validate"), logged_stage(con, "validate", cfg):
        result = validate_run(con, cfg, quality_dir=reports / "quality", warehouse_path=warehouse)
    return result


def do_transform(con, cfg: Config) -> dict:
    from pipeline.transform import run as transform_run
    from pipeline.warehouse import logged_stage

    _require(con, "raw_prescriptions", "ingest")
    with step("transform: episodes, cohort, outcomes"), logged_stage(con, "transform", cfg):
        summary = transform_run(con, cfg)
    return summary


def do_estimate(con, cfg: Config) -> dict:
    from pipeline.estimate.run import run as estimate_run
    from pipeline.warehouse import logged_stage

    _require(con, "analysis_person", "transform")
    from pipeline.transform import rebuild_analysis_person

    def rebuild(varied: Config):
        return rebuild_analysis_person(con, varied, base=cfg)

    with step("estimate (with sensitivity analyses)"), logged_stage(con, "estimate", cfg):
        result = estimate_run(con, cfg, rebuild=rebuild)
    return result


def do_report(con, cfg: Config, reports: Path, estimate_result: Optional[dict], extra: Optional[dict] = None) -> Path:
    from pipeline.manifest import build_manifest
    from pipeline.publish import run as publish_run
    from pipeline.warehouse import logged_stage

    _require(con, "estimates", "estimate")
    manifest = build_manifest(con, cfg, extra or {})
    with step(f"report -> {reports}"), logged_stage(con, "report", cfg):
        index = publish_run(con, cfg, reports, manifest, estimate_result)
    return index


@app.command()
def demo(
    out: Path = typer.Option(DEFAULT_DEMO, "--out", "-o", help="Folder to write the demo extract to."),
    persons: Optional[int] = typer.Option(None, help="Number of persons (default: demo.persons)."),
    seed: Optional[int] = typer.Option(None, help="Random seed (default: demo.seed)."),
    file_format: str = typer.Option("csv", "--file-format", help="csv or parquet."),
    config: Optional[Path] = ConfigOpt,
    set_: list[str] = SetOpt,
) -> None:
    """Build the synthetic demo extract (seeded, deterministic) and its truth.json."""
    cfg = _config(config, set_, None)
    persons = persons or cfg.demo.persons
    seed = cfg.demo.seed if seed is None else seed
    console.print(f"seed {seed}")
    do_demo(out, persons, seed, file_format, cfg)


@app.command()
def ingest(source: Optional[Path] = SourceOpt, format: Optional[str] = FormatOpt, config: Optional[Path] = ConfigOpt,
           set_: list[str] = SetOpt, warehouse: Path = WarehouseOpt) -> None:
    """Load an extract into the warehouse (privacy gate first; bad rows quarantined)."""
    cfg = _config(config, set_, format)
    con = _connect(warehouse, cfg)
    do_ingest(con, _ensure_demo(source, cfg), cfg)
    do_privacy_report(con, cfg)


@app.command()
def validate(config: Optional[Path] = ConfigOpt, set_: list[str] = SetOpt, warehouse: Path = WarehouseOpt,
             reports: Path = ReportsOpt) -> None:
    """Run the Great Expectations suites; stop on errors, quarantine bad rows."""
    cfg = _config(config, set_, None)
    do_validate(_connect(warehouse, cfg), cfg, reports, warehouse)


@app.command()
def transform(config: Optional[Path] = ConfigOpt, set_: list[str] = SetOpt, warehouse: Path = WarehouseOpt) -> None:
    """Build staging, treatment episodes, the new-user cohort and outcomes (SQL)."""
    cfg = _config(config, set_, None)
    summary = do_transform(_connect(warehouse, cfg), cfg)
    console.print(json.dumps(summary, default=str))


@app.command()
def estimate(config: Optional[Path] = ConfigOpt, set_: list[str] = SetOpt, warehouse: Path = WarehouseOpt) -> None:
    """Estimate dependence by duration band and stratum (writes table `estimates`)."""
    cfg = _config(config, set_, None)
    do_estimate(_connect(warehouse, cfg), cfg)


@app.command()
def report(config: Optional[Path] = ConfigOpt, set_: list[str] = SetOpt, warehouse: Path = WarehouseOpt,
           reports: Path = ReportsOpt) -> None:
    """Publish reports/index.html and reports/exports/ (disclosure control applied)."""
    cfg = _config(config, set_, None)
    do_report(_connect(warehouse, cfg), cfg, reports, None)


@app.command()
def run(source: Optional[Path] = SourceOpt, format: Optional[str] = FormatOpt, config: Optional[Path] = ConfigOpt,
        set_: list[str] = SetOpt, warehouse: Path = WarehouseOpt, reports: Path = ReportsOpt) -> None:
    """Run every stage: ingest, validate, transform, estimate, report."""
    cfg = _config(config, set_, format)
    started = time.perf_counter()
    con = _connect(warehouse, cfg)
    source = _ensure_demo(source, cfg)
    do_ingest(con, source, cfg)
    risk = do_privacy_report(con, cfg)
    do_validate(con, cfg, reports, warehouse)
    do_transform(con, cfg)
    result = do_estimate(con, cfg)
    is_demo = (Path(source) / "truth.json").exists()  # the generator writes its truth beside the demo only
    index = do_report(con, cfg, reports, result, {"source": Path(source).name, "demo": is_demo, "k_anonymity": risk})
    headline = (result or {}).get("headline", {}).get("gt_4_weeks", {})
    if headline.get("estimate") is not None:
        console.print(
            f"[bold]> 4 weeks:[/] {headline['estimate']:.1%} dependent "
            f"(95% CI {headline['ci_low']:.1%} to {headline['ci_high']:.1%})"
        )
    console.print(f"report: {index}  ({time.perf_counter() - started:.1f} s in all)")


# --------------------------------------------------------------------------- network study (pipeline/network)


@app.command()
def package(out: Path = typer.Option(..., "--out", "-o", help="Package folder, or a .zip file."),
            reports: Path = ReportsOpt,
            name: Optional[str] = typer.Option(None, "--name", help="Source name (default: the extract folder's name).")) -> None:
    """Write this site's result package from the last run's published reports (disclosure-controlled)."""
    from pipeline.network.package import build_package

    with step(f"package {reports} -> {out}"):
        manifest = build_package(reports, out, name)
    console.print(f"  source {manifest['source_name']}, settings {manifest['settings_hash'][:12]}, "
                  f"{len(manifest['files'])} files")


@app.command()
def pool(sites: list[Path] = typer.Argument(..., help="Site packages (folders or .zip) made by `package`."),
         out: Path = typer.Option(PROJECT_ROOT / "reports" / "network", "--out", "-o", help="Folder for the pooled report and exports."),
         method: str = typer.Option("reml", "--method", help="Between-site variance: reml, dl (DerSimonian-Laird) or pm (Paule-Mandel).")) -> None:
    """Pool site packages by random-effects meta-analysis (refuses sites with different settings)."""
    from pipeline.network.pool import run_pool

    with step(f"pool {len(sites)} site packages -> {out}"):
        result = run_pool(sites, out, method)
    left_out = result["notes"]
    if len(left_out):
        console.print(f"  {len(left_out)} notes (cells a site was left out of, cells not pooled): {out / 'exports' / 'notes.csv'}")
    gt = result["headline"]["headline"]["gt_4_weeks"]
    if gt.get("estimate") is not None:
        console.print(f"[bold]> 4 weeks, pooled over {len(result['sites'])} sites:[/] {gt['estimate']:.1%} dependent "
                      f"(95% CI {gt['ci_low']:.1%} to {gt['ci_high']:.1%})")
    console.print(f"report: {out / 'index.html'}")


def main() -> None:
    code = 0
    try:
        app()
    except PipelineError as error:
        console.print(f"[red]error:[/] {escape(str(error))}", soft_wrap=True)
        code = error.exit_code
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    finally:
        for con in _OPEN_CONNECTIONS:
            try:
                con.close()  # checkpoints the warehouse
            except Exception:  # noqa: BLE001 - closing must not hide the real outcome
                pass
    # With duckdb-engine and great-expectations both imported, DuckDB 2.0's
    # bindings print dozens of "nanobind: leaked instance" lines while the
    # interpreter tears down (harmless, but alarming to an analyst). All work is
    # finished and the warehouse closed, so skip the teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
