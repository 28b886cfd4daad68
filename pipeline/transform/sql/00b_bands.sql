-- Age and dose bands from the settings (pipeline.transform.age_bands / dose_bands):
-- one row per band, lower bound (NULL: open below), upper bound (NULL: open above),
-- label. The cohort (03c) and the sensitivity analyses band with these.
--   {{ age_band_rows }} {{ dose_band_rows }}

create or replace table ref_age_band as
select
    cast(lower_years as integer) as lower_years,
    cast(upper_years as integer) as upper_years,
    cast(age_band as varchar) as age_band
from ({{ age_band_rows }}) as t(lower_years, upper_years, age_band);

create or replace table ref_dose_band as
-- diazepam-equivalent mg/day; long-term therapeutic users average
-- 15 mg/day (Busto 1989), so 10-19.9 is the usual therapeutic band
select
    cast(lower_mg as double) as lower_mg,
    cast(upper_mg as double) as upper_mg,
    cast(dose_band as varchar) as dose_band
from ({{ dose_band_rows }}) as t(lower_mg, upper_mg, dose_band);
