-- Outcomes: one row per cohort person (per analysed ingredient), for two estimands.
--  (a) window = [episode_start, episode_end + {{ window_after_end_days }}], inclusive
--      (grows with the treatment);
--  (b) fixed window = [episode_end + 1, episode_end + {{ fixed_window_days }}]: the
--      {{ fixed_window_days }} days after the last day of supply, the same length for
--      every duration; defined only when the treatment ended while observed
--      (end_reason 'supply': not ended by death or observation end).
-- A window's outcome is ASSESSED when it holds a record that assesses it, and
-- dependent when it holds dependence evidence (both defined once in 04a,
-- outcome_records); with no assessing record the outcome is unknown, not negative.
-- Misuse signals from the window's dispensings (04b, outcome_dispensings).
--   {{ distinct_prescribers }} {{ distinct_pharmacies }} {{ early_refills }}

create or replace table outcomes as
with windows as (
    select
        cohort.person_id,
        cohort.ingredient,
        cohort.episode_start as window_start,
        cohort.episode_end + cast({{ window_after_end_days }} as integer) as window_end,
        cohort.episode_end + 1 as fixed_window_start,
        cohort.episode_end + cast({{ fixed_window_days }} as integer) as fixed_window_end,
        cohort.end_reason = 'supply' as fixed_window_defined,
        persons.observation_end,
        persons.death_date
    from cohort
    inner join stg_persons as persons on persons.person_id = cohort.person_id
),

evidence as (
    -- each record in window (a), in window (b), or both
    select
        windows.person_id,
        windows.ingredient,
        records.recorded_on,
        records.assesses,
        records.dep_icd,
        records.dep_withdrawal,
        records.dep_assessed,
        records.dep_sds,
        records.dependence_evidence,
        records.documented_misuse,
        records.icd_misuse,
        records.recorded_on between windows.window_start and windows.window_end as in_window,
        windows.fixed_window_defined
            and records.recorded_on between windows.fixed_window_start and windows.fixed_window_end
            as in_fixed_window
    from windows
    inner join outcome_records as records
        on records.person_id = windows.person_id
        and records.ingredient = windows.ingredient
),

window_evidence as (
    select
        person_id,
        ingredient,
        count(*) filter (where in_window) as records,
        bool_or(assesses) filter (where in_window) as assessed,
        bool_or(dep_icd) filter (where in_window) as dep_icd,
        bool_or(dep_withdrawal) filter (where in_window) as dep_withdrawal,
        bool_or(dep_assessed) filter (where in_window) as dep_assessed,
        bool_or(dep_sds) filter (where in_window) as dep_sds,
        min(recorded_on) filter (where in_window and dependence_evidence) as first_dependence_on,
        bool_or(documented_misuse) filter (where in_window) as documented_misuse,
        bool_or(icd_misuse) filter (where in_window) as icd_misuse,
        count(*) filter (where in_fixed_window) as fixed_records,
        bool_or(assesses) filter (where in_fixed_window) as fixed_assessed,
        bool_or(dependence_evidence) filter (where in_fixed_window) as fixed_dependence
    from evidence
    where in_window or in_fixed_window
    group by person_id, ingredient
),

prescription_signals as (
    select
        windows.person_id,
        windows.ingredient,
        coalesce(max(rx.recent_prescribers), 0) >= {{ distinct_prescribers }} as rx_many_prescribers,
        coalesce(max(rx.recent_pharmacies), 0) >= {{ distinct_pharmacies }} as rx_many_pharmacies,
        count(*) filter (where rx.early_refill) >= {{ early_refills }} as rx_early_refills,
        coalesce(bool_or(rx.high_dose), false) as rx_high_dose
    from windows
    inner join outcome_dispensings as rx
        on rx.person_id = windows.person_id
        and rx.ingredient = windows.ingredient
        and rx.dispensed_on between windows.window_start and windows.window_end
    group by windows.person_id, windows.ingredient
),

joined as (
    select
        windows.*,
        coalesce(window_evidence.assessed, false) as ascertained,
        coalesce(window_evidence.records, 0) > 0 and not coalesce(window_evidence.assessed, false)
            as only_unassessing_records,
        coalesce(window_evidence.dep_icd, false) as any_dep_icd,
        coalesce(window_evidence.dep_withdrawal, false) as any_dep_withdrawal,
        coalesce(window_evidence.dep_assessed, false) as any_dep_assessed,
        coalesce(window_evidence.dep_sds, false) as any_dep_sds,
        window_evidence.first_dependence_on,
        windows.fixed_window_defined and coalesce(window_evidence.fixed_assessed, false) as ascertained_fixed,
        windows.fixed_window_defined and coalesce(window_evidence.fixed_records, 0) > 0
            and not coalesce(window_evidence.fixed_assessed, false) as only_unassessing_records_fixed,
        coalesce(window_evidence.fixed_dependence, false) as any_dependence_fixed,
        coalesce(prescription_signals.rx_many_prescribers, false) as rx_many_prescribers,
        coalesce(prescription_signals.rx_many_pharmacies, false) as rx_many_pharmacies,
        coalesce(prescription_signals.rx_early_refills, false) as rx_early_refills,
        coalesce(prescription_signals.rx_high_dose, false) as rx_high_dose,
        coalesce(window_evidence.documented_misuse, false) as documented_misuse,
        coalesce(window_evidence.icd_misuse, false) as icd_misuse
    from windows
    left join window_evidence
        on window_evidence.person_id = windows.person_id and window_evidence.ingredient = windows.ingredient
    left join prescription_signals
        on prescription_signals.person_id = windows.person_id and prescription_signals.ingredient = windows.ingredient
),

final as (
    select
        person_id,
        ingredient,
        window_start,
        window_end,
        ascertained,
        -- a window holding only records that assess nothing (another diagnosis, an empty visit)
        only_unassessing_records,
        -- unknown, not negative, when the outcome was not assessed in the window
        case when ascertained then any_dep_icd or any_dep_withdrawal or any_dep_assessed or any_dep_sds end
            as dependence,
        case when ascertained then any_dep_icd end as dep_icd,
        case when ascertained then any_dep_withdrawal end as dep_withdrawal,
        case when ascertained then any_dep_assessed end as dep_assessed,
        case when ascertained then any_dep_sds end as dep_sds,
        (first_dependence_on - window_start)::integer as days_to_dependence,
        -- estimand (b): the fixed window after the treatment ended
        fixed_window_start,
        fixed_window_end,
        fixed_window_defined,
        ascertained_fixed,
        only_unassessing_records_fixed,
        case when ascertained_fixed then any_dependence_fixed end as dependence_fixed,
        coalesce(death_date between window_start and window_end, false) as died_in_window,
        case when death_date between window_start and window_end then (death_date - window_start)::integer end
            as days_to_death,
        (least(window_end, observation_end, death_date) - window_start)::integer as days_followed,
        rx_many_prescribers,
        rx_many_pharmacies,
        rx_early_refills,
        rx_high_dose,
        rx_many_prescribers or rx_many_pharmacies or rx_early_refills or rx_high_dose as rx_misuse_signal,
        documented_misuse,
        icd_misuse,
        rx_many_prescribers or rx_many_pharmacies or rx_early_refills or rx_high_dose
            or documented_misuse or icd_misuse as misuse
    from joined
)

select * from final;
