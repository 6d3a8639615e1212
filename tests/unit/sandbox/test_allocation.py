"""Slot allocation: registered slots and ports in use (real sockets) are skipped.

Allocation reads the test slot range (tests/support/slots.py), which the user's sandboxes never
use: its ports are free here even on a machine whose slots 1..10 are all busy."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator

import pytest

from ktrdr.cli.sandbox import registry
from ktrdr.cli.sandbox.allocation import (
    allocate,
    busy_ports,
    listening_processes,
    port_in_use,
    probe_slots,
)
from ktrdr.cli.sandbox.errors import SandboxError
from ktrdr.cli.sandbox.ports import ports_for_slot
from ktrdr.cli.sandbox.registry import Entry
from tests.support.slots import FIRST, TEST_SLOTS


def _entry(instance_id: str, slot: int) -> Entry:
    return Entry(instance_id, slot, f"/w/{instance_id}", "worktree", None, registry.now_iso())


@pytest.fixture
def free_slot() -> int:
    """The lowest test slot with free ports (another run of this suite may hold some)."""
    free = [slot for slot in TEST_SLOTS if not busy_ports(slot, with_owners=False)]
    assert free, f"every test slot {TEST_SLOTS.start}..{TEST_SLOTS[-1]} has a busy port"
    return free[0]


@pytest.fixture
def listener(free_slot: int) -> Iterator[socket.socket]:
    """A plain listening socket on the API port of the first free slot."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", ports_for_slot(free_slot).api))
    sock.listen()
    yield sock
    sock.close()


def test_lowest_free_slot_is_taken_when_nothing_is_registered(free_slot: int) -> None:
    assert allocate({}, instance_id="x", requested=None).slot == free_slot


def test_registered_slots_are_skipped_without_a_note() -> None:
    entries = {f"i{s}": _entry(f"i{s}", s) for s in TEST_SLOTS[:3]}
    result = allocate(entries, instance_id="x", requested=None, probe=lambda port: False)
    assert result.slot == TEST_SLOTS[3]
    assert result.skipped == []


def test_a_port_held_by_a_plain_socket_makes_its_slot_skipped_with_a_note(
    free_slot: int, listener: socket.socket
) -> None:
    port = ports_for_slot(free_slot).api
    assert port_in_use(port)
    result = allocate({}, instance_id="x", requested=None)
    assert result.slot != free_slot
    notes = {s.slot: s.reason for s in result.skipped}
    assert f"port {port} (api)" in notes[free_slot]


def test_the_os_names_the_process_holding_a_port_when_it_can(
    free_slot: int, listener: socket.socket
) -> None:
    owners = listening_processes()
    if not owners:
        pytest.skip("ss is not available or shows no processes here")
    assert f"pid {os.getpid()}" in owners[ports_for_slot(free_slot).api]


def test_requesting_a_busy_slot_is_refused_naming_the_port(
    free_slot: int, listener: socket.socket
) -> None:
    port = ports_for_slot(free_slot).api
    with pytest.raises(SandboxError, match=rf"slot {free_slot} is busy: port {port} \(api\)"):
        allocate({}, instance_id="x", requested=free_slot)


def test_requesting_a_registered_slot_is_refused_naming_its_instance() -> None:
    entries = {"other": _entry("other", 3)}
    with pytest.raises(SandboxError, match="slot 3 is taken by instance other"):
        allocate(entries, instance_id="x", requested=3, probe=lambda port: False)


def test_own_ports_are_ignored_when_probing(free_slot: int, listener: socket.socket) -> None:
    ports = ports_for_slot(free_slot)
    assert [b.port for b in busy_ports(free_slot)] == [ports.api]
    assert busy_ports(free_slot, ignore_ports={ports.api}) == []


LAST = TEST_SLOTS[-1]


def test_slot_zero_is_only_given_when_requested() -> None:
    assert allocate({}, instance_id="x", requested=None, probe=lambda p: False).slot == FIRST
    assert allocate({}, instance_id="x", requested=0, probe=lambda p: False).slot == 0


def test_all_slots_taken_lists_instances_and_suggests_destroy_or_prune() -> None:
    entries = {f"inst-{s}": _entry(f"inst-{s}", s) for s in TEST_SLOTS}
    with pytest.raises(SandboxError) as caught:
        allocate(entries, instance_id="x", requested=None, probe=lambda port: False)
    message = str(caught.value)
    assert message.startswith(f"no free slot in {FIRST}..{LAST}")
    assert f"inst-{FIRST} (slot {FIRST})" in message
    assert f"inst-{LAST} (slot {LAST})" in message
    assert "KTRDR_SLOTS" in message
    assert "destroy" in message
    assert "prune" in message


def test_busy_ports_make_the_no_free_slot_error_name_them() -> None:
    entries = {f"inst-{s}": _entry(f"inst-{s}", s) for s in TEST_SLOTS[:-1]}
    busy_api = ports_for_slot(LAST).api
    with pytest.raises(SandboxError, match=rf"slot {LAST}: port {busy_api} \(api\)"):
        allocate(entries, instance_id="x", requested=None, probe=lambda p: p == busy_api)


def test_create_skips_a_slot_whose_port_a_plain_socket_holds_and_says_so(
    repo, free_slot: int, listener: socket.socket
) -> None:
    from click.testing import CliRunner

    from ktrdr.cli.main import cli

    port = ports_for_slot(free_slot).api
    out = CliRunner().invoke(cli, ["sandbox", "create", "feat-a", "--json"])
    assert out.exit_code == 0, out.output
    assert f"note: skipped slot {free_slot}: port {port} (api)" in out.stderr
    assert json.loads(out.stdout)["slot"] != free_slot


def test_probe_slots_names_owners_with_one_lookup(free_slot: int, listener: socket.socket) -> None:
    busy = probe_slots([free_slot])
    assert [b.port for b in busy[free_slot]] == [ports_for_slot(free_slot).api]
    if listening_processes():
        assert f"pid {os.getpid()}" in (busy[free_slot][0].owner or "")
