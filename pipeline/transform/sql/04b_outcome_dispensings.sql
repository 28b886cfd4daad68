-- Outcome dispensings: every benzodiazepine dispensing (ATC class or equivalence
-- table) of a cohort person on or after the episode start, with the misuse
-- signals it carries. Only the records up to a window's end count for that
-- window (04c, and the sensitivity analyses with other windows); the signals
-- here look back only, so they do not depend on where a window ends:
--   recent_prescribers / recent_pharmacies  distinct prescribers / pharmacies of
--       the dispensings from the episode start in the {{ misuse_window_days }} days
--       ending on this one
--   early_refill  a later-day refill before {{ early_refill_fraction }} of the previous
--       supply of the same drug elapsed (that one in the window or not)
--   high_dose     daily dose above the drug's labelled maximum

create or replace table outcome_dispensings as
with benzodiazepine_dispensings as (
    select
        cohort.person_id,
        cohort.ingredient,
        cohort.episode_start as window_start,
        rx.dispensed_on,
        rx.prescriber_id,
        rx.pharmacy_id,
        rx.daily_dose_mg,
        ref.labelled_max_daily_mg,
        rx.dispensed_on - lag(rx.dispensed_on) over same_drug as days_since_previous,
        lag(rx.days_supply) over same_drug as previous_days_supply
    from cohort
    inner join stg_prescriptions as rx on rx.person_id = cohort.person_id
    inner join ref_benzodiazepine as ref on ref.drug = rx.drug and ref.is_benzodiazepine
    window same_drug as (
        partition by cohort.person_id, cohort.ingredient, rx.drug
        order by rx.dispensed_on, rx.prescription_id
    )
),

from_window_start as (
    select *
    from benzodiazepine_dispensings
    where dispensed_on >= window_start
),

person_sources as (
    -- per person (and ingredient): the prescribers and pharmacies its dispensings name.
    -- When that is one, named on every dispensing (or none at all), every
    -- dispensing's count over the last {{ misuse_window_days }} days is that number
    -- (the frame always holds the dispensing itself), so the framed DISTINCT window
    -- below (the slowest operator of the transform) runs only for the persons
    -- with several (a few percent of them in the bench extract).
    select
        person_id,
        ingredient,
        count(distinct prescriber_id) as prescribers,
        count(distinct pharmacy_id) as pharmacies,
        (count(distinct prescriber_id) = 0 or (count(distinct prescriber_id) = 1 and count(prescriber_id) = count(*)))
            and (count(distinct pharmacy_id) = 0 or (count(distinct pharmacy_id) = 1 and count(pharmacy_id) = count(*)))
            as constant_counts
    from from_window_start
    group by person_id, ingredient
),

sourced as (
    select from_window_start.*, person_sources.prescribers, person_sources.pharmacies, person_sources.constant_counts
    from from_window_start
    inner join person_sources
        on person_sources.person_id = from_window_start.person_id
        and person_sources.ingredient = from_window_start.ingredient
),

recent_sources as (
    select
        *,
        count(distinct prescriber_id) over recent as recent_prescribers,
        count(distinct pharmacy_id) over recent as recent_pharmacies
    from sourced
    where not constant_counts
    window recent as (
        partition by person_id, ingredient
        order by dispensed_on
        range between to_days({{ misuse_window_days }} - 1) preceding and current row
    )
    union all
    select *, prescribers as recent_prescribers, pharmacies as recent_pharmacies
    from sourced
    where constant_counts
),

final as (
    select
        person_id,
        ingredient,
        dispensed_on,
        recent_prescribers,
        recent_pharmacies,
        days_since_previous > 0 and days_since_previous < {{ early_refill_fraction }} * previous_days_supply
            as early_refill,
        daily_dose_mg > labelled_max_daily_mg as high_dose
    from recent_sources
)

select * from final;
