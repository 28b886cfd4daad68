-- Dose bands from the settings (pipeline.transform.dose_bands), diazepam-equivalent mg/day:
-- one row per band: lower bound (inclusive), upper bound (exclusive), label. An open end is
-- the type's extreme (the integer range's ends for ages, -/+ infinity for doses), so a value v
-- is in a band when `v >= lower and v < upper`; a NULL value is in none. The cohort (03c) and
-- the sensitivity analyses band with these.
--   {{ dose_band_rows }}

create or replace table ref_dose_band as
-- diazepam-equivalent mg/day; long-term therapeutic users average
-- 15 mg/day (Busto 1989), so 10-19.9 is the usual therapeutic band
select
    coalesce(cast(lower_mg as double), cast('-infinity' as double)) as lower_mg,
    coalesce(cast(upper_mg as double), cast('infinity' as double)) as upper_mg,
    cast(dose_band as varchar) as dose_band
from ({{ dose_band_rows }}) as t(lower_mg, upper_mg, dose_band);
