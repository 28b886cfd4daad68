-- Cohort attrition: persons remaining after each exclusion criterion of the
-- candidates (03a), in order.
--   {{ min_age_years }} {{ washout_days }}

create or replace table cohort_attrition as
with steps as (
    select * from (values
        (1, 'has_episode', 'first episode of the drug (persons in the extract without one excluded)'),
        (2, 'valid_person', 'person record present with birth year and observation start, first episode starting before observation end and death'),
        (3, 'adult', 'age >= {{ min_age_years }} at episode start (year of start - birth year)'),
        (4, 'prior_observation', '>= {{ washout_days }} days of observation before episode start'),
        (5, 'no_prior_benzodiazepine', 'no benzodiazepine of any kind (ATC N05BA, N05CD, N03AE01) dispensed in the {{ washout_days }} days before episode start'),
        (6, 'no_prior_dependence', 'no dependence, withdrawal or remission code before episode start (incident outcomes only)')
    ) as t(step, criterion, reason)
),

remaining as (
    -- persons still in after each step: all earlier criteria hold
    select
        count(*) as step_0,
        count(*) filter (where has_episode) as step_1,
        count(*) filter (where has_episode and valid_person) as step_2,
        count(*) filter (where has_episode and valid_person and adult) as step_3,
        count(*) filter (where has_episode and valid_person and adult and prior_observation) as step_4,
        count(*) filter (where has_episode and valid_person and adult and prior_observation
                         and no_prior_benzodiazepine) as step_5,
        count(*) filter (where has_episode and valid_person and adult and prior_observation
                         and no_prior_benzodiazepine and no_prior_dependence) as step_6
    from cohort_candidates
),

long as (
    select step_name, persons from remaining
    unpivot (persons for step_name in (step_0, step_1, step_2, step_3, step_4, step_5, step_6))
),

counted as (
    select
        steps.step,
        steps.reason,
        before.persons as persons_before,
        after.persons as persons_after
    from steps
    inner join long as before on before.step_name = 'step_' || (steps.step - 1)
    inner join long as after on after.step_name = 'step_' || steps.step
),

final as (
    select
        step::integer as step,
        reason,
        persons_before::bigint as persons_before,
        (persons_before - persons_after)::bigint as excluded,
        persons_after::bigint as persons_after
    from counted
    order by step
)

select * from final;
