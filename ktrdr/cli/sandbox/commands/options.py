"""Options several commands share, written once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def json_flag(help_text: str = "Print JSON.") -> Decorator:
    return click.option("--json", "as_json", is_flag=True, help=help_text)


def name_or_all(name: str | None, *, every: bool) -> None:
    """The one check of "NAME or `--all`" (pause, destroy): both at once is a usage error."""
    if every and name:
        raise click.UsageError("pass NAME or --all, not both")


def gate_timeout(default: float, waits_for: str) -> Decorator:
    """`--timeout S`: how long the Startability Gate waits."""
    return click.option(
        "--timeout",
        type=click.FloatRange(min=1),
        default=default,
        show_default=True,
        help=f"Seconds the Startability Gate waits for {waits_for}.",
    )


def allow_rules(command: str) -> Decorator:
    """`--allow RULE` (repeatable): a person overrides one stack policy rule for this run."""
    from ktrdr.cli.sandbox.policy.rules import RULES

    return click.option(
        "--allow",
        "allow",
        metavar="RULE",
        multiple=True,
        type=click.Choice(sorted(RULES)),
        help=f"Let {command} through one stack policy rule (repeatable; see docs/sandbox.md, "
        "'Stack policy'). Never offered to agents over MCP.",
    )
