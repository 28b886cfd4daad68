-- Treatment episodes (gaps and islands), one row per episode of each analysed
-- ingredient, plus class-level episodes ('any_benzodiazepine', doses in
-- diazepam equivalents) when drugs.class_level is on. Conventions: docs/episodes.md.
-- Episodes keep OHDSI drug_era semantics: they are NOT cut at observation end
-- or death (censoring belongs to the cohort and outcome steps, 03/04), so with
-- stockpiling off and a 30-day window every drug_era row has its twin.
--   {{ ingredients }}           list of lower-case INNs
--   {{ class_level }}           bool
--   {{ stockpiling }}           bool: carry leftover supply of early refills forward
--   {{ persistence_window_days }} max days without supply inside one episode

create or replace table episodes as
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
    select
        *,
        row_number() over person_drug as dispensing_seq,
        -- days since 1970-01-01: integer arithmetic for the stockpiling sums
        dispensed_on - date '1970-01-01' as dispensed_day,
        sum(days_supply) over person_drug as cumulative_supply
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
    window person_drug as (
        partition by person_id, ingredient
        order by dispensed_on, prescription_id
        rows between unbounded preceding and current row
    )
),

gaps as (
    select
        *,
        max(covered_end) over (
            partition by person_id, ingredient
            order by dispensed_on, prescription_id
            rows between unbounded preceding and 1 preceding
        ) as previous_covered_end
    from covered
),

flagged as (
    select
        *,
        -- OHDSI drug_era reading of the persistence window: a dispensing joins the
        -- episode when it falls at most `window` days after the last covered day
        -- (i.e. at most window - 1 days without supply); later starts a new episode
        case
            when previous_covered_end is null then 1
            when dispensed_on - previous_covered_end > {{ persistence_window_days }} then 1
            else 0
        end as starts_episode
    from gaps
),

numbered as (
    select
        *,
        sum(starts_episode) over person_drug as episode_number,
        lag(daily_dose_mg) over person_drug as previous_daily_dose_mg,
        last_value(case when starts_episode = 1 then daily_dose_mg end ignore nulls)
            over person_drug as episode_first_daily_dose_mg
    from flagged
    window person_drug as (
        partition by person_id, ingredient
        order by dispensed_on, prescription_id
        rows between unbounded preceding and current row
    )
),

dose_steps as (
    select
        *,
        -- the last run of non-increasing doses starts at the episode's first
        -- dispensing or at its last dose increase (taper rule, docs/episodes.md)
        case
            when starts_episode = 1 then dispensing_seq
            when daily_dose_mg > previous_daily_dose_mg then dispensing_seq
            else 0
        end as run_start_key,
        daily_dose_mg > episode_first_daily_dose_mg as above_first_dose
    from numbered
),

per_episode as (
    select
        person_id,
        ingredient,
        episode_number::integer as episode_number,
        min(dispensed_on) as episode_start,
        max(covered_end) as supply_covered_end,
        count(*) as dispensings,
        sum(days_supply) as days_supplied,
        sum(daily_dose_mg * days_supply) / sum(days_supply) as mean_daily_dose_mg,
        max(daily_dose_mg) as max_daily_dose_mg,
        arg_min_null(daily_dose_mg, dispensing_seq) as first_daily_dose_mg,
        arg_max_null(daily_dose_mg, dispensing_seq) as last_daily_dose_mg,
        sum(daily_dose_dde_mg * days_supply) / sum(case when daily_dose_dde_mg is not null then days_supply end)
            as mean_daily_dose_dde_mg,
        max(daily_dose_dde_mg) as max_daily_dose_dde_mg,
        -- mg dispensed: given daily dose * days, else strength * quantity
        sum(daily_dose_mg * days_supply) as cumulative_dose_mg,
        min(dispensed_on) filter (where above_first_dose) as first_increase_on,
        arg_max_null(daily_dose_mg, run_start_key) as last_run_first_daily_dose_mg,
        arg_min_null(indication, dispensing_seq) as indication
    from dose_steps
    group by person_id, ingredient, episode_number
),

final as (
    select
        person_id,
        ingredient,
        episode_number,
        episode_start,
        -- last day covered by supply (inclusive), whatever observation says
        supply_covered_end as episode_end,
        (supply_covered_end - episode_start + 1)::integer as duration_days,
        dispensings,
        days_supplied::bigint as days_supplied,
        mean_daily_dose_mg,
        max_daily_dose_mg,
        first_daily_dose_mg,
        last_daily_dose_mg,
        mean_daily_dose_dde_mg,
        max_daily_dose_dde_mg,
        cumulative_dose_mg,
        (first_increase_on - episode_start)::integer as days_to_first_increase,
        max_daily_dose_mg / first_daily_dose_mg as dose_escalation_ratio,
        -- how the supply ended; the cohort step makes it 'ongoing' when observation ends first
        case
            when last_daily_dose_mg < last_run_first_daily_dose_mg then 'taper'
            else 'abrupt'
        end as supply_ending,
        indication
    from per_episode
)

select * from final;
