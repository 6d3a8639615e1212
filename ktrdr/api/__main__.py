"""`python -m ktrdr.api [--reload]`: the backend on port 8000 (the compose `backend` service)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import ktrdr

API_PORT = 8000
# A dev server: in-flight requests get this long when it stops or reloads.
GRACEFUL_SHUTDOWN_S = 3


def main(argv: list[str] | None = None) -> None:
    from ktrdr.api.server import serve

    parser = argparse.ArgumentParser(prog="python -m ktrdr.api")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=API_PORT)
    parser.add_argument("--reload", action="store_true", help="restart when the source changes")
    args = parser.parse_args(argv)
    serve(
        "ktrdr.api.app:app",
        host=args.host,
        port=args.port,
        reload_dir=Path(ktrdr.__file__).parent if args.reload else None,
        log_level=os.environ.get("KTRDR_LOG_LEVEL", "info"),
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


if __name__ == "__main__":
    main()
