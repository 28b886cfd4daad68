-- Cohort candidates: every person of the extract, per analysed ingredient, with
-- the first episode (censored at death / observation end) and one flag per
-- exclusion criterion, in attrition order. 03b counts them, 03c keeps the eligible.
-- Unit: one person per analysed ingredient ({{ analysed_ingredients }}: the
-- configured ingredients, or 'any_benzodiazepine' at class level); with the
-- default single ingredient every count is a count of persons.
--   {{ min_age_years }} {{ washout_days }} {{ headline_split_days }}

-- A temp table (in memory, spilled beyond [warehouse] memory_limit): 03b and 03c read it,
-- 03c drops it; nothing else needs it written to the warehouse file.
create or replace temp table cohort_candidates as
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
