"""Ownership on a shared engine, on the real engine through the real CLI:

- two KTRDR_HOMEs that both `create feat` from a checkout named `ktrdr` get the same instance
  id but separate compose projects: starting and destroying B leaves A's containers, data and
  volumes alone, and A's worktree refuses `up`/`down` from B's home;
- three concurrent `up`s of one instance all pass and leave one `<project>_default` network;
- `destroy` with no docker CLI on PATH (while the stack runs) refuses and changes nothing;
- a paused worker shows as `paused`, and `up` thaws it instead of calling its port foreign.

Every test makes its own KTRDR_HOME(s) and project copies in tmp_path; a finalizer removes
everything labelled with those homes' owner ids (random per home, so nothing of anyone else's
is ever touched), also when the test fails.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ktrdr.envfile import SANDBOX_ENV_FILENAME, read_env_file
from tests.support.cli import KTRDR
from tests.support.project_copy import copy_project
from tests.support.workspace import UP_TIMEOUT, Workspace

pytestmark = pytest.mark.docker

PASSED = "Startability Gate: PASSED"
DOCKER_TIMEOUT = 120


# --- docker queries (always filtered on an owner id this test made) --------------------------


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=check, timeout=DOCKER_TIMEOUT
    )


def label_filters(owner: str, instance_id: str | None = None, **labels: str) -> list[str]:
    pairs = {"ktrdr.owner": owner, **({"ktrdr.instance": instance_id} if instance_id else {})}
    pairs.update(labels)
    return [arg for key, value in pairs.items() for arg in ("--filter", f"label={key}={value}")]


def owned(owner: str, instance_id: str | None = None) -> list[str]:
    """`kind name` of every container, volume and network carrying the owner (and instance)."""
    found: list[str] = []
    for kind, argv in (
        ("container", ["ps", "-a", "--format", "{{.Names}}"]),
        ("volume", ["volume", "ls", "--format", "{{.Name}}"]),
        ("network", ["network", "ls", "--format", "{{.Name}}"]),
    ):
        out = docker(*argv, *label_filters(owner, instance_id)).stdout
        found += [f"{kind} {name}" for name in out.split()]
    return sorted(found)


def in_project(project: str) -> list[str]:
    """Anything on the engine in compose project `project` (which embeds one of our home ids)."""
    found: list[str] = []
    for kind, argv in (
        ("container", ["ps", "-a", "--format", "{{.Names}}"]),
        ("volume", ["volume", "ls", "--format", "{{.Name}}"]),
        ("network", ["network", "ls", "--format", "{{.Name}}"]),
    ):
        out = docker(*argv, "--filter", f"label=com.docker.compose.project={project}").stdout
        found += [f"{kind} {name}" for name in out.split()]
    return sorted(found)


def volumes(owner: str, instance_id: str) -> set[str]:
    out = docker("volume", "ls", "--format", "{{.Name}}", *label_filters(owner, instance_id))
    return set(out.stdout.split())


def containers(owner: str, instance_id: str, **labels: str) -> dict[str, dict[str, object]]:
    """Container name -> id, state and start time (from `docker inspect`)."""
    ids = docker("ps", "-aq", "--no-trunc", *label_filters(owner, instance_id, **labels))
    if not ids.stdout.split():
        return {}
    inspected = json.loads(docker("inspect", "--type", "container", *ids.stdout.split()).stdout)
    return {
        item["Name"].lstrip("/"): {
            "id": item["Id"],
            "status": item["State"]["Status"],
            "started_at": item["State"]["StartedAt"],
        }
        for item in inspected
    }


def default_networks(project: str) -> list[str]:
    """Ids of the networks named exactly `<project>_default` (`name=` filters match substrings)."""
    name = f"{project}_default"
    out = docker("network", "ls", "--filter", f"name={name}", "--format", "{{.Name}}\t{{.ID}}")
    return [line.split("\t")[1] for line in out.stdout.splitlines() if line.split("\t")[0] == name]


def remove_owned(owner: str) -> None:
    """Remove every container, network and volume labelled with `owner` (a home id this test
    made); paused containers are thawed first so that nothing refuses."""
    filters = label_filters(owner)
    paused = docker("ps", "-q", "--filter", "status=paused", *filters, check=False).stdout.split()
    if paused:
        docker("unpause", *paused, check=False)
    ids = docker("ps", "-aq", *filters, check=False).stdout.split()
    if ids:
        docker("rm", "-f", "-v", *ids, check=False)
    networks = docker("network", "ls", "-q", *filters, check=False).stdout.split()
    if networks:
        docker("network", "rm", *networks, check=False)
    vols = docker("volume", "ls", "-q", *filters, check=False).stdout.split()
    if vols:
        docker("volume", "rm", "-f", *vols, check=False)
    left = owned(owner)
    assert left == [], f"cleanup left {left}"


# --- homes --------------------------------------------------------------------------------------


def home_of(space: Workspace) -> Path:
    return Path(space.env["KTRDR_HOME"])


def owner_of(space: Workspace) -> str:
    return (home_of(space) / "home-id").read_text().strip()


def env_of(instance: Path) -> dict[str, str]:
    return read_env_file(instance / SANDBOX_ENV_FILENAME)


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in (result.stdout + result.stderr).splitlines() if "Error" in line]


@pytest.fixture
def new_workspace(tmp_path: Path) -> Iterator[Callable[[str], Workspace]]:
    """Makes `tmp_path/<label>/ktrdr` (a project copy) with its own KTRDR_HOME
    `tmp_path/<label>/home`; at teardown everything labelled with those homes' ids is removed."""
    made: list[Workspace] = []

    def make(label: str) -> Workspace:
        space = Workspace(copy_project(tmp_path / label / "ktrdr"), tmp_path / label / "home")
        made.append(space)
        space.ktrdr("sandbox", "init-shared")
        return space

    yield make
    failures: list[str] = []
    for space in made:
        if (home_of(space) / "home-id").is_file():  # no id: nothing of this home was labelled
            try:
                remove_owned(owner_of(space))
            except Exception as e:  # the sweep goes on for the other homes
                failures.append(f"{home_of(space)}: {e}")
    assert failures == [], failures


def create(space: Workspace, name: str) -> Path:
    space.ktrdr("sandbox", "create", name)
    instance = space.path_of(name)
    space.instance_ids.add(instance.name)
    return instance


def up(space: Workspace, instance: Path) -> str:
    result = space.ktrdr("sandbox", "up", cwd=instance, timeout=UP_TIMEOUT)
    output = result["stdout"] + result["stderr"]
    assert PASSED in output, output
    return output


# --- the cases ----------------------------------------------------------------------------------


def test_two_homes_same_name_do_not_touch_each_other(
    new_workspace: Callable[[str], Workspace],
) -> None:
    a, b = new_workspace("a"), new_workspace("b")
    instance_a = create(a, "feat")
    assert instance_a.name == "ktrdr--feat"
    assert set(a.registry()) == {"ktrdr--feat"}
    up(a, instance_a)
    owner_a = owner_of(a)
    project_a = env_of(instance_a)["COMPOSE_PROJECT_NAME"]

    token = secrets.token_hex(8)
    with a.connect_db(instance_a) as conn:
        conn.execute("CREATE TABLE ownership_probe (token text NOT NULL)")
        conn.execute("INSERT INTO ownership_probe (token) VALUES (%s)", (token,))

    before = containers(owner_a, "ktrdr--feat")
    volumes_before = volumes(owner_a, "ktrdr--feat")
    assert before, before
    assert all(c["status"] in ("running", "exited") for c in before.values()), before
    assert any(name.endswith("_db-data") for name in volumes_before), volumes_before

    instance_b = create(b, "feat")
    assert instance_b.name == "ktrdr--feat"
    assert set(b.registry()) == {"ktrdr--feat"}
    owner_b = owner_of(b)
    project_b = env_of(instance_b)["COMPOSE_PROJECT_NAME"]
    assert owner_a != owner_b
    assert project_a != project_b, project_a
    assert env_of(instance_a)["KTRDR_INSTANCE_ID"] == env_of(instance_b)["KTRDR_INSTANCE_ID"]
    up(b, instance_b)
    assert containers(owner_b, "ktrdr--feat"), owned(owner_b)
    assert containers(owner_a, "ktrdr--feat") == before

    # From B's home, A's worktree is not B's to start or stop (B has its own `ktrdr--feat`).
    intruder = Workspace(a.repo, home_of(b))
    for command in ("up", "down"):
        refused = intruder.run(KTRDR, "sandbox", command, cwd=instance_a, timeout=UP_TIMEOUT)
        output = refused.stdout + refused.stderr
        assert refused.returncode != 0, f"`{command}` from B's home was not refused:\n{output}"
        errors = error_lines(refused)
        assert len(errors) == 1, output
        assert str(home_of(a)) in errors[0], output
        assert "Traceback" not in output, output
        assert containers(owner_a, "ktrdr--feat") == before, f"after `{command}` from B"

    b.ktrdr("sandbox", "destroy", "--yes", "ktrdr--feat", timeout=300)
    assert owned(owner_b) == []
    assert in_project(project_b) == []
    assert b.registry() == {}
    assert not instance_b.exists()

    assert containers(owner_a, "ktrdr--feat") == before  # not recreated, not restarted
    assert volumes(owner_a, "ktrdr--feat") == volumes_before
    assert set(a.registry()) == {"ktrdr--feat"}
    assert instance_a.is_dir()
    with a.connect_db(instance_a) as conn:
        rows = conn.execute("SELECT token FROM ownership_probe").fetchall()
    assert rows == [(token,)]


def test_three_concurrent_ups_pass_and_leave_one_network(
    new_workspace: Callable[[str], Workspace],
) -> None:
    space = new_workspace("w")
    instance = create(space, "conc")
    project = env_of(instance)["COMPOSE_PROJECT_NAME"]
    logs = [instance.parent / f"up-{i}.log" for i in range(3)]
    processes: list[subprocess.Popen[str]] = []
    try:
        for log in logs:
            with log.open("w") as handle:
                processes.append(
                    subprocess.Popen(
                        [KTRDR, "sandbox", "up"],
                        cwd=instance,
                        env=space.env,
                        stdout=handle,
                        stderr=subprocess.STDOUT,
                        text=True,
                    )
                )
        codes = [process.wait(timeout=UP_TIMEOUT) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
    outputs = [log.read_text() for log in logs]
    report = "\n".join(
        f"--- up {i}: exit {code}\n{output}"
        for i, (code, output) in enumerate(zip(codes, outputs, strict=True))
    )
    assert codes == [0, 0, 0], report
    assert all(PASSED in output for output in outputs), report
    # They overlapped (each `up` holds the lock for its whole gate), so one at least waited,
    # and said for whom.
    waiting = [line for o in outputs for line in o.splitlines() if "waiting for instance" in line]
    assert waiting, report
    assert all(line.startswith(f"waiting for instance {instance.name}: ") for line in waiting)
    pids = {str(process.pid) for process in processes}
    named = [line.split("process ", 1)[1].split(" ")[0] for line in waiting if "process " in line]
    assert set(named) <= pids, (named, pids)

    assert len(default_networks(project)) == 1, docker("network", "ls").stdout
    networks = docker("network", "ls", "--format", "{{.Name}}", *label_filters(owner_of(space)))
    assert networks.stdout.split() == [f"{project}_default"]

    up(space, instance)
    assert len(default_networks(project)) == 1


def test_destroy_without_docker_on_path_refuses_and_changes_nothing(
    new_workspace: Callable[[str], Workspace], tmp_path: Path
) -> None:
    space = new_workspace("w")
    instance = create(space, "nodock")
    up(space, instance)
    owner = owner_of(space)
    project = env_of(instance)["COMPOSE_PROJECT_NAME"]
    before = containers(owner, instance.name)
    volumes_before = volumes(owner, instance.name)
    assert before
    assert volumes_before

    bin_dir = tmp_path / "bin-without-docker"
    bin_dir.mkdir()
    for tool in ("git",):
        found = shutil.which(tool)
        assert found is not None, tool
        (bin_dir / tool).symlink_to(found)
    assert shutil.which("docker", path=str(bin_dir)) is None
    assert Path("/var/run/docker.sock").exists()
    assert not os.environ.get("DOCKER_HOST")
    no_docker = Workspace(space.repo, home_of(space))
    no_docker.env["PATH"] = str(bin_dir)

    refused = no_docker.run(KTRDR, "sandbox", "destroy", "--yes", instance.name, timeout=300)
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0, output
    assert "Traceback" not in output, output
    errors = error_lines(refused)
    assert len(errors) == 1, output
    assert "docker" in errors[0], output
    assert [line for line in refused.stderr.splitlines() if line.strip()] == errors, output

    after = containers(owner, instance.name)
    assert after == before
    assert all(c["status"] in ("running", "exited") for c in after.values())
    assert any(c["status"] == "running" for c in after.values())
    assert volumes(owner, instance.name) == volumes_before
    entry = space.registry().get(instance.name)
    assert entry is not None, entry
    assert entry["state"] == "ready", entry
    assert (instance / ".git").exists()
    assert (instance / SANDBOX_ENV_FILENAME).is_file()
    worktrees = space.run("git", "worktree", "list", "--porcelain").stdout
    assert f"worktree {instance}\n" in worktrees, worktrees

    space.ktrdr("sandbox", "destroy", "--yes", instance.name, timeout=300)
    assert owned(owner, instance.name) == []
    assert owned(owner) == []
    assert in_project(project) == []
    assert space.registry() == {}
    assert not instance.exists()


def test_paused_worker_shows_paused_and_up_thaws_it(
    new_workspace: Callable[[str], Workspace],
) -> None:
    space = new_workspace("w")
    instance = create(space, "frozen")
    up(space, instance)
    owner = owner_of(space)
    worker = containers(owner, instance.name, **{"com.docker.compose.service": "backtest-worker-1"})
    assert len(worker) == 1, worker
    [(name, state)] = worker.items()
    assert state["status"] == "running"

    docker("pause", name)
    assert containers(owner, instance.name)[name]["status"] == "paused"
    status = json.loads(space.ktrdr("sandbox", "status", "--json", cwd=instance)["stdout"])
    assert status["status"] == "paused", status
    listed = json.loads(space.ktrdr("sandbox", "list", "--json")["stdout"])
    rows = listed if isinstance(listed, list) else listed["instances"]
    assert [row["status"] for row in rows if row["instance_id"] == instance.name] == ["paused"]

    output = up(space, instance)
    assert "docker-proxy" not in output, output
    assert containers(owner, instance.name)[name]["status"] == "running"
    status = json.loads(space.ktrdr("sandbox", "status", "--json", cwd=instance)["stdout"])
    assert status["status"] == "running", status


def test_two_homes_creating_before_any_up_get_different_slots(
    new_workspace: Callable[[str], Workspace],
) -> None:
    """Neither stack runs yet, so no port tells B that A has slot N: A's claim marker on the
    engine does. Destroy removes it with the rest of A's resources."""
    a, b = new_workspace("a"), new_workspace("b")
    instance_a = create(a, "feat")
    marker = owned(owner_of(a), "ktrdr--feat")
    assert len(marker) == 1, marker
    assert marker[0].startswith("volume "), marker
    instance_b = create(b, "feat")
    slot_a, slot_b = env_of(instance_a)["KTRDR_SLOT"], env_of(instance_b)["KTRDR_SLOT"]
    assert slot_a != slot_b, f"both homes took slot {slot_a}"
    a.ktrdr("sandbox", "destroy", "--yes", "ktrdr--feat", timeout=300)
    assert owned(owner_of(a)) == []
    assert len(owned(owner_of(b), "ktrdr--feat")) == 1  # B's claim stays


def test_create_refuses_volumes_an_earlier_instance_of_that_id_left(
    new_workspace: Callable[[str], Workspace],
) -> None:
    """A destroy that could not finish leaves the instance's volumes; a new `create` of that
    name would adopt them (PostgreSQL keeps the old password). The query that finds the other
    homes' slots finds them too: refused, nothing made. Another home's volume of the same id
    is no reason to refuse."""
    a, b = new_workspace("a"), new_workspace("b")
    create(a, "first")  # A's home id, for the labels below
    left = f"ktrdr-test-left-{secrets.token_hex(4)}"
    docker(
        "volume",
        "create",
        "--label",
        f"ktrdr.owner={owner_of(a)}",
        "--label",
        f"ktrdr.owner-home={home_of(a)}",
        "--label",
        "ktrdr.instance=ktrdr--feat",
        left,
    )
    refused = a.run(KTRDR, "sandbox", "create", "feat")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert error_lines(refused) == [
        f"Error: volumes of an earlier instance ktrdr--feat are still on the engine ({left}): "
        "`ktrdr sandbox doctor --fix` removes them once nothing uses them, or pick another name"
    ]
    assert not a.path_of("feat").exists()
    listed = json.loads(a.ktrdr("sandbox", "list", "--json")["stdout"])
    assert [entry["instance_id"] for entry in listed] == ["ktrdr--first"]
    assert volumes(owner_of(a), "ktrdr--feat") == {left}  # no claim marker either
    create(b, "feat")  # B's instance of that id has none of its own left
    docker("volume", "rm", left)
    create(a, "feat")
