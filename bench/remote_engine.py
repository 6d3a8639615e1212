"""Remote engine: an instance on a Docker context over SSH against a local one, in one run.

A second engine is made for the run (`scripts/remote-engine.sh up --id bench-…`: a host reached
only over SSH, with its own dockerd) and removed at the end. In one KTRDR_HOME of its own and a
clone of this project, each repetition creates a local and a remote instance (`create --context`)
and times, alternating local and remote:

- first `up` → `Startability Gate: PASSED` (remote: copies sources and shared data to the engine,
  starts the SSH forwarder and compose watch);
- `down`, then `up` again of the created instance → PASSED;
- then, on the last pair: an edit of `__version__` in the instance's `ktrdr/__init__.py` until
  `GET /api/v1/health` at its API port (from .env.sandbox; the forwarded local port for the remote
  one) returns the new version, EDITS times each; and `test-e2e -k health` once each.

Every instance it created is destroyed, and the engine removed, even when a step fails. Skipped
with the reason when this machine cannot run a remote engine (the script's exit status 3).

    python -m bench.remote_engine [REPS]      # default 3
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from bench.common import KTRDR, REPO_ROOT, Sample, clone_project
from bench.stack import stack_env

REPS = 3
EDITS = 5
UP_TIMEOUT = 900.0
EDIT_TIMEOUT = 60.0
SCRIPT = REPO_ROOT / "scripts" / "remote-engine.sh"
CANNOT = 3  # remote-engine.sh: this machine cannot host a remote engine
TITLE = "Remote engine"


class Skip(Exception):
    """The remote engine cannot be made here."""


def _row(measure: str, value: str, ratio: str = "", goal: str = "") -> dict[str, object]:
    return {"benchmark": TITLE, "measure": measure, "value": value, "ratio": ratio, "goal": goal}


def _tail(result: subprocess.CompletedProcess[str] | None, text: str = "") -> str:
    out = text or (result.stdout + result.stderr if result else "")
    lines = [line for line in out.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "(no output)"


class Run:
    """One home (KTRDR_HOME), one project clone, and every instance made in it."""

    def __init__(self, tmp: Path) -> None:
        self.env = stack_env(tmp / "home")
        self.env.update({"KTRDR_TEST": "1", "NO_COLOR": "1"})
        self.repo = clone_project(tmp / "ktrdr")
        self.made: list[str] = []

    def path_of(self, name: str) -> Path:
        return self.repo.parent / f"ktrdr--{name}"

    def ktrdr(
        self, *args: str, cwd: Path | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [KTRDR, "sandbox", *args],
            cwd=cwd or self.repo,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ok(self, *args: str, cwd: Path | None = None, timeout: float = 600) -> str:
        result = self.ktrdr(*args, cwd=cwd, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"sandbox {args[0]} failed: {_tail(result)}")
        return result.stdout + result.stderr

    def create(self, name: str, context: str | None) -> Path:
        self.made.append(name)  # before: a create that half-worked is destroyed too
        self.ok("create", name, *(["--context", context] if context else []))
        return self.path_of(name)

    def destroy(self, name: str) -> None:
        self.ktrdr("destroy", name, "--yes", "--force", timeout=600)
        self.made.remove(name)

    def destroy_all(self) -> None:
        for name in list(self.made):
            self.destroy(name)

    def up_to_passed(self, path: Path) -> float:
        """Seconds from `up` to its `Startability Gate: PASSED` line."""
        start = time.monotonic()
        process = subprocess.Popen(
            [KTRDR, "sandbox", "up", "--timeout", str(UP_TIMEOUT)],
            cwd=path,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        passed_at, lines = None, []
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if passed_at is None and "Startability Gate: PASSED" in line:
                passed_at = time.monotonic()
        process.wait()
        if process.returncode != 0 or passed_at is None:
            raise RuntimeError(
                f"up failed (exit {process.returncode}): {_tail(None, ''.join(lines))}"
            )
        return passed_at - start


def _engine_up(engine_id: str) -> tuple[str, float]:
    """The context of a new remote engine and the seconds it took; Skip when it cannot be made."""
    env = {**os.environ, "KTRDR_REMOTE_ENGINE_OWNER_PID": str(os.getpid())}
    start = time.monotonic()
    result = subprocess.run(
        ["bash", str(SCRIPT), "up", "--id", engine_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=UP_TIMEOUT,
        check=False,
    )
    elapsed = time.monotonic() - start
    if result.returncode == CANNOT:
        raise Skip(_tail(None, result.stderr).removeprefix("Error: "))
    if result.returncode != 0:
        raise RuntimeError(
            f"remote-engine.sh up failed (exit {result.returncode}): {_tail(result)}"
        )
    return result.stdout.strip().splitlines()[-1], elapsed


def _engine_down(engine_id: str) -> None:
    subprocess.run(
        ["bash", str(SCRIPT), "down", engine_id],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _api_port(path: Path) -> int:
    from ktrdr.cli.sandbox.home.instance import read_env

    return int(read_env(path / ".env.sandbox")["KTRDR_API_PORT"])


def _served_version(port: int) -> str | None:
    try:
        return str(httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2).json()["version"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


def edit_to_served(path: Path) -> float:
    """Seconds from writing a new `__version__` here to the instance's API returning it."""
    init, port = path / "ktrdr" / "__init__.py", _api_port(path)
    version = f"0.0.0+bench{uuid.uuid4().hex[:6]}"
    text = re.sub(r'__version__ = "[^"]*"', f'__version__ = "{version}"', init.read_text())
    start = time.monotonic()
    init.write_text(text)
    while time.monotonic() - start < EDIT_TIMEOUT:
        if _served_version(port) == version:
            return time.monotonic() - start
        time.sleep(0.05)
    raise RuntimeError(f"edit not served within {EDIT_TIMEOUT:g} s at port {port}")


def _compare(measure: str, local: Sample, remote: Sample, goal: str = "") -> dict[str, object]:
    ratio = remote.median / local.median
    print(
        f"{measure}: remote {remote.median:.2f} s (spread {remote.spread:.2f}, "
        f"n={len(remote.seconds)})"
        f" vs local {local.median:.2f} s (spread {local.spread:.2f}) → {ratio:.2f}×"
    )
    return _row(
        f"{measure}, remote vs local (median, n={len(remote.seconds)})",
        f"{remote.median:.1f} s vs {local.median:.1f} s",
        f"{ratio:.2f}×",
        goal,
    )


def _measure_ups(run: Run, context: str, reps: int) -> tuple[dict[str, Sample], Path, Path]:
    """First up and up after down, local and remote, `reps` times; the last pair is left up."""
    times = {
        k: Sample(k, []) for k in ("local first", "remote first", "local again", "remote again")
    }
    for rep in range(reps):
        pair = {"local": run.create(f"l{rep}", None), "remote": run.create(f"r{rep}", context)}
        for kind, path in pair.items():
            times[f"{kind} first"].seconds.append(run.up_to_passed(path))
        for kind, path in pair.items():
            run.ok("down", cwd=path)
            times[f"{kind} again"].seconds.append(run.up_to_passed(path))
        print(
            f"rep {rep + 1}: " + ", ".join(f"{k} {v.seconds[-1]:.1f} s" for k, v in times.items()),
            flush=True,
        )
        if rep < reps - 1:
            run.destroy(f"l{rep}")
            run.destroy(f"r{rep}")
    return times, pair["local"], pair["remote"]


def _measure_edits(local: Path, remote: Path) -> tuple[Sample, Sample]:
    edits = {"local": Sample("local edit", []), "remote": Sample("remote edit", [])}
    for _ in range(EDITS):  # alternating, so drift on the machine hits both
        for kind, path in (("local", local), ("remote", remote)):
            edits[kind].seconds.append(edit_to_served(path))
    print(
        "edits: " + "; ".join(f"{k} {[round(s, 2) for s in v.seconds]}" for k, v in edits.items())
    )
    return edits["local"], edits["remote"]


def _measure_e2e(run: Run, path: Path) -> tuple[float, bool]:
    start = time.monotonic()
    result = run.ktrdr("test-e2e", "-k", "health", cwd=path, timeout=UP_TIMEOUT)
    return time.monotonic() - start, result.returncode == 0


def _measure(run: Run, context: str, reps: int) -> list[dict[str, object]]:
    run.ok("init-shared")
    times, local, remote = _measure_ups(run, context, reps)
    rows = [
        _compare("first up → PASSED", times["local first"], times["remote first"]),
        _compare("up after down → PASSED", times["local again"], times["remote again"]),
    ]
    local_edit, remote_edit = _measure_edits(local, remote)
    rows.append(_compare("edit → served", local_edit, remote_edit, "remote ≤ 5 s"))
    rows[-1]["value"] = (
        f"{rows[-1]['value']} (max {max(remote_edit.seconds):.1f} s vs "
        f"{max(local_edit.seconds):.1f} s)"
    )
    e2e_local, ok_local = _measure_e2e(run, local)
    e2e_remote, ok_remote = _measure_e2e(run, remote)
    failed = (
        ""
        if ok_local and ok_remote
        else " (FAILED: "
        + ", ".join(k for k, ok in (("local", ok_local), ("remote", ok_remote)) if not ok)
        + ")"
    )
    print(f"test-e2e -k health: remote {e2e_remote:.1f} s vs local {e2e_local:.1f} s{failed}")
    rows.append(
        _row(
            "test-e2e -k health, remote vs local (n=1)",
            f"{e2e_remote:.1f} s vs {e2e_local:.1f} s{failed}",
            f"{e2e_remote / e2e_local:.2f}×",
        )
    )
    return rows


def run(reps: int = REPS) -> list[dict[str, object]]:
    engine_id = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        context, made_in = _engine_up(engine_id)
    except Skip as e:
        print(f"remote engine: skipped: {e}")
        return [_row("remote engine", f"skipped: no remote engine here: {e}")]
    print(f"remote engine {context} ready in {made_in:.1f} s", flush=True)
    rows = [_row("remote engine made (scripts/remote-engine.sh up)", f"{made_in:.1f} s")]
    try:
        with tempfile.TemporaryDirectory(prefix="ktrdr-bench-remote-") as tmp:
            run_ = Run(Path(tmp))
            try:
                rows += _measure(run_, context, reps)
            finally:
                run_.destroy_all()
    finally:
        _engine_down(engine_id)
    return rows


if __name__ == "__main__":
    run(int(sys.argv[1]) if len(sys.argv) > 1 else REPS)
