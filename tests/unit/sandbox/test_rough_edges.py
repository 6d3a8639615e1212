"""Issue 24's rough edges, each one line and nothing changed: the real name limit, YAML errors
with a line number (and `status` showing them), claimed-only slots worded as claimed, lock
files going with their instance, a lost home named by `status` and refused by `init`. (A
relative or empty KTRDR_HOME: test_registry.py; `up` without shared data: test_gate_up.py.)"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from ktrdr.cli.main import cli
from ktrdr.cli.sandbox.base import stack_file
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.engine.handle import Engine
from ktrdr.cli.sandbox.home import locks, registry
from ktrdr.cli.sandbox.home.directory import home_id
from ktrdr.cli.sandbox.home.registry import Entry
from ktrdr.cli.sandbox.provision import claims
from ktrdr.cli.sandbox.provision.allocation import allocate
from tests.support.docker_standin import DockerStandIn


def _files(root: Path) -> list[Path]:
    return sorted(root.rglob("*"))


def test_a_200_character_name_is_refused_with_the_checkouts_real_limit(
    repo: Path, isolated_ktrdr_home: Path, docker: DockerStandIn
) -> None:
    before = _files(repo.parent)
    out = CliRunner().invoke(cli, ["sandbox", "create", "x" * 200])
    assert out.exit_code == 1
    assert out.stderr.count("\n") == 1
    assert "200 characters, at most 56 in checkout 'ktrdr'" in out.stderr
    assert "63 allowed" not in out.stderr
    assert "256" not in out.stderr
    assert _files(repo.parent) == before
    assert registry.load() == {}


def test_invalid_compose_yaml_is_one_line_with_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / stack_file.COMPOSE_FILE).write_text("services:\n  db:\n    image: x\n   bad: [\n")
    with pytest.raises(SandboxError) as caught:
        stack_file.load(tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / stack_file.COMPOSE_FILE}, line 4, column 4: ")
    assert "not valid YAML" in message
    assert stack_file.problem(tmp_path) == message


def test_status_reports_a_broken_compose_file_as_a_reason(
    repo: Path, docker: DockerStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.instances import register_instance

    register_instance(repo, slot=3)
    (repo / stack_file.COMPOSE_FILE).write_text("services:\n  db: {image: x\n")
    out = CliRunner().invoke(cli, ["sandbox", "status", "--json"])
    assert out.exit_code == 0, out.output
    reasons = json.loads(out.stdout)["reasons"]
    assert any("line 3, column 1: not valid YAML" in r for r in reasons), reasons


def test_a_slot_another_home_only_claimed_is_worded_as_claimed_with_who_and_when(
    docker: DockerStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stands in for the port probe: this machine's real stacks may hold slots 4 and 5.
    monkeypatch.setattr(claims, "probe_slots", lambda slots: {slot: [] for slot in slots})
    docker.other_homes_slots = {
        4: "instance ktrdr--x of KTRDR_HOME /elsewhere since 2026-01-02T03:04:05+00:00",
        5: "instance ktrdr--y of KTRDR_HOME /elsewhere",
    }
    docker.claimed_only = {4}
    busy, _ = claims.busy_slots(Engine(), [4, 5], instance_id="ktrdr--z")
    assert (
        busy[4][0]
        .describe()
        .endswith(
            "is claimed by instance ktrdr--x of KTRDR_HOME /elsewhere since "
            "2026-01-02T03:04:05+00:00 (not started)"
        )
    )
    assert "held by instance ktrdr--y" in busy[5][0].describe()
    assert "its stack is on this engine" in busy[5][0].describe()


def test_a_slot_a_create_in_this_home_is_claiming_is_worded_as_claimed() -> None:
    entry = Entry(
        instance_id="ktrdr--a",
        slot=2,
        path="/w/ktrdr--a",
        kind="worktree",
        branch="a",
        created_at="2026-01-02T03:04:05Z",
        state="creating",
        pid=4242,
    )
    with pytest.raises(SandboxError) as caught:
        allocate({"ktrdr--a": entry}, instance_id="ktrdr--b", requested=2, busy={2: []})
    assert "slot 2 is claimed by instance ktrdr--a of this home" in str(caught.value)
    assert "process 4242 since 2026-01-02T03:04:05Z" in str(caught.value)


def test_lock_files_go_with_the_instance_but_never_while_held(isolated_ktrdr_home: Path) -> None:
    directory = isolated_ktrdr_home / "sandbox" / "locks"
    with locks.instance_lock("ktrdr--a", command="test"):
        assert (directory / "ktrdr--a.lock").exists()
        assert not locks.remove_lock_files("ktrdr--a", still_gone=lambda: True)
        assert (directory / "ktrdr--a.lock").exists()
    assert not locks.remove_lock_files("ktrdr--a", still_gone=lambda: False)  # registered again
    assert (directory / "ktrdr--a.lock").exists()
    assert locks.remove_lock_files("ktrdr--a", still_gone=lambda: True)
    assert list(directory.iterdir()) == []
    with locks.instance_lock("ktrdr--a", command="test"):  # a later instance of that id
        assert (directory / "ktrdr--a.lock").exists()


def test_destroy_removes_the_instances_lock_files(
    repo: Path, isolated_ktrdr_home: Path, docker: DockerStandIn
) -> None:
    from tests.support.instances import register_instance

    clone = repo.parent / "clone"
    shutil.copytree(repo, clone)
    register_instance(clone, slot=3)
    os.chdir(repo)
    out = CliRunner().invoke(cli, ["sandbox", "destroy", "clone", "--yes"])
    assert out.exit_code == 0, out.output
    directory = isolated_ktrdr_home / "sandbox" / "locks"
    assert not (directory / "clone.lock").exists()
    assert not (directory / "clone.holder").exists()


def _lost_view(root: Path, *, owner: str, owner_home: Path) -> None:
    (root / ".env.sandbox").write_text(
        f"KTRDR_INSTANCE_ID=ktrdr\nKTRDR_OWNER={owner}\nKTRDR_OWNER_HOME={owner_home}\n"
        "KTRDR_SLOT=3\nKTRDR_SHARED_DIR=/nowhere\n"
    )


def test_status_of_a_recreated_homes_instance_says_the_home_is_gone_not_set_it(
    repo: Path, isolated_ktrdr_home: Path, docker: DockerStandIn
) -> None:
    home_id()  # the recreated home, with a new id
    _lost_view(repo, owner="0badc0de", owner_home=isolated_ktrdr_home)
    out = CliRunner().invoke(cli, ["sandbox", "status", "--json"])
    assert out.exit_code == 0, out.output
    reason = json.loads(out.stdout)["stale_reason"]
    assert "run with KTRDR_HOME set to it" not in reason
    assert "gone (recreated with a new id)" in reason
    assert f"`ktrdr sandbox adopt {repo}`" in reason
    assert "`ktrdr sandbox doctor --remove-lost 0badc0de`" in reason


def test_init_in_a_lost_homes_checkout_refuses_while_its_stack_is_on_the_engine(
    repo: Path, tmp_path: Path, docker: DockerStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ktrdr.cli.sandbox.engine import lost_homes
    from ktrdr.cli.sandbox.engine.ownership import Resource

    gone = tmp_path / "deleted-home"
    _lost_view(repo, owner="0badc0de", owner_home=gone)
    before = (repo / ".env.sandbox").read_text()
    labelled = [
        Resource("container", "ktrdr-db-1", "ktrdr", "0badc0de", str(gone), str(repo), "p"),
        Resource("volume", "ktrdr-0badc0de_pgdata", "ktrdr", "0badc0de", str(gone), "", "p"),
    ]
    monkeypatch.setattr(lost_homes.ownership, "resources", lambda engine, filters: labelled)
    out = CliRunner().invoke(cli, ["sandbox", "init"])
    assert out.exit_code == 1
    assert out.stderr.count("\n") == 1
    assert "is instance ktrdr of lost home 0badc0de" in out.stderr
    assert f"`ktrdr sandbox adopt {repo}`" in out.stderr
    assert "`ktrdr sandbox doctor --remove-lost 0badc0de`" in out.stderr
    assert (repo / ".env.sandbox").read_text() == before
    assert registry.load() == {}


def test_remove_lost_refuses_a_home_that_still_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ktrdr.cli.sandbox.engine import lost_homes
    from ktrdr.cli.sandbox.engine.ownership import Resource

    alive = tmp_path / "alive"
    alive.mkdir()
    (alive / "home-id").write_text("0badc0de\n")
    labelled = [Resource("volume", "v", "ktrdr", "0badc0de", str(alive), "", "p")]
    monkeypatch.setattr(lost_homes.ownership, "resources", lambda engine, filters: labelled)
    removed: list[object] = []
    monkeypatch.setattr(lost_homes.proc, "run", lambda *a, **k: removed.append(a))
    with pytest.raises(SandboxError, match="home 0badc0de is not lost"):
        lost_homes.remove_lost(Engine(), "0badc0de")
    assert removed == []
