-- The mapped rows -> raw_*, typed exactly as the native ingest types them, each table
-- commented with the snapshot id. load_id, snapshot: SQL string literals.

create or replace table raw_persons as
select cast(person_id as varchar) as person_id, birth_year::bigint as birth_year, sex,
       NULL::varchar as region, observation_start, observation_end, death_date,
       person_id::bigint as _source_row, {{ load_id }} as _load_id
from _omop_person_rows where rule_id is null order by person_id;

create or replace table raw_prescriptions as
select prescription_id, person_id, dispensed_on, drug, strength_mg::double as strength_mg,
       quantity::double as quantity, days_supply, daily_dose_mg::double as daily_dose_mg, indication,
       prescriber_id, pharmacy_id, _source_row::bigint as _source_row, {{ load_id }} as _load_id
from _omop_prescriptions order by _source_row, dispensed_on, prescription_id;

create or replace table raw_diagnoses as
select cast(condition_occurrence_id as varchar) as diagnosis_id, cast(person_id as varchar) as person_id,
       condition_start_date as recorded_on, code, code_system,
       condition_occurrence_id::bigint as _source_row, {{ load_id }} as _load_id
from _omop_condition_rows where rule_id is null order by condition_occurrence_id;

create or replace table raw_follow_ups as
select cdm_table || ':' || record_id as follow_up_id, cast(person_id as varchar) as person_id,
       assessed_on,
       case when component = 'sds_score' then value_as_number::bigint end as sds_score,
       case when component = 'withdrawal_symptoms' then not negative_value end as withdrawal_symptoms,
       case when component = 'dependence_assessed' then not negative_value end as dependence_assessed,
       case when component = 'misuse' then not negative_value end as misuse,
       source_row::bigint as _source_row, {{ load_id }} as _load_id
from _omop_follow_up_rows where rule_id is null order by source_row;

comment on table raw_persons is {{ snapshot }};
comment on table raw_prescriptions is {{ snapshot }};
comment on table raw_diagnoses is {{ snapshot }};
comment on table raw_follow_ups is {{ snapshot }};
