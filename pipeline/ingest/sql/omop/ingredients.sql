-- The ingredients to map: each configured drug (by lower-case name or RxNorm concept id)
-- and every benzodiazepine (for the cohort's washout rule), as standard RxNorm ingredients.
-- wanted: a VALUES list of (token, analysed).

create or replace temp table _omop_ingredients as
with wanted as (
    select * from ({{ wanted }}) as w(token, analysed)
),

ingredient_concepts as (
    -- standard RxNorm (Extension) ingredients, matched by lower-case name or by concept id
    select concept_id, lower(concept_name) as name
    from _omop_concept
    where vocabulary_id in ('RxNorm', 'RxNorm Extension')
      and concept_class_id = 'Ingredient'
      and standard_concept = 'S'
),

matched as (
    select ingredient_concepts.concept_id, wanted.token, wanted.analysed
    from wanted
    join ingredient_concepts
        on wanted.token = ingredient_concepts.name
        or try_cast(wanted.token as bigint) = ingredient_concepts.concept_id
),

final as (
    -- a configured ingredient keeps the label it was configured with
    select concept_id as ingredient_concept_id,
           arg_max(token, analysed::int) as drug,
           bool_or(analysed) as analysed
    from matched
    group by concept_id
)

select * from final;
