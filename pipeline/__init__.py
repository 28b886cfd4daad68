"""benzo-outcomes: how often physical dependence develops on benzodiazepines, and after how long.

Flow: ingest -> privacy gate -> validate -> transform (episodes, cohort, outcomes)
-> estimate -> publish. One module per stage; set logic in SQL under
``pipeline/transform/sql``.
"""

__version__ = "0.1.0"

import os as _os

# One BLAS thread: the estimators fit many small models, and threaded OpenBLAS
# stalls them when the cores are busy (measured on the 2-core machine: the
# estimate stage took 18.6 s with default threads, 1.6 s with one).
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    _os.environ.setdefault(_variable, "1")
