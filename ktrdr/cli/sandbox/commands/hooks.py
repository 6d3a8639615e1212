"""`ktrdr sandbox hook …`, what agent tools run (Claude Code's worktree hooks; setup and
teardown scripts), and `ktrdr sandbox hooks install|uninstall`, which writes the hook entries
into Claude Code's settings: parse, call agent_tools, render.

The hooks speak the tool's protocol: `worktree-create` prints only the worktree's path on
stdout, everything else goes to stderr. Each run that changes something leaves one journal
record (actor `hook:<tool> (user:<login>)`): these commands sit in groups below `sandbox`, whose
own recording knows commands by their first word only.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ktrdr.cli import settings
from ktrdr.cli.output import info, print_fields, print_json
from ktrdr.cli.sandbox.commands.options import json_flag

if TYPE_CHECKING:
    from ktrdr.cli.sandbox.agent_tools.worktree_hook import Prepared, Removed

START_MODES = ("background", "on-demand")
start_option = click.option(
    "--start",
    "start_mode",
    type=click.Choice(START_MODES),
    default=None,
    help="Start the stack now in the background, or leave it to the agent's first `up` "
    "(default: $KTRDR_HOOK_START, else background).",
)
# Hidden: tests shorten it; the tool writes its payload at once.
stdin_wait_option = click.option("--stdin-wait", type=float, default=10.0, hidden=True)
force_option = click.option(
    "--force", is_flag=True, help="Discard uncommitted or untracked work in the worktree."
)


@dataclass
class _Pending:
    """What the journal record of a hook run will say (filled in as the run learns it)."""

    args: dict[str, Any] = field(default_factory=dict)
    instance: str | None = None


@contextmanager
def _journaled(command: str, tool: str) -> Iterator[_Pending]:
    from ktrdr.cli.sandbox.journal import entry

    action = entry.Action.begin(f"hook:{tool} ({entry.user_actor()})", command, {}, None)
    pending = _Pending()
    error: BaseException | None = None
    try:
        yield pending
    except BaseException as e:
        error = e
        raise
    finally:
        try:
            result, code = entry.ending_of(error)
            shown = dataclasses.replace(action, args=entry.redact_arguments(pending.args))
            record = shown.record(result, code, instance=pending.instance)
        except Exception as e:  # the journal never changes how a command ends
            info(f"warning: this command is not recorded in the journal ({e})")
        else:
            entry.Recorder(warn=info).write(record)


def _start_mode(flag: str | None) -> str:
    value = flag or settings.get("KTRDR_HOOK_START") or START_MODES[0]
    if value not in START_MODES:
        raise click.UsageError(f"KTRDR_HOOK_START={value!r}: use one of {', '.join(START_MODES)}")
    return value


def _images() -> str | None:
    return settings.get("KTRDR_IMAGES") or None


@click.group("hook")
def hook_group() -> None:
    """What agent tools run: Claude Code's worktree hooks, setup and teardown scripts.

    Install the Claude Code hooks with `ktrdr sandbox hooks install claude-code`.
    """


@hook_group.group("claude-code")
def claude_code_group() -> None:
    """Claude Code's WorktreeCreate / WorktreeRemove hooks (JSON payload on stdin)."""


@claude_code_group.command("worktree-create")
@start_option
@stdin_wait_option
def worktree_create_command(start_mode: str | None, stdin_wait: float) -> None:
    """Make the worktree and its instance; print only the worktree's path."""
    from ktrdr.cli.sandbox.agent_tools import payload, worktree_hook

    mode = _start_mode(start_mode)
    with _journaled("hook claude-code worktree-create", "claude-code") as journal:
        stdin = sys.stdin.buffer
        request = payload.create_request(payload.read_payload(stdin, wait=stdin_wait))
        journal.args = request.to_json()
        fallbacks = [Path(p) for p in (settings.get("CLAUDE_PROJECT_DIR"), ".") if p]
        prepared = worktree_hook.create_worktree(
            request, fallbacks=[p.absolute() for p in fallbacks], images=_images(), start_mode=mode
        )
        journal.instance = prepared.instance_id
    _report_prepared(prepared)
    click.echo(str(prepared.path))


@claude_code_group.command("worktree-remove")
@force_option
@stdin_wait_option
def worktree_remove_command(force: bool, stdin_wait: float) -> None:
    """Destroy the instance at the payload's worktree_path and free its slot."""
    from ktrdr.cli.sandbox.agent_tools import payload, worktree_hook

    with _journaled("hook claude-code worktree-remove", "claude-code") as journal:
        stdin = sys.stdin.buffer
        request = payload.remove_request(payload.read_payload(stdin, wait=stdin_wait))
        journal.args = {**request.to_json(), "force": force}
        owner = worktree_hook.entry_at(request.path)
        journal.instance = owner.instance_id if owner else None
        removed = worktree_hook.remove_worktree(request.path, force=force, on_wait=info)
    _report_removed(removed)


@hook_group.command("setup")
@start_option
@json_flag("Print the instance as JSON.")
def setup_command(start_mode: str | None, as_json: bool) -> None:
    """Make this checkout an instance and start it (a tool's worktree setup script).

    Run again, it changes nothing and prints the same.
    """
    from ktrdr.cli.sandbox.agent_tools.scripts import setup_here

    mode = _start_mode(start_mode)
    with _journaled("hook setup", "script") as journal:
        done = setup_here(Path.cwd(), images=_images(), start_mode=mode)
        journal.instance = done.prepared.instance_id
    prepared = done.prepared
    info("set up: a new instance" if done.created else "already set up: nothing changed")
    for note in prepared.notes:
        info(f"note: {note}")
    if as_json:
        print_json(prepared.to_json())
        return
    print_fields(_prepared_fields(prepared))


@hook_group.command("teardown")
@force_option
@json_flag("Print what was removed as JSON.")
def teardown_command(force: bool, as_json: bool) -> None:
    """Destroy the instance this checkout is (a tool's cleanup or archive script)."""
    from ktrdr.cli.sandbox.agent_tools.scripts import teardown_here

    with _journaled("hook teardown", "script") as journal:
        journal.args = {"force": force}
        removed = teardown_here(Path.cwd(), force=force, on_wait=info)
        journal.instance = removed.instance_id
    if as_json:
        _report_notes(removed)
        print_json(removed.to_json())
        return
    _report_removed(removed)


def _prepared_fields(prepared: Prepared) -> list[tuple[str, object]]:
    start, pinned = prepared.start, prepared.pin
    started = "-" if start is None else start.mode + (f" (log: {start.log})" if start.log else "")
    return [
        ("Instance", prepared.instance_id),
        ("Location", prepared.path),
        ("Slot", prepared.slot),
        ("API", prepared.api_url),
        ("MCP config", pinned.path if pinned and pinned.action != "refused" else "-"),
        ("Start", started),
    ]


def _report_prepared(prepared: Prepared) -> None:
    """The hook's progress lines (stderr: stdout carries only the path)."""
    if prepared.instance_id is not None:
        verb = "reused" if prepared.reused else "created"
        info(f"ktrdr: {verb} instance {prepared.instance_id} (slot {prepared.slot})")
    if prepared.pin is not None and prepared.pin.action != "refused":
        info(f"ktrdr: MCP server {prepared.pin.server} in {prepared.pin.path}")
    start = prepared.start
    if start is not None and start.log is not None:
        info(f"ktrdr: stack starting in the background (log: {start.log}); `status` shows it")
    elif start is not None:
        info("ktrdr: stack not started: the agent's `sandbox_up` (or `ktrdr sandbox up`) starts it")
    for note in prepared.notes:
        info(f"note: {note}")


def _report_notes(removed: Removed) -> None:
    for note in removed.notes:
        info(f"note: {note}")


def _report_removed(removed: Removed) -> None:
    _report_notes(removed)
    if removed.instance_id is not None:
        freed = "slot released" if removed.slot_released else "slot still claimed"
        info(f"ktrdr: destroyed instance {removed.instance_id} ({freed})")
    elif removed.worktree_removed:
        info(f"ktrdr: removed worktree {removed.path}")


@click.group("hooks")
def hooks_group() -> None:
    """Write (or take out) the hook entries in an agent tool's settings file."""


def _scope_options(command: Any) -> Any:
    for flag, help_text in reversed(
        (
            ("project", "This checkout's .claude/settings.json (default)."),
            ("local", "This checkout's .claude/settings.local.json (yours, not committed)."),
            ("user", "~/.claude/settings.json: every repository you open ($CLAUDE_CONFIG_DIR)."),
        )
    ):
        if flag == "project":  # the default: `default=True` selects this flag's value
            option = click.option(
                f"--{flag}", "scope", flag_value=flag, default=True, help=help_text
            )
        else:
            option = click.option(f"--{flag}", "scope", flag_value=flag, help=help_text)
        command = option(command)
    return command


dry_run_option = click.option("--dry-run", is_flag=True, help="Only show the change (a diff).")
tool_argument = click.argument("tool", type=click.Choice(["claude-code"]))


@hooks_group.command("install")
@tool_argument
@_scope_options
@dry_run_option
@json_flag("Print the path, whether it changed and the diff as JSON.")
def install_command(tool: str, scope: str, dry_run: bool, as_json: bool) -> None:
    """Merge the WorktreeCreate / WorktreeRemove hooks into Claude Code's settings."""
    _edit_settings("install", tool, scope, dry_run=dry_run, as_json=as_json)


@hooks_group.command("uninstall")
@tool_argument
@_scope_options
@dry_run_option
@json_flag("Print the path, whether it changed and the diff as JSON.")
def uninstall_command(tool: str, scope: str, dry_run: bool, as_json: bool) -> None:
    """Take ktrdr's hook entries (only those) out of Claude Code's settings."""
    _edit_settings("uninstall", tool, scope, dry_run=dry_run, as_json=as_json)


def _edit_settings(verb: str, tool: str, scope: str, *, dry_run: bool, as_json: bool) -> None:
    from ktrdr.cli.sandbox.agent_tools import settings_file

    path = settings_file.settings_path(scope, cwd=Path.cwd())
    plan = settings_file.plan_install if verb == "install" else settings_file.plan_uninstall
    change = plan(path)
    if not dry_run and change.changed:
        with _journaled(f"hooks {verb} {tool}", tool) as journal:
            journal.args = {"scope": scope, "path": str(path)}
            settings_file.apply(change)
    if as_json:
        print_json(
            {
                "path": str(path),
                "changed": change.changed,
                "dry_run": dry_run,
                "diff": change.diff(),
            }
        )
        return
    if dry_run and change.changed:
        click.echo(change.diff(), nl=False)
    if not change.changed:
        why = "already installed" if verb == "install" else "no hooks of ktrdr in it"
        info(f"nothing to change in {path}: {why}")
    elif dry_run:
        info(f"dry run: {path} would change as shown; nothing was written")
    else:
        done = "installed the hooks in" if verb == "install" else "took the hooks out of"
        info(f"{done} {path}")
