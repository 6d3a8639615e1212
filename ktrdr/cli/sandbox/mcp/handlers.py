"""The handlers of the MCP tools: each calls the core function its CLI command calls and
returns that command's `--json` data as an Outcome."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ktrdr.cli import operations, settings
from ktrdr.cli.api_client import ApiClient
from ktrdr.cli.sandbox.e2e.evidence import collect_evidence
from ktrdr.cli.sandbox.e2e.run import run_e2e
from ktrdr.cli.sandbox.home import registry
from ktrdr.cli.sandbox.instances.locate import Instance, from_entry
from ktrdr.cli.sandbox.lifecycle import operations as lifecycle
from ktrdr.cli.sandbox.lifecycle.destroy import destroy_many
from ktrdr.cli.sandbox.mcp.scope import Scope
from ktrdr.cli.sandbox.mcp.spec import Outcome, Progress
from ktrdr.cli.sandbox.overview.listing import list_instances
from ktrdr.cli.sandbox.overview.status import instance_status
from ktrdr.cli.sandbox.provision.create import create_instance
from ktrdr.cli.target import url_for_port
from ktrdr.errors import ExitCode, KtrdrError

if TYPE_CHECKING:
    from ktrdr.cli.sandbox.gate.checks import CheckResult


def on_list(scope: Scope, args: dict[str, Any], progress: Progress) -> Outcome:

    rows = [row.to_json() for row in list_instances()]
    if scope.pinned:
        rows = [row for row in rows if row.get("instance_id") == scope.pinned_id]
    return Outcome({"instances": rows})


def on_status(scope: Scope, args: dict[str, Any], progress: Progress) -> Outcome:

    instance = scope.target(args.get("instance"))
    return Outcome(instance_status(instance.instance_id, cwd=instance.root).to_json())


def on_create(scope: Scope, args: dict[str, Any], progress: Progress) -> Outcome:

    result = create_instance(
        name=args["name"],
        cwd=scope.cwd,
        slot=args.get("slot"),
        branch=args.get("branch"),
        base=args.get("base"),
        images=settings.get("KTRDR_IMAGES") or None,
    )
    return Outcome(result.to_json())


def _gate_progress(progress: Progress) -> Callable[[list[CheckResult]], None]:
    """One progress notification per gate check, as it completes."""
    reported: set[str] = set()

    def checks_done(checks: list[CheckResult]) -> None:
        for check in checks:
            if check.status != "pending" and check.key not in reported:
                reported.add(check.key)
                mark = "✓" if check.status == "passed" else "✗"
                took = f" ({check.duration_s:.1f}s)" if check.duration_s is not None else ""
                progress(f"{mark} {check.title}: {check.detail}{took}")

    return checks_done


def on_up(scope: Scope, args: dict[str, Any], progress: Progress) -> Outcome:

    instance = scope.target(args.get("instance"))
    progress(f"Starting instance: {instance.instance_id} (slot {instance.slot})")
    result = lifecycle.up(
        instance,
        timeout=args["timeout"],
        build=args["build"],
        gate=args["gate"],
        notify=progress,
        on_update=_gate_progress(progress),
    )
    return Outcome(result.to_json(), result.failure())


def on_pause(scope: Scope, args: dict[str, Any], progress: Progress) -> Outcome:

    instance = scope.target(args.get("instance"))
    return Outcome(lifecycle.pause(instance, notify=progress).to_json())


def on_resume(scope: Scope, args: dict[str, Any], progress: Progress) -> Outcome:

    instance = scope.target(args.get("instance"))
    result = lifecycle.resume(
        instance, timeout=args["timeout"], notify=progress, on_update=_gate_progress(progress)
    )
    return Outcome(result.to_json(), result.failure())


def on_down(scope: Scope, args: dict[str, Any], progress: Progress) -> Outcome:

    instance = scope.target(args.get("instance"))
    return Outcome(lifecycle.down(instance, notify=progress).to_json())


def on_destroy(scope: Scope, args: dict[str, Any], progress: Progress) -> Outcome:

    everything = bool(args.get("all"))
    if everything and args.get("instance"):
        raise KtrdrError("pass instance or all, not both", exit_code=ExitCode.USAGE)
    if everything:
        targets = [from_entry(entry) for entry in registry.load().values()]
    else:
        instance = scope.target(args.get("instance"))
        instance.require_entry()
        targets = [instance]

    def starting(instance: Instance) -> None:
        progress(f"{instance.instance_id}: removing containers, volumes and files…")

    batch = destroy_many(
        targets, force=args["force"], keep_going=everything, on_start=starting, on_wait=progress
    )
    return Outcome({"destroyed": batch.to_json()}, batch.failure())


def on_logs(scope: Scope, args: dict[str, Any], progress: Progress) -> Outcome:

    instance = scope.target(args.get("instance"))
    return Outcome(
        lifecycle.log_text(instance, service=args.get("service"), tail=args["tail"]).to_json()
    )


def on_test_e2e(scope: Scope, args: dict[str, Any], progress: Progress) -> Outcome:

    instance = scope.target(args.get("instance"))
    result = run_e2e(start=instance.root, pytest_args=args["pytest_args"], on_line=progress)
    data: dict[str, Any] = result.to_json()
    if result.passed:
        return Outcome(data)
    failing = ", ".join(f["test"] for f in data["failing"])
    error = KtrdrError(
        f"E2E FAILED for {result.instance_id}: {result.reason}"
        + (f": {failing}" if failing else "")
        + f"; results: {result.junit_path}",
        # the suite's own code, as `test-e2e` exits with it; 1 when pytest said 0 but no
        # test is shown to have run
        exit_code=result.returncode or ExitCode.FAILURE,
    )
    return Outcome(data, error)


def on_evidence(scope: Scope, args: dict[str, Any], progress: Progress) -> Outcome:

    instance = scope.target(args.get("instance"))
    return Outcome(collect_evidence(start=instance.root).to_json())


def _client(scope: Scope, args: dict[str, Any]) -> Any:
    """The API client of the instance in scope: its slot's port, never one from an argument."""

    return ApiClient(url_for_port(scope.target(args.get("instance")).ports.api))


def on_health(scope: Scope, args: dict[str, Any], progress: Progress) -> Outcome:
    client = _client(scope, args)
    body: dict[str, Any] = client.health()
    if body.get("status") == "ok":
        return Outcome(body)
    return Outcome(body, KtrdrError(f"the API at {client.base_url} reports {body.get('status')}"))


def on_workers(scope: Scope, args: dict[str, Any], progress: Progress) -> Outcome:
    return Outcome({"workers": _client(scope, args).workers()})


def on_operations_start(scope: Scope, args: dict[str, Any], progress: Progress) -> Outcome:

    def waiting(operation: dict[str, Any]) -> None:
        progress(f"operation {operation.get('operation_id')}: {operation.get('status')}")

    operation = operations.start_operation(
        _client(scope, args),
        args["operation_type"],
        symbol=args["symbol"],
        timeframe=args["timeframe"],
        strategy=args.get("strategy"),
        wait=args["wait"],
        timeout=args["timeout"],
        on_wait=waiting,
    )
    return Outcome(operation, operations.failure(operation))


def on_operations_get(scope: Scope, args: dict[str, Any], progress: Progress) -> Outcome:
    return Outcome(_client(scope, args).operation(args["operation_id"]))
