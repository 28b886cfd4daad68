-- Outcome records: every follow-up and diagnosis of a cohort person on or after
-- the episode start (where both outcome windows of 04c begin), one row per
-- record and analysed ingredient, as one kind of record. The outcome windows
-- (04c) and the sensitivity analyses (pipeline/estimate/sensitivity.sql) only
-- choose the records up to their window's end, so what a record says is
-- written here, once:
--   assesses    the record assessed the outcome: a follow-up with at least one
--               outcome field recorded (sds_score, withdrawal_symptoms,
--               dependence_assessed) or a dependence / withdrawal / remission
--               code (ref_outcome_code). Any other diagnosis (e.g. the
--               indication coded at the first dispensing) and a visit with every
--               outcome field empty assess nothing.
--   dependence_evidence_without_sds  a dependence / withdrawal / remission
--               code, recorded withdrawal symptoms or a clinician's assessment
--   dependence_evidence  the same, or an SDS score >= {{ sds_cutoff }}
--               (the sensitivity analyses compare sds_score with other cut-offs)

create or replace table outcome_records as
with records as (
    select
        fu.person_id,
        fu.assessed_on as recorded_on,
        fu.sds_score is not null or fu.withdrawal_symptoms is not null or fu.dependence_assessed is not null
            as assesses,
        false as dep_icd,
        coalesce(fu.withdrawal_symptoms, false) as dep_withdrawal,
        coalesce(fu.dependence_assessed, false) as dep_assessed,
        fu.sds_score,
        coalesce(fu.misuse, false) as documented_misuse,
        false as icd_misuse
    from stg_follow_ups as fu
    union all
    select
        dx.person_id,
        dx.recorded_on,
        dx.is_outcome as assesses,
        dx.is_outcome as dep_icd,
        false as dep_withdrawal,
        false as dep_assessed,
        null as sds_score,
        false as documented_misuse,
        coalesce(dx.role = 'misuse', false) as icd_misuse
    from stg_diagnosis_roles as dx
),

classified as (
    select
        cohort.person_id,
        cohort.ingredient,
        records.recorded_on,
        records.assesses,
        records.dep_icd,
        records.dep_withdrawal,
        records.dep_assessed,
        records.sds_score,
        coalesce(records.sds_score >= {{ sds_cutoff }}, false) as dep_sds,
        records.dep_icd or records.dep_withdrawal or records.dep_assessed as dependence_evidence_without_sds,
        records.documented_misuse,
        records.icd_misuse
    from cohort
    inner join records
        on records.person_id = cohort.person_id
        and records.recorded_on >= cohort.episode_start
),

final as (
    select
        *,
        dependence_evidence_without_sds or dep_sds as dependence_evidence
    from classified
)

select * from final;
