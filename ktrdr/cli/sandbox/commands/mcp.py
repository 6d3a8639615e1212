"""`ktrdr sandbox mcp`: parse, pin, then serve (or print the client config).

The `mcp` SDK is imported only here, inside the command: `ktrdr --help` and
`ktrdr sandbox list` never load it.
"""

from __future__ import annotations

from pathlib import Path

import click

from ktrdr.cli.output import print_json
from ktrdr.cli.params import NAME
from ktrdr.cli.sandbox.base.errors import SandboxError


@click.command("mcp")
@click.option(
    "--instance",
    "instance",
    type=NAME,
    metavar="NAME",
    help="Pin the server to this instance (default: the instance you are in).",
)
@click.option(
    "--all-instances",
    is_flag=True,
    help="Serve every instance of this home (adds sandbox_create and destroy --all).",
)
@click.option(
    "--print-config",
    is_flag=True,
    help="Print the JSON an MCP client needs to launch this server, and exit.",
)
def mcp_command(instance: str | None, all_instances: bool, print_config: bool) -> None:
    """Model Context Protocol server over stdio for coding agents.

    Pinned to one instance (--instance NAME, or the instance directory it starts in), its
    tools act only on that instance and take no instance argument. See docs/sandbox.md.
    """
    from ktrdr.cli.sandbox.mcp.config import client_config
    from ktrdr.cli.sandbox.mcp.scope import resolve_scope

    if instance is not None and all_instances:
        raise click.UsageError("pass --instance NAME or --all-instances, not both")
    scope = resolve_scope(instance=instance, all_instances=all_instances, cwd=Path.cwd())
    if print_config:
        print_json(client_config(scope.pinned_id, cwd=scope.cwd))
        return
    try:
        from ktrdr.cli.sandbox.mcp.server import serve
    except ImportError as e:
        raise SandboxError(
            f"the MCP server needs the `mcp` package ({e}): install the agent extra, "
            "e.g. `pip install -e '.[agent]'` (`make setup` does)"
        ) from e
    serve(scope)
