"""What goes into the journal and how a record is made: which commands and MCP tools are
recorded, who acted (the actor), which instance (resolved through this home's registry, never
from a worktree's `.env.sandbox` alone), the arguments (secrets hidden, cut to size), and the
writer that warns once instead of failing the command it records.

Imports journal/log.py and the registry; locate only inside a function. No click, no printing: the
faces (the `sandbox` group, the MCP server) turn their own exceptions into a result and pass
a `warn` callback.
"""

from __future__ import annotations

import getpass
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ktrdr.cli.sandbox.home import registry
from ktrdr.cli.sandbox.journal import log as journal
from ktrdr.envfile import SANDBOX_ENV_FILENAME, find_upwards
from ktrdr.errors import ExitCode, Interrupted, KtrdrError


class Ended(Protocol):
    """What a tool call returns, as far as the journal cares (the MCP layer's Outcome): the
    journal sits below the MCP package, so it names the shape, not the class."""

    @property
    def error(self) -> KtrdrError | None: ...


Result = TypeVar("Result", bound=Ended)

# CLI commands that always change something; prune and doctor only without --dry-run / with
# --fix; any command given a policy override (`--allow RULE`) is recorded too.
CLI_COMMANDS = frozenset(
    {"create", "init", "up", "down", "pause", "resume", "destroy", "init-shared", "test-e2e"}
)
MCP_TOOLS = frozenset(
    {
        "sandbox_create",
        "sandbox_up",
        "sandbox_down",
        "sandbox_pause",
        "sandbox_resume",
        "sandbox_destroy",
        "sandbox_test_e2e",
    }
)
SECRET_NAME = re.compile(r"pass|secret|token|key|credential|auth|cookie", re.IGNORECASE)
HIDDEN = "***"
MAX_ARGS = 30
MAX_ARG_CHARS = 200
MAX_RESULT_CHARS = 500


def cli_recorded(command: str, params: Mapping[str, Any]) -> bool:
    """Whether `ktrdr sandbox <command>` with these parsed parameters changes something."""
    if params.get("allow") or command in CLI_COMMANDS:
        return True
    if command == "prune":
        return not params.get("dry_run")
    return command == "doctor" and bool(params.get("fix"))


def mcp_recorded(tool: str, arguments: Mapping[str, Any]) -> bool:
    return tool in MCP_TOOLS or bool(arguments.get("allow"))


def user_actor() -> str:
    """`user:<login name>` for a command run from a terminal or a script."""
    try:
        login = getpass.getuser()
    except (OSError, KeyError):  # no LOGNAME/USER and no passwd entry (a bare container)
        login = f"uid{os.getuid()}"
    return f"user:{login}"


def mcp_actor(client_name: str | None, pinned_id: str | None) -> str:
    """`mcp:<client> pinned=<instance id>` or `mcp:<client> unpinned`; the client names itself
    in its initialize request (clientInfo.name)."""
    name = re.sub(r"\s+", "-", (client_name or "").strip())[:60] or "unknown-client"
    return f"mcp:{name} " + (f"pinned={pinned_id}" if pinned_id else "unpinned")


def clip(text: str, limit: int = MAX_ARG_CHARS) -> str:
    """One line of at most `limit` characters."""
    line = " ".join(text.split()) if "\n" in text or "\r" in text else text
    return line if len(line) <= limit else line[: limit - 1] + "…"


def redact_argv(argv: list[str]) -> list[str]:
    """The arguments as typed, minus secrets: `--db-password=x` → `--db-password=***`,
    `--token x` → `--token ***`, `API_KEY=x` → `API_KEY=***`; long ones cut, at most
    MAX_ARGS kept."""
    shown: list[str] = []
    hide_next = False
    for arg in argv[:MAX_ARGS]:
        name, equals, _ = arg.partition("=")
        if hide_next:
            shown.append(HIDDEN)
            hide_next = False
        elif equals and SECRET_NAME.search(name):
            shown.append(f"{clip(name)}={HIDDEN}")
        else:
            hide_next = arg.startswith("-") and bool(SECRET_NAME.search(arg))
            shown.append(clip(arg))
    if len(argv) > MAX_ARGS:
        shown.append(f"… {len(argv) - MAX_ARGS} more")
    return shown


def redact_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """An MCP call's arguments: values of secret-looking keys hidden, strings cut, lists as
    argv."""
    shown: dict[str, Any] = {}
    for key, value in list(arguments.items())[:MAX_ARGS]:
        if SECRET_NAME.search(key):
            shown[clip(key)] = HIDDEN
        elif isinstance(value, str):
            shown[clip(key)] = clip(value)
        elif isinstance(value, list):
            shown[clip(key)] = redact_argv([str(item) for item in value])
        elif value is None or isinstance(value, bool | int | float):
            shown[clip(key)] = value
        else:
            shown[clip(key)] = clip(str(value))
    return shown


def resolve_instance(name: str | None, cwd: Path | None) -> str | None:
    """The registry id of the instance `name` (or a path to it), else of the registered
    instance whose directory holds `cwd`; None when there is none or it cannot be told (best
    effort: never raises)."""
    # Here, not at the top: every command (and `--help`) loads the journal's group; only a
    # record needs the resolver.
    from ktrdr.cli.sandbox.instances.locate import find_entry

    try:
        if name and not (os.sep in name and cwd is not None):
            return find_entry(name).instance_id
        base = cwd / name if name and cwd is not None else cwd
        found = find_upwards(SANDBOX_ENV_FILENAME, base) if base is not None else None
        if found is None:
            return None
        root = found.parent.resolve()
        return next(
            (e.instance_id for e in registry.load().values() if e.root.resolve() == root), None
        )
    except (KtrdrError, OSError, ValueError):
        return None


def one_line_result(message: str) -> str:
    return clip(message, MAX_RESULT_CHARS) or "failed"


def ending_of(error: BaseException | None) -> tuple[str, int]:
    """(result, exit code) of a run that ended with `error` (None: success), for the errors
    the core raises; the faces handle their own (click's, the SDK's) first."""

    if error is None:
        return "ok", ExitCode.SUCCESS
    if isinstance(error, KtrdrError):
        return one_line_result(error.message), int(error.exit_code)
    if isinstance(error, KeyboardInterrupt):
        hint = error.hint if isinstance(error, Interrupted) else ""
        return one_line_result(hint or "interrupted"), ExitCode.INTERRUPTED
    if isinstance(error, SystemExit):
        code = error.code if isinstance(error.code, int) else (0 if error.code is None else 1)
        return ("ok" if code == 0 else f"exit {code}"), code
    return one_line_result(f"{type(error).__name__}: {error}"), ExitCode.FAILURE


@dataclass
class Recorder:
    """Writes records; a write that fails (disk full, unwritable home, a stuck lock) is said
    once through `warn` and never reaches the command it records."""

    warn: Callable[[str], None]
    path: Path | None = None
    warned: bool = False

    def write(self, record: journal.Record) -> None:
        try:
            journal.append(record, self.path)
        except Exception as e:  # whatever broke, the command must not fail
            if not self.warned:
                self.warned = True
                where = self.path or journal.journal_path()
                self.warn(
                    f"warning: could not write the journal {where} ({e}); the command itself "
                    "is not affected, but it is not recorded"
                )


@dataclass(frozen=True)
class Action:
    """A recorded action under way: who, what, on which instance (as resolved before it ran)."""

    actor: str
    command: str
    args: list[str] | dict[str, Any]
    instance: str | None
    started: float
    time: str

    @classmethod
    def begin(
        cls, actor: str, command: str, args: list[str] | dict[str, Any], instance: str | None
    ) -> Action:
        return cls(actor, command, args, instance, time.monotonic(), journal.now_iso())

    def record(self, result: str, exit_code: int, *, instance: str | None) -> journal.Record:
        return journal.Record(
            time=self.time,
            actor=self.actor,
            instance=self.instance or instance,
            command=self.command,
            args=self.args,
            result=result,
            exit_code=int(exit_code),
            duration_s=round(time.monotonic() - self.started, 3),
        )


def run_tool_journaled(
    recorder: Recorder,
    *,
    actor: str,
    pinned_id: str | None,
    tool: str,
    arguments: dict[str, Any],
    run: Callable[[], Result],
) -> Result:
    """Run one MCP tool call (`run`) and, when it changes something, record how it ended: its
    Outcome's error, a KtrdrError, a cancellation (exit 130) or a bug."""
    if not mcp_recorded(tool, arguments):
        return run()
    name = arguments.get("instance") or (
        arguments.get("name") if tool == "sandbox_create" else None
    )
    name = name if isinstance(name, str) else None
    action = Action.begin(
        actor, tool, redact_arguments(arguments), pinned_id or resolve_instance(name, None)
    )
    error: BaseException | None = None
    try:
        outcome = run()
        error = outcome.error
        return outcome
    except BaseException as e:
        error = e
        raise
    finally:
        result, code = ending_of(error)
        after = None if action.instance else resolve_instance(name, None)  # create made it
        recorder.write(action.record(result, code, instance=after))
