-- observation and measurement -> the contract's follow_ups.
-- negative_names: value concept names that mean 'no'.

create or replace temp table _omop_follow_up_rows as
with assessments as (
    select 'observation' as cdm_table, observation_id as record_id, person_id, observation_date as assessed_on,
           observation_concept_id as concept_id, value_as_number, value_as_concept_id
    from _omop_observation
    union all
    select 'measurement', measurement_id, person_id, measurement_date, measurement_concept_id,
           value_as_number, value_as_concept_id
    from _omop_measurement
),

matched as (
    select assessments.*, follow_up_set.component,
           lower(coalesce(value_concept.concept_name, '')) in {{ negative_names }} as negative_value,
           row_number() over (order by assessments.cdm_table, assessments.record_id) as source_row
    from assessments
    join _omop_follow_up_set as follow_up_set on follow_up_set.concept_id = assessments.concept_id
    left join _omop_concept as value_concept on value_concept.concept_id = assessments.value_as_concept_id
),

final as (
    select *,
           case
               when record_id is null then 'omop.required_missing.follow_up_id'
               when person_id is null then 'omop.required_missing.person_id'
               when assessed_on is null then 'omop.required_missing.assessed_on'
               when component = 'sds_score' and value_as_number is null then 'omop.required_missing.sds_score'
               when component = 'sds_score' and value_as_number <> round(value_as_number) then 'omop.type.sds_score'
           end as rule_id
    from matched
)

select * from final;
