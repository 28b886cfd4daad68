-- Staging: raw rows minus every row quarantined by validation
-- (anti-join on table_name + _load_id + _source_row), keys normalised once,
-- derived columns added. Raw tables are never modified.

create or replace table stg_persons as
with quarantined as (
    select distinct load_id, source_row
    from audit_quarantine
    where stage = 'validate' and table_name = 'persons'
),

raw_rows as (
    select * from raw_persons
),

final as (
    select raw_rows.*
    from raw_rows
    anti join quarantined
        on quarantined.load_id = raw_rows._load_id
        and quarantined.source_row = raw_rows._source_row
)

select * from final;


create or replace table stg_prescriptions as
with quarantined as (
    select distinct load_id, source_row
    from audit_quarantine
    where stage = 'validate' and table_name = 'prescriptions'
),

raw_rows as (
    select * replace (lower(trim(drug)) as drug)
    from raw_prescriptions
),

kept as (
    select raw_rows.*
    from raw_rows
    anti join quarantined
        on quarantined.load_id = raw_rows._load_id
        and quarantined.source_row = raw_rows._source_row
),

final as (
    select
        kept.* replace (
            -- mg/day: as given, else strength (mg/unit) * quantity (units) / days
            coalesce(kept.daily_dose_mg, kept.strength_mg * kept.quantity / kept.days_supply) as daily_dose_mg
        ),
        kept.daily_dose_mg is null as daily_dose_derived,
        -- diazepam-equivalent mg/day: 10 mg diazepam = mg_equivalent mg of the drug
        coalesce(kept.daily_dose_mg, kept.strength_mg * kept.quantity / kept.days_supply)
            * 10.0 / ref.mg_equivalent_to_10mg_diazepam as daily_dose_dde_mg,
        -- last day covered, inclusive: a 30-day supply dispensed on day 1 covers days 1..30
        kept.dispensed_on + cast(kept.days_supply - 1 as integer) as supply_end
    from kept
    left join ref_benzodiazepine as ref on ref.drug = kept.drug
)

select * from final;


create or replace table stg_diagnoses as
with quarantined as (
    select distinct load_id, source_row
    from audit_quarantine
    where stage = 'validate' and table_name = 'diagnoses'
),

raw_rows as (
    select * replace (upper(trim(code_system)) as code_system)
    from raw_diagnoses
),

kept as (
    select raw_rows.*
    from raw_rows
    anti join quarantined
        on quarantined.load_id = raw_rows._load_id
        and quarantined.source_row = raw_rows._source_row
),

final as (
    select
        kept.*,
        -- F13.2 and F132 are the same code
        replace(upper(trim(kept.code)), '.', '') as code_nodot
    from kept
)

select * from final;


create or replace table stg_follow_ups as
with quarantined as (
    select distinct load_id, source_row
    from audit_quarantine
    where stage = 'validate' and table_name = 'follow_ups'
),

raw_rows as (
    select * from raw_follow_ups
),

final as (
    select raw_rows.*
    from raw_rows
    anti join quarantined
        on quarantined.load_id = raw_rows._load_id
        and quarantined.source_row = raw_rows._source_row
)

select * from final;


-- Every staged diagnosis with its F13 role (ref_outcome_code, longest matching
-- prefix of its code system); role NULL = no role: the diagnosis assesses nothing.
create or replace table stg_diagnosis_roles as
with matched as (
    select
        dx.diagnosis_id,
        dx.person_id,
        dx.recorded_on,
        ref.role,
        row_number() over (partition by dx.diagnosis_id, dx._load_id, dx._source_row
                           order by length(ref.code_prefix) desc nulls last) as match_rank
    from stg_diagnoses as dx
    left join ref_outcome_code as ref
        on ref.code_system = dx.code_system and starts_with(dx.code_nodot, ref.code_prefix)
),

final as (
    select
        diagnosis_id,
        person_id,
        recorded_on,
        role,
        coalesce(role in ('dependence', 'withdrawal', 'remission'), false) as is_outcome
    from matched
    where match_rank = 1
)

select * from final;
