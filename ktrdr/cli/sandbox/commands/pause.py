"""pause / resume: keep an instance ready at almost no cost while it is not used."""

from __future__ import annotations

from pathlib import Path

import click

from ktrdr.cli.output import info, print_json
from ktrdr.cli.params import NAME
from ktrdr.cli.sandbox.commands.options import allow_rules, gate_timeout, json_flag, name_or_all


@click.command()
@click.argument("name", required=False, type=NAME)
@click.option("--all", "pause_all", is_flag=True, help="Pause every running instance of this home.")
@json_flag("Print what was paused as JSON.")
def pause(name: str | None, pause_all: bool, as_json: bool) -> None:
    """Freeze the instance's containers: no CPU, memory and state kept, ports stay its own.

    `ktrdr sandbox resume` (or `up`) thaws it and re-runs the Startability Gate.
    """
    from ktrdr.cli.sandbox.instances.locate import from_entry, locate
    from ktrdr.cli.sandbox.lifecycle import operations as lifecycle
    from ktrdr.cli.sandbox.overview.listing import running_entries

    name_or_all(name, every=pause_all)
    if pause_all:
        targets = [from_entry(entry) for entry in running_entries()]
    else:
        targets = [locate(name, Path.cwd())]
    results = []
    for instance in targets:
        paused = lifecycle.pause(instance, notify=info)
        results.append(paused.to_json())
        if paused.frozen:
            info(
                f"Paused {instance.instance_id}: {len(paused.frozen)} containers frozen "
                "(`ktrdr sandbox resume` thaws them)"
            )
        else:
            info(f"{instance.instance_id} was already paused")
    if pause_all and not targets:
        info("No running instance to pause")
    if as_json:
        print_json(results if pause_all else results[0])


@click.command()
@click.argument("name", required=False, type=NAME)
@gate_timeout(120, "the thawed stack")
@json_flag("Print the gate report as JSON.")
@allow_rules("resume")
def resume(name: str | None, timeout: float, as_json: bool, allow: tuple[str, ...]) -> None:
    """Thaw a paused instance and re-run the Startability Gate (exit code 3 when it fails)."""
    from ktrdr.cli.sandbox.commands.gate_render import GateRenderer, show_gate_result
    from ktrdr.cli.sandbox.instances.locate import locate
    from ktrdr.cli.sandbox.lifecycle import operations as lifecycle

    instance = locate(name, Path.cwd()).require_env()  # refused before "Starting"
    info(f"Resuming instance: {instance.instance_id} (slot {instance.slot})")
    with GateRenderer() as renderer:
        result = lifecycle.resume(
            instance,
            timeout=timeout,
            notify=renderer.step,
            on_update=renderer.update,
            allow=frozenset(allow),
        )
    show_gate_result(result, as_json=as_json)
