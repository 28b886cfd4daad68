"""``python -m bench``: see ``bench/run.py``."""

import sys

from bench.report import SizeError
from bench.run import BenchError, main

if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BenchError, SizeError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
