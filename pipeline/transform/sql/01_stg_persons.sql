-- stg_persons: raw persons minus the rows validation quarantined. Raw tables are never modified.

create or replace table stg_persons as
with final as (
    select * from validated_rows('raw_persons', 'persons')
)

select * from final;
