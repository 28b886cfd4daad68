-- stg_follow_ups: raw follow-ups minus the rows validation quarantined.

create or replace table stg_follow_ups as
with final as (
    select * from validated_rows('raw_follow_ups', 'follow_ups')
)

select * from final;
