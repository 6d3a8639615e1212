"""`ktrdr sandbox` with an instance on the second engine (a Docker context over SSH), through
the real CLI, the way a user runs it:

- create --context → up (PASSED) → the API at a local port → an edit here served there →
  test-e2e → evidence → destroy, with nothing of the instance left on either machine;
- a local and a remote instance up at the same time on the same slot number;
- the forwarder killed while up: status says so, `up` brings it back;
- the SSH connection dropped mid-`up` and blocked mid-`destroy`: a clear error, the slot kept.

Every instance is made in a git copy of this project in tmp_path with its own KTRDR_HOME.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ktrdr.cli.sandbox.e2e import run as e2e
from ktrdr.cli.sandbox.home.instance import read_env
from ktrdr.cli.sandbox.provision.allocation import busy_ports
from ktrdr.cli.sandbox.slots.ports import ports_for_slot
from tests.support import cli
from tests.support.cli import KTRDR
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


def test_a_local_and_a_remote_instance_share_a_slot_number(home: Home, remote_up: Path) -> None:
    remote_slot = int(read_env(remote_up / ".env.sandbox")["KTRDR_SLOT"])
    local = home.run("create", "near", "--slot", str(remote_slot))
    if local.returncode != 0 and "busy" in local.stderr:
        pytest.skip(f"slot {remote_slot} is busy on this machine: {local.stderr.strip()}")
    assert local.returncode == 0, local.stderr
    near = home.path_of("near")
    try:
        assert "Startability Gate: PASSED" in home.ok("up", cwd=near, timeout=UP_TIMEOUT)
        rows = {row["instance_id"]: row for row in json.loads(home.ok("list", "--json"))}
        assert rows["ktrdr--near"]["slot"] == rows["ktrdr--far"]["slot"] == remote_slot
        assert rows["ktrdr--near"]["engine"] == "local"
        assert rows["ktrdr--near"]["status"] == rows["ktrdr--far"]["status"] == "running"
        assert httpx.get(f"{api_of(near)}/health", timeout=5).json()["status"] == "ok"
        assert httpx.get(f"{api_of(remote_up)}/health", timeout=5).json()["status"] == "ok"
    finally:
        home.ok("destroy", "near", "--yes", "--force", timeout=600)


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
