"""The resolved compose model of an instance: what `docker compose … config --format json`
makes of its compose file(s), env files and every profile, i.e. exactly what `up` would run."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ktrdr.cli.sandbox.base import proc
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.remote.stack import override_for
from ktrdr.cli.sandbox.stack import compose

if TYPE_CHECKING:
    from ktrdr.cli.sandbox.instances.locate import Instance

CONFIG_TIMEOUT = 60.0
# Lines compose prints before the error that say nothing about it.
_NOISE = ("WARN", "time=", "level=warning")


def resolved_model(instance: Instance) -> dict[str, Any]:
    """The model compose would run for the instance (its argv, every profile); one SandboxError
    line when compose cannot resolve it (invalid YAML, an unknown key, an unset variable). A
    remote instance's override is written afresh first: it is part of what runs, and it lives
    in the worktree."""
    if instance.remote:
        override_for(instance.engine, instance.root, instance.env)
    argv = [
        *compose.compose_argv(instance.engine, instance.root, instance.env),
        *("--profile", "*", "config", "--format", "json"),
    ]
    result = proc.run(
        argv,
        cwd=instance.root,
        env=compose.compose_env(instance.engine, instance.env, instance.root),
        timeout=CONFIG_TIMEOUT,
        check=False,
        what="checking the stack (docker compose config)",
    )
    if result.returncode != 0:
        raise SandboxError(
            f"cannot check the stack of {instance.instance_id}: docker compose config failed: "
            f"{first_error_line(result.stderr)}; fix what it names (docker-compose.sandbox.yml "
            "or a file it reads), then retry"
        )
    try:
        model = json.loads(result.stdout)
    except ValueError as e:
        raise SandboxError(
            f"cannot check the stack of {instance.instance_id}: docker compose config printed "
            f"no JSON ({result.stdout[:80]!r}); check the docker compose version (`docker "
            "compose version`)"
        ) from e
    if not isinstance(model, dict):
        raise SandboxError(
            f"cannot check the stack of {instance.instance_id}: docker compose config printed "
            "no model; check the docker compose version (`docker compose version`)"
        )
    return model


def first_error_line(stderr: str) -> str:
    """The first line of compose's stderr that is not a warning (its errors come after them)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    meaningful = [line for line in lines if not line.startswith(_NOISE)]
    chosen = (meaningful or lines or ["(no output)"])[0]
    return chosen.removeprefix("error: ").removeprefix("Error: ")[:300]
