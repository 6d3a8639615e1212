"""A copy of this project as a fresh one-commit git repo, for tests that create real instances
(the compose file and source tree must exist in the instance) without touching this checkout."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def copy_project(target: Path) -> Path:
    """This project's files (tracked and untracked-but-not-ignored) as a fresh one-commit repo."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for relative in filter(None, listed.split("\0")):
        source = REPO_ROOT / relative
        if source.is_file():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / relative)
    git = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.invalid"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=target, check=True)
    subprocess.run([*git, "add", "-A"], cwd=target, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "copy"], cwd=target, check=True)
    return target


def bump_version(root: Path, tag: str) -> str:
    """Give the copy's `ktrdr.__version__` a new unique value (the API's /health reports it),
    the edit the hot-reload tests wait to see served; returns the new version."""
    import re
    import uuid

    init = root / "ktrdr" / "__init__.py"
    version = f"0.0.0+{tag}{uuid.uuid4().hex[:6]}"
    init.write_text(
        re.sub(r'__version__ = "[^"]*"', f'__version__ = "{version}"', init.read_text())
    )
    return version
