"""Core of `ktrdr sandbox up / down / logs`: find and validate the instance, preflight its
ports, start it through compose.up, and run the Startability Gate."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ktrdr.cli.sandbox.base import host, proc, stack_file
from ktrdr.cli.sandbox.base.errors import GateFailedError, SandboxError
from ktrdr.cli.sandbox.engine import ownership
from ktrdr.cli.sandbox.engine import queries as engine
from ktrdr.cli.sandbox.gate.checks import CheckResult, GateSpec
from ktrdr.cli.sandbox.gate.loop import run_gate
from ktrdr.cli.sandbox.gate.probes import DockerProbes
from ktrdr.cli.sandbox.gate.report import GateReport, timestamp, write_report
from ktrdr.cli.sandbox.home.locks import instance_lock
from ktrdr.cli.sandbox.instances.locate import Instance
from ktrdr.cli.sandbox.lifecycle import preflight
from ktrdr.cli.sandbox.policy.enforcement import check_stack, checked_model_file
from ktrdr.cli.sandbox.remote import instance as remote_instance
from ktrdr.cli.sandbox.stack import compose

DEFAULT_TIMEOUT = 300.0


@dataclass
class UpResult:
    instance: Instance
    report: GateReport | None  # None with --no-gate
    report_file: Path | None
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        """What `up --json` prints: the gate report, or a stub when the gate was skipped."""
        if self.report is None:
            return {
                "instance_id": self.instance.instance_id,
                "slot": self.instance.slot,
                "result": "skipped",
            }
        return self.report.to_json()

    def failure(self) -> GateFailedError | None:
        """The error `up` ends with when the gate failed (after the report was shown)."""
        if self.report is None or self.report.passed:
            return None
        return GateFailedError(
            f"Startability Gate failed for {self.instance.instance_id}: {self.report.failure}"
        )


def gate_spec(instance: Instance, *, timeout: float, build: bool = False) -> GateSpec:
    stack = stack_file.load(instance.root)
    return GateSpec(
        instance_id=instance.instance_id,
        ports=instance.ports,
        port_map=instance.port_map,
        expected_workers=dict(stack.expected_workers),
        worker_services=dict(stack.worker_services),
        one_shot_services=stack.one_shot or stack_file.FALLBACK_ONE_SHOT,
        timeout=timeout,
        startup_timeout=compose.BUILD_TIMEOUT if build else compose.UP_TIMEOUT,
    )


def up(
    instance: Instance,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    build: bool = False,
    gate: bool = True,
    notify: Callable[[str], None] = lambda message: None,
    on_update: Callable[[list[CheckResult]], None] | None = None,
    allow: frozenset[str] = frozenset(),
) -> UpResult:
    """Validate, check the stack policy (`allow`: rules a person overrode), preflight, then
    `compose up -d` in the background while the gate watches the containers start; compose is
    stopped when the gate fails first. With a gate the report is always written to
    `.sandbox/gate-report.json`. Holds the instance lock throughout: a second `up` waits for
    this one, then finds the stack running and re-runs the gate."""
    preflight.validate(instance)  # before waiting: a wrong instance is refused at once
    with instance_lock(instance.instance_id, command="ktrdr sandbox up", on_wait=notify):
        preflight.validate(instance)  # again: a destroy may have run while we waited

        def checked_model() -> Path:
            preflight.check_shared_data(instance)
            stack_file.load(instance.root)  # a YAML error as one line with its line number
            # Before any container is touched; compose then runs the model that was checked.
            return checked_model_file(instance, allow=allow, notify=notify)

        # The engine check and the policy check (`docker compose config`, which needs no
        # engine) at once: ~0.3 s less before compose starts. An engine that is down is still
        # said first (concurrently raises in call order).
        _, model = proc.concurrently(
            functools.partial(engine.ensure_engine, instance.engine), checked_model
        )
        return _up_locked(
            instance,
            model,
            timeout=timeout,
            build=build,
            gate=gate,
            notify=notify,
            on_update=on_update,
        )


def _up_locked(
    instance: Instance,
    model: Path,
    *,
    timeout: float,
    build: bool,
    gate: bool,
    notify: Callable[[str], None],
    on_update: Callable[[list[CheckResult]], None] | None,
) -> UpResult:
    own_ports = preflight.prepare_start(instance, notify)
    preflight.preflight_ports(instance, own_ports)
    result = UpResult(instance, None, None)
    warnings = (
        host.memory_warning(),
        compose.images_mismatch(instance.env),
    )
    for warning in warnings:
        if warning:
            result.warnings.append(warning)
            notify(f"Warning: {warning}")
    spec = gate_spec(instance, timeout=timeout, build=build)
    remote_plan = remote_instance.prepare_up(instance, notify) if instance.remote else None
    if not gate:
        compose.up(instance, model=model, build=build)
        if remote_plan is not None:
            remote_instance.after_start(instance, remote_plan, notify)
        return result
    result.report = _start_under_gate(instance, spec, model=model, build=build, on_update=on_update)
    if remote_plan is not None and result.report.passed:
        remote_instance.after_start(instance, remote_plan, notify)
    if not instance.root.is_dir():
        # Destroyed under the gate: writing the report would recreate its directory.
        result.report.failure = (
            result.report.failure or "the gate finished"
        ) + f"; {instance.root} is gone (destroyed meanwhile), so no report was written"
        result.report.result = "failed"
        return result
    result.report_file = write_report(instance.root, result.report)
    return result


def _start_under_gate(
    instance: Instance,
    spec: GateSpec,
    *,
    model: Path,
    build: bool,
    on_update: Callable[[list[CheckResult]], None] | None,
) -> GateReport:
    """`compose up` in the background while the gate watches; compose is stopped when the gate
    fails first. Ctrl-C still leaves a report of what was reached."""
    probes: DockerProbes | None = None
    stack: compose.StartingStack | None = None
    passed = False
    started = time.time()
    last_checks: list[CheckResult] = []

    def remember(checks: list[CheckResult]) -> None:
        last_checks[:] = checks
        if on_update is not None:
            on_update(checks)

    try:
        stack = compose.start(instance, model=model, build=build)
        # After compose is under way: the HTTP client (httpx, ~0.1 s) is not on the way to it.
        probes = DockerProbes(instance.engine, instance.instance_id, follow=True)
        report = run_gate(spec, probes, on_update=remember, startup=stack)
        passed = report.passed
        return report
    except KeyboardInterrupt:
        if instance.root.is_dir():
            write_report(instance.root, interrupted_report(instance, spec, started, last_checks))
        raise
    finally:
        if stack is not None:
            # After a failure compose may still wait on a crashed dependency: stop it.
            if passed:
                stack.wait()
            else:
                stack.cancel()
        if probes is not None:
            probes.close()


def interrupted_report(
    instance: Instance, spec: GateSpec, started: float, checks: list[CheckResult]
) -> GateReport:

    now = time.time()
    return GateReport(
        instance_id=instance.instance_id,
        slot=instance.slot,
        result="interrupted",
        started_at=timestamp(datetime.fromtimestamp(started, UTC)),
        finished_at=timestamp(datetime.fromtimestamp(now, UTC)),
        duration_s=now - started,
        timeout_s=spec.timeout,
        checks=list(checks),
        containers=[],
        failure="interrupted by the user (Ctrl-C) before the gate finished",
        urls=instance.ports.urls(),
    )


@dataclass(frozen=True)
class Stopped:
    """What `down` did, for both faces (CLI `--json`, MCP)."""

    instance_id: str

    def to_json(self) -> dict[str, Any]:
        return {"instance_id": self.instance_id, "result": "stopped", "volumes_kept": True}


@dataclass(frozen=True)
class Paused:
    """What `pause` did: the containers it froze ([] when the instance was already paused)."""

    instance_id: str
    frozen: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"instance_id": self.instance_id, "paused": self.frozen}


@contextmanager
def _acting_on(instance: Instance, verb: str, notify: Callable[[str], None]) -> Iterator[None]:
    """What every change of a running stack holds while it acts: the instance is this home's,
    its lock is held, the engine answers and no other owner's resource is in its project."""
    preflight.check_owner(instance)
    with instance_lock(instance.instance_id, command=f"ktrdr sandbox {verb}", on_wait=notify):
        engine.ensure_engine(instance.engine)
        ownership.refuse_foreign(
            instance.engine,
            instance.instance_id,
            instance.project,
            checkout=instance.root,
            action="stop" if verb == "down" else verb,
        )
        yield


def down(instance: Instance, *, notify: Callable[[str], None] = lambda message: None) -> Stopped:
    """Stop and remove the containers and network; keep volumes (data survives)."""
    with _acting_on(instance, "down", notify):
        compose.down(instance.engine, instance.instance_id, instance, volumes=False)
        if instance.remote:
            remote_instance.stop(instance)
    return Stopped(instance.instance_id)


def pause(instance: Instance, *, notify: Callable[[str], None] = lambda message: None) -> Paused:
    """Freeze every running container of the instance. Refused when nothing runs: there is
    nothing to keep ready."""
    with _acting_on(instance, "pause", notify):
        states = {c.state for c in engine.ps(instance.engine, instance.instance_id)}
        if "running" not in states and "paused" not in states:
            raise SandboxError(
                f"instance {instance.instance_id} is not running, so there is nothing to pause; "
                "`ktrdr sandbox up` starts it"
            )
        return Paused(instance.instance_id, engine.pause(instance.engine, instance.instance_id))


def resume(
    instance: Instance,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    notify: Callable[[str], None] = lambda message: None,
    on_update: Callable[[list[CheckResult]], None] | None = None,
    allow: frozenset[str] = frozenset(),
) -> UpResult:
    """Thaw a paused instance and prove it works again: the gate on the running stack (no
    compose run, nothing recreated). The report is written like `up`'s."""
    preflight.check_owner(instance)
    with instance_lock(instance.instance_id, command="ktrdr sandbox resume", on_wait=notify):
        engine.ensure_engine(instance.engine)
        check_stack(instance, allow=allow, command="ktrdr sandbox resume", notify=notify)
        foreign, containers = proc.concurrently(
            functools.partial(
                ownership.foreign_in_project,
                instance.engine,
                instance.project,
                checkout=instance.root,
            ),
            functools.partial(engine.ps, instance.engine, instance.instance_id),
        )
        ownership.refuse_found_foreign(
            instance.instance_id, instance.project, foreign, action="resume"
        )
        if not containers:
            raise SandboxError(
                f"instance {instance.instance_id} has no containers to resume; "
                "`ktrdr sandbox up` starts it"
            )
        if not engine.unpause(instance.engine, containers):
            notify(f"Instance {instance.instance_id} was not paused; checking it anyway")
        if instance.remote:
            remote_instance.revive(instance, notify)
        probes = DockerProbes(instance.engine, instance.instance_id, follow=True)
        try:
            report = run_gate(gate_spec(instance, timeout=timeout), probes, on_update=on_update)
        finally:
            probes.close()
        return UpResult(instance, report, write_report(instance.root, report))


def logs(instance: Instance, *, service: str | None, follow: bool, tail: int) -> int:
    """`docker compose logs` on the terminal; returns its exit code."""
    _check_logs(instance, service)
    return compose.logs(instance, service=service, follow=follow, tail=tail)


@dataclass(frozen=True)
class LogsResult:
    instance_id: str
    service: str | None
    tail: int
    text: str

    def to_json(self) -> dict[str, object]:
        return {
            "instance_id": self.instance_id,
            "service": self.service,
            "tail": self.tail,
            "text": self.text,
        }


def log_text(instance: Instance, *, service: str | None, tail: int) -> LogsResult:
    """The same logs as `logs`, returned instead of printed."""
    _check_logs(instance, service)
    text = compose.log_text(instance, service=service, tail=tail)
    return LogsResult(instance.instance_id, service, tail, text)


def _check_logs(instance: Instance, service: str | None) -> None:
    instance.require_env()
    known = stack_file.load(instance.root).services
    if service is not None and service not in known:
        raise SandboxError(f"no service {service!r} in this stack; services: {', '.join(known)}")
    if not engine.ps(instance.engine, instance.instance_id):
        # compose would print nothing and exit 0: an empty answer that looks like "no output".
        raise SandboxError(
            f"instance {instance.instance_id} has no containers (it is down, and `down` removes "
            "them with their logs): `ktrdr sandbox up` first"
        )
