"""`ktrdr config show`: which API the CLI would talk to, and why."""

from __future__ import annotations

import click

from ktrdr.cli.output import print_fields, print_json
from ktrdr.cli.state import CliState, pass_state


@click.group()
def config() -> None:
    """Inspect the CLI's configuration."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def show(state: CliState, as_json: bool) -> None:
    """Show the resolved API URL and where it came from."""
    target = state.target()
    if as_json:
        print_json(target.to_json())
        return
    source = f"{target.source} {target.env_file}" if target.env_file else target.source
    print_fields([("API URL", target.url), ("Source", source)])
