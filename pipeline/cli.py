"""The one command-line app: ``benzo-outcomes <command>`` (or ``python -m pipeline <command>``).

A stage each (demo, ingest, validate, transform, estimate, report), ``run`` for all,
``check`` and ``stamp`` for make, ``docs`` for the documents written from the
contract, the network study (``split``, ``package``, ``pool``), the results store
(``results append|runs``) and its dashboard (``serve``).

Typer (CLI) and Rich (progress on stderr) are used rather than argparse and
print(): typer gives ``--help`` for every command from the signatures below, rich
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
from typing import Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape

from pipeline.config import BENZODIAZEPINES, INN_SHAPE, PROJECT_ROOT, Config, load_config
from pipeline.errors import ExtractError, PipelineError, StageOrderError
from pipeline.results import DEFAULT_RESULTS_DIR

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
DEFAULT_STAMP = PROJECT_ROOT / "data" / ".source-stamp"

SourceOpt = typer.Option(None, "--source", "-s", help="Extract folder (native) or CDM (.duckdb file or folder, with --format omop). Default: the demo extract.")
FormatOpt = typer.Option(None, "--format", "-f", help="native or omop (default: extract.format in the config).")
ConfigOpt = typer.Option(None, "--config", "-c", help="TOML configuration file (default: config/default.toml).")
SetOpt = typer.Option([], "--set", help="Override a setting, e.g. --set episodes.persistence_window_days=60 (repeatable).")
WarehouseOpt = typer.Option(DEFAULT_WAREHOUSE, "--warehouse", help="DuckDB warehouse file.")
ReportsOpt = typer.Option(DEFAULT_REPORTS, "--reports", help="Folder the report and exports are published to.")
EngineOpt = typer.Option(None, "--engine", help="duckdb or spark (default: engine.name in the config; docs/spark.md).")


def _config(config_path: Optional[Path], overrides: list[str], fmt: Optional[str], engine: Optional[str] = None) -> Config:
    """Every setting checked before any data is read (the format decides which drug names are known)."""
    if engine is not None:
        overrides = [*overrides, f"engine.name={engine}"]
    if fmt is not None:
        if fmt not in ("native", "omop"):
            raise PipelineError(f"--format must be native or omop, got {fmt!r}")
        overrides = [*overrides, f"extract.format={fmt}"]
    return load_config(config_path, overrides)


@contextmanager
def step(name: str) -> Iterator[Callable[[str], None]]:
    """Show a spinner while a stage runs, then its time; yields ``progress(message)``, which
    shows what the stage is doing now beside the spinner (e.g. which file ingest reads)."""
    started = time.perf_counter()
    with console.status(f"[bold]{name}[/]...") as status:
        yield lambda message: status.update(f"[bold]{name}[/]: {escape(message)}...")
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
        first_line = str(error).splitlines()[0]
        if "lock" in first_line.lower():
            import re

            holder = re.search(r"\(PID (\d+)\)", first_line)
            by = f" (process {holder.group(1)})" if holder else ""
            raise PipelineError(
                f"warehouse {warehouse} is in use by another run{by}: wait for it to finish, then run again"
            ) from None
        raise PipelineError(f"cannot open warehouse {warehouse}: {first_line}") from None


def _require(con, table: str, stage: str) -> None:
    from pipeline.warehouse import require_one_snapshot, table_exists

    if not table_exists(con, table):
        raise StageOrderError(f"table '{table}' is missing: run `python -m pipeline {stage}` first")
    require_one_snapshot(con)  # every stage after ingest: the raw tables hold one extract
    if stage != "ingest":
        from pipeline.warehouse import require_stage_on_snapshot

        require_stage_on_snapshot(con, stage)  # and what `stage` built came from that extract


def _ensure_demo(source: Optional[Path], cfg: Config) -> Path:
    """The extract to use: the given one, or the demo (built if missing)."""
    if source is not None:
        return source
    if not (DEFAULT_DEMO / "truth.json").exists():
        do_demo(DEFAULT_DEMO, cfg.demo.persons, cfg.demo.seed, "csv", cfg)
    return DEFAULT_DEMO


def _print_headline(headline: dict, where: str) -> None:
    """The headline estimate (longer treatment) in one line, when there is one."""
    longer = headline.get("gt_4_weeks", {})
    if longer.get("estimate") is not None:
        console.print(f"[bold]> 4 weeks{where}:[/] {longer['estimate']:.1%} dependent "
                      f"(95% CI {longer['ci_low']:.1%} to {longer['ci_high']:.1%})")


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
    with step(f"ingest {source}") as progress, logged_stage(con, "ingest", cfg):
        summary = load_native(con, source, cfg, privacy_gate=refuse_if_identifiers, progress=progress)
    for load in summary.tables:
        state = "unchanged, skipped" if load.skipped else (
            f"{load.rows_read:,} read, {load.rows_loaded:,} loaded, {load.rows_quarantined:,} quarantined"
        )
        extra = f" (ignored extra columns: {', '.join(load.extra_columns)})" if load.extra_columns else ""
        console.print(f"  {load.table:<14} {state}{extra}")
    if summary.snapshot_id:
        from pipeline.warehouse import short_snapshot

        console.print(f"  extract snapshot {short_snapshot(summary.snapshot_id)} (all four tables)")
    return summary


def do_check_drugs(con, cfg: Config) -> None:
    """Right after ingest: the drugs asked for must be in the extract, else say which drugs it holds.

    Drug names are contract values (lower-case INN), not identifiers; only
    values of that shape held by at least min_cell_count rows are named, at
    most 20 of them.
    """
    _require(con, "raw_prescriptions", "ingest")
    counts = con.execute(
        "select lower(trim(drug)) as drug, count(*) from raw_prescriptions where drug is not null "
        "group by 1 order by 2 desc, 1").fetchall()
    held = [drug for drug, _ in counts]
    wanted = list(cfg.drugs.ingredients)
    if cfg.drugs.class_level:
        wanted += [*BENZODIAZEPINES, *cfg.drugs.mg_equivalent_to_10mg_diazepam]
    present = set(held)
    if not any(name in present for name in wanted):
        # a value on fewer than k rows could be a stray identifier, not a drug: not named
        k = cfg.disclosure.min_cell_count
        shown = [name for name, rows in counts if INN_SHAPE.fullmatch(name) and rows >= k][:20]
        others = len(held) - len(shown)
        parts = [", ".join(shown)] if shown else []
        if others:
            parts.append(f"{others:,} other value{'s' if others > 1 else ''} not named here (not a lower-case "
                         f"drug name, on fewer than {k} rows, or beyond the 20 most frequent)")
        listing = " and ".join(parts) if held else "no drug at all"
        what = "any benzodiazepine" if cfg.drugs.class_level else ", ".join(cfg.drugs.ingredients)
        raise ExtractError(
            f"drugs.ingredients: {what} not in the extract's prescriptions (column drug), which hold {listing}; "
            "choose with DRUGS=... or --set drugs.ingredients=..."
        )
    missing = [name for name in cfg.drugs.ingredients if name not in present]
    if missing:
        console.print(f"[yellow]warning[/] drugs.ingredients {escape(', '.join(missing))}: not in the extract's "
                      "prescriptions; the analysis covers the others")


def do_privacy_report(con, cfg: Config) -> dict:
    from pipeline.privacy.gate import k_anonymity

    k = cfg.disclosure.min_cell_count
    risk = k_anonymity(con, k=k)
    if risk.get("persons_in_small_groups"):
        console.print(
            f"[yellow]warning[/] k-anonymity over (birth_year, sex, region): smallest group {risk['smallest_group']}, "
            f"{risk['persons_in_small_groups']:,} persons in groups below k={k}"
        )
    # Exact counts for the publish stage, which suppresses and rounds them (publish.tables.release_manifest).
    return {
        "quasi_identifiers": "birth_year, sex, region",
        "k": k,
        "persons": risk.get("persons"),
        "persons_in_groups_below_k": risk.get("persons_in_small_groups"),
        "groups_below_k": risk.get("groups_below_k"),
    }


def quality_dir(warehouse: Path) -> Path:
    """The analyst's quality folder of a warehouse: ``quality-internal`` beside ``warehouse.duckdb``, and
    ``quality-internal-<name>`` beside any other file, so two warehouses in one folder (two sites run at
    once) never write one Great Expectations folder together.

    >>> quality_dir(Path("data/warehouse.duckdb")).as_posix(), quality_dir(Path("wh/south.duckdb")).as_posix()
    ('data/quality-internal', 'wh/quality-internal-south')
    """
    warehouse = Path(warehouse)
    name = "quality-internal" if warehouse.stem == "warehouse" else f"quality-internal-{warehouse.stem}"
    return warehouse.parent / name


def do_validate(con, cfg: Config, warehouse: Path):
    from pipeline.validate import run as validate_run
    from pipeline.warehouse import logged_stage

    _require(con, "raw_prescriptions", "ingest")
    with step("validate"), logged_stage(con, "validate", cfg):
        # Full results and GX Data Docs name records: the analyst's folder beside the warehouse, never reports/.
        result = validate_run(con, cfg, quality_dir=quality_dir(warehouse), warehouse_path=warehouse)
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
    with step("estimate"), logged_stage(con, "estimate", cfg):
        result = estimate_run(con, cfg)
    return result


def do_sensitivity(con, cfg: Config) -> dict:
    from pipeline.estimate.sensitivity import run as sensitivity_run
    from pipeline.warehouse import logged_stage

    _require(con, "estimates", "estimate")
    with step("sensitivity analyses"), logged_stage(con, "sensitivity", cfg):
        return sensitivity_run(con, cfg)


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
    cfg = _on_duckdb_only(_config(config, set_, format), "ingest")
    con = _connect(warehouse, cfg)
    do_ingest(con, _ensure_demo(source, cfg), cfg)
    do_check_drugs(con, cfg)
    do_privacy_report(con, cfg)


def _on_duckdb_only(cfg: Config, command: str) -> Config:
    """The single-stage commands run on DuckDB; under ``engine.name = "spark"`` they stop with one
    line, before any data is read, rather than load person-level rows onto this machine unasked."""
    if cfg.engine.name != "duckdb":
        raise PipelineError(
            f"`{command}` runs on DuckDB only, and the configuration asks for engine {cfg.engine.name!r}: "
            f"on {cfg.engine.name.capitalize()} every stage runs in one `run` (make ENGINE={cfg.engine.name}, "
            f"or python -m pipeline run --engine {cfg.engine.name}; docs/spark.md), "
            "or set engine.name=duckdb for this command")
    return cfg


def _not_after_spark(con, command: str):
    """A warehouse-only stage on DuckDB after a Spark run would read the raw tables' schema alone
    (the Spark run keeps their rows on the cluster) and build an empty analysis: one line instead."""
    from pipeline.warehouse import raw_tables_on_spark

    if raw_tables_on_spark(con):
        raise StageOrderError(
            f"`{command}` on DuckDB: this warehouse's last ingest ran on Spark, whose rows stay on Spark "
            "(here only their schema): run every stage on Spark again (make ENGINE=spark), "
            "or load the extract here first (make ingest, or make run)")
    return con


def _stage(config: Optional[Path], overrides: list[str], warehouse: Path, command: str):
    """A warehouse-only stage's open warehouse and settings: ``(con, cfg)``, the order every ``do_*`` takes."""
    cfg = _on_duckdb_only(_config(config, overrides, None), command)
    return _not_after_spark(_connect(warehouse, cfg), command), cfg


@app.command()
def validate(config: Optional[Path] = ConfigOpt, set_: list[str] = SetOpt, warehouse: Path = WarehouseOpt) -> None:
    """Run the Great Expectations suites; stop on errors, quarantine bad rows."""
    do_validate(*_stage(config, set_, warehouse, "validate"), warehouse)


@app.command()
def transform(config: Optional[Path] = ConfigOpt, set_: list[str] = SetOpt, warehouse: Path = WarehouseOpt) -> None:
    """Build staging, treatment episodes, the new-user cohort and outcomes (SQL)."""
    con, cfg = _stage(config, set_, warehouse, "transform")
    do_check_drugs(con, cfg)
    console.print(json.dumps(do_transform(con, cfg), default=str))


@app.command()
def estimate(config: Optional[Path] = ConfigOpt, set_: list[str] = SetOpt, warehouse: Path = WarehouseOpt) -> None:
    """Estimate dependence by duration band and stratum (writes table `estimates`)."""
    do_estimate(*_stage(config, set_, warehouse, "estimate"))


@app.command()
def sensitivity(config: Optional[Path] = ConfigOpt, set_: list[str] = SetOpt, warehouse: Path = WarehouseOpt) -> None:
    """Sensitivity analyses: the headline with one setting varied at a time (rows of table `estimates`)."""
    do_sensitivity(*_stage(config, set_, warehouse, "sensitivity"))


@app.command()
def report(config: Optional[Path] = ConfigOpt, set_: list[str] = SetOpt, warehouse: Path = WarehouseOpt,
           reports: Path = ReportsOpt) -> None:
    """Publish reports/index.html and reports/exports/ (disclosure control applied)."""
    do_report(*_stage(config, set_, warehouse, "report"), reports, None)


@app.command()
def run(source: Optional[Path] = SourceOpt, format: Optional[str] = FormatOpt, config: Optional[Path] = ConfigOpt,
        set_: list[str] = SetOpt, warehouse: Path = WarehouseOpt, reports: Path = ReportsOpt,
        engine: Optional[str] = EngineOpt) -> None:
    """Run every stage: ingest, validate, transform, estimate, report."""
    cfg = _config(config, set_, format, engine)
    started = time.perf_counter()
    if cfg.engine.name == "spark":  # the person-level stages on Spark (pipeline/spark/run.py)
        from pipeline.spark.run import run_on_spark

        return run_on_spark(_ensure_demo, source, cfg, warehouse, reports, step, console)
    con = _connect(warehouse, cfg)
    source = _ensure_demo(source, cfg)
    do_ingest(con, source, cfg)
    do_check_drugs(con, cfg)
    risk = do_privacy_report(con, cfg)
    do_validate(con, cfg, warehouse)
    do_transform(con, cfg)
    result = do_estimate(con, cfg)
    do_sensitivity(con, cfg)
    is_demo = (Path(source) / "truth.json").exists()  # the generator writes its truth beside the demo only
    index = do_report(con, cfg, reports, result, {"source": Path(source).name, "demo": is_demo, "k_anonymity": risk})
    _print_headline((result or {}).get("headline", {}), "")
    console.print(f"report: {index}  ({time.perf_counter() - started:.1f} s in all)")


@app.command()
def check(source: Optional[Path] = SourceOpt, format: Optional[str] = FormatOpt, config: Optional[Path] = ConfigOpt,
          set_: list[str] = SetOpt, engine: Optional[str] = EngineOpt) -> None:
    """Check every setting (types, ranges, band lists, drug names) and print them; reads no data."""
    cfg = _config(config, set_, format, engine)
    if source is not None and not source.exists():
        raise ExtractError(f"extract not found: {source}")
    typer.echo(json.dumps(cfg.to_dict(), indent=1))


@app.command()
def stamp(source: Optional[Path] = SourceOpt, format: Optional[str] = FormatOpt, config: Optional[Path] = ConfigOpt,
          set_: list[str] = SetOpt,
          out: Path = typer.Option(DEFAULT_STAMP, "--out", help="Stamp file (make's rebuild rule compares it)."),
          engine: Optional[str] = EngineOpt) -> None:
    """Check the settings and record the extract's file names, sizes and sha256; rewrite the stamp only on change."""
    from pipeline.stamp import write_stamp

    cfg = _config(config, set_, format, engine)
    source = source if source is not None else DEFAULT_DEMO
    if write_stamp(out, source, cfg.to_dict()):
        console.print(f"extract or settings changed since the last run: {out}")


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
         method: str = typer.Option("reml", "--method", help="Between-site variance: reml, dl (DerSimonian-Laird) or pm (Paule-Mandel)."),
         results: Path = typer.Option(None, "--results", help="Results store folder the pooled run is appended to "
                                      "(default: results/ beside the --out folder's parent).")) -> None:
    """Pool site packages by random-effects meta-analysis (refuses sites with different settings)."""
    from pipeline.network.pool import run_pool

    with step(f"pool {len(sites)} site packages -> {out}"):
        result = run_pool(sites, out, method, results)
    left_out = result["notes"]
    if len(left_out):
        console.print(f"  {len(left_out)} notes (cells a site was left out of, cells not pooled): {out / 'exports' / 'notes.csv'}")
    _print_headline(result["headline"]["headline"], f", pooled over {len(result['sites'])} sites")
    console.print(f"report: {out / 'index.html'}")
    stored = result["store"]
    console.print(f"results store: {stored['results_dir']} (pooled run {stored['pooled']}, "
                  f"{len(stored['sites'])} site runs)")


@app.command()
def split(source: Path = typer.Option(DEFAULT_DEMO, "--source", "-s", help="Native extract folder to split."),
          out: Path = typer.Option(PROJECT_ROOT / "data" / "network", "--out", "-o",
                                   help="Folder to write one sub-folder per site to."),
          site: list[str] = typer.Option([], "--site", help="name=RegionA,RegionB (repeatable; '*' = the rest); "
                                         "default: the demo's five sites.")) -> None:
    """Cut one native extract into site extracts by persons.region (the demo as a network)."""
    from pipeline.network.split import DEMO_SITES, parse_site, split_extract

    summary = split_extract(source, out, tuple(parse_site(s) for s in site) or DEMO_SITES)
    for name, counts in summary["sites"].items():
        typer.echo(f"{name}: {counts.get('persons', 0):,} persons rows -> {out / name}")
    for table, rows in summary["left_out_rows"].items():
        typer.echo(f"note: {rows:,} {table} rows have no site (region not listed and no '*' site)")


# --------------------------------------------------------------------------- results store and dashboard (pipeline/results, pipeline/dashboard)

results_app = typer.Typer(no_args_is_help=True, help="The results store (every run's published summarised result).")
app.add_typer(results_app, name="results")
ResultsOpt = typer.Option(DEFAULT_RESULTS_DIR, "--results", help="Results store folder (default results/).")


@results_app.command("append")
def results_append(exports: Path = typer.Argument(..., help="An exports folder, e.g. reports/exports."),
                   results: Path = ResultsOpt) -> None:
    """Append the run published in an exports folder (a stored run is skipped)."""
    from pipeline.results import store

    outcome = store.append_exports(exports, results)
    state = "appended" if outcome["appended"] else "already stored, nothing appended"
    typer.echo(f"run {outcome['run_id']}: {state} (result_id {outcome['first_result_id']}.."
               f"{outcome['last_result_id']}) in {store.store_path(results)}")


@results_app.command("runs")
def results_runs(results: Path = ResultsOpt) -> None:
    """List the stored runs."""
    from pipeline.results import store

    runs = store.read(results)["runs"]
    typer.echo(runs[["run_id", "run_time", "cdm_name", "first_result_id", "last_result_id",
                     "result_rows"]].to_string(index=False))


@app.command()
def serve(host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (127.0.0.1: this machine only)."),
          port: int = typer.Option(8050, "--port", help="Port."),
          results: Path = typer.Option(DEFAULT_RESULTS_DIR, "--results",
                                       help="Results store folder or .duckdb file (default results/).")) -> None:
    """Serve the dashboard over the results store (a missing store or a port in use: one line, exit 2)."""
    import socket

    from pipeline.dashboard.app import create_app

    dash = create_app(results)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise PipelineError(f"cannot listen on {host}:{port}: {error.strerror}; "
                                "choose another with PORT=... (make serve) or --port") from None
    console.print(f"dashboard on http://{host}:{port}/ (Ctrl-C stops it)")
    dash.run(host=host, port=port, debug=False)


# --------------------------------------------------------------------------- documents written from the contract


@app.command()
def docs(check: bool = typer.Option(False, "--check", help="Change nothing; fail (exit 2) when a document is stale.")) -> None:
    """Write docs/contract.md and docs/ARCHITECTURE.md's table lists from pipeline/contract.py."""
    from pipeline.contract import write_docs

    stale = write_docs(PROJECT_ROOT, check=check)
    names = ", ".join(str(path.relative_to(PROJECT_ROOT)) for path in stale)
    if check and stale:
        raise PipelineError(f"{names} stale: run `benzo-outcomes docs` (or python -m pipeline docs)")
    console.print(f"rewrote {names}" if stale else "documents up to date")


def main(argv: Optional[list[str]] = None) -> None:
    """The console command; ``argv`` (default: the process's arguments) lets thin module wrappers name a command."""
    code = 0
    try:
        app(args=argv, prog_name="benzo-outcomes" if argv is not None else None)
    except PipelineError as error:
        for line in str(error).splitlines() or [type(error).__name__]:  # one line per mistake
            console.print(f"[red]error:[/] {escape(line)}", soft_wrap=True)
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
