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

import pytest

from ktrdr.cli.sandbox.base.proc import run
from tests.support.engine import DockerEngine, skip_or_fail
from tests.support.remote_engine import SCRIPT, RemoteEngine, remote_engine_script

UP_TIMEOUT = 900  # a cold first `up` builds the host image and loads ~1.4 GB of images
CANNOT = 3  # the script's exit status when this machine cannot host a remote engine


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
