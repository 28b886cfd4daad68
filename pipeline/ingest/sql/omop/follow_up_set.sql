-- The follow-up concept set (SDS, withdrawal, dependence, misuse) resolved in this vocabulary.
-- wanted: a VALUES list of (concept_id, name_like, component, component_order).

create or replace temp table _omop_follow_up_set as
with wanted as (
    select * from ({{ wanted }}) as w(concept_id, name_like, component, component_order)
),

matched as (
    select concept.concept_id, concept.concept_name, wanted.component, wanted.component_order
    from _omop_concept as concept
    join wanted
        on wanted.concept_id = concept.concept_id
        or lower(concept.concept_name) like wanted.name_like
    union
    -- explicit ids the (subset) vocabulary lacks still count
    select wanted.concept_id, '', wanted.component, wanted.component_order
    from wanted
    where wanted.concept_id is not null
      and wanted.concept_id not in (select concept_id from _omop_concept where concept_id is not null)
),

final as (
    select concept_id, arg_min(concept_name, component_order) as concept_name,
           arg_min(component, component_order) as component
    from matched
    group by concept_id
)

select * from final;
