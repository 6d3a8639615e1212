"""`python -m ktrdr.workers --type backtest|training [--reload]`: the worker server on 8080."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import ktrdr
from ktrdr.workers import WORKER_TYPES
from ktrdr.workers.settings import WORKER_PORT


def main(argv: list[str] | None = None) -> None:
    from ktrdr.api.server import serve

    parser = argparse.ArgumentParser(prog="python -m ktrdr.workers")
    parser.add_argument("--type", choices=WORKER_TYPES, required=True)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=WORKER_PORT)
    parser.add_argument("--reload", action="store_true", help="restart when the source changes")
    args = parser.parse_args(argv)
    os.environ["KTRDR_WORKER_TYPE"] = args.type  # read by WorkerSettings.from_env
    serve(
        "ktrdr.workers.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        reload_dir=Path(ktrdr.__file__).parent if args.reload else None,
        log_level=os.environ.get("KTRDR_LOG_LEVEL", "info"),
        access_log=False,  # the job logs say what happened
    )


if __name__ == "__main__":
    main()
