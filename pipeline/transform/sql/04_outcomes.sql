-- Outcomes: one row per cohort person (per analysed ingredient), for two estimands.
--  (a) window = [episode_start, episode_end + {{ window_after_end_days }}], inclusive
--      (grows with the treatment);
--  (b) fixed window = [episode_end + 1, episode_end + {{ fixed_window_days }}]: the
--      {{ fixed_window_days }} days after the last day of supply, the same length for
--      every duration; defined only when the treatment ended while observed
--      (end_reason 'supply': not ended by death or observation end).
-- A window's outcome is ASSESSED when it holds a follow-up with at least one
-- outcome field recorded (sds_score, withdrawal_symptoms, dependence_assessed)
-- or a dependence / withdrawal / remission code (ref_outcome_code). Any other
-- diagnosis (e.g. the indication coded at the first dispensing) and a visit
-- with every outcome field empty assess nothing: that outcome is unknown, not negative.
--   {{ sds_cutoff }} {{ distinct_prescribers }} {{ distinct_pharmacies }}
--   {{ misuse_window_days }} {{ early_refill_fraction }} {{ early_refills }}

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
    -- every follow-up and diagnosis of a cohort person, as one kind of record:
    -- assesses (the outcome was assessed), each positive component, misuse
    select
        fu.person_id,
        fu.assessed_on as recorded_on,
        fu.sds_score is not null or fu.withdrawal_symptoms is not null or fu.dependence_assessed is not null
            as assesses,
        false as dep_icd,
        coalesce(fu.withdrawal_symptoms, false) as dep_withdrawal,
        coalesce(fu.dependence_assessed, false) as dep_assessed,
        coalesce(fu.sds_score >= {{ sds_cutoff }}, false) as dep_sds,
        coalesce(fu.misuse, false) as documented_misuse,
        false as icd_misuse
    from stg_follow_ups as fu
    where fu.person_id in (select person_id from windows)
    union all
    select
        dx.person_id,
        dx.recorded_on,
        dx.is_outcome as assesses,
        dx.is_outcome as dep_icd,
        false, false, false, false,
        coalesce(dx.role = 'misuse', false) as icd_misuse
    from stg_diagnosis_roles as dx
    where dx.person_id in (select person_id from windows)
),

window_evidence as (
    select
        windows.person_id,
        windows.ingredient,
        count(*) as records,
        bool_or(evidence.assesses) as assessed,
        bool_or(evidence.dep_icd) as dep_icd,
        bool_or(evidence.dep_withdrawal) as dep_withdrawal,
        bool_or(evidence.dep_assessed) as dep_assessed,
        bool_or(evidence.dep_sds) as dep_sds,
        min(evidence.recorded_on) filter (where evidence.dep_icd or evidence.dep_withdrawal
                                          or evidence.dep_assessed or evidence.dep_sds) as first_dependence_on,
        bool_or(evidence.documented_misuse) as documented_misuse,
        bool_or(evidence.icd_misuse) as icd_misuse
    from windows
    inner join evidence
        on evidence.person_id = windows.person_id
        and evidence.recorded_on between windows.window_start and windows.window_end
    group by windows.person_id, windows.ingredient
),

fixed_window_evidence as (
    select
        windows.person_id,
        windows.ingredient,
        count(*) as records,
        bool_or(evidence.assesses) as assessed,
        bool_or(evidence.dep_icd or evidence.dep_withdrawal or evidence.dep_assessed or evidence.dep_sds)
            as dependence
    from windows
    inner join evidence
        on evidence.person_id = windows.person_id
        and evidence.recorded_on between windows.fixed_window_start and windows.fixed_window_end
    where windows.fixed_window_defined
    group by windows.person_id, windows.ingredient
),

window_dispensings as (
    -- every benzodiazepine dispensing (ATC class or equivalence table) of a
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
    inner join ref_benzodiazepine as ref on ref.drug = rx.drug and ref.is_benzodiazepine
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
        coalesce(window_evidence.assessed, false) as ascertained,
        coalesce(window_evidence.records, 0) > 0 and not coalesce(window_evidence.assessed, false)
            as only_unassessing_records,
        coalesce(window_evidence.dep_icd, false) as any_dep_icd,
        coalesce(window_evidence.dep_withdrawal, false) as any_dep_withdrawal,
        coalesce(window_evidence.dep_assessed, false) as any_dep_assessed,
        coalesce(window_evidence.dep_sds, false) as any_dep_sds,
        window_evidence.first_dependence_on,
        windows.fixed_window_defined and coalesce(fixed_window_evidence.assessed, false) as ascertained_fixed,
        windows.fixed_window_defined and coalesce(fixed_window_evidence.records, 0) > 0
            and not coalesce(fixed_window_evidence.assessed, false) as only_unassessing_records_fixed,
        coalesce(fixed_window_evidence.dependence, false) as any_dependence_fixed,
        coalesce(prescription_signals.rx_many_prescribers, false) as rx_many_prescribers,
        coalesce(prescription_signals.rx_many_pharmacies, false) as rx_many_pharmacies,
        coalesce(prescription_signals.rx_early_refills, false) as rx_early_refills,
        coalesce(prescription_signals.rx_high_dose, false) as rx_high_dose,
        coalesce(window_evidence.documented_misuse, false) as documented_misuse,
        coalesce(window_evidence.icd_misuse, false) as icd_misuse
    from windows
    left join window_evidence
        on window_evidence.person_id = windows.person_id and window_evidence.ingredient = windows.ingredient
    left join fixed_window_evidence
        on fixed_window_evidence.person_id = windows.person_id
        and fixed_window_evidence.ingredient = windows.ingredient
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
