"""The pipeline on Apache Spark (``make ENGINE=spark``, ``--engine spark``; docs/spark.md).

The same SQL files as on DuckDB, transpiled at run time with sqlglot
(``pipeline.spark.transform``); person-level tables stay on the cluster as
Spark tables, and only aggregated rows (one per covariate pattern) reach the
driver, where the estimators and publish run as on DuckDB.
"""
