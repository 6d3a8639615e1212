"""The journal through a real MCP client (the SDK's stdio client, the real `ktrdr` entry point
as the server, this test's KTRDR_HOME, no Docker engine): a tool call that changes something
is recorded with the client's name and the server's pin, a read-only one is not, and
`ktrdr://journal` reads the records back (a pinned server: only its instance's)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp.types as types
from mcp import ClientSession, StdioServerParameters, stdio_client

from ktrdr.cli.sandbox.journal import log as journal
from tests.support.cli import KTRDR
from tests.support.mcp_session import create


@asynccontextmanager
async def named_session(client: str, *args: str, cwd: Path) -> AsyncIterator[ClientSession]:
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    params = StdioServerParameters(
        command=str(KTRDR), args=["sandbox", "mcp", *args], env=env, cwd=str(cwd)
    )
    info = types.Implementation(name=client, version="1.0")
    with open(os.devnull, "w") as quiet:
        async with (
            stdio_client(params, errlog=quiet) as (read, write),
            ClientSession(read, write, client_info=info) as session,
        ):
            await session.initialize()
            yield session


def drive(
    client: str, args: list[str], cwd: Path, steps: Callable[[ClientSession], Awaitable[Any]]
) -> Any:
    async def main() -> Any:
        async with named_session(client, *args, cwd=cwd) as session:
            return await steps(session)

    return anyio.run(main)


def test_a_pinned_tool_call_is_recorded_with_the_client_and_pin_and_read_back(
    checkout: Path,
) -> None:
    root = Path(create("feat", checkout)["path"])
    journal.append(  # another instance's record: a pinned server does not show it
        journal.Record("2024-05-01T00:00:00+00:00", "user:bob", "ktrdr--other", "up", [], "ok", 0)
    )

    async def steps(client: ClientSession) -> tuple[Any, Any, Any]:
        down = await client.call_tool("sandbox_down", {})  # fails: no engine
        await client.call_tool("sandbox_status", {})  # read-only: not recorded
        listed = await client.list_resources()
        read = await client.read_resource("ktrdr://journal")
        return down, listed, read

    down, listed, read = drive("claude-code", [], root, steps)

    assert down.is_error
    [record] = [r for r in journal.read().records if r.actor.startswith("mcp:")]
    assert record.instance == "ktrdr--feat"
    assert record.actor == "mcp:claude-code pinned=ktrdr--feat"
    assert record.command == "sandbox_down"
    assert record.args == {}
    assert record.exit_code == down.structured_content["exit_code"] == 1
    assert record.result == down.structured_content["error"]
    assert "ktrdr://journal" in {str(resource.uri) for resource in listed.resources}
    served = json.loads(read.contents[0].text)
    assert [r["command"] for r in served["records"]] == ["create", "sandbox_down"]
    assert {r["instance"] for r in served["records"]} == {"ktrdr--feat"}


def test_an_unpinned_refused_call_is_recorded_with_its_usage_exit_code(checkout: Path) -> None:
    create("feat", checkout)

    async def steps(client: ClientSession) -> tuple[Any, Any]:
        refused = await client.call_tool("sandbox_up", {"instance": "feat", "port": 1})
        read = await client.read_resource("ktrdr://journal")
        return refused, read

    refused, read = drive("cursor", ["--all-instances"], checkout, steps)

    assert refused.is_error
    records = journal.read().records
    assert [(r.command, r.exit_code, r.instance) for r in records] == [
        ("create", 0, "ktrdr--feat"),  # the CLI's own record, from `create` above
        ("sandbox_up", 2, "ktrdr--feat"),
    ]
    assert records[1].actor == "mcp:cursor unpinned"
    assert records[1].args == {"instance": "feat", "port": 1}
    served = json.loads(read.contents[0].text)  # unpinned: the whole home's journal
    assert [r["command"] for r in served["records"]] == ["create", "sandbox_up"]
