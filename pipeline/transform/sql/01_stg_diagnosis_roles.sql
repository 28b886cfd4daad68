-- stg_diagnosis_roles: every staged diagnosis with its F13 role (ref_outcome_code,
-- longest matching prefix of its code system); role NULL = no role: the diagnosis
-- assesses nothing. Runs after 01_stg_diagnoses.sql (file order).

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
