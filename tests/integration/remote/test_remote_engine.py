"""The harness's second engine is really another host, reached only over SSH."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest

from ktrdr.envfile import read_env_file
from tests.support.engine import PROJECT_LABEL, PROJECT_PREFIX, TEST_LABEL, docker, remove_project
from tests.support.remote_engine import SCRIPT, RemoteEngine

pytestmark = pytest.mark.docker

APP_IMAGE = dict(read_env_file(SCRIPT.parents[1] / "docker" / "images-offline.env"))[
    "KTRDR_APP_IMAGE"
]


def test_the_context_reaches_the_remote_engine_over_ssh(remote_engine: RemoteEngine) -> None:
    inspected = json.loads(docker("context", "inspect", remote_engine.context).stdout)[0]
    assert inspected["Endpoints"]["docker"]["Host"] == f"ssh://{remote_engine.ssh_host}"
    remote_engine.docker("run", "--rm", APP_IMAGE, "true", timeout=180)


def test_the_remote_is_another_host(remote_engine: RemoteEngine) -> None:
    # Its own engine: neither lists the other's containers.
    name = f"{PROJECT_PREFIX}remote-probe-{uuid.uuid4().hex[:8]}"
    labels = ["--label", TEST_LABEL, "--label", f"{PROJECT_LABEL}={name}"]
    docker("run", "-d", "--name", name, *labels, APP_IMAGE, "sleep", "120")
    remote_engine.docker("run", "-d", "--name", name, *labels, APP_IMAGE, "sleep", "120")
    try:
        local = set(docker("ps", "-q", "--no-trunc", "--filter", f"name={name}").stdout.split())
        remote = set(remote_engine.docker("ps", "-q", "--no-trunc").stdout.split())
        assert len(local) == 1, "the local engine lists only its own probe"
        assert len(remote) == 1, "the remote engine lists only its own probe"
        assert not local & remote
    finally:
        remote_engine.docker("rm", "-f", name, check=False)
        remove_project(name)
    # Its own address on its own network, and its own root filesystem.
    assert remote_engine.address
    assert remote_engine.address in remote_engine.exec("hostname", "-I").stdout.split()
    assert remote_engine.exec("test", "-e", "/work", check=False).returncode != 0
    assert remote_engine.exec("cat", "/etc/hostname").stdout.strip() == remote_engine.context


def ssh(engine: RemoteEngine, *argv: str) -> list[str]:
    return ["ssh", "-o", "ConnectTimeout=3", engine.ssh_host, *argv]


def test_ssh_hooks_drop_and_block_connections(remote_engine: RemoteEngine) -> None:
    session = subprocess.Popen(ssh(remote_engine, "sleep", "120"), stdin=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        assert session.poll() is None, "the ssh session is open"
        remote_engine.drop_ssh()
        assert session.wait(timeout=15) != 0, "drop_ssh ended the open session"
    finally:
        session.kill()
        session.wait()
    remote_engine.docker("version")  # new connections work after a drop
    remote_engine.block_ssh()
    assert subprocess.run(ssh(remote_engine, "true"), timeout=30, check=False).returncode != 0
    remote_engine.unblock_ssh()
    assert subprocess.run(ssh(remote_engine, "true"), timeout=30, check=False).returncode == 0
    remote_engine.docker("version")
