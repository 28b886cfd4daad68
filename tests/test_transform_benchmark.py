"""The synthetic load-test warehouse (pipeline.transform.benchmark) at a small size:
invariants of the transform on a few thousand persons' worth of irregular fills."""

from __future__ import annotations

from pipeline import transform
from pipeline.config import Config
from pipeline.transform.benchmark import build_synthetic_raw
from pipeline.warehouse import connect


def test_transform_invariants_on_the_synthetic_warehouse():
    con = connect(":memory:")
    build_synthetic_raw(con, 40_000)
    summary = transform.run(con, Config())
    episodes_plain = summary["episodes"]
    # every clonazepam dispensing inside follow-up belongs to exactly one episode
    assert con.execute(
        """
        select (select sum(dispensings) from episodes)
             = (select count(*) from stg_prescriptions rx join stg_persons p using (person_id)
                where rx.drug = 'clonazepam' and rx.dispensed_on <= least(p.observation_end, p.death_date))
        """
    ).fetchall() == [(True,)]
    assert con.execute(
        "select count(*) from episodes where episode_end < episode_start or duration_days < 1"
    ).fetchall() == [(0,)]
    assert summary["cohort"] == summary["outcomes"] == summary["analysis_person"] > 0
    attrition = con.execute("select persons_before, excluded, persons_after from cohort_attrition order by step").fetchall()
    assert all(before - excluded == after for before, excluded, after in attrition)
    assert attrition[-1][2] == summary["cohort"]
    # carried-forward supply only ever lengthens coverage: never more episodes
    stockpiled = transform.run(con, Config().replace(episodes={"stockpiling": True}))
    assert stockpiled["episodes"] <= episodes_plain
