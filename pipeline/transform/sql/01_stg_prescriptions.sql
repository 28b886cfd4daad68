-- stg_prescriptions: raw prescriptions minus the rows validation quarantined,
-- drug names normalised once, daily doses derived.

create or replace table stg_prescriptions as
with kept as (
    select * replace (lower(trim(drug)) as drug)
    from validated_rows('raw_prescriptions', 'prescriptions')
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
