"""The demo extract: deterministic, on contract, invalid rows planted, truth recoverable.

The recovery test re-derives episodes, the cohort, ascertainment and the outcome
from the written files with a small independent SQL reference (the docs/episodes.md
default definitions) and requires an exact match with truth_persons.parquet.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from pipeline.config import load_config
from pipeline.contract import TABLES
from pipeline.demo.generator import generate
from pipeline.errors import PipelineError

SMALL = 2_000
SEED = 20261122
NATIVE_TABLES = ("persons", "prescriptions", "diagnoses", "follow_ups")


@pytest.fixture(scope="module")
def config():
    return load_config()


@pytest.fixture(scope="module")
def small(tmp_path_factory, config):
    out = tmp_path_factory.mktemp("demo_small")
    truth = generate(out, SMALL, SEED, config)
    return out, truth


@pytest.fixture(scope="module")
def default_size(tmp_path_factory, config):
    out = tmp_path_factory.mktemp("demo_20k")
    truth = generate(out, config.demo.persons, config.demo.seed, config, fmt="parquet")
    return out, truth


def _digest(folder: Path, suffix: str) -> dict[str, str]:
    return {t: hashlib.sha256((folder / f"{t}.{suffix}").read_bytes()).hexdigest() for t in NATIVE_TABLES}


def test_same_seed_same_files_different_seed_different(small, tmp_path, config):
    out, truth = small
    again = tmp_path / "again"
    other = tmp_path / "other"
    generate(again, SMALL, SEED, config)
    generate(other, SMALL, SEED + 1, config)
    assert _digest(out, "csv") == _digest(again, "csv")
    assert json.loads((again / "truth.json").read_text())["headline"] == truth["headline"]
    assert _digest(out, "csv")["prescriptions"] != _digest(other, "csv")["prescriptions"]


def test_seed_is_printed_and_logged(tmp_path, config, capsys):
    truth = generate(tmp_path, 300, 7, config)
    assert "seed 7" in capsys.readouterr().out
    assert truth["seed"] == 7 and json.loads((tmp_path / "truth.json").read_text())["seed"] == 7


def test_bad_arguments_are_one_line_errors(tmp_path, config):
    with pytest.raises(PipelineError, match="format"):
        generate(tmp_path, 500, 1, config, fmt="xlsx")
    with pytest.raises(PipelineError, match="persons"):
        generate(tmp_path, 10, 1, config)


def test_tables_follow_the_contract(small):
    out, _ = small
    con = duckdb.connect()
    for name in NATIVE_TABLES:
        header = (out / f"{name}.csv").read_text().splitlines()[0].split(",")
        assert header == TABLES[name].column_names
        typed = con.sql(f"DESCRIBE SELECT * FROM read_csv('{out / name}.csv')").df()
        for column, kind in zip(typed["column_name"], typed["column_type"]):
            expected = TABLES[name].column(column).duckdb_type
            if kind != expected:  # a nullable column may be read as VARCHAR only if all empty; never here
                assert (expected, kind) in {("DOUBLE", "BIGINT")}, (name, column, kind)
    rx = pd.read_csv(out / "prescriptions.csv", dtype=str, keep_default_na=False)
    assert set(rx["drug"]) <= {"clonazepam", "diazepam", "lorazepam", "alprazolam"}
    assert set(rx["indication"]) <= set(TABLES["prescriptions"].column("indication").allowed)
    fu = pd.read_csv(out / "follow_ups.csv", dtype=str, keep_default_na=False)
    assert set(fu["withdrawal_symptoms"]) <= {"true", "false", ""}
    assert rx["dispensed_on"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()


def test_daily_dose_is_consistent_with_strength_quantity_supply(small):
    out, truth = small
    planted = {row["id"] for row in truth["planted_invalid_rows"]}
    rx = pd.read_csv(out / "prescriptions.csv")
    given = rx[~rx["prescription_id"].isin(planted)].dropna(subset=["daily_dose_mg"])
    assert (given["strength_mg"] * given["quantity"] / given["days_supply"] == given["daily_dose_mg"]).all()
    assert rx["daily_dose_mg"].isna().mean() > 0.02


def test_parquet_and_csv_hold_the_same_rows(small, tmp_path, config):
    out, _ = small
    generate(tmp_path, SMALL, SEED, config, fmt="parquet")
    con = duckdb.connect()
    for name in NATIVE_TABLES:
        assert not (tmp_path / f"{name}.csv").exists()
        csv_rows = con.sql(f"SELECT * FROM read_csv('{out / name}.csv') EXCEPT ALL SELECT * FROM '{tmp_path / name}.parquet'").fetchall()
        assert csv_rows == [], name
        kinds = dict(con.sql(f"DESCRIBE SELECT * FROM '{tmp_path / name}.parquet'").fetchall() and
                     [(r[0], r[1]) for r in con.sql(f"DESCRIBE SELECT * FROM '{tmp_path / name}.parquet'").fetchall()])
        assert kinds == {c.name: c.duckdb_type for c in TABLES[name].columns}


def test_planted_invalid_rows_are_present_and_listed(small):
    out, truth = small
    planted = truth["planted_invalid_rows"]
    rules = {row["rule"] for row in planted}
    assert {"days_supply_out_of_range", "quantity_not_positive", "person_not_in_persons", "duplicate_id_exact_copy",
            "duplicate_id_conflicting", "dispensed_outside_observation", "sds_score_out_of_range", "malformed_code",
            "observation_end_before_start"} <= rules
    con = duckdb.connect()
    con.execute(f"CREATE VIEW rx AS SELECT * FROM read_csv('{out}/prescriptions.csv')")
    con.execute(f"CREATE VIEW persons AS SELECT * FROM read_csv('{out}/persons.csv')")
    by_rule = {row["rule"]: row["id"] for row in planted}
    assert con.sql(f"SELECT days_supply FROM rx WHERE prescription_id = '{by_rule['days_supply_out_of_range']}'").fetchall() == [(0,)]
    assert con.sql(f"SELECT quantity < 0 FROM rx WHERE prescription_id = '{by_rule['quantity_not_positive']}'").fetchall() == [(True,)]
    assert con.sql(f"SELECT count(*) FROM rx WHERE prescription_id = '{by_rule['duplicate_id_exact_copy']}'").fetchall()[0][0] == 2
    assert con.sql(f"SELECT count(DISTINCT rx) FROM rx WHERE prescription_id = '{by_rule['duplicate_id_exact_copy']}'").fetchall()[0][0] == 1
    assert con.sql(f"SELECT count(DISTINCT rx) FROM rx WHERE prescription_id = '{by_rule['duplicate_id_conflicting']}'").fetchall()[0][0] == 2
    orphan = con.sql(f"SELECT person_id FROM rx WHERE prescription_id = '{by_rule['person_not_in_persons']}'").fetchall()[0][0]
    assert con.sql(f"SELECT count(*) FROM persons WHERE person_id = '{orphan}'").fetchall()[0][0] == 0
    outside = con.sql(f"""SELECT r.dispensed_on < p.observation_start FROM rx r JOIN persons p USING (person_id)
                          WHERE prescription_id = '{by_rule['dispensed_outside_observation']}'""").fetchall()[0][0]
    assert outside
    bad_person = by_rule["observation_end_before_start"]
    assert con.sql(f"SELECT observation_end < observation_start FROM persons WHERE person_id = '{bad_person}'").fetchall()[0][0]
    assert con.sql(f"SELECT count(*) FROM rx WHERE person_id = '{bad_person}'").fetchall()[0][0] == 0
    fu = pd.read_csv(out / "follow_ups.csv")
    assert fu.loc[fu["follow_up_id"] == by_rule["sds_score_out_of_range"], "sds_score"].tolist() == [22]
    dx = pd.read_csv(out / "diagnoses.csv")
    assert dx.loc[dx["diagnosis_id"] == by_rule["malformed_code"], "code"].tolist() == ["XYZ"]


def test_truth_is_internally_consistent(small):
    out, truth = small
    bands = truth["bands"]
    assert sum(b["persons"] for b in bands.values()) == truth["cohort"]["persons"]
    headline = truth["headline"]
    assert headline["le_4_weeks"]["persons"] + headline["gt_4_weeks"]["persons"] == truth["cohort"]["persons"]
    assert sum(b["dependent"] for b in bands.values()) == headline["le_4_weeks"]["dependent"] + headline["gt_4_weeks"]["dependent"]
    attrition = truth["cohort"]["attrition"]
    assert attrition[0]["persons_before"] == truth["persons"] == SMALL
    assert attrition[-1]["persons_after"] == truth["cohort"]["persons"]
    people = pd.read_parquet(out / "truth_persons.parquet")
    cohort = people[people["in_cohort"]]
    assert len(cohort) == truth["cohort"]["persons"]
    assert cohort.groupby("band")["dependent"].sum().to_dict() == {k: v["dependent"] for k, v in bands.items()}
    for row in truth["config"], truth["truth_definitions"]:
        assert row is not None
    assert truth["truth_definitions"]["persistence_window_days"] == 30
    assert truth["truth_definitions"]["stockpiling"] is False


REFERENCE_SQL = """
CREATE TABLE persons_ok AS SELECT * FROM read_csv('{out}/persons.csv') WHERE observation_end >= observation_start;
CREATE TABLE rx_ok AS
  SELECT r.* FROM read_csv('{out}/prescriptions.csv') r JOIN persons_ok p USING (person_id)
  WHERE r.days_supply BETWEEN 1 AND 365 AND r.quantity > 0
    AND r.dispensed_on BETWEEN p.observation_start AND p.observation_end
    AND r.prescription_id IN (SELECT prescription_id FROM read_csv('{out}/prescriptions.csv') GROUP BY 1 HAVING count(*) = 1);
CREATE TABLE fu_ok AS SELECT * FROM read_csv('{out}/follow_ups.csv') WHERE sds_score IS NULL OR sds_score BETWEEN 0 AND 15;
CREATE TABLE dx_ok AS SELECT *, upper(replace(code, '.', '')) AS code_nodot FROM read_csv('{out}/diagnoses.csv')
  WHERE regexp_full_match(code, '[A-Z][0-9]{{2}}(\\.?[0-9A-Z]{{1,4}})?');
CREATE TABLE first_episode AS
WITH fills AS (
  SELECT person_id, dispensed_on, dispensed_on + CAST(days_supply - 1 AS INTEGER) AS supply_end FROM rx_ok WHERE drug = 'clonazepam'),
running AS (
  SELECT *, max(supply_end) OVER (PARTITION BY person_id ORDER BY dispensed_on, supply_end
                                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS covered_to FROM fills),
flagged AS (
  SELECT *, sum(CASE WHEN covered_to IS NULL OR dispensed_on - covered_to - 1 > 30 THEN 1 ELSE 0 END)
            OVER (PARTITION BY person_id ORDER BY dispensed_on, supply_end ROWS UNBOUNDED PRECEDING) AS episode FROM running),
final AS (SELECT person_id, min(dispensed_on) AS episode_start, max(supply_end) AS supply_end FROM flagged WHERE episode = 1 GROUP BY 1)
SELECT f.person_id, f.episode_start,
       least(f.supply_end, p.observation_end, coalesce(p.death_date, p.observation_end)) AS episode_end,
       year(f.episode_start) - p.birth_year AS age,
       f.episode_start - p.observation_start AS prior_days,
       f.supply_end <= p.observation_end AND (p.death_date IS NULL OR p.death_date > f.supply_end) AS ended_while_observed
FROM final f JOIN persons_ok p USING (person_id);
CREATE TABLE outcome_dx AS
  SELECT *, (code_system = 'ICD10' AND (code_nodot LIKE 'F132%' OR code_nodot LIKE 'F133%' OR code_nodot LIKE 'F134%'))
         OR (code_system = 'ICD10CM' AND (code_nodot LIKE 'F132%' OR code_nodot LIKE 'F1313%' OR code_nodot LIKE 'F1393%'))
         AS is_outcome
  FROM dx_ok;
CREATE TABLE assessing AS
  SELECT person_id, assessed_on AS day, coalesce(withdrawal_symptoms OR dependence_assessed OR sds_score >= 7, false) AS positive
  FROM fu_ok WHERE sds_score IS NOT NULL OR withdrawal_symptoms IS NOT NULL OR dependence_assessed IS NOT NULL
  UNION ALL
  SELECT person_id, recorded_on, true FROM outcome_dx WHERE is_outcome;
CREATE TABLE reference AS
SELECT e.person_id, e.episode_end - e.episode_start + 1 AS duration_days,
       e.age >= 18 AND e.prior_days >= 365 AND NOT EXISTS (
         SELECT 1 FROM rx_ok r WHERE r.person_id = e.person_id
           AND r.dispensed_on >= e.episode_start - 365 AND r.dispensed_on < e.episode_start)
       AND NOT EXISTS (SELECT 1 FROM outcome_dx d WHERE d.person_id = e.person_id AND d.is_outcome
                         AND d.recorded_on < e.episode_start) AS in_cohort,
       EXISTS (SELECT 1 FROM assessing a WHERE a.person_id = e.person_id
                 AND a.day BETWEEN e.episode_start AND e.episode_end + 90) AS ascertained,
       EXISTS (SELECT 1 FROM assessing a WHERE a.person_id = e.person_id AND a.positive
                 AND a.day BETWEEN e.episode_start AND e.episode_end + 90) AS evidence,
       e.ended_while_observed AS fixed_window_defined,
       e.ended_while_observed AND EXISTS (SELECT 1 FROM assessing a WHERE a.person_id = e.person_id
                 AND a.day BETWEEN e.episode_end + 1 AND e.episode_end + 90) AS ascertained_fixed,
       e.ended_while_observed AND EXISTS (SELECT 1 FROM assessing a WHERE a.person_id = e.person_id AND a.positive
                 AND a.day BETWEEN e.episode_end + 1 AND e.episode_end + 90) AS evidence_fixed
FROM first_episode e;
"""


def test_truth_is_recoverable_from_the_files(small):
    """Episodes, cohort, ascertainment and outcome under the default definitions match the truth exactly."""
    out, truth = small
    con = duckdb.connect()
    con.execute(REFERENCE_SQL.format(out=out))
    reference = con.sql("SELECT * FROM reference ORDER BY person_id").df().set_index("person_id")
    people = pd.read_parquet(out / "truth_persons.parquet").set_index("person_id").loc[reference.index]
    # planted invalid rows hang on minors only; quarantining both copies of a duplicated id may change
    # such a person's episode, never the cohort's
    touched = con.execute(f"""SELECT DISTINCT person_id FROM read_csv('{out}/prescriptions.csv')
                              WHERE prescription_id IN (SELECT unnest(?))""", [[r["id"] for r in truth["planted_invalid_rows"]]]).fetchall()
    assert not people.loc[people.index.isin([t[0] for t in touched]), "in_cohort"].any()
    keep = ~reference.index.isin([t[0] for t in touched])
    reference, people = reference[keep], people[keep]
    assert (reference["duration_days"].to_numpy() == people["duration_days"].to_numpy()).all()
    assert (reference["in_cohort"].to_numpy() == people["in_cohort"].to_numpy()).all()
    assert (reference["ascertained"].to_numpy() == people["ascertained"].to_numpy()).all()
    observed = people["ascertained"].to_numpy()
    assert (reference["evidence"].to_numpy()[observed] == people["dependent"].to_numpy()[observed]).all()
    assert not reference["evidence"].to_numpy()[~observed].any()
    # estimand (b): the fixed window after treatment ends
    assert (reference["fixed_window_defined"].to_numpy() == people["fixed_window_defined"].to_numpy()).all()
    assert (reference["ascertained_fixed"].to_numpy() == people["ascertained_fixed"].to_numpy()).all()
    fixed = people["ascertained_fixed"].to_numpy()
    assert (reference["evidence_fixed"].to_numpy()[fixed] == people["dependent"].to_numpy()[fixed]).all()
    assert not reference["evidence_fixed"].to_numpy()[~fixed].any()
    assert int(reference["in_cohort"].sum()) == truth["cohort"]["persons"]


def test_every_dated_row_is_inside_observation_except_planted(small):
    out, truth = small
    planted = {row["id"] for row in truth["planted_invalid_rows"]}
    con = duckdb.connect()
    for table, date, key in (("prescriptions", "dispensed_on", "prescription_id"), ("follow_ups", "assessed_on", "follow_up_id"),
                             ("diagnoses", "recorded_on", "diagnosis_id")):
        bad = con.sql(f"""SELECT t.{key} FROM read_csv('{out}/{table}.csv') t JOIN read_csv('{out}/persons.csv') p USING (person_id)
                          WHERE t.{date} < p.observation_start OR t.{date} > p.observation_end""").fetchall()
        assert {b[0] for b in bad} <= planted, table


def test_every_band_is_populated_and_calibrated_at_default_size(default_size):
    _, truth = default_size
    assert all(band["persons"] >= 500 for band in truth["bands"].values())
    supervised = truth["by_misuse"]["supervised"]
    assert supervised["gt_4_weeks"]["proportion"] == pytest.approx(0.33, abs=0.03)
    assert 0.02 <= supervised["bands"]["<14"]["proportion"] <= 0.07
    assert 0.17 <= supervised["bands"]["28-55"]["proportion"] <= 0.27
    assert 0.43 <= supervised["bands"][">=182"]["proportion"] <= 0.57
    assert 0.55 <= truth["by_misuse"]["misuse"]["gt_4_weeks"]["proportion"] <= 0.80
    assert 0.33 <= truth["headline"]["gt_4_weeks"]["proportion"] <= 0.42
    summary = truth["cohort_summary"]
    assert 0.58 <= summary["ascertained_share"] <= 0.72
    assert summary["ascertainment_probability_min"] >= 0.2
    assert abs(summary["complete_case_bias_gt_4_weeks"]) >= 0.02
    assert 0.10 <= summary["misuse_share"] <= 0.18


SIGNAL_SQL = """
WITH fills AS (
  SELECT r.person_id, r.dispensed_on, r.days_supply, r.prescriber_id, r.pharmacy_id,
         coalesce(r.daily_dose_mg, r.strength_mg * r.quantity / r.days_supply) AS daily_dose_mg
  FROM rx_ok r JOIN first_episode e ON r.person_id = e.person_id AND r.drug = 'clonazepam'
   AND r.dispensed_on BETWEEN e.episode_start AND e.episode_end),
lagged AS (
  SELECT *, dispensed_on - lag(dispensed_on) OVER w AS days_since_previous, lag(days_supply) OVER w AS previous_supply
  FROM fills WINDOW w AS (PARTITION BY person_id ORDER BY dispensed_on)),
final AS (
  SELECT person_id,
         count(DISTINCT prescriber_id) >= 3 OR count(DISTINCT pharmacy_id) >= 3
         OR sum(CASE WHEN days_since_previous < 0.75 * previous_supply THEN 1 ELSE 0 END) >= 2
         OR max(daily_dose_mg) > 20 AS rx_misuse_signal
  FROM lagged GROUP BY person_id)
SELECT * FROM final ORDER BY person_id
"""


def test_prescription_misuse_signals_are_recoverable(small):
    """The observable misuse signal the ascertainment model uses is what the records show (docs/episodes.md rules)."""
    out, _ = small
    con = duckdb.connect()
    con.execute(REFERENCE_SQL.format(out=out))
    signals = con.sql(SIGNAL_SQL).df().set_index("person_id")
    people = pd.read_parquet(out / "truth_persons.parquet").set_index("person_id")
    cohort = people[people["in_cohort"]]
    assert (signals.loc[cohort.index, "rx_misuse_signal"].to_numpy() == cohort["rx_misuse_signal"].to_numpy()).all()
    assert cohort["rx_misuse_signal"].sum() > 50


def test_records_that_assess_nothing_are_in_the_windows(small):
    """The issue-14 trap: indication codes on day 0 and empty visits inside the window of persons not assessed."""
    out, _ = small
    con = duckdb.connect()
    con.execute(REFERENCE_SQL.format(out=out))
    people = pd.read_parquet(out / "truth_persons.parquet")
    con.register("people", people)
    day0_codes = con.sql("""SELECT count(*) FROM dx_ok d JOIN first_episode e USING (person_id)
                            WHERE d.recorded_on = e.episode_start AND NOT d.code_nodot LIKE 'F13%'""").fetchall()[0][0]
    assert day0_codes > 0.5 * len(people)
    assert set(con.sql("SELECT DISTINCT code FROM dx_ok WHERE code IN ('F41.1', 'F41.0', 'G40.9', 'G47.0')").df()["code"]) == {
        "F41.1", "F41.0", "G40.9", "G47.0"}
    unassessed_with_records = con.sql("""
        SELECT count(DISTINCT p.person_id) FROM people p JOIN first_episode e USING (person_id)
        JOIN fu_ok f ON f.person_id = p.person_id AND f.assessed_on BETWEEN e.episode_start AND e.episode_end + 90
        WHERE p.in_cohort AND NOT p.ascertained AND f.sds_score IS NULL AND f.withdrawal_symptoms IS NULL
          AND f.dependence_assessed IS NULL""").fetchall()[0][0]
    assert unassessed_with_records > 50


def test_prior_dependence_group_has_a_code_before_day_0_and_is_excluded(small):
    out, truth = small
    steps = {row["step"]: row for row in truth["cohort"]["attrition"]}
    assert steps["no_prior_dependence"]["excluded"] >= 8
    people = pd.read_parquet(out / "truth_persons.parquet")
    assert not people.loc[people["exclusion"] == "prior_dependence", "in_cohort"].any()


def test_fixed_window_truth_is_carried(small):
    _, truth = small
    for group in ("le_4_weeks", "gt_4_weeks"):
        fixed, full = truth["headline_fixed_window"][group], truth["headline"][group]
        assert 0 < fixed["persons"] < full["persons"]
        assert fixed["complete_case"]["persons"] <= fixed["persons"]
