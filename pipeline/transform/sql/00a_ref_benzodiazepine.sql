-- Reference table ref_benzodiazepine. Rendered by pipeline.transform from the configuration and from
-- pipeline/ingest/concept_sets/*.json (never hand-edited); printed with every result.

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
