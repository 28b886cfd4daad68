"""Tooling outside the pipeline's stages: the benchmark and the simulation study.

- ``python -m bench`` (``make bench``): every stage at 1M and 10M prescriptions (``--sizes``),
  time, ratio to DuckDB's bare load, peak memory; see ``bench/run.py`` and docs/performance.md.
- ``bench/generate.py``: the one contract-shaped extract generator (streamed; any size).
- ``bench/measure.py``: the one measurement (a subprocess, its wall time and peak memory).
- ``bench/report.py``: the one report (tables, targets, ``bench/out/results.json``).
- ``python -m bench.simulate`` (``make simulate``): bias and coverage of the estimators.
"""
