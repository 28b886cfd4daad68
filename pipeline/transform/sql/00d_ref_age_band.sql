-- Age bands from the settings (pipeline.transform.age_bands), the first starting at
-- cohort.min_age_years:
-- one row per band: lower bound (inclusive), upper bound (exclusive), label. An open end is
-- the type's extreme (the integer range's ends for ages, -/+ infinity for doses), so a value v
-- is in a band when `v >= lower and v < upper`; a NULL value is in none. The cohort (03c) and
-- the sensitivity analyses band with these.
--   {{ age_band_rows }}

create or replace table ref_age_band as
select
    coalesce(cast(lower_years as integer), -2147483648) as lower_years,
    coalesce(cast(upper_years as integer), 2147483647) as upper_years,
    cast(age_band as varchar) as age_band
from ({{ age_band_rows }}) as t(lower_years, upper_years, age_band);
