-- stg_diagnoses: raw diagnoses minus the rows validation quarantined, code system
-- normalised once, the code without its dot beside it.

create or replace table stg_diagnoses as
with kept as (
    select * replace (upper(trim(code_system)) as code_system)
    from validated_rows('raw_diagnoses', 'diagnoses')
),

final as (
    select
        kept.*,
        -- F13.2 and F132 are the same code
        replace(upper(trim(kept.code)), '.', '') as code_nodot
    from kept
)

select * from final;
