"""benzo-outcomes: how often physical dependence develops on benzodiazepines, and after how long.

Flow: ingest -> privacy gate -> validate -> transform (episodes, cohort, outcomes)
-> estimate -> publish. One module per stage; set logic in SQL under
``pipeline/transform/sql``.
"""

__version__ = "0.1.0"
