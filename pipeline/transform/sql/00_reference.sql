-- Reference tables built from the configuration (printed with every result):
-- one row per benzodiazepine with its diazepam equivalence and labelled maximum.
-- The VALUES lists in this file are rendered by pipeline.transform from the
-- configuration (never hand-edited).
create or replace table ref_benzodiazepine as
with equivalence as (
    select * from ({{ equivalence_rows }}) as t(drug, mg_equivalent_to_10mg_diazepam)
),

labelled_max as (
    select * from ({{ labelled_max_rows }}) as t(drug, labelled_max_daily_mg)
),

final as (
    select
        coalesce(equivalence.drug, labelled_max.drug)::varchar as drug,
        equivalence.mg_equivalent_to_10mg_diazepam::double as mg_equivalent_to_10mg_diazepam,
        labelled_max.labelled_max_daily_mg::double as labelled_max_daily_mg,
        -- a drug is a benzodiazepine here when the equivalence table names it
        equivalence.drug is not null as in_equivalence_table
    from equivalence
    full outer join labelled_max on labelled_max.drug = equivalence.drug
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
