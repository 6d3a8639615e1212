from __future__ import annotations

import os
import shutil
import subprocess
import sys
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
