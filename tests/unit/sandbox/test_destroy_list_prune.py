"""destroy, list, status, prune against real git repos; Docker is a named stand-in here."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from ktrdr.cli.main import cli
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.commands.render import ago
from ktrdr.cli.sandbox.home import owned_process, registry
from ktrdr.cli.sandbox.home.registry import Entry
from ktrdr.cli.sandbox.instances.locate import from_entry, locate
from ktrdr.cli.sandbox.lifecycle.destroy import destroy_instance
from ktrdr.cli.sandbox.overview.status import instance_status
from ktrdr.cli.sandbox.provision.create import create_instance
from ktrdr.cli.sandbox.provision.init_checkout import init_instance
from tests.support import slots
from tests.support.docker_standin import Container, DockerStandIn
from tests.support.git_repos import git, make_repo


@pytest.fixture(autouse=True)
def _no_port_probing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand-in probe: every port free (real probing is tested in test_allocation)."""
    monkeypatch.setattr("ktrdr.cli.sandbox.provision.allocation.port_in_use", lambda port: False)
    slots.use_the_default_range(monkeypatch)


def _invoke(*args: str) -> object:
    return CliRunner().invoke(cli, ["sandbox", *args])


# --- destroy ---------------------------------------------------------------------------------


def test_destroy_removes_containers_worktree_and_entry_and_keeps_the_branch(
    repo: Path, docker: DockerStandIn
) -> None:
    created = create_instance(name="feat-a", cwd=repo)
    out = CliRunner().invoke(cli, ["sandbox", "destroy", "feat-a", "--yes"])
    assert out.exit_code == 0, out.output
    assert docker.downs == [("ktrdr--feat-a", created.path, True)]
    assert not created.path.exists()
    assert "feat-a" in git(repo, "branch", "--format=%(refname:short)").split()
    assert "branch feat-a kept" in out.stderr
    assert "slot 1 is free" in out.stderr
    assert "ktrdr--feat-a: removing containers, volumes and files" in out.stderr
    assert registry.load() == {}
    assert create_instance(name="feat-c", cwd=repo).slot == 1


def test_destroy_removes_what_the_instances_processes_left_under_the_home(
    repo: Path, docker: DockerStandIn
) -> None:
    create_instance(name="feat-a", cwd=repo)
    state = owned_process.state_dir("ktrdr--feat-a")
    state.mkdir(parents=True)
    (state / "start.log").write_text("Starting instance: ktrdr--feat-a\n")
    (state / "start.json").write_text("{}")  # a record whose process is long gone
    out = CliRunner().invoke(cli, ["sandbox", "destroy", "feat-a", "--yes"])
    assert out.exit_code == 0, out.output
    assert not state.exists()


def test_destroy_keeps_evidence_and_test_results_made_in_the_worktree(
    repo: Path, docker: DockerStandIn, isolated_ktrdr_home: Path
) -> None:
    created = create_instance(name="feat-a", cwd=repo)
    (created.path / ".sandbox" / "evidence").mkdir(parents=True)
    (created.path / ".sandbox" / "evidence" / "bundle.tar.gz").write_bytes(b"evidence")
    (created.path / ".sandbox" / "test-results").mkdir()
    (created.path / ".sandbox" / "test-results" / "e2e-junit.xml").write_text("<testsuite/>")

    out = CliRunner().invoke(cli, ["sandbox", "destroy", "feat-a", "--yes"])

    assert out.exit_code == 0, out.output
    assert not created.path.exists()
    kept = isolated_ktrdr_home / "evidence" / "ktrdr--feat-a"
    assert [p.read_bytes() for p in kept.glob("evidence-*/bundle.tar.gz")] == [b"evidence"]
    assert len(list(kept.glob("test-results-*/e2e-junit.xml"))) == 1
    assert f"kept .sandbox/evidence in {kept}" in out.stderr


def test_destroy_refuses_a_dirty_worktree_without_force(repo: Path, docker: DockerStandIn) -> None:
    created = create_instance(name="feat-a", cwd=repo)
    (created.path / "wip.txt").write_text("unsaved work")
    out = CliRunner().invoke(cli, ["sandbox", "destroy", "feat-a", "--yes"])
    assert out.exit_code == 1
    assert "uncommitted or untracked changes (wip.txt)" in out.stderr
    assert "--force" in out.stderr
    assert "removing" not in out.stderr
    assert (created.path / "wip.txt").exists()
    assert docker.downs == []  # refused before anything was torn down
    assert registry.load()["ktrdr--feat-a"].state == "ready"


def test_destroy_with_force_removes_a_dirty_worktree(repo: Path, docker: DockerStandIn) -> None:
    created = create_instance(name="feat-a", cwd=repo)
    (created.path / "README.md").write_text("modified")
    (created.path / "wip.txt").write_text("unsaved work")
    out = CliRunner().invoke(cli, ["sandbox", "destroy", "feat-a", "--yes", "--force"])
    assert out.exit_code == 0, out.output
    assert not created.path.exists()
    assert registry.load() == {}


def _interrupt_destroy(instance_id: str, *deleted: str, root: Path) -> None:
    """What a destroy killed inside `git worktree remove` leaves: state `destroying` and a
    worktree with part of its files (maybe its .git file) already deleted."""
    with registry.transaction() as entries:
        entries[instance_id].state = "destroying"
    for name in deleted:
        target = root / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()


def _commit_a_package(repo: Path) -> None:
    (repo / "ktrdr").mkdir()
    (repo / "ktrdr" / "core.py").write_text("VALUE = 1\n")
    git(repo, "add", "ktrdr")
    git(repo, "commit", "-q", "-m", "package")


@pytest.mark.parametrize("deleted", [("ktrdr", "README.md"), ("ktrdr", ".git")])
def test_rerunning_an_interrupted_destroy_finishes_it(
    repo: Path, docker: DockerStandIn, deleted: tuple[str, ...]
) -> None:
    _commit_a_package(repo)
    created = create_instance(name="feat-a", cwd=repo)
    _interrupt_destroy("ktrdr--feat-a", *deleted, root=created.path)

    out = CliRunner().invoke(cli, ["sandbox", "destroy", "feat-a", "--yes"])

    assert out.exit_code == 0, out.output
    assert not created.path.exists()
    assert registry.load() == {}
    assert str(created.path) not in git(repo, "worktree", "list")


def test_an_interrupted_destroy_still_protects_files_added_since(
    repo: Path, docker: DockerStandIn
) -> None:
    _commit_a_package(repo)
    created = create_instance(name="feat-a", cwd=repo)
    _interrupt_destroy("ktrdr--feat-a", "ktrdr", root=created.path)
    (created.path / "wip.txt").write_text("written after the kill")

    out = CliRunner().invoke(cli, ["sandbox", "destroy", "feat-a", "--yes"])

    assert out.exit_code == 1
    assert "(wip.txt)" in out.stderr
    assert "--force" in out.stderr
    assert (created.path / "wip.txt").exists()


@pytest.mark.timing
def test_ctrl_c_during_destroy_says_how_to_finish_and_the_rerun_does(
    repo: Path, docker: DockerStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = create_instance(name="feat-a", cwd=repo)

    def interrupted_down(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C arriving while `docker compose down` runs

    with monkeypatch.context() as patch:
        patch.setattr(docker, "down", interrupted_down)
        out = CliRunner().invoke(cli, ["sandbox", "destroy", "feat-a", "--yes"])

    assert out.exit_code == 130
    assert "rerun `ktrdr sandbox destroy ktrdr--feat-a` to finish" in out.stderr
    assert registry.load()["ktrdr--feat-a"].state == "destroying"
    again = CliRunner().invoke(cli, ["sandbox", "destroy", "feat-a", "--yes"])
    assert again.exit_code == 0, again.output
    assert not created.path.exists()
    assert registry.load() == {}


@pytest.mark.timing
def test_a_second_destroy_while_one_runs_is_refused_naming_the_process(
    repo: Path, docker: DockerStandIn
) -> None:
    import subprocess
    import sys

    created = create_instance(name="feat-a", cwd=repo)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with registry.transaction() as entries:  # what a running destroy has recorded
            entries["ktrdr--feat-a"].state = "destroying"
            entries["ktrdr--feat-a"].pid = other.pid
        out = CliRunner().invoke(cli, ["sandbox", "destroy", "feat-a", "--yes"])
        assert out.exit_code == 1
        assert f"is being destroyed by process {other.pid}; wait for it" in out.stderr
        assert created.path.exists()
        assert docker.downs == []
    finally:
        other.kill()
        other.wait()
    again = CliRunner().invoke(cli, ["sandbox", "destroy", "feat-a", "--yes"])  # that one died
    assert again.exit_code == 0, again.output
    assert not created.path.exists()


def test_destroy_never_deletes_an_inited_clone(repo: Path, docker: DockerStandIn) -> None:
    init_instance(cwd=repo)
    (repo / "unpushed.txt").write_text("precious")
    out = CliRunner().invoke(cli, ["sandbox", "destroy", "--yes"])
    assert out.exit_code == 0, out.output
    assert (repo / ".git").is_dir()
    assert (repo / "README.md").exists()
    assert (repo / "unpushed.txt").read_text() == "precious"
    assert not (repo / ".env.sandbox").exists()
    assert registry.load() == {}


def test_destroy_refuses_to_delete_a_main_worktree_registered_as_worktree(
    tmp_path: Path, docker: DockerStandIn
) -> None:
    clone = make_repo(tmp_path / "clone")
    with registry.transaction() as entries:
        entries["clone"] = Entry("clone", 1, str(clone), "worktree", "main", "t")
    with pytest.raises(SandboxError, match="not a linked git worktree: refusing"):
        destroy_instance(from_entry(registry.load()["clone"]), force=True)
    assert (clone / ".git").is_dir()


def test_destroy_without_yes_and_without_a_terminal_refuses_clearly(
    repo: Path, docker: DockerStandIn
) -> None:
    create_instance(name="feat-a", cwd=repo)
    out = CliRunner().invoke(cli, ["sandbox", "destroy", "feat-a"])
    assert out.exit_code == 1
    assert "without confirmation: stdin is not a terminal; pass --yes" in out.stderr
    assert (repo.parent / "ktrdr--feat-a").is_dir()


@pytest.mark.parametrize("docker_cli", ["/usr/bin/docker", None], ids=["engine-down", "no-cli"])
def test_destroy_changes_nothing_when_the_engine_cannot_be_asked(
    repo: Path, docker: DockerStandIn, monkeypatch: pytest.MonkeyPatch, docker_cli: str | None
) -> None:
    """Unknown is not empty: with the engine down, or the docker CLI missing from PATH while an
    engine socket exists, the stack may well be running; the slot must stay claimed."""
    docker.reachable = False
    monkeypatch.setattr(shutil, "which", lambda name: docker_cli)
    created = create_instance(name="feat-a", cwd=repo)
    out = CliRunner().invoke(cli, ["sandbox", "destroy", "feat-a", "--yes"])
    assert out.exit_code == 1
    assert "cannot destroy ktrdr--feat-a" in out.stderr
    assert "nothing was changed" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert created.path.is_dir()
    assert registry.load()["ktrdr--feat-a"].state == "ready"
    assert docker.downs == []
    assert create_instance(name="feat-b", cwd=repo).slot == 2
    # Docker back: destroy goes through and frees the slot.
    docker.reachable = True
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/docker")
    out = CliRunner().invoke(cli, ["sandbox", "destroy", "feat-a", "--yes", "--json"])
    assert json.loads(out.stdout)[0]["slot_released"] is True
    assert set(registry.load()) == {"ktrdr--feat-b"}


def test_destroy_frees_the_slot_on_a_machine_without_any_docker_engine(
    repo: Path, docker: DockerStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    docker.reachable = False
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(docker, "engine_socket_exists", lambda engine: False)
    create_instance(name="feat-a", cwd=repo)
    out = CliRunner().invoke(cli, ["sandbox", "destroy", "feat-a", "--yes", "--json"])
    assert json.loads(out.stdout)[0]["slot_released"] is True
    assert registry.load() == {}


def test_destroy_keeps_the_slot_while_leftovers_remain(repo: Path, docker: DockerStandIn) -> None:
    create_instance(name="feat-a", cwd=repo)
    docker.leftover["ktrdr--feat-a"] = ["volume ktrdr--feat-a_pgdata"]
    out = CliRunner().invoke(cli, ["sandbox", "destroy", "feat-a", "--yes", "--json"])
    result = json.loads(out.stdout)[0]
    assert result["slot_released"] is False
    assert "volume ktrdr--feat-a_pgdata" in result["notes"][0]
    assert registry.load()["ktrdr--feat-a"].state == "destroying"


def test_destroy_all_removes_every_instance(repo: Path, docker: DockerStandIn) -> None:
    for name in ("a", "b", "c"):
        create_instance(name=name, cwd=repo)
    out = CliRunner().invoke(cli, ["sandbox", "destroy", "--all", "--yes"])
    assert out.exit_code == 0, out.output
    assert registry.load() == {}
    assert [w for w in repo.parent.iterdir()] == [repo]


def test_destroy_from_inside_the_worktree_needs_no_name(
    repo: Path, docker: DockerStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = create_instance(name="feat-a", cwd=repo)
    (created.path / "sub").mkdir()
    monkeypatch.chdir(created.path / "sub")
    out = CliRunner().invoke(cli, ["sandbox", "destroy", "--yes", "--force"])
    assert out.exit_code == 0, out.output
    assert not created.path.exists()


# --- name resolution -------------------------------------------------------------------------


def test_names_resolve_by_full_id_or_create_name(repo: Path) -> None:
    create_instance(name="feat-a", cwd=repo)
    assert locate("ktrdr--feat-a", repo).instance_id == "ktrdr--feat-a"
    assert locate("feat-a", repo).instance_id == "ktrdr--feat-a"
    with pytest.raises(SandboxError, match="no instance named 'nope'"):
        locate("nope", repo)


def test_names_also_resolve_by_directory_name_or_path(repo: Path) -> None:
    create_instance(name="Feat-B", cwd=repo)  # id ktrdr--feat-b, directory ktrdr--Feat-B
    assert locate("ktrdr--Feat-B", repo).instance_id == "ktrdr--feat-b"
    assert locate("../ktrdr--Feat-B", repo).instance_id == "ktrdr--feat-b"
    assert locate("feat-b", repo).instance_id == "ktrdr--feat-b"


def test_a_create_name_shared_by_two_repos_is_ambiguous(tmp_path: Path) -> None:
    one = make_repo(tmp_path / "one")
    two = make_repo(tmp_path / "two")
    create_instance(name="feat-a", cwd=one)
    create_instance(name="feat-a", cwd=two)
    with pytest.raises(SandboxError, match="ambiguous: it matches one--feat-a, two--feat-a"):
        locate("feat-a", tmp_path)


# --- list and status -------------------------------------------------------------------------


def test_list_shows_docker_status_from_one_query(repo: Path, docker: DockerStandIn) -> None:
    for name in ("a", "b", "c"):
        create_instance(name=name, cwd=repo)
    docker.containers = {
        "ktrdr--a": [Container("backend", "running"), Container("migrate", "exited")],
        "ktrdr--b": [Container("backend", "running"), Container("db", "exited")],
    }
    out = CliRunner().invoke(cli, ["sandbox", "list", "--json"])
    statuses = {r["instance_id"]: r["status"] for r in json.loads(out.stdout)}
    assert statuses == {"ktrdr--a": "running", "ktrdr--b": "degraded", "ktrdr--c": "stopped"}
    assert docker.queries == 1


def test_list_says_unknown_without_an_engine(repo: Path, docker: DockerStandIn) -> None:
    create_instance(name="a", cwd=repo)
    docker.reachable = False
    out = CliRunner().invoke(cli, ["sandbox", "list"])
    assert out.exit_code == 0
    assert "unknown" in out.stdout
    assert "ktrdr--a" in out.stdout


def test_list_is_read_only_and_says_stale(repo: Path, docker: DockerStandIn) -> None:
    a = create_instance(name="a", cwd=repo)
    b = create_instance(name="b", cwd=repo)
    shutil.rmtree(a.path)
    (b.path / ".env.sandbox").unlink()
    path = registry.registry_path()
    before = path.read_bytes()
    lock = path.with_name("instances.json.lock")
    lock.unlink()
    out = CliRunner().invoke(cli, ["sandbox", "list"])
    assert out.exit_code == 0
    assert out.stdout.count("stale") == 2
    assert path.read_bytes() == before
    assert not lock.exists()


def test_list_table_has_the_documented_columns(repo: Path, docker: DockerStandIn) -> None:
    create_instance(name="a", cwd=repo)
    out = CliRunner().invoke(cli, ["sandbox", "list"])
    header = out.stdout.splitlines()[0].split()
    assert header == ["INSTANCE", "ENGINE", "SLOT", "STATUS", "API", "PORT", "CREATED", "PATH"]
    assert "just now" in out.stdout
    assert "8001" in out.stdout


def test_list_with_no_instances_says_how_to_create_one(docker: DockerStandIn) -> None:
    out = CliRunner().invoke(cli, ["sandbox", "list"])
    assert out.exit_code == 0
    assert out.stdout == ""
    assert "ktrdr sandbox create NAME" in out.stderr
    assert docker.queries == 0


def test_list_prints_markup_like_paths_literally(tmp_path: Path, docker: DockerStandIn) -> None:
    repo = make_repo(tmp_path / "[bold]repo")
    create_instance(name="a", cwd=repo)
    out = CliRunner().invoke(cli, ["sandbox", "list"])
    assert "[bold]repo--a" in out.stdout


def test_ago_reads_like_a_person_would_say_it() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    assert ago("2026-01-02T10:00:00Z", now=now) == "2h ago"
    assert ago("2026-01-01T12:00:00Z", now=now) == "1d ago"
    assert ago("2026-01-02T11:59:30Z", now=now) == "just now"
    assert ago("garbage", now=now) == "?"


def test_status_from_inside_an_instance_shows_slot_ports_and_urls(
    repo: Path, docker: DockerStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = create_instance(name="feat-b", cwd=repo, slot=2)
    docker.containers = {
        "ktrdr--feat-b": [
            Container("backend", "running", "healthy"),
            Container("db", "running", "starting"),
            Container("migrate", "exited"),
        ]
    }
    monkeypatch.chdir(created.path)
    out = CliRunner().invoke(cli, ["sandbox", "status", "--json"])
    data = json.loads(out.stdout)
    # db still starting, and no API of this instance answers on 8002: degraded, saying why.
    assert (data["instance_id"], data["slot"], data["status"]) == ("ktrdr--feat-b", 2, "degraded")
    assert "db health: starting" in data["reasons"]
    assert data["ports"]["api"] == 8002
    assert data["ports"]["db"] == 5434
    assert data["urls"]["grafana"] == "http://localhost:3002"
    # The backend is not counted healthy: its API did not answer for this instance just now.
    assert data["containers"] == {"total": 2, "running": 2, "healthy": 0}
    text = CliRunner().invoke(cli, ["sandbox", "status", "feat-b"])
    assert "0/2 healthy" in text.stdout
    assert "http://localhost:8002" in text.stdout


def test_status_outside_any_instance_explains_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="this is not a sandbox instance"):
        instance_status(None, cwd=tmp_path)


def test_status_of_an_unregistered_env_file_reports_what_the_file_says(
    tmp_path: Path, docker: DockerStandIn
) -> None:
    (tmp_path / ".env.sandbox").write_text("KTRDR_INSTANCE_ID=lost\nKTRDR_SLOT=4\n")
    docker.containers["lost"] = [
        Container("backend", "running", "healthy"),
        Container("db", "exited"),
    ]
    status = instance_status(None, cwd=tmp_path)
    assert (status.instance_id, status.slot, status.registered) == ("lost", 4, False)
    # Docker answers, so the counts are known (not "Docker not reachable").
    assert (status.containers_total, status.containers_running) == (2, 1)


# --- prune -----------------------------------------------------------------------------------


def test_prune_dry_run_lists_stale_entries_and_changes_nothing(
    repo: Path, docker: DockerStandIn
) -> None:
    a = create_instance(name="a", cwd=repo)
    create_instance(name="b", cwd=repo)
    shutil.rmtree(a.path)
    before = registry.registry_path().read_bytes()
    out = CliRunner().invoke(cli, ["sandbox", "prune", "--dry-run"])
    assert out.exit_code == 0
    assert "ktrdr--a" in out.stdout
    assert "would remove" in out.stdout
    assert "ktrdr--b" not in out.stdout
    assert registry.registry_path().read_bytes() == before
    assert docker.downs == []


def test_prune_removes_stale_entries_and_their_leftovers(repo: Path, docker: DockerStandIn) -> None:
    a = create_instance(name="a", cwd=repo)
    b = create_instance(name="b", cwd=repo)
    create_instance(name="c", cwd=repo)
    shutil.rmtree(a.path)
    (b.path / ".env.sandbox").unlink()
    with registry.transaction() as entries:
        entries["ghost"] = Entry(
            "ghost", 9, "/nowhere", "worktree", "g", "t", state="creating", pid=2**22 + 7
        )
    out = CliRunner().invoke(cli, ["sandbox", "prune", "--json"])
    pruned = {p["instance_id"]: p for p in json.loads(out.stdout)}
    assert set(pruned) == {"ktrdr--a", "ktrdr--b", "ghost"}
    assert all(p["removed"] for p in pruned.values())
    assert "process" in pruned["ghost"]["reason"]
    assert set(registry.load()) == {"ktrdr--c"}
    assert sorted(d[0] for d in docker.downs) == ["ktrdr--a", "ktrdr--b"]
    assert b.path.is_dir()  # prune never deletes directories
    assert str(a.path) not in git(repo, "worktree", "list")


def test_prune_says_how_to_delete_the_worktree_it_keeps(repo: Path, docker: DockerStandIn) -> None:
    b = create_instance(name="b", cwd=repo)
    (b.path / ".env.sandbox").unlink()
    (b.path / "notes.txt").write_text("uncommitted work\n")
    out = CliRunner().invoke(cli, ["sandbox", "prune"])
    assert out.exit_code == 0, out.output
    remove = f"git -C {repo} worktree remove {b.path}"
    assert out.stderr.strip() == (
        f"note: ktrdr--b: worktree {b.path} kept (it may hold your work): `{remove}`, then "
        f"`git -C {repo} branch -d b` to delete it"
    )
    assert (b.path / "notes.txt").read_text() == "uncommitted work\n"
    assert registry.load() == {}

    # The advice works (git wants --force here, and says so, since notes.txt is untracked).
    git(repo, "worktree", "remove", "--force", str(b.path))
    git(repo, "branch", "-d", "b")
    assert not b.path.exists()
    assert git(repo, "branch", "--list", "b") == ""


def test_prune_json_note_names_the_kept_worktree(repo: Path, docker: DockerStandIn) -> None:
    b = create_instance(name="b", cwd=repo)
    (b.path / ".env.sandbox").unlink()
    out = CliRunner().invoke(cli, ["sandbox", "prune", "--json"])
    [pruned] = json.loads(out.stdout)
    assert pruned["removed"] is True
    assert f"worktree {b.path} kept (it may hold your work)" in pruned["note"]


def test_prune_keeps_stale_entries_while_docker_cannot_confirm(
    repo: Path, docker: DockerStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = create_instance(name="a", cwd=repo)
    shutil.rmtree(a.path)
    docker.reachable = False
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/docker")
    out = CliRunner().invoke(cli, ["sandbox", "prune"])
    assert "kept" in out.stdout
    assert "ktrdr--a" in registry.load()


def test_prune_with_nothing_stale_says_so(repo: Path, docker: DockerStandIn) -> None:
    create_instance(name="a", cwd=repo)
    out = CliRunner().invoke(cli, ["sandbox", "prune"])
    assert out.exit_code == 0
    assert "nothing to prune" in out.stderr


@pytest.mark.parametrize(
    "args", [["sandbox", "--help"], ["sandbox", "list"], ["sandbox", "list", "--json"]]
)
def test_sandbox_list_and_help_do_not_import_heavy_libraries(
    args: list[str], isolated_ktrdr_home: Path
) -> None:
    import sys

    probe = (
        "import sys\n"
        "from ktrdr.cli.main import cli\n"
        f"try:\n    cli({args!r}, standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('docker', 'httpx', 'yaml', 'rich.table') if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "HEAVY=", result.stdout


def test_a_corrupt_registry_stops_every_command_and_stays_byte_for_byte(repo: Path) -> None:
    path = registry.registry_path()
    path.parent.mkdir(parents=True)
    content = b'{"version": 1, "instances": {"a": '
    path.write_bytes(content)
    for args in (["create", "feat-a"], ["list"], ["init"], ["prune"], ["destroy", "a", "--yes"]):
        out = CliRunner().invoke(cli, ["sandbox", *args])
        assert out.exit_code == 1, args
        assert out.stderr.startswith(f"Error: registry {path} is corrupt"), out.stderr
        assert "Traceback" not in out.output
    assert path.read_bytes() == content
    assert not (repo.parent / "ktrdr--feat-a").exists()
    assert not (repo / ".env.sandbox").exists()


def test_destroy_refuses_an_instance_that_is_still_being_created(
    repo: Path, docker: DockerStandIn
) -> None:
    import os

    with registry.transaction() as entries:
        entries["busy"] = Entry(
            "busy", 3, str(repo), "worktree", "b", "t", state="creating", pid=os.getpid()
        )
    out = CliRunner().invoke(cli, ["sandbox", "destroy", "busy", "--yes"])
    assert "still being created" in out.stderr
    assert registry.load()["busy"].state == "creating"
