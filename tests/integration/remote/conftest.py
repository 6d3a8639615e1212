"""The tests' second Docker engine: another host, reached only over SSH (scripts/remote-engine.sh).

`remote_engine` (session) runs `remote-engine.sh up` once: a container host on its own bridge
network (own address, own root filesystem, own dockerd, no published port) with sshd, a Docker
context `ktrdr-remote-<id>` whose endpoint is `ssh://ktrdr-remote-<id>` (resolved by a file in
/etc/ssh/ssh_config.d), and the offline images loaded. It is removed at session end (and a stale
one of a killed session by the next `up`). Skipped where this machine cannot run such a host
(not root, no privileged containers, no ssh, offline images missing); a failure when CI is set.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ktrdr.cli.sandbox.base.proc import ProcResult, run
from tests.support.engine import DockerEngine, skip_or_fail

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "remote-engine.sh"
UP_TIMEOUT = 900  # a cold first `up` builds the host image and loads ~1.4 GB of images
CANNOT = 3  # the script's exit status when this machine cannot host a remote engine


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


_engines: list[RemoteEngine] = []


@pytest.fixture(scope="session")
def remote_engine(docker_engine: DockerEngine) -> Iterator[RemoteEngine]:
    env = {**os.environ, "KTRDR_REMOTE_ENGINE_OWNER_PID": str(os.getpid())}
    result = run(
        ["bash", SCRIPT, "up"], env=env, timeout=UP_TIMEOUT, check=False, what="remote-engine.sh up"
    )
    last_error = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
    if result.returncode == CANNOT:
        skip_or_fail(f"no remote Docker engine here: {last_error.removeprefix('Error: ')}")
    if result.returncode != 0:
        pytest.fail(f"remote-engine.sh up failed (exit {result.returncode}):\n{result.stderr}")
    context = result.stdout.strip().splitlines()[-1]
    try:
        address = remote_engine_script("address", context).stdout.strip()
        engine = RemoteEngine(context=context, ssh_host=context, address=address)
        _engines.append(engine)
        yield engine
    finally:
        remote_engine_script("down", context, timeout=180, check=False)


@pytest.fixture(autouse=True)
def _unblock_ssh_after_each_test() -> Iterator[None]:
    """A test that blocked SSH and failed must not leave the next test without a remote."""
    yield
    for engine in _engines:
        if engine.blocked:
            engine.unblock_ssh()
