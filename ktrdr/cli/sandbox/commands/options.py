"""Options several commands share, written once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def json_flag(help_text: str = "Print JSON.") -> Decorator:
    return click.option("--json", "as_json", is_flag=True, help=help_text)


def gate_timeout(default: float, waits_for: str) -> Decorator:
    """`--timeout S`: how long the Startability Gate waits."""
    return click.option(
        "--timeout",
        type=click.FloatRange(min=1),
        default=default,
        show_default=True,
        help=f"Seconds the Startability Gate waits for {waits_for}.",
    )
