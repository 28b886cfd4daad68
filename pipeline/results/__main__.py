"""``python -m pipeline.results``: the results store by hand.

    python -m pipeline.results append reports/exports [--results results/]   # append a published run (once)
    python -m pipeline.results runs [--results results/]                     # list the stored runs

Problems are one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.results import DEFAULT_RESULTS_DIR, store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.results", description="The results store.")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("append", help="append the run published in an exports folder (a stored run is skipped)")
    add.add_argument("exports", type=Path, help="an exports folder, e.g. reports/exports")
    add.add_argument("--results", type=Path, default=DEFAULT_RESULTS_DIR, help="results store folder (default results/)")
    listing = commands.add_parser("runs", help="list the stored runs")
    listing.add_argument("--results", type=Path, default=DEFAULT_RESULTS_DIR, help="results store folder (default results/)")
    args = parser.parse_args(argv)
    try:
        if args.command == "append":
            outcome = store.append_exports(args.exports, args.results)
            state = "appended" if outcome["appended"] else "already stored, nothing appended"
            print(f"run {outcome['run_id']}: {state} (result_id {outcome['first_result_id']}.."
                  f"{outcome['last_result_id']}) in {store.store_path(args.results)}")
        else:
            runs = store.read(args.results)["runs"]
            print(runs[["run_id", "run_time", "cdm_name", "first_result_id", "last_result_id",
                        "result_rows"]].to_string(index=False))
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
