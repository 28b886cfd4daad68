-- condition_occurrence -> the contract's diagnoses (ICD source codes, else the concept set's code).
-- code_systems: the contract's code systems, which are OMOP vocabulary ids too (ICD10, ICD10CM).

create or replace temp table _omop_condition_rows as
with conditions as (
    select * from _omop_condition_occurrence
),

coded as (
    select
        conditions.*,
        -- an ICD-10 / ICD-10-CM source concept: its own code; else the concept set's equivalent
        case when source.vocabulary_id in {{ code_systems }} then source.concept_code else condition_set.code end as code,
        case when source.vocabulary_id in {{ code_systems }} then source.vocabulary_id else condition_set.code_system end as code_system
    from conditions
    left join _omop_concept as source on source.concept_id = conditions.condition_source_concept_id
    left join _omop_condition_set as condition_set on condition_set.concept_id = conditions.condition_concept_id
),

final as (
    select *,
           case
               when condition_occurrence_id is null then 'omop.required_missing.diagnosis_id'
               when person_id is null then 'omop.required_missing.person_id'
               when condition_start_date is null then 'omop.required_missing.recorded_on'
           end as rule_id
    from coded
    where code is not null
)

select * from final;
