"""Click parameter types shared by every command group: the limits of ktrdr.cli.limits on
names and ids, refused as one `Error:` line with exit code 2 (a usage error)."""

from __future__ import annotations

from typing import Any

import click

from ktrdr.cli.limits import MAX_NAME, MAX_TEXT, shown, text_problem
from ktrdr.errors import ExitCode, KtrdrError


class BoundedText(click.ParamType[str, Any]):
    """A string of at most `max_length` characters without control characters."""

    name = "text"

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        problem = text_problem(str(value), max_length=self.max_length)
        if problem:
            label = param.human_readable_name if param is not None else "argument"
            # KtrdrError, not click's BadParameter: the root group renders it as one line.
            raise KtrdrError(f"{label} {shown(str(value))} {problem}", exit_code=ExitCode.USAGE)
        return str(value)


NAME = BoundedText(MAX_NAME)  # an instance name, id or path; a service; an operation id
# `create NAME`: its real limit (56 in a checkout named ktrdr) depends on the checkout's name
# and is checked by create itself, so the one message names the one limit that applies.
NEW_NAME = BoundedText(MAX_TEXT)
