"""The one error type for failures a user can act on.

Raise `KtrdrError("what failed: why; what to do")`. The CLI entry point renders it as a
single `Error: …` line on stderr and exits with `exit_code`; anything else is a bug and
keeps its traceback.
"""


class KtrdrError(Exception):
    """An expected failure, rendered as one line without a traceback."""

    exit_code: int = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message
