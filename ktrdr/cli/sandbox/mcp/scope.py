"""What a `ktrdr sandbox mcp` server may act on: one pinned instance, or (with --all-instances)
every instance of this home.

The pin is decided once, when the server starts, from `--instance NAME` or the instance
directory it was started in. Tools of a pinned server take no instance argument, so no
argument (a name, a path, `..`, a port) can point them anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.instances.locate import Instance, locate
from ktrdr.cli.sandbox.lifecycle import preflight
from ktrdr.envfile import SANDBOX_ENV_FILENAME, find_upwards
from ktrdr.errors import ExitCode


@dataclass(frozen=True)
class Scope:
    cwd: Path
    pinned_id: str | None = None
    pinned_root: Path | None = None

    @property
    def pinned(self) -> bool:
        return self.pinned_id is not None

    def describe(self) -> str:
        return f"instance {self.pinned_id}" if self.pinned else "all instances of this home"

    def target(self, name: str | None) -> Instance:
        """The instance a tool call acts on: always the pinned one when pinned (re-read each
        call, so a destroyed or re-created instance is noticed), else `name`."""
        if self.pinned_id is None or self.pinned_root is None:
            if not name:
                # A usage error, like a missing NAME on the command line.
                raise SandboxError(
                    "pass the instance argument: this server serves all instances",
                    exit_code=ExitCode.USAGE,
                )
            return locate(name, self.cwd)
        if not (self.pinned_root / SANDBOX_ENV_FILENAME).is_file():
            raise SandboxError(
                f"pinned instance {self.pinned_id} is gone ({self.pinned_root} has no "
                f"{SANDBOX_ENV_FILENAME}; destroyed?): this server has nothing left to act on"
            )
        instance = locate(None, self.pinned_root)
        if instance.instance_id != self.pinned_id:
            raise SandboxError(
                f"{self.pinned_root} now holds instance {instance.instance_id}, not the pinned "
                f"{self.pinned_id}: restart the server"
            )
        return instance


def resolve_scope(*, instance: str | None, all_instances: bool, cwd: Path) -> Scope:
    """`--instance NAME` pins to NAME; otherwise an instance directory (cwd or a parent) pins to
    that instance unless `--all-instances`; otherwise refuse: an agent gets all instances only
    when someone asked for it."""
    if instance is not None and all_instances:
        raise SandboxError("pass --instance NAME or --all-instances, not both")
    if all_instances:
        return Scope(cwd=cwd)
    if instance is None and find_upwards(SANDBOX_ENV_FILENAME, cwd) is None:
        raise SandboxError(
            f"no instance to pin the MCP server to: {cwd} is not inside an instance; pass "
            "--instance NAME (one instance), or --all-instances (every instance of this home)"
        )
    found = locate(instance, cwd)
    preflight.check_owner(found)
    return Scope(cwd=cwd, pinned_id=found.instance_id, pinned_root=found.root.resolve())
