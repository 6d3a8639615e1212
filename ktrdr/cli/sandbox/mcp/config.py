"""What an MCP client needs to launch `ktrdr sandbox mcp` (`--print-config`): this ktrdr's
absolute path, the pin, and this KTRDR_HOME."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from ktrdr.cli import settings
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.home.directory import ktrdr_home


def client_config(pinned_id: str | None, *, cwd: Path) -> dict[str, Any]:
    """An `mcpServers` entry: this ktrdr's absolute path, the pin, and this KTRDR_HOME (a
    client starts servers with its own environment, which may name another home)."""

    args = ["sandbox", "mcp", *(["--instance", pinned_id] if pinned_id else ["--all-instances"])]
    env = {"KTRDR_HOME": str(ktrdr_home().absolute())}
    if settings.is_set("KTRDR_IMAGES"):
        env["KTRDR_IMAGES"] = settings.get("KTRDR_IMAGES")
    entry: dict[str, Any] = {"command": str(ktrdr_executable()), "args": args, "env": env}
    if pinned_id is None:
        entry["cwd"] = str(cwd.absolute())  # sandbox_create makes worktrees of this checkout
    return {"mcpServers": {f"ktrdr-{pinned_id or 'sandbox'}": entry}}


def ktrdr_executable() -> Path:
    """The `ktrdr` script next to this Python (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "ktrdr"
    if beside.is_file():
        return beside.absolute()
    found = shutil.which("ktrdr")
    if found is None:
        raise SandboxError(
            "cannot find the ktrdr executable (not next to this Python, not on PATH): "
            "install ktrdr (`make setup`) and retry"
        )
    return Path(found).absolute()
