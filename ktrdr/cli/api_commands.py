"""`ktrdr health`, `ktrdr workers …`, `ktrdr operations …`: thin commands over the v1 API."""

from __future__ import annotations

from typing import Any

import click

from ktrdr.cli.api_client import ApiClient
from ktrdr.cli.output import info, print_fields, print_json, print_table
from ktrdr.cli.params import NAME
from ktrdr.cli.state import CliState, pass_state
from ktrdr.errors import ExitCode

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _client(state: CliState) -> ApiClient:
    return ApiClient(state.target().url)


@click.command()
@json_option
@pass_state
def health(state: CliState, as_json: bool) -> None:
    """Check the API: status, version, database and which instance answered."""
    body = _client(state).health()
    if as_json:
        print_json(body)
    else:
        print_fields(
            [
                ("API", state.target().url),
                ("Status", body.get("status")),
                ("Version", body.get("version")),
                ("Database", body.get("database")),
                ("Instance", body.get("instance_id") or "-"),
            ]
        )
    if body.get("status") != "ok":
        raise SystemExit(ExitCode.FAILURE)


@click.group()
def workers() -> None:
    """Workers registered with the backend."""


@workers.command("list")
@json_option
@pass_state
def workers_list(state: CliState, as_json: bool) -> None:
    """List registered workers."""
    rows = _client(state).workers()
    if as_json:
        print_json(rows)
        return
    print_table(
        ["WORKER", "TYPE", "STATUS", "ENDPOINT", "LAST HEARTBEAT"],
        [
            [
                w.get("worker_id"),
                w.get("worker_type"),
                w.get("status"),
                w.get("endpoint"),
                w.get("last_heartbeat"),
            ]
            for w in rows
        ],
    )


@click.group()
def operations() -> None:
    """Operations (backtests, training runs) dispatched to workers."""


@operations.command("list")
@click.option("--status", help="Only operations in this status.")
@json_option
@pass_state
def operations_list(state: CliState, status: str | None, as_json: bool) -> None:
    """List operations, newest first."""
    rows = _client(state).operations(status=status)
    if as_json:
        print_json(rows)
        return
    print_table(
        ["OPERATION", "TYPE", "STATUS", "WORKER", "CREATED"],
        [
            [
                op.get("operation_id"),
                op.get("operation_type"),
                op.get("status"),
                op.get("worker_id") or "-",
                op.get("created_at"),
            ]
            for op in rows
        ],
    )


@operations.command("show")
@click.argument("operation_id", type=NAME)
@json_option
@pass_state
def operations_show(state: CliState, operation_id: str, as_json: bool) -> None:
    """Show one operation with its parameters and result."""
    operation = _client(state).operation(operation_id)
    _render_operation(operation, as_json=as_json)


@operations.command("start")
@click.argument("operation_type", type=click.Choice(["backtest", "training"]))
@click.option("--symbol", required=True, help="Symbol whose OHLCV data to use, e.g. AAPL.")
@click.option("--timeframe", default="1d", show_default=True)
@click.option("--strategy", default=None, help="Strategy config name from the shared data.")
@click.option("--wait", is_flag=True, help="Wait until the operation completes or fails.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait with --wait.")
@json_option
@pass_state
def operations_start(
    state: CliState,
    operation_type: str,
    symbol: str,
    timeframe: str,
    strategy: str | None,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Submit a backtest or training operation."""
    from ktrdr.cli import operations as core

    waited: list[bool] = []

    def waiting(operation: dict[str, Any]) -> None:
        if not waited:  # once, not on every poll
            waited.append(True)
            info(f"Waiting for operation {operation.get('operation_id')} …")

    operation = core.start_operation(
        _client(state),
        operation_type,
        symbol=symbol,
        timeframe=timeframe,
        strategy=strategy,
        wait=wait,
        timeout=timeout,
        on_wait=waiting,
    )
    _render_operation(operation, as_json=as_json)
    failed = core.failure(operation)
    if failed is not None:
        raise failed


def _render_operation(operation: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print_json(operation)
        return
    print_fields(
        [
            ("Operation", operation.get("operation_id")),
            ("Type", operation.get("operation_type")),
            ("Status", operation.get("status")),
            ("Worker", operation.get("worker_id") or "-"),
            ("Created", operation.get("created_at")),
            ("Params", operation.get("params")),
            ("Result", _summarize(operation.get("result"))),
            # Only when there is one: scripts grep for a line starting with "Error:".
            *([("Error", operation["error"])] if operation.get("error") else []),
        ]
    )


def _summarize(result: object) -> object:
    """Scalars as `key=value`; lists by their length (the full result is in --json)."""
    if not isinstance(result, dict):
        return result if result is not None else "-"
    return ", ".join(
        f"{key}={len(value)} items" if isinstance(value, list) else f"{key}={value}"
        for key, value in result.items()
        if not isinstance(value, dict)
    )
