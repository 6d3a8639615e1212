"""The stack policy on the real engine: an instance whose worktree's compose file gained a hostile
service (the Docker socket and another directory bind-mounted) is refused by `up` before any
container exists; `--allow` lets a person through one rule, and only that rule.

Each test owns its instance: a registered directory under the test's own KTRDR_HOME on a free
slot, a tiny stack of the offline Debian image, and a finalizer removing what carries its
project's labels."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ktrdr.cli.main import cli
from ktrdr.cli.sandbox.base.stack_file import COMPOSE_FILE
from ktrdr.cli.sandbox.home import registry
from ktrdr.cli.sandbox.home.instance import EnvSettings, read_env, render_env, write_env_file
from ktrdr.cli.sandbox.home.shared_data import shared_root
from ktrdr.cli.sandbox.provision import allocation
from tests.support.engine import image_exists, leftovers, remove_project, skip_or_fail
from tests.support.slots import TEST_SLOTS

pytestmark = pytest.mark.docker

IMAGE = "ktrdr-offline/debian:bookworm"
STACK = """
x-labels: &labels
  ktrdr.owner: ${{KTRDR_OWNER}}
  ktrdr.instance: ${{KTRDR_INSTANCE_ID}}
  ktrdr.slot: ${{KTRDR_SLOT}}
  ktrdr.test: "1"
x-sleeper: &sleeper
  image: {image}
  pull_policy: never
  init: true
  command: ["sleep", "infinity"]
  labels: *labels
services:
  app: *sleeper
  evil:
    <<: *sleeper
    volumes:
{mounts}
networks:
  default:
    labels: *labels
"""
SOCKET = "      - /var/run/docker.sock:/var/run/docker.sock\n"


@dataclass
class PolicyInstance:
    root: Path
    instance_id: str
    project: str
    elsewhere: Path  # a directory outside the instance: another worktree, say

    def write_stack(self, *, socket: bool) -> None:
        mounts = (SOCKET if socket else "") + f"      - {self.elsewhere}:/p\n"
        text = STACK.format(image=IMAGE, mounts=mounts.rstrip("\n"))
        (self.root / COMPOSE_FILE).write_text(text, encoding="utf-8")

    def up(self, *args: str) -> Result:
        return CliRunner().invoke(cli, ["sandbox", "up", "--no-gate", *args])

    def containers(self) -> list[str]:
        return leftovers(f"com.docker.compose.project={self.project}")["container"]


def free_slot() -> int:
    """A slot of the test range no process holds a port of and no other home has claimed."""
    from ktrdr.cli.sandbox.engine.handle import Engine
    from ktrdr.cli.sandbox.engine.ownership import slots_of_other_homes

    claimed = slots_of_other_homes(Engine())
    for slot in TEST_SLOTS:
        if slot not in claimed and not allocation.busy_ports(slot, with_owners=False):
            return slot
    pytest.fail("no test slot has all its ports free on this machine")


@pytest.fixture
def instance(
    tmp_path: Path, isolated_ktrdr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PolicyInstance]:
    if not image_exists(IMAGE):
        skip_or_fail(f"image {IMAGE} is missing (run `make images-offline`)")
    instance_id = f"ktrdr--policy-{uuid.uuid4().hex[:8]}"
    root = tmp_path / instance_id
    root.mkdir()
    elsewhere = tmp_path / "ktrdr--someone-else"
    elsewhere.mkdir()
    slot = free_slot()
    for sub in ("data", "strategies", "models"):  # as `init-shared` makes them
        (shared_root() / sub).mkdir(parents=True, exist_ok=True)
    settings = EnvSettings(
        instance_id=instance_id,
        slot=slot,
        shared_dir=shared_root(),
        images="upstream",
        db_password="secret-1",
        grafana_password="secret-2",
        checkout=root,
    )
    write_env_file(root, render_env(settings, command="test"))
    with registry.transaction() as entries:
        entries[instance_id] = registry.Entry(
            instance_id=instance_id,
            slot=slot,
            path=str(root),
            kind="worktree",
            branch="policy",
            created_at=registry.now_iso(),
            name="policy",
        )
    project = read_env(root / ".env.sandbox")["COMPOSE_PROJECT_NAME"]
    monkeypatch.chdir(root)
    made = PolicyInstance(root, instance_id, project, elsewhere)
    try:
        yield made
    finally:
        remove_project(project)
        remove_project(instance_id)


def test_up_refuses_a_hostile_service_and_creates_no_container(instance: PolicyInstance) -> None:
    instance.write_stack(socket=True)

    result = instance.up()

    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [
        'Error: stack policy refuses service "evil": volumes: /var/run/docker.sock (rule '
        "docker-socket): the Docker socket gives full control of the engine; remove it from "
        "docker-compose.sandbox.yml (a person may pass --allow docker-socket to ktrdr sandbox "
        "up) (and 1 more)"
    ]
    assert instance.containers() == []
    assert leftovers(f"ktrdr.instance={instance.instance_id}") == {
        "container": [],
        "volume": [],
        "network": [],
    }


def test_allow_lets_a_person_through_one_rule_only(instance: PolicyInstance) -> None:
    instance.write_stack(socket=True)

    still = instance.up("--allow", "docker-socket")

    assert still.exit_code == 1, still.output
    assert "(rule bind-mount)" in still.stderr
    assert str(instance.elsewhere) in still.stderr
    assert instance.containers() == []

    instance.write_stack(socket=False)  # the socket gone, the other directory still bound
    refused = instance.up()
    assert refused.exit_code == 1, refused.output
    assert instance.containers() == []

    through = instance.up("--allow", "bind-mount")

    assert through.exit_code == 0, through.output
    assert "stack policy rule bind-mount overridden by --allow" in through.stderr
    evil = leftovers(
        f"com.docker.compose.project={instance.project}", "com.docker.compose.service=evil"
    )["container"]
    assert len(evil) == 1
