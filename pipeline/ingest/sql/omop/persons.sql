-- person, observation_period and death -> the contract's persons (one period each) and the
-- rows set aside. sex: the gender concept -> F, M, U expression.

-- every observation period with the rule it breaks, if any (persons and _omop_period_rows read it)
create or replace temp table _omop_periods as
with periods as (
    select * from _omop_observation_period
),

final as (
    select *,
           case
               when person_id not in (select person_id from _omop_person where person_id is not null) then 'omop.person_missing'
               when observation_period_start_date is null then 'omop.required_missing.observation_start'
               when observation_period_end_date is null then 'omop.required_missing.observation_end'
               when observation_period_end_date < observation_period_start_date then 'omop.end_before_start'
           end as invalid_rule
    from periods
)

select * from final;
create or replace temp table _omop_person_rows as
with persons as (
    select * from _omop_person
),

periods as (
    select * from _omop_periods
),

exposures_per_period as (
    select periods.person_id, periods.observation_period_id,
           periods.observation_period_start_date, periods.observation_period_end_date,
           count(prescriptions.prescription_id) as exposures
    from periods
    left join _omop_prescriptions as prescriptions
        on prescriptions.person_id = cast(periods.person_id as varchar)
        and prescriptions.dispensed_on between periods.observation_period_start_date and periods.observation_period_end_date
    where periods.invalid_rule is null
    group by all
),

ranked as (
    -- the contract has one period per person: the one holding most selected
    -- exposures; ties go to the latest-ending, then latest-starting period
    select *,
           row_number() over (
               partition by person_id
               order by exposures desc, observation_period_end_date desc, observation_period_start_date desc,
                        observation_period_id
           ) as period_rank
    from exposures_per_period
),

deaths as (
    select person_id, min(death_date) as death_date
    from _omop_death
    where person_id is not null and death_date is not null
    group by person_id
),

final as (
    select
        persons.person_id,
        coalesce(persons.year_of_birth, year(persons.birth_datetime)) as birth_year,
        {{ sex }} as sex,
        ranked.observation_period_start_date as observation_start,
        ranked.observation_period_end_date as observation_end,
        deaths.death_date,
        case
            when persons.person_id is null then 'omop.required_missing.person_id'
            when coalesce(persons.year_of_birth, year(persons.birth_datetime)) is null then 'omop.required_missing.birth_year'
            when ranked.person_id is null then 'omop.no_observation_period'
        end as rule_id
    from persons
    left join ranked on ranked.person_id = persons.person_id and ranked.period_rank = 1
    left join deaths on deaths.person_id = persons.person_id
)

select * from final;

create or replace temp table _omop_period_rows as
with periods as (
    select * from _omop_periods
),

final as (
    select periods.observation_period_id, periods.person_id,
           coalesce(
               periods.invalid_rule,
               case when chosen.person_id is null then 'omop.other_observation_period' end
           ) as rule_id
    from periods
    left join _omop_person_rows as chosen
        on chosen.person_id = periods.person_id
        and chosen.rule_id is null
        and chosen.observation_start = periods.observation_period_start_date
        and chosen.observation_end = periods.observation_period_end_date
)

select * from final;

create or replace temp table _omop_death_rows as
with deaths as (
    select *, row_number() over (partition by person_id order by death_date nulls last) as death_rank
    from _omop_death
),

final as (
    select person_id, death_date,
           case
               when person_id is null then 'omop.required_missing.person_id'
               when person_id not in (select person_id from _omop_person where person_id is not null) then 'omop.person_missing'
               when death_date is null then 'omop.required_missing.death_date'
               when death_rank > 1 then 'omop.duplicate_death'
           end as rule_id
    from deaths
)

select * from final;
