"""The port map over every slot 0..99, and the machine's slot range (KTRDR_SLOTS)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ktrdr.cli.main import cli
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.provision.allocation import allocate
from ktrdr.cli.sandbox.slots import slot_range
from ktrdr.cli.sandbox.slots.ports import (
    ALL_SLOTS,
    COMMON_TOOL_PORTS,
    FORWARD_INDEXES,
    SEED_LAST_SLOT,
    SEED_OVERLAPS,
    common_tool_at,
    forward_ports,
    ports_for_slot,
)

DOCS = Path(__file__).resolve().parents[3] / "docs" / "sandbox.md"


def _every_port() -> list[tuple[int, str, int]]:
    """(port, service, slot) of every slot's host ports."""
    return [
        (port, name, slot)
        for slot in ALL_SLOTS
        for name, port in ports_for_slot(slot).all_ports().items()
    ]


def test_the_map_covers_slots_0_to_99() -> None:
    assert list(ALL_SLOTS) == list(range(100))


def test_no_port_is_shared_by_two_slots_or_two_services() -> None:
    owners: dict[int, tuple[str, int]] = {}
    for port, name, slot in _every_port():
        assert port not in owners, f"port {port}: slot {slot} {name} and {owners[port]}"
        owners[port] = (name, slot)
    assert len(owners) == 100 * 15


def test_no_slot_port_is_a_local_end_of_an_ssh_forward() -> None:
    forwards = {
        port for index in FORWARD_INDEXES for port in forward_ports(index, 0).all_ports().values()
    }
    assert not forwards & {port for port, _, _ in _every_port()}


def test_slots_1_to_10_keep_the_seeds_ports() -> None:
    for slot in range(1, SEED_LAST_SLOT + 1):
        p = ports_for_slot(slot)
        assert (p.api, p.db, p.grafana, p.jaeger_ui, p.prometheus, p.worker_base) == (
            8000 + slot,
            5432 + slot,
            3000 + slot,
            16686 + slot,
            9090 + slot,
            5000 + 10 * slot,
        )
    assert ports_for_slot(0).env_variables()["KTRDR_API_PORT"] == "8000"


def test_slots_above_10_get_one_block_of_20_ports_each() -> None:
    p = ports_for_slot(11)
    assert (p.api, p.db, p.grafana, p.jaeger_ui, p.prometheus) == (
        22220,
        22221,
        22222,
        22223,
        22224,
    )
    assert p.workers == range(22230, 22240)
    last = ports_for_slot(99)
    assert (last.api, last.workers) == (23980, range(23990, 24000))
    assert ports_for_slot(50).env_variables()["KTRDR_TRAINING_WORKER_2_PORT"] == "23013"


def test_no_port_of_slots_11_to_99_is_a_common_tools_default() -> None:
    hits = [
        (slot, name, port, common_tool_at(port))
        for port, name, slot in _every_port()
        if slot > SEED_LAST_SLOT and common_tool_at(port)
    ]
    assert hits == []


def test_the_seed_slots_touch_exactly_the_documented_tool_ports() -> None:
    hits = {
        (slot, port, common_tool_at(port))
        for port, _, slot in _every_port()
        if 1 <= slot <= SEED_LAST_SLOT and common_tool_at(port)
    }
    assert hits == set(SEED_OVERLAPS)


def test_every_port_is_unprivileged_and_below_the_ephemeral_range() -> None:
    assert all(1024 <= port < 32768 for port, _, _ in _every_port())


def test_the_docs_list_every_common_tool_port_range() -> None:
    text = " ".join(DOCS.read_text(encoding="utf-8").split())
    for first, last, _ in COMMON_TOOL_PORTS:
        assert (f"{first}–{last}" if first != last else f"{first} ") in text, first


# --- the machine's slot range ---------------------------------------------------------------


def test_unset_the_range_is_the_seeds_1_to_10(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KTRDR_SLOTS")
    assert slot_range.configured() == range(1, 11)


@pytest.mark.parametrize(("text", "slots"), [("1-50", range(1, 51)), (" 11 - 99 ", range(11, 100))])
def test_a_range_reads_first_to_last(text: str, slots: range) -> None:
    assert slot_range.parse(text) == slots


@pytest.mark.parametrize("text", ["0-10", "1-100", "7-3", "10", "1..50", "a-b", ""])
def test_anything_else_is_refused_naming_the_form(text: str) -> None:
    with pytest.raises(SandboxError, match=r"is not a slot range: use FIRST-LAST within 1\.\.99"):
        slot_range.parse(text)


def test_allocation_takes_the_lowest_free_slot_of_the_range(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KTRDR_SLOTS", "40-41")
    assert allocate({}, instance_id="x", requested=None, probe=lambda port: False).slot == 40
    with pytest.raises(SandboxError, match=r"^no free slot in 40\.\.41 .*widen KTRDR_SLOTS"):
        allocate({}, instance_id="x", requested=None, probe=lambda port: True)


def test_a_requested_slot_outside_the_range_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KTRDR_SLOTS", "1-10")
    assert allocate({}, instance_id="x", requested=55, probe=lambda port: False).slot == 55


def test_create_and_list_work_on_a_high_slot(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ktrdr.cli.sandbox.provision.allocation.port_in_use", lambda port: False)
    created = CliRunner().invoke(cli, ["sandbox", "create", "feat-a", "--slot", "50", "--json"])
    assert created.exit_code == 0, created.output
    assert json.loads(created.stdout)["urls"]["api"] == "http://localhost:23000"
    listed = CliRunner().invoke(cli, ["sandbox", "list", "--json"])
    assert [(r["slot"], r["api_port"]) for r in json.loads(listed.stdout)] == [(50, 23000)]


def test_create_refuses_a_bad_range_in_one_line(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KTRDR_SLOTS", "1-500")
    out = CliRunner().invoke(cli, ["sandbox", "create", "feat-a"])
    assert out.exit_code == 1
    assert out.stderr.startswith("Error: KTRDR_SLOTS='1-500' is not a slot range")
    assert not (repo.parent / "ktrdr--feat-a").exists()
