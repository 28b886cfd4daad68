-- Dispensings of every analysed ingredient, in order per person and ingredient,
-- with the last day their supply covers and the gap to the supply before them:
-- the one pass over dispensings that the episodes (02b) and the
-- persistence-window sensitivity analyses read. No persistence window is
-- applied here: under a window w, a dispensing starts a new episode when its
-- gap_days > w (episode number = running sum of those flags), so every window's
-- episodes come from this one table. Class-level rows ('any_benzodiazepine',
-- doses in diazepam equivalents) when drugs.class_level is on.
-- Conventions: docs/episodes.md.
--   {{ ingredients }}  list of lower-case INNs
--   {{ class_level }}  bool
--   {{ stockpiling }}  bool: carry leftover supply of early refills forward

create or replace table dispensing_gaps as
with ingredient_dispensings as (
    select
        person_id,
        drug as ingredient,
        prescription_id,
        dispensed_on,
        days_supply,
        supply_end,
        indication,
        daily_dose_mg,
        daily_dose_dde_mg
    from stg_prescriptions
    where list_contains({{ ingredients }}, drug)
),

class_dispensings as (
    -- class level: every benzodiazepine of the equivalence table; all dose
    -- columns of these episodes are diazepam-equivalent mg
    select
        person_id,
        'any_benzodiazepine' as ingredient,
        prescription_id,
        dispensed_on,
        days_supply,
        supply_end,
        indication,
        daily_dose_dde_mg as daily_dose_mg,
        daily_dose_dde_mg
    from stg_prescriptions
    where {{ class_level }} and daily_dose_dde_mg is not null
),

dispensings as (
    select * from ingredient_dispensings
    union all
    select * from class_dispensings
),

sequenced as (
    -- one sort for every window of this step (same partition and order): the
    -- running number and supply, and (stockpiling off) the last day covered by
    -- the earlier fills, which is then the running max of their own supply_end
    select
        *,
        -- (each frame written out: the Spark transpiler drops a frame added to a named window)
        row_number() over person_drug as dispensing_seq,
        -- days since 1970-01-01: integer arithmetic for the stockpiling sums
        dispensed_on - date '1970-01-01' as dispensed_day,
        sum(days_supply) over (
            partition by person_id, ingredient
            order by dispensed_on, prescription_id
            rows between unbounded preceding and current row
        ) as cumulative_supply,
        max(supply_end) over (
            partition by person_id, ingredient
            order by dispensed_on, prescription_id
            rows between unbounded preceding and 1 preceding
        ) as previous_supply_end
    from dispensings
    window person_drug as (
        partition by person_id, ingredient
        order by dispensed_on, prescription_id
        rows between unbounded preceding and current row
    )
),

covered as (
    -- covered_end: last day covered by this and all earlier fills.
    -- Stockpiling off: the fill's own supply_end (OHDSI drug_era).
    -- Stockpiling on: each fill's supply starts the day after the carried supply
    -- of the earlier fills ends (or on its dispensing day, if later), so
    --   carried_end_i = max_{k<=i} (dispensed_k + sum_{j=k..i} days_supply_j) - 1
    --                 = cumulative_supply_i - 1 + max_{k<=i} (dispensed_k - cumulative_supply_{k-1})
    -- (a running max: no recursion needed).
    select
        *,
        case
            when {{ stockpiling }} then
                date '1970-01-01' + cast(
                    cumulative_supply - 1
                    + max(dispensed_day - (cumulative_supply - days_supply)) over person_drug
                    as integer)
            else supply_end
        end as covered_end
    from sequenced
    where {{ stockpiling }}
    window person_drug as (
        partition by person_id, ingredient
        order by dispensed_on, prescription_id
        rows between unbounded preceding and current row
    )
),

gaps as (
    -- stockpiling on: the carried ends need the running max above first, then
    -- one more window for the previous fills' carried end
    select
        *,
        max(covered_end) over (
            partition by person_id, ingredient
            order by dispensed_on, prescription_id
            rows between unbounded preceding and 1 preceding
        ) as previous_covered_end
    from covered
    union all
    -- stockpiling off (the default): no further sort
    select *, supply_end as covered_end, previous_supply_end as previous_covered_end
    from sequenced
    where not {{ stockpiling }}
),

final as (
    select
        person_id,
        ingredient,
        prescription_id,
        dispensing_seq,
        dispensed_on,
        days_supply,
        indication,
        daily_dose_mg,
        daily_dose_dde_mg,
        covered_end,
        -- days from the last day covered by the earlier fills to this dispensing
        -- (NULL for the first): the OHDSI drug_era reading of the persistence window
        -- puts the dispensing in the same episode when gap_days <= window
        (dispensed_on - previous_covered_end)::integer as gap_days,
        -- the longest gap up to and including this dispensing: the dispensing belongs
        -- to the first episode under a window w exactly when this is NULL or <= w
        max((dispensed_on - previous_covered_end)::integer) over (
            partition by person_id, ingredient
            order by dispensing_seq
            rows between unbounded preceding and current row
        ) as longest_gap_days
    from gaps
)

select * from final;
