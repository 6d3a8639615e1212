"""create and init against real git repos: layout, branch, env file, exclude, rollback."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from ktrdr.cli.main import cli
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.home import registry
from ktrdr.cli.sandbox.home.directory import home_id
from ktrdr.cli.sandbox.home.instance import read_env
from ktrdr.cli.sandbox.home.registry import Entry
from ktrdr.cli.sandbox.instances.worktree import list_worktrees
from ktrdr.cli.sandbox.provision.create import create_instance
from ktrdr.cli.sandbox.provision.init_checkout import init_instance
from ktrdr.cli.sandbox.slots.ports import SANDBOX_SLOTS
from tests.support import slots
from tests.support.docker_standin import Container, DockerStandIn
from tests.support.git_repos import git, make_repo
from tests.support.instances import interrupted_create


@pytest.fixture(autouse=True)
def _no_port_probing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand-in probe: every port free, so slot numbers do not depend on what runs on this
    machine. Real probing is covered in test_allocation and the concurrency test."""
    monkeypatch.setattr("ktrdr.cli.sandbox.provision.allocation.port_in_use", lambda port: False)
    slots.use_the_default_range(monkeypatch)


def _branches(repo: Path) -> list[str]:
    return git(repo, "branch", "--format=%(refname:short)").split()


def test_create_adds_a_worktree_next_to_the_repo_on_a_new_branch(repo: Path) -> None:
    result = create_instance(name="feat-a", cwd=repo)
    path = repo.parent / "ktrdr--feat-a"
    assert result.path == path
    assert path.is_dir()
    assert result.instance_id == "ktrdr--feat-a"
    assert result.slot == 1
    assert git(path, "rev-parse", "--abbrev-ref", "HEAD").strip() == "feat-a"
    assert path in [w.path for w in list_worktrees(repo)]
    values = read_env(path / ".env.sandbox")
    assert values["KTRDR_INSTANCE_ID"] == "ktrdr--feat-a"
    # The readable id plus this home's id: unique on the engine, not only in this registry.
    assert values["COMPOSE_PROJECT_NAME"] == f"ktrdr--feat-a-{home_id()}"
    assert values["KTRDR_OWNER"] == home_id()
    assert values["KTRDR_CHECKOUT"] == str(path)
    assert values["KTRDR_API_PORT"] == "8001"
    assert stat.S_IMODE((path / ".env.sandbox").stat().st_mode) == 0o600
    entry = registry.load()["ktrdr--feat-a"]
    assert (entry.slot, entry.kind, entry.branch, entry.state) == (1, "worktree", "feat-a", "ready")
    assert entry.pid is None
    assert entry.path == str(path)


def test_env_file_and_evidence_dir_are_excluded_from_git_once(repo: Path) -> None:
    create_instance(name="feat-a", cwd=repo)
    create_instance(name="feat-b", cwd=repo)
    exclude = (repo / ".git" / "info" / "exclude").read_text().splitlines()
    assert exclude.count("/.env.sandbox") == 1
    assert exclude.count("/.sandbox/") == 1
    assert git(repo.parent / "ktrdr--feat-a", "status", "--porcelain") == ""


def test_two_creates_get_slots_one_and_two_and_ports_8001_8002(repo: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["sandbox", "create", "feat-a"]).exit_code == 0
    out = runner.invoke(cli, ["sandbox", "create", "feat-b", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["slot"] == 2
    assert data["urls"]["api"] == "http://localhost:8002"
    listed = json.loads(runner.invoke(cli, ["sandbox", "list", "--json"]).stdout)
    assert [(r["instance_id"], r["slot"], r["api_port"]) for r in listed] == [
        ("ktrdr--feat-a", 1, 8001),
        ("ktrdr--feat-b", 2, 8002),
    ]


def test_config_show_inside_a_worktree_resolves_its_api_port(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_instance(name="feat-a", cwd=repo)
    create_instance(name="feat-b", cwd=repo)
    monkeypatch.chdir(repo.parent / "ktrdr--feat-b")
    out = CliRunner().invoke(cli, ["config", "show", "--json"])
    assert json.loads(out.stdout)["api_url"] == "http://localhost:8002"


def test_create_prints_location_urls_and_the_next_command(repo: Path) -> None:
    out = CliRunner().invoke(cli, ["sandbox", "create", "feat-a"])
    assert out.exit_code == 0, out.output
    assert str(repo.parent / "ktrdr--feat-a") in out.stdout
    for url in ("http://localhost:8001", "http://localhost:3001", "http://localhost:16687"):
        assert url in out.stdout
    assert f"cd {repo.parent / 'ktrdr--feat-a'} && ktrdr sandbox up" in out.stderr


def test_create_with_slot_takes_that_slot(repo: Path) -> None:
    assert create_instance(name="feat-a", cwd=repo, slot=7).slot == 7
    with pytest.raises(SandboxError, match="slot 7 is taken by instance ktrdr--feat-a"):
        create_instance(name="feat-b", cwd=repo, slot=7)
    assert "feat-b" not in _branches(repo)


def test_create_from_base_starts_the_branch_there(repo: Path) -> None:
    first = git(repo, "rev-parse", "HEAD").strip()
    (repo / "b.txt").write_text("b")
    git(repo, "add", "b.txt")
    git(repo, "commit", "-q", "-m", "second")
    result = create_instance(name="old", cwd=repo, base=first)
    assert git(result.path, "rev-parse", "HEAD").strip() == first


@pytest.mark.parametrize("base", ["-x", "--upload-pack=touch /tmp/pwned", "", "no-such-ref"])
def test_a_base_that_is_not_a_commit_is_refused_before_git_runs(repo: Path, base: str) -> None:
    with pytest.raises(SandboxError, match=r"--base .* is not a commit of .*: pass a branch"):
        create_instance(name="based", cwd=repo, base=base)
    assert not (repo.parent / "ktrdr--based").exists()
    assert "based" not in _branches(repo)
    assert registry.load() == {}


def test_create_with_an_existing_branch_checks_it_out(repo: Path) -> None:
    git(repo, "branch", "topic")
    result = create_instance(name="work", cwd=repo, branch="topic")
    assert git(result.path, "rev-parse", "--abbrev-ref", "HEAD").strip() == "topic"
    assert "work" not in _branches(repo)
    assert registry.load()[result.instance_id].branch == "topic"


def test_create_refuses_an_existing_branch_name_without_branch_flag(repo: Path) -> None:
    git(repo, "branch", "feat-a")
    with pytest.raises(SandboxError, match="branch 'feat-a' already exists: pass --branch"):
        create_instance(name="feat-a", cwd=repo)
    assert registry.load() == {}


def test_create_refuses_a_missing_branch(repo: Path) -> None:
    with pytest.raises(SandboxError, match="branch 'nope' does not exist"):
        create_instance(name="x", cwd=repo, branch="nope")


def test_create_outside_a_git_checkout_says_so(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="is not inside a git checkout"):
        create_instance(name="x", cwd=tmp_path)


def test_create_onto_a_pre_existing_path_leaves_nothing_behind(repo: Path) -> None:
    (repo.parent / "ktrdr--feat-a").mkdir()
    with pytest.raises(SandboxError, match="already exists"):
        create_instance(name="feat-a", cwd=repo)
    assert registry.load() == {}
    assert "feat-a" not in _branches(repo)


def _hook(repo: Path, body: str) -> None:
    hook = repo / ".git" / "hooks" / "post-checkout"
    hook.write_text("#!/bin/sh\n" + body + "\n")
    hook.chmod(0o755)


def test_create_rolls_back_worktree_branch_and_claim_when_env_write_fails(repo: Path) -> None:
    # A real failure: the checkout hook puts a directory where .env.sandbox must go.
    _hook(repo, "mkdir -p .env.sandbox/blocker")
    with pytest.raises(SandboxError, match=r"cannot write .*\.env\.sandbox"):
        create_instance(name="feat-a", cwd=repo)
    assert not (repo.parent / "ktrdr--feat-a").exists()
    assert "feat-a" not in _branches(repo)
    assert [w.path for w in list_worktrees(repo)] == [repo]
    assert registry.load() == {}


def test_create_rolls_back_when_the_exclude_file_cannot_be_written(repo: Path) -> None:
    # The checkout hook (run by `git worktree add`) turns info/exclude into a directory.
    _hook(repo, 'x="$(git rev-parse --git-common-dir)/info/exclude"; rm -f "$x"; mkdir -p "$x"')
    with pytest.raises(SandboxError, match="cannot update"):
        create_instance(name="feat-a", cwd=repo)
    assert not (repo.parent / "ktrdr--feat-a").exists()
    assert "feat-a" not in _branches(repo)
    assert registry.load() == {}


def test_create_deletes_the_branch_when_git_worktree_add_fails_halfway(repo: Path) -> None:
    exclude = repo / ".git" / "info" / "exclude"
    exclude.unlink(missing_ok=True)
    exclude.mkdir(parents=True)
    with pytest.raises(SandboxError, match="cannot create worktree"):
        create_instance(name="feat-a", cwd=repo)
    assert not (repo.parent / "ktrdr--feat-a").exists()
    assert "feat-a" not in _branches(repo)
    assert registry.load() == {}


def test_create_keeps_an_existing_branch_on_rollback(repo: Path) -> None:
    git(repo, "branch", "topic")
    _hook(repo, "mkdir -p .env.sandbox/blocker")
    with pytest.raises(SandboxError):
        create_instance(name="work", cwd=repo, branch="topic")
    assert "topic" in _branches(repo)
    assert not (repo.parent / "ktrdr--work").exists()


def test_a_dead_creating_claim_is_reclaimed_by_the_next_create(repo: Path) -> None:
    with registry.transaction() as entries:
        entries["ghost"] = Entry(
            "ghost",
            1,
            "/nowhere/ghost",
            "worktree",
            "ghost",
            registry.now_iso(),
            state="creating",
            pid=2**22 + 4242,
        )
    assert create_instance(name="feat-a", cwd=repo).slot == 1
    assert set(registry.load()) == {"ktrdr--feat-a"}


def test_the_next_create_undoes_what_a_killed_create_left(repo: Path) -> None:
    ghost = interrupted_create(repo, "ghost")  # worktree + branch + claim with a dead pid

    created = create_instance(name="feat-a", cwd=repo)

    assert set(registry.load()) == {"ktrdr--feat-a"}
    assert not ghost.root.exists()
    assert "ghost" not in _branches(repo)
    assert str(ghost.root) not in git(repo, "worktree", "list")
    assert any("interrupted create of ktrdr--ghost" in note for note in created.notes)


def test_recreating_the_name_of_a_killed_create_just_works(repo: Path) -> None:
    interrupted_create(repo, "again")
    out = CliRunner().invoke(cli, ["sandbox", "create", "again"])
    assert out.exit_code == 0, out.output
    assert "note: cleaned up after an interrupted create of ktrdr--again" in out.stderr
    assert registry.load()["ktrdr--again"].state == "ready"


def test_a_live_creating_claim_holds_its_slot(repo: Path) -> None:
    with registry.transaction() as entries:
        entries["busy"] = Entry(
            "busy",
            1,
            "/nowhere/busy",
            "worktree",
            "b",
            registry.now_iso(),
            state="creating",
            pid=os.getpid(),
        )
    assert create_instance(name="feat-a", cwd=repo).slot == 2


def test_create_when_every_slot_is_taken_fails_and_creates_nothing(repo: Path) -> None:
    with registry.transaction() as entries:
        for slot in SANDBOX_SLOTS:
            entries[f"i{slot}"] = Entry(f"i{slot}", slot, f"/w/{slot}", "clone", None, "t")
    out = CliRunner().invoke(cli, ["sandbox", "create", "feat-a"])
    assert out.exit_code == 1
    assert out.stderr.startswith("Error: no free slot in 1..10")
    assert not (repo.parent / "ktrdr--feat-a").exists()
    assert "feat-a" not in _branches(repo)


HOSTILE = [
    "my feat",
    "UPPER case",
    "fé",
    "../x",
    "a;rm -rf ~",
    "-rf",
    "x" * 200,
    "[bold]x",
    "a/b",
    "..",
    "$(touch pwned)",
]


def _tree(top: Path) -> list[str]:
    """Every name under `top` but git's internals and the home (which gets the refused
    create's journal record)."""
    skip = {".git", "ktrdr-home"}
    return sorted(p.name for p in top.rglob("*") if not skip & set(p.relative_to(top).parts))


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_refused_and_never_escape_or_reach_a_shell(repo: Path, name: str) -> None:
    work = repo.parent
    before = _tree(work.parent)
    out = CliRunner().invoke(cli, ["sandbox", "create", "--", name])
    assert out.exit_code != 0
    assert "Traceback" not in out.output
    after = _tree(work.parent)
    assert after == before
    assert not (Path.home() / "pwned").exists()
    assert not (repo / "pwned").exists()
    assert registry.load() == {}


def test_a_markup_like_name_prints_literally(repo: Path) -> None:
    out = CliRunner().invoke(cli, ["sandbox", "create", "[bold]x"])
    assert "'[bold]x'" in out.stderr


def test_an_uppercase_name_is_slugged_into_the_instance_id(repo: Path) -> None:
    result = create_instance(name="Feat-A", cwd=repo)
    assert result.path.name == "ktrdr--Feat-A"
    assert result.instance_id == "ktrdr--feat-a"
    with pytest.raises(SandboxError):
        create_instance(name="feat-a", cwd=repo)  # same id: refused, nothing half-made
    assert not (repo.parent / "ktrdr--feat-a").exists()


def test_a_hostile_repo_directory_name_is_slugged(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "My Repo [x]")
    result = create_instance(name="a", cwd=repo)
    assert result.instance_id == "my-repo-x---a"
    assert result.path == tmp_path / "My Repo [x]--a"


def test_init_makes_the_current_clone_an_instance(repo: Path) -> None:
    out = CliRunner().invoke(cli, ["sandbox", "init", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert (data["instance_id"], data["kind"], data["slot"], data["branch"]) == (
        "ktrdr",
        "clone",
        1,
        "main",
    )
    assert read_env(repo / ".env.sandbox")["KTRDR_SLOT"] == "1"
    assert git(repo, "status", "--porcelain") == ""


def test_init_twice_only_rewrites_the_view_from_the_record(repo: Path) -> None:
    first = init_instance(cwd=repo)
    view = (repo / ".env.sandbox").read_text()
    again = init_instance(cwd=repo)
    assert (again.instance_id, again.slot) == (first.instance_id, first.slot)
    assert again.notes == ["already registered: rewrote .env.sandbox from this home's record"]
    assert (repo / ".env.sandbox").read_text() == view


def test_init_takes_slot_zero_only_when_asked(repo: Path) -> None:
    assert init_instance(cwd=repo, slot=0).slot == 0
    assert read_env(repo / ".env.sandbox")["KTRDR_API_PORT"] == "8000"


def test_init_inside_a_created_worktree_keeps_it_a_worktree_instance(repo: Path) -> None:
    result = create_instance(name="feat-a", cwd=repo)
    again = init_instance(cwd=result.path)
    assert (again.instance_id, again.slot, again.kind) == (
        result.instance_id,
        result.slot,
        "worktree",
    )
    assert registry.load()[result.instance_id].kind == "worktree"


def test_python_dash_m_entry_point_works(repo: Path, isolated_ktrdr_home: Path) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "ktrdr.cli.main", "sandbox", "list", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "KTRDR_HOME": str(isolated_ktrdr_home)},
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


def test_create_refuses_slot_0_which_belongs_to_the_main_dev_environment(repo: Path) -> None:
    out = CliRunner().invoke(cli, ["sandbox", "create", "feat-z", "--slot", "0"])
    assert out.exit_code == 2
    assert "1<=x<=99" in out.stderr
    assert registry.load() == {}
    assert not (repo.parent / "ktrdr--feat-z").exists()


def test_creating_an_existing_instance_again_names_it_and_where_it_is(repo: Path) -> None:
    first = create_instance(name="feat-b", cwd=repo)
    with pytest.raises(
        SandboxError, match=r"instance ktrdr--feat-b already exists at .* \(slot 1\)"
    ):
        create_instance(name="feat-b", cwd=repo)
    assert str(first.path) in str(registry.load()["ktrdr--feat-b"].path)


def test_create_from_inside_an_instance_makes_a_sibling_starting_at_its_head(repo: Path) -> None:
    outer = create_instance(name="feat-a", cwd=repo)
    (outer.path / "a.txt").write_text("a")
    git(outer.path, "add", "a.txt")
    git(outer.path, "commit", "-q", "-m", "work in feat-a")

    inner = create_instance(name="feat-b", cwd=outer.path)

    assert inner.path == repo.parent / "ktrdr--feat-b"  # not ktrdr--feat-a--feat-b
    assert git(inner.path, "rev-parse", "HEAD") == git(outer.path, "rev-parse", "HEAD")
    assert registry.load()["ktrdr--feat-b"].repo == str(repo)


def _lost_instance(repo: Path, slot: int) -> None:
    """An instance whose registry entry is gone (registry deleted, other KTRDR_HOME)."""
    init_instance(cwd=repo, slot=slot)
    registry.registry_path().unlink()


def test_re_init_after_a_lost_registry_keeps_the_slot_of_its_env_file(
    repo: Path, docker: DockerStandIn
) -> None:
    _lost_instance(repo, slot=4)
    assert init_instance(cwd=repo).slot == 4  # not the lowest free one (1)
    assert read_env(repo / ".env.sandbox")["KTRDR_API_PORT"] == "8004"


def test_re_init_keeps_the_slot_its_running_stack_holds_even_though_its_ports_are_busy(
    repo: Path, docker: DockerStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    _lost_instance(repo, slot=4)
    docker.containers["ktrdr"] = [Container("backend", "running", "healthy")]
    # What the instance's own backend container holds (a stand-in probe: binding the real port
    # would collide with whatever runs on slot 4 of this machine).
    monkeypatch.setattr(
        "ktrdr.cli.sandbox.provision.allocation.port_in_use", lambda port: port == 8004
    )
    assert init_instance(cwd=repo).slot == 4


def test_re_init_refuses_when_its_running_stack_s_slot_was_taken_meanwhile(
    repo: Path, docker: DockerStandIn
) -> None:
    _lost_instance(repo, slot=1)
    docker.containers["ktrdr"] = [Container("backend", "running", "healthy")]
    create_instance(name="newer", cwd=repo)  # took slot 1 while the entry was lost
    with pytest.raises(SandboxError, match=r"stack runs on slot 1, now taken by ktrdr--newer"):
        init_instance(cwd=repo)


def test_create_skips_slots_another_homes_stack_holds_on_the_engine(
    repo: Path, docker: DockerStandIn
) -> None:
    """Registries are per home, ports per machine: a stopped stack of another home holds no
    port now but wants its slot's ports back on `up`."""
    docker.other_homes_slots = {1: "instance ktrdr--x of KTRDR_HOME /elsewhere"}
    result = create_instance(name="feat-a", cwd=repo)
    assert result.slot == 2
    assert [s.slot for s in result.skipped] == [1]
    assert "KTRDR_HOME /elsewhere" in result.skipped[0].reason


def test_create_refuses_a_name_whose_earlier_volumes_are_still_on_the_engine(
    repo: Path, docker: DockerStandIn
) -> None:
    """The new stack would adopt them, and PostgreSQL would keep the old password."""
    docker.leftover["ktrdr--feat-a"] = ["volume ktrdr--feat-a-0123abcd_db-data"]
    with pytest.raises(SandboxError, match="volumes of an earlier instance ktrdr--feat-a"):
        create_instance(name="feat-a", cwd=repo)
    assert registry.load() == {}
    assert not (repo.parent / "ktrdr--feat-a").exists()


def test_create_on_a_branch_checked_out_elsewhere_says_where_and_what_to_do(repo: Path) -> None:
    branch = git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip()
    with pytest.raises(SandboxError) as refused:
        create_instance(name="feat-a", cwd=repo, branch=branch)
    message = str(refused.value)
    assert f"already checked out in {repo}" in message
    assert f"--base {branch}" in message
    assert registry.load() == {}
    assert not (repo.parent / "ktrdr--feat-a").exists()
    # What the message suggests works.
    result = create_instance(name="feat-a", cwd=repo, base=branch)
    assert result.branch == "feat-a"
