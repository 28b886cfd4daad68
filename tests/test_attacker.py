"""The attacker: reads everything published under reports/ and tries to pin down a small count.

It knows the policy (docs/privacy.md): k and the rounding base are printed in
``manifest.json``, a published count c says "the true count is in c's band",
a suppressed count with reason "primary: <count> 1..k-1" says "1..k-1", a zero
is exact. It then writes down every relation it can form between published
counts of nested or complementary populations, as linear equations over the
true counts:

* a row's non-events (n - events); a group's cells against its total level
  (all = gt_4_weeks + le_4_weeks, ...) or a latent total;
* every pairwise difference inside a group (strata, sensitivity variants,
  primary vs complete-case n, whole cohort vs "> 4 weeks" strata -- the same
  variable and level in another analysis);
* successive curve points (change in cumulative events and in the number at
  risk), between neighbours and between published points across withheld ones;
* the attrition chain (before - excluded = after, after = next before); rows
  read = loaded + quarantined; persons loaded vs the attrition's first row;
  the manifest's rows read vs the data-quality table's; k-anonymity counts;
* ``share x total`` and ``estimate x n`` where they carry more than the
  published counts (a share or proportion computed from exact counts).

Bounds are propagated through the equations until nothing changes (interval
constraint propagation: sound, so every pin it finds is real). A leak is a
quantity pinned to exactly one value from 1 to k-1, or two exact counts whose
difference is 1..k-1. The module runs it on the demo, a 300-person extract and
a rare-strata extract (one run each, through the CLI), and proves it is real
on a deliberately unrounded release.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.config import PROJECT_ROOT, load_config
from pipeline.privacy.disclosure import published_number

INF = math.inf
TOTAL_LEVELS = {"all", "total", "overall", "any"}
_PRIMARY = re.compile(r"primary: ([a-z_ -]+?) 1\.\.\d+")


# ---------------------------------------------------------------- the knowledge base


@dataclass
class Knowledge:
    k: int
    b: int
    names: list[str] = field(default_factory=list)
    lo: list[float] = field(default_factory=list)
    hi: list[float] = field(default_factory=list)
    equations: list[list[tuple[int, int]]] = field(default_factory=list)
    by_name: dict[str, int] = field(default_factory=dict)

    def var(self, name: str, lo: float = -INF, hi: float = INF) -> int:
        if name in self.by_name:
            i = self.by_name[name]
            self.lo[i], self.hi[i] = max(self.lo[i], lo), min(self.hi[i], hi)
            return i
        self.names.append(name)
        self.lo.append(lo)
        self.hi.append(hi)
        self.by_name[name] = len(self.names) - 1
        return len(self.names) - 1

    def published(self, name: str, value, primary: bool = False) -> int:
        """A published count: its band, or 1..k-1 / 0..inf when withheld."""
        number = published_number(value)
        if number is None:
            return self.var(name, 1, self.k - 1) if primary else self.var(name, 0, INF)
        if number == 0:
            return self.var(name, 0, 0)
        low = int(number) - (self.b - 1) // 2
        return self.var(name, low, low + self.b - 1)

    def define(self, name: str, terms: list[tuple[int, int]], lo: float = -INF, hi: float = INF) -> int:
        """A new quantity = sum(coef * var) (always a new one: a name already taken gets a suffix)."""
        base, suffix = name, 1
        while name in self.by_name:
            suffix += 1
            name = f"{base} #{suffix}"
        d = self.var(name, lo, hi)
        self.equations.append([(d, -1)] + list(terms))
        return d

    def equal(self, terms: list[tuple[int, int]]) -> None:
        self.equations.append(list(terms))

    def bound(self, i: int, lo: float, hi: float) -> None:
        self.lo[i], self.hi[i] = max(self.lo[i], lo), min(self.hi[i], hi)

    def propagate(self, passes: int = 60) -> None:
        lo, hi = self.lo, self.hi
        for _ in range(passes):
            changed = False
            for eq in self.equations:
                mins = [min(c * lo[v], c * hi[v]) for v, c in eq]
                maxs = [max(c * lo[v], c * hi[v]) for v, c in eq]
                n_inf_min = sum(1 for m in mins if m == -INF)
                n_inf_max = sum(1 for m in maxs if m == INF)
                s_min = sum(m for m in mins if m != -INF)
                s_max = sum(m for m in maxs if m != INF)
                for (v, c), mn, mx in zip(eq, mins, maxs):
                    # c * x_v = -(sum of the others)
                    others_min = -INF if (n_inf_min - (mn == -INF)) else s_min - (mn if mn != -INF else 0)
                    others_max = INF if (n_inf_max - (mx == INF)) else s_max - (mx if mx != INF else 0)
                    low, high = -others_max, -others_min
                    if c == -1:
                        low, high = -high, -low
                    low = math.ceil(low - 1e-9) if low != -INF else low
                    high = math.floor(high + 1e-9) if high != INF else high
                    if low > lo[v]:
                        lo[v], changed = low, True
                    if high < hi[v]:
                        hi[v], changed = high, True
            if not changed:
                return

    def inconsistent(self) -> list[str]:
        return [self.names[i] for i in range(len(self.names)) if self.lo[i] > self.hi[i]]

    def leaks(self) -> list[str]:
        found = []
        exact = {}
        for i, name in enumerate(self.names):
            if self.lo[i] == self.hi[i] and self.lo[i] not in (INF, -INF):
                value = int(self.lo[i])
                if 1 <= abs(value) <= self.k - 1:
                    found.append(f"{name} = {value}")
                exact[i] = value
        # Two exact counts whose difference is small (any pair: the attacker need not know how they nest).
        values = np.array(sorted(set(exact.values())))
        if len(values) > 1:
            gaps = values[:, None] - values[None, :]
            small = np.argwhere((gaps >= 1) & (gaps <= self.k - 1))
            for a, b in small[:20]:
                found.append(f"exact counts {values[a]} and {values[b]} differ by {values[a] - values[b]}")
        return found


def _primary_of(reason) -> set[str]:
    return set(_PRIMARY.findall(str(reason))) if isinstance(reason, str) else set()


def _decimals_beyond_policy(value: float) -> bool:
    """A proportion printed with more precision than 6 decimals (the policy never needs more)."""
    return abs(round(value, 6) - value) > 1e-12


# ---------------------------------------------------------------- reading the release


def read_release(reports: Path) -> tuple[dict[str, pd.DataFrame], dict[str, object]]:
    """Every CSV/Parquet table and every JSON document under ``reports`` (a Parquet file
    identical to the CSV beside it is read once)."""
    tables, documents = {}, {}
    for path in sorted(reports.rglob("*")):
        rel = path.relative_to(reports).as_posix()
        if path.suffix == ".csv":
            tables[rel] = pd.read_csv(path)
        elif path.suffix == ".parquet":
            frame = pd.read_parquet(path)
            twin = tables.get(rel[: -len(".parquet")] + ".csv")
            if twin is None or len(twin) != len(frame) or list(twin.columns) != list(frame.columns):
                tables[rel] = frame
        elif path.suffix == ".json":
            documents[rel] = json.loads(path.read_text(encoding="utf-8"))
    return tables, documents


def _add_estimates(kb: Knowledge, frame: pd.DataFrame, src: str) -> None:
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    n_var, e_var = {}, {}
    for i, r in enumerate(rows):
        if r.get("population") not in (None, "all"):  # the same variable within another population
            r = {**r, "variable": f"{r['variable']}|{r['population']}"}
        key = (r["analysis"], r["variable"], r["level"], r.get("time_days"), r["method"])
        name = f"{src}[{r['analysis']}|{r['variable']}|{r['level']}|t={r.get('time_days')}|{str(r['method'])[:20]}]"
        primary = _primary_of(r.get("suppression_reason"))
        if r.get("n") is None and r.get("events") is None and not r.get("suppressed"):
            continue  # a row with no counts (model terms, anchors)
        n = kb.published(name + ".n", r.get("n"), "n" in primary)
        e = kb.published(name + ".events", r.get("events"), "events" in primary)
        kb.define(name + ".non-events", [(n, 1), (e, -1)], *((1, kb.k - 1) if "non-events" in primary else (-INF, INF)))
        n_var[key], e_var[key] = n, e
        # estimate x n, where the estimate says more than the published counts
        est = published_number(r.get("estimate"))
        if est is not None and r.get("n") is not None and r.get("events") is not None:
            if not float(r["n"]) or abs(est - float(r["events"]) / float(r["n"])) < 1e-12:
                continue  # the policy's proportion: rounded events / rounded n, nothing more
            if _decimals_beyond_policy(est):
                candidates = {(m, round(est * m)) for m in range(int(kb.lo[n]), int(kb.hi[n]) + 1)
                              if m > 0 and abs(round(est * m) / m - est) < 1e-9
                              and kb.lo[e] <= round(est * m) <= kb.hi[e]}
                if len(candidates) == 1:
                    (m, x), = candidates
                    kb.bound(n, m, m)
                    kb.bound(e, x, x)
    # groups: cells against the total level or a latent total; every pairwise difference
    groups = defaultdict(list)
    levels_seen = defaultdict(set)  # a curve's level may stop before the others
    for key in n_var:
        analysis, variable, level, time, method = key
        groups[(analysis, variable, method, time)].append(key)
        levels_seen[(analysis, variable, method)].add(level)
    for (analysis, variable, method, time), keys in groups.items():
        complete = {k[2] for k in keys} == levels_seen[(analysis, variable, method)]
        for column, store in (("n", n_var), ("events", e_var)):
            totals = [k for k in keys if str(k[2]).lower() in TOTAL_LEVELS]
            cells = [k for k in keys if str(k[2]).lower() not in TOTAL_LEVELS]
            label = f"{src}[{analysis}|{variable}|t={time}|{str(method)[:20]}]"
            if totals and cells and complete:
                kb.equal([(store[totals[0]], -1)] + [(store[c], 1) for c in cells])
            elif totals and cells:  # the missing levels hold the rest
                kb.define(f"{label}.{column}: total - the levels shown",
                          [(store[totals[0]], 1)] + [(store[c], -1) for c in cells], 0, INF)
            elif len(cells) > 1:
                kb.define(f"{label}.total.{column}", [(store[c], 1) for c in cells])
            for a in range(len(keys)):
                for b in range(a + 1, len(keys)):
                    kb.define(f"{label}.{column}: {keys[a][2]} - {keys[b][2]}",
                              [(store[keys[a]], 1), (store[keys[b]], -1)])
    # the same cell in another analysis or method (whole cohort vs > 4 weeks, primary vs complete case)
    same_cell = defaultdict(list)
    for key in n_var:
        analysis, variable, level, time, method = key
        same_cell[(str(variable).split("|")[0], level, time)].append(key)
    for (variable, level, time), keys in same_cell.items():
        if len(keys) > 12:
            keys = keys[:12]
        for a in range(len(keys)):
            for b in range(a + 1, len(keys)):
                for column, store in (("n", n_var), ("events", e_var)):
                    kb.define(f"{src}[{level}|t={time}].{column}: {keys[a][0]}/{keys[a][1]}/{str(keys[a][4])[:14]} - "
                              f"{keys[b][0]}/{keys[b][1]}/{str(keys[b][4])[:14]}", [(store[keys[a]], 1), (store[keys[b]], -1)])
    # curves: successive points, and published points across withheld ones
    curves = defaultdict(list)
    for key in n_var:
        analysis, variable, level, time, method = key
        if time is not None:
            curves[(analysis, variable, level, method)].append(key)
    for ckey, keys in curves.items():
        keys = sorted(keys, key=lambda k: float(k[3]))
        for a, b in zip(keys, keys[1:]):
            kb.define(f"{src}{ckey}.increment t{a[3]}->{b[3]}", [(e_var[b], 1), (e_var[a], -1)], 0, INF)
            kb.define(f"{src}{ckey}.at-risk change t{a[3]}->{b[3]}", [(n_var[a], 1), (n_var[b], -1)])
        shown = [k for k in keys if kb.hi[n_var[k]] != INF]
        for a, b in zip(shown, shown[1:]):
            kb.define(f"{src}{ckey}.published increment t{a[3]}->{b[3]}", [(e_var[b], 1), (e_var[a], -1)], 0, INF)
            kb.define(f"{src}{ckey}.published at-risk change t{a[3]}->{b[3]}", [(n_var[a], 1), (n_var[b], -1)])


def _add_attrition(kb: Knowledge, frame: pd.DataFrame, src: str) -> list[int]:
    rows = frame.astype(object).where(frame.notna(), None).sort_values("step").to_dict("records")
    befores, afters = [], []
    for r in rows:
        primary = _primary_of(r.get("suppression_reason"))
        name = f"{src}[step {r['step']}]"
        before = kb.published(name + ".before", r["persons_before"])
        excluded = kb.published(name + ".excluded", r["excluded"], "excluded" in primary)
        after = kb.published(name + ".after", r["persons_after"], "persons remaining" in primary)
        kb.equal([(before, 1), (excluded, -1), (after, -1)])
        befores.append(before)
        afters.append(after)
    for a, b in zip(afters, befores[1:]):
        kb.equal([(a, 1), (b, -1)])
    return befores


def _add_share(kb: Knowledge, count: int, total: int, share, count_value, total_value) -> None:
    share = published_number(share)
    if share is None:
        return
    if published_number(count_value) is not None and published_number(total_value) and abs(share - float(count_value) / float(total_value)) < 1e-12:
        return  # the policy's share: published count / published total
    tolerance = 1e-9 if _decimals_beyond_policy(share) else 0.5 * 10 ** -len(repr(share).split(".")[-1])
    low = (share - tolerance) * max(kb.lo[total], 0)
    high = (share + tolerance) * kb.hi[total]
    kb.bound(count, math.ceil(low - 1e-9), math.floor(high + 1e-9) if high != INF else INF)


def _add_quality(kb: Knowledge, frame: pd.DataFrame, src: str) -> dict[str, int]:
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    load = defaultdict(dict)
    for i, r in enumerate(rows):
        primary = _primary_of(r.get("suppression_reason"))
        name = f"{src}[{r.get('source')}|{r.get('table_name')}|{r.get('check_id')}]"
        count = kb.published(name + ".count", r.get("count"), "count" in primary)
        total = kb.published(name + ".total", r.get("total"), "total" in primary)
        _add_share(kb, count, total, r.get("share"), r.get("count"), r.get("total"))
        if r.get("source") == "load":
            load[r["table_name"]][r["check_id"]] = count
    for table, measures in load.items():
        if {"rows_read", "rows_loaded", "rows_quarantined"} <= set(measures):
            kb.equal([(measures["rows_read"], 1), (measures["rows_loaded"], -1), (measures["rows_quarantined"], -1)])
    return {table: m["rows_read"] for table, m in load.items() if "rows_read" in m}


def _add_any_counts(kb: Knowledge, value, path: str) -> None:
    """Every other count-named number in a JSON document: its band (for the pairwise search)."""
    from pipeline.privacy.disclosure import is_count_column

    if isinstance(value, dict):
        for key, item in value.items():
            if key == "config":
                continue
            if is_count_column(str(key)) and not isinstance(item, (dict, list)):
                kb.published(f"{path}.{key}", item)
            else:
                _add_any_counts(kb, item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _add_any_counts(kb, item, f"{path}[{i}]")


def attack(reports: Path) -> tuple[Knowledge, list[str]]:
    """Everything the attacker can pin down from ``reports`` (leaks: counts 1..k-1 pinned exactly)."""
    tables, documents = read_release(reports)
    manifest = documents.get("manifest.json") or {}
    policy = manifest.get("disclosure") or {}
    config = manifest.get("config", {}).get("disclosure", {})
    k = int(policy.get("min_cell_count") or config.get("min_cell_count"))
    b = int(policy.get("rounding_base") or config.get("rounding_base") or 1)
    kb = Knowledge(k, b)
    starts, rows_read = [], {}
    for rel, frame in tables.items():
        columns = set(frame.columns)
        if {"analysis", "variable", "level", "n", "events"} <= columns:
            _add_estimates(kb, frame, rel)
        elif {"persons_before", "excluded", "persons_after"} <= columns:
            starts += _add_attrition(kb, frame, rel)[:1]
        elif {"count", "total"} <= columns:
            rows_read.update(_add_quality(kb, frame, rel))
    for rel, doc in documents.items():
        if rel == "manifest.json":
            for item in doc.get("inputs") or []:
                table = item.get("table") or item.get("table_name")
                read = kb.published(f"manifest.inputs[{table}].rows_read", item.get("rows_read"))
                if table in rows_read:
                    kb.define(f"manifest rows_read - data_quality rows_read [{table}]", [(read, 1), (rows_read[table], -1)])
                if table == "persons":
                    for start in starts:
                        kb.define("persons loaded - attrition start", [(read, 1), (start, -1)])
            risk = doc.get("k_anonymity") or {}
            if risk:
                persons = kb.published("manifest.k_anonymity.persons", risk.get("persons"))
                small = kb.published("manifest.k_anonymity.persons_in_groups_below_k", risk.get("persons_in_groups_below_k"))
                _add_share(kb, small, persons, risk.get("share_of_persons_in_groups_below_k"),
                           risk.get("persons_in_groups_below_k"), risk.get("persons"))
                kb.published("manifest.k_anonymity.groups_below_k", risk.get("groups_below_k"))
                for start in starts:
                    kb.define("k-anonymity persons - attrition start", [(persons, 1), (start, -1)])
        elif isinstance(doc, dict) and isinstance(doc.get("headline"), dict):
            cells = {}
            for section in ("headline", "complete_case"):
                for group, entry in (doc.get(section) or {}).items():
                    n = kb.published(f"{rel}.{section}.{group}.n", entry.get("n"))
                    e = kb.published(f"{rel}.{section}.{group}.events", entry.get("events"))
                    cells[(section, group)] = (n, e)
            for group in {g for _, g in cells}:
                if ("headline", group) in cells and ("complete_case", group) in cells:
                    kb.define(f"{rel} unknown outcome [{group}]",
                              [(cells[("headline", group)][0], 1), (cells[("complete_case", group)][0], -1)])
        elif isinstance(doc, dict) and isinstance(doc.get("checks"), list):
            for i, check in enumerate(doc["checks"]):
                count = kb.published(f"{rel}.checks[{i}].count", check.get("count"), "count" in _primary_of(check.get("suppression_reason")))
                total = kb.published(f"{rel}.checks[{i}].total", check.get("total"))
                _add_share(kb, count, total, check.get("share"), check.get("count"), check.get("total"))
        else:
            _add_any_counts(kb, doc, rel)
    kb.propagate()
    bad = kb.inconsistent()
    assert not bad, f"the attacker's model contradicts the release (a wrong relation): {bad[:5]}"
    return kb, kb.leaks()


# ---------------------------------------------------------------- the attacker is real


def _write_release(root: Path, estimates: list[dict], k: int = 11, b: int = 1) -> Path:
    (root / "exports").mkdir(parents=True)
    pd.DataFrame(estimates).to_csv(root / "exports" / "estimates.csv", index=False)
    (root / "manifest.json").write_text(json.dumps({"disclosure": {"min_cell_count": k, "rounding_base": b}}))
    return root


def _row(analysis, variable, level, n, events, method="primary", reason=None, time_days=None):
    return {"analysis": analysis, "variable": variable, "level": level, "time_days": time_days, "n": n,
            "events": events, "estimate": None if events is None or not n else events / n, "ci_low": None,
            "ci_high": None, "method": method, "suppressed": reason is not None, "suppression_reason": reason}


def test_attacker_finds_the_le_4_weeks_cell_of_a_suppression_only_release(tmp_path):
    """Whole cohort minus "> 4 weeks" gives a withheld "up to 4 weeks" stratum back exactly."""
    release = _write_release(tmp_path, [
        _row("by_stratum_overall", "sex", "F", 400, 130), _row("by_stratum_overall", "sex", "X", 40, 14),
        _row("by_stratum", "sex", "F", 380, 125), _row("by_stratum", "sex", "X", 37, 11),
    ])
    _, leaks = attack(release)
    assert any("[X|" in leak and "n: by_stratum_overall/sex" in leak and "= 3" in leak for leak in leaks), leaks


def test_attacker_finds_curve_increments_and_group_complements(tmp_path):
    release = _write_release(tmp_path, [
        _row("ci", "headline_group", "all", 500, 40, time_days=7), _row("ci", "headline_group", "all", 480, 46, time_days=14),
        _row("headline", "headline_group", "all", 900, 300), _row("headline", "headline_group", "gt", 893, 297),
        _row("headline", "headline_group", "le", None, None, reason="secondary: n recoverable from the group total"),
    ])
    _, leaks = attack(release)
    assert any("increment t7.0->14.0" in leak and "= 6" in leak for leak in leaks), leaks
    assert any("headline|headline_group|le|" in leak and ".n = 7" in leak for leak in leaks), leaks


def test_attacker_reads_estimate_times_n_and_share_times_total(tmp_path):
    # An unrounded proportion beside a rounded n gives n and events back; so does an exact share.
    release = _write_release(tmp_path, [
        {**_row("a", "sex", "F", 418, None), "estimate": 17 / 419, "events": 18},
        _row("a", "sex", "M", 503, 150),
    ], b=5)
    (release / "exports" / "data_quality.csv").write_text(
        "source,table_name,check_id,count,total,share,suppression_reason\n"
        f"validation,persons,x,,20003,{7 / 20001!r},primary: count 1..10\n")
    kb, leaks = attack(release)
    events = kb.by_name["exports/estimates.csv[a|sex|F|t=None|primary].events"]
    assert kb.lo[events] == kb.hi[events] == 17  # pinned, although published as 18 (band 16..20)
    assert any("data_quality" in leak and "= 7" in leak for leak in leaks), leaks


def test_rounded_release_of_the_same_numbers_pins_nothing(tmp_path):
    from pipeline.privacy.disclosure import round_count

    r = lambda v: round_count(v, 11, 5)  # noqa: E731
    release = _write_release(tmp_path, [
        _row("by_stratum_overall", "sex", "F", r(400), r(130)), _row("by_stratum_overall", "sex", "X", r(40), r(14)),
        _row("by_stratum", "sex", "F", r(380), r(125)), _row("by_stratum", "sex", "X", r(37), r(11)),
    ], b=5)
    assert attack(release)[1] == []


# ---------------------------------------------------------------- real releases, through the CLI


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "GX_ANALYTICS_ENABLED": "false", "OPENBLAS_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=PROJECT_ROOT, capture_output=True,
                            text=True, env=env, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"pipeline {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def _run(root: Path, extract: Path) -> Path:
    run_cli("run", "--source", str(extract), "--warehouse", str(root / "warehouse.duckdb"),
            "--reports", str(root / "reports"))
    return root / "reports"


@pytest.fixture(scope="module")
def demo_release(tmp_path_factory):
    root = tmp_path_factory.mktemp("attack_demo")
    cfg = load_config()
    run_cli("demo", "--out", str(root / "extract"), "--persons", str(cfg.demo.persons), "--seed", str(cfg.demo.seed))
    return _run(root, root / "extract")


def drop_conflicting_duplicates(extract: Path) -> int:
    """The demo plants one prescription id on two different rows; at 300 persons that is more
    than validation tolerates (0.1%), so the run stops (exit 4) -- see test_publish_release.
    Dropping both copies gives an extract that publishes. Returns the rows dropped."""
    prescriptions = pd.read_csv(extract / "prescriptions.csv", dtype=str, keep_default_na=False)
    duplicated = prescriptions["prescription_id"].duplicated(keep=False)
    prescriptions[~duplicated].to_csv(extract / "prescriptions.csv", index=False)
    return int(duplicated.sum())


@pytest.fixture(scope="module")
def small_release(tmp_path_factory):
    root = tmp_path_factory.mktemp("attack_300")
    run_cli("demo", "--out", str(root / "extract"), "--persons", "300", "--seed", "11")
    drop_conflicting_duplicates(root / "extract")
    return _run(root, root / "extract")


def make_rare_strata_extract(out: Path) -> dict:
    """A 2,000-person demo edited by hand: one region of 3 people, one indication of 2 people,
    and people whose only dispensing lasts exactly 28 days (the headline split)."""
    run_cli("demo", "--out", str(out), "--persons", "2000", "--seed", "5")
    persons = pd.read_csv(out / "persons.csv", dtype=str, keep_default_na=False)
    prescriptions = pd.read_csv(out / "prescriptions.csv", dtype=str, keep_default_na=False)
    persons.loc[persons.index[:3], "region"] = "Isles of Scilly"
    rare = sorted(prescriptions["person_id"].unique())[:2]
    indication = "muscle_spasm"
    prescriptions.loc[prescriptions["indication"] == indication, "indication"] = "other"
    prescriptions.loc[prescriptions["person_id"].isin(rare), "indication"] = indication
    per_person = prescriptions.groupby("person_id")["prescription_id"].transform("count")
    single = prescriptions[(per_person == 1) & (prescriptions["drug"] == "clonazepam")].index[:7]
    prescriptions.loc[single, "days_supply"] = "28"
    persons.to_csv(out / "persons.csv", index=False)
    prescriptions.to_csv(out / "prescriptions.csv", index=False)
    return {"region_persons": 3, "indication_persons": len(rare), "exactly_28_days": len(single)}


@pytest.fixture(scope="module")
def rare_release(tmp_path_factory):
    root = tmp_path_factory.mktemp("attack_rare")
    made = make_rare_strata_extract(root / "extract")
    assert made["exactly_28_days"] >= 3
    return _run(root, root / "extract")


def test_demo_release_gives_no_small_count_back(demo_release):
    kb, leaks = attack(demo_release)
    assert len(kb.names) > 2000 and len(kb.equations) > 2000  # the attacker really read the release
    assert leaks == []


def test_300_person_release_gives_no_small_count_back(small_release):
    kb, leaks = attack(small_release)
    assert len(kb.names) > 500
    assert leaks == []


def test_rare_strata_release_gives_no_small_count_back(rare_release):
    estimates = pd.read_csv(rare_release / "exports" / "estimates.csv")
    assert estimates["suppressed"].any()  # the rare strata were there to be withheld
    kb, leaks = attack(rare_release)
    assert leaks == []


def test_the_same_warehouse_published_without_rounding_leaks(small_release, tmp_path, monkeypatch):
    """The attacker is real: the 300-person warehouse published with suppression only
    (rounding switched off inside the publish stage) gives small counts back."""
    import duckdb

    import pipeline.publish as publish
    from pipeline.privacy import disclosure

    monkeypatch.setattr(disclosure, "rounding_base_of", lambda setting: 1)
    monkeypatch.setattr(publish, "rounding_base_of", lambda setting: 1)
    monkeypatch.setattr(publish, "write_static_figures", lambda figures, figures_dir: [])
    con = duckdb.connect(str(small_release.parent / "warehouse.duckdb"), read_only=True)
    try:
        manifest = json.loads((small_release / "manifest.json").read_text())
        publish.run(con, load_config(), tmp_path / "reports", {k: v for k, v in manifest.items() if k != "disclosure"})
    finally:
        con.close()
    kb, leaks = attack(tmp_path / "reports")
    assert kb.b == 1
    assert leaks, "suppression alone should leak by differencing on a 300-person extract"
