"""The tests' second Docker engine as the remote tests see it: `RemoteEngine` (its context, SSH
host and address; commands on it; its SSH cut or blocked) and scripts/remote-engine.sh, which the
`remote_engine` fixture of tests/integration/remote/conftest.py runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ktrdr.cli.sandbox.base.proc import ProcResult, run

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "remote-engine.sh"


def remote_engine_script(*args: object, timeout: float = 120, check: bool = True) -> ProcResult:
    return run(
        ["bash", SCRIPT, *args], timeout=timeout, check=check, what=f"remote-engine.sh {args[0]}"
    )


@dataclass
class RemoteEngine:
    """One remote host: `context` for `docker --context`, `ssh_host` for `ssh`, its `address`."""

    context: str
    ssh_host: str
    address: str
    blocked: bool = field(default=False, compare=False)

    def exec(self, *argv: object, check: bool = True, timeout: float = 60) -> ProcResult:
        """Run argv on the remote host (through the local engine, not over SSH)."""
        return remote_engine_script("exec", self.context, *argv, timeout=timeout, check=check)

    def docker(self, *args: object, check: bool = True, timeout: float = 120) -> ProcResult:
        """`docker --context <remote> …`: the remote engine, over SSH."""
        return run(
            ["docker", "--context", self.context, *args],
            timeout=timeout, check=check, what=f"docker {args[0]} (remote {self.context})",
        )  # fmt: skip

    def drop_ssh(self) -> None:
        """End every open SSH connection to the host at once; new ones are accepted."""
        remote_engine_script("drop-ssh", self.context)

    def block_ssh(self) -> None:
        """Drop every packet to its port 22: open connections hang, new ones time out."""
        remote_engine_script("block-ssh", self.context)
        self.blocked = True

    def unblock_ssh(self) -> None:
        remote_engine_script("unblock-ssh", self.context)
        self.blocked = False
