"""Recorded agent-tool hook payloads and running the hook commands as real processes.

tests/support/hook_payloads/ holds one JSON file per payload shape Claude Code has sent to a
WorktreeCreate hook (`name`, `worktree_name` with `source_ref`/`base_path`, `base_commit`,
`base_ref`, the early `worktree_path`-only shape, a payload with fields we do not know) and the
WorktreeRemove payload. `<REPO>`, `<BASE>` and `<WORKTREE>` stand for values of the test's own
repository.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.git_repos import git, make_repo

PAYLOADS = Path(__file__).parent / "hook_payloads"
CREATE_SHAPES = sorted(path.stem for path in PAYLOADS.glob("create_*.json"))


def make_stack_repo(path: Path) -> Path:
    """A git repo at `path` whose second commit adds a sandbox stack (a compose file)."""
    make_repo(path)
    (path / "docker-compose.sandbox.yml").write_text("services: {}\n")
    git(path, "add", ".")
    git(path, "-c", "user.name=T", "-c", "user.email=t@e", "commit", "-qm", "stack")
    return path


def payload(shape: str, **values: str) -> dict[str, Any]:
    """The recorded payload `shape` with its placeholders filled (`repo=…` fills `<REPO>`)."""
    text = (PAYLOADS / f"{shape}.json").read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace(f"<{key.upper()}>", json.dumps(value)[1:-1])
    data: dict[str, Any] = json.loads(text)
    return data


def ktrdr() -> list[str]:
    """The `ktrdr` console script of this Python (else the module): the entry point itself."""
    script = Path(sys.executable).parent / "ktrdr"
    if script.exists():
        return [str(script)]
    found = shutil.which("ktrdr")
    return [found] if found else [sys.executable, "-m", "ktrdr.cli.main"]


@dataclass(frozen=True)
class HookRun:
    returncode: int
    stdout: str
    stderr: str
    seconds: float  # from start to exit


def run_hook(
    args: list[str],
    data: dict[str, Any] | bytes,
    *,
    cwd: Path,
    env: dict[str, str],
    keep_stdin_open: bool = True,
    timeout: float = 120,
) -> HookRun:
    """`ktrdr sandbox hook ARGS` with `data` written to its stdin. As Claude Code may, stdin
    stays open until the process has exited (`keep_stdin_open`): a hook that reads to EOF
    would hang here until `timeout`."""
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    start = time.monotonic()
    child = subprocess.Popen(
        [*ktrdr(), "sandbox", "hook", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdin is not None
    child.stdin.write(raw)
    child.stdin.flush()
    if not keep_stdin_open:
        child.stdin.close()
    try:
        child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        raise
    finally:
        if not child.stdin.closed:
            child.stdin.close()
    seconds = time.monotonic() - start
    out = child.stdout.read().decode() if child.stdout else ""
    err = child.stderr.read().decode() if child.stderr else ""
    for stream in (child.stdout, child.stderr):
        if stream is not None:
            stream.close()
    return HookRun(child.returncode, out, err, seconds)
