"""Network studies: each site runs the pipeline on its own extract and releases a
result package (``package``); a coordinating centre checks the packages agree on
the analysis settings and pools them by random-effects meta-analysis (``pool``).

- ``split``: cut one native extract into several sites by ``persons.region``
  (how the demo becomes a network; also a test fixture).
- ``package``: a site's release -- its published exports as they are, plus
  ``pooling.csv`` (each poolable estimate on the logit / log-odds scale with its
  standard error) and ``manifest.json`` (version, settings hash, source name,
  file hashes).
- ``meta``: the random-effects estimators (pure functions).
- ``pool``: read and check packages, pool every cell, write the pooled exports.
- ``report``: the pooled report with forest plots.

See docs/network.md.
"""
