-- The estimators' only input: cohort + outcomes + the first episode's
-- tolerance and exposure columns, one row per cohort person (per ingredient).

create or replace table analysis_person as
with first_episodes as (
    select
        person_id,
        ingredient,
        dispensings,
        days_supplied,
        mean_daily_dose_mg,
        max_daily_dose_mg,
        max_daily_dose_dde_mg,
        cumulative_dose_mg,
        days_to_first_increase,
        dose_escalation_ratio
    from episodes
    where episode_number = 1
),

final as (
    select
        cohort.*,
        outcomes.* exclude (person_id, ingredient),
        first_episodes.* exclude (person_id, ingredient)
    from cohort
    inner join outcomes
        on outcomes.person_id = cohort.person_id and outcomes.ingredient = cohort.ingredient
    inner join first_episodes
        on first_episodes.person_id = cohort.person_id and first_episodes.ingredient = cohort.ingredient
)

select * from final;
