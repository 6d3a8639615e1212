"""`ktrdr sandbox mcp`: the tools of mcp/tools.py and three kinds of resources (an instance's
last gate report, the tail of each service's log, the journal) served over stdio with the `mcp`
SDK. Each tool call that changes something is recorded in the journal (journal/entry.py) with
the client's name and the pin.

Tool calls run the core functions in a thread, so the server keeps reading (cancellations,
pings) meanwhile. A cancelled call raises KeyboardInterrupt inside that thread: the core
cleans up exactly as after a Ctrl-C in the CLI (`up` stops compose and records an
interrupted gate report, `test-e2e` passes SIGINT to its run, `destroy` leaves its slot
claimed for a rerun).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import sys
import threading
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import mcp.types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError

from ktrdr import __version__
from ktrdr.cli.limits import shown
from ktrdr.cli.output import info
from ktrdr.cli.sandbox.base import stack_file
from ktrdr.cli.sandbox.gate.report import read_report
from ktrdr.cli.sandbox.home import registry
from ktrdr.cli.sandbox.journal.entry import Recorder, mcp_actor, run_tool_journaled
from ktrdr.cli.sandbox.journal.query import query, to_json
from ktrdr.cli.sandbox.lifecycle import operations as lifecycle
from ktrdr.cli.sandbox.mcp.scope import Scope
from ktrdr.cli.sandbox.mcp.spec import Outcome
from ktrdr.cli.sandbox.mcp.tools import run_tool, tools_for
from ktrdr.errors import Interrupted, KtrdrError

if TYPE_CHECKING:
    from mcp.server.context import ServerRequestContext

URI_PREFIX = "ktrdr://instance/"
JOURNAL_URI = "ktrdr://journal"
RESOURCE_LOG_TAIL = 200
INTERRUPT_WAIT = 120.0  # seconds a cancelled call gets for its clean-up (compose down, SIGINT)
INVALID_PARAMS = -32602


class _Call:
    """One tool call running in its own thread, interruptible like a Ctrl-C."""

    def __init__(self, work: Callable[[], Outcome]) -> None:
        self.work = work
        self.done = threading.Event()
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="ktrdr-mcp-call", daemon=True)

    def _run(self) -> None:
        try:
            self.outcome = self.work()
        except BaseException as e:  # handed to the event loop, which re-raises it
            self.error = e
        finally:
            self.done.set()

    def interrupt(self) -> None:
        ident = self.thread.ident
        if ident is not None and not self.done.is_set():
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(ident), ctypes.py_object(KeyboardInterrupt)
            )

    async def result(self) -> Outcome:
        self.thread.start()
        try:
            await anyio.to_thread.run_sync(self.done.wait, abandon_on_cancel=True)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                self.interrupt()
                await anyio.to_thread.run_sync(self.done.wait, INTERRUPT_WAIT)
                _say_interrupted(self.error)
            raise
        if self.error is not None:
            raise self.error
        assert self.outcome is not None  # set whenever error is not
        return self.outcome


def _say_interrupted(error: BaseException | None) -> None:
    """The CLI's Ctrl-C hint, on stderr (the client log): the call itself gets no answer."""
    if isinstance(error, Interrupted) and error.hint:
        sys.stderr.write(error.hint + "\n")
    elif isinstance(error, KeyboardInterrupt):
        sys.stderr.write("cancelled: the call was interrupted; run it again to finish\n")


def tool_result(outcome: Outcome | None, error: KtrdrError | None = None) -> types.CallToolResult:
    """Success: the JSON as text and as structured content. Failure: `Error: <message>` and
    {error, exit_code, result} where result is what the CLI printed before exiting non-zero."""
    data = _plain(outcome.data) if outcome is not None else None
    failure = error or (outcome.error if outcome is not None else None)
    if failure is None:
        assert data is not None
        text = json.dumps(data, indent=2)
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)], structured_content=data
        )
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=f"Error: {failure.message}")],
        structured_content={
            "error": failure.message,
            "exit_code": int(failure.exit_code),
            "result": data,
        },
        is_error=True,
    )


def _bug(tool: str, error: Exception) -> KtrdrError:
    """An unexpected exception of a tool call as one line (exit 1); its traceback goes to
    stderr, the client's server log, as the CLI keeps a bug's traceback."""

    traceback.print_exception(error, file=sys.stderr)
    detail = " ".join(str(error).split())[:200]
    return KtrdrError(
        f"{shown(tool)} failed unexpectedly ({type(error).__name__}: {detail}): a bug in ktrdr; "
        "the traceback is in the MCP server's log (its stderr)"
    )


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    """JSON types only (paths and the like as strings), as `--json` prints them."""
    plain: dict[str, Any] = json.loads(json.dumps(data, default=str))
    return plain


def build_server(scope: Scope) -> Server[Any]:
    recorder = Recorder(warn=info)  # stderr: the client's log
    list_tools, call_tool = _tool_handlers(scope, recorder)
    list_resources, read_resource = _resource_handlers(scope)
    return Server(
        "ktrdr-sandbox",
        version=__version__,
        instructions=(
            f"KTRDR sandbox tools, acting on {scope.describe()}. Loop: sandbox_up → edit → "
            "sandbox_test_e2e → sandbox_evidence → sandbox_destroy. See docs/sandbox.md."
        ),
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_read_resource=read_resource,
    )


def _tool_handlers(scope: Scope, recorder: Recorder) -> tuple[Any, Any]:
    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[
                types.Tool(
                    name=tool.name,
                    description=tool.description,
                    input_schema=tool.input_schema(scope),
                    output_schema=tool.output_schema(),
                )
                for tool in tools_for(scope)
            ]
        )

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        progress = _progress_sink(ctx)
        arguments = dict(params.arguments or {})
        actor = mcp_actor(_client_name(ctx), scope.pinned_id)
        call = _Call(
            lambda: run_tool_journaled(
                recorder,
                actor=actor,
                pinned_id=scope.pinned_id,
                tool=params.name,
                arguments=arguments,
                run=lambda: run_tool(scope, params.name, arguments, progress),
            )
        )
        try:
            return tool_result(await call.result())
        except KtrdrError as e:
            return tool_result(None, e)
        except Exception as e:  # a bug: its traceback to the client log, the agent a tool error
            return tool_result(None, _bug(params.name, e))

    return list_tools, call_tool


def _client_name(ctx: ServerRequestContext[Any]) -> str | None:
    """The name the client gave in its initialize request (clientInfo.name), for the journal."""
    client = ctx.session.client_params
    return client.client_info.name if client is not None else None


def _resource_handlers(scope: Scope) -> tuple[Any, Any]:
    async def list_resources(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        try:
            found = await anyio.to_thread.run_sync(_resources, scope)
        except KtrdrError as e:  # e.g. the pinned instance was destroyed
            raise MCPError(INVALID_PARAMS, f"Error: {e.message}") from None
        return types.ListResourcesResult(resources=found)

    async def read_resource(
        ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        uri = str(params.uri)
        try:
            mime, text = await anyio.to_thread.run_sync(_read_resource, scope, uri)
        except KtrdrError as e:
            raise MCPError(INVALID_PARAMS, f"Error: {e.message}") from None
        contents = types.TextResourceContents(uri=uri, mime_type=mime, text=text)
        return types.ReadResourceResult(contents=[contents])

    return list_resources, read_resource


def _progress_sink(ctx: ServerRequestContext[Any]) -> Callable[[str], None]:
    """A callback for the worker thread that sends each message as a progress notification
    (numbered 1, 2, …) for this call; a no-op when the client asked for none."""
    token = anyio.lowlevel.current_token()
    count = [0]

    def send(message: str) -> None:
        count[0] += 1
        # The client may have gone away; the call still finishes (or is interrupted).
        with contextlib.suppress(
            RuntimeError, anyio.BrokenResourceError, anyio.ClosedResourceError
        ):
            anyio.from_thread.run(
                ctx.session.report_progress, float(count[0]), None, message, token=token
            )

    return send


def _resources(scope: Scope) -> list[types.Resource]:

    if scope.pinned:
        instances = [scope.target(None)]
    else:
        instances = [
            scope.target(entry.instance_id)
            for entry in registry.load().values()
            if entry.state == "ready" and entry.root.is_dir()
        ]
    found = [
        types.Resource(
            uri=JOURNAL_URI,
            name="journal",
            description=f"What changed {scope.describe()}: the journal's records "
            "(= `ktrdr sandbox journal --json`).",
            mime_type="application/json",
        )
    ]
    for instance in instances:
        base = f"{URI_PREFIX}{instance.instance_id}"
        found.append(
            types.Resource(
                uri=f"{base}/gate-report",
                name=f"{instance.instance_id} gate report",
                description="The last Startability Gate report (.sandbox/gate-report.json).",
                mime_type="application/json",
            )
        )
        try:
            stack = stack_file.load(instance.root)
        except KtrdrError:
            continue  # no stack definition in this checkout: no logs to offer
        for service in stack.services:
            if service in stack.on_demand:  # e2e-tests: no log unless a run made one
                continue
            found.append(
                types.Resource(
                    uri=f"{base}/logs/{service}",
                    name=f"{instance.instance_id} {service} log",
                    description=f"The last {RESOURCE_LOG_TAIL} lines of {service}'s log.",
                    mime_type="text/plain",
                )
            )
    return found


def _read_resource(scope: Scope, uri: str) -> tuple[str, str]:

    if uri == JOURNAL_URI:
        return "application/json", json.dumps(to_json(query(scope.pinned_id)), indent=2)
    rest = uri.removeprefix(URI_PREFIX) if uri.startswith(URI_PREFIX) else None
    instance_id, _, what = (rest or "").partition("/")
    if not instance_id or not what:
        raise KtrdrError(f"unknown resource {uri}: expected {URI_PREFIX}<instance>/…")
    if scope.pinned and instance_id != scope.pinned_id:
        raise KtrdrError(
            f"resource {uri} is not served: this server is pinned to {scope.describe()}"
        )
    instance = scope.target(None if scope.pinned else instance_id)
    if what == "gate-report":
        report = read_report(instance.root)
        if report is None:
            raise KtrdrError(
                f"instance {instance.instance_id} has no gate report yet: run sandbox_up"
            )
        return "application/json", json.dumps(report, indent=2)
    kind, _, service = what.partition("/")
    if kind != "logs" or not service:
        raise KtrdrError(f"unknown resource {uri}: expected …/gate-report or …/logs/<service>")
    logs = lifecycle.log_text(instance, service=service, tail=RESOURCE_LOG_TAIL)
    return "text/plain", logs.text


async def _serve(scope: Scope) -> None:
    server = build_server(scope)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def serve(scope: Scope) -> None:
    """Serve until the client closes stdin."""
    anyio.run(_serve, scope)
