-- The dependence concept set resolved in this CDM's vocabulary: one ICD code per standard
-- condition concept. explicit, prefixes, patterns: VALUES lists from
-- concept_sets/dependence_conditions.json; dependence: the test for a dependence code.

create or replace temp table _omop_condition_set as
with explicit_concepts as (
    select * from ({{ explicit }}) as e(concept_id, code, system, pattern_order)
),

icd_prefixes as (
    select * from ({{ prefixes }}) as p(system, code_like)
),

icd_sources as (
    select concept.concept_id, concept.concept_code as code, concept.vocabulary_id as system
    from _omop_concept as concept
    join icd_prefixes
        on icd_prefixes.system = concept.vocabulary_id
        and concept.concept_code like icd_prefixes.code_like
),

mapped as (
    -- ICD source concept --'Maps to'--> standard concept, emitted as the ICD code
    select relationship.concept_id_2 as concept_id, icd_sources.code, icd_sources.system, 0 as pattern_order
    from icd_sources
    join _omop_concept_relationship as relationship
        on relationship.concept_id_1 = icd_sources.concept_id
        and relationship.relationship_id = 'Maps to'
        and coalesce(relationship.invalid_reason, '') = ''
),

name_patterns as (
    select * from ({{ patterns }}) as n(name_like, code, system, pattern_order)
),

named as (
    select concept.concept_id, name_patterns.code, name_patterns.system, name_patterns.pattern_order
    from _omop_concept as concept
    join name_patterns on lower(concept.concept_name) like name_patterns.name_like
    where concept.standard_concept = 'S' and concept.domain_id = 'Condition'
),

candidates as (
    select *, 1 as source_rank, 'explicit' as found_by from explicit_concepts
    union all select *, 2, 'maps_to' from mapped
    union all select *, 3, 'name' from named
),

ranked as (
    -- one code per concept: explicit first, then 'Maps to' (a code marking
    -- dependence first, ICD10 before ICD10CM, the shortest), then name patterns
    select *,
           row_number() over (
               partition by concept_id
               order by source_rank, ({{ dependence }}) desc, system = 'ICD10' desc,
                        length(code), code, pattern_order
           ) as code_rank
    from candidates
),

final as (
    select ranked.concept_id, coalesce(concept.concept_name, '') as concept_name, ranked.code,
           ranked.system as code_system, ranked.found_by
    from ranked
    left join _omop_concept as concept on concept.concept_id = ranked.concept_id
    where ranked.code_rank = 1
)

select * from final;
