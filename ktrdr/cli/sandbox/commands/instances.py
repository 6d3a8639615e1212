"""Instance commands (create, init, list, status, destroy, prune): parse, call core, render."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ktrdr.cli import settings
from ktrdr.cli.output import info
from ktrdr.cli.params import NAME, NEW_NAME
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.commands.options import json_flag, name_or_all
from ktrdr.cli.sandbox.commands.render import (
    render_created,
    render_destroyed,
    render_list,
    render_pruned,
    render_status,
    what_goes,
)
from ktrdr.cli.sandbox.slots.ports import FIRST_SANDBOX_SLOT, LAST_SLOT, MAIN_SLOT

if TYPE_CHECKING:
    from ktrdr.cli.sandbox.home.registry import Entry
    from ktrdr.cli.sandbox.instances.locate import Instance

json_option = json_flag()
slot_option = click.option(
    "--slot",
    type=click.IntRange(MAIN_SLOT, LAST_SLOT),
    help="Take this slot instead of the lowest free one.",
)
# Slot 0 has the main dev environment's standard ports: only `init` in the main checkout.
create_slot_option = click.option(
    "--slot",
    type=click.IntRange(FIRST_SANDBOX_SLOT, LAST_SLOT),
    help=f"Take this sandbox slot ({FIRST_SANDBOX_SLOT}-{LAST_SLOT}) instead of the lowest "
    "free one of KTRDR_SLOTS.",
)

context_option = click.option(
    "--context",
    metavar="CTX",
    help="Run the stack on the engine of this Docker context: a name from `docker context ls` "
    "(e.g. made by `docker context create CTX --docker host=ssh://USER@HOST`). Default: the "
    "docker CLI's default engine.",
)


@click.command("create")
@click.argument("name", type=NEW_NAME)
@create_slot_option
@click.option(
    "--branch", type=NAME, help="Check out this existing branch instead of creating NAME."
)
@click.option("--base", type=NAME, help="Start the new branch NAME from this ref (default HEAD).")
@context_option
@json_option
def create_command(
    name: str,
    slot: int | None,
    branch: str | None,
    base: str | None,
    context: str | None,
    as_json: bool,
) -> None:
    """Add a worktree ../<repo>--NAME on a new branch NAME with its own port slot."""
    from ktrdr.cli.sandbox.provision.create import create_instance

    result = create_instance(
        name=name,
        cwd=Path.cwd(),
        slot=slot,
        branch=branch,
        base=base,
        images=settings.get("KTRDR_IMAGES") or None,
        context=context,
    )
    render_created(result, as_json=as_json)


@click.command("init")
@slot_option
@context_option
@json_option
def init_command(slot: int | None, context: str | None, as_json: bool) -> None:
    """Make this clone (or worktree) an instance. Slot 0 (main ports) only via --slot 0."""
    from ktrdr.cli.sandbox.provision.init_checkout import init_instance

    result = init_instance(
        cwd=Path.cwd(),
        slot=slot,
        images=settings.get("KTRDR_IMAGES") or None,
        context=context,
    )
    render_created(result, as_json=as_json)


@click.command("list")
@json_option
def list_command(as_json: bool) -> None:
    """Registered instances with slot, status, API port and path (read-only)."""
    from ktrdr.cli.sandbox.overview.listing import list_instances_and_engine

    listing = list_instances_and_engine()
    if listing.engine_problem:
        info(f"note: STATUS unknown: {listing.engine_problem}")
    render_list(listing.rows, as_json=as_json)


@click.command("status")
@click.argument("name", required=False, type=NAME)
@json_option
def status_command(name: str | None, as_json: bool) -> None:
    """Slot, ports, URLs and container state of NAME or of the instance you are in."""
    from ktrdr.cli.sandbox.overview.status import instance_status

    render_status(instance_status(name, cwd=Path.cwd()), as_json=as_json)


@click.command("destroy")
@click.argument("name", required=False, type=NAME)
@click.option("--all", "destroy_all", is_flag=True, help="Destroy every registered instance.")
@click.option("--force", is_flag=True, help="Discard uncommitted/untracked worktree changes.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
def destroy_command(
    name: str | None, destroy_all: bool, force: bool, yes: bool, as_json: bool
) -> None:
    """Remove containers and volumes, the worktree (branch kept), then the registry entry.

    For an `init`ed clone only its .env.sandbox and the entry are removed.
    """
    from ktrdr.cli.sandbox.base.heartbeat import heartbeat
    from ktrdr.cli.sandbox.lifecycle.destroy import destroy_many

    targets = _destroy_targets(name, destroy_all=destroy_all)
    if not targets:
        info("no instances to destroy")
        return
    _confirm([t.require_entry() for t in targets], yes=yes)

    def starting(entry: Instance) -> None:
        # Stopping a running stack takes seconds: say what is happening (stderr), once
        # nothing can refuse any more.
        info(f"{entry.instance_id}: removing containers, volumes and files…")

    # A Ctrl-C midway is a DestroyInterrupted: the root group prints how to finish it.
    with heartbeat("destroying " + ", ".join(e.instance_id for e in targets), info):
        batch = destroy_many(
            targets, force=force, keep_going=destroy_all, on_start=starting, on_wait=info
        )
    render_destroyed(batch.results, as_json=as_json)
    failure = batch.failure()
    if failure is not None:
        raise failure


def _destroy_targets(name: str | None, *, destroy_all: bool) -> list[Instance]:
    from ktrdr.cli.sandbox.home import registry
    from ktrdr.cli.sandbox.instances.locate import from_entry, locate

    name_or_all(name, every=destroy_all)
    if destroy_all:
        return [from_entry(entry) for entry in registry.load().values()]
    # An edited env file must not stop its removal: destroy acts on the home's record only.
    found = locate(
        name, Path.cwd(), name_hint="pass NAME, or see `ktrdr sandbox list`", check_view=False
    )
    return [found]


def _confirm(targets: list[Entry], *, yes: bool) -> None:
    if yes:
        return
    listed = ", ".join(f"{e.instance_id} ({e.path})" for e in targets)
    if not sys.stdin.isatty():
        raise SandboxError(
            f"refusing to destroy {listed} without confirmation: stdin is not a terminal; "
            "pass --yes"
        )
    click.confirm(f"Destroy {listed}? {what_goes(targets)}", abort=True, err=True)


@click.command("prune")
@click.option("--dry-run", is_flag=True, help="Only show what would be removed.")
@json_option
def prune_command(dry_run: bool, as_json: bool) -> None:
    """Remove stale entries (path or .env.sandbox gone, unfinished creates) and their leftovers."""
    from ktrdr.cli.sandbox.lifecycle.prune import prune

    render_pruned(prune(dry_run=dry_run), dry_run=dry_run, as_json=as_json)
