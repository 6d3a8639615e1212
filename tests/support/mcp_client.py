"""An MCP client of `ktrdr sandbox mcp`, the way an agent starts it: the SDK's stdio client
launching the real console script with the environment and working directory given."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from mcp import ClientSession, StdioServerParameters, stdio_client

KTRDR = Path(sys.executable).parent / "ktrdr"


@asynccontextmanager
async def server(env: dict[str, str], cwd: Path, *args: str) -> AsyncIterator[ClientSession]:
    """A started, initialised session with `ktrdr sandbox mcp ARGS…`."""
    params = StdioServerParameters(
        command=str(KTRDR), args=["sandbox", "mcp", *args], env=env, cwd=str(cwd)
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
        await client.initialize()
        yield client


def ok(result: Any) -> dict[str, Any]:
    """The structured result of a tool call that must have succeeded (its text when not)."""
    assert not result.is_error, result.content[0].text
    data: dict[str, Any] = result.structured_content
    return data
