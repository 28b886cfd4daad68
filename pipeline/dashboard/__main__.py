"""``python -m pipeline.dashboard [...]`` = ``benzo-outcomes serve [...]`` (kept for old scripts)."""

import sys

from pipeline.cli import main

if __name__ == "__main__":
    main(["serve", *sys.argv[1:]])
