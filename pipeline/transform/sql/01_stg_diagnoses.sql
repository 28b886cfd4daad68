-- stg_diagnoses: raw diagnoses minus the rows validation quarantined, code system
-- normalised once, the code without its dot beside it.

create or replace table stg_diagnoses as
with final as (
    select
        * replace (upper(trim(code_system)) as code_system),
        -- F13.2 and F132 are the same code
        replace(upper(trim(code)), '.', '') as code_nodot
    from validated_rows('raw_diagnoses', 'diagnoses')
)

select * from final;
