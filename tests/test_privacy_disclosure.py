"""Disclosure control: primary and secondary suppression, and the last-guard scan.

The property-based tests play the attacker: every suppressed count becomes an
unknown, every published number and every relation an attacker knows (group
totals, n - events, estimate * n, the same cell in another row, running totals
of an attrition table) becomes a linear equation, and no small count may be
determined by the system (checked by matrix rank).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import Config
from pipeline.privacy.disclosure import (
    scan_for_small_counts,
    suppress,
    suppress_counts,
    suppress_headline,
)

K = 11
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
QUICK = settings(SETTINGS, max_examples=100)


def estimates_row(analysis, variable, level, n, events, method="Wilson", time_days=None):
    estimate = events / n if n else None
    return {
        "analysis": analysis, "variable": variable, "level": level, "time_days": time_days,
        "n": n, "events": events, "estimate": estimate,
        "ci_low": None if estimate is None else max(0.0, estimate - 0.05),
        "ci_high": None if estimate is None else min(1.0, estimate + 0.05), "method": method,
    }


# ---------------------------------------------------------------- examples


def test_zero_is_publishable_and_large_counts_pass():
    table = pd.DataFrame([estimates_row("a", "sex", "F", 100, 0), estimates_row("a", "sex", "M", 50, 20)])
    out = suppress(table, K)
    assert not out["suppressed"].any()
    assert list(out["events"]) == [0, 20]
    assert out["suppression_reason"].isna().all()


def test_small_events_null_estimate_and_ci_and_a_second_cell():
    table = pd.DataFrame([
        estimates_row("a", "band", "<14", 100, 4),
        estimates_row("a", "band", "14-27", 200, 60),
        estimates_row("a", "band", "28-55", 300, 90),
    ])
    out = suppress(table, K)
    assert list(out["n"]) == [100, 200, 300]  # n is safe everywhere
    assert out["events"].isna().tolist() == [True, True, False]
    assert out[["estimate", "ci_low", "ci_high"]].iloc[:2].isna().all().all()
    assert out.loc[0, "suppression_reason"] == "primary: events 1..10"
    assert out.loc[1, "suppression_reason"].startswith("secondary: events")


def test_small_non_events_suppress_events():
    table = pd.DataFrame([estimates_row("a", "band", "x", 100, 95), estimates_row("a", "band", "y", 100, 50),
                          estimates_row("a", "band", "z", 100, 40)])
    out = suppress(table, K)
    assert pd.isna(out.loc[0, "events"]) and out.loc[0, "n"] == 100
    assert "non-events" in out.loc[0, "suppression_reason"]


def test_config_is_accepted_for_k():
    table = pd.DataFrame([estimates_row("a", "sex", "F", 100, 7), estimates_row("a", "sex", "M", 100, 50)])
    assert suppress(table, Config().replace(disclosure={"min_cell_count": 5}))["suppressed"].sum() == 0
    assert suppress(table, Config())["suppressed"].sum() == 2


def test_input_not_modified():
    table = pd.DataFrame([estimates_row("a", "sex", "F", 3, 1), estimates_row("a", "sex", "M", 100, 50)])
    before = table.copy()
    suppress(table, K)
    pd.testing.assert_frame_equal(table, before)


def test_same_cell_in_other_method_is_suppressed_too():
    table = pd.DataFrame([
        estimates_row("headline", "headline_group", "le_4_weeks", 9, 2, method="primary"),
        estimates_row("headline", "headline_group", "gt_4_weeks", 500, 150, method="primary"),
        estimates_row("headline", "headline_group", "le_4_weeks", 9, 2, method="complete_case"),
        estimates_row("headline", "headline_group", "gt_4_weeks", 500, 150, method="complete_case"),
    ])
    out = suppress(table, K)
    assert out["n"].isna().all()


def test_curve_is_coarsened_so_increments_are_not_small():
    # at risk, cumulative events at days 0..5
    points = [(1000, 0), (990, 3), (980, 12), (950, 30), (940, 35), (900, 60)]
    table = pd.DataFrame([
        estimates_row("cumulative_incidence", "all", "all", n, e, method="Aalen-Johansen", time_days=t * 30)
        for t, (n, e) in enumerate(points)
    ])
    out = suppress(table, K)
    published = out[~out["suppressed"]]
    assert list(published["time_days"]) == [0, 60, 90, 150]
    for column in ("n", "events"):
        steps = np.abs(np.diff(published[column].astype(float)))
        assert not ((steps > 0) & (steps < K)).any()
    assert out.loc[out["suppressed"], ["n", "events", "estimate"]].isna().all().all()


def test_headline_shape_is_kept():
    headline = {
        "headline": {
            "gt_4_weeks": {"estimate": 0.31, "ci_low": 0.29, "ci_high": 0.33, "n": 3000, "events": 930, "method": "IPW"},
            "le_4_weeks": {"estimate": 0.05, "ci_low": 0.04, "ci_high": 0.06, "n": 2000, "events": 100, "method": "IPW"},
        },
        "complete_case": {
            "gt_4_weeks": {"estimate": 0.33, "ci_low": 0.30, "ci_high": 0.36, "n": 1500, "events": 495, "method": "cc"},
            "le_4_weeks": {"estimate": 0.004, "ci_low": 0.001, "ci_high": 0.01, "n": 1000, "events": 4, "method": "cc"},
        },
        "config": {"disclosure": {"min_cell_count": 11}, "demo": {"persons": 5}},
    }
    out = suppress_headline(headline, K)
    assert out["headline"] == headline["headline"]
    assert out["config"] == headline["config"]
    cc = out["complete_case"]
    assert cc["le_4_weeks"]["events"] is None and cc["le_4_weeks"]["estimate"] is None
    assert cc["gt_4_weeks"]["events"] is None  # else total events - 495 gives 4 back
    assert cc["le_4_weeks"]["n"] == 1000
    assert set(cc["le_4_weeks"]) == set(headline["complete_case"]["le_4_weeks"])
    assert headline["complete_case"]["le_4_weeks"]["events"] == 4  # input untouched
    json.dumps(out)


def test_attrition_table_hides_running_totals_around_a_small_exclusion():
    attrition = pd.DataFrame({
        "reason": ["all persons", "no clonazepam", "under 18", "no washout"],
        "persons_before": [5000, 5000, 3000, 2997],
        "excluded": [0, 2000, 3, 497],
        "persons_after": [5000, 3000, 2997, 2500],
    })
    out = suppress_counts(attrition, ["excluded"], K, total_cols=("persons_before", "persons_after"))
    assert pd.isna(out.loc[2, "excluded"])
    assert pd.isna(out.loc[2, "persons_after"]) and pd.isna(out.loc[3, "persons_before"])
    assert scan_for_small_counts(out, K) == []
    assert out["suppressed"].tolist() == [False, False, True, True]


def test_plain_count_table():
    counts = pd.DataFrame({"region": ["North", "South", "East"], "persons": [500, 7, 300]})
    out = suppress_counts(counts, ["persons"], K)
    assert out["persons"].isna().tolist() == [False, True, True]


# ---------------------------------------------------------------- the scan


def test_scan_finds_planted_small_counts_in_csv_parquet_json(tmp_path):
    exports = tmp_path / "exports"
    (exports / "sub").mkdir(parents=True)
    pd.DataFrame({"level": ["a", "b"], "n": [100, 5], "estimate": [0.1, 3.0]}).to_csv(exports / "est.csv", index=False)
    pd.DataFrame({"reason": ["x"], "persons_before": [50], "excluded": [2]}).to_parquet(exports / "sub" / "att.parquet")
    (exports / "headline.json").write_text(json.dumps({
        "headline": {"le_4_weeks": {"n": 300, "events": 7, "estimate": 0.02}},
        "config": {"disclosure": {"min_cell_count": 11}, "misuse": {"early_refills": 2}},
    }))
    pd.DataFrame({"level": ["a"], "n": [0], "events": [None]}).to_csv(exports / "clean.csv", index=False)
    findings = scan_for_small_counts(exports, K)
    assert len(findings) == 3, findings
    assert any("est.csv" in f and "'n'" in f for f in findings)
    assert any("att.parquet" in f and "'excluded'" in f for f in findings)
    assert any("headline.json" in f and "events" in f for f in findings)
    assert not any(" 5" in f or " 7 " in f for f in findings)  # values are not echoed


def test_scan_is_clean_after_suppression():
    table = pd.DataFrame([estimates_row("a", "sex", lvl, n, e) for lvl, n, e in
                          [("F", 3, 1), ("M", 100, 50), ("X", 40, 38), ("U", 60, 20)]])
    assert scan_for_small_counts(table, K)
    assert scan_for_small_counts(suppress(table, K), K) == []


# ---------------------------------------------------------------- properties


def _determined(rows: list[np.ndarray], target: np.ndarray) -> bool:
    """Is ``target . x`` fixed by the equations ``rows . x = known``?"""
    if not rows:
        return not target.any()
    a = np.vstack(rows)
    return np.linalg.matrix_rank(np.vstack([a, target])) == np.linalg.matrix_rank(a)


@st.composite
def count_pair(draw):
    size = draw(st.sampled_from(["zero", "small", "medium", "large"]))
    n = {"zero": 0, "small": draw(st.integers(1, 15)), "medium": draw(st.integers(10, 60)),
         "large": draw(st.integers(50, 2000))}[size]
    kind = draw(st.sampled_from(["any", "few", "most"]))
    if kind == "few":
        events = draw(st.integers(0, min(n, 12)))
    elif kind == "most":
        events = n - draw(st.integers(0, min(n, 12)))
    else:
        events = draw(st.integers(0, n))
    return n, events


@st.composite
def estimates_tables(draw):
    rows = []
    for g in range(draw(st.integers(1, 4))):
        cells = draw(st.lists(count_pair(), min_size=1, max_size=6))
        methods = ["primary", "complete_case"] if draw(st.booleans()) else ["primary"]
        with_total = draw(st.booleans())
        for method in methods:
            for i, (n, events) in enumerate(cells):
                if method == "complete_case":  # same persons, fewer known outcomes
                    events = draw(st.integers(0, events))
                rows.append(estimates_row(f"analysis{g}", f"var{g}", f"level{i}", n, events, method))
            if with_total:
                rows.append(estimates_row(f"analysis{g}", f"var{g}", "all", sum(c[0] for c in cells),
                                          sum(r["events"] for r in rows[-len(cells):]), method))
    return pd.DataFrame(rows)


def _attacker_equations(original: pd.DataFrame, published: pd.DataFrame):
    """Unknowns (hidden n/events), and the equations an attacker can write."""
    rows = original.to_dict("records")
    hidden = {col: published[col].isna().tolist() for col in ("n", "events")}
    unknown = {(i, col): None for i in range(len(rows)) for col in ("n", "events") if hidden[col][i]}
    unknown = {key: j for j, key in enumerate(unknown)}
    equations = []

    def vector(terms):
        v = np.zeros(len(unknown))
        for key, coef in terms:
            if key in unknown:
                v[unknown[key]] += coef
        return v

    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        if r["level"] != "all":
            groups.setdefault((r["analysis"], r["variable"], r["method"]), []).append(i)
    # Group totals over the non-total cells are assumed public (elsewhere)
    # unless small (then they are suppressed wherever they appear); a group of
    # one cell is its own total.
    for members in groups.values():
        total_n = sum(rows[i]["n"] for i in members)
        total_events = sum(rows[i]["events"] for i in members)
        if len(members) < 2:
            continue
        for col, total in (("n", total_n), ("events", total_events)):
            if 0 < total < K or (col == "events" and 0 < total_n - total_events < K):
                continue
            equations.append(vector([((i, col), 1) for i in members]))
    # A total row equals the sum of its cells.
    for i, r in enumerate(rows):
        if r["level"] == "all":
            members = groups.get((r["analysis"], r["variable"], r["method"]), [])
            for col in ("n", "events"):
                equations.append(vector([((i, col), 1)] + [((j, col), -1) for j in members]))
    # The same cell in another method has the same n.
    same: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        same.setdefault((r["analysis"], r["variable"], r["level"]), []).append(i)
    for idx in same.values():
        for a, b in zip(idx, idx[1:]):
            if rows[a]["n"] == rows[b]["n"]:
                equations.append(vector([((a, "n"), 1), ((b, "n"), -1)]))
    return rows, [e for e in equations if e.any()], vector, groups, hidden


@SETTINGS
@given(estimates_tables())
def test_no_suppressed_count_can_be_recovered(original):
    published = suppress(original, K)
    assert scan_for_small_counts(published, K) == []
    # estimate * n would give events back
    events_hidden = published["events"].isna()
    assert published.loc[events_hidden, ["estimate", "ci_low", "ci_high"]].isna().all().all()
    assert (published["n"].isna() <= events_hidden).all()  # n hidden => everything hidden
    rows, equations, vector, groups, hidden = _attacker_equations(original, published)
    for i, r in enumerate(rows):
        targets = {
            "n": (r["n"], [((i, "n"), 1)]),
            "events": (r["events"], [((i, "events"), 1)]),
            "non-events": (r["n"] - r["events"], [((i, "n"), 1), ((i, "events"), -1)]),
        }
        for label, (value, terms) in targets.items():
            if 0 < value < K:
                target = vector(terms)
                assert target.any(), f"row {i}: {label} = {value} published"
                assert not _determined(equations, target), f"row {i}: {label} = {value} recoverable"
    # Hidden cells of a group must not add up to a small count either, unless
    # every positive cell is hidden (then the group total is itself small).
    for members in groups.values():
        for col in ("n", "events"):
            shown = [rows[i][col] for i in members if not hidden[col][i]]
            if len(members) > 1 and any(v > 0 for v in shown):
                assert not (0 < sum(rows[i][col] for i in members if hidden[col][i]) < K)


@st.composite
def curves(draw):
    at_risk = draw(st.integers(0, 400))
    events = 0
    points = []
    for t in range(draw(st.integers(1, 15))):
        points.append((t * 30, at_risk, events))
        new_events = draw(st.integers(0, min(at_risk, 25)))
        at_risk -= new_events + draw(st.integers(0, max(0, min(at_risk - new_events, 25))))
        events += new_events
    return points


@QUICK
@given(st.lists(curves(), min_size=1, max_size=3))
def test_published_curve_points_differ_by_zero_or_at_least_k(levels):
    rows = [estimates_row("cumulative_incidence", "sex", f"L{j}", n, e, "Aalen-Johansen", t)
            for j, points in enumerate(levels) for t, n, e in points]
    published = suppress(pd.DataFrame(rows), K)
    assert scan_for_small_counts(published, K) == []
    for _, curve in published[~published["suppressed"]].groupby("level"):
        curve = curve.sort_values("time_days")
        for col in ("n", "events"):
            steps = np.abs(np.diff(curve[col].astype(float).to_numpy()))
            assert not ((steps > 0) & (steps < K)).any()
    assert published.loc[published["suppressed"], ["n", "events", "estimate"]].isna().all().all()


@st.composite
def attrition_tables(draw):
    persons = draw(st.integers(0, 3000))
    rows = [("all persons", persons, 0, persons)]
    for step in range(draw(st.integers(1, 7))):
        excluded = draw(st.one_of(st.integers(0, min(persons, 15)), st.integers(0, persons)))
        rows.append((f"step {step}", persons, excluded, persons - excluded))
        persons -= excluded
    return pd.DataFrame(rows, columns=["reason", "persons_before", "excluded", "persons_after"])


@QUICK
@given(attrition_tables())
def test_attrition_exclusions_cannot_be_recovered(original):
    published = suppress_counts(original, ["excluded"], K, total_cols=("persons_before", "persons_after"))
    assert scan_for_small_counts(published, K) == []
    cols = ("persons_before", "excluded", "persons_after")
    unknown = {(i, c): None for i in original.index for c in cols if pd.isna(published.loc[i, c])}
    unknown = {key: j for j, key in enumerate(unknown)}

    def vector(terms):
        v = np.zeros(len(unknown))
        for key, coef in terms:
            if key in unknown:
                v[unknown[key]] += coef
        return v

    equations = []
    for i in original.index:
        equations.append(vector([((i, "persons_before"), 1), ((i, "excluded"), -1), ((i, "persons_after"), -1)]))
        if i + 1 in original.index:
            equations.append(vector([((i, "persons_after"), 1), ((i + 1, "persons_before"), -1)]))
    equations = [e for e in equations if e.any()]
    for i in original.index:
        for col in cols:
            value = original.loc[i, col]
            if 0 < value < K:
                target = vector([((i, col), 1)])
                assert target.any() and not _determined(equations, target), f"row {i} {col} = {value}"


# ---------------------------------------------------------------- rounding (after suppression)

from pipeline.errors import ConfigError  # noqa: E402
from pipeline.privacy.disclosure import (  # noqa: E402
    count_band,
    estimate_step,
    is_published_count,
    round_count,
    round_count_columns,
    round_estimates,
    rounding_base_of,
)


@given(st.integers(min_value=0, max_value=100_000), st.sampled_from([(11, 5), (8, 6), (11, 3), (14, 5), (5, 10)]))
@QUICK
def test_a_rounded_count_is_a_band_midpoint_whose_band_holds_the_truth(true, policy):
    k, b = policy
    if 0 < true < k:
        with pytest.raises(ValueError):
            round_count(true, k, b)
        return
    published = round_count(true, k, b)
    low, high = count_band(published, k, b)
    assert low <= true <= high and high - low == (0 if true == 0 else b - 1)
    assert is_published_count(published, k, b) and (published == 0 or published >= k)
    assert round_count(published, k, b) == published  # idempotent: the same cell rounds the same everywhere


@given(st.integers(min_value=11, max_value=5000), st.integers(min_value=11, max_value=5000))
@QUICK
def test_no_difference_of_two_rounded_counts_pins_a_small_count(a, c):
    """Nested populations a >= c: the difference of the published counts leaves >= 2 candidates in 1..k-1."""
    a, c = max(a, c), min(a, c)
    (a_lo, a_hi), (c_lo, c_hi) = count_band(round_count(a, 11, 5), 11, 5), count_band(round_count(c, 11, 5), 11, 5)
    candidates = [d for d in range(max(0, a_lo - c_hi), a_hi - c_lo + 1) if 1 <= d <= 10]
    assert a - c in range(max(0, a_lo - c_hi), a_hi - c_lo + 1)
    assert len(candidates) != 1


def test_rounding_base_is_a_checked_setting():
    assert rounding_base_of(Config()) == 5
    for bad in (0, 1, 2, "x"):
        with pytest.raises(ConfigError, match="disclosure.rounding_base"):
            rounding_base_of(bad)


def test_plain_proportions_are_recomputed_from_the_rounded_counts():
    table = pd.DataFrame([estimates_row("a", "sex", "F", 417, 131), estimates_row("a", "sex", "M", 1000, 0)])
    out = round_estimates(suppress(table, K), K, 5)
    assert list(out["n"]) == [418, 998] and list(out["events"]) == [133, 0]
    # estimate x published n = published events: the estimate says nothing finer than the counts
    assert out.loc[0, "estimate"] * 418 == pytest.approx(133) and out.loc[1, "estimate"] == 0
    assert out.loc[0, "ci_low"] < out.loc[0, "estimate"] < out.loc[0, "ci_high"]


def test_other_estimates_are_rounded_so_that_estimate_times_n_is_uncertain_by_the_base():
    table = pd.DataFrame([{**estimates_row("a", "sex", "F", 417, 131), "estimate": 0.3312345, "ci_low": 0.28,
                           "ci_high": 0.3811111, "method": "IPW"}])
    out = round_estimates(table, K, 5)
    step = estimate_step(418, 5)
    assert step == 0.02 and step * 418 >= 5
    assert out.loc[0, "estimate"] == pytest.approx(0.34) and out.loc[0, "ci_high"] == pytest.approx(0.38)


def test_curve_estimates_use_the_curves_starting_population_and_weighted_counts_are_counts():
    curve = pd.DataFrame([
        {**estimates_row("ci", "g", "all", 9000, 50, time_days=7), "estimate": 0.0055555, "method": "AJ"},
        {**estimates_row("ci", "g", "all", 300, 80, time_days=70), "estimate": 0.0123456, "method": "AJ"},
        {"analysis": "weights", "variable": "ess", "level": "all", "time_days": None, "n": 9000, "events": 6000,
         "estimate": 5123.7, "ci_low": None, "ci_high": None, "method": "w"},
    ])
    out = round_estimates(curve, K, 5)
    assert list(out["estimate"].round(6))[:2] == [0.006, 0.012]  # step 0.001 (x 9000 >= 5), not 0.02 from n = 300
    assert out.loc[2, "estimate"] == 5123 and is_published_count(out.loc[2, "estimate"], K, 5)


def test_count_tables_round_every_count_column():
    frame = pd.DataFrame({"excluded": [0, 12, None], "persons_after": [1000, 988, 977]})
    out = round_count_columns(frame, ["excluded", "persons_after"], K, 5)
    assert out["excluded"].tolist()[:2] == [0, 13] and pd.isna(out["excluded"].iloc[2])
    assert all(is_published_count(v, K, 5) for v in out["persons_after"])
