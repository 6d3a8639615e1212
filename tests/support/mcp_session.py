"""The unit tests' MCP client of `ktrdr sandbox mcp`: the SDK's stdio client starting the real
console script with the test's own environment (its KTRDR_HOME, no Docker engine), the server's
stderr discarded; `drive` runs steps in one session, `error_of` reads a refused call, and
`create` makes an instance through the CLI first."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client

from tests.support import cli
from tests.support.cli import KTRDR

PROJECT = Path(__file__).resolve().parents[2]


def ktrdr(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`ktrdr ARGS…` in cwd with this process's environment (the test's KTRDR_HOME)."""
    return cli.run([KTRDR, *args], cwd=cwd, timeout=120)


def create(name: str, checkout: Path) -> dict[str, Any]:
    result = ktrdr("sandbox", "create", name, "--json", cwd=checkout)
    assert result.returncode == 0, result.stderr
    created: dict[str, Any] = json.loads(result.stdout)
    return created


@asynccontextmanager
async def session(*args: str, cwd: Path) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=str(KTRDR), args=["sandbox", "mcp", *args], env=dict(os.environ), cwd=str(cwd)
    )
    with open(os.devnull, "w") as quiet:  # the server's stderr (cancel notes) is not checked
        async with (
            stdio_client(params, errlog=quiet) as (read, write),
            ClientSession(read, write) as client,
        ):
            await client.initialize()
            yield client


def drive(args: list[str], cwd: Path, steps: Callable[[ClientSession], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with session(*args, cwd=cwd) as client:
            return await steps(client)

    return anyio.run(main)


def error_of(result: Any) -> tuple[str, int]:
    assert result.is_error, result
    text = result.content[0].text
    assert text.startswith("Error: ")
    assert "\n" not in text
    assert result.structured_content["error"] == text.removeprefix("Error: ")
    return result.structured_content["error"], result.structured_content["exit_code"]
