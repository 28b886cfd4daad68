"""``python -m pipeline.results append|runs [...]`` = ``benzo-outcomes results append|runs [...]``."""

import sys

from pipeline.cli import main

if __name__ == "__main__":
    main(["results", *sys.argv[1:]])
