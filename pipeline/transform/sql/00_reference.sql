-- Reference tables built from the configuration and the concept lists
-- (printed with every result). The VALUES lists in this file are rendered by
-- pipeline.transform from the configuration and from
-- pipeline/ingest/concept_sets/*.json (never hand-edited).

-- One row per drug name: its diazepam equivalence and labelled maximum (from
-- the configuration) and whether it is a benzodiazepine (ATC N05BA, N05CD,
-- N03AE01 from concept_sets/benzodiazepines.json, or named by the equivalence
-- table). Aliases (e.g. 'potassium clorazepate') have rows of their own.
create or replace table ref_benzodiazepine as
with equivalence as (
    select * from ({{ equivalence_rows }}) as t(drug, mg_equivalent_to_10mg_diazepam)
),

labelled_max as (
    select * from ({{ labelled_max_rows }}) as t(drug, labelled_max_daily_mg)
),

atc_class as (
    select * from ({{ benzodiazepine_class_rows }}) as t(drug, atc_code)
),

names as (
    select drug from equivalence
    union
    select drug from labelled_max
    union
    select drug from atc_class
),

final as (
    select
        names.drug::varchar as drug,
        atc_class.atc_code::varchar as atc_code,
        equivalence.mg_equivalent_to_10mg_diazepam::double as mg_equivalent_to_10mg_diazepam,
        labelled_max.labelled_max_daily_mg::double as labelled_max_daily_mg,
        equivalence.drug is not null as in_equivalence_table,
        -- washout and misuse signals: every benzodiazepine, whatever the equivalence table holds
        atc_class.drug is not null or equivalence.drug is not null as is_benzodiazepine
    from names
    left join equivalence on equivalence.drug = names.drug
    left join labelled_max on labelled_max.drug = names.drug
    left join atc_class on atc_class.drug = names.drug
)

select * from final;


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


create or replace table ref_duration_band as
with bands as (
    select * from ({{ duration_band_rows }}) as t(band_order, lower_days, duration_band)
),

final as (
    select band_order::integer as band_order, lower_days::integer as lower_days, duration_band::varchar as duration_band
    from bands
)

select * from final;
