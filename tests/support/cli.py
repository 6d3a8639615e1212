"""The real `ktrdr` CLI as a subprocess, the way a user runs it, with a throwaway home: the
environment every test harness gives it, and one call that captures its output."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.support import slots

KTRDR = str(Path(sys.executable).parent / "ktrdr")  # this venv's console script


def cli_env(
    home: Path,
    *,
    test: bool = True,
    images: str | None = "offline",
    no_color: bool = True,
) -> dict[str, str]:
    """This process's environment without its KTRDR_* variables, with KTRDR_HOME=home; with
    `test` KTRDR_TEST=1 and the test slot range (slots.env(), never the user's slots); then
    KTRDR_IMAGES=images and NO_COLOR=1 unless turned off. `test=False` is a user's home (the
    bystanders): no test marker, the default slots."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KTRDR_")}
    env["KTRDR_HOME"] = str(home)
    if test:
        env["KTRDR_TEST"] = "1"
        env.update(slots.env())
    if images is not None:
        env["KTRDR_IMAGES"] = images
    if no_color:
        env["NO_COLOR"] = "1"
    return env


def run(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float,
) -> subprocess.CompletedProcess[str]:
    """argv in cwd (with env; this process's when None), its output captured as text; a
    non-zero exit is returned, not raised."""
    return subprocess.run(
        list(argv),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
