"""Instances on Docker contexts: the Engine value every docker argv is built from, how a
context's SSH endpoint is read, and slots per engine at create. Contexts are real (`docker
context create` in a private DOCKER_CONFIG: client-side files, no engine needed)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from ktrdr.cli.main import cli
from ktrdr.cli.sandbox.base import proc
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.engine.handle import Engine, SshEndpoint
from ktrdr.cli.sandbox.home import registry
from ktrdr.cli.sandbox.home.instance import read_env
from ktrdr.cli.sandbox.instances.locate import locate
from ktrdr.cli.sandbox.provision.create import create_instance
from ktrdr.cli.sandbox.slots.ports import FORWARD_BASE, FORWARD_BLOCK, forward_ports, ports_for_slot
from tests.support import slots
from tests.support.docker_standin import DockerStandIn

needs_docker_cli = pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI")


@pytest.fixture
def contexts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two contexts in a DOCKER_CONFIG of this test's own: `buildbox` over SSH, `sock` local."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    for name, host in (("buildbox", "ssh://dev@buildbox.test:2222"), ("sock", "unix:///x.sock")):
        proc.run(["docker", "context", "create", name, "--docker", f"host={host}"], timeout=30)


@pytest.fixture(autouse=True)
def _every_port_free(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand-in probe: slot numbers must not depend on what runs on this machine."""
    monkeypatch.setattr("ktrdr.cli.sandbox.provision.allocation.port_in_use", lambda port: False)
    slots.use_the_default_range(monkeypatch)
    monkeypatch.setattr("ktrdr.cli.sandbox.provision.claims.port_in_use", lambda port: False)


def test_an_engine_puts_its_context_on_every_docker_argv() -> None:
    assert Engine("buildbox").argv("ps", "-a", 3) == [
        "docker",
        "--context",
        "buildbox",
        "ps",
        "-a",
        "3",
    ]
    assert Engine().argv("ps") == ["docker", "ps"]  # the default: DOCKER_HOST or the current one


@needs_docker_cli
@pytest.mark.usefixtures("contexts")
def test_a_real_docker_child_uses_the_engines_context_over_docker_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///elsewhere.sock")
    shown = proc.run(Engine("buildbox").argv("context", "show"), timeout=30)
    assert shown.stdout.strip() == "buildbox"
    assert proc.run(Engine().argv("context", "show"), timeout=30).stdout.strip() != "buildbox"
    assert "DOCKER_CONTEXT=buildbox" not in proc.run(["env"], timeout=10).stdout


@needs_docker_cli
@pytest.mark.usefixtures("contexts")
def test_ssh_endpoint_and_remoteness_of_a_context() -> None:
    buildbox = Engine.of("buildbox")
    assert (buildbox.remote, buildbox.endpoint) == (True, "ssh://dev@buildbox.test:2222")
    assert buildbox.ssh_endpoint() == SshEndpoint("buildbox.test", "dev", 2222)
    assert Engine.of("sock").ssh_endpoint() is None
    assert not Engine.of("sock").remote
    assert Engine().ssh_endpoint() is None
    assert SshEndpoint("h", "u", 2).ssh_args() == ["-p", "2", "--", "u@h"]
    with pytest.raises(SandboxError, match=r"context 'nope' does not exist.*docker context create"):
        Engine.of("nope")


def test_forward_ports_stay_clear_of_every_slot() -> None:
    slot_ports = {p for slot in range(11) for p in ports_for_slot(slot).all_ports().values()}
    for index in (1, 2, 100):
        block = forward_ports(index, 3).all_ports().values()
        assert not slot_ports & set(block)
        base = FORWARD_BASE + FORWARD_BLOCK * index
        assert set(block) <= set(range(base, base + FORWARD_BLOCK))
    assert not set(forward_ports(1, 1).all_ports().values()) & set(
        forward_ports(2, 1).all_ports().values()
    )


@needs_docker_cli
@pytest.mark.usefixtures("contexts")
def test_remote_instance_takes_its_engines_slot_1_beside_a_local_slot_1(
    repo: Path, docker: DockerStandIn
) -> None:
    local = create_instance(name="here", cwd=repo)
    remote = create_instance(name="there", cwd=repo, context="buildbox")
    assert (local.slot, remote.slot) == (1, 1)  # slots are per engine
    assert remote.forward == 1
    values = read_env(remote.path / ".env.sandbox")
    assert values["KTRDR_DOCKER_CONTEXT"] == "buildbox"
    assert values["KTRDR_FORWARD_INDEX"] == "1"
    # The env file holds the local ends of the forwards: what the user and the tests use.
    assert values["KTRDR_API_PORT"] == str(forward_ports(1, 1).api)
    assert "KTRDR_DOCKER_CONTEXT" not in read_env(local.path / ".env.sandbox")
    entry = registry.load()[remote.instance_id]
    assert (entry.context, entry.forward) == ("buildbox", 1)
    # The slot marker went to the engine the instance lives on.
    assert docker.mark_engines == {local.instance_id: None, remote.instance_id: "buildbox"}
    found = locate(remote.instance_id, repo)
    assert (found.context, found.remote) == ("buildbox", True)
    assert found.engine_ports.api == 8001
    assert found.port_map[8001] == forward_ports(1, 1).api
    assert found.engine == Engine("buildbox", remote=True)  # the instance carries its engine


@needs_docker_cli
@pytest.mark.usefixtures("contexts")
def test_a_slot_whose_ports_the_remote_engine_publishes_is_skipped(
    repo: Path, docker: DockerStandIn
) -> None:
    docker.published = {8001}  # something else on that engine publishes slot 1's API port
    result = create_instance(name="there", cwd=repo, context="buildbox")
    assert result.slot == 2
    assert "port 8001" in result.skipped[0].reason


@needs_docker_cli
@pytest.mark.usefixtures("contexts")
def test_list_shows_each_instances_engine(repo: Path, docker: DockerStandIn) -> None:
    create_instance(name="here", cwd=repo)
    create_instance(name="there", cwd=repo, context="buildbox")
    out = CliRunner().invoke(cli, ["sandbox", "list"])
    rows = {line.split()[0]: line.split()[1:5] for line in out.stdout.splitlines()[1:]}
    assert rows["ktrdr--here"][:2] == ["local", "1"]
    assert rows["ktrdr--there"][:2] == ["buildbox", "1"]
    assert rows["ktrdr--there"][3] == str(forward_ports(1, 1).api)


@needs_docker_cli
@pytest.mark.usefixtures("contexts")
def test_create_on_an_unknown_context_changes_nothing(repo: Path, docker: DockerStandIn) -> None:
    out = CliRunner().invoke(cli, ["sandbox", "create", "x", "--context", "nope"])
    assert out.exit_code == 1
    assert "Docker context 'nope' does not exist" in out.output
    assert "Traceback" not in out.output
    assert registry.load() == {}
    assert not (repo.parent / "ktrdr--x").exists()
    assert os.listdir(repo.parent) == ["ktrdr"]


@needs_docker_cli
@pytest.mark.usefixtures("contexts")
def test_dockers_default_context_is_the_default_engine(repo: Path, docker: DockerStandIn) -> None:
    first = create_instance(name="a", cwd=repo)
    second = create_instance(name="b", cwd=repo, context="default")
    assert (first.slot, second.slot) == (1, 2)  # one engine: one set of slots
    assert registry.load()[second.instance_id].context is None
    assert "KTRDR_DOCKER_CONTEXT" not in read_env(second.path / ".env.sandbox")


@needs_docker_cli
@pytest.mark.usefixtures("contexts")
def test_create_on_a_remote_engine_that_does_not_answer_changes_nothing(
    repo: Path, docker: DockerStandIn
) -> None:
    docker.reachable = False
    out = CliRunner().invoke(cli, ["sandbox", "create", "x", "--context", "buildbox"])
    assert out.exit_code == 1
    assert "not reachable" in out.output
    assert "Traceback" not in out.output
    assert registry.load() == {}
    assert not (repo.parent / "ktrdr--x").exists()


@needs_docker_cli
@pytest.mark.usefixtures("contexts")
def test_init_on_a_context_and_a_reinit_keeps_engine_and_forward_ports(
    repo: Path, docker: DockerStandIn
) -> None:
    from ktrdr.cli.sandbox.provision.init_checkout import init_instance

    first = init_instance(cwd=repo, context="buildbox")
    env_file = repo / ".env.sandbox"
    values = read_env(env_file)
    assert (values["KTRDR_DOCKER_CONTEXT"], values["KTRDR_FORWARD_INDEX"]) == ("buildbox", "1")
    registry_path = registry.registry_path()
    registry_path.unlink()  # the entry lost: a re-init without --context finds its engine again
    again = init_instance(cwd=repo)
    assert (again.context, again.forward, again.slot) == ("buildbox", 1, first.slot)
    assert read_env(env_file)["KTRDR_API_PORT"] == values["KTRDR_API_PORT"]


@needs_docker_cli
@pytest.mark.usefixtures("contexts")
def test_doctor_names_a_context_whose_engine_does_not_answer(
    repo: Path, docker: DockerStandIn, tmp_path: Path
) -> None:
    from ktrdr.cli.sandbox.base.host import HostPaths
    from ktrdr.cli.sandbox.doctor.diagnose import run_doctor

    create_instance(name="there", cwd=repo, context="buildbox")  # buildbox.test does not exist
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemAvailable: 8000000 kB\n")
    report = run_doctor(fix=False, host=HostPaths(meminfo=meminfo, inotify_dir=tmp_path))
    engine = [p for p in report.problems if p.kind == "engine"]
    assert [p.subject for p in engine] == ["buildbox"]
    assert "docker --context buildbox info" in engine[0].detail
