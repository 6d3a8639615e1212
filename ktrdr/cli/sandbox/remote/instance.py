"""What the instance commands add for an instance on a remote engine (an ssh:// Docker context),
which sees neither this machine's disk nor its loopback:

- `up`: the override (volumes for bind mounts) written, the app image on the engine, the shared
  data copied once per engine, the checkout's sources mirrored, the SSH forwarder started (the
  gate probes through it), and once the stack runs `docker compose watch` for hot reload plus a
  catch-up push of edits made meanwhile;
- `resume`: the forwarder and watch started again when they died (a dropped connection);
- `down` and `destroy`: both companions stopped (destroy also drops their state);
- `status`: whether the forwarder and watch run;
- `test-e2e`: tests pushed before the run, results pulled after it;
- `init-shared`: the shared data pushed again to every remote engine of this home.

The building blocks are remote_stack (the plan), remote_sync (pushes, watch), forwards and
owned_process; this module only decides when each runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.home import owned_process, registry
from ktrdr.cli.sandbox.instances.locate import from_entry
from ktrdr.cli.sandbox.remote import forwards
from ktrdr.cli.sandbox.remote import sync as remote_sync
from ktrdr.cli.sandbox.remote.stack import RemotePlan, override_for
from ktrdr.cli.sandbox.remote.volume_push import PushReport
from ktrdr.cli.sandbox.stack import compose

if TYPE_CHECKING:
    from ktrdr.cli.sandbox.instances.locate import Instance

Notify = Callable[[str], None]


def state_dir(instance: Instance) -> Path:
    """Where the instance's companion processes are recorded (`$KTRDR_HOME/run/<id>`)."""
    return owned_process.state_dir(instance.instance_id)


def plan(instance: Instance) -> RemotePlan:
    """The instance's volumes and watch rule, its override file written afresh."""
    return override_for(instance.engine, instance.root, instance.env)


def prepare_up(instance: Instance, notify: Notify) -> RemotePlan:
    """Before `compose up`: everything the stack mounts is on the engine, and the forwards run."""
    the_plan = plan(instance)
    base = compose.compose_argv(instance.engine, instance.root, instance.env)
    env = compose.compose_env(instance.engine, instance.env, instance.root)
    if remote_sync.ensure_image(the_plan, base, env=env):
        notify(f"Built {the_plan.image} on {instance.engine.label}")
    _said(notify, remote_sync.push_shared(the_plan), "shared data")
    _said(notify, remote_sync.push_sources(the_plan), "sources")
    start_forwards(instance)
    return the_plan


def after_start(instance: Instance, the_plan: RemotePlan, notify: Notify) -> None:
    """Once the containers run: `compose watch` for hot reload, then the edits made since the
    first push (watch only sees changes from its own start on)."""
    record = remote_sync.start_watch(
        the_plan,
        compose.compose_argv(instance.engine, instance.root, instance.env),
        instance_id=instance.instance_id,
        directory=state_dir(instance),
        env=compose.compose_env(instance.engine, instance.env, instance.root),
    )
    if record is not None:
        notify(f"Hot reload: edits under {instance.root} sync to the engine (compose watch)")
    _said(notify, remote_sync.catch_up(the_plan), "later edits")


def start_forwards(instance: Instance) -> None:
    """The SSH forwarder: every port of the slot on the remote's loopback, at the local ports
    the env file names."""
    endpoint = instance.engine.ssh_endpoint()
    if endpoint is None:
        raise SandboxError(
            f"instance {instance.instance_id} has forward ports but its Docker context "
            f"{instance.context!r} is not reached over SSH; re-create it with --context naming "
            "an ssh:// context"
        )
    pairs = forwards.pairs(instance.engine_ports, instance.ports)
    forwards.start(instance.instance_id, endpoint, pairs, state_dir(instance))


def revive(instance: Instance, notify: Notify) -> None:
    """`resume`: restart a forwarder or watch that died, and push edits the watch missed."""
    if not forwards_alive(instance):
        notify("Restarting the SSH forwards (they had stopped)")
        start_forwards(instance)
    if not remote_sync.watch_alive(state_dir(instance)):
        after_start(instance, plan(instance), notify)
    else:  # a watch syncing into frozen containers may have missed edits
        _said(notify, remote_sync.catch_up(plan(instance)), "edits made while paused")


def stop(instance: Instance) -> list[str]:
    """`down`: stop the forwarder and watch; returns the kinds that ran."""
    return owned_process.stop_all(state_dir(instance))


def forget(instance: Instance) -> None:
    """`destroy`: stop them and drop their records and logs."""
    owned_process.remove_state(state_dir(instance))


def forwards_alive(instance: Instance) -> bool:
    record = forwards.current(state_dir(instance))
    return record is not None and forwards.alive(record)


def companions(instance: Instance) -> dict[str, str]:
    """`status`: what runs of the forwarder and watch."""
    directory = state_dir(instance)
    return {
        "forwards": "running" if forwards_alive(instance) else "not running (`up` restarts them)",
        "watch": "running" if remote_sync.watch_alive(directory) else "not running",
    }


def push_shared_everywhere(notify: Notify) -> list[str]:
    """`init-shared`: the shared data again on each remote engine this home has instances on
    (one instance per engine names the volumes). Returns one line per engine it could not
    reach: the local copy is done either way, and the next `up` there pushes it."""

    by_context = {e.context: e for e in registry.load().values() if e.forward and e.root.is_dir()}
    failures = []
    for _, entry in sorted(by_context.items(), key=lambda item: str(item[0])):
        instance = from_entry(entry)
        where = instance.engine.label
        try:
            report = remote_sync.push_shared(plan(instance), force=True)
        except SandboxError as e:
            failures.append(f"shared data not copied to {where}: {e}")
            continue
        _said(notify, report, f"shared data to {where}")
    return failures


def _said(notify: Notify, report: PushReport | None, what: str) -> None:
    if report is not None:
        size = f"{report.bytes / 1e6:.1f} MB" if report.bytes >= 1e5 else f"{report.bytes} bytes"
        notify(
            f"Copied {what} to the engine: {report.files} files ({size}), {report.written} "
            f"written, {report.removed} removed, in {report.seconds:.1f}s"
        )
