"""How long a piece of text from outside (a command-line argument, an MCP tool argument) may be,
and which characters it may not hold. The CLI and the MCP server check the same limits, so an
agent gets the same one-line usage error from either.

No click, no printing: `text_problem` says what is wrong, its callers raise.
"""

from __future__ import annotations

import unicodedata

MAX_TEXT = 4096  # any argument: a path, a -k expression, a symbol (PATH_MAX is 4096)
MAX_NAME = 256  # an instance name, id or path to one; a service; an operation id
MAX_SHOWN = 40  # characters of a refused value quoted in the error


def text_problem(value: str, *, max_length: int = MAX_TEXT) -> str | None:
    """Why `value` is refused, or None: longer than `max_length`, or holding a control
    character (NUL, the other C0 codes including tab and newline, DEL, C1). Neither ever belongs
    in a name, a path, an id or a pytest argument, and both turn into tracebacks further down
    (an `embedded null byte`, `Argument list too long`, `URL too long`)."""
    if len(value) > max_length:
        return f"is {len(value)} characters long (at most {max_length})"
    for position, char in enumerate(value):
        if unicodedata.category(char) == "Cc":
            return f"contains a control character (U+{ord(char):04X} at position {position})"
    return None


def shown(value: str) -> str:
    """`value` quoted for an error line: its repr (control characters escaped), cut short."""
    if len(value) <= MAX_SHOWN:
        return repr(value)
    return repr(value[:MAX_SHOWN]) + "…"
