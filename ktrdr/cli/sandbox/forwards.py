"""SSH local forwards of a remote instance: the remote engine publishes the slot's ports on its
own 127.0.0.1, and one `ssh -N -L 127.0.0.1:LOCAL:127.0.0.1:REMOTE …` per instance makes them
reachable at localhost ports on the user's machine (the ones `.env.sandbox` and `status` show).

The forwarder is an owned process (owned_process.py: recorded, stopped by pid, orphans found by
marker). Local ports come from their own range, never a local slot's port (ports.py), never
another instance's recorded forward, and free when chosen; an instance keeps its ports across
`down`/`up` while they stay free (they are recorded in `<state dir>/ports.json`).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from ktrdr.cli.sandbox import owned_process
from ktrdr.cli.sandbox.atomic import write_atomic
from ktrdr.cli.sandbox.errors import SandboxError
from ktrdr.cli.sandbox.owned_process import Orphan, OwnedProcess
from ktrdr.cli.sandbox.ports import ALL_SLOTS, ports_for_slot

KIND = "forward"
READY_TIMEOUT = 30.0  # ssh connects and authenticates first
LOCAL_PORT_FIRST = 21000  # below the kernel's ephemeral range (32768+), above every slot port
LOCAL_PORT_LAST = 21999
PORTS_FILE = "ports.json"
PORTS_LOCK = "ports.lock"
SSH_OPTIONS = (
    "ExitOnForwardFailure=yes",  # a port it cannot bind is an error, not a silent half-forward
    "ServerAliveInterval=5",  # a dead connection ends ssh within ~15 s (doctor, status see it)
    "ServerAliveCountMax=3",
    "BatchMode=yes",  # never a password prompt from a background process
)


class Endpoint(Protocol):
    """What an ssh:// Docker context names (engine_context.SshEndpoint has these fields)."""

    @property
    def user(self) -> str | None: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int | None: ...


def ssh_argv(
    endpoint: Endpoint,
    pairs: Sequence[tuple[int, int]],
    *,
    log_file: Path,
    ssh_command: Sequence[str] = ("ssh",),
) -> list[str]:
    """`ssh -N -o … -E LOG -L 127.0.0.1:L:127.0.0.1:R … [-p PORT] -- [user@]host`."""
    argv = [*ssh_command, "-N"]
    for option in SSH_OPTIONS:
        argv += ["-o", option]
    argv += ["-E", str(log_file)]
    for local, remote in pairs:
        argv += ["-L", f"127.0.0.1:{local}:127.0.0.1:{remote}"]
    if endpoint.port:
        argv += ["-p", str(endpoint.port)]
    target = f"{endpoint.user}@{endpoint.host}" if endpoint.user else endpoint.host
    return [*argv, "--", target]


def start(
    instance_id: str,
    endpoint: Endpoint,
    pairs: Sequence[tuple[int, int]],
    directory: Path,
    *,
    ssh_command: Sequence[str] = ("ssh",),
    timeout: float = READY_TIMEOUT,
) -> OwnedProcess:
    """Start the instance's forwarder (stopping a previous one first) and wait until every
    local port accepts connections; SandboxError with ssh's last words when it exits first."""
    previous = owned_process.load(directory, KIND)
    if previous is not None:
        owned_process.stop(previous)
    busy = [local for local, _ in pairs if not free(local)]
    if busy:  # else "accepts connections" would be true of whoever holds the port
        raise SandboxError(
            f"cannot forward the ports of {instance_id}: local port(s) "
            f"{', '.join(map(str, busy))} are in use; run `ktrdr sandbox up` again to pick others"
        )
    directory.mkdir(parents=True, exist_ok=True)
    log_file = owned_process.log_path(directory, KIND)
    argv = ssh_argv(endpoint, pairs, log_file=log_file, ssh_command=ssh_command)
    where = f"{endpoint.user}@{endpoint.host}" if endpoint.user else endpoint.host
    return owned_process.launch(
        argv,
        kind=KIND,
        instance_id=instance_id,
        directory=directory,
        ready=lambda: all(accepts(local) for local, _ in pairs),
        timeout=timeout,
        what=f"the SSH forwarder of {instance_id} to {where}",
        details={"pairs": [[local, remote] for local, remote in pairs], "host": endpoint.host},
    )


def stop(directory: Path) -> bool:
    """Stop the instance's forwarder; True when one was running."""
    record = owned_process.load(directory, KIND)
    return owned_process.stop(record) if record is not None else False


def current(directory: Path) -> OwnedProcess | None:
    """The recorded forwarder (alive or not: check with `alive`)."""
    return owned_process.load(directory, KIND)


def alive(record: OwnedProcess) -> bool:
    return owned_process.alive(record)


def orphans(root: Path) -> list[Orphan]:
    """SSH forwarders under this home's state root that no live record accounts for."""
    return owned_process.orphans(root, KIND)


def accepts(port: int, *, timeout: float = 0.5) -> bool:
    """Something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def free(port: int) -> bool:
    """A listener could bind 127.0.0.1:port now. SO_REUSEADDR as ssh sets it: connections of
    a forwarder just stopped (TIME_WAIT) do not make its port busy, another listener does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def slot_ports() -> set[int]:
    """Every host port of every local slot (ports.py): never a forward's local port."""
    return {port for slot in ALL_SLOTS for port in ports_for_slot(slot).all_ports().values()}


def local_ports(instance_id: str, remote_ports: Sequence[int], root: Path) -> dict[int, int]:
    """Remote port -> local port for the instance's forwards, recorded in its state dir.

    A port recorded before is kept while it is still free (or held by this instance's own live
    forwarder); otherwise the lowest port of LOCAL_PORT_FIRST..LAST that is no slot's port,
    not recorded by another instance, and free now. Under a lock on `root`, so two `up`s
    never pick the same port."""
    from filelock import FileLock

    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / PORTS_LOCK), timeout=30):
        mine = recorded_ports(root / instance_id)
        taken = slot_ports() | _others(root, instance_id)
        held = _held_by_own_forwarder(root / instance_id)
        chosen: dict[int, int] = {}
        for remote in remote_ports:
            previous = mine.get(remote)
            if previous is not None and _reusable(previous, taken | set(chosen.values()), held):
                chosen[remote] = previous
            else:
                chosen[remote] = _next_free(taken | set(chosen.values()) | set(mine.values()))
        (root / instance_id).mkdir(parents=True, exist_ok=True)
        payload = {str(remote): local for remote, local in chosen.items()}
        write_atomic(root / instance_id / PORTS_FILE, json.dumps(payload, indent=2) + "\n")
        return chosen


def forget(directory: Path) -> None:
    """Drop the instance's recorded ports (destroy): they become free for other instances."""
    (directory / PORTS_FILE).unlink(missing_ok=True)


def _reusable(port: int, excluded: set[int], held: set[int]) -> bool:
    return port not in excluded and (port in held or free(port))


def _next_free(excluded: set[int]) -> int:
    for port in range(LOCAL_PORT_FIRST, LOCAL_PORT_LAST + 1):
        if port not in excluded and free(port):
            return port
    raise SandboxError(
        f"no free local port for an SSH forward in {LOCAL_PORT_FIRST}-{LOCAL_PORT_LAST}: stop "
        "other remote instances (`ktrdr sandbox down`) or free ports in that range"
    )


def recorded_ports(directory: Path) -> dict[int, int]:
    """Remote port -> local port as last chosen for the instance ({} when none): what
    `.env.sandbox` and `status` show while the instance is down, too."""
    try:
        data = json.loads((directory / PORTS_FILE).read_text(encoding="utf-8"))
        return {int(remote): int(str(local)) for remote, local in _items(data)}
    except (OSError, ValueError, TypeError):
        return {}


def _items(data: object) -> list[tuple[str, object]]:
    if not isinstance(data, Mapping):
        raise ValueError("not a mapping")
    return [(str(k), v) for k, v in data.items()]


def _others(root: Path, instance_id: str) -> set[int]:
    ports: set[int] = set()
    for directory in sorted(root.iterdir()) if root.is_dir() else []:
        if directory.is_dir() and directory.name != instance_id:
            ports |= set(recorded_ports(directory).values())
    return ports


def _held_by_own_forwarder(directory: Path) -> set[int]:
    record = owned_process.load(directory, KIND)
    if record is None or not owned_process.alive(record):
        return set()
    return {int(pair[0]) for pair in record.details.get("pairs", [])}
