-- New-user cohort: the eligible candidates (03a) with their bands. Bands come
-- from the settings: duration bands (ref_duration_band), age bands starting at
-- cohort.min_age_years (ref_age_band) and dose bands (ref_dose_band, 00b).
--   {{ headline_split_days }}

create or replace table cohort as
with eligible as (
    select *
    from cohort_candidates
    where has_episode and valid_person and adult and prior_observation and no_prior_benzodiazepine
        and no_prior_dependence
),

banded as (
    select eligible.*, band.duration_band, age.age_band, dose.dose_band
    from eligible
    asof left join ref_duration_band as band
        on eligible.duration_days >= band.lower_days
    left join ref_age_band as age
        on eligible.age_at_start >= age.lower_years and eligible.age_at_start < age.upper_years
    left join ref_dose_band as dose
        on eligible.mean_daily_dose_dde_mg >= dose.lower_mg and eligible.mean_daily_dose_dde_mg < dose.upper_mg
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
        age_band,
        sex,
        region,
        indication,
        mean_daily_dose_dde_mg,
        dose_band,
        ending
    from banded
)

select * from final;

drop table cohort_candidates;
