"""Transform stage on tiny literal fixtures: rows in, the exact expected rows out.

Dates are chosen so the arithmetic can be checked by hand; each case says it.
Conventions under test: docs/episodes.md.
"""

from __future__ import annotations

import datetime as dt
import random

import pytest

from pipeline import transform
from pipeline.config import Config
from pipeline.contract import TABLES
from pipeline.warehouse import connect, ensure_audit_tables

D = dt.date.fromisoformat

PERSON = {
    "birth_year": 1980,
    "sex": "F",
    "region": "north",
    "observation_start": "2015-01-01",
    "observation_end": "2025-12-31",
    "death_date": None,
}
# 0.5 mg x 60 tablets over 30 days = 1 mg/day clonazepam = 20 mg/day diazepam-equivalent
RX = {
    "drug": "clonazepam",
    "strength_mg": 0.5,
    "quantity": 60.0,
    "days_supply": 30,
    "daily_dose_mg": None,
    "indication": "anxiety",
    "prescriber_id": "D1",
    "pharmacy_id": "PH1",
}
DIAGNOSIS = {"code_system": "ICD10"}
FOLLOW_UP = {"sds_score": None, "withdrawal_symptoms": None, "dependence_assessed": None, "misuse": None}


def load(con, table: str, rows: list[dict], defaults: dict, load_id: str = "L1") -> None:
    """raw_<table> with the contract's columns and types + _source_row, _load_id."""
    columns = TABLES[table].columns
    ddl = ", ".join(f"{c.name} {c.duckdb_type}" for c in columns)
    con.execute(f"create or replace table raw_{table} ({ddl}, _source_row BIGINT, _load_id VARCHAR)")
    id_column = TABLES[table].id_column
    records = []
    for number, row in enumerate(rows, start=1):
        full = {**defaults, id_column: f"{table[:2]}{number}", **row}
        assert set(full) <= {c.name for c in columns}, set(full) - {c.name for c in columns}
        records.append([full.get(c.name) for c in columns] + [number, load_id])
    if records:
        con.executemany(f"insert into raw_{table} values ({', '.join('?' * (len(columns) + 2))})", records)


def warehouse(persons=(), prescriptions=(), diagnoses=(), follow_ups=(), quarantine=()):
    con = connect(":memory:")
    ensure_audit_tables(con)
    load(con, "persons", [{**PERSON, **p} for p in persons], {})
    load(con, "prescriptions", list(prescriptions), RX)
    load(con, "diagnoses", list(diagnoses), DIAGNOSIS)
    load(con, "follow_ups", list(follow_ups), FOLLOW_UP)
    for table_name, source_row in quarantine:
        con.execute(
            "insert into audit_quarantine values ('L1', 'validate', ?, NULL, ?, 'rule', 'broke a rule')",
            [table_name, source_row],
        )
    return con


def config(**sections) -> Config:
    base = Config().replace(
        drugs={
            "mg_equivalent_to_10mg_diazepam": {"clonazepam": 0.5, "diazepam": 10.0, "alprazolam": 0.5},
            "labelled_max_daily_mg": {"clonazepam": 20.0, "diazepam": 40.0},
        }
    )
    return base.replace(**sections) if sections else base


def rows(con, query: str) -> list[tuple]:
    return con.execute(query).fetchall()


EPISODE_COLUMNS = "person_id, ingredient, episode_number, episode_start, episode_end, duration_days, dispensings"


def episodes(con, columns: str = EPISODE_COLUMNS) -> list[tuple]:
    return rows(con, f"select {columns} from episodes order by person_id, ingredient, episode_number")


# --------------------------------------------------------------------------- staging


def test_staging_drops_quarantined_rows_and_derives_columns():
    con = warehouse(
        persons=[{"person_id": "P1"}],
        prescriptions=[
            {"person_id": "P1", "dispensed_on": "2024-01-01"},  # missing daily dose: 0.5 * 60 / 30 = 1 mg/day
            {"person_id": "P1", "dispensed_on": "2024-02-01", "daily_dose_mg": 2.0},  # given: kept
            {"person_id": "P1", "dispensed_on": "2024-03-01", "drug": "Zolpidem"},  # not in the table: dde NULL
            {"person_id": "P1", "dispensed_on": "2024-04-01"},  # quarantined by validation
        ],
        diagnoses=[{"person_id": "P1", "recorded_on": "2024-01-05", "code": "f13.20"}],
        quarantine=[("prescriptions", 4), ("persons", 7)],  # persons row 7 does not exist: no effect
    )
    transform.run(con, config())
    assert rows(
        con,
        "select prescription_id, drug, daily_dose_mg, daily_dose_derived, daily_dose_dde_mg, supply_end "
        "from stg_prescriptions order by prescription_id",
    ) == [
        ("pr1", "clonazepam", 1.0, True, 20.0, D("2024-01-30")),
        ("pr2", "clonazepam", 2.0, False, 40.0, D("2024-03-01")),  # 2024 is a leap year
        ("pr3", "zolpidem", 1.0, True, None, D("2024-03-30")),
    ]
    assert rows(con, "select code, code_nodot from stg_diagnoses") == [("f13.20", "F1320")]
    assert rows(con, "select person_id, _source_row, _load_id from stg_persons") == [("P1", 1, "L1")]


# --------------------------------------------------------------------------- episodes


def test_next_dispensing_30_days_after_supply_ends_stays_in_the_episode_31_starts_a_new_one():
    """OHDSI drug_era reading: join when next dispensing - last covered day <= 30."""
    con = warehouse(
        persons=[{"person_id": "P1"}, {"person_id": "P2"}],
        prescriptions=[
            # supply covers 2024-01-01 .. 2024-01-30; 2024-02-29 is 30 days after 01-30: same episode
            {"person_id": "P1", "dispensed_on": "2024-01-01"},
            {"person_id": "P1", "dispensed_on": "2024-02-29"},
            # 2024-03-01 is 31 days after 01-30: a second, later episode
            {"person_id": "P2", "dispensed_on": "2024-01-01"},
            {"person_id": "P2", "dispensed_on": "2024-03-01"},
        ],
    )
    transform.run(con, config())
    assert episodes(con) == [
        ("P1", "clonazepam", 1, D("2024-01-01"), D("2024-03-29"), 89, 2),
        ("P2", "clonazepam", 1, D("2024-01-01"), D("2024-01-30"), 30, 1),
        ("P2", "clonazepam", 2, D("2024-03-01"), D("2024-03-30"), 30, 1),
    ]


def test_persistence_window_is_configurable():
    con = warehouse(
        persons=[{"person_id": "P1"}],
        prescriptions=[
            {"person_id": "P1", "dispensed_on": "2024-01-01"},
            {"person_id": "P1", "dispensed_on": "2024-02-10"},  # 11 days after the last covered day (01-30)
        ],
    )
    transform.run(con, config(episodes={"persistence_window_days": 11}))
    assert len(episodes(con)) == 1
    transform.run(con, config(episodes={"persistence_window_days": 10}))
    assert len(episodes(con)) == 2


OVERLAP = [
    {"person_id": "P1", "dispensed_on": "2024-01-01"},  # covers 01-01 .. 01-30
    {"person_id": "P1", "dispensed_on": "2024-01-21"},  # early: own supply 01-21 .. 02-19; carried 01-31 .. 02-29
    {"person_id": "P1", "dispensed_on": "2024-03-25", "days_supply": 10},
]


def test_overlap_without_stockpiling_is_ohdsi_drug_era():
    con = warehouse(persons=[{"person_id": "P1"}], prescriptions=OVERLAP)
    transform.run(con, config(episodes={"stockpiling": False}))
    # era end = latest supply end (02-19); 03-25 - 02-19 - 1 = 34 days without supply > 30
    assert episodes(con) == [
        ("P1", "clonazepam", 1, D("2024-01-01"), D("2024-02-19"), 50, 2),
        ("P1", "clonazepam", 2, D("2024-03-25"), D("2024-04-03"), 10, 1),
    ]


def test_overlap_with_stockpiling_carries_leftover_supply_forward():
    con = warehouse(persons=[{"person_id": "P1"}], prescriptions=OVERLAP)
    transform.run(con, config(episodes={"stockpiling": True}))
    # the 10 leftover days move the end to 02-29; 03-25 - 02-29 - 1 = 24 days <= 30: one episode,
    # the last fill (dispensed after the carried end) starts on its own date: 03-25 .. 04-03
    assert episodes(con) == [("P1", "clonazepam", 1, D("2024-01-01"), D("2024-04-03"), 94, 3)]


def test_same_day_duplicates_count_twice_and_overlap_unless_stockpiling():
    dispensings = [
        {"person_id": "P1", "dispensed_on": "2024-01-01"},
        {"person_id": "P1", "dispensed_on": "2024-01-01"},
    ]
    con = warehouse(persons=[{"person_id": "P1"}], prescriptions=dispensings)
    transform.run(con, config(episodes={"stockpiling": False}))
    assert episodes(con, EPISODE_COLUMNS + ", days_supplied") == [
        ("P1", "clonazepam", 1, D("2024-01-01"), D("2024-01-30"), 30, 2, 60)
    ]
    transform.run(con, config(episodes={"stockpiling": True}))
    assert episodes(con, EPISODE_COLUMNS + ", days_supplied") == [
        ("P1", "clonazepam", 1, D("2024-01-01"), D("2024-02-29"), 60, 2, 60)
    ]


def test_stockpiling_window_formula_matches_a_day_by_day_carry_forward():
    seed = 20261122
    print(f"seed={seed}")
    generator = random.Random(seed)
    dispensings, day = [], D("2024-01-01")
    for number in range(300):
        day += dt.timedelta(days=generator.choice([0, 3, 10, 20, 25, 30, 45, 70]))
        dispensings.append(
            {"prescription_id": f"rx{number:04d}", "person_id": "P1", "dispensed_on": day.isoformat(),
             "days_supply": generator.choice([7, 14, 30, 60, 90])}
        )
    con = warehouse(persons=[{"person_id": "P1", "observation_end": "2099-12-31"}], prescriptions=dispensings)
    transform.run(con, config(episodes={"stockpiling": True}))

    expected, carried_end = [], None  # reference: the rule as stated, one fill at a time
    for rx in dispensings:
        dispensed = D(rx["dispensed_on"])
        if carried_end is None or (dispensed - carried_end).days > 30:
            expected.append([dispensed, None, 0])
        supply_start = max(dispensed, carried_end + dt.timedelta(days=1)) if carried_end else dispensed
        carried_end = supply_start + dt.timedelta(days=rx["days_supply"] - 1)
        expected[-1][1:] = [carried_end, expected[-1][2] + 1]
    assert rows(con, "select episode_start, episode_end, dispensings from episodes order by episode_start") == [
        tuple(e) for e in expected
    ]


def test_a_switch_of_drug_gives_per_ingredient_episodes_and_one_class_level_episode():
    prescriptions = [
        {"person_id": "P1", "dispensed_on": "2024-01-01"},  # clonazepam 1 mg/day = 20 mg dde
        # switch: diazepam 5 mg x 60 / 30 = 10 mg/day = 10 mg dde
        {"person_id": "P1", "dispensed_on": "2024-02-01", "drug": "diazepam", "strength_mg": 5.0},
    ]
    con = warehouse(persons=[{"person_id": "P1"}], prescriptions=prescriptions)
    transform.run(con, config(drugs={"ingredients": ("clonazepam", "diazepam")}))
    assert episodes(con) == [
        ("P1", "clonazepam", 1, D("2024-01-01"), D("2024-01-30"), 30, 1),
        ("P1", "diazepam", 1, D("2024-02-01"), D("2024-03-01"), 30, 1),
    ]
    transform.run(con, config(drugs={"class_level": True}))
    assert episodes(con, EPISODE_COLUMNS + ", mean_daily_dose_mg, mean_daily_dose_dde_mg, first_daily_dose_mg") == [
        ("P1", "any_benzodiazepine", 1, D("2024-01-01"), D("2024-03-01"), 61, 2, 15.0, 15.0, 20.0),
        ("P1", "clonazepam", 1, D("2024-01-01"), D("2024-01-30"), 30, 1, 1.0, 20.0, 1.0),
    ]
    assert rows(con, "select ingredient from cohort") == [("any_benzodiazepine",)]


def test_episode_is_not_cut_at_observation_end_the_cohort_censors_it():
    """drug_era semantics in episodes; observation end and death censor in the cohort step."""
    con = warehouse(
        persons=[
            {"person_id": "P1", "observation_end": "2024-01-15"},
            {"person_id": "P2", "observation_end": "2024-06-30", "death_date": "2024-01-10"},
            {"person_id": "P3", "observation_end": "2024-01-30"},  # supply ends on the last observed day
        ],
        prescriptions=[
            {"person_id": "P1", "dispensed_on": "2024-01-01"},
            {"person_id": "P1", "dispensed_on": "2024-01-20"},  # after observation end: still extends the era
            {"person_id": "P2", "dispensed_on": "2024-01-01"},
            {"person_id": "P3", "dispensed_on": "2024-01-01"},
        ],
    )
    transform.run(con, config(cohort={"washout_days": 0}))
    assert episodes(con, EPISODE_COLUMNS + ", days_supplied, supply_ending") == [
        ("P1", "clonazepam", 1, D("2024-01-01"), D("2024-02-18"), 49, 2, 60, "abrupt"),
        ("P2", "clonazepam", 1, D("2024-01-01"), D("2024-01-30"), 30, 1, 30, "abrupt"),
        ("P3", "clonazepam", 1, D("2024-01-01"), D("2024-01-30"), 30, 1, 30, "abrupt"),
    ]
    assert rows(con, "select person_id, episode_end, supply_end, duration_days, end_reason, ending from cohort order by 1") == [
        ("P1", D("2024-01-15"), D("2024-02-18"), 15, "observation_end", "ongoing"),
        ("P2", D("2024-01-10"), D("2024-01-30"), 10, "death", "abrupt"),
        ("P3", D("2024-01-30"), D("2024-01-30"), 30, "supply", "abrupt"),
    ]


def test_doses_tolerance_and_taper():
    def fills(person, doses):
        return [
            {"person_id": person, "dispensed_on": (D("2024-01-01") + dt.timedelta(days=30 * i)).isoformat(),
             "daily_dose_mg": dose}
            for i, dose in enumerate(doses)
        ]

    con = warehouse(
        persons=[{"person_id": p} for p in ("P1", "P2", "P3", "P4", "P5")],
        prescriptions=fills("P1", [1.0, 2.0, 2.0, 1.0])  # up then down: taper
        + fills("P2", [1.0, 2.0])  # last step rises: abrupt
        + fills("P3", [2.0, 1.0, 1.0])  # step down and hold: taper
        + fills("P4", [1.0, 1.0, 1.0])  # flat: abrupt
        + fills("P5", [1.0]),  # single dispensing: abrupt
    )
    transform.run(con, config())
    assert rows(
        con,
        "select person_id, dispensings, first_daily_dose_mg, last_daily_dose_mg, max_daily_dose_mg, "
        "mean_daily_dose_mg, cumulative_dose_mg, days_to_first_increase, dose_escalation_ratio, supply_ending "
        "from episodes order by person_id",
    ) == [
        ("P1", 4, 1.0, 1.0, 2.0, 1.5, 180.0, 30, 2.0, "taper"),
        ("P2", 2, 1.0, 2.0, 2.0, 1.5, 90.0, 30, 2.0, "abrupt"),
        ("P3", 3, 2.0, 1.0, 2.0, 4.0 / 3.0, 120.0, None, 1.0, "taper"),
        ("P4", 3, 1.0, 1.0, 1.0, 1.0, 90.0, None, 1.0, "abrupt"),
        ("P5", 1, 1.0, 1.0, 1.0, 1.0, 30.0, None, 1.0, "abrupt"),
    ]


def test_missing_daily_dose_is_derived_and_weighted_by_days_supply():
    con = warehouse(
        persons=[{"person_id": "P1"}],
        prescriptions=[
            {"person_id": "P1", "dispensed_on": "2024-01-01", "days_supply": 10},  # 0.5*60/10 = 3 mg/day, 30 mg
            {"person_id": "P1", "dispensed_on": "2024-01-11", "days_supply": 30, "daily_dose_mg": 1.0},  # 30 mg
        ],
    )
    transform.run(con, config())
    assert episodes(
        con, "mean_daily_dose_mg, max_daily_dose_mg, mean_daily_dose_dde_mg, max_daily_dose_dde_mg, cumulative_dose_mg"
    ) == [(60.0 / 40.0, 3.0, 30.0, 60.0, 60.0)]


@pytest.mark.parametrize(
    "exposure_end, persistence_window_days, era_end_shift",
    [
        # THEMIS end dates (start + days_supply - 1 = supply_end): identical at the default window
        ("supply_end", 30, 0),
        # the era script's own fallback end (start + days_supply) is one day later: window 31, era end = episode_end + 1
        ("dispensed_on + cast(days_supply as integer)", 31, 1),
    ],
)
def test_stockpiling_off_is_ohdsi_drug_era(exposure_end, persistence_window_days, era_end_shift):
    """OHDSI drug_era (30-day padding, start <= max(previous end) + 30) on the same dispensings."""
    seed = 7
    print(f"seed={seed}")
    generator = random.Random(seed)
    dispensings = []
    for person in range(20):
        day = D("2024-01-01")
        for _ in range(15):
            day += dt.timedelta(days=generator.choice([0, 5, 20, 29, 30, 31, 40, 60, 61, 62]))
            dispensings.append({"person_id": f"P{person:02d}", "dispensed_on": day.isoformat(),
                                "days_supply": generator.choice([1, 7, 30, 31, 90])})
    con = warehouse(persons=[{"person_id": f"P{p:02d}", "observation_end": "2099-12-31"} for p in range(20)],
                    prescriptions=dispensings)
    transform.run(con, config(episodes={"persistence_window_days": persistence_window_days}))
    ohdsi = rows(
        con,
        f"""
        with exposures as (
            select person_id, dispensed_on as start_date, {exposure_end} as end_date
            from stg_prescriptions
        ),
        padded as (
            select *, end_date + 30 as padded_end from exposures
        ),
        starts as (
            select *,
                case when max(padded_end) over (partition by person_id order by start_date
                         rows between unbounded preceding and 1 preceding) >= start_date then 0 else 1 end as is_start
            from padded
        ),
        grouped as (
            select *, sum(is_start) over (partition by person_id order by start_date, is_start desc
                                          rows unbounded preceding) as era
            from starts
        )
        select person_id, min(start_date), max(end_date) - {era_end_shift}, count(*)
        from grouped group by person_id, era order by person_id, min(start_date)
        """,
    )
    assert episodes(con, "person_id, episode_start, episode_end, dispensings") == ohdsi
    assert len(ohdsi) > 20  # the fixture does split eras


# --------------------------------------------------------------------------- cohort


def test_cohort_attrition_counts_each_exclusion_step():
    con = warehouse(
        persons=[
            {"person_id": "A"},  # eligible
            {"person_id": "B"},  # no prescription
            {"person_id": "D", "birth_year": 2010},  # 14 at episode start
            {"person_id": "E", "observation_start": "2023-06-01"},  # 214 days of prior observation
            {"person_id": "F"},  # diazepam 122 days before
            {"person_id": "G", "birth_year": 1944, "sex": "M"},  # diazepam 730 days before: still a new user
            {"person_id": "H"},  # only prescription quarantined
        ],
        prescriptions=[
            {"person_id": "A", "dispensed_on": "2024-01-01"},
            {"person_id": "C", "dispensed_on": "2024-01-01"},  # no person record
            {"person_id": "D", "dispensed_on": "2024-01-01"},
            {"person_id": "E", "dispensed_on": "2024-01-01"},
            {"person_id": "F", "dispensed_on": "2023-09-01", "drug": "diazepam", "strength_mg": 5.0},
            {"person_id": "F", "dispensed_on": "2024-01-01"},
            {"person_id": "G", "dispensed_on": "2022-01-01", "drug": "diazepam", "strength_mg": 5.0},
            {"person_id": "G", "dispensed_on": "2024-01-01", "days_supply": 60, "daily_dose_mg": 0.2},
            {"person_id": "G", "dispensed_on": "2024-03-30", "days_supply": 30, "daily_dose_mg": 0.2},
            {"person_id": "H", "dispensed_on": "2024-01-01"},
        ],
        quarantine=[("prescriptions", 10)],
    )
    transform.run(con, config())
    assert rows(con, "select step, persons_before, excluded, persons_after from cohort_attrition order by step") == [
        (1, 8, 2, 6),  # B and H have no episode (8 = 7 person records + C, known only from prescriptions)
        (2, 6, 1, 5),  # C
        (3, 5, 1, 4),  # D
        (4, 4, 1, 3),  # E
        (5, 3, 1, 2),  # F
        (6, 2, 0, 2),  # nobody with a prior dependence code
    ]
    assert rows(con, "select * from cohort order by person_id") == [
        ("A", "clonazepam", D("2024-01-01"), D("2024-01-30"), D("2024-01-30"), "supply", 30, "28-55", "gt_4_weeks", 44, "35-49", "F", "north",
         "anxiety", 20.0, ">=20", "abrupt"),
        # G: 2024-01-01 .. 02-29 then 03-30 .. 04-28 (next fill 30 days after 02-29): 119 days, 4 mg/day dde
        ("G", "clonazepam", D("2024-01-01"), D("2024-04-28"), D("2024-04-28"), "supply", 119, "84-181", "gt_4_weeks", 80, "65+", "M", "north",
         "anxiety", 4.0, "<5", "abrupt"),
    ]


def test_duration_bands_and_headline_split():
    lengths = [13, 14, 27, 28, 29, 55, 56, 84, 181, 182]
    con = warehouse(
        persons=[{"person_id": f"P{n:03d}"} for n in lengths],
        prescriptions=[{"person_id": f"P{n:03d}", "dispensed_on": "2024-01-01", "days_supply": n} for n in lengths],
    )
    transform.run(con, config())
    assert rows(con, "select duration_days, duration_band, headline_group from cohort order by duration_days") == [
        (13, "<14", "le_4_weeks"),
        (14, "14-27", "le_4_weeks"),
        (27, "14-27", "le_4_weeks"),
        (28, "28-55", "le_4_weeks"),
        (29, "28-55", "gt_4_weeks"),
        (55, "28-55", "gt_4_weeks"),
        (56, "56-83", "gt_4_weeks"),
        (84, "84-181", "gt_4_weeks"),
        (181, "84-181", "gt_4_weeks"),
        (182, ">=182", "gt_4_weeks"),
    ]


# --------------------------------------------------------------------------- outcomes

# every person: clonazepam 2024-01-01 .. 2024-01-30; window 2024-01-01 .. 2024-04-29 (end + 90 days)
OUTCOME_PERSONS = [f"O{n}" for n in range(1, 12)]


def outcome_warehouse():
    persons = [{"person_id": p} for p in OUTCOME_PERSONS]
    persons[7]["death_date"] = "2024-03-15"  # O8
    prescriptions = [{"person_id": p, "dispensed_on": "2024-01-01"} for p in OUTCOME_PERSONS if p not in ("O9", "O10", "O11")]
    prescriptions += [
        # O9: three prescribers within 180 days
        {"person_id": "O9", "dispensed_on": "2024-01-01", "prescriber_id": "D1"},
        {"person_id": "O9", "dispensed_on": "2024-01-25", "prescriber_id": "D2"},
        {"person_id": "O9", "dispensed_on": "2024-02-18", "prescriber_id": "D3"},
        # O10: refills after 14 days of a 30-day supply (< 0.75 * 30 = 22.5), twice; 3 pharmacies
        {"person_id": "O10", "dispensed_on": "2024-01-01", "pharmacy_id": "PH1"},
        {"person_id": "O10", "dispensed_on": "2024-01-15", "pharmacy_id": "PH2"},
        {"person_id": "O10", "dispensed_on": "2024-01-29", "pharmacy_id": "PH3"},
        # O11: 25 mg/day clonazepam, above the labelled 20 mg/day
        {"person_id": "O11", "dispensed_on": "2024-01-01", "daily_dose_mg": 25.0},
    ]
    diagnoses = [
        {"person_id": "O1", "recorded_on": "2024-02-15", "code": "F13.20", "code_system": "ICD10CM"},
        {"person_id": "O2", "recorded_on": "2024-03-01", "code": "F13.2", "code_system": "ICD10"},
        {"person_id": "O3", "recorded_on": "2024-01-20", "code": "F13.1", "code_system": "ICD10"},
        {"person_id": "O7", "recorded_on": "2024-01-10", "code": "F41.1", "code_system": "ICD10"},  # anxiety
        {"person_id": "O7", "recorded_on": "2024-04-29", "code": "F13.230", "code_system": "ICD10CM"},  # last day
    ]
    follow_ups = [
        {"person_id": "O4", "assessed_on": "2024-06-01", "sds_score": 10, "withdrawal_symptoms": True},  # outside
        {"person_id": "O5", "assessed_on": "2024-02-01", "sds_score": 7, "withdrawal_symptoms": False, "misuse": True},
        {"person_id": "O6", "assessed_on": "2024-02-01", "sds_score": 6},
        {"person_id": "O6", "assessed_on": "2024-03-01", "dependence_assessed": False},
        {"person_id": "O8", "assessed_on": "2024-03-01", "withdrawal_symptoms": True, "dependence_assessed": True},
    ]
    return warehouse(persons=persons, prescriptions=prescriptions, diagnoses=diagnoses, follow_ups=follow_ups)


def test_outcome_components_and_ascertainment():
    con = outcome_warehouse()
    transform.run(con, config())
    assert rows(
        con,
        "select person_id, window_start, window_end, ascertained, dependence, dep_icd, dep_withdrawal, dep_assessed, "
        "dep_sds, days_to_dependence from outcomes order by person_id",
    ) == [
        ("O1", D("2024-01-01"), D("2024-04-29"), True, True, True, False, False, False, 45),  # ICD-10-CM F13.20
        ("O10", D("2024-01-01"), D("2024-05-27"), False, None, None, None, None, None, None),
        ("O11", D("2024-01-01"), D("2024-04-29"), False, None, None, None, None, None, None),
        ("O2", D("2024-01-01"), D("2024-04-29"), True, True, True, False, False, False, 60),  # 'F13.2' with a dot
        ("O3", D("2024-01-01"), D("2024-04-29"), False, None, None, None, None, None, None),  # F13.1 assesses nothing
        ("O4", D("2024-01-01"), D("2024-04-29"), False, None, None, None, None, None, None),  # follow-up outside
        ("O5", D("2024-01-01"), D("2024-04-29"), True, True, False, False, False, True, 31),  # SDS 7 = cut-off
        ("O6", D("2024-01-01"), D("2024-04-29"), True, False, False, False, False, False, None),  # SDS 6
        ("O7", D("2024-01-01"), D("2024-04-29"), True, True, True, False, False, False, 119),  # on the window's last day
        ("O8", D("2024-01-01"), D("2024-04-29"), True, True, False, True, True, False, 60),
        ("O9", D("2024-01-01"), D("2024-06-16"), False, None, None, None, None, None, None),
    ]


def test_outcome_death_follow_up_and_misuse_signals():
    con = outcome_warehouse()
    transform.run(con, config())
    assert rows(
        con,
        "select person_id, died_in_window, days_to_death, days_followed, rx_many_prescribers, rx_many_pharmacies, "
        "rx_early_refills, rx_high_dose, rx_misuse_signal, documented_misuse, icd_misuse, misuse "
        "from outcomes where person_id in ('O1', 'O3', 'O5', 'O8', 'O9', 'O10', 'O11') order by person_id",
    ) == [
        ("O1", False, None, 119, False, False, False, False, False, False, False, False),
        ("O10", False, None, 147, False, True, True, False, True, False, False, True),
        ("O11", False, None, 119, False, False, False, True, True, False, False, True),
        ("O3", False, None, 119, False, False, False, False, False, False, True, True),
        ("O5", False, None, 119, False, False, False, False, False, True, False, True),
        ("O8", True, 74, 74, False, False, False, False, False, False, False, False),
        ("O9", False, None, 167, True, False, False, False, True, False, False, True),
    ]


def test_analysis_person_is_one_row_per_cohort_person_with_tolerance_columns():
    con = outcome_warehouse()
    summary = transform.run(con, config())
    assert summary["cohort"] == summary["analysis_person"] == summary["outcomes"] == len(OUTCOME_PERSONS)
    assert summary["cohort_ascertained"] == 6 and summary["cohort_dependent"] == 5
    columns = [r[0] for r in rows(con, "select column_name from (describe analysis_person)")]
    for column in ("duration_band", "dependence", "misuse", "days_to_first_increase", "dose_escalation_ratio"):
        assert column in columns
    assert rows(con, "select count(distinct person_id) from analysis_person") == [(len(OUTCOME_PERSONS),)]


def test_output_tables_have_the_documented_columns():
    con = outcome_warehouse()
    transform.run(con, config())
    documented = {
        "episodes": "person_id ingredient episode_number episode_start episode_end duration_days dispensings "
        "days_supplied mean_daily_dose_mg max_daily_dose_mg first_daily_dose_mg last_daily_dose_mg "
        "mean_daily_dose_dde_mg max_daily_dose_dde_mg cumulative_dose_mg days_to_first_increase "
        "dose_escalation_ratio supply_ending indication",
        "cohort_attrition": "step reason persons_before excluded persons_after",
        "cohort": "person_id ingredient episode_start episode_end supply_end end_reason duration_days duration_band "
        "headline_group age_at_start age_band sex region indication mean_daily_dose_dde_mg dose_band ending",
        "outcomes": "person_id ingredient window_start window_end ascertained only_unassessing_records dependence "
        "dep_icd dep_withdrawal dep_assessed dep_sds days_to_dependence fixed_window_start fixed_window_end "
        "fixed_window_defined ascertained_fixed only_unassessing_records_fixed dependence_fixed died_in_window "
        "days_to_death days_followed rx_many_prescribers rx_many_pharmacies rx_early_refills rx_high_dose "
        "rx_misuse_signal documented_misuse icd_misuse misuse",
    }
    for table, names in documented.items():
        assert [r[0] for r in rows(con, f"select column_name from (describe {table})")] == names.split(), table


def test_transform_before_ingest_is_a_stage_order_error():
    from pipeline.errors import StageOrderError

    with pytest.raises(StageOrderError, match="raw_persons"):
        transform.run(connect(":memory:"), config())


# --------------------------------------------------------------------------- issue 14: assessment, incidence, washout


def test_indication_code_on_day_0_and_an_empty_visit_assess_nothing():
    # every person: clonazepam 2024-01-01 .. 01-30; window (a) 2024-01-01 .. 04-29
    con = warehouse(
        persons=[{"person_id": p} for p in ("N1", "N2", "N3", "N4", "N5")],
        prescriptions=[{"person_id": p, "dispensed_on": "2024-01-01"} for p in ("N1", "N2", "N3", "N4", "N5")],
        diagnoses=[
            {"person_id": "N1", "recorded_on": "2024-01-01", "code": "F41.1"},  # the indication, on day 0
            {"person_id": "N3", "recorded_on": "2024-01-01", "code": "F41.1"},
            {"person_id": "N4", "recorded_on": "2024-02-01", "code": "F13.11", "code_system": "ICD10CM"},  # abuse in remission
            {"person_id": "N5", "recorded_on": "2024-02-01", "code": "F13.21", "code_system": "ICD10CM"},  # dependence in remission
        ],
        follow_ups=[
            {"person_id": "N2", "assessed_on": "2024-02-01"},  # every field empty
            {"person_id": "N2", "assessed_on": "2024-02-02", "misuse": False},  # only misuse: not an outcome field
            {"person_id": "N3", "assessed_on": "2024-02-01", "sds_score": 2},  # a real (negative) assessment
        ],
    )
    transform.run(con, config())
    assert rows(
        con,
        "select person_id, ascertained, only_unassessing_records, dependence, dep_icd, icd_misuse from outcomes order by 1",
    ) == [
        ("N1", False, True, None, None, False),  # F41.1 on day 0: not an assessment -> unknown, not negative
        ("N2", False, True, None, None, False),  # empty visits: not an assessment
        ("N3", True, False, False, False, False),
        ("N4", False, True, None, None, True),  # F13.11: misuse role (longest prefix), assesses nothing
        ("N5", True, False, True, True, False),  # F13.21: remission role, dependence was there
    ]
    assert rows(con, "select code_system, code_prefix, role from ref_outcome_code "
                     "where code_prefix in ('F1311', 'F1321') order by all") == [
        ("ICD10", "F1321", "remission"), ("ICD10CM", "F1311", "misuse"), ("ICD10CM", "F1321", "remission"),
    ]


def test_prior_dependence_code_excludes_the_person_as_not_incident():
    con = warehouse(
        persons=[{"person_id": "I1"}, {"person_id": "I2"}, {"person_id": "I3"}],
        prescriptions=[{"person_id": p, "dispensed_on": "2024-01-01"} for p in ("I1", "I2", "I3")],
        diagnoses=[
            {"person_id": "I1", "recorded_on": "2020-05-01", "code": "F13.20", "code_system": "ICD10"},  # years before
            {"person_id": "I2", "recorded_on": "2023-12-31", "code": "F13.1"},  # misuse before: not an exclusion
            {"person_id": "I3", "recorded_on": "2024-01-01", "code": "F13.3"},  # on the start day: an outcome, kept
        ],
    )
    transform.run(con, config())
    assert rows(con, "select step, persons_before, excluded, persons_after from cohort_attrition where step = 6") == [
        (6, 3, 1, 2)
    ]
    assert rows(con, "select person_id, dependence from analysis_person order by 1") == [("I2", None), ("I3", True)]


def test_clorazepate_a_year_before_is_not_a_new_user_whatever_the_equivalence_table():
    con = warehouse(
        persons=[{"person_id": p} for p in ("W1", "W2", "W3", "W4")],
        prescriptions=[
            {"person_id": "W1", "dispensed_on": "2023-01-06", "drug": "clorazepate", "strength_mg": 7.5},  # 360 days before
            {"person_id": "W2", "dispensed_on": "2023-03-01", "drug": "Estazolam", "strength_mg": 1.0},
            {"person_id": "W3", "dispensed_on": "2023-06-01", "drug": "zolpidem", "strength_mg": 10.0},  # not a benzodiazepine
            {"person_id": "W4", "dispensed_on": "2022-12-01", "drug": "flunitrazepam", "strength_mg": 1.0},  # 396 days: outside
            *[{"person_id": p, "dispensed_on": "2024-01-01"} for p in ("W1", "W2", "W3", "W4")],
        ],
    )
    cfg = config()
    assert "clorazepate" not in cfg.drugs.mg_equivalent_to_10mg_diazepam
    transform.run(con, cfg)
    assert rows(con, "select step, excluded from cohort_attrition where step = 5") == [(5, 2)]
    assert rows(con, "select person_id from cohort order by 1") == [("W3",), ("W4",)]
    assert rows(con, "select atc_code, is_benzodiazepine, in_equivalence_table from ref_benzodiazepine "
                     "where drug = 'potassium clorazepate'") == [("N05BA05", True, False)]


def test_fixed_window_is_the_days_after_supply_ends_and_needs_an_observed_end():
    # F1..F5: clonazepam 2024-01-01 .. 01-30; fixed window 01-31 .. 04-29 (90 days); F6's observation ends in the episode
    people = ("F1", "F2", "F3", "F4", "F5", "F6")
    persons = [{"person_id": p} for p in people]
    persons[5]["observation_end"] = "2024-01-20"
    con = warehouse(
        persons=persons,
        prescriptions=[{"person_id": p, "dispensed_on": "2024-01-01"} for p in people],
        follow_ups=[
            {"person_id": "F1", "assessed_on": "2024-01-30", "withdrawal_symptoms": True},  # last day of supply: (a) only
            {"person_id": "F2", "assessed_on": "2024-01-31", "withdrawal_symptoms": True},  # first day after
            {"person_id": "F3", "assessed_on": "2024-04-29", "sds_score": 3},  # day 90 after: assessed, negative
            {"person_id": "F4", "assessed_on": "2024-04-30", "sds_score": 9},  # day 91: outside (b), outside (a)
            {"person_id": "F5", "assessed_on": "2024-02-10"},  # empty visit
            {"person_id": "F6", "assessed_on": "2024-01-10", "dependence_assessed": True},
        ],
    )
    transform.run(con, config(outcome={"fixed_window_days": 90}))
    assert rows(
        con,
        "select person_id, fixed_window_start, fixed_window_end, fixed_window_defined, ascertained_fixed, "
        "only_unassessing_records_fixed, dependence_fixed, ascertained, dependence from outcomes order by 1",
    ) == [
        ("F1", D("2024-01-31"), D("2024-04-29"), True, False, False, None, True, True),
        ("F2", D("2024-01-31"), D("2024-04-29"), True, True, False, True, True, True),
        ("F3", D("2024-01-31"), D("2024-04-29"), True, True, False, False, True, False),
        ("F4", D("2024-01-31"), D("2024-04-29"), True, False, False, None, False, None),
        ("F5", D("2024-01-31"), D("2024-04-29"), True, False, True, None, False, None),
        ("F6", D("2024-01-21"), D("2024-04-19"), False, False, False, None, True, True),  # ended by observation end
    ]


# --------------------------------------------------------------------------- bands and gaps from settings


def test_age_and_dose_bands_follow_the_settings():
    # born 2008: 16 at a 2024 start; 1 mg/day clonazepam = 20 mg/day diazepam-equivalent (RX default)
    people = [{"person_id": "P1", "birth_year": 2008}, {"person_id": "P2", "birth_year": 1950}]
    prescriptions = [{"person_id": p, "dispensed_on": "2024-01-01"} for p in ("P1", "P2")]
    con = warehouse(persons=people, prescriptions=prescriptions)
    transform.run(con, config(cohort={"min_age_years": 16}, estimate={"dose_band_lower_mg": (0, 7.5, 25)}))
    assert rows(con, "select person_id, age_band, dose_band from cohort order by person_id") == [
        ("P1", "16-34", "7.5-24.9"),  # no hard-coded '<18': the first band starts at min_age_years
        ("P2", "65+", "7.5-24.9"),
    ]
    con = warehouse(persons=people, prescriptions=prescriptions)
    transform.run(con, config(estimate={"age_band_lower_years": (40, 60), "dose_band_lower_mg": (0, 20)}))
    assert rows(con, "select person_id, age_band, dose_band from cohort order by person_id") == [
        ("P2", "60+", ">=20"),  # P1 (16) is below min_age_years 18: not in the cohort
    ]


def test_dispensing_gaps_carry_the_gap_and_the_longest_gap_so_far():
    # 30-day fills: covered to Jan 30; next on Mar 1 (gap 31 days), then Mar 31 (gap 1), Jun 1 (gap 33)
    con = warehouse(
        persons=[{"person_id": "P1"}],
        prescriptions=[{"person_id": "P1", "dispensed_on": d} for d in
                       ("2024-01-01", "2024-03-01", "2024-03-31", "2024-06-01")],
    )
    transform.run(con, config())
    assert rows(con, "select dispensed_on, gap_days, longest_gap_days from dispensing_gaps order by dispensed_on") == [
        (D("2024-01-01"), None, None),
        (D("2024-03-01"), 31, 31),
        (D("2024-03-31"), 1, 31),
        (D("2024-06-01"), 33, 33),
    ]
    # the episodes under the 30-day window: a new one at each gap > 30
    assert [e[2] for e in episodes(con)] == [1, 2, 3]


def _random_dispensings(seed: int, persons: int = 40) -> list[dict]:
    """Dispensings with few or several prescribers and pharmacies (some missing), same-day fills and
    gaps around the 180-day misuse window and the 30-day persistence window."""
    rng = random.Random(seed)
    prescriptions = []
    for p in range(persons):
        day = D("2024-01-01")
        pool = rng.choice([["D1"], ["D1", None], ["D1", "D2"], ["D1", "D2", "D3", None]])
        pharmacies = [None if d is None else "PH" + d[1:] for d in pool]
        for _ in range(rng.randint(1, 9)):
            prescriptions.append({"person_id": f"R{p:02d}", "dispensed_on": day.isoformat(),
                                  "days_supply": rng.choice([7, 14, 30]), "prescriber_id": rng.choice(pool),
                                  "pharmacy_id": rng.choice(pharmacies) if rng.random() < 0.8 else None})
            day += dt.timedelta(days=rng.choice([0, 10, 29, 31, 45, 120, 179, 180, 200]))
    return prescriptions


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_recent_prescriber_and_pharmacy_counts_equal_the_framed_distinct_window(seed):
    # 04b runs the framed DISTINCT window only for persons with several prescribers or pharmacies
    # (or some missing); every count must equal the window's over all persons (seed printed by pytest)
    prescriptions = _random_dispensings(seed)
    con = warehouse(persons=[{"person_id": p} for p in sorted({r["person_id"] for r in prescriptions})],
                    prescriptions=prescriptions)
    transform.run(con, config())
    reference = rows(con, """
        select rx.person_id, rx.dispensed_on,
               count(distinct rx.prescriber_id) over recent, count(distinct rx.pharmacy_id) over recent
        from stg_prescriptions as rx inner join cohort on cohort.person_id = rx.person_id
        where rx.dispensed_on >= cohort.episode_start
        window recent as (partition by rx.person_id order by rx.dispensed_on
                          range between to_days(179) preceding and current row)
        order by all""")
    assert len(reference) > 100
    assert {n for *_, n, _ in reference} > {1} and {n for *_, n in reference} > {1}  # both branches ran
    assert rows(con, "select person_id, dispensed_on, recent_prescribers, recent_pharmacies from outcome_dispensings "
                     "order by all") == reference


@pytest.mark.parametrize("seed", [4, 5])
def test_dispensing_gaps_equal_a_fill_by_fill_reference(seed):
    # stockpiling off: the gap is to the latest supply end of the earlier fills (in dispensing order)
    prescriptions = _random_dispensings(seed)
    con = warehouse(persons=[{"person_id": p} for p in sorted({r["person_id"] for r in prescriptions})],
                    prescriptions=prescriptions)
    transform.run(con, config())
    expected = []
    by_person: dict[str, list] = {}
    for number, row in enumerate(prescriptions, start=1):
        by_person.setdefault(row["person_id"], []).append((D(row["dispensed_on"]), f"pr{number}", row["days_supply"]))
    for person, fills in sorted(by_person.items()):
        covered = longest = None
        for seq, (day, prescription_id, supply) in enumerate(sorted(fills), start=1):
            gap = None if covered is None else (day - covered).days
            longest = gap if longest is None else (longest if gap is None else max(longest, gap))
            expected.append((person, prescription_id, seq, gap, longest))
            end = day + dt.timedelta(days=supply - 1)
            covered = end if covered is None else max(covered, end)
    assert rows(con, "select person_id, prescription_id, dispensing_seq, gap_days, longest_gap_days "
                     "from dispensing_gaps order by person_id, dispensing_seq") == expected


def test_stockpiling_carries_both_copies_of_a_repeated_prescription_id_on_one_day():
    # two rows with one prescription_id on Jan 1 (30 days each: carried to Feb 29, 2024 is a leap
    # year), then Mar 5: 5 days after the carried end, one episode Jan 1 .. Apr 3 (the running
    # supply counts row by row, not the two copies at once)
    con = warehouse(
        persons=[{"person_id": "P1"}],
        prescriptions=[{"person_id": "P1", "prescription_id": "rxA", "dispensed_on": "2024-01-01"},
                       {"person_id": "P1", "prescription_id": "rxA", "dispensed_on": "2024-01-01"},
                       {"person_id": "P1", "prescription_id": "rxB", "dispensed_on": "2024-03-05"}],
    )
    transform.run(con, config(episodes={"stockpiling": True}))
    assert rows(con, "select covered_end, gap_days from dispensing_gaps order by dispensing_seq") == [
        (D("2024-01-30"), None), (D("2024-02-29"), -29), (D("2024-04-03"), 5)]
    assert episodes(con, "episode_start, episode_end, dispensings") == [(D("2024-01-01"), D("2024-04-03"), 3)]
