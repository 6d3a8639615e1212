"""Instance commands (create, init, list, status, destroy, prune): parse, call core, render."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ktrdr.cli.output import info, print_fields, print_json, print_table
from ktrdr.cli.sandbox.errors import SandboxError
from ktrdr.cli.sandbox.group import sandbox
from ktrdr.cli.sandbox.ports import FIRST_SANDBOX_SLOT, LAST_SLOT, MAIN_SLOT

if TYPE_CHECKING:
    from ktrdr.cli.sandbox.instances import CreateResult, DestroyResult
    from ktrdr.cli.sandbox.locate import Instance
    from ktrdr.cli.sandbox.registry import Entry

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
slot_option = click.option(
    "--slot",
    type=click.IntRange(MAIN_SLOT, LAST_SLOT),
    help="Take this slot instead of the lowest free one.",
)
# Slot 0 has the main dev environment's standard ports: only `init` in the main checkout.
create_slot_option = click.option(
    "--slot",
    type=click.IntRange(FIRST_SANDBOX_SLOT, LAST_SLOT),
    help="Take this sandbox slot (1-10) instead of the lowest free one.",
)


@sandbox.command("create")
@click.argument("name")
@create_slot_option
@click.option("--branch", help="Check out this existing branch instead of creating NAME.")
@click.option("--base", help="Start the new branch NAME from this ref (default HEAD).")
@json_option
def create_command(
    name: str, slot: int | None, branch: str | None, base: str | None, as_json: bool
) -> None:
    """Add a worktree ../<repo>--NAME on a new branch NAME with its own port slot."""
    from ktrdr.cli.sandbox.instances import create_instance

    result = create_instance(
        name=name,
        cwd=Path.cwd(),
        slot=slot,
        branch=branch,
        base=base,
        images=os.environ.get("KTRDR_IMAGES"),
    )
    _render_created(result, as_json=as_json)


@sandbox.command("init")
@slot_option
@json_option
def init_command(slot: int | None, as_json: bool) -> None:
    """Make this clone (or worktree) an instance. Slot 0 (main ports) only via --slot 0."""
    from ktrdr.cli.sandbox.instances import init_instance

    result = init_instance(cwd=Path.cwd(), slot=slot, images=os.environ.get("KTRDR_IMAGES"))
    _render_created(result, as_json=as_json)


def _render_created(result: CreateResult, *, as_json: bool) -> None:
    from ktrdr.cli.sandbox.interrupts import deferred_interrupt

    # The instance exists: a Ctrl-C now must not swallow the only report of it.
    with deferred_interrupt() as late:
        _print_created(result, as_json=as_json)
    if result.interrupted or late.interrupted:
        info(
            f"note: interrupted after instance {result.instance_id} was complete; it was kept "
            f"(`ktrdr sandbox destroy {result.instance_id}` removes it)"
        )


def _print_created(result: CreateResult, *, as_json: bool) -> None:
    for skipped in result.skipped:
        info(f"note: skipped slot {skipped.slot}: {skipped.reason}")
    for note in result.notes:
        info(f"note: {note}")
    if as_json:
        print_json(result.to_json())
        return
    urls = result.urls()
    print_fields(
        [
            ("Instance", result.instance_id),
            ("Location", result.path),
            ("Branch", result.branch),
            ("Slot", result.slot),
            ("API", urls["api"]),
            ("Grafana", urls["grafana"]),
            ("Jaeger", urls["jaeger"]),
        ]
    )
    where = "" if result.kind == "clone" else f"cd {_quote(result.path)} && "
    info(f"next: {where}ktrdr sandbox up")


def _quote(path: Path) -> str:
    import shlex

    return shlex.quote(str(path))


@sandbox.command("list")
@json_option
def list_command(as_json: bool) -> None:
    """Registered instances with slot, status, API port and path (read-only)."""
    from ktrdr.cli.sandbox.listing import list_instances_and_engine

    listing = list_instances_and_engine()
    rows = listing.rows
    if listing.engine_problem:
        info(f"note: STATUS unknown: {listing.engine_problem}")
    if as_json:
        print_json([row.to_json() for row in rows])
        return
    if not rows:
        info("no instances: create one with `ktrdr sandbox create NAME`")
        return
    print_table(
        ["INSTANCE", "SLOT", "STATUS", "API PORT", "CREATED", "PATH"],
        [
            (
                r.entry.instance_id,
                r.entry.slot,
                r.shown_status(),
                r.to_json()["api_port"],
                ago(r.entry.created_at),
                r.entry.path,
            )
            for r in rows
        ],
    )


def ago(iso: str, *, now: datetime | None = None) -> str:
    """'2h ago' style age of an ISO-8601 timestamp ('?' when unparsable)."""
    try:
        then = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return "?"
    seconds = max(0, int(((now or datetime.now(UTC)) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return "just now"


@sandbox.command("status")
@click.argument("name", required=False)
@json_option
def status_command(name: str | None, as_json: bool) -> None:
    """Slot, ports, URLs and container state of NAME or of the instance you are in."""
    from ktrdr.cli.sandbox.instances import instance_status

    status = instance_status(name, cwd=Path.cwd())
    data = status.to_json()
    if as_json:
        print_json(data)
        return
    containers = data["containers"]
    counts = (
        "unknown (Docker not reachable)"
        if containers["total"] is None
        else f"{containers['healthy']}/{containers['total']} healthy, "
        f"{containers['running']} running"
    )
    print_fields(
        [
            ("Instance", status.instance_id),
            ("Path", status.path),
            ("Status", _status_text(status.status, status.stale_reason, status.reasons)),
            ("Slot", status.slot),
            ("Branch", status.branch or "-"),
            ("Containers", counts),
            *_live_fields(data),
            *((f"{key} URL", url) for key, url in data["urls"].items()),
            *((f"{key} port", port) for key, port in data["ports"].items() if "worker" not in key),
            ("worker ports", f"{data['ports']['worker_0']}-{data['ports']['worker_9']}"),
        ]
    )


@sandbox.command("destroy")
@click.argument("name", required=False)
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
    from ktrdr.cli.sandbox import registry
    from ktrdr.cli.sandbox.heartbeat import heartbeat
    from ktrdr.cli.sandbox.instances import DestroyInterrupted, destroy_many
    from ktrdr.cli.sandbox.locate import from_entry, locate

    if destroy_all and name:
        raise click.UsageError("pass NAME or --all, not both")
    if destroy_all:
        targets = [from_entry(entry) for entry in registry.load().values()]
    else:
        found = locate(name, Path.cwd(), name_hint="pass NAME, or see `ktrdr sandbox list`")
        found.require_entry()
        targets = [found]
    if not targets:
        info("no instances to destroy")
        return
    _confirm([t.require_entry() for t in targets], yes=yes)

    def starting(entry: Instance) -> None:
        # Stopping a running stack takes seconds: say what is happening (stderr), once
        # nothing can refuse any more.
        info(f"{entry.instance_id}: removing containers, volumes and files…")

    try:
        with heartbeat("destroying " + ", ".join(e.instance_id for e in targets), info):
            batch = destroy_many(
                targets, force=force, keep_going=destroy_all, on_start=starting, on_wait=info
            )
    except DestroyInterrupted as e:
        info(f"\n{e.message()}")
        raise SystemExit(130) from None
    _render_destroyed(batch.results, as_json=as_json)
    failure = batch.failure()
    if failure is not None:
        raise failure


def _confirm(targets: list[Entry], *, yes: bool) -> None:
    if yes:
        return
    listed = ", ".join(f"{e.instance_id} ({e.path})" for e in targets)
    if not sys.stdin.isatty():
        raise SandboxError(
            f"refusing to destroy {listed} without confirmation: stdin is not a terminal; "
            "pass --yes"
        )
    click.confirm(f"Destroy {listed}? {_what_goes(targets)}", abort=True, err=True)


def _what_goes(targets: list[Entry]) -> str:
    """Name the directories deleted (worktrees) and kept (clones): the prompt is the last
    chance to notice a wrong path."""
    gone = [e.path for e in targets if e.kind == "worktree"]
    kept = [e.path for e in targets if e.kind != "worktree"]
    text = "Containers and volumes (databases) are deleted"
    if gone:
        text += f", and the worktree director{'ies' if len(gone) > 1 else 'y'} {', '.join(gone)}"
    if kept:
        text += f"; kept: {', '.join(kept)} (only its .env.sandbox is removed)"
    return text


def _render_destroyed(results: list[DestroyResult], *, as_json: bool) -> None:
    if as_json:
        print_json([r.to_json() for r in results])
        return
    for r in results:
        done = "destroyed" if r.slot_released else "partly destroyed (slot still claimed)"
        info(f"{r.instance_id}: {done}")
        for note in r.notes:
            info(f"  {note}")
        if r.worktree_removed:
            info(f"  worktree {r.path} removed")
        if r.branch_kept:
            info(f"  branch {r.branch_kept} kept (delete it with `git branch -D {r.branch_kept}`)")
        if r.slot_released:
            info(f"  slot {r.slot} is free")


@sandbox.command("prune")
@click.option("--dry-run", is_flag=True, help="Only show what would be removed.")
@json_option
def prune_command(dry_run: bool, as_json: bool) -> None:
    """Remove stale entries (path or .env.sandbox gone, unfinished creates) and their leftovers."""
    from ktrdr.cli.sandbox.instances import prune

    pruned = prune(dry_run=dry_run)
    if as_json:
        print_json([p.to_json() for p in pruned])
        return
    if not pruned:
        info("nothing to prune")
        return
    verb = "would remove" if dry_run else "removed"
    print_table(
        ["INSTANCE", "SLOT", "REASON", "RESULT"],
        [
            (
                p.entry.instance_id,
                p.entry.slot,
                p.reason,
                verb if dry_run or p.removed else f"kept: {p.note}",
            )
            for p in pruned
        ],
    )
    for p in pruned:
        if p.kept:
            info(f"note: {p.entry.instance_id}: {p.kept}")


def _live_fields(data: dict[str, Any]) -> list[tuple[str, object]]:
    """API, workers (observed just now by health.observe, when the stack runs) and the last
    gate."""
    fields: list[tuple[str, object]] = []
    if data.get("api_responding") is not None:
        api = "responding" if data["api_responding"] else "not responding"
        wrong = [r for r in data.get("reasons", []) if r.startswith("API: ")]
        if data["api_responding"] and wrong:
            api = "responding, but " + wrong[0].removeprefix("API: ")
        workers = data.get("workers_registered")
        silent = data.get("workers_not_answering") or []
        text = (
            "-"
            if workers is None
            else ", ".join(f"{n} {t}" for t, n in sorted(workers.items())) or "none"
        )
        if silent:
            text += f" ({', '.join(silent)} not answering)"
        fields += [("API", api), ("Workers", text)]
    if "last_gate" in data:
        gate = data.get("last_gate")
        gate_text = "never run"
        if gate:
            gate_text = f"{str(gate.get('result')).upper()} at {gate.get('finished_at')}"
            gate_text += f" ({gate['failure']})" if gate.get("failure") else ""
        fields.append(("Last gate", gate_text))
    return fields


def _status_text(state: str, stale_reason: str | None, reasons: list[str]) -> str:
    """The verdict line: the state and why (the details below it say the same)."""
    why = [stale_reason] if stale_reason else reasons
    return state + (f" ({'; '.join(why)})" if why else "")
