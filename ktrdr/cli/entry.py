"""The `ktrdr` console script. Ctrl-C while the CLI is still importing (its first ~0.1 s) ends
like one during a command: one line and exit 130, not a traceback. From parsing on, the root
group in ktrdr.cli.main owns Ctrl-C; this catch only covers the moments around it."""

from __future__ import annotations

import sys

# ExitCode.INTERRUPTED (ktrdr.errors), as a number: the interrupt may come before that module
# is imported. A unit test keeps the two equal.
INTERRUPTED = 130


def main() -> None:
    try:
        from ktrdr.cli.main import main as run_cli

        run_cli()
    except KeyboardInterrupt:
        sys.stderr.write("\nInterrupted\n")
        raise SystemExit(INTERRUPTED) from None
