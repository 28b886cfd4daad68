-- The quarantine filter, written once: the rows of a raw table that validation
-- did not set aside (anti-join on load + source row with audit_quarantine, stage
-- 'validate'). Every staging model reads its raw table through it:
--     select * from validated_rows('raw_persons', 'persons')
-- A temp macro: defined for this connection each time the transform runs,
-- nothing stored in the warehouse.

create or replace temp macro validated_rows(raw_table, table_label) as table
with quarantined as (
    select distinct load_id, source_row
    from audit_quarantine
    where stage = 'validate' and table_name = table_label
),

raw_rows as (
    select * from query_table(raw_table)
),

final as (
    select raw_rows.*
    from raw_rows
    anti join quarantined
        on quarantined.load_id = raw_rows._load_id
        and quarantined.source_row = raw_rows._source_row
)

select * from final;
