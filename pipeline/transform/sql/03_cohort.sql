-- New-user cohort and its attrition table.
-- Unit: one person per analysed ingredient ({{ analysed_ingredients }}: the
-- configured ingredients, or 'any_benzodiazepine' at class level); with the
-- default single ingredient every count is a count of persons.
--   {{ min_age_years }} {{ washout_days }} {{ headline_split_days }}

create or replace table cohort_candidates as
with analysed as (
    select unnest({{ analysed_ingredients }}) as ingredient
),

extract_persons as (
    select person_id from stg_persons
    union
    select person_id from stg_prescriptions
),

base as (
    select extract_persons.person_id, analysed.ingredient
    from extract_persons
    cross join analysed
),

first_episodes as (
    -- the first episode, censored here (episodes are not): it ends at the end
    -- of supply, at death or at observation end, whichever comes first
    select
        episodes.*,
        least(persons.observation_end, persons.death_date) as follow_up_end,
        case
            when persons.death_date <= episodes.episode_end then 'death'
            when persons.observation_end < episodes.episode_end then 'observation_end'
            else 'supply'
        end as end_reason,
        least(episodes.episode_end, persons.observation_end, persons.death_date) as observed_end
    from episodes
    left join stg_persons as persons on persons.person_id = episodes.person_id
    where episodes.episode_number = 1 and list_contains({{ analysed_ingredients }}, episodes.ingredient)
),

prior_benzodiazepine as (
    -- any benzodiazepine (ATC N05BA, N05CD, N03AE01, or a drug of the
    -- equivalence table) dispensed in the washout days before the episode start
    select distinct first_episodes.person_id, first_episodes.ingredient
    from first_episodes
    inner join stg_prescriptions as rx
        on rx.person_id = first_episodes.person_id
        and rx.dispensed_on < first_episodes.episode_start
        and rx.dispensed_on >= first_episodes.episode_start - cast({{ washout_days }} as integer)
    inner join ref_benzodiazepine as ref
        on ref.drug = rx.drug and ref.is_benzodiazepine
),

prior_dependence as (
    -- a dependence, withdrawal or remission code (ref_outcome_code) on any day
    -- before the episode start: a prevalent case, not a new one
    select distinct first_episodes.person_id, first_episodes.ingredient
    from first_episodes
    inner join stg_diagnosis_roles as dx
        on dx.person_id = first_episodes.person_id
        and dx.is_outcome
        and dx.recorded_on < first_episodes.episode_start
),

final as (
    select
        base.person_id,
        base.ingredient,
        first_episodes.episode_start,
        first_episodes.observed_end as episode_end,
        first_episodes.episode_end as supply_end,
        (first_episodes.observed_end - first_episodes.episode_start + 1)::integer as duration_days,
        first_episodes.end_reason,
        first_episodes.indication,
        first_episodes.mean_daily_dose_dde_mg,
        case when first_episodes.end_reason = 'observation_end' then 'ongoing' else first_episodes.supply_ending end
            as ending,
        persons.sex,
        persons.region,
        persons.birth_year,
        persons.observation_start,
        year(first_episodes.episode_start) - persons.birth_year as age_at_start,
        -- exclusion flags, in attrition order
        first_episodes.person_id is not null as has_episode,
        persons.person_id is not null and persons.birth_year is not null
            and persons.observation_start is not null
            and first_episodes.episode_start <= coalesce(first_episodes.follow_up_end, first_episodes.episode_start)
            as valid_person,
        year(first_episodes.episode_start) - persons.birth_year >= {{ min_age_years }} as adult,
        first_episodes.episode_start - persons.observation_start >= {{ washout_days }} as prior_observation,
        prior_benzodiazepine.person_id is null as no_prior_benzodiazepine,
        prior_dependence.person_id is null as no_prior_dependence
    from base
    left join first_episodes
        on first_episodes.person_id = base.person_id and first_episodes.ingredient = base.ingredient
    left join stg_persons as persons on persons.person_id = base.person_id
    left join prior_benzodiazepine
        on prior_benzodiazepine.person_id = base.person_id
        and prior_benzodiazepine.ingredient = base.ingredient
    left join prior_dependence
        on prior_dependence.person_id = base.person_id
        and prior_dependence.ingredient = base.ingredient
)

select * from final;


create or replace table cohort_attrition as
with steps as (
    select * from (values
        (1, 'has_episode', 'first episode of the drug (persons in the extract without one excluded)'),
        (2, 'valid_person', 'person record present with birth year and observation start, first episode starting before observation end and death'),
        (3, 'adult', 'age >= {{ min_age_years }} at episode start (year of start - birth year)'),
        (4, 'prior_observation', '>= {{ washout_days }} days of observation before episode start'),
        (5, 'no_prior_benzodiazepine', 'no benzodiazepine of any kind (ATC N05BA, N05CD, N03AE01) dispensed in the {{ washout_days }} days before episode start'),
        (6, 'no_prior_dependence', 'no dependence, withdrawal or remission code before episode start (incident outcomes only)')
    ) as t(step, criterion, reason)
),

remaining as (
    -- persons still in after each step: all earlier criteria hold
    select
        count(*) as step_0,
        count(*) filter (where has_episode) as step_1,
        count(*) filter (where has_episode and valid_person) as step_2,
        count(*) filter (where has_episode and valid_person and adult) as step_3,
        count(*) filter (where has_episode and valid_person and adult and prior_observation) as step_4,
        count(*) filter (where has_episode and valid_person and adult and prior_observation
                         and no_prior_benzodiazepine) as step_5,
        count(*) filter (where has_episode and valid_person and adult and prior_observation
                         and no_prior_benzodiazepine and no_prior_dependence) as step_6
    from cohort_candidates
),

long as (
    select step_name, persons from remaining
    unpivot (persons for step_name in (step_0, step_1, step_2, step_3, step_4, step_5, step_6))
),

counted as (
    select
        steps.step,
        steps.reason,
        before.persons as persons_before,
        after.persons as persons_after
    from steps
    inner join long as before on before.step_name = 'step_' || (steps.step - 1)
    inner join long as after on after.step_name = 'step_' || steps.step
),

final as (
    select
        step::integer as step,
        reason,
        persons_before::bigint as persons_before,
        (persons_before - persons_after)::bigint as excluded,
        persons_after::bigint as persons_after
    from counted
    order by step
)

select * from final;


create or replace table cohort as
with eligible as (
    select *
    from cohort_candidates
    where has_episode and valid_person and adult and prior_observation and no_prior_benzodiazepine
        and no_prior_dependence
),

banded as (
    select eligible.*, band.duration_band
    from eligible
    asof left join ref_duration_band as band
        on eligible.duration_days >= band.lower_days
),

final as (
    select
        person_id,
        ingredient,
        episode_start,
        episode_end,
        supply_end,
        end_reason,
        duration_days,
        duration_band,
        case when duration_days <= {{ headline_split_days }} then 'le_4_weeks' else 'gt_4_weeks' end
            as headline_group,
        age_at_start::integer as age_at_start,
        case
            when age_at_start < 18 then '<18'
            when age_at_start < 35 then '18-34'
            when age_at_start < 50 then '35-49'
            when age_at_start < 65 then '50-64'
            else '65+'
        end as age_band,
        sex,
        region,
        indication,
        mean_daily_dose_dde_mg,
        -- diazepam-equivalent mg/day; long-term therapeutic users average
        -- 15 mg/day (Busto 1989), so 10-19.9 is the usual therapeutic band
        case
            when mean_daily_dose_dde_mg is null then null
            when mean_daily_dose_dde_mg < 5 then '<5'
            when mean_daily_dose_dde_mg < 10 then '5-9.9'
            when mean_daily_dose_dde_mg < 20 then '10-19.9'
            else '>=20'
        end as dose_band,
        ending
    from banded
)

select * from final;

drop table cohort_candidates;
