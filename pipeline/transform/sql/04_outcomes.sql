-- Outcomes: one row per cohort person (per analysed ingredient).
-- Window = [episode_start, episode_end + {{ window_after_end_days }}], inclusive.
--   {{ sds_cutoff }} {{ dependence_icd10_prefixes }} {{ dependence_icd10cm_prefixes }}
--   {{ misuse_icd10_prefixes }} {{ distinct_prescribers }} {{ distinct_pharmacies }}
--   {{ misuse_window_days }} {{ early_refill_fraction }} {{ early_refills }}

create or replace table outcomes as
with windows as (
    select
        cohort.person_id,
        cohort.ingredient,
        cohort.episode_start as window_start,
        cohort.episode_end + cast({{ window_after_end_days }} as integer) as window_end,
        persons.observation_end,
        persons.death_date
    from cohort
    inner join stg_persons as persons on persons.person_id = cohort.person_id
),

diagnosis_evidence as (
    select
        windows.person_id,
        windows.ingredient,
        count(*) as diagnoses,
        bool_or(
            (dx.code_system = 'ICD10'
                and len(list_filter({{ dependence_icd10_prefixes }}, lambda prefix: starts_with(dx.code_nodot, prefix))) > 0)
            or (dx.code_system = 'ICD10CM'
                and len(list_filter({{ dependence_icd10cm_prefixes }}, lambda prefix: starts_with(dx.code_nodot, prefix))) > 0)
        ) as dep_icd,
        min(dx.recorded_on) filter (where
            (dx.code_system = 'ICD10'
                and len(list_filter({{ dependence_icd10_prefixes }}, lambda prefix: starts_with(dx.code_nodot, prefix))) > 0)
            or (dx.code_system = 'ICD10CM'
                and len(list_filter({{ dependence_icd10cm_prefixes }}, lambda prefix: starts_with(dx.code_nodot, prefix))) > 0)
        ) as first_dep_icd_on,
        -- F13.1 harmful use / abuse: misuse, not dependence (both code systems)
        bool_or(len(list_filter({{ misuse_icd10_prefixes }}, lambda prefix: starts_with(dx.code_nodot, prefix))) > 0)
            as icd_misuse
    from windows
    inner join stg_diagnoses as dx
        on dx.person_id = windows.person_id
        and dx.recorded_on between windows.window_start and windows.window_end
    group by windows.person_id, windows.ingredient
),

follow_up_evidence as (
    select
        windows.person_id,
        windows.ingredient,
        count(*) as follow_ups,
        coalesce(bool_or(fu.withdrawal_symptoms), false) as dep_withdrawal,
        coalesce(bool_or(fu.dependence_assessed), false) as dep_assessed,
        coalesce(bool_or(fu.sds_score >= {{ sds_cutoff }}), false) as dep_sds,
        min(fu.assessed_on) filter (where fu.withdrawal_symptoms or fu.dependence_assessed
                                    or fu.sds_score >= {{ sds_cutoff }}) as first_dep_follow_up_on,
        coalesce(bool_or(fu.misuse), false) as documented_misuse
    from windows
    inner join stg_follow_ups as fu
        on fu.person_id = windows.person_id
        and fu.assessed_on between windows.window_start and windows.window_end
    group by windows.person_id, windows.ingredient
),

window_dispensings as (
    -- every benzodiazepine dispensing (any drug of the equivalence table) of a
    -- cohort person; early refill judged against the previous dispensing of
    -- the same drug, whether or not that one is in the window
    select
        windows.person_id,
        windows.ingredient,
        windows.window_start,
        windows.window_end,
        rx.drug,
        rx.dispensed_on,
        rx.prescriber_id,
        rx.pharmacy_id,
        rx.daily_dose_mg,
        ref.labelled_max_daily_mg,
        rx.dispensed_on - lag(rx.dispensed_on) over same_drug as days_since_previous,
        lag(rx.days_supply) over same_drug as previous_days_supply
    from windows
    inner join stg_prescriptions as rx on rx.person_id = windows.person_id
    inner join ref_benzodiazepine as ref on ref.drug = rx.drug and ref.in_equivalence_table
    window same_drug as (
        partition by windows.person_id, windows.ingredient, rx.drug
        order by rx.dispensed_on, rx.prescription_id
    )
),

in_window as (
    select
        *,
        -- distinct prescribers / pharmacies in the {{ misuse_window_days }} days ending on this dispensing
        count(distinct prescriber_id) over recent as recent_prescribers,
        count(distinct pharmacy_id) over recent as recent_pharmacies
    from window_dispensings
    where dispensed_on between window_start and window_end
    window recent as (
        partition by person_id, ingredient
        order by dispensed_on
        range between to_days({{ misuse_window_days }} - 1) preceding and current row
    )
),

prescription_signals as (
    select
        person_id,
        ingredient,
        coalesce(max(recent_prescribers), 0) >= {{ distinct_prescribers }} as rx_many_prescribers,
        coalesce(max(recent_pharmacies), 0) >= {{ distinct_pharmacies }} as rx_many_pharmacies,
        -- early: a later-day refill before this share of the previous supply elapsed
        count(*) filter (where days_since_previous > 0
                         and days_since_previous < {{ early_refill_fraction }} * previous_days_supply)
            >= {{ early_refills }} as rx_early_refills,
        coalesce(bool_or(daily_dose_mg > labelled_max_daily_mg), false) as rx_high_dose
    from in_window
    group by person_id, ingredient
),

joined as (
    select
        windows.*,
        coalesce(diagnosis_evidence.diagnoses, 0) + coalesce(follow_up_evidence.follow_ups, 0) > 0 as ascertained,
        coalesce(diagnosis_evidence.dep_icd, false) as any_dep_icd,
        coalesce(follow_up_evidence.dep_withdrawal, false) as any_dep_withdrawal,
        coalesce(follow_up_evidence.dep_assessed, false) as any_dep_assessed,
        coalesce(follow_up_evidence.dep_sds, false) as any_dep_sds,
        least(diagnosis_evidence.first_dep_icd_on, follow_up_evidence.first_dep_follow_up_on) as first_dependence_on,
        coalesce(prescription_signals.rx_many_prescribers, false) as rx_many_prescribers,
        coalesce(prescription_signals.rx_many_pharmacies, false) as rx_many_pharmacies,
        coalesce(prescription_signals.rx_early_refills, false) as rx_early_refills,
        coalesce(prescription_signals.rx_high_dose, false) as rx_high_dose,
        coalesce(follow_up_evidence.documented_misuse, false) as documented_misuse,
        coalesce(diagnosis_evidence.icd_misuse, false) as icd_misuse
    from windows
    left join diagnosis_evidence
        on diagnosis_evidence.person_id = windows.person_id and diagnosis_evidence.ingredient = windows.ingredient
    left join follow_up_evidence
        on follow_up_evidence.person_id = windows.person_id and follow_up_evidence.ingredient = windows.ingredient
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
        -- unknown, not negative, when nothing was recorded in the window
        case when ascertained then any_dep_icd or any_dep_withdrawal or any_dep_assessed or any_dep_sds end
            as dependence,
        case when ascertained then any_dep_icd end as dep_icd,
        case when ascertained then any_dep_withdrawal end as dep_withdrawal,
        case when ascertained then any_dep_assessed end as dep_assessed,
        case when ascertained then any_dep_sds end as dep_sds,
        (first_dependence_on - window_start)::integer as days_to_dependence,
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
