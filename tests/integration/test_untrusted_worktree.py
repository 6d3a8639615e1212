"""A hostile agent in instance X's worktree, on the real engine through the real CLI and a
pinned MCP server: its edits to `.env.sandbox` reach neither instance Y of the same home nor
Y's API, nothing is changed by the refusals, `init` restores the view, `destroy` still works,
and `doctor --fix` repairs what the old attack (a start under Y's project name) left behind
without losing Y's data.

The test makes its own KTRDR_HOME and project copy in tmp_path; the finalizer removes
everything labelled with that home's owner id, also when the test fails.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from ktrdr.envfile import SANDBOX_ENV_FILENAME, read_env_file
from tests.support.cli import KTRDR
from tests.support.instances import edit_view
from tests.support.project_copy import copy_project
from tests.support.workspace import UP_TIMEOUT, Workspace

pytestmark = pytest.mark.docker

PASSED = "Startability Gate: PASSED"


def docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=120, check=True
    ).stdout


def owned_by(owner: str, *kinds: str) -> dict[str, str]:
    """Name -> id of every container and network labelled with `owner` (a home this test made)."""
    found: dict[str, str] = {}
    for kind in kinds:
        argv = ["ps", "-a"] if kind == "container" else [kind, "ls"]
        name = "{{.Names}}" if kind == "container" else "{{.Name}}"
        listed = docker(
            *argv, "--filter", f"label=ktrdr.owner={owner}", "--format", name + "\t{{.ID}}"
        )
        for line in listed.splitlines():
            key, _, value = line.partition("\t")
            found[key] = value
    return found


def remove_owned(owner: str) -> None:
    for kind, rm in (("container", ["rm", "-f", "-v"]), ("network", ["network", "rm"])):
        ids = list(owned_by(owner, kind).values())
        if ids:
            subprocess.run(["docker", *rm, *ids], capture_output=True, timeout=120, check=False)
    vols = docker("volume", "ls", "-q", "--filter", f"label=ktrdr.owner={owner}").split()
    if vols:
        subprocess.run(["docker", "volume", "rm", "-f", *vols], capture_output=True, check=False)


@pytest.fixture
def space(tmp_path: Path) -> Iterator[Workspace]:
    made = Workspace(copy_project(tmp_path / "ktrdr"), tmp_path / "home")
    made.ktrdr("sandbox", "init-shared")
    yield made
    id_file = tmp_path / "home" / "home-id"
    if id_file.is_file():
        remove_owned(id_file.read_text().strip())


def refused(space: Workspace, *args: str, cwd: Path) -> str:
    """The one error line of a command that must refuse."""
    result = space.run(KTRDR, *args, cwd=cwd, timeout=UP_TIMEOUT)
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"`ktrdr {' '.join(args)}` was not refused:\n{output}"
    assert "Traceback" not in output, output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, output
    return errors[0]


Call = tuple[str, dict[str, Any]]


def pinned_calls(
    space: Workspace, root: Path, calls: list[Call], *, first: Callable[[], None]
) -> list[Any]:
    """Start a server pinned to `root`, run `first` (the agent's edit), then the calls."""

    async def main() -> list[Any]:
        params = StdioServerParameters(
            command=KTRDR, args=["sandbox", "mcp"], env=space.env, cwd=str(root)
        )
        with open(os.devnull, "w") as quiet:
            async with (
                stdio_client(params, errlog=quiet) as (read, write),
                ClientSession(read, write) as client,
            ):
                await client.initialize()
                first()
                return [await client.call_tool(tool, args) for tool, args in calls]

    return anyio.run(main)


def test_edits_to_the_view_reach_no_other_instance_and_doctor_repairs_the_old_takeover(
    space: Workspace,
) -> None:
    space.ktrdr("sandbox", "create", "feat")
    space.ktrdr("sandbox", "create", "other")
    x, y = space.path_of("feat"), space.path_of("other")
    space.instance_ids |= {x.name, y.name}
    y_up = space.ktrdr("sandbox", "up", cwd=y, timeout=UP_TIMEOUT)
    assert PASSED in y_up["stdout"] + y_up["stderr"]
    owner = (Path(space.env["KTRDR_HOME"]) / "home-id").read_text().strip()
    y_env = read_env_file(y / SANDBOX_ENV_FILENAME)
    x_view = (x / SANDBOX_ENV_FILENAME).read_text()
    token = secrets.token_hex(8)
    with space.connect_db(y) as conn:
        conn.execute("CREATE TABLE takeover_probe (token text NOT NULL)")
        conn.execute("INSERT INTO takeover_probe (token) VALUES (%s)", (token,))
    y_resources = owned_by(owner, "container", "network")

    # X's view names Y's project (edited under a running pinned server): nothing reaches the
    # engine under it, through MCP or the CLI.
    results = pinned_calls(
        space,
        x,
        [("sandbox_test_e2e", {"pytest_args": ["-k", "health"]}), ("sandbox_logs", {})],
        first=lambda: edit_view(x, "COMPOSE_PROJECT_NAME", y_env["COMPOSE_PROJECT_NAME"]),
    )
    for result in results:
        assert result.is_error, result
        assert "says COMPOSE_PROJECT_NAME=" in result.structured_content["error"]
    for command in (
        ["sandbox", "test-e2e", "-k", "health"],
        ["sandbox", "logs"],
        ["sandbox", "evidence"],
        ["sandbox", "status"],
        ["sandbox", "up"],
        ["sandbox", "down"],
    ):
        line = refused(space, *command, cwd=x)
        assert f"says COMPOSE_PROJECT_NAME={y_env['COMPOSE_PROJECT_NAME']}" in line, line
        assert "ktrdr sandbox init" in line, line
    assert owned_by(owner, "container", "network") == y_resources

    # X's view names Y's API port: the API commands refuse instead of talking to Y.
    space.ktrdr("sandbox", "init", cwd=x)
    assert (x / SANDBOX_ENV_FILENAME).read_text().split("\n", 3)[3] == x_view.split("\n", 3)[3]
    (api_result,) = pinned_calls(
        space,
        x,
        [("api_health", {})],
        first=lambda: edit_view(x, "KTRDR_API_PORT", y_env["KTRDR_API_PORT"]),
    )
    assert "says KTRDR_API_PORT=" in refused(space, "health", cwd=x)
    assert api_result.is_error, api_result
    assert space.run(KTRDR, "-p", y_env["KTRDR_API_PORT"], "health").returncode == 0

    # What the takeover these checks prevent left behind, made by hand: a container and a
    # network labelled as X's inside Y's compose project, the container on Y's network.
    # doctor names them, --fix removes them (volumes kept), and Y comes back with its data.
    labels = [
        f"--label=com.docker.compose.project={y_env['COMPOSE_PROJECT_NAME']}",
        f"--label=ktrdr.owner={owner}",
        f"--label=ktrdr.instance={x.name}",
        f"--label=ktrdr.checkout={x}",
    ]
    stray_network = f"{y_env['COMPOSE_PROJECT_NAME']}_stray"
    docker("network", "create", *labels, stray_network)
    docker("run", "-d", *labels, "--network", f"{y_env['COMPOSE_PROJECT_NAME']}_default",
           "--name", f"{y_env['COMPOSE_PROJECT_NAME']}-stray-1",
           "ktrdr-offline/debian:bookworm", "sleep", "infinity")  # fmt: skip

    def doctor(*args: str, kind: str = "mislabelled") -> list[dict[str, Any]]:
        result = space.run(KTRDR, "sandbox", "doctor", "--json", *args, cwd=x.parent)
        problems: list[dict[str, Any]] = json.loads(result.stdout)["problems"]
        return [p for p in problems if p["kind"] == kind]

    (found,) = doctor()
    assert "network " + stray_network in found["detail"], found
    (fixed,) = doctor("--fix")
    assert fixed["fixed"], fixed
    assert doctor() == []
    # One of X's containers attached to Y's network: named, and disconnected by --fix.
    x_project = read_env_file(x / SANDBOX_ENV_FILENAME)["COMPOSE_PROJECT_NAME"]
    docker("run", "-d", *labels[1:], f"--label=com.docker.compose.project={x_project}",
           "--network", f"{y_env['COMPOSE_PROJECT_NAME']}_default", "--name", f"{x_project}-probe",
           "ktrdr-offline/debian:bookworm", "sleep", "infinity")  # fmt: skip
    (crossed,) = doctor(kind="cross-attached")
    assert f"container {x_project}-probe is attached to network" in crossed["detail"], crossed
    assert doctor("--fix", kind="cross-attached")[0]["fixed"]
    assert doctor(kind="cross-attached") == []
    docker("rm", "-f", f"{x_project}-probe")
    y_again = space.ktrdr("sandbox", "up", cwd=y, timeout=UP_TIMEOUT)
    assert PASSED in y_again["stdout"] + y_again["stderr"]
    with space.connect_db(y) as conn:
        assert conn.execute("SELECT token FROM takeover_probe").fetchall() == [(token,)]

    # An edited view does not stop X's removal, and Y is left as it was.
    edit_view(x, "COMPOSE_PROJECT_NAME", y_env["COMPOSE_PROJECT_NAME"])
    before = owned_by(owner, "container")
    space.ktrdr("sandbox", "destroy", "feat", "--yes", "--force", timeout=300)
    assert set(space.registry()) == {y.name}
    assert owned_by(owner, "container") == before
    space.ktrdr("sandbox", "destroy", "other", "--yes", timeout=300)


def test_a_pinned_agent_cannot_start_a_hostile_stack_and_refusals_change_nothing(
    space: Workspace, tmp_path: Path
) -> None:
    space.ktrdr("sandbox", "create", "feat")
    x = space.path_of("feat")
    space.instance_ids.add(x.name)
    other = tmp_path / "someone-elses-worktree"
    other.mkdir()
    compose_file = x / "docker-compose.sandbox.yml"
    shipped = compose_file.read_text()
    hostile = shipped.replace(
        "\nservices:\n",
        "\nservices:\n  evil:\n    image: ktrdr-offline/debian:bookworm\n"
        f"    volumes: ['/var/run/docker.sock:/var/run/docker.sock', '{other}:/p']\n",
        1,
    )
    assert hostile != shipped
    x_project = read_env_file(x / SANDBOX_ENV_FILENAME)["COMPOSE_PROJECT_NAME"]

    (up_result,) = pinned_calls(
        space, x, [("sandbox_up", {})], first=lambda: compose_file.write_text(hostile)
    )
    assert up_result.is_error, up_result
    error = up_result.structured_content["error"]
    assert 'stack policy refuses service "evil"' in error, error
    assert "--allow" not in json.dumps(up_result.structured_content.get("result"))
    assert docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={x_project}") == ""
    assert list(other.iterdir()) == []

    # A destroy refused because the project holds another owner's resource leaves the entry
    # as it was (not `destroying`).
    compose_file.write_text(shipped)
    foreign = f"{x_project}_foreign"
    docker("network", "create", f"--label=com.docker.compose.project={x_project}",
           "--label=ktrdr.owner=0badf00d", foreign)  # fmt: skip
    try:
        line = refused(space, "sandbox", "destroy", "feat", "--yes", cwd=space.repo)
        assert f"cannot destroy {x.name}: compose project {x_project}" in line, line
        assert f"network {foreign}" in line, line
        assert "nothing was changed" in line, line
        assert space.registry()[x.name]["state"] == "ready"
    finally:
        docker("network", "rm", foreign)
    space.ktrdr("sandbox", "destroy", "feat", "--yes", "--force", timeout=300)
    assert space.registry() == {}
