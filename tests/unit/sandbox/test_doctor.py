"""doctor: real git repos, real registry files, real env files; /proc stand-ins for host limits;
Docker-backed checks against the real engine (marker docker)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ktrdr.cli.main import cli
from ktrdr.cli.sandbox.base.host import memory_warning
from ktrdr.cli.sandbox.doctor.checks import env_drift, remove_empty_tree, rewrite_env
from ktrdr.cli.sandbox.doctor.diagnose import run_doctor
from ktrdr.cli.sandbox.doctor.report import DoctorReport, Problem
from ktrdr.cli.sandbox.home import owned_process, registry
from ktrdr.cli.sandbox.home.directory import home_id
from ktrdr.cli.sandbox.home.instance import read_env
from ktrdr.cli.sandbox.home.registry import Entry
from ktrdr.cli.sandbox.slots.ports import ports_for_slot
from tests.support.git_repos import git, make_repo
from tests.support.host import quiet_host
from tests.support.instances import dead_pid, interrupted_create, register, write_env

OFFLINE_IMAGE = "ktrdr-offline/debian:bookworm"


def kinds(report) -> list[str]:
    """Problems about this KTRDR_HOME (not the host, nor stacks other tests run meanwhile)."""
    return [p.kind for p in report.problems if p.kind not in {"host", "unregistered", "orphan"}]


def test_doctor_on_an_empty_home_finds_nothing_to_reconcile(tmp_path: Path) -> None:
    report = run_doctor(fix=False, host=quiet_host(tmp_path))
    assert kinds(report) == []
    assert not registry.registry_path().exists()  # read-only: nothing created


def test_doctor_without_fix_only_reports_a_dead_create_claim(repo: Path, tmp_path: Path) -> None:
    entry = interrupted_create(repo, "feat-a")
    before = registry.registry_path().read_bytes()
    report = run_doctor(fix=False, host=quiet_host(tmp_path))
    dead = [p for p in report.problems if p.kind == "dead-claim"]
    assert [p.subject for p in dead] == [entry.instance_id]
    assert not report.healthy
    assert registry.registry_path().read_bytes() == before
    assert Path(entry.path).is_dir()


def test_doctor_fix_removes_the_worktree_branch_and_claim_of_a_killed_create(
    repo: Path, tmp_path: Path
) -> None:
    entry = interrupted_create(repo, "feat-a")
    report = run_doctor(fix=True, host=quiet_host(tmp_path))
    dead = next(p for p in report.problems if p.kind == "dead-claim")
    assert dead.fixed
    assert "worktree" in dead.fixed
    assert "slot 9 freed" in dead.fixed
    assert not Path(entry.path).exists()
    assert registry.load() == {}
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert git(repo, "branch", "--list", "feat-a").strip() == ""
    assert repo.joinpath("README.md").is_file()  # the main checkout is untouched


def test_doctor_fix_keeps_a_branch_that_has_unmerged_commits(repo: Path, tmp_path: Path) -> None:
    entry = interrupted_create(repo, "feat-b", env_file=False)
    Path(entry.path, "work.txt").write_text("mine\n")
    git(Path(entry.path), "add", "work.txt")
    git(Path(entry.path), "commit", "-q", "-m", "work")
    run_doctor(fix=True, host=quiet_host(tmp_path))
    assert git(repo, "branch", "--list", "feat-b").strip() == "feat-b"
    assert "work.txt" in git(repo, "show", "--stat", "feat-b")
    assert registry.load() == {}


def test_doctor_leaves_a_directory_git_does_not_know_alone(repo: Path, tmp_path: Path) -> None:
    path = repo.parent / "ktrdr--stranger"
    path.mkdir()
    (path / "notes.txt").write_text("user data\n")
    register(
        Entry(
            instance_id=path.name,
            slot=4,
            path=str(path),
            kind="worktree",
            branch="stranger",
            created_at=registry.now_iso(),
            state="creating",
            pid=dead_pid(),
            name="stranger",
            repo=str(repo),
        )
    )
    report = run_doctor(fix=True, host=quiet_host(tmp_path))
    dead = next(p for p in report.problems if p.kind == "dead-claim")
    assert "kept" in (dead.fixed or "")
    assert (path / "notes.txt").read_text() == "user data\n"


def test_doctor_reports_env_drift_and_fix_rewrites_ports_keeping_secrets(
    repo: Path, tmp_path: Path
) -> None:
    env_path = write_env(repo, repo.name, 3)
    secret = read_env(env_path)["KTRDR_DB_PASSWORD"]
    register(
        Entry(
            instance_id=repo.name,
            slot=7,
            path=str(repo),
            kind="clone",
            branch="main",
            created_at=registry.now_iso(),
        )
    )
    report = run_doctor(fix=False, host=quiet_host(tmp_path))
    drift = next(p for p in report.problems if p.kind == "env-drift")
    assert "KTRDR_API_PORT=8003 (expected 8007)" in drift.detail
    assert read_env(env_path)["KTRDR_API_PORT"] == "8003"

    fixed = run_doctor(fix=True, host=quiet_host(tmp_path))
    assert next(p for p in fixed.problems if p.kind == "env-drift").fixed
    values = read_env(env_path)
    assert values["KTRDR_DB_PASSWORD"] == secret
    assert values["KTRDR_SLOT"] == "7"
    for key, value in ports_for_slot(7).env_variables().items():
        assert values[key] == value
    assert stat.S_IMODE(env_path.stat().st_mode) == 0o600
    assert env_path.read_text().startswith("# Generated by")
    assert "env-drift" not in kinds(run_doctor(fix=False, host=quiet_host(tmp_path)))


def test_rewrite_env_appends_missing_keys_and_keeps_unknown_lines(tmp_path: Path) -> None:
    env_path = tmp_path / ".env.sandbox"
    env_path.write_text("# header\nMY_SETTING=keep\nKTRDR_API_PORT=1\n")
    rewrite_env(env_path, {"KTRDR_API_PORT": "8002", "KTRDR_SLOT": "2"})
    assert env_path.read_text() == (
        "# header\nMY_SETTING=keep\nKTRDR_API_PORT=8002\nKTRDR_SLOT=2\n"
    )


def test_a_healthy_instance_has_no_drift(repo: Path) -> None:
    write_env(repo, repo.name, 5)
    entry = Entry(repo.name, 5, str(repo), "clone", "main", registry.now_iso())
    assert env_drift(entry) == {}


def test_doctor_fix_gives_an_env_file_from_before_owner_labels_this_homes_owner(
    repo: Path, tmp_path: Path
) -> None:
    env_path = write_env(repo, repo.name, 5)
    rewrite_env(env_path, {"COMPOSE_PROJECT_NAME": repo.name})
    kept = [line for line in env_path.read_text().splitlines() if "OWNER" not in line]
    env_path.write_text("\n".join(kept) + "\n")
    register(Entry(repo.name, 5, str(repo), "clone", "main", registry.now_iso()))
    report = run_doctor(fix=True, host=quiet_host(tmp_path))
    drift = next(p for p in report.problems if p.kind == "env-drift")
    assert drift.fixed
    assert "KTRDR_OWNER" in drift.fixed
    assert read_env(env_path)["COMPOSE_PROJECT_NAME"] == f"{repo.name}-{home_id()}"


def test_doctor_fix_never_rewrites_an_env_file_another_home_owns(
    repo: Path, tmp_path: Path
) -> None:
    env_path = write_env(repo, repo.name, 5)
    rewrite_env(env_path, {"KTRDR_OWNER": "0badf00d", "KTRDR_OWNER_HOME": "/elsewhere/h"})
    before = env_path.read_bytes()
    register(Entry(repo.name, 5, str(repo), "clone", "main", registry.now_iso()))
    report = run_doctor(fix=True, host=quiet_host(tmp_path))
    problem = next(p for p in report.problems if p.subject == repo.name)
    assert problem.kind == "other-home"
    assert problem.fixed is None
    assert "KTRDR_HOME /elsewhere/h" in problem.detail
    assert env_path.read_bytes() == before


def test_two_entries_in_one_slot_are_an_error_and_fix_leaves_their_env_files_alone(
    repo: Path, tmp_path: Path
) -> None:
    """Only a hand-edited registry has this; rewriting the second env file would give it the
    first instance's ports."""
    other = make_repo(tmp_path / "work" / "other")
    write_env(repo, repo.name, 3)
    other_env = write_env(other, other.name, 4)
    other_before = other_env.read_bytes()
    register(Entry(repo.name, 3, str(repo), "clone", "main", registry.now_iso()))
    register(Entry(other.name, 3, str(other), "clone", "main", registry.now_iso()))

    report = run_doctor(fix=True, host=quiet_host(tmp_path))
    conflict = next(p for p in report.problems if p.kind == "slot-conflict")
    assert conflict.detail == (
        "slot 3 is held by ktrdr and other: destroy one of them (or fix the registry)"
    )
    assert conflict.severity == "error"
    assert conflict.fixed is None
    assert not report.healthy
    drift = next(p for p in report.problems if p.kind == "env-drift")
    assert drift.subject == other.name
    assert drift.fixed is None
    assert "not rewritten while slot 3 is shared" in drift.detail
    assert other_env.read_bytes() == other_before

    result = CliRunner().invoke(cli, ["sandbox", "doctor", "--fix"])
    assert result.exit_code == 1
    assert "slot 3 is held by ktrdr and other" in result.stdout
    assert "doctor: healthy" not in result.stderr
    assert other_env.read_bytes() == other_before


@pytest.mark.usefixtures("docker")  # the conftest stand-in, so prune can confirm teardown
def test_doctor_fix_counts_the_instances_left_after_it_drops_stale_ones(
    repo: Path, tmp_path: Path
) -> None:
    write_env(repo, repo.name, 3)
    register(Entry(repo.name, 3, str(repo), "clone", "main", registry.now_iso()))
    gone = tmp_path / "work" / "ktrdr--gone"
    gone.mkdir()  # its .env.sandbox is missing: stale
    register(Entry(gone.name, 4, str(gone), "clone", "main", registry.now_iso()))
    assert run_doctor(fix=False, host=quiet_host(tmp_path)).instances_checked == 2

    report = run_doctor(fix=True, host=quiet_host(tmp_path))
    assert next(p for p in report.problems if p.kind == "stale-entry").fixed
    assert report.instances_checked == 1
    assert list(registry.load()) == [repo.name]
    result = CliRunner().invoke(cli, ["sandbox", "doctor"])
    # No engine in unit tests: the summary says Docker was not checked rather than claiming it.
    assert "(1 instance(s), host checked; not checked: Docker resources (no engine))" in (
        result.stderr
    )


def test_doctor_reports_a_corrupt_registry_and_leaves_it_untouched(tmp_path: Path) -> None:
    path = registry.registry_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"{not json")
    report = run_doctor(fix=True, host=quiet_host(tmp_path))
    problem = next(p for p in report.problems if p.kind == "registry")
    assert "corrupt" in problem.detail
    assert problem.fixed is None
    assert path.read_bytes() == b"{not json"


def test_low_inotify_limit_is_a_warning_and_fix_raises_it(tmp_path: Path) -> None:
    host = quiet_host(tmp_path)
    (host.inotify_dir / "max_user_watches").write_text("8192\n")
    report = run_doctor(fix=False, host=host)
    warning = next(p for p in report.problems if p.subject == "inotify max_user_watches")
    assert warning.severity == "warning"
    assert "8192" in warning.detail
    run_doctor(fix=True, host=host)
    assert (host.inotify_dir / "max_user_watches").read_text().strip() == "524288"


def test_low_memory_is_reported_as_a_warning(tmp_path: Path) -> None:
    host = quiet_host(tmp_path)
    host.meminfo.write_text("MemAvailable: 512000 kB\n")
    report = run_doctor(fix=False, host=host)
    memory = next(p for p in report.problems if p.subject == "memory")
    assert memory.severity == "warning"
    assert memory.detail.startswith("only 500 MiB of memory available (under 1 GiB;")
    assert memory.detail == memory_warning(host.meminfo)  # the words and number of `up`


def test_doctor_and_up_warn_below_the_same_memory_threshold(tmp_path: Path) -> None:
    host = quiet_host(tmp_path)
    host.meminfo.write_text("MemAvailable: 1572864 kB\n")  # 1.5 GiB: room for another stack
    report = run_doctor(fix=False, host=host)
    assert not [p for p in report.problems if p.subject == "memory"]
    assert memory_warning(host.meminfo) is None


def test_an_unreachable_engine_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such-docker.sock")
    report = run_doctor(fix=False, host=quiet_host(tmp_path))
    problem = next(p for p in report.problems if p.kind == "host" and "docker" in p.subject)
    assert problem.severity == "error"
    assert not report.healthy


def test_cli_doctor_json_lists_problems_and_exits_1(repo: Path) -> None:
    interrupted_create(repo, "feat-c")
    result = CliRunner().invoke(cli, ["sandbox", "doctor", "--json"])
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert payload["healthy"] is False
    assert any(p["kind"] == "dead-claim" for p in payload["problems"])


# --- real engine -----------------------------------------------------------------------------


def test_remove_empty_tree_removes_only_directories_without_files(tmp_path: Path) -> None:
    empty = tmp_path / "ktrdr--gone"
    (empty / "ktrdr" / "api").mkdir(parents=True)
    assert remove_empty_tree(empty)
    assert not empty.exists()
    kept = tmp_path / "ktrdr--kept"
    (kept / "a").mkdir(parents=True)
    (kept / "b").mkdir()
    (kept / "b" / "notes.txt").write_text("mine")
    assert not remove_empty_tree(kept)
    assert (kept / "b" / "notes.txt").read_text() == "mine"


def test_an_unfinished_destroy_is_reported_with_the_command_to_finish_it(
    repo: Path, tmp_path: Path
) -> None:
    write_env(repo, repo.name, 5)
    entry = Entry(repo.name, 5, str(repo), "clone", "main", registry.now_iso(), "destroying")
    register(entry)
    report = run_doctor(fix=True, host=quiet_host(tmp_path))
    problem = next(p for p in report.problems if p.kind == "destroy-unfinished")
    assert f"ktrdr sandbox destroy {repo.name}" in problem.detail
    assert problem.fixed is None
    assert (repo / ".env.sandbox").is_file()
    assert repo.name in registry.load()


def test_the_summary_line_names_remaining_warnings_instead_of_calling_them_healthy() -> None:
    report = DoctorReport(fix=False, instances_checked=2)
    assert report.summary_line() == "doctor: healthy (2 instance(s), Docker labels, host checked)"
    report.problems.append(Problem("destroy-unfinished", "x", "rerun destroy", severity="warning"))
    assert report.summary_line().startswith("doctor: no errors, 1 warning(s) to look at (")
    report.problems.append(Problem("orphan", "y", "leftovers", fixable=True))
    assert report.summary_line().startswith("doctor: 2 problem(s) (2 instance(s)")
    assert report.summary_line().endswith("`ktrdr sandbox doctor --fix` repairs 1 of them")


def test_the_summary_offers_fix_only_for_what_fix_repairs() -> None:
    report = DoctorReport(fix=False, instances_checked=0, registry_checked=False)
    report.problems.append(Problem("registry", "/x/instances.json", "corrupt"))
    line = report.summary_line()
    assert "--fix" not in line
    assert "not checked: registry (unreadable)" in line
    assert "0 instance(s)" not in line


def test_the_summary_does_not_claim_docker_was_checked_without_an_engine() -> None:
    report = DoctorReport(fix=False, instances_checked=1, docker_checked=False)
    line = report.summary_line()
    assert "Docker labels" not in line
    assert line == (
        "doctor: healthy (1 instance(s), host checked; not checked: Docker resources (no engine))"
    )


def test_doctor_fix_removes_a_half_made_locked_worktree_git_refuses(
    repo: Path, tmp_path: Path
) -> None:
    """What a kill inside `git worktree add` leaves: registered, locked, no .git file yet."""
    entry = interrupted_create(repo, "feat-h", env_file=False)
    git(repo, "worktree", "lock", "--reason", "initializing", entry.path)
    Path(entry.path, ".git").unlink()
    report = run_doctor(fix=True, host=quiet_host(tmp_path))
    assert next(p for p in report.problems if p.kind == "dead-claim").fixed
    assert not Path(entry.path).exists()
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert registry.load() == {}


def test_doctor_table_fits_the_width_and_json_keeps_the_full_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = tmp_path / ("a-very-long-directory-name-" * 8) / "ktrdr--gone"
    register(Entry("ktrdr--gone", 4, str(gone), "clone", "main", registry.now_iso()))
    monkeypatch.setenv("COLUMNS", "100")
    out = CliRunner().invoke(cli, ["sandbox", "doctor"])
    lines = out.stdout.splitlines()
    assert lines[0].startswith("SEVERITY")
    assert any("stale-entry" in line for line in lines)
    assert max(len(line) for line in lines) <= 100
    assert any(line.rstrip().endswith("…") for line in lines)  # cut, and visibly so
    assert "`ktrdr sandbox doctor --json` has them" in out.stderr
    data = json.loads(CliRunner().invoke(cli, ["sandbox", "doctor", "--json"]).stdout)
    stale = next(p for p in data["problems"] if p["kind"] == "stale-entry")
    assert stale["detail"] == f"{gone} is gone"


def test_a_table_that_fits_is_printed_whole(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ktrdr.cli.output import print_table

    monkeypatch.setenv("COLUMNS", "100")
    assert print_table(["A", "B"], [("x", "y" * 50)], fit=True) is False
    assert capsys.readouterr().out.splitlines()[1] == "x  " + "y" * 50


def test_fit_widths_shrinks_the_widest_column_first() -> None:
    from ktrdr.cli.output import fit_widths

    assert fit_widths([8, 10, 300, 20], [8, 8, 8, 8], 100) == [8, 10, 56, 20]
    assert fit_widths([8, 8], [8, 8], 5) == [8, 8]  # headers never cut


@pytest.mark.timing
def test_doctor_stops_an_orphaned_companion_of_a_remote_instance(tmp_path: Path) -> None:
    """A forwarder whose record is gone (a killed `up`, a lost state dir) still holds local
    ports: doctor reports it and --fix stops it, found by the marker in its environment."""
    directory = owned_process.state_dir("ktrdr--gone")
    directory.mkdir(parents=True)
    marker = f"{owned_process.record_path(directory, 'forward')}#run1"
    stray = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"],
        env={**os.environ, owned_process.MARKER: marker},
    )
    try:
        report = run_doctor(fix=False, host=quiet_host(tmp_path))
        assert "process" in kinds(report)
        assert stray.poll() is None  # without --fix nothing is signalled
        fixed = run_doctor(fix=True, host=quiet_host(tmp_path))
        assert [p.fixed for p in fixed.problems if p.kind == "process"] == ["stopped"]
        # Stopped within the grace period (TimeoutExpired otherwise). Not its exit status:
        # doctor reaps a child of its own process, which then reads as 0 here.
        stray.wait(timeout=15)
    finally:
        stray.kill()
        stray.wait()
