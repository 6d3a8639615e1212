"""What one container says about itself, asked of the engine directly: its last log lines
(stdout and stderr in time order) and, when it logged nothing, the engine's view of it (state,
exit code, OOM kill, health-check output). Used by the gate's failure report and evidence."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ktrdr.cli.sandbox.base import proc
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.engine.handle import Engine
from ktrdr.cli.sandbox.engine.queries import QUERY_TIMEOUT


def container_logs(
    engine: Engine, container: str, *, tail: int, timeout: float = QUERY_TIMEOUT
) -> list[str]:
    """The last `tail` lines of one container, stdout and stderr merged in time order (a
    traceback on stderr belongs between the request lines around it); [] when unavailable."""
    result = proc.run(
        engine.argv("logs", "--timestamps", "--tail", str(tail), container),
        timeout=timeout,
        check=False,
    )
    return merge_timestamped(result.stdout, result.stderr)[-tail:]


def engine_view(engine: Engine, container: str) -> list[str]:
    """What the engine knows of a container that logged nothing: state, exit code, OOM kill,
    its error, and the last health-check results (from `docker inspect`)."""
    result = proc.run(
        engine.argv("inspect", "--type", "container", container),
        timeout=QUERY_TIMEOUT,
        check=False,
        what="docker inspect",
    )
    try:
        item = (json.loads(result.stdout or "[]") or [{}])[0]
    except (json.JSONDecodeError, IndexError) as e:
        raise SandboxError(f"docker inspect returned unreadable output: {e}") from e
    return describe_state(item.get("State") or {}, result.stderr)


def describe_state(state: Mapping[str, Any], stderr: str = "") -> list[str]:
    if not state:
        return [f"no such container ({proc.stderr_tail(stderr, 1) or 'it is gone'})"]
    lines = [
        f"state {state.get('Status')}, exit code {state.get('ExitCode')}, "
        f"OOM-killed {'yes' if state.get('OOMKilled') else 'no'}"
        + (f", finished at {state['FinishedAt']}" if state.get("Status") == "exited" else "")
    ]
    if state.get("Error"):
        lines.append(f"engine error: {state['Error']}")
    health = state.get("Health") or {}
    for check in (health.get("Log") or [])[-3:]:
        output = " ".join(str(check.get("Output") or "").split())[:200]
        lines.append(f"health check exit {check.get('ExitCode')}: {output or '(no output)'}")
    return lines


def merge_timestamped(*streams: str) -> list[str]:
    """Lines of `docker logs --timestamps` streams in time order, timestamps removed. Docker
    pads the nanoseconds, so the RFC 3339 stamps sort as text; the sort is stable."""
    stamped = [line for stream in streams for line in stream.splitlines()]
    stamped.sort(key=lambda line: line.split(" ", 1)[0])
    return [line.split(" ", 1)[1] if " " in line else "" for line in stamped]
