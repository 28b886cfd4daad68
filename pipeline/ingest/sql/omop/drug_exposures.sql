-- drug_exposure -> the contract's prescriptions: _omop_drug_rows (every selected row with
-- its rule_id) and _omop_prescriptions (the loadable rows, split into segments of at most
-- max_days days). Doses from drug_strength (mg_units: mg, microgram, gram units).

create or replace temp table _omop_drug_rows as
with drug_map as (
    -- drug concepts rolling up to a selected ingredient (concept_ancestor; the ingredient itself too)
    select distinct concept_ancestor.descendant_concept_id as drug_concept_id, ingredients.ingredient_concept_id, ingredients.drug
    from _omop_concept_ancestor as concept_ancestor
    join _omop_ingredients as ingredients on ingredients.ingredient_concept_id = concept_ancestor.ancestor_concept_id
    union
    select ingredient_concept_id, ingredient_concept_id, drug from _omop_ingredients
),

exposures as (
    select * from _omop_drug_exposure
),

unresolved_concepts as (
    -- drug concepts outside the map: RxNorm drugs (or concepts the vocabulary lacks) with no
    -- Ingredient ancestor at all may be the drug we study; other drugs (e.g. CVX vaccines) are out of scope
    select distinct exposures.drug_concept_id, concept.vocabulary_id
    from exposures
    left join _omop_concept as concept on concept.concept_id = exposures.drug_concept_id
    where exposures.drug_concept_id is not null and exposures.drug_concept_id <> 0
      and exposures.drug_concept_id not in (select drug_concept_id from drug_map)
),

no_ingredient as (
    select unresolved_concepts.drug_concept_id, unresolved_concepts.vocabulary_id
    from unresolved_concepts
    where coalesce(unresolved_concepts.vocabulary_id, 'RxNorm') in ('RxNorm', 'RxNorm Extension')
      and not exists (
        select 1
        from _omop_concept_ancestor as concept_ancestor
        join _omop_concept as ingredient
            on ingredient.concept_id = concept_ancestor.ancestor_concept_id
            and ingredient.concept_class_id = 'Ingredient'
        where concept_ancestor.descendant_concept_id = unresolved_concepts.drug_concept_id
      )
),

in_scope as (
    select exposures.*, drug_map.ingredient_concept_id, drug_map.drug,
           count(drug_map.drug) over (partition by exposures.drug_exposure_id) as selected_ingredients,
           case
               when exposures.drug_exposure_id is null then 'omop.required_missing.drug_exposure_id'
               when exposures.drug_concept_id is null or exposures.drug_concept_id = 0 then 'omop.unmapped_drug'
               when no_ingredient.drug_concept_id is not null and no_ingredient.vocabulary_id is null then 'omop.unknown_drug_concept'
               when no_ingredient.drug_concept_id is not null then 'omop.no_ingredient'
               when exposures.person_id is null then 'omop.required_missing.person_id'
               when exposures.drug_exposure_start_date is null then 'omop.required_missing.dispensed_on'
               when exposures.drug_exposure_end_date < exposures.drug_exposure_start_date then 'omop.end_before_start'
               -- the OHDSI era script skips negative days_supply the same way
               when exposures.days_supply < 0 then 'omop.negative_days_supply'
           end as rule_id
    from exposures
    left join drug_map on drug_map.drug_concept_id = exposures.drug_concept_id
    left join no_ingredient on no_ingredient.drug_concept_id = exposures.drug_concept_id
    where drug_map.drug is not null
       or no_ingredient.drug_concept_id is not null
       or exposures.drug_concept_id is null or exposures.drug_concept_id = 0
       or exposures.drug_exposure_id is null
),

final as (
    select * from in_scope
)

select * from final;

create or replace temp table _omop_prescriptions as
with loadable as (
    select * from _omop_drug_rows where rule_id is null
),

ended as (
    select
        loadable.*,
        -- OHDSI drug_era: end = drug_exposure_end_date, else start + days_supply (when > 0), else start + 1
        coalesce(
            drug_exposure_end_date,
            drug_exposure_start_date + cast(nullif(days_supply, 0) as integer),
            drug_exposure_start_date + 1
        ) as exposure_end
    from loadable
),

strength as (
    -- mg per unit of the ingredient in the drug: amount (solids), or numerator per mL (liquids)
    select drug_concept_id, ingredient_concept_id,
           max(case
               when amount_value > 0 and amount_unit_concept_id in {{ mg_units }}
                   then amount_value * {{ mg_factor_amount }}
               when numerator_value > 0 and numerator_unit_concept_id in {{ mg_units }}
                    and denominator_unit_concept_id = {{ milliliter }}
                   then numerator_value * {{ mg_factor_numerator }} / coalesce(nullif(denominator_value, 0), 1)
           end) as strength_mg
    from _omop_drug_strength
    group by drug_concept_id, ingredient_concept_id
),

dosed as (
    select
        ended.*,
        -- last day covered, inclusive, equals the era script's exposure end
        (ended.exposure_end - ended.drug_exposure_start_date + 1)::bigint as exposure_days,
        strength.strength_mg as known_strength_mg,
        ended.quantity > 0 and strength.strength_mg is not null as dose_known
    from ended
    left join strength
        on strength.drug_concept_id = ended.drug_concept_id
        and strength.ingredient_concept_id = ended.ingredient_concept_id
),

segments as (
    -- exposures longer than {{ max_days }} days: consecutive segments of at most {{ max_days }} days
    select dosed.*, unnest(range(0, dosed.exposure_days, {{ max_days }})) as segment_offset
    from dosed
),

final as (
    select
        cast(drug_exposure_id as varchar)
            || case when selected_ingredients > 1 then ':' || drug else '' end
            || case when segment_offset > 0 then '#' || (segment_offset // {{ max_days }} + 1) else '' end
            as prescription_id,
        cast(person_id as varchar) as person_id,
        drug_exposure_start_date + cast(segment_offset as integer) as dispensed_on,
        drug as drug,
        case when dose_known then known_strength_mg else 1.0 end as strength_mg,
        case
            when dose_known then quantity * least({{ max_days }}, exposure_days - segment_offset) / exposure_days
            else cast(least({{ max_days }}, exposure_days - segment_offset) as double)
        end as quantity,
        least({{ max_days }}, exposure_days - segment_offset)::bigint as days_supply,
        case when dose_known then known_strength_mg * quantity / exposure_days end as daily_dose_mg,
        'unknown' as indication,
        cast(nullif(provider_id, 0) as varchar) as prescriber_id,
        NULL::varchar as pharmacy_id,
        drug_exposure_id as _source_row
    from segments
)

select * from final;
