"""The journal's Click face: `JournaledGroup`, the `sandbox` group that records every command
that changes something (the one place: no command body knows of the journal), and
`ktrdr sandbox journal`, which shows the records.

A command is recorded once, when it ends (success, `Error: …`, usage error, Ctrl-C), with the
exit code the root group will give it; one killed outright (SIGKILL, power loss) leaves no
record. `--help` is never recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ktrdr.cli.output import info, print_json, print_table
from ktrdr.cli.sandbox.commands.options import json_flag

if TYPE_CHECKING:
    from ktrdr.cli.sandbox.journal.entry import Action

PENDING = "ktrdr.journal.pending"
HOME_WIDE = frozenset({"prune", "doctor", "init-shared"})  # act on the home, not one instance


class JournaledGroup(click.Group):
    """A click.Group whose subcommands that change something each leave one journal record."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if name is not None and command is not None:  # before it runs: destroy's id is known
            try:
                ctx.meta[PENDING] = _begin(ctx, name, command, rest)
            except Exception as e:  # the journal never stops a command
                info(f"warning: this command is not recorded in the journal ({e})")
        return name, command, rest

    def invoke(self, ctx: click.Context) -> Any:
        error: BaseException | None = None
        try:
            return super().invoke(ctx)
        except BaseException as e:
            error = e
            raise
        finally:
            pending = ctx.meta.pop(PENDING, None)
            if pending is not None:
                _finish(pending[0], pending[1], error)


def _begin(
    ctx: click.Context, name: str, command: click.Command, rest: list[str]
) -> tuple[Action, Callable[[], str | None]] | None:
    """The action about to run and how to find its instance afterwards (create, init register
    it while they run), or None when it is not recorded."""
    options = rest[: rest.index("--")] if "--" in rest else rest
    if any(arg in ctx.help_option_names for arg in options):
        return None
    params = _parsed(ctx, name, command, rest)
    from ktrdr.cli.sandbox.journal import entry

    if not entry.cli_recorded(name, params):
        return None
    target = params.get("name") if isinstance(params.get("name"), str) else None
    cwd = _cwd()

    def after() -> str | None:  # create and init register their instance while they run
        return entry.resolve_instance(target, None if name == "create" else cwd)

    before: str | None = None
    if name in HOME_WIDE or params.get("destroy_all") or params.get("pause_all"):
        after = _nothing
    elif name != "create":  # create's NAME is the new instance: only known once made
        before = entry.resolve_instance(target, cwd)
    action = entry.Action.begin(entry.user_actor(), name, entry.redact_argv(rest), before)
    return action, after


def _nothing() -> None:
    return None


def _parsed(ctx: click.Context, name: str, command: click.Command, rest: list[str]) -> Any:
    """The subcommand's parameters, parsed leniently (the real parse, with its usage errors,
    comes next): enough to tell `doctor --fix` from `doctor` and to read NAME."""
    try:
        return command.make_context(name, list(rest), parent=ctx, resilient_parsing=True).params
    except Exception:  # a bad command line is recorded from the real parse
        return {}


def _cwd() -> Path | None:
    try:
        return Path.cwd()
    except OSError:  # removed under us (destroy run from inside its instance)
        return None


def _finish(action: Action, after: Callable[[], str | None], error: BaseException | None) -> None:
    from ktrdr.cli.sandbox.journal.entry import Recorder

    recorder = Recorder(warn=info)
    try:
        result, code = _ending(error)
        instance = None if action.instance else after()
        record = action.record(result, code, instance=instance)
    except Exception as e:  # the journal never changes how a command ends
        recorder.warn(f"warning: this command is not recorded in the journal ({e})")
        return
    recorder.write(record)


def _ending(error: BaseException | None) -> tuple[str, int]:
    """(result, exit code) as the root group renders `error`: click's exceptions here, the
    core's (KtrdrError, Ctrl-C, SystemExit, a bug) in journal_entry.ending_of."""
    from ktrdr.cli.sandbox.journal.entry import ending_of, one_line_result

    if isinstance(error, click.exceptions.Exit):
        code = int(error.exit_code)
        return ("ok" if code == 0 else f"exit {code}"), code
    if isinstance(error, click.Abort):
        return "aborted", 1
    if isinstance(error, click.ClickException):
        return one_line_result(error.format_message()), int(error.exit_code)
    return ending_of(error)


def _since(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    from ktrdr.cli.sandbox.journal.log import parse_since

    if value is None:
        return None
    try:
        return parse_since(value, now=datetime.now(UTC))
    except ValueError as e:
        raise click.BadParameter(str(e), ctx, param) from e


@click.command("journal")
@click.argument("name", required=False)
@click.option(
    "--since",
    metavar="WHEN",
    callback=_since,
    help="Only records from then on: an age (30m, 2h, 3d, 1w) or an ISO date/time (UTC).",
)
@json_flag("Print the records as JSON.")
def journal_command(name: str | None, since: datetime | None, as_json: bool) -> None:
    """What changed what: every command or MCP call that changed something (read-only).

    NAME shows one instance's records, also after it was destroyed.
    """
    from ktrdr.cli.sandbox.journal.query import query, to_json

    reading = query(name, since=since)
    problem = reading.problem()
    if problem:
        info(f"warning: journal: {problem}")
    if as_json:
        print_json(to_json(reading))
        return
    if not reading.records:
        info(
            "no journal records"
            + (f" for {name}" if name else "")
            + (" in that time" if since else "")
        )
        return
    rows = [
        (
            r.when.strftime("%Y-%m-%d %H:%M:%SZ"),
            r.actor,
            r.instance or "-",
            " ".join([r.command, *_shown_args(r.args)]),
            "ok" if r.exit_code == 0 else f"exit {r.exit_code}: {r.result}",
        )
        for r in reading.records
    ]
    if print_table(["TIME", "ACTOR", "INSTANCE", "COMMAND", "RESULT"], rows, fit=True):
        info("note: long cells were cut to the width; `ktrdr sandbox journal --json` has them")


def _shown_args(args: list[str] | dict[str, Any]) -> list[str]:
    if isinstance(args, dict):
        return [f"{key}={value}" for key, value in args.items()]
    return list(args)
