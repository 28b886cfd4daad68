"""``python -m pipeline.dashboard [--host H] [--port P] [--results DIR]``: serve the dashboard.

A missing or unreadable store, or a port in use, is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.results import DEFAULT_RESULTS_DIR


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8050, help="port (default 8050)")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS_DIR,
                        help="results store folder or .duckdb file (default: results/)")
    args = parser.parse_args(argv)
    try:
        from pipeline.dashboard.app import create_app

        app = create_app(args.results)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((args.host, args.port))
            except OSError as error:
                raise PipelineError(f"cannot listen on {args.host}:{args.port}: {error.strerror}; "
                                    "choose another with PORT=... (make serve) or --port") from None
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"dashboard on http://{args.host}:{args.port}/ (Ctrl-C stops it)", file=sys.stderr, flush=True)
    app.run(host=args.host, port=args.port, debug=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
