"""Simulation study: bias and 95% CI coverage of the primary (IPW) and the
complete-case headline estimates, for both estimands: (a) the window from
episode start to episode end + 90 days and (b) the fixed window after
treatment ends. It runs on the SHIPPED settings (``config/default.toml`` via
``load_config()``), not on ``Config()``.

``main(n_sims, persons, seed, make_person_table=None)`` draws ``n_sims``
person tables, runs the headline estimators on each and compares them with
the truth. ``make_person_table(seed, persons) -> (analysis_person DataFrame,
truth)`` is any generator; ``truth`` holds the true proportion of each
headline group either as ``truth["headline"][group]`` or ``truth[group]``
(a number, or a dict with ``"estimate"`` or ``"proportion"``). The default is
``make_mar_person_table``: a self-contained missing-at-random (MAR) model in
which ascertainment and dependence both rise with duration, dose and misuse
signals, so the complete-case estimate is biased and IPW is not.

Run it: ``python -m bench.simulate --sims 200 --persons 15000`` (``make simulate``: the demo generator,
400 data sets of 5,000 persons). It lives in ``bench/``, outside the stages: it drives demo,
ingest and transform, which the estimate stage itself never imports.

>>> person, truth = make_mar_person_table(seed=1, persons=500)
>>> len(person), sorted(truth["headline"])
(500, ['gt_4_weeks', 'le_4_weeks'])
"""

from __future__ import annotations

import argparse
import itertools
import time
from typing import Callable

import numpy as np
import pandas as pd

from pipeline.config import Config, load_config
from pipeline.contract import INDICATIONS, SEXES

MakePersonTable = Callable[[int, int], tuple[pd.DataFrame, dict]]

# ----- the MAR model (log-odds scale); levels and shares of each covariate
AGE_BANDS = {"18-34": (0.25, 0.3, -0.2), "35-49": (0.30, 0.0, 0.0), "50-64": (0.25, -0.1, 0.2), "65+": (0.20, -0.3, 0.5)}
SEX_EFFECTS = {"F": (0.6, 0.0, 0.1), "M": (0.4, 0.1, 0.0)}
INDICATION_EFFECTS = {
    "anxiety": (0.45, 0.0, 0.0),
    "panic": (0.20, 0.3, 0.2),
    "insomnia": (0.25, -0.2, -0.3),
    "seizure": (0.10, -0.4, 0.6),
}
DOSE_BANDS = {"low": (0.5, 0.0, 0.0), "medium": (0.35, 0.4, 0.2), "high": (0.15, 0.8, 0.4)}
# (share, dependence log-odds, ascertainment log-odds, first day, last day)
DURATION_BANDS = {
    "<14": (0.25, -3.0, -1.0, 1, 13),
    "14-27": (0.20, -2.3, -0.6, 14, 27),
    "28-55": (0.20, -1.3, -0.2, 28, 55),
    "56-83": (0.10, -0.9, 0.2, 56, 83),
    "84-181": (0.12, -0.5, 0.5, 84, 181),
    ">=182": (0.13, 0.0, 0.8, 182, 540),
}
# (prevalence, dependence log-odds, ascertainment log-odds)
RX_FLAGS = {
    "rx_many_prescribers": (0.05, 0.6, 0.5),
    "rx_many_pharmacies": (0.05, 0.4, 0.3),
    "rx_early_refills": (0.08, 0.5, 0.6),
    "rx_high_dose": (0.02, 0.5, 0.4),
}
ASCERTAINMENT_INTERCEPT = 0.3
# The model draws a subset of the contract's values (pipeline/contract.py), never values of its own.
if not (set(SEX_EFFECTS) <= set(SEXES) and set(INDICATION_EFFECTS) <= set(INDICATIONS)):
    raise ValueError("bench/simulate.py: the MAR model names a sex or indication pipeline/contract.py does not allow")
HEADLINE_SPLIT_DAYS = 28


def _expit(x):
    return 1.0 / (1.0 + np.exp(-x))


def _draw(rng: np.random.Generator, table: dict, size: int) -> np.ndarray:
    levels = list(table)
    shares = np.array([table[level][0] for level in levels])
    return np.array(levels, dtype=object)[rng.choice(len(levels), size=size, p=shares / shares.sum())]


def _effects(table: dict, values: np.ndarray, position: int) -> np.ndarray:
    lookup = {level: spec[position] for level, spec in table.items()}
    return np.array([lookup[v] for v in values])


def mar_truth() -> dict:
    """Exact population proportions of the MAR model, by enumerating every covariate cell."""
    flag_names = list(RX_FLAGS)
    totals: dict[str, list[float]] = {}
    for age, sex, indication, dose, band in itertools.product(AGE_BANDS, SEX_EFFECTS, INDICATION_EFFECTS, DOSE_BANDS, DURATION_BANDS):
        share = AGE_BANDS[age][0] * SEX_EFFECTS[sex][0] * INDICATION_EFFECTS[indication][0] * DOSE_BANDS[dose][0] * DURATION_BANDS[band][0]
        base = AGE_BANDS[age][1] + SEX_EFFECTS[sex][1] + INDICATION_EFFECTS[indication][1] + DOSE_BANDS[dose][1] + DURATION_BANDS[band][1]
        first, last = DURATION_BANDS[band][3:]
        days = np.arange(first, last + 1)
        le_share = float((days <= HEADLINE_SPLIT_DAYS).mean())
        for flags in itertools.product((0, 1), repeat=len(flag_names)):
            prob_flags = np.prod([RX_FLAGS[f][0] if on else 1 - RX_FLAGS[f][0] for f, on in zip(flag_names, flags)])
            logit = base + sum(RX_FLAGS[f][1] for f, on in zip(flag_names, flags) if on) + 0.5 * any(flags)
            p = float(_expit(logit))
            weight = share * prob_flags
            for key, part in (("le_4_weeks", le_share), ("gt_4_weeks", 1 - le_share), (band, 1.0)):
                acc = totals.setdefault(key, [0.0, 0.0])
                acc[0] += weight * part * p
                acc[1] += weight * part
    proportion = {key: num / den for key, (num, den) in totals.items() if den > 0}
    headline = {g: proportion[g] for g in ("gt_4_weeks", "le_4_weeks")}
    return {
        "headline": headline,
        # estimand (b): the same latent dependence; whether the fixed window is defined does not depend on covariates
        "headline_fixed_window": dict(headline),
        "by_duration_band": {band: proportion[band] for band in DURATION_BANDS},
    }


def make_mar_person_table(seed: int, persons: int) -> tuple[pd.DataFrame, dict]:
    """An ``analysis_person``-shaped table from the MAR model, and its exact truth."""
    rng = np.random.default_rng(seed)
    n = persons
    age = _draw(rng, AGE_BANDS, n)
    sex = _draw(rng, SEX_EFFECTS, n)
    indication = _draw(rng, INDICATION_EFFECTS, n)
    dose = _draw(rng, DOSE_BANDS, n)
    band = _draw(rng, DURATION_BANDS, n)
    first = _effects(DURATION_BANDS, band, 3)
    last = _effects(DURATION_BANDS, band, 4)
    duration = (first + np.floor(rng.random(n) * (last - first + 1))).astype(int)
    flags = {name: rng.random(n) < spec[0] for name, spec in RX_FLAGS.items()}
    signal = np.logical_or.reduce(list(flags.values()))
    dep_logit = (
        _effects(AGE_BANDS, age, 1) + _effects(SEX_EFFECTS, sex, 1) + _effects(INDICATION_EFFECTS, indication, 1)
        + _effects(DOSE_BANDS, dose, 1) + _effects(DURATION_BANDS, band, 1)
        + sum(RX_FLAGS[f][1] * flags[f] for f in RX_FLAGS) + 0.5 * signal
    )
    asc_logit = (
        ASCERTAINMENT_INTERCEPT + _effects(AGE_BANDS, age, 2) + _effects(SEX_EFFECTS, sex, 2)
        + _effects(INDICATION_EFFECTS, indication, 2) + _effects(DOSE_BANDS, dose, 2) + _effects(DURATION_BANDS, band, 2)
        + sum(RX_FLAGS[f][2] * flags[f] for f in RX_FLAGS)
    )
    dependent = rng.random(n) < _expit(dep_logit)
    ascertained = rng.random(n) < _expit(asc_logit)
    window = duration + 90
    # components: each dependent person has at least one
    comp = {
        "dep_icd": dependent & (rng.random(n) < 0.35),
        "dep_withdrawal": dependent & (rng.random(n) < 0.55),
        "dep_assessed": dependent & (rng.random(n) < 0.40),
    }
    comp["dep_sds"] = dependent & ((rng.random(n) < 0.45) | ~(comp["dep_icd"] | comp["dep_withdrawal"] | comp["dep_assessed"]))
    days_to_dependence = np.minimum(window - 1, np.floor(rng.exponential(0.6, n) * np.maximum(duration, 14))).astype(int)
    died = ~dependent & (rng.random(n) < 0.03)
    days_to_death = np.floor(rng.random(n) * window).astype(int)
    ending = np.array(["taper", "abrupt", "ongoing"], dtype=object)[rng.choice(3, size=n, p=[0.35, 0.35, 0.30])]
    # estimand (b): defined when the treatment ended while observed; assessed in the fixed window with a
    # probability that does not grow with duration (a flatter MAR model of its own)
    fixed_defined = ending != "ongoing"
    fixed_logit = asc_logit - _effects(DURATION_BANDS, band, 2) * 0.5 - 0.3
    ascertained_fixed = fixed_defined & (rng.random(n) < _expit(fixed_logit))
    unassessing = ~ascertained & (rng.random(n) < 0.2)
    documented = ascertained & (rng.random(n) < np.where(signal, 0.3, 0.03))
    icd_misuse = ascertained & (rng.random(n) < 0.01)
    increase = rng.random(n) < np.clip(0.02 + duration / 1000, 0, 0.6)
    ratio = np.where(increase, 1 + rng.gamma(2.0, 0.25, n), 1.0)

    def masked(values, dtype="boolean"):
        return pd.array(np.where(ascertained, values, None), dtype=dtype)

    person = pd.DataFrame(
        {
            "person_id": [f"P{seed}-{i:06d}" for i in range(n)],
            "duration_days": duration,
            "duration_band": pd.array(band, dtype="str"),
            "headline_group": pd.array(np.where(duration <= HEADLINE_SPLIT_DAYS, "le_4_weeks", "gt_4_weeks"), dtype="str"),
            "age_band": pd.array(age, dtype="str"),
            "sex": pd.array(sex, dtype="str"),
            "indication": pd.array(indication, dtype="str"),
            "dose_band": pd.array(dose, dtype="str"),
            "ending": pd.array(ending, dtype="str"),
            "ascertained": ascertained,
            "dependence": masked(dependent),
            **{name: masked(values) for name, values in comp.items()},
            "days_to_dependence": pd.array(np.where(ascertained & dependent, days_to_dependence, None), dtype="Int64"),
            "fixed_window_defined": fixed_defined,
            "ascertained_fixed": ascertained_fixed,
            "dependence_fixed": pd.array(np.where(ascertained_fixed, dependent, None), dtype="boolean"),
            "only_unassessing_records": unassessing,
            "only_unassessing_records_fixed": fixed_defined & ~ascertained_fixed & unassessing,
            "died_in_window": died,
            "days_to_death": pd.array(np.where(died, days_to_death, None), dtype="Int64"),
            "days_followed": np.where(died, days_to_death, window),
            **flags,
            "rx_misuse_signal": signal,
            "documented_misuse": masked(documented),
            "icd_misuse": masked(icd_misuse),
            "misuse": signal | documented | icd_misuse,
            "mean_daily_dose_dde_mg": _effects({"low": (10.0,), "medium": (20.0,), "high": (40.0,)}, dose, 0) * rng.uniform(0.7, 1.3, n),
            "days_to_first_increase": pd.array(np.where(increase, np.floor(rng.random(n) * duration), None), dtype="Int64"),
            "dose_escalation_ratio": ratio,
        }
    )
    return person, mar_truth()


def _truth_value(truth: dict, group: str, block: str = "headline") -> float:
    value = truth.get(block, truth).get(group)
    if isinstance(value, dict):
        value = value.get("model_expected", value.get("estimate", value.get("proportion")))
    return float(value)


def make_demo_person_table(seed: int, persons: int) -> tuple[pd.DataFrame, dict]:
    """The real thing at small size: the demo generator, native ingest and the transform SQL.

    Validation is skipped: the generator's planted invalid rows all belong to
    minors, outside the cohort, so they cannot move a cohort estimate, and GX's
    start-up would dominate the run time. The truth is the generator's
    ``model_expected`` proportion per headline group (the mean of the model's
    dependence probabilities over the cohort) -- the estimand of a weighted
    estimator; the realised proportion is also kept (``realised``).
    """
    import tempfile
    from pathlib import Path

    from pipeline import transform
    from pipeline.demo.generator import generate
    from pipeline.ingest.native import load_native
    from pipeline.warehouse import connect

    config = load_config()  # the shipped settings: equivalence and labelled-maximum tables, washout, bands
    with tempfile.TemporaryDirectory(prefix="benzo-sim-") as folder:
        extract = Path(folder) / "extract"
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # the generator prints its seed and summary
            truth = generate(extract, persons=persons, seed=seed, config=config, fmt="parquet")
        con = connect(":memory:")
        load_native(con, extract, config)
        transform.run(con, config)
        person = con.execute("select * from analysis_person").df()
        con.close()
    blocks = {
        block: {group: {"model_expected": values["model_expected"], "realised": values["proportion"]}
                for group, values in truth[block].items()}
        for block in ("headline", "headline_fixed_window")
    }
    return person, blocks


def main(
    n_sims: int = 200,
    persons: int = 15000,
    seed: int = 20261122,
    make_person_table: MakePersonTable | None = None,
    config: Config | None = None,
    verbose: bool = True,
) -> pd.DataFrame:
    """Bias, empirical SE, mean CI width and coverage of primary vs complete-case.

    One row per estimand x headline group x method. Seeds are ``seed + i`` (printed).
    """
    from pipeline.estimate.run import headline_from_person_table

    make = make_person_table or make_mar_person_table
    config = config or load_config()
    records = []
    started = time.perf_counter()
    if verbose:
        print(f"simulation: {n_sims} data sets x {persons} persons, seeds {seed}..{seed + n_sims - 1}", flush=True)
    for i in range(n_sims):
        person, truth = make(seed + i, persons)
        for estimand, block in (("a", "headline"), ("b", "headline_fixed_window")):
            if block not in truth and estimand == "b":
                continue
            result = headline_from_person_table(person, config, estimand=estimand)
            for method_key, method in (("headline", "primary"), ("complete_case", "complete_case")):
                for group, values in result[method_key].items():
                    true = _truth_value(truth, group, block)
                    records.append(
                        {
                            "estimand": estimand,
                            "group": group,
                            "method": method,
                            "truth": true,
                            "estimate": values["estimate"],
                            "covered": values["ci_low"] <= true <= values["ci_high"],
                            "width": values["ci_high"] - values["ci_low"],
                        }
                    )
        if verbose and (i + 1) % 25 == 0:
            print(f"  {i + 1} / {n_sims} ({time.perf_counter() - started:.0f} s)", flush=True)
    frame = pd.DataFrame(records)
    summary = (
        frame.assign(error=frame["estimate"] - frame["truth"])
        .groupby(["estimand", "group", "method"], as_index=False)
        .agg(
            truth=("truth", "mean"),
            mean_estimate=("estimate", "mean"),
            bias_pp=("error", lambda e: 100 * e.mean()),
            empirical_se_pp=("estimate", lambda e: 100 * e.std(ddof=1)),
            mean_ci_width_pp=("width", lambda w: 100 * w.mean()),
            coverage=("covered", "mean"),
        )
    )
    summary["sims"] = n_sims
    summary["seconds"] = round(time.perf_counter() - started, 1)
    if verbose:
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            print(summary.round(4).to_string(index=False))
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sims", type=int, default=200)
    parser.add_argument("--persons", type=int, default=15000)
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--source", choices=("demo", "mar"), default="demo",
                        help="demo: the demo generator + ingest + transform (default); mar: the self-contained MAR model")
    parser.add_argument("--out", default=None, help="also write the summary as CSV here")
    args = parser.parse_args()
    maker = make_demo_person_table if args.source == "demo" else make_mar_person_table
    summary = main(args.sims, args.persons, args.seed, make_person_table=maker)
    if args.out:
        summary.to_csv(args.out, index=False)
