-- Treatment episodes (gaps and islands), one row per episode of each analysed
-- ingredient (and 'any_benzodiazepine' at class level), from the dispensings and
-- their gaps (02a, dispensing_gaps). Conventions: docs/episodes.md.
-- Episodes keep OHDSI drug_era semantics: they are NOT cut at observation end
-- or death (censoring belongs to the cohort and outcome steps, 03/04), so with
-- stockpiling off and a 30-day window every drug_era row has its twin.
--   {{ persistence_window_days }} max days without supply inside one episode

create or replace table episodes as
with flagged as (
    select
        *,
        -- OHDSI drug_era reading of the persistence window: a dispensing joins the
        -- episode when it falls at most `window` days after the last covered day
        -- (i.e. at most window - 1 days without supply); later starts a new episode
        case
            when gap_days is null then 1
            when gap_days > {{ persistence_window_days }} then 1
            else 0
        end as starts_episode
    from dispensing_gaps
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
