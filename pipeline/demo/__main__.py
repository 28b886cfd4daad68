"""``python -m pipeline.demo OUT_DIR [--persons N] [--seed S] [--format csv|parquet]``.

A thin developer entry point; the project CLI (``python -m pipeline demo``) calls
``pipeline.demo.generator.generate`` the same way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.config import load_config
from pipeline.demo.generator import generate
from pipeline.errors import PipelineError


def main(argv: list[str] | None = None) -> int:
    config = load_config()
    parser = argparse.ArgumentParser(prog="python -m pipeline.demo", description="Write the synthetic demo extract.")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--persons", type=int, default=config.demo.persons)
    parser.add_argument("--seed", type=int, default=config.demo.seed)
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv")
    args = parser.parse_args(argv)
    try:
        generate(args.out_dir, args.persons, args.seed, config, fmt=args.format)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
