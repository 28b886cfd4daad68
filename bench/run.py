"""``python -m bench``: every stage of the pipeline at each size, against DuckDB's bare load.

    python -m bench [--sizes 1M,10M] [--engine duckdb|spark] [--seed N] [--set k=v ...] [--keep]

For each size (prescription rows):

1. **Extract**: ``bench.generate`` writes a contract-shaped CSV extract into
   ``bench/out/<size>/extract`` (streamed in chunks; reused when size, seed and generator
   version match).
2. **Bare load** (the baseline): a fresh Python process opens a fresh DuckDB file and runs
   ``create table t as select * from read_csv('<file>')`` for each of the four files. It runs
   before and after the pipeline; the minimum of the two is the baseline.
3. **Stages**: ``python -m pipeline <stage>`` for each stage the CLI has (ingest, validate,
   transform, estimate, sensitivity when present, report), each in its own subprocess on a
   fresh warehouse, with the options that stage accepts (``--source``, ``--reports``,
   ``--engine``, ``--set``).
4. **Gate**: the identifier gate (``pipeline/privacy/gate.py``) runs inside ingest; it is
   timed on its own in a separate process that loads the four files as text and then calls
   the gate on them (only the gate's own seconds count).

Prints a table per size, writes ``bench/out/results.json`` and ``bench/out/report.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from bench import generate, report
from bench.measure import Measurement, last_json, maxrss_mb, measure, stage_env
from pipeline.config import PROJECT_ROOT

OUT_DIR = PROJECT_ROOT / "bench" / "out"
DEFAULT_SIZES = "1M,10M"
DEFAULT_SEED = 20261122
# The stages in pipeline order; a stage runs when `python -m pipeline --help` lists it.
# ``publish`` counts only where the CLI calls the last stage so instead of ``report``.
STAGE_ORDER = ("ingest", "validate", "transform", "estimate", "sensitivity", "report", "publish")

BARE_LOAD_SCRIPT = """
import json, sys, time
started = time.perf_counter()
import duckdb
database, *files = sys.argv[1:]
con = duckdb.connect(database)
con.execute("set enable_progress_bar = false")
for path in files:
    name = path.rsplit('/', 1)[-1].split('.')[0]
    literal = "'" + path.replace("'", "''") + "'"
    con.execute(f"create table {name} as select * from read_csv({literal})")
con.close()
print(json.dumps({"in_process_seconds": time.perf_counter() - started}))
"""

# The gate as ingest runs it, on its own: load the files as text (not timed), then judge
# every value of every file (timed). Prints counts and kinds only -- never a value.
GATE_SCRIPT = """
import json, sys, time
from pathlib import Path
from pipeline.config import load_config
from pipeline.privacy import gate
from pipeline.warehouse import apply_settings, connect
database, *args = sys.argv[1:]
overrides = [a[len("--set="):] for a in args if a.startswith("--set=")]
pairs = [a.split("=", 1) for a in args if not a.startswith("--set=")]
con = connect(database)
con.execute("set enable_progress_bar = false")
apply_settings(con, load_config(None, overrides))
started = time.perf_counter()
for table, path in pairs:
    literal = "'" + path.replace("'", "''") + "'"
    con.execute(f"create table gate_{table} as select * from read_csv({literal}, header = true, all_varchar = true)")
loaded = time.perf_counter()
findings = []
for table, path in pairs:
    if hasattr(gate, "check_relation"):
        findings += gate.check_relation(con, f"gate_{table}", table, Path(path).name)
    else:
        findings += gate.scan_table(con, f"gate_{table}", table, Path(path).name)
done = time.perf_counter()
con.close()
print(json.dumps({"load_seconds": loaded - started, "gate_seconds": done - loaded, "findings": len(findings),
                  "finding_kinds": sorted({str(getattr(f, "kind", "")) for f in findings})}))
"""


class BenchError(Exception):
    """A benchmark step that cannot go on: one line, exit 2."""


def say(line: str) -> None:
    print(f"[bench {dt.datetime.now():%H:%M:%S}] {line}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- what the CLI offers


def _help(python: str, *args: str) -> str:
    env = {**stage_env(), "COLUMNS": "200", "NO_COLOR": "1"}
    done = subprocess.run([python, "-m", "pipeline", *args, "--help"], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, env=env, timeout=300)
    if done.returncode != 0:
        raise BenchError(f"`python -m pipeline {' '.join(args)} --help` failed: "
                         f"{(done.stderr or done.stdout).strip().splitlines()[-1:] or ['no output']}")
    return done.stdout


def stages_in_help(help_text: str) -> list[str]:
    """The pipeline stages a ``python -m pipeline --help`` text lists, in pipeline order.

    >>> stages_in_help("│ ingest     Load\\n│ sensitivity  Run the\\n│ run  all\\n│            estimate  x\\n│ estimate  E")
    ['ingest', 'estimate', 'sensitivity']
    >>> stages_in_help("  ingest  x\\n  publish  y"), stages_in_help("│ report  a\\n│ publish  b")
    (['ingest', 'publish'], ['report'])
    """
    found = []
    for stage in STAGE_ORDER:
        if re.search(rf"(?m)^[│|]?\s{{0,3}}{re.escape(stage)}(\s|$)", help_text):
            found.append(stage)
    if "report" in found and "publish" in found:
        found.remove("publish")
    return found


def options_in_help(help_text: str) -> set[str]:
    """The long options a ``--help`` text lists.

    >>> sorted(options_in_help("│ --source  -s  <path>\\n│ --warehouse   <path>  (--set k=v)"))
    ['--set', '--source', '--warehouse']
    """
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", help_text))


class PipelineCli:
    """The stages and each stage's options, read from the CLI's own help (once per run)."""

    def __init__(self, python: str):
        self.python = python
        top = _help(python)
        self.stages = stages_in_help(top)
        if not self.stages:
            raise BenchError("`python -m pipeline --help` lists none of the stages " + ", ".join(STAGE_ORDER))
        self.top_options = options_in_help(top)
        self.options = {stage: options_in_help(_help(python, stage)) for stage in self.stages}

    def engine_supported(self) -> bool:
        return "--engine" in self.top_options or all("--engine" in o for o in self.options.values())

    whole_run = False

    def use_whole_run(self) -> bool:
        """An engine only ``run`` takes (``--engine spark``: every stage in one Spark session, docs/spark.md):
        measure ``python -m pipeline run`` as the one stage; its own per-step times come from its log."""
        try:
            opts = options_in_help(_help(self.python, "run"))
        except BenchError:
            return False
        if "--engine" not in opts:
            return False
        self.stages, self.options["run"], self.whole_run = ["run"], opts, True
        return True

    def command(self, stage: str, extract: Path, warehouse: Path, reports: Path, overrides: Sequence[str],
                engine: Optional[str]) -> list[str]:
        opts = self.options[stage]
        command = [self.python, "-m", "pipeline"]
        if engine and "--engine" in self.top_options and "--engine" not in opts:
            command += ["--engine", engine]
        command += [stage, "--warehouse", str(warehouse)]
        if engine and "--engine" in opts:
            command += ["--engine", engine]
        if "--source" in opts:
            command += ["--source", str(extract)]
        if "--reports" in opts:
            command += ["--reports", str(reports)]
        for override in overrides:
            command += ["--set", override]
        return command


# ---------------------------------------------------------------- one size


def remove_database(path: Path) -> None:
    for candidate in (path, path.with_name(path.name + ".wal")):
        if candidate.exists():
            candidate.unlink()


def bare_load(python: str, files: Sequence[Path], database: Path, log_path: Path,
              timeout: Optional[float]) -> Measurement:
    """DuckDB's bare load of the extract's files into a fresh database, in a fresh process."""
    remove_database(database)
    result = measure("bare load", [python, "-c", BARE_LOAD_SCRIPT, str(database), *map(str, files)], log_path,
                     timeout, say=say)
    if result.ok:
        result.in_process_seconds = last_json(log_path).get("in_process_seconds")
    remove_database(database)
    return result


def gate_run(python: str, extract: Path, database: Path, log_path: Path, overrides: Sequence[str],
             timeout: Optional[float]) -> tuple[Measurement, dict]:
    """The identifier gate over every value of the four files, in its own process; its seconds are
    the gate's own (the text load before it is not counted)."""
    remove_database(database)
    args = [f"{name}={extract / (name + '.csv')}" for name in generate.TABLE_NAMES]
    args += [f"--set={o}" for o in overrides]
    result = measure("gate", [python, "-c", GATE_SCRIPT, str(database), *args], log_path, timeout, say=say)
    remove_database(database)
    info = last_json(log_path) if result.ok else {}
    wall = result.seconds
    if result.ok:
        result.in_process_seconds = info.get("gate_seconds")
        result.seconds = info.get("gate_seconds", result.seconds)
        if info.get("findings"):
            result.status, result.error = "refused", f"the gate found {info['findings']} identifier finding(s)"
    extra = {"wall_seconds": wall, "text_load_seconds": info.get("load_seconds"), "findings": info.get("findings"),
             "finding_kinds": info.get("finding_kinds"),
             "method": "gate.check_relation on the four files loaded as text, in its own process"}
    return result, extra


def run_steps(log_text: str) -> list[dict]:
    """The step times a ``run`` prints (``done <step> (<s> s)``, possibly wrapped over two lines).

    >>> run_steps("done Spark session (local[2]) (9.1 s)\\ndone ingest x on\\nSpark (61.0 s)\\n")
    [{'step': 'Spark session (local[2])', 'seconds': 9.1}, {'step': 'ingest x on Spark', 'seconds': 61.0}]
    """
    return [{"step": " ".join(name.split()), "seconds": float(seconds)}
            for name, seconds in re.findall(r"done (.+?)\s*\((\d+(?:\.\d+)?) s\)", log_text, re.S)]


def show(label: str, m: Measurement) -> None:
    note = f"  {m.error}" if m.error else ""
    peak = f"{m.peak_mb:,.0f} MB" if m.peak_mb is not None else "-"
    say(f"[{label}] {m.name:<12} {m.status:<7} {m.seconds:9.2f} s  {peak:>10}{note}")


def bench_size(cli: PipelineCli, size: int, out_dir: Path, seed: int, overrides: Sequence[str],
               engine: Optional[str], keep: bool, timeout: Optional[float], regenerate: bool) -> dict:
    label = report.size_label(size)
    work = out_dir / label
    extract_dir = work / "extract"
    say(f"[{label}] extract: {size:,} prescriptions, seed {seed} (bench/generate.py)")
    extract = None if regenerate else generate.reusable(extract_dir, size, seed)
    if extract is not None:
        extract = {**extract, "reused": True}
    else:  # written in its own process, measured like a stage (its peak shows the streaming)
        command = [cli.python, "-m", "bench.generate", str(extract_dir), str(size), str(seed), "--regenerate"]
        m = measure("generate", command, work / "generate.log", timeout, say=say)
        show(label, m)
        extract = generate.reusable(extract_dir, size, seed)
        if not m.ok or extract is None:
            raise BenchError(f"the generator failed ({m.error}); log: {m.log}")
        extract = {**extract, "reused": False, "generate_wall_seconds": m.seconds, "generate_peak_mb": m.peak_mb}
    say(f"[{label}] extract {'reused' if extract['reused'] else 'written'}: "
        f"{extract['rows']['prescriptions']:,} prescriptions, {extract['persons']:,} persons")
    warehouse, reports, logs = work / "warehouse.duckdb", work / "reports", work / "logs"
    files = [extract_dir / f"{name}.csv" for name in generate.TABLE_NAMES]
    remove_database(warehouse)
    for folder in (reports, logs):
        if folder.exists():
            shutil.rmtree(folder)
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    baselines = [bare_load(cli.python, files, work / "bare.duckdb", logs / "bare-load-before.log", timeout)]
    show(label, baselines[0])
    stages: list[Measurement] = []
    gate: Optional[Measurement] = None
    gate_info: dict = {}
    for stage in cli.stages:
        say(f"[{label}] {stage} ...")
        m = measure(stage, cli.command(stage, extract_dir, warehouse, reports, overrides, engine),
                    logs / f"{stage}.log", timeout, say=say)
        show(label, m)
        stages.append(m)
        if stage == "ingest":
            say(f"[{label}] gate (timed on its own) ...")
            gate, gate_info = gate_run(cli.python, extract_dir, work / "gate.duckdb", logs / "gate.log", overrides,
                                       timeout)
            show(label, gate)
    baselines.append(bare_load(cli.python, files, work / "bare.duckdb", logs / "bare-load-after.log", timeout))
    show(label, baselines[1])
    if not keep:
        remove_database(warehouse)
        if reports.exists():
            shutil.rmtree(reports)
    result = report.summarise_size(size, extract, baselines, stages, gate, gate_info)
    if cli.whole_run and stages and stages[0].log:
        result["run_steps"] = run_steps(Path(stages[0].log).read_text(errors="replace"))
    if load_before is not None:
        result["load_average_1min"] = {"before": load_before, "after": os.getloadavg()[0]}
    return result


# ---------------------------------------------------------------- machine and run


def machine_info() -> dict:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "machine": platform.machine(), "cpu_count": os.cpu_count()}
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    try:  # the version without importing DuckDB here: the harness stays small (see bench/measure.py)
        from importlib.metadata import version

        info["duckdb"] = version("duckdb")
    except Exception:  # noqa: BLE001 - informative only
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gb"] = round(int(line.split()[1]) * 1024 / 1e9, 1)
    except OSError:
        pass
    return info


def harness_peak_mb() -> Optional[float]:
    """This process's own peak resident memory (a floor under every child's ``ru_maxrss``)."""
    try:
        import resource

        return maxrss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    except ImportError:  # pragma: no cover - no resource module (Windows)
        return None


def git_commit() -> Optional[str]:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=PROJECT_ROOT)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=PROJECT_ROOT).stdout.strip()
        return done.stdout.strip() + (" (with uncommitted changes)" if dirty else "") if done.returncode == 0 else None
    except OSError:
        return None


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES,
                        help=f"prescription counts, comma-separated: 1M, 10M, 100M, 250k (default {DEFAULT_SIZES})")
    parser.add_argument("--engine", default=None,
                        help="passed to every stage as --engine (the pipeline must accept it; default: none)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"generator seed (default {DEFAULT_SEED})")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="configuration override passed to every stage (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep each size's warehouse and reports")
    parser.add_argument("--regenerate", action="store_true", help="rewrite extracts even when a matching one exists")
    parser.add_argument("--timeout", type=float, default=6 * 3600, help="seconds before a subprocess is killed")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="working and results folder (default bench/out)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    sizes = report.parse_sizes(args.sizes)
    python = sys.executable
    engine = (args.engine or "").strip() or None
    cli = PipelineCli(python)
    if engine and engine != "duckdb" and not cli.engine_supported() and cli.use_whole_run():
        say(f"note: the single-stage commands have no --engine; ENGINE={engine} is measured as one `run`")
    elif engine and not cli.engine_supported():
        if engine != "duckdb":
            raise BenchError(f"the pipeline has no --engine option yet, so ENGINE={engine} cannot be measured "
                             "(`python -m bench --engine` passes it on once `python -m pipeline --help` lists it)")
        say("note: the single-stage commands run on DuckDB; ENGINE=duckdb is measured as is, stage by stage")
        engine = None
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    say(f"sizes {', '.join(report.size_label(s) for s in sizes)}; stages {', '.join(cli.stages)}; "
        f"seed {args.seed}; engine {engine or 'default'}")
    results: dict[str, Any] = {
        "started_at": dt.datetime.now().isoformat(timespec="seconds"),
        "argv": " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": git_commit(),
        "engine": engine,
        "machine": machine_info(),
        "seed": args.seed,
        "overrides": args.overrides,
        "stages": cli.stages,
        "targets": {"size": report.TARGET_SIZE, "pipeline_ratio": report.TARGET_PIPELINE_RATIO,
                    "peak_mb": report.TARGET_PEAK_MB, "estimate_and_sensitivity_ratio": report.TARGET_ESTIMATE_RATIO,
                    "gate_ratio": report.TARGET_GATE_RATIO, "linearity_10x": report.LINEARITY_LIMIT_PER_10X,
                    "peak_mb_at_100M": report.TARGET_LARGE_PEAK_MB},
        "sizes": [],
    }
    results_path = out_dir / "results.json"
    for size in sizes:
        results["sizes"].append(bench_size(cli, size, out_dir, args.seed, args.overrides, engine, args.keep,
                                           args.timeout, args.regenerate))
        results["linearity"] = report.linearity(results["sizes"])
        results_path.write_text(json.dumps(results, indent=2, default=str))  # kept after each size
    results["finished_at"] = dt.datetime.now().isoformat(timespec="seconds")
    results["harness_peak_mb"] = harness_peak_mb()
    results_path.write_text(json.dumps(results, indent=2, default=str))
    (out_dir / "report.md").write_text(report.render_markdown(results))
    print(report.render(results))
    shown = out_dir.relative_to(PROJECT_ROOT) if out_dir.is_relative_to(PROJECT_ROOT) else out_dir
    print(f"\nwritten: {shown / 'results.json'}, {shown / 'report.md'}")
    return 0 if all(r["pipeline_complete"] for r in results["sizes"]) else 1
