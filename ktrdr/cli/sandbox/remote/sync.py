"""Filling and syncing the volumes of a remote instance's plan (remote/stack.py): the checkout's
sources at `up`, the home's shared data once per engine (and on `init-shared`), the E2E tests
before a run and its results back after it, and `docker compose watch` keeping the live source
in sync while the instance is up (an owned process, like the SSH forwarder).

Every `docker` command goes to the plan's engine (the instance's).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from ktrdr.cli.sandbox.base import proc
from ktrdr.cli.sandbox.base.atomic import write_atomic
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.engine.handle import Engine
from ktrdr.cli.sandbox.home import owned_process
from ktrdr.cli.sandbox.home.owned_process import OwnedProcess
from ktrdr.cli.sandbox.remote import volume_push
from ktrdr.cli.sandbox.remote.stack import (
    E2E_RESULTS_KEY,
    E2E_SERVICE,
    WATCH_KIND,
    WATCH_READY_TIMEOUT,
    RemotePlan,
    SyncedVolume,
)
from ktrdr.cli.sandbox.remote.volume_push import PushReport

WATCH_READY_TEXT = "Watch enabled"
SHARED_RECORD = "shared-volumes.json"


def push_sources(plan: RemotePlan, *, keys: Sequence[str] | None = None) -> PushReport:
    """Mirror the checkout's bind sources (all, or `keys`) into the instance's volumes on the
    engine (created with the instance's labels when missing), in one helper container;
    unchanged files are not rewritten, files deleted here are deleted there."""
    volumes = [v for v in plan.instance_volumes() if keys is None or v.key in keys]
    return volume_push.push(
        plan.engine,
        {v.key: v.source for v in volumes},
        {v.key: v.name for v in volumes},
        {v.key: {"mode": "mirror"} for v in volumes},
        image=plan.image,
        labels=plan.instance_labels,
        volume_labels={v.key: plan.volume_labels(v.key) for v in volumes},
        what=f"copying the sources of {plan.project} to the engine",
    )


def push_shared(plan: RemotePlan, *, force: bool = False) -> PushReport | None:
    """Copy the shared dir into this home's shared volumes on the engine when one is missing
    or incomplete, or always with `force` (init-shared). None when nothing needed copying.
    Read-only volumes are mirrored; a writable one (models) is merged into, so what the
    engine's workers wrote stays.

    Complete pushes are recorded here (`$KTRDR_HOME/run/shared-volumes.json`: each volume's
    creation time on that context), so an `up` that finds them as recorded asks the engine one
    quick question; otherwise a helper container looks for the marker a completed push leaves
    in each volume (a push cut short leaves none)."""
    volumes = plan.shared_volumes()
    names = [v.name for v in volumes]
    if not volumes or (not force and _recorded_complete(plan.engine, names)):
        return None
    labels = {v.key: plan.shared_labels() for v in volumes}
    todo = volumes if force else _incomplete(plan, volumes, labels)
    report = None
    if todo:
        report = volume_push.push(
            plan.engine,
            {v.key: v.source for v in todo},
            {v.key: v.name for v in todo},
            {v.key: {"mode": "mirror" if v.mirror else "merge", "marker": True} for v in todo},
            image=plan.image,
            labels=plan.shared_labels(),
            volume_labels=labels,
            what=f"copying the shared data to the engine ({len(todo)} volume(s))",
        )
    _record_complete(plan.engine, names)
    return report


def _incomplete(
    plan: RemotePlan,
    volumes: Sequence[SyncedVolume],
    labels: Mapping[str, Mapping[str, str]],
) -> list[SyncedVolume]:
    done = volume_push.markers(
        plan.engine,
        {v.key: v.name for v in volumes},
        labels,
        image=plan.image,
        labels=plan.shared_labels(),
    )
    return [v for v in volumes if not done[v.key]]


def _shared_record() -> Path:
    return owned_process.state_root() / SHARED_RECORD


def _recorded_complete(engine: Engine, names: Sequence[str]) -> bool:
    try:
        recorded = json.loads(_shared_record().read_text(encoding="utf-8")).get(
            engine.context or "", {}
        )
    except (OSError, ValueError, AttributeError):
        return False
    created = volume_push.created_at(engine, names)
    return all(name in created and recorded.get(name) == created[name] for name in names)


def _record_complete(engine: Engine, names: Sequence[str]) -> None:

    path = _shared_record()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        data = data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        data = {}
    data[engine.context or ""] = volume_push.created_at(engine, names)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def prepare_e2e(plan: RemotePlan) -> PushReport:
    """Before `test-e2e`: the checkout sources the E2E service mounts (tests, and the source
    again in case watch missed an edit) pushed, and its results volume emptied, in one go."""
    volumes = [v for v in plan.instance_volumes() if E2E_SERVICE in v.targets]
    if not volumes:
        raise SandboxError(f"the compose file has no {E2E_SERVICE} service mounting the checkout")
    modes = {v.key: {"mode": "mirror"} for v in volumes}
    volume_labels = {v.key: plan.volume_labels(v.key) for v in volumes}
    return volume_push.push(
        plan.engine,
        {v.key: v.source for v in volumes},
        {**{v.key: v.name for v in volumes}, E2E_RESULTS_KEY: plan.results_volume},
        {**modes, E2E_RESULTS_KEY: {"mode": "clear"}},
        image=plan.image,
        labels=plan.instance_labels,
        volume_labels={**volume_labels, E2E_RESULTS_KEY: plan.volume_labels(E2E_RESULTS_KEY)},
        what=f"copying the tests of {plan.project} to the engine",
    )


def pull_e2e_results(plan: RemotePlan, destination: Path) -> Mapping[str, int]:
    """After `test-e2e`: the results volume copied to `destination` (the instance's
    `.sandbox/test-results`), which then holds exactly what the run wrote."""
    return volume_push.pull(
        plan.engine,
        plan.results_volume,
        destination,
        image=plan.image,
        labels=plan.instance_labels,
        volume_labels=plan.volume_labels(E2E_RESULTS_KEY),
    )


def catch_up(plan: RemotePlan) -> PushReport | None:
    """Push the live sources again (only files that differ are written): after `compose up`
    and `start_watch`, for edits made while no watch ran (during `up`, or while paused or
    disconnected). None when nothing is live."""
    keys = [v.key for v in plan.instance_volumes() if v.live]
    return push_sources(plan, keys=keys) if keys else None


def ensure_image(plan: RemotePlan, compose_base: Sequence[str], *, env: Mapping[str, str]) -> bool:
    """The helper containers run the app image: build it on the engine (`compose build` of
    the service that builds it) when the engine lacks it, before the first push. True when it
    was built."""
    inspect = plan.engine.argv("image", "inspect", "--format", "{{.Id}}", plan.image)
    found = proc.run(inspect, timeout=60, check=False)
    if found.returncode == 0:
        return False
    if plan.builder_service is None:
        raise SandboxError(
            f"the engine has no image {plan.image} and no service of the compose file builds "
            f"it: load it there (`docker save {plan.image} | docker --context CONTEXT load`) "
            "and retry"
        )
    proc.run(
        [*compose_base, "build", plan.builder_service],
        cwd=plan.root,
        env=env,
        timeout=3600,  # captured: the MCP server's stdout is its protocol; errors keep the tail
        what=f"building {plan.image} on the engine",
    )
    return True


# --- compose watch -----------------------------------------------------------------------------


def start_watch(
    plan: RemotePlan,
    compose_base: Sequence[str],
    *,
    instance_id: str,
    directory: Path,
    env: Mapping[str, str],
    timeout: float = WATCH_READY_TIMEOUT,
) -> OwnedProcess | None:
    """Start `<compose_base> watch --no-up <service>` detached (a previous one stopped first)
    and wait for "Watch enabled". `compose_base` is the instance's compose argv including the
    override's `-f` and the engine's `--context`; `env` its compose environment. None when the plan
    has nothing live to watch."""
    if plan.watch_service is None:
        return None
    if str(plan.override_path) not in compose_base:
        raise SandboxError(
            f"compose watch needs the remote override {plan.override_path} among the compose "
            "files (-f); it was not passed"
        )
    stop_watch(directory)
    log = owned_process.log_path(directory, WATCH_KIND)
    return owned_process.launch(
        [*compose_base, "watch", "--no-up", plan.watch_service],
        kind=WATCH_KIND,
        instance_id=instance_id,
        directory=directory,
        ready=lambda: WATCH_READY_TEXT in _text(log),
        timeout=timeout,
        what=f"docker compose watch for {instance_id}",
        env=env,
        cwd=plan.root,
        details={"service": plan.watch_service},
    )


def stop_watch(directory: Path) -> bool:
    record = owned_process.load(directory, WATCH_KIND)
    return owned_process.stop(record) if record is not None else False


def watch_alive(directory: Path) -> bool:
    record = owned_process.load(directory, WATCH_KIND)
    return record is not None and owned_process.alive(record)


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
