"""scripts/bootstrap.sh (the README's set-up commands) as a real subprocess. The apt path itself
runs in CI on a machine without make; here a PATH without make and a non-root `id` stand in."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "bootstrap.sh"


def run_bootstrap(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path} if path is not None else dict(os.environ)
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_bootstrap_hands_over_to_make_with_a_python_of_at_least_3_11() -> None:
    result = run_bootstrap("help")
    assert result.returncode == 0, result.stderr
    assert "bootstrap: make help (Python: Python 3." in result.stderr
    assert "demo" in result.stdout
    assert "test" in result.stdout


def test_bootstrap_without_a_target_prints_its_usage() -> None:
    result = run_bootstrap()
    assert result.returncode == 2  # a usage error, like the CLI's
    assert result.stderr.startswith("Error: usage: bash scripts/bootstrap.sh demo|test")


def test_a_missing_make_without_root_says_what_to_install(tmp_path: Path) -> None:
    stand_in_bin = tmp_path / "bin"
    stand_in_bin.mkdir()
    for tool in ("bash", "dirname", "git", "python3", "apt-get"):
        found = shutil.which(tool)
        if found:
            (stand_in_bin / tool).symlink_to(found)
    (stand_in_bin / "id").write_text("#!/bin/sh\necho 1000\n")  # a non-root user
    (stand_in_bin / "id").chmod(0o755)

    result = run_bootstrap("help", path=str(stand_in_bin))

    assert result.returncode == 1
    assert result.stderr.strip() == (
        "Error: missing: make; install it (Debian/Ubuntu: sudo apt-get install make) and retry"
    )
