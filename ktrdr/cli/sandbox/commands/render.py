"""How the instance commands (create, init, list, status, destroy, prune) print their results:
tables and fields to stdout, notes to stderr, or the `--json` of the core's result objects."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ktrdr.cli.output import info, print_fields, print_json, print_table

if TYPE_CHECKING:
    from ktrdr.cli.sandbox.home.registry import Entry
    from ktrdr.cli.sandbox.lifecycle.destroy import DestroyResult
    from ktrdr.cli.sandbox.lifecycle.prune import PrunedEntry
    from ktrdr.cli.sandbox.overview.listing import InstanceRow
    from ktrdr.cli.sandbox.overview.status import InstanceStatus
    from ktrdr.cli.sandbox.provision.create import CreateResult


def render_created(result: CreateResult, *, as_json: bool) -> None:
    from ktrdr.cli.sandbox.base.interrupts import deferred_interrupt

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
    import shlex

    where = "" if result.kind == "clone" else f"cd {shlex.quote(str(result.path))} && "
    info(f"next: {where}ktrdr sandbox up")


def render_list(rows: list[InstanceRow], *, as_json: bool) -> None:
    if as_json:
        print_json([row.to_json() for row in rows])
        return
    if not rows:
        info("no instances: create one with `ktrdr sandbox create NAME`")
        return
    print_table(
        ["INSTANCE", "ENGINE", "SLOT", "STATUS", "API PORT", "CREATED", "PATH"],
        [
            (
                r.entry.instance_id,
                r.engine,
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


def render_status(status: InstanceStatus, *, as_json: bool) -> None:
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
            *_engine_fields(data),
            ("Branch", status.branch or "-"),
            ("Containers", counts),
            *_live_fields(data),
            *((f"{key} URL", url) for key, url in data["urls"].items()),
            *((f"{key} port", port) for key, port in data["ports"].items() if "worker" not in key),
            ("worker ports", f"{data['ports']['worker_0']}-{data['ports']['worker_9']}"),
        ]
    )


def _engine_fields(data: dict[str, Any]) -> list[tuple[str, object]]:
    """A remote instance's engine and SSH forwards (nothing for the default engine)."""
    if data.get("engine", "local") == "local":
        return []
    fields: list[tuple[str, object]] = [("Engine", data["engine"])]
    for key in ("forwards", "watch"):
        if key in data:
            fields.append((key.capitalize(), data[key]))
    return fields


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
    start = data.get("background_start")
    if start:
        state = "running" if start["running"] else "ended"
        line = f": {start['last_line']}" if start.get("last_line") else ""
        fields.append(("Start", f"background, {state} (log {start['log']}){line}"))
    return fields


def _status_text(state: str, stale_reason: str | None, reasons: list[str]) -> str:
    """The verdict line: the state and why (the details below it say the same)."""
    why = [stale_reason] if stale_reason else reasons
    return state + (f" ({'; '.join(why)})" if why else "")


def what_goes(targets: list[Entry]) -> str:
    """Name the directories deleted (worktrees) and kept (clones): the destroy prompt is the
    last chance to notice a wrong path."""
    gone = [e.path for e in targets if e.kind == "worktree"]
    kept = [e.path for e in targets if e.kind != "worktree"]
    text = "Containers and volumes (databases) are deleted"
    if gone:
        text += f", and the worktree director{'ies' if len(gone) > 1 else 'y'} {', '.join(gone)}"
    if kept:
        text += f"; kept: {', '.join(kept)} (only its .env.sandbox is removed)"
    return text


def render_destroyed(results: list[DestroyResult], *, as_json: bool) -> None:
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


def render_pruned(pruned: list[PrunedEntry], *, dry_run: bool, as_json: bool) -> None:
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
