"""Slot allocation and host-port probing.

A slot is free when no registry entry holds it and none of its host ports is in use by something
else. Probing binds each port on 127.0.0.1 and 0.0.0.0 with SO_REUSEADDR on, so a socket in
TIME_WAIT does not count as busy but any listener (on loopback or on any interface) does.
Allocation runs inside the registry lock, so two concurrent creates never get the same slot.
"""

from __future__ import annotations

import errno
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.base.proc import run
from ktrdr.cli.sandbox.home.registry import Entry
from ktrdr.cli.sandbox.slots import slot_range
from ktrdr.cli.sandbox.slots.ports import ports_for_slot, validate_slot

PROBE_HOSTS = ("127.0.0.1", "0.0.0.0")  # probing, not serving


@dataclass(frozen=True)
class BusyPort:
    port: int
    name: str  # which port of the slot, e.g. "api", "worker_3"
    owner: str | None = None  # "docker-proxy (pid 812)" when the OS tells
    state: str = "held"  # "claimed": reserved by a create that has not started a stack yet

    def describe(self) -> str:
        held = f" is {self.state} by {self.owner}" if self.owner else " is in use"
        return f"port {self.port} ({self.name}){held}"


@dataclass(frozen=True)
class SkippedSlot:
    slot: int
    reason: str


@dataclass
class Allocation:
    slot: int
    skipped: list[SkippedSlot] = field(default_factory=list)


def port_in_use(port: int) -> bool:
    for host in PROBE_HOSTS:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as e:
                if e.errno in (errno.EADDRINUSE, errno.EACCES):
                    return True
                raise
    return False


_SS_USER = re.compile(r'\("([^"]+)",pid=(\d+)')


def listening_processes() -> dict[int, str]:
    """Port -> "name (pid N)" from `ss -ltnp`, best effort ({} when ss is missing or says
    nothing about processes we do not own)."""

    try:
        result = run(["ss", "-ltnpH"], timeout=5, check=False, what="ss")
    except SandboxError:
        return {}
    owners: dict[int, str] = {}
    for line in result.stdout.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        port_text = fields[3].rpartition(":")[2]
        match = _SS_USER.search(line)
        if port_text.isdigit() and match:
            owners.setdefault(int(port_text), f"{match.group(1)} (pid {match.group(2)})")
    return owners


def busy_ports(
    slot: int,
    *,
    ignore_ports: Iterable[int] = (),
    probe: Callable[[int], bool] | None = None,
    with_owners: bool = True,
) -> list[BusyPort]:
    """The slot's host ports in use by something else. `ignore_ports` are ports the instance's
    own containers publish (so `up` on a running instance does not conflict with itself)."""
    ignored = set(ignore_ports)
    probe = probe or port_in_use
    busy = [
        BusyPort(port, name)
        for name, port in ports_for_slot(slot).all_ports().items()
        if port not in ignored and probe(port)
    ]
    if busy and with_owners:
        owners = listening_processes()
        busy = [BusyPort(b.port, b.name, owners.get(b.port)) for b in busy]
    return busy


def probe_slots(
    slots: Iterable[int], *, probe: Callable[[int], bool] | None = None
) -> dict[int, list[BusyPort]]:
    """Busy ports of each slot, with owners from ONE `ss` call. Done before taking the registry
    lock: ports held by other programs are racy with or without our lock, and the lock stays
    short."""
    busy = {slot: busy_ports(slot, probe=probe, with_owners=False) for slot in slots}
    if any(busy.values()):
        owners = listening_processes()
        busy = {
            s: [BusyPort(b.port, b.name, owners.get(b.port)) for b in bs] for s, bs in busy.items()
        }
    return busy


def allocate(
    entries: Mapping[str, Entry],
    *,
    instance_id: str,
    requested: int | None,
    probe: Callable[[int], bool] | None = None,
    busy: Mapping[int, list[BusyPort]] | None = None,
) -> Allocation:
    """Pick a slot for `instance_id` (call inside registry.transaction) from the registry and
    `busy` (from probe_slots; probed here when not given). Without a request: the lowest free
    slot of the machine's range (KTRDR_SLOTS). Slot 0 only on request."""
    holders = {e.slot: e for e in entries.values() if e.instance_id != instance_id}
    if requested is not None:
        validate_slot(requested)
        holder = holders.get(requested)
        if holder is not None and holder.state == "creating":
            raise SandboxError(
                f"slot {requested} is claimed by instance {holder.instance_id} of this home "
                f"(being created by process {holder.pid} since {holder.created_at}, "
                f"{holder.path}); pick another with --slot, or omit --slot"
            )
        if holder is not None:
            raise SandboxError(
                f"slot {requested} is taken by instance {holder.instance_id} ({holder.path}); "
                "pick another with --slot, or omit --slot to take the lowest free one"
            )
        held = busy[requested] if busy is not None else busy_ports(requested, probe=probe)
        if held:
            raise SandboxError(
                f"slot {requested} is busy: {held[0].describe()}; stop it or pick another "
                "slot with --slot"
            )
        return Allocation(requested)
    skipped: list[SkippedSlot] = []
    for slot in slot_range.configured():
        if slot in holders:
            continue
        held = busy[slot] if busy is not None else busy_ports(slot, probe=probe)
        if held:
            skipped.append(SkippedSlot(slot, held[0].describe()))
            continue
        return Allocation(slot, skipped)
    raise _no_free_slot(entries, skipped)


def _no_free_slot(entries: Mapping[str, Entry], skipped: list[SkippedSlot]) -> SandboxError:
    taken = ", ".join(
        f"{e.instance_id} (slot {e.slot})" for e in sorted(entries.values(), key=lambda e: e.slot)
    )
    busy = "; ".join(f"slot {s.slot}: {s.reason}" for s in skipped)
    parts = [f"instances: {taken or 'none'}"] + ([f"busy ports: {busy}"] if busy else [])
    return SandboxError(
        f"no free slot in {slot_range.describe(slot_range.configured())} ({'; '.join(parts)}); "
        "free one with `ktrdr sandbox destroy NAME` or `ktrdr sandbox prune`, or widen "
        "KTRDR_SLOTS"
    )
