"""`ktrdr sandbox` with an instance on the second engine (a Docker context over SSH), through
the real CLI, the way a user runs it:

- create --context → up (PASSED) → the API at a local port → an edit here served there →
  test-e2e → evidence → destroy, with nothing of the instance left on either machine;
- a local and a remote instance up at the same time on the same slot number, and one unpinned
  MCP server driving both at once, each `docker` call on its own instance's engine;
- the forwarder killed while up: status says so, `up` brings it back;
- the SSH connection dropped mid-`up` and blocked mid-`destroy`: a clear error, the slot kept.

Every instance is made in a git copy of this project in tmp_path with its own KTRDR_HOME.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from ktrdr.cli.sandbox.e2e import run as e2e
from ktrdr.cli.sandbox.home.instance import read_env
from ktrdr.cli.sandbox.provision.allocation import busy_ports
from ktrdr.cli.sandbox.slots.ports import ports_for_slot
from tests.support import cli
from tests.support.cli import KTRDR
from tests.support.mcp_client import ok
from tests.support.mcp_client import server as mcp_server
from tests.support.project_copy import bump_version, copy_project
from tests.support.remote_engine import RemoteEngine
from tests.support.slots import TEST_SLOTS
from tests.support.waiting import STARTING, wait_for

pytestmark = pytest.mark.docker

UP_TIMEOUT = 900
EDIT_SERVED_LIMIT = 5.0  # the goal for an edit here served by the remote backend


class Home:
    """A project copy and the environment every CLI call runs with (its own KTRDR_HOME)."""

    def __init__(self, tmp: Path) -> None:
        self.repo = copy_project(tmp / "ktrdr")
        self.env = cli.cli_env(tmp / "home")

    def path_of(self, name: str) -> Path:
        return self.repo.parent / f"ktrdr--{name}"

    def run(
        self, *args: str, cwd: Path | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return cli.run(
            [KTRDR, "sandbox", *args], cwd=cwd or self.repo, env=self.env, timeout=timeout
        )

    def ok(self, *args: str, cwd: Path | None = None, timeout: float = 300) -> str:
        result = self.run(*args, cwd=cwd, timeout=timeout)
        assert result.returncode == 0, (
            f"ktrdr sandbox {' '.join(args)} exited {result.returncode}\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
        return result.stdout + result.stderr

    def status(self, name: str) -> dict[str, object]:
        return dict(json.loads(self.ok("status", name, "--json")))

    def destroy_everything(self) -> None:
        self.run("destroy", "--all", "--yes", "--force", timeout=600)


def api_of(instance: Path) -> str:
    return f"http://127.0.0.1:{read_env(instance / '.env.sandbox')['KTRDR_API_PORT']}/api/v1"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, remote_engine: RemoteEngine) -> Iterator[Home]:
    made = Home(tmp_path_factory.mktemp("remote-home"))
    made.ok("init-shared")
    yield made
    made.destroy_everything()


@pytest.fixture(scope="module")
def remote_up(home: Home, remote_engine: RemoteEngine) -> Path:
    """One remote instance, up, shared by the tests below in file order."""
    # A slot free on this machine too, so a local instance can take the same number later.
    slot = next(
        (n for n in reversed(TEST_SLOTS) if not busy_ports(n, with_owners=False)),
        TEST_SLOTS[-1],
    )
    out = home.ok("create", "far", "--context", remote_engine.context, "--slot", str(slot))
    assert "Created" in out or "far" in out
    path = home.path_of("far")
    started = time.monotonic()
    out = home.ok("up", cwd=path, timeout=UP_TIMEOUT)
    print(f"remote up -> PASSED: {time.monotonic() - started:.1f}s")
    assert "Startability Gate: PASSED" in out
    return path


def test_the_remote_stack_answers_at_local_ports_and_publishes_only_on_its_loopback(
    home: Home, remote_up: Path, remote_engine: RemoteEngine
) -> None:
    env = read_env(remote_up / ".env.sandbox")
    assert env["KTRDR_DOCKER_CONTEXT"] == remote_engine.context
    health = httpx.get(f"{api_of(remote_up)}/health", timeout=5).json()
    assert health["status"] == "ok"
    status = home.status("far")
    assert status["engine"] == remote_engine.context
    assert status["status"] == "running"
    assert status["forwards"] == "running"
    assert status["watch"] == "running"
    listening = remote_engine.exec("ss", "-ltnH").stdout
    published = ports_for_slot(int(env["KTRDR_SLOT"]))
    for port in (published.api, published.db, published.grafana):
        bound = [
            line.split()[3]
            for line in listening.splitlines()
            if line.split()[3].endswith(f":{port}")
        ]
        assert bound == [f"127.0.0.1:{port}"], listening
    # The engine has nothing mounted from this machine: no bind source exists there.
    assert remote_engine.exec("test", "-e", str(remote_up), check=False).returncode != 0


def test_an_edit_here_is_served_by_the_remote_backend(remote_up: Path) -> None:
    started = time.monotonic()
    version = bump_version(remote_up, "remote")
    wait_for(
        lambda: httpx.get(f"{api_of(remote_up)}/health", timeout=2).json()["version"] == version,
        timeout=EDIT_SERVED_LIMIT * 2,  # the goal, with room for a loaded CI machine
        what="the remote backend serving the edited source",
        tolerate=STARTING,
    )
    print(f"remote edit -> served: {time.monotonic() - started:.1f}s")


def test_e2e_runs_on_the_engine_and_its_results_come_back(home: Home, remote_up: Path) -> None:
    out = home.ok("test-e2e", "-k", "health", cwd=remote_up, timeout=900)
    assert "passed" in out
    assert (remote_up / e2e.RESULTS_DIR / e2e.JUNIT_NAME).is_file()
    evidence = home.ok("evidence", "--json", cwd=remote_up, timeout=300)
    assert "far" in evidence


def test_init_shared_copies_to_the_remote_engine_again(
    home: Home, remote_up: Path, remote_engine: RemoteEngine
) -> None:
    out = home.ok("init-shared", timeout=300)
    assert f"Copied shared data to {remote_engine.context}" in out
    listed = home.ok("status", "far")
    assert "running" in listed


@pytest.fixture(scope="module")
def near_up(home: Home, remote_up: Path) -> Iterator[Path]:
    """A local instance on the remote one's slot number, up (removed after the module's tests
    that use it)."""
    remote_slot = int(read_env(remote_up / ".env.sandbox")["KTRDR_SLOT"])
    local = home.run("create", "near", "--slot", str(remote_slot))
    assert local.returncode == 0, local.stderr
    near = home.path_of("near")
    try:
        assert "Startability Gate: PASSED" in home.ok("up", cwd=near, timeout=UP_TIMEOUT)
        yield near
    finally:
        home.ok("destroy", "near", "--yes", "--force", timeout=600)


def test_a_local_and_a_remote_instance_share_a_slot_number(
    home: Home, remote_up: Path, near_up: Path
) -> None:
    remote_slot = int(read_env(remote_up / ".env.sandbox")["KTRDR_SLOT"])
    rows = {row["instance_id"]: row for row in json.loads(home.ok("list", "--json"))}
    assert rows["ktrdr--near"]["slot"] == rows["ktrdr--far"]["slot"] == remote_slot
    assert rows["ktrdr--near"]["engine"] == "local"
    assert rows["ktrdr--near"]["status"] == rows["ktrdr--far"]["status"] == "running"
    assert httpx.get(f"{api_of(near_up)}/health", timeout=5).json()["status"] == "ok"
    assert httpx.get(f"{api_of(remote_up)}/health", timeout=5).json()["status"] == "ok"


RACE_ROUNDS = 2
RACE_TOOLS = ("sandbox_status", "sandbox_logs", "sandbox_pause", "sandbox_resume")


def recording_docker(directory: Path, log: Path) -> dict[str, str]:
    """A `docker` first on PATH that appends its argv (one line, one write) to `log` and runs
    the real one: what every child of the server asked, and of which engine."""
    real = shutil.which("docker")
    assert real, "the docker CLI is needed"
    directory.mkdir()
    wrapper = directory / "docker"
    wrapper.write_text(
        "#!/usr/bin/env bash\n"
        'line=$(printf "%q " "$@")\n'
        f'printf "%s\\n" "$line" >> {shlex.quote(str(log))}\n'
        f'exec {shlex.quote(real)} "$@"\n'
    )
    wrapper.chmod(0o755)
    return {"PATH": f"{directory}{os.pathsep}{os.environ.get('PATH', '')}"}


def test_one_unpinned_mcp_server_sends_each_instances_docker_calls_to_its_own_engine(
    home: Home,
    remote_up: Path,
    near_up: Path,
    remote_engine: RemoteEngine,
    tmp_path: Path,
) -> None:
    """Issue 23: the engine is a value. One `--all-instances` server gets concurrent calls for a
    local and a remote instance (each tool call runs in its own thread); every `docker` child
    it starts for one instance must name that instance's engine, never the other's."""
    log = tmp_path / "docker-calls.log"
    env = {**home.env, **recording_docker(tmp_path / "bin", log)}
    results: dict[tuple[str, str, int], dict[str, Any]] = {}

    async def call(client: Any, tool: str, instance: str, n: int) -> None:
        arguments: dict[str, Any] = {"instance": instance}
        if tool == "sandbox_logs":
            arguments["tail"] = 5
        result = await client.call_tool(tool, arguments, read_timeout_seconds=UP_TIMEOUT)
        results[(tool, instance, n)] = ok(result)

    async def main() -> None:
        async with mcp_server(env, home.repo, "--all-instances") as client:
            for n in range(RACE_ROUNDS):
                for tool in RACE_TOOLS:  # each tool for both instances at once
                    async with anyio.create_task_group() as group:
                        for instance in ("near", "far"):
                            group.start_soon(call, client, tool, instance, n)

    anyio.run(main)
    for (tool, instance, _), data in results.items():
        assert data["instance_id"] == f"ktrdr--{instance}", (tool, data)
        if tool == "sandbox_resume":
            assert data["result"] == "passed", (instance, data.get("failure"))
    assert len(results) == RACE_ROUNDS * len(RACE_TOOLS) * 2
    calls = log.read_text().splitlines()
    context = f"--context {remote_engine.context}"
    for_far = [line for line in calls if "ktrdr--far" in line]
    for_near = [line for line in calls if "ktrdr--near" in line]
    assert for_far, calls  # the log saw the calls made for each instance
    assert for_near, calls
    assert [line for line in for_far if context not in line] == []
    assert [line for line in for_near if "--context" in line] == []
    assert home.status("near")["status"] == home.status("far")["status"] == "running"


def test_pause_and_resume_on_the_remote_engine(home: Home, remote_up: Path) -> None:
    home.ok("pause", cwd=remote_up)
    assert home.status("far")["status"] == "paused"
    version = bump_version(remote_up, "paused")
    assert "Startability Gate: PASSED" in home.ok("resume", cwd=remote_up, timeout=UP_TIMEOUT)
    wait_for(  # the edit made while frozen reaches the engine too
        lambda: httpx.get(f"{api_of(remote_up)}/health", timeout=2).json()["version"] == version,
        timeout=EDIT_SERVED_LIMIT * 2,
        what="the remote backend serving the edit made while paused",
        tolerate=STARTING,
    )


def test_a_killed_forwarder_is_reported_and_up_restarts_it(home: Home, remote_up: Path) -> None:
    state = Path(home.env["KTRDR_HOME"]) / "run" / "ktrdr--far" / "forward.json"
    os.kill(int(json.loads(state.read_text())["pid"]), signal.SIGKILL)
    wait_for(
        lambda: home.status("far")["forwards"] != "running",
        timeout=10,
        what="forwards seen down",
        tolerate=STARTING,
    )
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{api_of(remote_up)}/health", timeout=2)
    assert "Startability Gate: PASSED" in home.ok("up", cwd=remote_up, timeout=UP_TIMEOUT)
    assert httpx.get(f"{api_of(remote_up)}/health", timeout=5).json()["status"] == "ok"


def test_a_connection_dropped_mid_up_is_an_error_not_a_crash(
    home: Home, remote_up: Path, remote_engine: RemoteEngine
) -> None:
    up = subprocess.Popen(
        [KTRDR, "sandbox", "up"], cwd=remote_up, env=home.env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    time.sleep(2)
    remote_engine.drop_ssh()
    out, err = up.communicate(timeout=UP_TIMEOUT)
    assert "Traceback" not in out + err
    if up.returncode != 0:  # it may also have passed on a fresh connection
        assert err.strip().splitlines()[-1].startswith("Error:"), err
    # Nothing was lost: the next `up` works and the instance is still registered.
    assert "Startability Gate: PASSED" in home.ok("up", cwd=remote_up, timeout=UP_TIMEOUT)


def test_destroy_while_the_engine_is_unreachable_keeps_the_slot(
    home: Home, remote_up: Path, remote_engine: RemoteEngine
) -> None:
    remote_engine.block_ssh()
    try:
        refused = home.run("destroy", "far", "--yes", "--force", timeout=300)
        status = home.run("status", "far")
    finally:
        remote_engine.unblock_ssh()
    assert refused.returncode != 0
    assert "Traceback" not in refused.stdout + refused.stderr
    assert "does not answer" in refused.stderr or "not reachable" in refused.stderr
    assert "nothing was changed" in refused.stderr
    assert "stays claimed" in refused.stderr
    assert f"docker --context {remote_engine.context} info" in refused.stderr
    assert "no containers" not in status.stdout
    rows = {row["instance_id"] for row in json.loads(home.ok("list", "--json"))}
    assert "ktrdr--far" in rows


def test_destroy_with_a_dropped_connection_still_removes_everything_on_both_machines(
    home: Home, remote_up: Path, remote_engine: RemoteEngine
) -> None:
    owner = read_env(remote_up / ".env.sandbox")["KTRDR_OWNER"]
    # The connection dropped mid-destroy: it finishes, or fails in one line keeping the entry
    # (a slot it could not verify is never freed); a rerun finishes.
    destroy = subprocess.Popen(
        [KTRDR, "sandbox", "destroy", "far", "--yes", "--force"], cwd=home.repo, env=home.env,
        text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    time.sleep(1.5)
    remote_engine.drop_ssh()
    out, err = destroy.communicate(timeout=600)
    assert "Traceback" not in out + err
    if destroy.returncode != 0:
        assert err.strip().splitlines()[-1].startswith("Error:"), err
        assert "ktrdr--far" in {row["instance_id"] for row in json.loads(home.ok("list", "--json"))}
        home.ok("destroy", "far", "--yes", "--force", timeout=600)
    assert not remote_up.exists()
    for kind in ("ps -a", "volume ls", "network ls"):
        left = remote_engine.docker(
            *kind.split(), "-q", "--filter", "label=ktrdr.instance=ktrdr--far",
            "--filter", f"label=ktrdr.owner={owner}",
        ).stdout.split()  # fmt: skip
        assert left == [], f"{kind}: {left}"
    assert not (Path(home.env["KTRDR_HOME"]) / "run" / "ktrdr--far").exists()
