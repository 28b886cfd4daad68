-- Reference table ref_outcome_code. Rendered by pipeline.transform from the configuration and from
-- pipeline/ingest/concept_sets/*.json (never hand-edited); printed with every result.

-- The F13 codes the analysis reads and the role of each (dependence,
-- withdrawal, remission, misuse): concept_sets/dependence_conditions.json
-- "outcome_codes". A diagnosis takes the role of its longest matching prefix.
create or replace table ref_outcome_code as
with codes as (
    select * from ({{ outcome_code_rows }}) as t(code_system, code_prefix, role)
),

final as (
    select
        code_system::varchar as code_system,
        code_prefix::varchar as code_prefix,
        role::varchar as role,
        role in ('dependence', 'withdrawal', 'remission') as is_outcome
    from codes
)

select * from final;
