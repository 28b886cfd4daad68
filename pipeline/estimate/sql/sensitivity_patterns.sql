-- Sensitivity analyses: the headline's covariate patterns of every variant
-- (one setting varied at a time), from the transform's tables in one query --
-- no rebuild of analysis_person. The cohort does not depend on the varied
-- settings (its criteria use the first dispensing, the person and the washout,
-- never the episode's end), so each variant is the same persons with
--  - persistence window: the first episode's end and dose under that window,
--    from dispensing_gaps (02a): the first episode is the dispensings before
--    the first gap longer than the window (longest_gap_days <= window);
--  - window after end: the outcome window's end;
--  - SDS cut-off: which SDS scores count as dependence evidence.
-- Outcomes from ONE pass over outcome_records (04a) and outcome_dispensings
-- (04b): the first day each kind of evidence or signal appears from the
-- episode start (the first SDS score at or above each cut-off as one column
-- per cut-off), compared with each variant's window end.
-- Join order (for 10M+ prescriptions): everything is joined per person, or per
-- person x persistence window; the person x variant rows are only made by
-- joining those to the handful of variants (on the window) and grouped at once.
--   {{ variant_rows }}  (variant, persistence_window_days, window_after_end_days, sds_cutoff)
--   {{ headline_split_days }}
--   {{ distinct_prescribers }} {{ distinct_pharmacies }} {{ early_refills }}
--   anchor_flags / anchor_flag_names: the anchors' duration flags (pipeline.estimate.aggregate.anchor_flags)
--   sds_first_columns / first_sds_on: the first day of an SDS score >= each cut-off, and the variant's one
-- Columns and normalisation as pipeline.estimate.aggregate.patterns, plus
-- variant; columns the headline does not use are NULL or false.

with variants as (
    select
        cast(variant as integer) as variant,
        cast(persistence_window_days as integer) as persistence_window_days,
        cast(window_after_end_days as integer) as window_after_end_days,
        cast(sds_cutoff as integer) as sds_cutoff
    from ({{ variant_rows }}) as t(variant, persistence_window_days, window_after_end_days, sds_cutoff)
),

persistence_windows as (
    -- the distinct persistence windows of the variants, numbered as the per-window columns below
    select cast(window_index as integer) as window_index, cast(persistence_window_days as integer) as persistence_window_days
    from ({{ window_rows }}) as t(window_index, persistence_window_days)
),

duration_bands as (
    -- the duration bands as intervals (ref_duration_band holds the lower bounds): a range join over a
    -- handful of rows (a block nested-loop join) costs a fraction of an ASOF or merge join at millions of
    -- person x window rows
    -- (the last band's upper end is the integer range's end, as the open ends of ref_age_band)
    select lower_days, coalesce(lead(lower_days) over (order by lower_days), 2147483647) as upper_days, duration_band
    from ref_duration_band
),

gap_windows as (
    -- the first episode under each persistence window, per person in ONE pass over dispensing_gaps
    -- (02a): the first episode is the dispensings before the first gap longer than the window
    -- (longest_gap_days <= window); per window i: gap_rows_i, supply_end_i, mean_dose_i
    select
        person_id,
        ingredient,
        {{ window_columns }}
    from dispensing_gaps
    where longest_gap_days is null or longest_gap_days <= {{ longest_window }}  -- later episodes: in none
    group by person_id, ingredient
),

record_firsts as (
    select
        person_id,
        ingredient,
        min(recorded_on) filter (where assesses) as first_assessed_on,
        min(recorded_on) filter (where dependence_evidence_without_sds) as first_evidence_without_sds_on,
        {{ sds_first_columns }}
    from outcome_records
    group by person_id, ingredient
),

numbered_early_refills as (
    select
        person_id,
        ingredient,
        dispensed_on,
        row_number() over (partition by person_id, ingredient order by dispensed_on) as early_refill_number
    from outcome_dispensings
    where early_refill
),

dispensing_firsts as (
    select
        person_id,
        ingredient,
        min(dispensed_on) filter (where recent_prescribers >= {{ distinct_prescribers }}) as first_many_prescribers_on,
        min(dispensed_on) filter (where recent_pharmacies >= {{ distinct_pharmacies }}) as first_many_pharmacies_on,
        min(dispensed_on) filter (where high_dose) as first_high_dose_on
    from outcome_dispensings
    group by person_id, ingredient
),

early_refills_reached as (
    -- the day the count of early refills reaches the threshold
    select person_id, ingredient, dispensed_on as early_refills_reached_on
    from numbered_early_refills
    where early_refill_number = {{ early_refills }}
),

person_firsts as materialized (
    -- per cohort person: what no variant changes, and the first day of each kind of evidence
    select
        person_id,
        ingredient,
        cohort.episode_start,
        cohort.age_band,
        cohort.sex,
        cohort.indication,
        persons.death_date,
        record_firsts.first_assessed_on,
        record_firsts.first_evidence_without_sds_on,
        dispensing_firsts.first_many_prescribers_on,
        dispensing_firsts.first_many_pharmacies_on,
        dispensing_firsts.first_high_dose_on,
        early_refills_reached.early_refills_reached_on,
        record_firsts.* exclude (person_id, ingredient, first_assessed_on, first_evidence_without_sds_on),
        gap_windows.* exclude (person_id, ingredient),
        persons.observation_end
    from cohort
    inner join stg_persons as persons using (person_id)
    inner join gap_windows using (person_id, ingredient)
    left join record_firsts using (person_id, ingredient)
    left join dispensing_firsts using (person_id, ingredient)
    left join early_refills_reached using (person_id, ingredient)
),

person_windows as (
    -- per person and persistence window (no join on persons below): what the window decides --
    -- the first episode's end (censored as in 03a), duration, bands and headline group
    select
        person_firsts.*,
        windows.persistence_window_days,
        ended.episode_end,
        ended.duration_days,
        band.duration_band,
        case when ended.duration_days <= {{ headline_split_days }} then 'le_4_weeks' else 'gt_4_weeks' end
            as headline_group,
        dose.dose_band
    from person_firsts
    cross join persistence_windows as windows
    cross join lateral (
        select
            {{ window_choice }}
    ) as chosen
    cross join lateral (
        select
            least(chosen.supply_end, person_firsts.observation_end, person_firsts.death_date) as episode_end,
            -- date_diff, not date - date: the days are explicit on every engine (on Spark, date - date
            -- is an interval, and the lateral subquery's types are not known to the transpiler)
            (date_diff('day', person_firsts.episode_start,
                least(chosen.supply_end, person_firsts.observation_end, person_firsts.death_date)) + 1)::integer
                as duration_days
    ) as ended
    left join duration_bands as band
        on ended.duration_days >= band.lower_days and ended.duration_days < band.upper_days
    left join ref_dose_band as dose
        on chosen.mean_daily_dose_dde_mg >= dose.lower_mg and chosen.mean_daily_dose_dde_mg < dose.upper_mg
    where chosen.gap_rows > 0
),

windows as (
    select
        person_windows.*,
        variants.variant,
        variants.sds_cutoff,
        person_windows.episode_end + variants.window_after_end_days as window_end
    from person_windows
    inner join variants on variants.persistence_window_days = person_windows.persistence_window_days
),

person_variants as (
    select
        windows.variant,
        {{ anchor_flags }},
        windows.duration_band,
        windows.headline_group,
        windows.age_band,
        windows.sex,
        windows.indication,
        windows.dose_band,
        coalesce(windows.first_assessed_on <= windows.window_end, false) as ascertained,
        coalesce(windows.first_evidence_without_sds_on <= windows.window_end, false)
            or coalesce({{ first_sds_on }} <= windows.window_end, false) as dependence_evidence,
        coalesce(windows.death_date between windows.episode_start and windows.window_end, false) as died_in_window,
        coalesce(windows.first_many_prescribers_on <= windows.window_end, false) as rx_many_prescribers,
        coalesce(windows.first_many_pharmacies_on <= windows.window_end, false) as rx_many_pharmacies,
        coalesce(windows.early_refills_reached_on <= windows.window_end, false) as rx_early_refills,
        coalesce(windows.first_high_dose_on <= windows.window_end, false) as rx_high_dose
    from windows
),

grouped as (
    select
        variant, duration_band, headline_group, age_band, sex, indication, dose_band,
        rx_many_prescribers, rx_many_pharmacies, rx_early_refills, rx_high_dose, died_in_window,
        ascertained, ascertained and dependence_evidence as dependent,
        {{ anchor_flag_names }},
        count(*) as _count
    from person_variants
    group by
        variant, duration_band, headline_group, age_band, sex, indication, dose_band,
        rx_many_prescribers, rx_many_pharmacies, rx_early_refills, rx_high_dose, died_in_window,
        ascertained, ascertained and dependence_evidence, {{ anchor_flag_names }}
),

final as (
    select
        variant,
        cast(duration_band as varchar) as duration_band,
        headline_group,
        cast(age_band as varchar) as age_band,
        cast(sex as varchar) as sex,
        cast(indication as varchar) as indication,
        cast(dose_band as varchar) as dose_band,
        cast(null as varchar) as ending,
        rx_many_prescribers,
        rx_many_pharmacies,
        rx_early_refills,
        rx_high_dose,
        rx_many_prescribers or rx_many_pharmacies or rx_early_refills or rx_high_dose as rx_misuse_signal,
        died_in_window,
        false as fixed_window_defined,
        false as misuse,
        ascertained,
        case when ascertained then cast(dependent as double) end as dependence,
        cast(null as double) as dep_icd,
        cast(null as double) as dep_withdrawal,
        cast(null as double) as dep_assessed,
        cast(null as double) as dep_sds,
        false as ascertained_fixed,
        cast(null as double) as dependence_fixed,
        false as increased,
        {{ anchor_flag_names }},
        _count
    from grouped
)

select * from final
order by all nulls first
