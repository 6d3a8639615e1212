"""MCP server: start to `initialize` answered, and one tool call's overhead over the same core
function called in-process.

- start: the SDK's stdio client spawns `ktrdr sandbox mcp --all-instances` and times the
  answer to `initialize`; the floor is `python -c "import mcp"` (the SDK's own import).
- overhead: `sandbox_list` (3 instances, no engine reachable so the core is quick and steady)
  through a running server, minus `list_instances()` called in this process.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import anyio

from bench.common import KTRDR, Sample, bench_env, scratch_repo, timed_run

STARTS = 10
CALLS = 40


async def _start_once(env: dict[str, str], cwd: Path) -> float:
    from mcp import ClientSession, StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=KTRDR, args=["sandbox", "mcp", "--all-instances"], env=env, cwd=str(cwd)
    )
    started = time.perf_counter()
    async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
        await client.initialize()
        return time.perf_counter() - started


async def _calls(env: dict[str, str], cwd: Path) -> list[float]:
    from mcp import ClientSession, StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=KTRDR, args=["sandbox", "mcp", "--all-instances"], env=env, cwd=str(cwd)
    )
    seconds = []
    async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
        await client.initialize()
        await client.list_tools()  # the client caches output schemas once
        await client.call_tool("sandbox_list", {})  # warm
        for _ in range(CALLS):
            started = time.perf_counter()
            result = await client.call_tool("sandbox_list", {})
            seconds.append(time.perf_counter() - started)
            if result.is_error:
                raise SystemExit(f"sandbox_list failed: {result.content}")
    return seconds


def _in_process(env: dict[str, str]) -> list[float]:
    import json

    from ktrdr.cli.sandbox.overview.listing import list_instances

    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        json.dumps([row.to_json() for row in list_instances()])  # warm
        seconds = []
        for _ in range(CALLS):
            started = time.perf_counter()
            json.dumps([row.to_json() for row in list_instances()])
            seconds.append(time.perf_counter() - started)
        return seconds
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run() -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory(prefix="ktrdr-bench-mcp-") as tmp:
        tmp_path = Path(tmp)
        env = bench_env(tmp_path / "home")
        env["DOCKER_HOST"] = f"unix://{tmp_path / 'no-engine.sock'}"
        repo = scratch_repo(tmp_path / "repo")
        for index in range(3):
            timed_run([KTRDR, "sandbox", "create", f"m{index}"], env=env, cwd=repo)
        floor = [timed_run([sys.executable, "-c", "import mcp"], env=env)[0] for _ in range(5)]
        anyio.run(_start_once, env, repo)  # warm the page cache
        starts = [anyio.run(_start_once, env, repo) for _ in range(STARTS)]
        via_mcp = anyio.run(_calls, env, repo)
        direct = _in_process(env)
    import_floor = Sample("python -c 'import mcp'", floor)
    start = Sample("server start → initialize answered", starts)
    call = Sample("sandbox_list via MCP", via_mcp)
    core = Sample("list_instances() in-process", direct)
    overhead = call.median - core.median
    for sample in (import_floor, start, call, core):
        print(sample.describe())
    print(f"start: {start.median:.2f} s = {start.median / 1.0:.2f}× the 1 s goal")
    print(f"per-call overhead: {overhead * 1000:.1f} ms = {overhead / 0.05:.2f}× the 50 ms goal")
    return [
        {
            "benchmark": "MCP server",
            "measure": import_floor.label,
            "value": f"{import_floor.median * 1000:.0f} ms",
            "ratio": "floor",
            "goal": "",
        },
        {
            "benchmark": "MCP server",
            "measure": start.label,
            "value": f"{start.median * 1000:.0f} ms (IQR {start.spread * 1000:.0f})",
            "ratio": f"{start.median / 1.0:.2f}× goal, {start.median / import_floor.median:.2f}× "
            "floor",
            "goal": "≤ 1 s",
        },
        {
            "benchmark": "MCP server",
            "measure": "tool call overhead (sandbox_list via MCP − in-process)",
            "value": f"{overhead * 1000:.1f} ms (MCP {call.median * 1000:.1f}, in-process "
            f"{core.median * 1000:.1f})",
            "ratio": f"{overhead / 0.05:.2f}× goal",
            "goal": "≤ 50 ms",
        },
    ]


if __name__ == "__main__":
    run()
