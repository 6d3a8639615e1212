"""`ktrdr sandbox mcp`: parse, pin, then serve (or print the client config).

The `mcp` SDK is imported only here, inside the command: `ktrdr --help` and
`ktrdr sandbox list` never load it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import click

from ktrdr.cli.output import print_json
from ktrdr.cli.sandbox.errors import SandboxError
from ktrdr.cli.sandbox.group import sandbox


@sandbox.command("mcp")
@click.option(
    "--instance",
    "instance",
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
    from ktrdr.cli.sandbox.mcp_scope import resolve_scope

    if instance is not None and all_instances:
        raise click.UsageError("pass --instance NAME or --all-instances, not both")
    scope = resolve_scope(instance=instance, all_instances=all_instances, cwd=Path.cwd())
    if print_config:
        print_json(client_config(scope.pinned_id, cwd=scope.cwd))
        return
    try:
        from ktrdr.cli.sandbox.mcp_server import serve
    except ImportError as e:
        raise SandboxError(
            f"the MCP server needs the `mcp` package ({e}): install the agent extra, "
            "e.g. `pip install -e '.[agent]'` (`make setup` does)"
        ) from e
    serve(scope)


def client_config(pinned_id: str | None, *, cwd: Path) -> dict[str, Any]:
    """An `mcpServers` entry: this ktrdr's absolute path, the pin, and this KTRDR_HOME (a
    client starts servers with its own environment, which may name another home)."""
    from ktrdr.cli.sandbox.home import ktrdr_home

    args = ["sandbox", "mcp", *(["--instance", pinned_id] if pinned_id else ["--all-instances"])]
    env = {"KTRDR_HOME": str(ktrdr_home().absolute())}
    if os.environ.get("KTRDR_IMAGES"):
        env["KTRDR_IMAGES"] = os.environ["KTRDR_IMAGES"]
    entry: dict[str, Any] = {"command": str(ktrdr_executable()), "args": args, "env": env}
    if pinned_id is None:
        entry["cwd"] = str(cwd.absolute())  # sandbox_create makes worktrees of this checkout
    return {"mcpServers": {f"ktrdr-{pinned_id or 'sandbox'}": entry}}


def ktrdr_executable() -> Path:
    """The `ktrdr` script next to this Python (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "ktrdr"
    if beside.is_file():
        return beside.absolute()
    found = shutil.which("ktrdr")
    if found is None:
        raise SandboxError(
            "cannot find the ktrdr executable (not next to this Python, not on PATH): "
            "install ktrdr (`make setup`) and retry"
        )
    return Path(found).absolute()
