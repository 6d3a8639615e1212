from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _ktrdr() -> list[str]:
    script = Path(sys.executable).parent / "ktrdr"
    return [str(script)] if script.exists() else [shutil.which("ktrdr") or "ktrdr"]


def test_entry_point_runs_as_a_subprocess(tmp_path: Path) -> None:
    env = {**os.environ, "KTRDR_HOME": str(tmp_path)}
    result = subprocess.run(
        [*_ktrdr(), "-p", "8002", "config", "show", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert '"http://localhost:8002"' in result.stdout


@pytest.mark.parametrize("args", [["--help"], ["config", "show"]])
def test_fast_commands_do_not_import_heavy_libraries(args: list[str]) -> None:
    probe = (
        "import sys\n"
        "from ktrdr.cli.main import cli\n"
        f"try:\n    cli({args!r}, standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('docker', 'httpx', 'rich.table', 'yaml') if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "HEAVY=", result.stdout


def test_a_deleted_current_directory_is_one_clear_line(tmp_path: Path) -> None:
    gone = tmp_path / "destroyed-instance"
    gone.mkdir()
    probe = (
        "import os, sys\n"
        f"os.chdir({str(gone)!r})\n"
        f"os.rmdir({str(gone)!r})\n"
        "sys.argv = ['ktrdr', 'sandbox', 'list']\n"
        "from ktrdr.cli.main import main\n"
        "main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert "current directory no longer exists" in result.stderr
    assert "Traceback" not in result.stderr


@contextmanager
def silent_api() -> Iterator[socket.socket]:
    """An API that accepts connections and never answers: `health` waits until interrupted."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server


def interruptible_health(port: int, home: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*_ktrdr(), "-p", str(port), "health"],
        env={**os.environ, "KTRDR_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # A child started from a non-interactive shell may inherit SIGINT ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


@pytest.mark.timing
def test_ctrl_c_exits_130_with_what_to_do_instead_of_aborted(tmp_path: Path) -> None:
    with silent_api() as server:
        port = server.getsockname()[1]
        process = interruptible_health(port, tmp_path)
        connection, _ = server.accept()  # the request is in flight
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        connection.close()

    assert process.returncode == 130, stderr
    assert f"Interrupted: `ktrdr -p {port} health` stopped" in stderr
    assert "run it again" in stderr
    assert "Traceback" not in stderr
    assert "Aborted!" not in stderr


def _before_any_ktrdr_code(stderr: str) -> bool:
    """A traceback whose frames are only the console script and the import machinery: the
    signal came before the first line of the ktrdr package ran (nothing of ours can catch it)."""
    frames = [line.strip() for line in stderr.splitlines() if line.strip().startswith("File ")]
    return bool(frames) and all(
        "<frozen importlib" in frame or (frame.endswith("in <module>") and "/bin/ktrdr" in frame)
        for frame in frames
    )


@pytest.mark.timing
def test_ctrl_c_at_any_moment_of_start_up_never_prints_a_traceback(tmp_path: Path) -> None:
    with silent_api() as server:
        port = server.getsockname()[1]
        for delay in (0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.15, 0.2):
            process = interruptible_health(port, tmp_path)
            time.sleep(delay)  # lands in interpreter start, imports, parsing or the request
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=30)
            if any(
                sign in stderr
                for sign in (
                    "init_import_site",
                    "Error processing line",
                    "Failed checking if argv[0] is an import path entry",
                )
            ):
                continue  # landed in the interpreter's own start-up (site, .pth, sys.path[0])
            if _before_any_ktrdr_code(stderr):
                continue  # the console script's first import had not reached ktrdr yet
            assert "Traceback" not in stderr, (delay, stderr)
            # -SIGINT: the signal came before Python installed its handler (not our code yet).
            assert process.returncode in (130, -signal.SIGINT), (delay, stderr)
