-- Reference table ref_duration_band: one row per duration band of
-- estimate.duration_band_lower_days (order, lower bound in days, label), rendered by
-- pipeline.transform from the configuration.
create or replace table ref_duration_band as
with bands as (
    select * from ({{ duration_band_rows }}) as t(band_order, lower_days, duration_band)
),

final as (
    select band_order::integer as band_order, lower_days::integer as lower_days, duration_band::varchar as duration_band
    from bands
)

select * from final;
