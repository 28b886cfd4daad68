"""Synthetic demo extract with a known truth (docs/demo_model.md).

``generate(out_dir, persons, seed, config)`` writes ``persons``,
``prescriptions``, ``diagnoses`` and ``follow_ups`` (CSV or Parquet, the native
contract of ``pipeline/contract.py``) plus ``truth.json`` and
``truth_persons.parquet`` beside them. Everything is drawn with numpy, seeded,
in whole-array operations (no Python loop over persons or records); DuckDB
writes the files. The model and every number in it: ``docs/demo_model.md`` and
``pipeline/demo/model.py``.

Time is handled as whole days relative to each person's first clonazepam
dispensing ("day 0") until the very end, where a per-person calendar date
(with a random per-person shift of up to +-2 years) is added.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import Config
from pipeline.contract import TABLES
from pipeline.demo import model as m
from pipeline.errors import PipelineError

FORMATS = ("csv", "parquet")
# The truth is defined under the default settings (config/default.toml); the extract is built so that
# episodes are the same for any persistence window >= 21 days (gaps <= 20).
TRUTH_DEFINITIONS = {
    "ingredient": "clonazepam",
    "persistence_window_days": 30,
    "stockpiling": False,
    "window_after_end_days": 90,
    "fixed_window_days": 90,
    "sds_cutoff": 7,
    "min_age_years": 18,
    "washout_days": 365,
}
CALENDAR_CAP = dt.date(2024, 6, 30)  # latest unshifted date; +2 years shift stays in the past
MAX_SHIFT_DAYS = 730
UNKNOWN_PERSON_NUMBER = 9_999_999  # "P9999999": a person_id that is not in persons
MAX_PERSONS = 9_000_000
MIN_PERSONS = 200


def _segment_offsets(counts):
    """Start index of each segment of a ragged array.

    >>> _segment_offsets(np.array([2, 1, 3])).tolist()
    [0, 2, 3]
    """
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)


def _segment_cumsum(values, counts):
    """Cumulative sum restarting at each segment.

    >>> _segment_cumsum(np.array([0, 5, 7, 0, 3]), np.array([3, 2])).tolist()
    [0, 5, 12, 0, 3]
    """
    offsets = _segment_offsets(counts)
    total = np.cumsum(values)
    return total - np.repeat(total[offsets] - values[offsets], counts)


def _ragged(counts):
    """(owner index, position within owner) of every element of a ragged array.

    >>> [a.tolist() for a in _ragged(np.array([2, 0, 1]))]
    [[0, 0, 2], [0, 1, 0]]
    """
    owner = np.repeat(np.arange(len(counts)), counts)
    position = np.arange(len(owner)) - _segment_offsets(counts)[owner]
    return owner, position


def _days(date: dt.date) -> int:
    return (date - dt.date(1970, 1, 1)).days


def _year_of(days):
    """Calendar year of day numbers since 1970-01-01.

    >>> _year_of(np.array([0, 365, 19000])).tolist()
    [1970, 1971, 2022]
    """
    return np.asarray(days).astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970


# ----------------------------------------------------------------------------- persons

def _draw_persons(rng, n):
    p = {}
    group = np.zeros(n, dtype=np.int8)
    order = rng.permutation(n)
    start = 0
    for code, name in enumerate(m.GROUPS[1:], start=1):
        count = max(m.MIN_GROUP_COUNT, int(round(m.GROUP_SHARES[name] * n)))
        group[order[start:start + count]] = code
        start += count
    p["group"] = group
    p["has_episode"] = group != m.GROUPS.index("no_clonazepam")
    p["sex"] = m.draw_categorical(rng, m.SEX_PROBS, n)
    p["region"] = m.draw_categorical(rng, m.REGION_PROBS, n)
    p["region_missing"] = rng.random(n) < 0.04
    adult_age = 18 + np.floor(73 * rng.beta(1.8, 2.4, n)).astype(np.int64)
    minor_age = m.uniform_int(rng, np.full(n, 14), np.full(n, 17))
    p["age"] = np.where(group == m.GROUPS.index("minor"), minor_age, np.minimum(adult_age, 90))
    p["indication"] = m.draw_categorical(rng, m.INDICATION_PROBS, n)
    p["other_drug"] = m.draw_categorical(rng, (0.5, 0.25, 0.25), n)  # index into OTHER_BENZOS
    misuse_p = m.logistic(m.MISUSE_LOGIT_INTERCEPT + m.MISUSE_LOGIT_PER_YEAR * (p["age"] - 18))
    p["misuse"] = (rng.random(n) < misuse_p) & p["has_episode"]
    signal = np.where(
        p["misuse"],
        m.draw_categorical(rng, m.MISUSER_SIGNAL_PROBS, n),
        m.draw_categorical(rng, m.SUPERVISED_SIGNAL_PROBS, n),
    )
    p["signal"] = np.where(p["has_episode"], signal, 0)
    return p


def _draw_first_episode_plan(rng, p):
    n = len(p["group"])
    band = m.draw_categorical(rng, m.TARGET_BAND_PROBS, n)
    short_choice = [np.asarray(v)[rng.integers(0, len(v), n)] for v in m.SHORT_SINGLE_FILL_SUPPLY]
    target = np.select(
        [band == 0, band == 1, band == 2, band == 3, band == 4],
        [short_choice[0], short_choice[1], m.uniform_int(rng, np.full(n, 28), np.full(n, 55)),
         m.uniform_int(rng, np.full(n, 56), np.full(n, 83)), m.uniform_int(rng, np.full(n, 84), np.full(n, 181))],
        182 + np.minimum(np.floor(rng.exponential(220, n)), 818).astype(np.int64),
    )
    short = band <= 1
    single = short & (rng.random(n) < 0.75)
    first_supply = np.asarray(m.FIRST_FILL_SUPPLY)[m.draw_categorical(rng, m.FIRST_FILL_PROBS, n)]
    first_supply = np.where(short, np.where(target >= 10, 7, np.maximum(3, target // 2)), np.minimum(first_supply, target))
    first_supply = np.where(single, target, first_supply)
    regular = np.where(
        target < 84,
        np.array([7, 14, 28, 30])[m.draw_categorical(rng, (0.3, 0.4, 0.15, 0.15), n)],
        np.array([14, 28, 30])[m.draw_categorical(rng, (0.15, 0.40, 0.45), n)],
    )
    regular = np.where(short, 7, regular)
    fills = 1 + np.ceil(np.maximum(target - first_supply, 0) / (regular + 2)).astype(np.int64)
    fills = np.where(single, 1, np.where(short, np.maximum(fills, 2), fills))
    signal = p["signal"]
    fills = np.where(signal == m.SIGNALS.index("shopping"), np.maximum(fills, 3), fills)
    fills = np.where(signal == m.SIGNALS.index("early_refills"), np.maximum(fills, 4), fills)
    none_signal = signal == 0
    u = rng.random(n)
    plan = {
        "fills": fills, "first_supply": first_supply, "regular_supply": regular,
        "one_early": none_signal & (fills >= 2) & (u < 0.08),
        "one_duplicate": none_signal & (fills >= 2) & (u >= 0.08) & (u < 0.12),
        "event_position": m.uniform_int(rng, np.ones(n, dtype=np.int64), np.maximum(fills - 1, 1)),
        "escalates": rng.random(n) < np.where(p["misuse"], 0.40, 0.15),
        "tapers": (rng.random(n) < 0.25) & (fills >= 4),
    }
    level = np.zeros(n, dtype=np.int64)
    for code, name in enumerate(m.INDICATIONS):
        who = p["indication"] == code
        level[who] = m.draw_categorical(rng, m.START_LEVEL_PROBS[name], int(who.sum()))
    level = np.minimum(level + np.where(p["misuse"], m.MISUSE_EXTRA_LEVELS, 0), m.MAX_SUPERVISED_LEVEL)
    high = signal == m.SIGNALS.index("high_dose")
    plan["start_level"] = np.where(high, np.asarray(m.HIGH_DOSE_LEVELS)[rng.integers(0, 2, n)], level)
    plan["high_dose"] = high
    return plan


def _first_episode_fills(rng, p, plan, prescriber_pool, pharmacy_pool):
    counts = plan["fills"]
    owner, k = _ragged(counts)
    total = len(owner)
    supply = np.where(k == 0, plan["first_supply"][owner], plan["regular_supply"][owner])
    swap = (k >= 1) & (rng.random(total) < 0.10) & np.isin(supply, (28, 30))
    supply = np.where(swap, 58 - supply, supply)  # 28 <-> 30: packs differ
    duplicate = plan["one_duplicate"][owner] & (k == plan["event_position"][owner])
    dup_at = np.flatnonzero(duplicate)
    supply[dup_at] = supply[dup_at - 1]
    previous_supply = np.concatenate([[0], supply[:-1]])
    u = rng.random(total)
    max_overlap = np.floor(m.NORMAL_OVERLAP_SHARE * previous_supply).astype(np.int64)
    gap = np.where(
        (u < 0.35) & (max_overlap >= 1),
        -m.uniform_int(rng, np.ones(total, dtype=np.int64), np.maximum(max_overlap, 1)),
        np.where(u < 0.80, m.uniform_int(rng, np.zeros(total), np.full(total, 5)),
                 m.uniform_int(rng, np.full(total, 6), np.full(total, m.MAX_GAP_DAYS))),
    )
    step = previous_supply + gap
    early = (plan["one_early"][owner] & (k == plan["event_position"][owner])) | (
        (p["signal"][owner] == m.SIGNALS.index("early_refills")) & (k >= 1) & (k <= 3)
    )
    step = np.where(early, np.floor(m.EARLY_REFILL_SHARE * previous_supply).astype(np.int64), step)
    step = np.where(duplicate | (k == 0), 0, step)
    start = _segment_cumsum(step, counts)

    n_fills = counts[owner]
    level = plan["start_level"][owner] + np.where(plan["escalates"][owner], np.minimum(k // 3, 2), 0)
    level = np.minimum(level, m.MAX_SUPERVISED_LEVEL)
    taper = plan["tapers"][owner]
    level = level - np.where(taper & (k == n_fills - 2), 1, 0) - np.where(taper & (k == n_fills - 1), 2, 0)
    level = np.maximum(level, 0)
    level = np.where(plan["high_dose"][owner], plan["start_level"][owner], level)
    level[dup_at] = level[dup_at - 1]

    shopper = p["signal"][owner] == m.SIGNALS.index("shopping")
    alt_prescriber = p["two_prescribers"][owner] & (k >= 1) & (rng.random(total) < 0.3)
    alt_pharmacy = p["two_pharmacies"][owner] & (k >= 1) & (rng.random(total) < 0.3)
    prescriber = (p["home_prescriber"][owner] + np.where(shopper, k % 3, alt_prescriber)) % prescriber_pool
    pharmacy = (p["home_pharmacy"][owner] + np.where(shopper, k % 3, alt_pharmacy)) % pharmacy_pool
    return {"owner": owner, "k": k, "start": start, "supply": supply, "level": level,
            "prescriber": prescriber, "pharmacy": pharmacy}


def _follow_on_fills(rng, owners, first_start, counts, supplies, max_gap):
    """Regular refills of a later run (second episode, switch): start days."""
    owner, k = _ragged(counts)
    supply = np.asarray(supplies)[rng.integers(0, len(supplies), len(owner))]
    previous = np.concatenate([[0], supply[:-1]])
    step = np.where(k == 0, 0, previous + m.uniform_int(rng, np.zeros(len(owner)), np.full(len(owner), max_gap)))
    start = first_start[owner] + _segment_cumsum(step, counts)
    return owners[owner], start, supply


# ----------------------------------------------------------------------------- main entry

def generate(out_dir: Path, persons: int, seed: int, config: Config, fmt: str = "csv") -> dict:
    """Write the demo extract and its truth to ``out_dir``; return the truth dict."""
    if fmt not in FORMATS:
        raise PipelineError(f"demo format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if not MIN_PERSONS <= persons <= MAX_PERSONS:
        raise PipelineError(f"demo persons must be between {MIN_PERSONS} and {MAX_PERSONS}, got {persons}")
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"demo extract: seed {seed}, {persons} persons, {fmt} -> {out_dir}", flush=True)
    rng = np.random.default_rng(seed)
    n = persons
    lower_days = tuple(config.estimate.duration_band_lower_days)
    band_labels = config.estimate.band_labels()
    split_days = config.estimate.headline_split_days
    clonazepam_mg_per_10mg_diazepam = config.drugs.mg_equivalent_to_10mg_diazepam.get("clonazepam", 0.5)

    # --- persons and their first clonazepam episode ---------------------------------------
    p = _draw_persons(rng, n)
    prescriber_pool = max(50, n // 40)
    pharmacy_pool = max(20, n // 150)
    p["home_prescriber"] = rng.integers(0, prescriber_pool, n)
    p["home_pharmacy"] = rng.integers(0, pharmacy_pool, n)
    not_shopper = p["signal"] != m.SIGNALS.index("shopping")
    p["two_prescribers"] = not_shopper & (rng.random(n) < 0.20)
    p["two_pharmacies"] = not_shopper & (rng.random(n) < 0.15)
    plan = _draw_first_episode_plan(rng, p)
    fills = _first_episode_fills(rng, p, plan, prescriber_pool, pharmacy_pool)
    offsets = _segment_offsets(plan["fills"])
    uncut_end = np.maximum.reduceat(fills["start"] + fills["supply"] - 1, offsets)

    # --- observation end: cut during the episode, death, partial window, normal -----------
    fate = m.draw_categorical(rng, (0.07, 0.007, 0.013, 0.08, 0.83), n)
    can_cut = uncut_end >= 1
    fate = np.where((fate <= 1) & ~can_cut, 4, fate)
    inside = np.floor(rng.random(n) * uncut_end).astype(np.int64)  # 0 .. uncut_end - 1
    obs_end = np.select(
        [fate <= 1, fate == 2, fate == 3],
        [inside, uncut_end + m.uniform_int(rng, np.ones(n), np.full(n, 600)),
         uncut_end + m.uniform_int(rng, np.zeros(n), np.full(n, 89))],
        uncut_end + 91 + np.minimum(np.floor(rng.exponential(900, n)), 4000).astype(np.int64),
    )
    died = (fate == 1) | (fate == 2)

    kept = fills["start"] <= obs_end[fills["owner"]]
    kept_count = np.add.reduceat(kept.astype(np.int64), offsets)
    kept_end = np.maximum.reduceat(np.where(kept, fills["start"] + fills["supply"] - 1, -1), offsets)
    episode_end = np.minimum(kept_end, obs_end)
    duration = episode_end + 1
    level_mg = np.array([s * u for s, u in m.CLONAZEPAM_LEVELS])
    dose_mg = level_mg[fills["level"]]
    mean_dose_mg = np.add.reduceat(np.where(kept, dose_mg, 0.0), offsets) / kept_count
    mean_dde_mg = mean_dose_mg * 10.0 / clonazepam_mg_per_10mg_diazepam
    signal = p["signal"]
    rx_signal = (
        ((signal == m.SIGNALS.index("shopping")) & (kept_count >= 3))
        | ((signal == m.SIGNALS.index("early_refills")) & (kept_count >= 4))
        | (signal == m.SIGNALS.index("high_dose"))
    )

    # --- prior observation and benzodiazepines before day 0 ----------------------------
    group = p["group"]
    prior = 365 + np.floor(rng.exponential(900, n)).astype(np.int64)
    prior = np.where(rng.random(n) < 0.005, 365, prior)  # the boundary: exactly 365 days is enough
    short_prior = group == m.GROUPS.index("short_prior")
    short_days = np.where(rng.random(n) < 0.10, 364, m.uniform_int(rng, np.zeros(n), np.full(n, 364)))
    prior = np.where(short_prior, short_days, prior)
    old_other = (group == 0) & (rng.random(n) < 0.06)
    prior = np.where(old_other, np.maximum(prior, 700 + m.uniform_int(rng, np.zeros(n), np.full(n, 400))), prior)
    obs_start = -prior

    # --- latent dependence, onset, ascertainment ------------------------------------
    p_dep = m.logistic(m.dependence_logit(duration, mean_dde_mg, p["age"], p["misuse"]))
    dependent = (rng.random(n) < p_dep) & p["has_episode"]
    onset = np.floor(rng.random(n) * duration).astype(np.int64)  # inside the (cut) episode: before any death
    age_band = m.age_band_index(p["age"])
    duration_band = m.band_index(duration, lower_days)
    asc_logit = m.ascertainment_logit(age_band, p["sex"], p["indication"], duration_band, rx_signal)
    p_asc = m.logistic(asc_logit)
    u_asc = rng.random(n)
    ascertained = (u_asc < p_asc) & p["has_episode"]
    window_end = episode_end + TRUTH_DEFINITIONS["window_after_end_days"]
    observed_window_end = np.minimum(window_end, obs_end)
    # estimand (b): defined when the treatment ended while observed (the pipeline's end_reason 'supply'):
    # not by death on or before the last day of supply, not by observation end before it
    fixed_defined = p["has_episode"] & ~(died & (obs_end <= kept_end)) & ~(obs_end < kept_end)
    fixed_hi = np.minimum(episode_end + TRUTH_DEFINITIONS["fixed_window_days"], obs_end)
    p_asc_fixed = m.logistic(asc_logit + np.asarray(m.FIXED_WINDOW_SHIFT)[duration_band])
    # the same uniform draw: assessed in the fixed window implies assessed in window (a), which contains it
    ascertained_fixed = (u_asc < p_asc_fixed) & fixed_defined & (fixed_hi >= episode_end + 1)
    tapered = plan["tapers"] & (kept_count == plan["fills"])

    # --- prescriptions ------------------------------------------------------------
    rx = _prescriptions(rng, p, plan, fills, kept, uncut_end, obs_end, fate, old_other, prescriber_pool, pharmacy_pool)
    follow_ups, diagnoses = _evidence(
        rng, p, ascertained, ascertained_fixed, fixed_hi, dependent, onset, episode_end, observed_window_end,
        window_end, obs_end, prior, tapered,
    )

    # --- calendar: per-person day 0 with a shift of up to +-2 years ----------------------
    cap = _days(CALENDAR_CAP)
    day0 = cap - obs_end - m.uniform_int(rng, np.zeros(n), np.full(n, 3000))
    day0 = day0 + m.uniform_int(rng, np.full(n, -MAX_SHIFT_DAYS), np.full(n, MAX_SHIFT_DAYS))
    birth_year = _year_of(day0) - p["age"]

    tables, planted = _assemble(rng, p, n, day0, obs_start, obs_end, died, birth_year, rx, follow_ups, diagnoses)
    rows = _write(out_dir, fmt, tables)

    # --- truth --------------------------------------------------------------------
    cohort = group == 0
    truth_persons = {
        "person_id": np.char.add("P", np.char.zfill(np.arange(1, n + 1).astype(str), 7)),
        "in_cohort": cohort,
        "exclusion": np.asarray(m.GROUPS)[group],
        "episode_start": (day0).astype("datetime64[D]"),
        "episode_end": (day0 + episode_end).astype("datetime64[D]"),
        "duration_days": duration,
        "band": np.asarray(band_labels)[duration_band],
        "headline_group": np.where(duration > split_days, "gt_4_weeks", "le_4_weeks"),
        "age": p["age"],
        "age_band": np.asarray(m.AGE_BANDS)[age_band],
        "sex": np.asarray(m.SEX_CODES)[p["sex"]],
        "indication": np.asarray(m.INDICATIONS)[p["indication"]],
        "mean_daily_dose_mg": mean_dose_mg,
        "mean_daily_dose_dde_mg": mean_dde_mg,
        "misuse": p["misuse"],
        "rx_misuse_signal": rx_signal,
        "p_dependence": p_dep,
        "dependent": dependent,
        "onset_day": np.where(dependent, onset, -1),
        "p_ascertained": p_asc,
        "ascertained": ascertained,
        "fixed_window_defined": fixed_defined,
        "p_ascertained_fixed": p_asc_fixed,
        "ascertained_fixed": ascertained_fixed,
        "died": died,
        "death_in_episode": fate == 1,
        "end_cut_by_observation": (fate <= 1) & (episode_end < uncut_end),
    }
    keep = p["has_episode"]
    truth_table = pa.table({k: v[keep] for k, v in truth_persons.items()})
    pq.write_table(truth_table, out_dir / "truth_persons.parquet")
    truth = _truth(
        seed, n, config, fmt, rows, planted, group, cohort, duration, duration_band, band_labels, split_days,
        dependent, p_dep, ascertained, p_asc, p["misuse"], rx_signal, died, fate, episode_end, uncut_end,
        fixed_defined, ascertained_fixed,
    )
    truth["generation_seconds"] = round(time.perf_counter() - started, 2)
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    print(
        f"demo extract: {rows['prescriptions']} prescriptions, cohort {truth['cohort']['persons']}, "
        f"> 4 weeks dependent {truth['headline']['gt_4_weeks']['proportion']:.3f} "
        f"(seed {seed}, {truth['generation_seconds']} s)",
        flush=True,
    )
    return truth


def _prescriptions(rng, p, plan, fills, kept, uncut_end, obs_end, fate, old_other, prescriber_pool, pharmacy_pool):
    """All dispensings as flat arrays (days relative to day 0)."""
    n = len(p["group"])
    clonazepam, other = 0, 1
    parts = []
    owner = fills["owner"][kept]
    level = fills["level"][kept]
    strength = np.array([s for s, _ in m.CLONAZEPAM_LEVELS])[level]
    units = np.array([u for _, u in m.CLONAZEPAM_LEVELS])[level]
    drug = np.where(p["has_episode"][owner], clonazepam, other)
    parts.append(dict(owner=owner, start=fills["start"][kept], supply=fills["supply"][kept], drug=drug,
                      strength=strength, units=units, prescriber=fills["prescriber"][kept],
                      pharmacy=fills["pharmacy"][kept], indication=p["indication"][owner]))

    normal = (fate == 4) & p["has_episode"]
    # a second, later clonazepam episode (> 120 days after the first ends)
    who = np.flatnonzero(normal & (rng.random(n) < 0.12))
    first = uncut_end[who] + m.SECOND_EPISODE_MIN_GAP + m.uniform_int(rng, np.zeros(len(who)), np.full(len(who), 400))
    o, s, sup = _follow_on_fills(rng, who, first, m.uniform_int(rng, np.ones(len(who)), np.full(len(who), 6)), (28, 30), m.MAX_GAP_DAYS)
    lvl = plan["start_level"][o]
    parts.append(dict(owner=o, start=s, supply=sup, drug=np.full(len(o), clonazepam),
                      strength=np.array([x for x, _ in m.CLONAZEPAM_LEVELS])[lvl],
                      units=np.array([u for _, u in m.CLONAZEPAM_LEVELS])[lvl],
                      prescriber=p["home_prescriber"][o] % prescriber_pool, pharmacy=p["home_pharmacy"][o] % pharmacy_pool,
                      indication=p["indication"][o]))
    # a switch to another benzodiazepine after the clonazepam episode
    who = np.flatnonzero(normal & (rng.random(n) < 0.08))
    first = uncut_end[who] + 1 + m.uniform_int(rng, np.zeros(len(who)), np.full(len(who), 20))
    o, s, sup = _follow_on_fills(rng, who, first, m.uniform_int(rng, np.ones(len(who)), np.full(len(who), 3)), (14, 28), 10)
    parts.append(_other_benzo_part(rng, p, o, s, sup, prescriber_pool, pharmacy_pool))
    # another benzodiazepine in the year before day 0 (excluded from the cohort)
    who = np.flatnonzero(p["group"] == m.GROUPS.index("recent_other_benzo"))
    sup = np.array([7, 14, 28, 30])[rng.integers(0, 4, len(who))]
    s = -m.uniform_int(rng, sup + 1, np.full(len(who), 330))
    parts.append(_other_benzo_part(rng, p, who, s, sup, prescriber_pool, pharmacy_pool))
    # an old one (> 400 days before day 0): not an exclusion
    who = np.flatnonzero(old_other)
    sup = np.array([7, 14, 28, 30])[rng.integers(0, 4, len(who))]
    s = -m.uniform_int(rng, np.full(len(who), 420), np.full(len(who), 700))
    parts.append(_other_benzo_part(rng, p, who, s, sup, prescriber_pool, pharmacy_pool))

    rx = {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}
    rx["other_drug"] = np.concatenate([np.zeros(len(parts[0]["owner"]), dtype=np.int64)] + [
        part.get("other_drug", np.zeros(len(part["owner"]), dtype=np.int64)) for part in parts[1:]])
    # persons without clonazepam: their "episode" is another benzodiazepine
    no_clz = ~p["has_episode"][rx["owner"]] & (rx["drug"] == other) & (np.arange(len(rx["owner"])) < len(parts[0]["owner"]))
    other_code = p["other_drug"][rx["owner"]]
    rx["other_drug"] = np.where(no_clz, other_code, rx["other_drug"])
    strength_other = np.array([m.OTHER_STRENGTH[d][0] for d in m.OTHER_BENZOS])
    max_units_other = np.array([m.OTHER_STRENGTH[d][1] for d in m.OTHER_BENZOS])
    units_other = m.uniform_int(rng, np.ones(len(no_clz)), max_units_other[other_code])
    rx["strength"] = np.where(no_clz, strength_other[other_code], rx["strength"])
    rx["units"] = np.where(no_clz, units_other, rx["units"])
    inside = rx["start"] <= obs_end[rx["owner"]]  # later fills beyond observation are not dispensed
    return {k: v[inside] for k, v in rx.items()}


def _other_benzo_part(rng, p, owner, start, supply, prescriber_pool, pharmacy_pool):
    code = p["other_drug"][owner]
    strength = np.array([m.OTHER_STRENGTH[d][0] for d in m.OTHER_BENZOS])[code]
    max_units = np.array([m.OTHER_STRENGTH[d][1] for d in m.OTHER_BENZOS])[code]
    return dict(owner=owner, start=start, supply=supply, drug=np.ones(len(owner), dtype=np.int64),
                strength=strength, units=m.uniform_int(rng, np.ones(len(owner)), max_units),
                prescriber=p["home_prescriber"][owner] % prescriber_pool, pharmacy=p["home_pharmacy"][owner] % pharmacy_pool,
                indication=m.draw_categorical(rng, m.INDICATION_PROBS, len(owner)), other_drug=code)


def _uniform_day(rng, low, high):
    return m.uniform_int(rng, low, np.maximum(high, low))


def _evidence(rng, p, ascertained, ascertained_fixed, fixed_hi, dependent, onset, episode_end, win_hi, window_end,
              obs_end, prior, tapered):
    """Follow-ups and diagnoses (days relative to day 0).

    Window (a) = [0, episode end + 90]; fixed window (b) = [episode end + 1, episode end + 90].
    A record ASSESSES the outcome when it is a follow-up with an outcome field
    recorded or a dependence / withdrawal code. Persons assessed in (b) have an
    assessing row in [end + 1, fixed_hi]; persons assessed in (a) only have
    assessing rows in [0, end] and none in (b); the others have assessing rows
    only outside window (a). Everyone may have rows that assess nothing inside
    the windows: the indication coded on day 0, empty visits, other diagnoses,
    F13.1 codes, misuse-only visits. A dependent person's assessing rows on or
    after onset are positive (dependence persists into the weeks after
    stopping); nobody else has a positive row.
    """
    n = len(ascertained)
    has = p["has_episode"]
    fu_parts, dx_parts = [], []

    def fu(owner, day, sds, withdrawal, assessed, misuse):
        k = len(owner)
        fu_parts.append(dict(owner=owner, day=day, sds=np.broadcast_to(sds, k).astype(np.int64),
                             withdrawal=np.broadcast_to(withdrawal, k).astype(np.int8),
                             assessed=np.broadcast_to(assessed, k).astype(np.int8),
                             misuse=np.broadcast_to(misuse, k).astype(np.int8)))

    def dx(owner, day, code):
        dx_parts.append(dict(owner=owner, day=day, code=np.broadcast_to(code, len(owner)).astype(np.int64)))

    def negative_fields(k, assessing=False):
        # -1 = missing. SDS 0..6 (below the cut-off of 7), flags false or missing; an assessing visit
        # records at least the SDS or the withdrawal field
        sds = np.where(rng.random(k) < 0.85, np.minimum(rng.poisson(1.8, k), 6), -1)
        withdrawal = np.where(rng.random(k) < 0.9, 0, -1)
        if assessing:
            withdrawal = np.where(sds < 0, 0, withdrawal)
        assessed = np.where(rng.random(k) < 0.6, 0, -1)
        misuse = np.where(rng.random(k) < 0.7, 0, -1)
        return sds, withdrawal, assessed, misuse

    def assessing_rows(who, low, high):
        """Assessing rows of ``who`` inside [low, high] (per person): positive on/after onset if dependent."""
        k = len(who)
        dep = dependent[who]
        # non-dependent: 1 + Poisson(0.8) negative visits
        neg = who[~dep]
        counts = 1 + rng.poisson(0.8, len(neg))
        owner, _ = _ragged(counts)
        o = neg[owner]
        fu(o, _uniform_day(rng, low[o], high[o]), *negative_fields(len(o), assessing=True))
        # dependent: positive evidence on or after max(onset, low)
        pos = who[dep]
        k = len(pos)
        start = np.maximum(onset[pos], low[pos])
        day_hi = high[pos]
        icd = rng.random(k) < 0.40
        icd_only = icd & (rng.random(k) < 0.25)
        dx(pos[icd], _uniform_day(rng, start[icd], day_hi[icd]), rng.integers(0, n_dep_codes, int(icd.sum())))
        sds_pos = rng.random(k) < 0.70
        withdrawal = rng.random(k) < np.where(tapered[pos], 0.30, 0.60)  # abrupt stops withdraw more
        assessed = rng.random(k) < 0.45
        sds_pos = sds_pos | ~(withdrawal | assessed | icd)
        sds = np.where(sds_pos, m.uniform_int(rng, np.full(k, 7), np.full(k, 15)),
                       np.where(rng.random(k) < 0.5, m.uniform_int(rng, np.zeros(k), np.full(k, 6)), -1))
        sel = ~icd_only
        fu(pos[sel], _uniform_day(rng, start[sel], day_hi[sel]), sds[sel], withdrawal[sel].astype(np.int8),
           np.where(assessed[sel], 1, -1), np.where(rng.random(int(sel.sum())) < 0.7, 0, -1))
        # an earlier negative visit before onset, when the range allows it
        early = pos[(onset[pos] - 1 >= low[pos]) & (rng.random(k) < 0.40)]
        fu(early, _uniform_day(rng, low[early], onset[early] - 1), *negative_fields(len(early)))

    # Code table indices: dependence codes, then misuse codes, then noise codes, then "XYZ".
    n_dep_codes, n_mis_codes = len(m.DEPENDENCE_CODES), len(m.MISUSE_CODES)
    noise_base = n_dep_codes + n_mis_codes
    zeros = np.zeros(n, dtype=np.int64)
    after_end = episode_end + 1

    # 1. assessed in the fixed window (b) (so also in (a)): an assessing row in [end + 1, fixed_hi],
    #    and for half of them also rows during treatment
    who = np.flatnonzero(has & ascertained_fixed)
    assessing_rows(who, after_end, fixed_hi)
    during = who[rng.random(len(who)) < 0.5]
    assessing_rows(during, zeros, episode_end)
    # 2. assessed in window (a) only: assessing rows during treatment [0, end], none in (b)
    who = np.flatnonzero(has & ascertained & ~ascertained_fixed)
    assessing_rows(who, zeros, np.minimum(episode_end, win_hi))

    # 3. records that assess nothing, inside the windows
    #    the indication coded on the first dispensing day (day 0)
    who = np.flatnonzero(has & (rng.random(n) < m.INDICATION_CODED_ON_DAY_0))
    dx(who, np.zeros(len(who), dtype=np.int64), noise_base + p["indication"][who])
    #    empty follow-up visits (every field missing) of persons not assessed in (a)
    who = np.flatnonzero(has & ~ascertained & (rng.random(n) < m.EMPTY_VISIT_SHARE))
    fu(who, _uniform_day(rng, zeros[who], win_hi[who]), -1, -1, -1, -1)
    #    ... and in the fixed window of persons assessed in (a) only
    who = np.flatnonzero(has & ascertained & ~ascertained_fixed & (fixed_hi >= after_end)
                         & (rng.random(n) < m.EMPTY_VISIT_SHARE))
    fu(who, _uniform_day(rng, after_end[who], fixed_hi[who]), -1, -1, -1, -1)
    #    documented misuse (misuse field only) of assessed misusers; F13.1 codes of misusers
    who = np.flatnonzero(has & ascertained & p["misuse"] & (rng.random(n) < 0.45))
    fu(who, _uniform_day(rng, zeros[who], win_hi[who]), -1, -1, -1, 1)
    who = np.flatnonzero(has & p["misuse"] & (rng.random(n) < 0.30))
    dx(who, _uniform_day(rng, zeros[who], win_hi[who]), n_dep_codes + rng.integers(0, n_mis_codes, len(who)))

    # 4. baseline visits before day 0 (outside every window)
    who = np.flatnonzero(has & (prior >= 1) & (rng.random(n) < 0.15))
    fu(who, -_uniform_day(rng, np.ones(len(who)), np.minimum(prior[who], 60)), *negative_fields(len(who)))
    # 5. not assessed in (a): some negative visits after the window
    after_window = obs_end >= window_end + 1
    who = np.flatnonzero(has & ~ascertained & after_window & (rng.random(n) < 0.25))
    fu(who, _uniform_day(rng, window_end[who] + 1, obs_end[who]), *negative_fields(len(who)))
    # 6. a dependence code before the first episode: not a new case (excluded from the cohort)
    who = np.flatnonzero(p["group"] == m.GROUPS.index("prior_dependence"))
    dx(who, -_uniform_day(rng, np.ones(len(who)), np.maximum(prior[who], 1)), rng.integers(0, n_dep_codes, len(who)))

    # 7. background diagnoses (never an F13 code), anywhere in the person's records
    counts = rng.poisson(0.7, n)
    owner, _ = _ragged(counts)
    lookback = np.minimum(prior, 365)
    dx(owner, _uniform_day(rng, -lookback[owner], obs_end[owner]), noise_base + p["indication"][owner])

    follow_ups = {k: np.concatenate([part[k] for part in fu_parts]) for k in fu_parts[0]}
    diagnoses = {k: np.concatenate([part[k] for part in dx_parts]) for k in dx_parts[0]}
    return follow_ups, diagnoses


def _code_table():
    noise = [m.NOISE_CODES[i] for i in m.INDICATIONS]
    table = list(m.DEPENDENCE_CODES) + list(m.MISUSE_CODES) + noise + [("XYZ", "ICD10")]
    return [c for c, _ in table], [s for _, s in table]


# ----------------------------------------------------------------------------- assembly

def _assemble(rng, p, n, day0, obs_start, obs_end, died, birth_year, rx, follow_ups, diagnoses):
    """Calendar dates, identifiers, missing values, row order and planted invalid rows."""
    minors = np.flatnonzero(p["group"] == m.GROUPS.index("minor"))
    persons = {
        "pnum": np.arange(1, n + 1, dtype=np.int64),
        "birth_year": birth_year,
        "sex": p["sex"],
        "region": np.where(p["region_missing"], -1, p["region"]),
        "observation_start": day0 + obs_start,
        "observation_end": day0 + obs_end,
        "death_date": np.where(died, day0 + obs_end, np.iinfo(np.int32).min),
    }
    planted = []
    # an impossible observation period, on an extra person with no other rows
    bad_person = n + 1
    for key, value in (("pnum", bad_person), ("birth_year", 1970), ("sex", 1), ("region", 0),
                       ("observation_start", _days(dt.date(2015, 3, 1))), ("observation_end", _days(dt.date(2014, 3, 1))),
                       ("death_date", np.iinfo(np.int32).min)):
        persons[key] = np.append(persons[key], value)
    planted.append({"table": "persons", "id": _pid(bad_person), "rule": "observation_end_before_start"})

    # prescriptions: calendar, identifiers, messiness (rows stay grouped by kind of fill and person:
    # the order carries no meaning; follow-ups and diagnoses are shuffled, they are small)
    count = len(rx["owner"])
    drug_name = np.where(rx["drug"] == 0, 0, 1 + rx["other_drug"])
    clean_person = ~np.isin(p["signal"][rx["owner"]], (m.SIGNALS.index("shopping"),))
    prescriptions = {
        "rxnum": np.arange(1, count + 1, dtype=np.int64),
        "pnum": rx["owner"] + 1,
        "dispensed_on": day0[rx["owner"]] + rx["start"],
        "drug": drug_name,
        "strength_mg": rx["strength"].astype(float),
        "quantity": (rx["units"] * rx["supply"]).astype(float),
        "days_supply": rx["supply"].astype(np.int64),
        "daily_dose_mg": np.where(rng.random(count) < 0.08, np.nan, rx["strength"] * rx["units"]),
        "indication": rx["indication"],
        "prescriber": np.where(clean_person & (rng.random(count) < 0.01), -1, rx["prescriber"]),
        "pharmacy": np.where(clean_person & (rng.random(count) < 0.01), -1, rx["pharmacy"]),
    }
    # invalid dispensings, all on minors (never in the cohort, whatever validation does)
    minor_rows = np.flatnonzero(np.isin(rx["owner"], minors[:6]) & (rx["drug"] == 0))
    template = minor_rows[0]
    first_minor_row = {int(o): i for i, o in reversed(list(enumerate(rx["owner"][minor_rows])))}
    rows_of = [minor_rows[first_minor_row[int(o)]] for o in minors[:6] if int(o) in first_minor_row]
    extra = []

    def add(row_index, rule, **changes):
        row = {k: v[row_index] for k, v in prescriptions.items()}
        if "rxnum" not in changes:
            changes["rxnum"] = count + 1 + len(extra)
        row.update(changes)
        extra.append(row)
        planted.append({"table": "prescriptions", "id": _rxid(row["rxnum"]), "rule": rule})

    add(template, "days_supply_out_of_range", days_supply=0, daily_dose_mg=np.nan)
    add(rows_of[1 % len(rows_of)], "quantity_not_positive", quantity=-28.0)
    add(template, "person_not_in_persons", pnum=UNKNOWN_PERSON_NUMBER)
    dup = rows_of[2 % len(rows_of)]
    add(dup, "duplicate_id_exact_copy", rxnum=prescriptions["rxnum"][dup])
    conflict = rows_of[3 % len(rows_of)]
    add(conflict, "duplicate_id_conflicting", rxnum=prescriptions["rxnum"][conflict],
        quantity=prescriptions["quantity"][conflict] * 2, days_supply=prescriptions["days_supply"][conflict] + 7)
    outside_owner = rx["owner"][rows_of[4 % len(rows_of)]]
    add(rows_of[4 % len(rows_of)], "dispensed_outside_observation",
        dispensed_on=day0[outside_owner] + obs_start[outside_owner] - 30)
    for k in prescriptions:
        prescriptions[k] = np.concatenate([prescriptions[k], np.array([row[k] for row in extra])])

    # follow-ups and diagnoses
    codes, _ = _code_table()
    count = len(follow_ups["owner"])
    order = rng.permutation(count)
    follow_ups = {k: v[order] for k, v in follow_ups.items()}
    fu = {
        "funum": np.arange(1, count + 1, dtype=np.int64),
        "pnum": follow_ups["owner"] + 1,
        "assessed_on": day0[follow_ups["owner"]] + follow_ups["day"],
        "sds_score": follow_ups["sds"], "withdrawal_symptoms": follow_ups["withdrawal"],
        "dependence_assessed": follow_ups["assessed"], "misuse": follow_ups["misuse"],
    }
    bad = minors[min(5, len(minors) - 1)]
    for key, value in (("funum", count + 1), ("pnum", bad + 1), ("assessed_on", day0[bad]), ("sds_score", 22),
                       ("withdrawal_symptoms", 0), ("dependence_assessed", 0), ("misuse", 0)):
        fu[key] = np.append(fu[key], value)
    planted.append({"table": "follow_ups", "id": _fuid(count + 1), "rule": "sds_score_out_of_range"})

    count = len(diagnoses["owner"])
    order = rng.permutation(count)
    diagnoses = {k: v[order] for k, v in diagnoses.items()}
    dxt = {"dxnum": np.arange(1, count + 1, dtype=np.int64), "pnum": diagnoses["owner"] + 1,
           "recorded_on": day0[diagnoses["owner"]] + diagnoses["day"], "code": diagnoses["code"]}
    bad = minors[min(6, len(minors) - 1)]
    for key, value in (("dxnum", count + 1), ("pnum", bad + 1), ("recorded_on", day0[bad]), ("code", len(codes) - 1)):
        dxt[key] = np.append(dxt[key], value)
    planted.append({"table": "diagnoses", "id": _dxid(count + 1), "rule": "malformed_code"})
    return {"persons": persons, "prescriptions": prescriptions, "follow_ups": fu, "diagnoses": dxt}, planted


def _pid(number: int) -> str:
    """Person pseudonym.

    >>> _pid(42)
    'P0000042'
    """
    return f"P{int(number):07d}"


def _rxid(number: int) -> str:
    return f"RX{int(number):09d}"


def _fuid(number: int) -> str:
    return f"FU{int(number):09d}"


def _dxid(number: int) -> str:
    return f"DX{int(number):09d}"


# ----------------------------------------------------------------------------- writing

def _dates(days):
    days = np.asarray(days, dtype=np.int64)
    missing = days == np.iinfo(np.int32).min
    return pa.array(days.astype(np.int32), mask=missing).cast(pa.date32())


def _dictionary(codes, names):
    codes = np.asarray(codes, dtype=np.int32)
    return pa.DictionaryArray.from_arrays(pa.array(codes, mask=codes < 0), pa.array(list(names), pa.string()))


def _nullable_int(values):
    values = np.asarray(values, dtype=np.int64)
    return pa.array(values, mask=values < 0)


def _nullable_bool(values):
    values = np.asarray(values)
    return pa.array(values == 1, mask=values < 0)


def _write(out_dir: Path, fmt: str, tables: dict) -> dict:
    codes, systems = _code_table()
    person, rx, fu, dx = tables["persons"], tables["prescriptions"], tables["follow_ups"], tables["diagnoses"]
    arrow = {
        "persons": pa.table({
            "pnum": person["pnum"], "birth_year": person["birth_year"], "sex": _dictionary(person["sex"], m.SEX_CODES),
            "region": _dictionary(person["region"], m.REGIONS), "observation_start": _dates(person["observation_start"]),
            "observation_end": _dates(person["observation_end"]), "death_date": _dates(person["death_date"]),
        }),
        "prescriptions": pa.table({
            "rxnum": rx["rxnum"], "pnum": rx["pnum"], "dispensed_on": _dates(rx["dispensed_on"]),
            "drug": _dictionary(rx["drug"], m.DRUGS), "strength_mg": rx["strength_mg"], "quantity": rx["quantity"],
            "days_supply": rx["days_supply"],
            "daily_dose_mg": pa.array(rx["daily_dose_mg"], mask=np.isnan(rx["daily_dose_mg"])),
            "indication": _dictionary(rx["indication"], m.INDICATIONS),
            "prescriber": _nullable_int(rx["prescriber"]), "pharmacy": _nullable_int(rx["pharmacy"]),
        }),
        "diagnoses": pa.table({
            "dxnum": dx["dxnum"], "pnum": dx["pnum"], "recorded_on": _dates(dx["recorded_on"]),
            "code": _dictionary(dx["code"], codes), "code_system": _dictionary(dx["code"], systems),
        }),
        "follow_ups": pa.table({
            "funum": fu["funum"], "pnum": fu["pnum"], "assessed_on": _dates(fu["assessed_on"]),
            "sds_score": _nullable_int(fu["sds_score"]), "withdrawal_symptoms": _nullable_bool(fu["withdrawal_symptoms"]),
            "dependence_assessed": _nullable_bool(fu["dependence_assessed"]), "misuse": _nullable_bool(fu["misuse"]),
        }),
    }
    pid = "'P' || lpad(CAST(pnum AS VARCHAR), 7, '0')"
    expressions = {
        "persons": {"person_id": pid},
        "prescriptions": {"prescription_id": "'RX' || lpad(CAST(rxnum AS VARCHAR), 9, '0')", "person_id": pid,
                          "prescriber_id": "'PR' || lpad(CAST(prescriber AS VARCHAR), 5, '0')",
                          "pharmacy_id": "'PH' || lpad(CAST(pharmacy AS VARCHAR), 5, '0')"},
        "diagnoses": {"diagnosis_id": "'DX' || lpad(CAST(dxnum AS VARCHAR), 9, '0')", "person_id": pid},
        "follow_ups": {"follow_up_id": "'FU' || lpad(CAST(funum AS VARCHAR), 9, '0')", "person_id": pid},
    }
    rows = {}
    con = duckdb.connect()
    try:
        for name, table in arrow.items():
            con.register(f"src_{name}", table)
            columns = []
            for column in TABLES[name].columns:
                source = expressions[name].get(column.name, column.name)
                columns.append(f"CAST({source} AS {column.duckdb_type}) AS {column.name}")
            target = out_dir / f"{name}.{fmt}"
            options = "FORMAT csv, HEADER true, DATEFORMAT '%Y-%m-%d'" if fmt == "csv" else "FORMAT parquet, COMPRESSION zstd"
            con.execute(f"COPY (SELECT {', '.join(columns)} FROM src_{name}) TO '{target}' ({options})")
            other = out_dir / f"{name}.{'parquet' if fmt == 'csv' else 'csv'}"
            if other.exists():
                other.unlink()  # one file per table: never leave a stale twin beside it
            rows[name] = table.num_rows
    finally:
        con.close()
    return rows


# ----------------------------------------------------------------------------- truth

def _proportion(mask_dependent, mask, p_model):
    persons = int(mask.sum())
    dependent = int((mask_dependent & mask).sum())
    return {
        "persons": persons,
        "dependent": dependent,
        "proportion": round(dependent / persons, 4) if persons else None,
        "model_expected": round(float(p_model[mask].mean()), 4) if persons else None,
    }


def _truth(seed, n, config, fmt, rows, planted, group, cohort, duration, duration_band, band_labels, split_days,
           dependent, p_dep, ascertained, p_asc, misuse, rx_signal, died, fate, episode_end, uncut_end,
           fixed_defined, ascertained_fixed):
    steps = [
        ("has_clonazepam", "no clonazepam dispensing", "no_clonazepam"),
        ("adult_at_start", "younger than 18 at the first episode's start", "minor"),
        ("prior_observation", "fewer than 365 days of observation before the first episode", "short_prior"),
        ("washout", "another benzodiazepine dispensed in the 365 days before the first episode", "recent_other_benzo"),
        ("no_prior_dependence", "a dependence or withdrawal code before the first episode", "prior_dependence"),
    ]
    attrition = []
    before = n
    for step, reason, name in steps:
        excluded = int((group == m.GROUPS.index(name)).sum())
        attrition.append({"step": step, "reason": reason, "persons_before": before, "excluded": excluded,
                          "persons_after": before - excluded})
        before -= excluded

    def figures(mask):
        return _proportion(dependent, mask, p_dep)

    def complete_case(mask):
        asc = mask & ascertained
        return {"persons": int(asc.sum()), "dependent": int((asc & dependent).sum()),
                "proportion": round(float((asc & dependent).sum() / asc.sum()), 4) if asc.sum() else None}

    gt = duration > split_days
    bands = {}
    for i, label in enumerate(band_labels):
        mask = cohort & (duration_band == i)
        bands[label] = figures(mask) | {
            "ascertained": int((mask & ascertained).sum()),
            "complete_case_proportion": complete_case(mask)["proportion"],
        }
    headline = {}
    for name, mask in (("le_4_weeks", cohort & ~gt), ("gt_4_weeks", cohort & gt)):
        headline[name] = figures(mask) | {"complete_case": complete_case(mask)}
    # estimand (b): among cohort persons whose treatment ended while observed, the same latent
    # dependence (it persists into the days after stopping, where the fixed window looks)
    fixed = cohort & fixed_defined
    headline_fixed = {}
    for name, mask in (("le_4_weeks", fixed & ~gt), ("gt_4_weeks", fixed & gt)):
        asc = mask & ascertained_fixed
        headline_fixed[name] = figures(mask) | {"complete_case": {
            "persons": int(asc.sum()), "dependent": int((asc & dependent).sum()),
            "proportion": round(float((asc & dependent).sum() / asc.sum()), 4) if asc.sum() else None}}
    bands_fixed = {label: figures(fixed & (duration_band == i)) | {"ascertained": int((fixed & ascertained_fixed & (duration_band == i)).sum())}
                   for i, label in enumerate(band_labels)}
    by_misuse = {}
    for label, who in (("supervised", ~misuse), ("misuse", misuse)):
        by_misuse[label] = {
            "all": figures(cohort & who),
            "le_4_weeks": figures(cohort & who & ~gt),
            "gt_4_weeks": figures(cohort & who & gt),
            "bands": {b: figures(cohort & who & (duration_band == i)) for i, b in enumerate(band_labels)},
        }
    cc_gt = headline["gt_4_weeks"]["complete_case"]["proportion"]
    return {
        "synthetic": True,
        "seed": int(seed),
        "persons": int(n),
        "generator_version": m.GENERATOR_VERSION,
        "format": fmt,
        "rows": rows,
        "truth_definitions": TRUTH_DEFINITIONS | {
            "duration_band_lower_days": list(config.estimate.duration_band_lower_days),
            "headline_split_days": split_days,
            "clonazepam_mg_per_10mg_diazepam": config.drugs.mg_equivalent_to_10mg_diazepam.get("clonazepam", 0.5),
        },
        "config": config.to_dict(),
        "model": {"dependence_logit": m.DEPENDENCE_COEF, "ascertainment_logit": m.ASCERTAINMENT_COEF,
                  "ascertainment_min_cell_probability": round(m.min_ascertainment_probability(), 4)},
        "cohort": {"persons": int(cohort.sum()), "attrition": attrition},
        "bands": bands,
        "headline": headline,
        "estimands": {
            "headline": "(a) dependence from episode start to episode end + window_after_end_days",
            "headline_fixed_window": "(b) dependence assessed within fixed_window_days after treatment ends, among "
                                     "persons whose treatment ended while observed",
        },
        "headline_fixed_window": headline_fixed,
        "bands_fixed_window": bands_fixed,
        "by_misuse": by_misuse,
        "cohort_summary": {
            "misuse_share": round(float(misuse[cohort].mean()), 4),
            "rx_misuse_signal_share": round(float(rx_signal[cohort].mean()), 4),
            "rx_misuse_signal_share_among_misusers": round(float(rx_signal[cohort & misuse].mean()), 4),
            "ascertained_share": round(float(ascertained[cohort].mean()), 4),
            "ascertained_fixed_window_share": round(float(ascertained_fixed[cohort & fixed_defined].mean()), 4),
            "fixed_window_defined": int((cohort & fixed_defined).sum()),
            "ascertainment_probability_min": round(float(p_asc[cohort].min()), 4),
            "ascertainment_probability_max": round(float(p_asc[cohort].max()), 4),
            "deaths": int((died & cohort).sum()),
            "deaths_during_episode": int(((fate == 1) & cohort).sum()),
            "episodes_cut_by_observation_end": int(((fate == 0) & (episode_end < uncut_end) & cohort).sum()),
            "complete_case_bias_gt_4_weeks": round(cc_gt - headline["gt_4_weeks"]["proportion"], 4) if cc_gt is not None else None,
        },
        "planted_invalid_rows": planted,
    }
