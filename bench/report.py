"""The one report: per size and stage, seconds, ratio to DuckDB's bare load, share, peak memory;
the gate's own line; the targets of issues 16 and 12; ``bench/out/results.json``.

Pure functions over measurements and dicts (no subprocess), so the tests call them directly.

>>> size_label(1_000_000), size_label(250_000), size_label(2_500_000), size_label(999)
('1M', '250k', '2.5M', '999')
>>> parse_sizes("10M,1M,100M,250k")
[250000, 1000000, 10000000, 100000000]
"""

from __future__ import annotations

import os
from dataclasses import asdict
from typing import Any, Optional, Sequence

from bench.measure import MB, Measurement

# Issue 16 targets, defined at 10M prescriptions on this 2-core / 24 GB machine, same run.
TARGET_SIZE = 10_000_000
TARGET_PIPELINE_RATIO = 4.0
TARGET_PEAK_MB = 2000
TARGET_ESTIMATE_RATIO = 1.0  # estimate + sensitivity together
TARGET_GATE_RATIO = 0.5  # issue 12: the gate adds at most 0.5x the bare load
LARGE_SIZE = 100_000_000
TARGET_LARGE_PEAK_MB = 4000  # 100M end to end, peak under 4 GB
LINEARITY_LIMIT_PER_10X = 12.0  # 10M/1M time ratio <= 12: linear + 20%
LINEARITY_SLACK = LINEARITY_LIMIT_PER_10X / 10
ESTIMATE_STAGES = ("estimate", "sensitivity")


class SizeError(ValueError):
    """A --sizes entry that is not a row count."""


def size_label(rows: int) -> str:
    """A short label for a row count: 1M, 10M, 250k."""
    for unit, scale in (("M", 1_000_000), ("k", 1_000)):
        if rows >= scale:
            value = rows / scale
            return f"{value:g}{unit}" if value == round(value, 1) else f"{rows:d}"
    return str(rows)


def parse_sizes(text: str) -> list[int]:
    """Comma-separated prescription counts (``1000000``, ``1M``, ``250k``, ``2.5M``), sorted, once each.

    >>> parse_sizes("1_000_000, 1M")
    [1000000]
    """
    sizes = []
    for part in str(text).split(","):
        part = part.strip().lower().replace("_", "")
        if not part:
            continue
        scale = {"k": 1_000, "m": 1_000_000}.get(part[-1], 1)
        number = part[:-1] if scale > 1 else part
        try:
            value = int(round(float(number) * scale))
        except ValueError:
            raise SizeError(f"--sizes: '{part}' is not a row count (e.g. 1M, 10M, 100M, 250k)") from None
        if value <= 0:
            raise SizeError(f"--sizes: '{part}' must be positive")
        sizes.append(value)
    if not sizes:
        raise SizeError("--sizes: no size given (e.g. 1M,10M)")
    return sorted(set(sizes))


def ratio(value: Optional[float], base: Optional[float]) -> Optional[float]:
    return value / base if value is not None and base else None


def verdict(value: Optional[float], limit: float, strict: bool = False) -> str:
    """``met``/``not met`` (value <= limit, or < limit when strict); ``n/a`` without a value.

    >>> verdict(2.9, 3), verdict(3.1, 3), verdict(2000, 2000, strict=True), verdict(None, 3)
    ('met', 'not met', 'not met', 'n/a')
    """
    if value is None:
        return "n/a"
    return "met" if (value < limit if strict else value <= limit) else "not met"


# ---------------------------------------------------------------- tables


def _cell(value: Any) -> str:
    """``None`` as ``-``, floats with 2 decimals (none from 100 up), thousands separators."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _numeric_columns(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[bool]:
    return [all(isinstance(row[i], (int, float)) or row[i] is None for row in rows) for i in range(len(headers))]


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: text left-aligned, numbers right-aligned, ``None`` as ``-``.

    >>> print(format_table(["stage", "s"], [["ingest", 1.5], ["validate", None]]))
    stage        s
    --------  ----
    ingest    1.50
    validate     -
    """
    texts = [[_cell(v) for v in row] for row in rows]
    numeric = _numeric_columns(headers, rows)
    widths = [max([len(h)] + [len(r[i]) for r in texts]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in texts])


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """The same table in Markdown.

    >>> print(markdown_table(["stage", "s"], [["ingest", 1.5]]))
    | stage | s |
    |---|---:|
    | ingest | 1.50 |
    """
    numeric = _numeric_columns(headers, rows)
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    out += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(out)


# ---------------------------------------------------------------- one size


def _stage_entry(m: Measurement, bare: Optional[float], total: float) -> dict:
    entry = asdict(m)
    entry["ratio"] = ratio(m.seconds, bare)
    entry["share"] = m.seconds / total if total else None
    return entry


def summarise_size(size: int, extract: dict, baselines: Sequence[Measurement], stages: Sequence[Measurement],
                   gate: Optional[Measurement] = None, gate_info: Optional[dict] = None) -> dict:
    """One size's entry of ``results.json``: ratios to the bare load, shares, peaks, targets.

    The bare load is the minimum of its runs (noise only adds time; the smaller baseline
    makes every ratio conservative). ``gate``: the identifier gate timed on its own (it runs
    inside ingest, so it is not added to the pipeline's time).
    """
    good = [b.seconds for b in baselines if b.ok]
    bare = min(good) if good else None
    complete = bool(stages) and all(m.ok for m in stages)
    total = sum(m.seconds for m in stages)
    peaks = [m.peak_mb for m in stages if m.peak_mb is not None]
    peak = max(peaks) if peaks else None
    entries = [_stage_entry(m, bare, total) for m in stages]
    by_name = {m.name: m for m in stages}
    estimate_parts = [by_name[n] for n in ESTIMATE_STAGES if n in by_name]
    estimate_ok = bool(estimate_parts) and all(m.ok for m in estimate_parts)
    estimate_seconds = sum(m.seconds for m in estimate_parts) if estimate_ok else None
    result: dict[str, Any] = {
        "size": size,
        "label": size_label(size),
        "extract": extract,
        "bare_load_runs": [asdict(b) for b in baselines],
        "bare_load_seconds": bare,
        "bare_load_rule": "minimum of the runs before and after the pipeline",
        "stages": entries,
        "pipeline_seconds": total,
        "pipeline_ratio": ratio(total, bare),
        "pipeline_peak_mb": peak,
        "pipeline_complete": complete,
        "pipeline_cpu_seconds": sum(m.cpu_seconds or 0.0 for m in stages),
        "estimate_and_sensitivity_seconds": estimate_seconds,
        "estimate_and_sensitivity_ratio": ratio(estimate_seconds, bare),
        "gate": None,
    }
    if gate is not None:
        ingest = by_name.get("ingest")
        result["gate"] = {
            **asdict(gate),
            "ratio": ratio(gate.seconds, bare) if gate.ok else None,
            "share_of_ingest": (gate.seconds / ingest.seconds) if gate.ok and ingest and ingest.seconds else None,
            **(gate_info or {}),
        }
    result["targets"] = targets(result)
    result["targets_binding"] = any(t["binding"] for t in result["targets"])
    return result


def targets(result: dict) -> list[dict]:
    """The targets of issue 16 (and issue 12's gate) judged on one size's figures.

    A target is binding at the size it is defined for (10M; 100M for the 100M peak);
    elsewhere its verdict is indicative.
    """
    size = result["size"]
    complete = result["pipeline_complete"]
    gate = result.get("gate") or {}
    rows = [
        ("whole pipeline <= 4x bare load", result["pipeline_ratio"] if complete else None, TARGET_PIPELINE_RATIO,
         False, size == TARGET_SIZE),
        ("peak memory < 2 GB", result["pipeline_peak_mb"] if complete else None, TARGET_PEAK_MB, True,
         size == TARGET_SIZE),
        ("estimate + sensitivity <= 1x bare load", result["estimate_and_sensitivity_ratio"], TARGET_ESTIMATE_RATIO,
         False, size == TARGET_SIZE),
        ("identifier gate <= 0.5x bare load", gate.get("ratio"), TARGET_GATE_RATIO, False, size == TARGET_SIZE),
    ]
    if size >= LARGE_SIZE:
        rows.append(("100M end to end, peak < 4 GB", result["pipeline_peak_mb"] if complete else None,
                     TARGET_LARGE_PEAK_MB, True, True))
    return [{"target": name, "value": value, "limit": limit, "verdict": verdict(value, limit, strict),
             "binding": binding} for name, value, limit, strict, binding in rows]


def linearity(sizes: Sequence[dict]) -> list[dict]:
    """Time ratio between consecutive sizes against the row ratio x 1.2 (10M/1M <= 12).

    >>> small = {"label": "1M", "pipeline_seconds": 10.0, "pipeline_complete": True,
    ...          "extract": {"rows": {"prescriptions": 1_000_000}}, "stages": []}
    >>> big = {**small, "label": "10M", "pipeline_seconds": 110.0, "extract": {"rows": {"prescriptions": 10_000_000}}}
    >>> [(r["time_ratio"], r["limit"], r["verdict"]) for r in linearity([small, big])]
    [(11.0, 12.0, 'met')]
    """
    out = []
    for small, big in zip(sizes, sizes[1:]):
        rows_ratio = big["extract"]["rows"]["prescriptions"] / max(1, small["extract"]["rows"]["prescriptions"])
        complete = small["pipeline_complete"] and big["pipeline_complete"]
        time_ratio = big["pipeline_seconds"] / small["pipeline_seconds"] if complete and small["pipeline_seconds"] else None
        limit = round(LINEARITY_SLACK * rows_ratio, 2)
        per_stage = {}
        for a, b in zip(small["stages"], big["stages"]):
            if a["name"] == b["name"] and a["status"] == "ok" and b["status"] == "ok" and a["seconds"]:
                per_stage[a["name"]] = round(b["seconds"] / a["seconds"], 2)
        out.append({"from": small["label"], "to": big["label"], "rows_ratio": round(rows_ratio, 3),
                    "time_ratio": None if time_ratio is None else round(time_ratio, 2), "limit": limit,
                    "verdict": verdict(time_ratio, limit), "stage_time_ratios": per_stage})
    return out


# ---------------------------------------------------------------- printing

STAGE_HEADERS = ["stage", "status", "seconds", "x bare load", "share %", "peak MB", "CPU s"]


def _mb(value: Optional[float]) -> Optional[int]:
    return None if value is None else round(value)


def _percent(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(100 * value, 1)


def stage_rows(result: dict) -> list[list[Any]]:
    """The table's rows: bare loads, each stage (the gate under ingest), the whole pipeline."""
    rows: list[list[Any]] = []
    runs = result["bare_load_runs"]
    for i, run in enumerate(runs):
        when = "before" if i == 0 else "after"
        rows.append([f"bare load ({when})", run["status"], run["seconds"], ratio(run["seconds"], result["bare_load_seconds"]),
                     None, _mb(run["peak_mb"]), run["cpu_seconds"]])
    gate = result.get("gate")
    for stage in result["stages"]:
        rows.append([stage["name"], stage["status"], stage["seconds"], stage["ratio"], _percent(stage["share"]),
                     _mb(stage["peak_mb"]), stage["cpu_seconds"]])
        if stage["name"] == "ingest" and gate:
            rows.append(["  gate (in ingest)", gate["status"], gate["seconds"], gate["ratio"],
                         _percent(gate["share_of_ingest"]), _mb(gate["peak_mb"]), None])
    if gate and not any(s["name"] == "ingest" for s in result["stages"]):
        rows.append(["gate", gate["status"], gate["seconds"], gate["ratio"], None, _mb(gate["peak_mb"]), None])
    rows.append(["whole pipeline", "ok" if result["pipeline_complete"] else "incomplete", result["pipeline_seconds"],
                 result["pipeline_ratio"], 100.0 if result["stages"] else None, _mb(result["pipeline_peak_mb"]),
                 result["pipeline_cpu_seconds"]])
    return rows


def target_rows(result: dict) -> list[list[Any]]:
    return [[t["target"], t["value"], t["verdict"] + ("" if t["binding"] else " (indicative)")]
            for t in result["targets"]]


def extract_line(result: dict) -> str:
    e = result["extract"]
    rows = ", ".join(f"{name} {count:,}" for name, count in e.get("rows", {}).items())
    mb = sum(e.get("bytes", {}).values()) / MB
    text = (f"{result['label']}: seed {e.get('seed')}, {e.get('persons', 0):,} persons; rows: {rows}; "
            f"{mb:,.0f} MB of CSV{' (reused)' if e.get('reused') else ''}")
    load = result.get("load_average_1min")
    if load:
        busy = max(load.values()) > (os.cpu_count() or 1)
        text += (f"; load average {load['before']:.1f} before, {load['after']:.1f} after"
                 + (" -- MACHINE BUSY: wall times are noisy, compare CPU s" if busy else ""))
    return text


def render(results: dict) -> str:
    """Every size's table, its failures, its targets, then linearity: what ``python -m bench`` prints."""
    out = []
    for result in results["sizes"]:
        out += ["", f"== {extract_line(result)}", format_table(STAGE_HEADERS, stage_rows(result))]
        failed = [s for s in result["stages"] if s["status"] != "ok"]
        if result.get("gate") and result["gate"]["status"] != "ok":
            failed.append(result["gate"])
        for stage in failed:
            out.append(f"  {stage['name']} {stage['status']}: {stage['error']}  (log: {stage['log']})")
        out += ["", format_table(["target (issue 16, 12; defined at 10M)", "value", "verdict"], target_rows(result))]
    for row in results.get("linearity", []):
        value = "-" if row["time_ratio"] is None else f"{row['time_ratio']:.2f}"
        out.append(f"\nlinearity {row['to']}/{row['from']}: time ratio {value} for {row['rows_ratio']:.2f}x the rows "
                   f"(limit {row['limit']:g}): {row['verdict']}")
    return "\n".join(out)


def render_markdown(results: dict) -> str:
    """The same figures in Markdown (``bench/out/report.md``), ready to quote in docs/performance.md."""
    m = results.get("machine", {})
    lines = [f"# Benchmark run {results.get('started_at', '')}", "",
             f"`python -m bench {results.get('argv', '')}` at commit {results.get('commit', '?')};"
             f" engine {results.get('engine') or 'default'}; {m.get('cpu_model', m.get('machine', '?'))},"
             f" {m.get('cpus_usable', m.get('cpu_count', '?'))} CPUs, {m.get('memory_gb', '?')} GB.", ""]
    for result in results["sizes"]:
        lines += [f"## {result['label']} prescriptions", "", extract_line(result), "",
                  markdown_table(STAGE_HEADERS, stage_rows(result)), "",
                  markdown_table(["target", "value", "verdict"], target_rows(result)), ""]
    for row in results.get("linearity", []):
        lines.append(f"- linearity {row['to']}/{row['from']}: {row['time_ratio']} (limit {row['limit']:g}): "
                     f"{row['verdict']}")
    return "\n".join(lines) + "\n"
