"""Stack commands (up, down, logs): parse, call lifecycle, render."""

from __future__ import annotations

from pathlib import Path

import click

from ktrdr.cli.output import info, print_json
from ktrdr.cli.params import NAME
from ktrdr.cli.sandbox.commands.options import allow_rules, gate_timeout, json_flag
from ktrdr.errors import ExitCode, Interrupted

INTERRUPT_HINT = (
    "Interrupted: instance {id} may be partly started; run `ktrdr sandbox up` to finish "
    "starting it, `ktrdr sandbox down` to stop it, or `ktrdr sandbox destroy` to remove it"
)


@click.command()
@click.argument("name", required=False, type=NAME)
@gate_timeout(300, "the stack")
@click.option("--build", is_flag=True, help="Rebuild the app image before starting.")
@click.option("--no-gate", is_flag=True, help="Start the containers without running the gate.")
@json_flag("Print the gate report as JSON.")
@allow_rules("up")
def up(
    name: str | None,
    timeout: float,
    build: bool,
    no_gate: bool,
    as_json: bool,
    allow: tuple[str, ...],
) -> None:
    """Start the instance's stack and prove it works (the Startability Gate).

    Runs in an instance directory, or names one: `ktrdr sandbox up feat-a`. On a running
    instance it just re-runs the gate. Exit code 3 when the gate fails.
    """
    from ktrdr.cli.sandbox.commands.gate_render import GateRenderer, show_gate_result
    from ktrdr.cli.sandbox.instances.locate import locate
    from ktrdr.cli.sandbox.lifecycle import operations as lifecycle

    instance = locate(name, Path.cwd()).require_env()  # refused before "Starting"
    info(f"Starting instance: {instance.instance_id} (slot {instance.slot})")
    try:
        with GateRenderer() as renderer:
            result = lifecycle.up(
                instance,
                timeout=timeout,
                build=build,
                gate=not no_gate,
                notify=renderer.step,
                on_update=renderer.update,
                allow=frozenset(allow),
            )
    except KeyboardInterrupt:
        raise Interrupted(INTERRUPT_HINT.format(id=instance.instance_id)) from None
    show_gate_result(result, as_json=as_json)


@click.command()
@click.argument("name", required=False, type=NAME)
@json_flag("Print what was stopped as JSON.")
def down(name: str | None, as_json: bool) -> None:
    """Stop the instance's containers (volumes, so its data, are kept)."""
    from ktrdr.cli.sandbox.base.heartbeat import heartbeat
    from ktrdr.cli.sandbox.instances.locate import locate
    from ktrdr.cli.sandbox.lifecycle import operations as lifecycle

    instance = locate(name, Path.cwd())
    info(f"Stopping instance {instance.instance_id} (slot {instance.slot})…")
    with heartbeat(f"stopping {instance.instance_id}", info):
        stopped = lifecycle.down(instance, notify=info)
    info(f"Stopped instance {instance.instance_id} (volumes kept; `ktrdr sandbox up` restarts it)")
    if as_json:
        print_json(stopped.to_json())


@click.command()
@click.argument("service", required=False, type=NAME)
@click.option("-f", "--follow", is_flag=True, help="Keep streaming new lines.")
@click.option(
    "--tail",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Lines per service from the end of the logs.",
)
@click.option(
    "--instance", "name", type=NAME, metavar="NAME", help="Instance name (default: this directory)."
)
def logs(service: str | None, follow: bool, tail: int, name: str | None) -> None:
    """Show the logs of every service, or of SERVICE (e.g. backend, db, backtest-worker-1)."""
    from ktrdr.cli.sandbox.instances.locate import locate
    from ktrdr.cli.sandbox.lifecycle import operations as lifecycle

    instance = locate(name, Path.cwd(), name_hint="pass --instance NAME")
    try:
        code = lifecycle.logs(instance, service=service, follow=follow, tail=tail)
    except KeyboardInterrupt:  # the normal way to stop `--follow`: nothing to report
        raise Interrupted() from None
    # compose's own code: 0, or 130 when a Ctrl-C stopped it; anything else is a failure it
    # explained on the terminal it shares with us.
    if code not in (0, 130):
        raise SystemExit(ExitCode.FAILURE)
