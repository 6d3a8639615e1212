"""The `ktrdr` console script. Ctrl-C while the CLI is still importing (its first ~0.1 s) or
parsing ends like one during a command: one line and exit 130, not a traceback."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from ktrdr.cli.main import main as run_cli

        run_cli()
    except KeyboardInterrupt:
        sys.stderr.write("\nInterrupted\n")
        raise SystemExit(130) from None
