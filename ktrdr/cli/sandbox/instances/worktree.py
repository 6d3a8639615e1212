"""git plumbing for instances: repo discovery, worktree add/remove/list, dirty check, exclude."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.base.proc import CommandFailedError, run, stderr_tail

GIT_TIMEOUT = 120
REPO_LOCK_NAME = "ktrdr-sandbox.lock"


def _git(cwd: Path, *args: str, what: str, check: bool = True) -> str:
    return run(["git", "-C", cwd, *args], timeout=GIT_TIMEOUT, what=what, check=check).stdout


def toplevel(cwd: Path) -> Path:
    """The root of the checkout (main or linked worktree) containing `cwd`."""
    result = run(
        ["git", "-C", cwd, "rev-parse", "--show-toplevel"],
        timeout=GIT_TIMEOUT,
        check=False,
        what="git rev-parse",
    )
    if result.returncode != 0 or not result.stdout.strip():
        raise SandboxError(
            f"{cwd} is not inside a git checkout: {stderr_tail(result.stderr)}; "
            "run this from your KTRDR clone"
        )
    return Path(result.stdout.strip())


def main_checkout(top: Path) -> Path:
    """The main worktree of the repo whose checkout `top` is (itself when it is the main one):
    instances are named after it, so one made from inside another is a sibling, not nested."""
    common = common_dir(top)
    if common.name == ".git" and common.parent != top and common.parent.is_dir():
        return common.parent
    return top


def head_commit(top: Path) -> str:
    return _git(top, "rev-parse", "--verify", "HEAD^{commit}", what="git rev-parse").strip()


def common_dir(cwd: Path) -> Path:
    """The shared .git directory (the same for every worktree of a repo)."""
    text = _git(cwd, "rev-parse", "--git-common-dir", what="git rev-parse").strip()
    path = Path(text)
    return (path if path.is_absolute() else cwd / path).resolve()


@contextmanager
def repo_lock(repo: Path, *, timeout: float = GIT_TIMEOUT) -> Iterator[None]:
    """Serialize worktree changes in one repo: concurrent `git worktree add` calls race inside
    git ("failed to read .git/worktrees/<x>/commondir"), and info/exclude is read-modify-write."""

    lock_path = common_dir(repo) / REPO_LOCK_NAME
    try:
        with FileLock(str(lock_path), timeout=timeout):
            yield
    except Timeout as e:
        raise SandboxError(
            f"{lock_path} still held after {timeout:g}s: another ktrdr sandbox command is "
            "changing worktrees of this repo; retry when it is done"
        ) from e


def is_linked_worktree(path: Path) -> bool:
    """True for a `git worktree add` checkout, False for a main worktree (a clone)."""
    git_dir = _git(path, "rev-parse", "--absolute-git-dir", what="git rev-parse").strip()
    return Path(git_dir).resolve() != common_dir(path)


def current_branch(cwd: Path) -> str | None:
    result = run(
        ["git", "-C", cwd, "symbolic-ref", "--quiet", "--short", "HEAD"],
        timeout=GIT_TIMEOUT,
        check=False,
        what="git symbolic-ref",
    )
    return result.stdout.strip() or None if result.returncode == 0 else None


def check_branch_name(repo: Path, name: str) -> None:
    result = run(
        ["git", "-C", repo, "check-ref-format", "--branch", name],
        timeout=GIT_TIMEOUT,
        check=False,
        what="git check-ref-format",
    )
    if result.returncode != 0:
        raise SandboxError(f"invalid branch name {name!r}: git refuses it; pick another name")


def branch_exists(repo: Path, name: str) -> bool:
    result = run(
        ["git", "-C", repo, "show-ref", "--verify", "--quiet", f"refs/heads/{name}"],
        timeout=GIT_TIMEOUT,
        check=False,
        what="git show-ref",
    )
    return result.returncode == 0


def check_commit(repo: Path, revision: str) -> None:
    """`revision` names a commit (checked first, so git's usage text never stands in for "no
    such commit", and an option-like value is never passed to git as a revision)."""
    result = run(
        [
            "git",
            "-C",
            repo,
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            f"{revision}^{{commit}}",
        ],
        timeout=GIT_TIMEOUT,
        check=False,
        what="git rev-parse",
    )
    if not revision.strip() or revision.startswith("-") or result.returncode != 0:
        raise SandboxError(
            f"--base {revision!r} is not a commit of {repo}: pass a branch, tag or commit "
            "(e.g. main)"
        )


def add(repo: Path, path: Path, *, new_branch: str | None, branch: str | None, base: str) -> None:
    """`git worktree add` on a new branch (from `base`) or an existing one. The checkout runs
    on every core (git's parallel checkout, 2.32+; older versions ignore the setting): writing
    the files is most of a create on a repository of KTRDR's size, and this halves it."""
    parallel = ["-c", "checkout.workers=0"]
    if new_branch is not None:
        argv = [*parallel, "worktree", "add", "-b", new_branch, "--", str(path), base]
    else:
        argv = [*parallel, "worktree", "add", "--", str(path), str(branch)]
    try:
        _git(repo, *argv, what="git worktree add")
    except CommandFailedError as e:
        raise SandboxError(
            f"cannot create worktree {path}: git says: {stderr_tail(e.result.stderr, 3)}"
        ) from e


def remove(repo: Path, path: Path, *, force: bool) -> None:
    argv = ["worktree", "remove", *(["--force"] if force else []), "--", str(path)]
    try:
        _git(repo, *argv, what="git worktree remove")
    except CommandFailedError as e:
        hint = "" if force else "; commit or stash your changes, or pass --force"
        raise SandboxError(
            f"cannot remove worktree {path}: {stderr_tail(e.result.stderr, 3)}{hint}"
        ) from e


def prune(repo: Path) -> None:
    _git(repo, "worktree", "prune", what="git worktree prune", check=False)


def prune_locked(repo: Path) -> None:
    """`git worktree prune` under the repo lock (it deletes admin dirs a concurrent add reads)."""
    with repo_lock(repo):
        prune(repo)


def delete_branch(repo: Path, name: str) -> None:
    _git(repo, "branch", "-D", "--", name, what="git branch -D")


def dirty_paths(path: Path, *, ignore_deleted: bool = False) -> list[str]:
    """Uncommitted or untracked paths (ignored files, like .env.sandbox, do not count).
    `ignore_deleted` skips tracked files deleted from the worktree (what a killed removal
    leaves behind)."""
    out = _git(path, "status", "--porcelain", "--untracked-files=normal", what="git status")
    return [
        line[3:]
        for line in out.splitlines()
        if line.strip() and not (ignore_deleted and line[:2] == " D")
    ]


def is_registered(repo: Path, path: Path) -> bool:
    """git still lists `path` as a linked worktree of `repo`, even if its .git file is gone."""
    target = path.resolve()
    try:
        linked = list_worktrees(repo)[1:]
    except CommandFailedError:
        return False
    return any(info.path.resolve() == target for info in linked)


@dataclass(frozen=True)
class WorktreeInfo:
    path: Path
    head: str | None
    branch: str | None
    bare: bool = False
    detached: bool = False


def list_worktrees(repo: Path) -> list[WorktreeInfo]:
    out = _git(repo, "worktree", "list", "--porcelain", what="git worktree list")
    infos: list[WorktreeInfo] = []
    for block in out.strip().split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, _, value = line.partition(" ")
            fields[key] = value
        if "worktree" not in fields:
            continue
        branch = fields.get("branch")
        infos.append(
            WorktreeInfo(
                path=Path(fields["worktree"]),
                head=fields.get("HEAD"),
                branch=branch.removeprefix("refs/heads/") if branch else None,
                bare="bare" in fields,
                detached="detached" in fields,
            )
        )
    return infos


EXCLUDE_PATTERNS = ("/.env.sandbox", "/.sandbox/")


def ensure_excluded(repo: Path, patterns: tuple[str, ...] = EXCLUDE_PATTERNS) -> Path:
    """Add patterns to the repo's shared info/exclude (idempotent); returns the file."""
    exclude = common_dir(repo) / "info" / "exclude"
    try:
        exclude.parent.mkdir(parents=True, exist_ok=True)
        text = exclude.read_text(encoding="utf-8") if exclude.exists() else ""
        present = {line.strip() for line in text.splitlines()}
        missing = [p for p in patterns if p not in present]
        if missing:
            prefix = "" if not text or text.endswith("\n") else "\n"
            block = "# ktrdr sandbox (generated per instance; never commit)\n" + "\n".join(missing)
            with exclude.open("a", encoding="utf-8") as handle:
                handle.write(prefix + block + "\n")
    except OSError as e:
        raise SandboxError(f"cannot update {exclude}: {e.strerror or e}") from e
    return exclude
