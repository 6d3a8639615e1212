"""`ktrdr sandbox create` killed (SIGKILL) while it reaps another create's dead claim.

Real git in tmp_path, real CLI processes, no Docker. A slow `git` shim first on PATH widens the
window a kill has to hit: for one chosen subcommand it writes a marker file and then sleeps,
either before running the real git (`before`) or after it (`after`); the test polls for the marker
and SIGKILLs the whole process group (the CLI and the sleeping shim).

1. `create first` is killed right after its `git worktree add`: a genuine dead claim (state
   `creating`, dead pid) with a real worktree and branch.
2. `create second` reaps that claim and is killed inside the reaping step: before
   `git worktree remove`, before `git branch -d` (worktree gone, branch left), or after
   `git branch -d` (both gone, entry not yet dropped).
3. The invariant holds: every worktree and every branch on disk is recorded in the registry or
   removed.
4. `create third` with the real git finishes the job: first's worktree, branch and entry are gone
   and `third` exists.

Against the old order (the dead claim's entry dropped first, its worktree and branch undone
afterwards) the kill before `git worktree remove` leaves `ktrdr--first` and branch `first` with no
entry, and the kill before `git branch -d` leaves branch `first` with no entry: the first
assertion in `assert_all_recorded` (orphaned worktree) resp. the branch assertion after it
(orphaned branch) fails. Had that check been missed, `create third` would find no claim to reap
and first's worktree and branch would stay forever (`not first.exists()` and the branch list
after `create third` catch that too). The kill after `git branch -d` leaves nothing on disk under
either order; it checks that such a claim is still recorded (`entries[first.name]`, a KeyError
under the old order) and then reaped cleanly.

Checked by running this file with the CLI importing a copy of ktrdr/ whose
`reap_dead_claims_by_id` drops the entries before undoing (PYTHONPATH=<copy>): all three fail,
the first two on `assert_all_recorded`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ktrdr.cli.sandbox.home.registry import pid_alive
from tests.support import cli
from tests.support.cli import cli_env
from tests.support.git_repos import git

MARKER_TIMEOUT = 60.0  # a create on an idle machine hits the shim within a second or two
SHIM = """\
#!{python}
# Slow git for tests: for the subcommand in KTRDR_TEST_GIT_SLOW ("worktree remove"), write
# KTRDR_TEST_GIT_MARKER and sleep, before running the real git or after it
# (KTRDR_TEST_GIT_SLOW_WHEN). Every other call is the real git, unchanged.
import os
import subprocess
import sys
import time

REAL_GIT = {real_git!r}
args = sys.argv[1:]
words = list(args)
while words and words[0].startswith("-"):  # global options: -C DIR, -c KEY=VALUE, --no-pager
    words = words[2:] if words[0] in ("-C", "-c") else words[1:]
slow = os.environ.get("KTRDR_TEST_GIT_SLOW", "").split()
if not slow or words[: len(slow)] != slow:
    os.execv(REAL_GIT, [REAL_GIT, *args])


def stall():
    with open(os.environ["KTRDR_TEST_GIT_MARKER"], "w") as marker:
        marker.write(" ".join(args) + "\\n")
    time.sleep(600)  # until the test kills the process group


if os.environ.get("KTRDR_TEST_GIT_SLOW_WHEN", "before") == "before":
    stall()
    os.execv(REAL_GIT, [REAL_GIT, *args])
code = subprocess.run([REAL_GIT, *args]).returncode
stall()
sys.exit(code)
"""


def ktrdr_argv() -> list[str]:
    script = Path(sys.executable).parent / "ktrdr"
    if script.exists():
        return [str(script)]
    found = shutil.which("ktrdr")
    return [found] if found else [sys.executable, "-m", "ktrdr.cli.main"]


@dataclass
class Workspace:
    repo: Path
    home: Path
    shim_dir: Path
    running: list[subprocess.Popen[str]]

    def env(self, *, slow: str | None = None, when: str = "before") -> dict[str, str]:
        env = cli_env(self.home, test=False, images=None)
        if slow is not None:
            env |= {
                "PATH": f"{self.shim_dir}{os.pathsep}{env.get('PATH', '')}",
                "KTRDR_TEST_GIT_SLOW": slow,
                "KTRDR_TEST_GIT_SLOW_WHEN": when,
                "KTRDR_TEST_GIT_MARKER": str(self.marker),
            }
        return env

    @property
    def marker(self) -> Path:
        return self.home.parent / "git-shim-stalled"

    def path_of(self, name: str) -> Path:
        return self.repo.parent / f"{self.repo.name}--{name}"

    def registry(self) -> dict[str, dict[str, object]]:
        path = self.home / "sandbox" / "instances.json"
        if not path.exists():
            return {}
        instances: dict[str, dict[str, object]] = json.loads(path.read_text())["instances"]
        return instances

    def create(self, name: str) -> subprocess.CompletedProcess[str]:
        argv = [*ktrdr_argv(), "sandbox", "create", name]
        return cli.run(argv, cwd=self.repo, env=self.env(), timeout=120)

    def create_killed_in(self, name: str, slow: str, *, when: str) -> int:
        """Run `create NAME` with the slow git, SIGKILL it (and the shim) once the shim
        stalls in `git SLOW`; returns the killed CLI's pid."""
        self.marker.unlink(missing_ok=True)
        log = self.home.parent / f"create-{name}.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                [*ktrdr_argv(), "sandbox", "create", name],
                cwd=self.repo,
                env=self.env(slow=slow, when=when),
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,  # its own process group: the CLI and the git shim
            )
        self.running.append(process)
        deadline = time.monotonic() + MARKER_TIMEOUT
        while not self.marker.exists():
            assert process.poll() is None, (
                f"create {name} exited {process.returncode} before git {slow} stalled:\n"
                + log.read_text()
            )
            assert time.monotonic() < deadline, f"git {slow} never ran:\n{log.read_text()}"
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL, log.read_text()
        self.running.remove(process)
        assert not pid_alive(process.pid)
        return process.pid


@pytest.fixture
def workspace(repo: Path, isolated_ktrdr_home: Path, tmp_path: Path) -> Iterator[Workspace]:
    real_git = shutil.which("git")
    assert real_git is not None
    shim_dir = tmp_path / "slow-git-bin"
    shim_dir.mkdir()
    shim = shim_dir / "git"
    shim.write_text(SHIM.format(python=sys.executable, real_git=os.path.realpath(real_git)))
    shim.chmod(0o755)
    space = Workspace(repo, isolated_ktrdr_home, shim_dir, [])
    yield space
    for process in space.running:  # a failed assertion left it (and its shim) sleeping
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def linked_worktrees(repo: Path) -> list[Path]:
    out = git(repo, "worktree", "list", "--porcelain")
    paths = [
        Path(line[len("worktree ") :]) for line in out.splitlines() if line.startswith("worktree ")
    ]
    return [p.resolve() for p in paths if p.resolve() != repo.resolve()]


def branches(repo: Path) -> list[str]:
    return git(repo, "branch", "--list", "--format=%(refname:short)").split()


def assert_all_recorded(space: Workspace) -> None:
    """Every worktree (registered with git or just a directory) and every branch other than
    main is recorded in the registry: nothing is orphaned."""
    entries = space.registry().values()
    recorded_paths = {Path(str(e["path"])).resolve() for e in entries}
    recorded_branches = {e["branch"] for e in entries}
    for path in linked_worktrees(space.repo):
        assert path in recorded_paths, f"orphaned worktree {path}: registry {list(entries)}"
    for path in space.repo.parent.glob(f"{space.repo.name}--*"):
        assert path.resolve() in recorded_paths, f"orphaned directory {path}"
    for branch in branches(space.repo):
        if branch != "main":
            assert branch in recorded_branches, f"orphaned branch {branch}: {list(entries)}"


def make_dead_claim(space: Workspace) -> int:
    """`create first`, killed right after its `git worktree add`: worktree and branch exist, the
    claim is `creating` with a dead pid. Returns that pid."""
    pid = space.create_killed_in("first", "worktree add", when="after")
    first = space.path_of("first")
    assert first.resolve() in linked_worktrees(space.repo)
    assert "first" in branches(space.repo)
    entry = space.registry()[first.name]
    assert (entry["state"], entry["pid"], entry["branch"]) == ("creating", pid, "first")
    assert_all_recorded(space)
    return pid


# (git subcommand the reaping create is killed in, before/after it runs, what is left on disk)
KILL_POINTS = [
    pytest.param("worktree remove", "before", (True, True), id="before-worktree-remove"),
    pytest.param("branch -d", "before", (False, True), id="before-branch-delete"),
    pytest.param("branch -d", "after", (False, False), id="after-branch-delete"),
]


@pytest.mark.timing
@pytest.mark.parametrize(("slow", "when", "left"), KILL_POINTS)
def test_create_killed_while_reaping_a_dead_claim_leaves_nothing_orphaned(
    workspace: Workspace, slow: str, when: str, left: tuple[bool, bool]
) -> None:
    first = workspace.path_of("first")
    first_pid = make_dead_claim(workspace)

    reaper_pid = workspace.create_killed_in("second", slow, when=when)
    worktree_left, branch_left = left
    assert (first.resolve() in linked_worktrees(workspace.repo)) is worktree_left
    assert first.exists() is worktree_left
    assert ("first" in branches(workspace.repo)) is branch_left
    assert_all_recorded(workspace)  # the old order (entry dropped first) fails here
    entries = workspace.registry()
    # Taken over by the killed reaper (so its pid, dead again: the next create reaps it); the
    # reaper had not claimed its own slot yet.
    entry = entries[first.name]
    assert entry["state"] == "creating"
    assert entry["pid"] == reaper_pid != first_pid
    assert workspace.path_of("second").name not in entries
    assert not workspace.path_of("second").exists()
    assert "second" not in branches(workspace.repo)

    third = workspace.create("third")
    assert third.returncode == 0, third.stdout + third.stderr
    assert f"cleaned up after an interrupted create of {first.name}" in third.stderr
    assert not first.exists()
    assert first.resolve() not in linked_worktrees(workspace.repo)
    assert sorted(branches(workspace.repo)) == ["main", "third"]
    entries = workspace.registry()
    assert list(entries) == [workspace.path_of("third").name]
    assert entries[workspace.path_of("third").name]["state"] == "ready"
    assert linked_worktrees(workspace.repo) == [workspace.path_of("third").resolve()]
    assert (workspace.path_of("third") / ".env.sandbox").is_file()
    assert_all_recorded(workspace)
