-- New-user cohort: the eligible candidates (03a) with their bands. Bands come
-- from the settings (pipeline.transform.age_bands / dose_bands): duration bands
-- (ref_duration_band), age bands starting at cohort.min_age_years, dose bands of
-- estimate.dose_band_lower_mg; each band row is (lower bound or NULL for open
-- below, upper bound or NULL for open above, label).
--   {{ headline_split_days }}

create or replace table cohort as
with eligible as (
    select *
    from cohort_candidates
    where has_episode and valid_person and adult and prior_observation and no_prior_benzodiazepine
        and no_prior_dependence
),

age_bands as (
    select cast(lower_years as integer) as lower_years, cast(upper_years as integer) as upper_years, age_band
    from ({{ age_band_rows }}) as t(lower_years, upper_years, age_band)
),

dose_bands as (
    -- diazepam-equivalent mg/day; long-term therapeutic users average
    -- 15 mg/day (Busto 1989), so 10-19.9 is the usual therapeutic band
    select cast(lower_mg as double) as lower_mg, cast(upper_mg as double) as upper_mg, dose_band
    from ({{ dose_band_rows }}) as t(lower_mg, upper_mg, dose_band)
),

banded as (
    select eligible.*, band.duration_band, age_bands.age_band, dose_bands.dose_band
    from eligible
    asof left join ref_duration_band as band
        on eligible.duration_days >= band.lower_days
    left join age_bands
        on (age_bands.lower_years is null or eligible.age_at_start >= age_bands.lower_years)
        and (age_bands.upper_years is null or eligible.age_at_start < age_bands.upper_years)
    left join dose_bands
        on (dose_bands.lower_mg is null or eligible.mean_daily_dose_dde_mg >= dose_bands.lower_mg)
        and (dose_bands.upper_mg is null or eligible.mean_daily_dose_dde_mg < dose_bands.upper_mg)
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
