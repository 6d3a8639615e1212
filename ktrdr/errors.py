"""The one error type for failures a user can act on, the Ctrl-C that carries its own words, and
the table of exit codes the `ktrdr` process ends with.

Raise `KtrdrError("what failed: why; what to do")`. The CLI's root group renders it as a
single `Error: …` line on stderr and exits with its `exit_code`; anything else is a bug and
keeps its traceback. A KeyboardInterrupt (Ctrl-C) is turned into one line and exit 130 by the
root group too; a command that has more to say raises `Interrupted(hint)`.
"""

from enum import IntEnum


class ExitCode(IntEnum):
    """Every code `ktrdr` exits with (docs/sandbox.md, "Exit codes", shows the same table).

    Two commands pass a child's code through instead: `ktrdr sandbox test-e2e` ends with the
    E2E suite's own code (pytest's: 0 passed, 1 tests failed, 5 no tests collected, ...), and
    so does the `sandbox_test_e2e` MCP tool's error; their failures before the suite runs
    (not an instance, stack down) are FAILURE like any other.
    """

    SUCCESS = 0
    # An expected failure (a KtrdrError): one `Error: …` line saying what failed, why and what
    # to do. Also `doctor` with errors left, `health` of an API that is not ok, a declined
    # confirmation prompt (Click's `Aborted!`), and `logs` when `docker compose logs` fails.
    FAILURE = 1
    # The command line is wrong: Click's usage errors (a missing or bad argument or option),
    # and their equivalents: a bad -p/-u value from the environment, an MCP tool argument or
    # a tool the server does not offer.
    USAGE = 2
    # `up` / `resume` ran the Startability Gate and it failed: the stack was started but is
    # not usable (the verdict, the failing check and the logs are printed first).
    GATE_FAILED = 3
    # Ctrl-C: 128 + SIGINT, as a shell reports a process a signal stopped.
    INTERRUPTED = 130


class KtrdrError(Exception):
    """An expected failure, rendered as one line without a traceback."""

    exit_code: int = ExitCode.FAILURE

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class Interrupted(KeyboardInterrupt):
    """Ctrl-C with the words the command adds (which instance is half-done, what to rerun):
    the root group prints `hint` instead of its generic line and exits 130. An empty hint
    stops quietly (the normal way to end `logs --follow`)."""

    def __init__(self, hint: str = "") -> None:
        super().__init__(hint)
        self.hint = hint
