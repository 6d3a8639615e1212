"""Claude Code's worktree hooks on the real engine, run as Claude Code runs them: a `ktrdr`
process given a recorded payload on stdin (kept open), in a copy of this project.

create → the printed path is a worktree with its instance and its pinned `.mcp.json`, the stack
starting in the background → an MCP client started from that config reaches `sandbox_up`
PASSED → remove → nothing of the instance is left (containers, volumes, networks, worktree,
registry entry, background start). One test: one start takes most of a minute on 2 cores.

The home is this test's own; everything it owns is removed by owner label at the end, even on
failure.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from tests.support.engine import leftovers
from tests.support.hooks import payload, run_hook
from tests.support.owners import owner_of

pytestmark = pytest.mark.docker

UP_TIMEOUT = 600.0


async def pinned_up(entry: dict[str, Any], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Start the server as Claude Code would from `.mcp.json` (its env on top of the session's,
    in the project's directory) and run `sandbox_up`, then `sandbox_status`."""
    params = StdioServerParameters(
        command=entry["command"], args=entry["args"], env={**env, **entry["env"]}, cwd=str(cwd)
    )
    progress: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
        await client.initialize()
        up = await client.call_tool(
            "sandbox_up", {}, read_timeout_seconds=UP_TIMEOUT, progress_callback=on_progress
        )
        assert not up.is_error, up.content[0].text
        status = await client.call_tool("sandbox_status", {})
        assert not status.is_error, status.content[0].text
    return {"up": up.structured_content, "status": status.structured_content, "progress": progress}


def test_a_hook_made_worktree_reaches_passed_through_its_pinned_server_and_goes_away(
    agent_env: dict[str, str], isolated_ktrdr_home: Path
) -> None:
    repo = Path(agent_env["TEST_REPO"])
    created = run_hook(
        ["claude-code", "worktree-create"],
        payload("create_worktree_name", repo=str(repo)),
        cwd=repo,
        env=agent_env,
    )
    assert created.returncode == 0, created.stderr
    path = Path(created.stdout.strip())
    assert created.stdout == f"{path}\n"
    print(f"worktree-create, hook to path printed: {created.seconds:.2f}s")
    assert created.seconds < 30, created.seconds
    instance_id = "ktrdr--feat-auth"
    assert path == repo.parent / instance_id
    assert (path / ".git").is_file()  # a linked worktree
    assert (path / ".env.sandbox").is_file()
    registry = isolated_ktrdr_home / "sandbox" / "instances.json"
    assert list(json.loads(registry.read_text())["instances"]) == [instance_id]
    ((name, entry),) = json.loads((path / ".mcp.json").read_text())["mcpServers"].items()
    assert name == f"ktrdr-{instance_id}"
    assert entry["args"] == ["sandbox", "mcp", "--instance", instance_id]
    assert entry["env"]["KTRDR_HOME"] == str(isolated_ktrdr_home)
    assert (isolated_ktrdr_home / "run" / instance_id / "start.json").is_file()

    seen = anyio.run(pinned_up, entry, agent_env, path)
    assert seen["up"]["result"] == "passed", seen["up"]
    assert seen["up"]["instance_id"] == instance_id
    start = seen["status"]["background_start"]
    assert start["log"] == str(isolated_ktrdr_home / "run" / instance_id / "start.log")
    log = Path(start["log"]).read_text()
    assert f"Starting instance: {instance_id}" in log

    removed = run_hook(
        ["claude-code", "worktree-remove"],
        payload("remove", repo=str(repo), worktree=str(path)),
        cwd=repo,
        env=agent_env,
        timeout=300,
    )
    assert removed.returncode == 0, removed.stderr
    assert f"destroyed instance {instance_id} (slot released)" in removed.stderr
    assert not path.exists()
    assert json.loads(registry.read_text())["instances"] == {}
    assert not (isolated_ktrdr_home / "run" / instance_id).exists()
    owner = owner_of(isolated_ktrdr_home)
    assert leftovers(f"ktrdr.instance={instance_id}", f"ktrdr.owner={owner}") == {
        "container": [],
        "volume": [],
        "network": [],
    }
    records = [
        json.loads(line)
        for line in (isolated_ktrdr_home / "sandbox" / "journal.jsonl").read_text().splitlines()
    ]
    ours = [r["command"] for r in records if r["instance"] == instance_id]
    assert ours[0] == "hook claude-code worktree-create"
    assert ours[-1] == "hook claude-code worktree-remove"
    assert {"up", "sandbox_up"} <= set(ours)  # the background start, the pinned server's call
