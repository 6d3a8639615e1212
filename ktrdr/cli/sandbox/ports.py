"""The one table of host ports per slot. Everything else (env file, compose variables, gate,
`list`, docs) derives ports from here; ports are never stored anywhere they could drift.

Slot 0 is the main dev environment with the standard ports; sandboxes use slots 1..10.
"""

from __future__ import annotations

from dataclasses import dataclass

MAIN_SLOT = 0
FIRST_SANDBOX_SLOT = 1
LAST_SLOT = 10
SANDBOX_SLOTS = range(FIRST_SANDBOX_SLOT, LAST_SLOT + 1)
ALL_SLOTS = range(MAIN_SLOT, LAST_SLOT + 1)

WORKER_PORTS_PER_SLOT = 10

# service key -> (env variable, base port); host port = base + slot
_SINGLE_PORTS: dict[str, tuple[str, int]] = {
    "api": ("KTRDR_API_PORT", 8000),
    "db": ("KTRDR_DB_PORT", 5432),
    "grafana": ("KTRDR_GRAFANA_PORT", 3000),
    "jaeger_ui": ("KTRDR_JAEGER_UI_PORT", 16686),
    "prometheus": ("KTRDR_PROMETHEUS_PORT", 9090),
}
WORKER_PORT_BASE = 5000

# Workers the stack runs, in the order their host ports are assigned from the worker range.
WORKER_PORT_VARIABLES = (
    "KTRDR_BACKTEST_WORKER_1_PORT",
    "KTRDR_BACKTEST_WORKER_2_PORT",
    "KTRDR_TRAINING_WORKER_1_PORT",
    "KTRDR_TRAINING_WORKER_2_PORT",
)


@dataclass(frozen=True)
class SlotPorts:
    slot: int
    api: int
    db: int
    grafana: int
    jaeger_ui: int
    prometheus: int
    worker_base: int

    @property
    def workers(self) -> range:
        return range(self.worker_base, self.worker_base + WORKER_PORTS_PER_SLOT)

    def all_ports(self) -> dict[str, int]:
        """Every host port of the slot, by a readable name (workers individually)."""
        named = {key: getattr(self, key) for key in _SINGLE_PORTS}
        for offset, port in enumerate(self.workers):
            named[f"worker_{offset}"] = port
        return named

    def env_variables(self) -> dict[str, str]:
        """The port variables of `.env.sandbox`, as read by Docker Compose."""
        values = {var: str(getattr(self, key)) for key, (var, _) in _SINGLE_PORTS.items()}
        values["KTRDR_WORKER_PORT_BASE"] = str(self.worker_base)
        for offset, var in enumerate(WORKER_PORT_VARIABLES):
            values[var] = str(self.worker_base + offset)
        return values

    def urls(self) -> dict[str, str]:
        return {
            "api": f"http://localhost:{self.api}",
            "api_docs": f"http://localhost:{self.api}/api/v1/docs",
            "grafana": f"http://localhost:{self.grafana}",
            "jaeger": f"http://localhost:{self.jaeger_ui}",
            "prometheus": f"http://localhost:{self.prometheus}",
        }


def validate_slot(slot: int) -> int:
    from ktrdr.cli.sandbox.errors import SandboxError

    if not MAIN_SLOT <= slot <= LAST_SLOT:
        raise SandboxError(
            f"invalid slot {slot}: slots are {MAIN_SLOT} (main) and "
            f"{FIRST_SANDBOX_SLOT}..{LAST_SLOT} (sandboxes)"
        )
    return slot


def ports_for_slot(slot: int) -> SlotPorts:
    validate_slot(slot)
    return SlotPorts(
        slot=slot,
        **{key: base + slot for key, (_, base) in _SINGLE_PORTS.items()},
        worker_base=WORKER_PORT_BASE + WORKER_PORTS_PER_SLOT * slot,
    )


# A remote instance publishes its slot's ports on the remote's loopback; this machine reaches
# them through SSH forwards from a block of local ports per *forward index*, far above every
# slot's range, so a forward never takes a local instance's port.
FORWARD_BASE = 20000
FORWARD_BLOCK = 20  # 5 single ports, then the 10 worker ports at +10
FORWARD_INDEXES = range(1, 101)


def forward_ports(index: int, slot: int) -> SlotPorts:
    """The local ports forwarded to a remote instance on `slot`, from forward block `index`."""
    from ktrdr.cli.sandbox.errors import SandboxError

    if index not in FORWARD_INDEXES:
        raise SandboxError(
            f"invalid forward index {index}: expected {FORWARD_INDEXES.start}.."
            f"{FORWARD_INDEXES.stop - 1}"
        )
    base = FORWARD_BASE + FORWARD_BLOCK * index
    singles = {key: base + offset for offset, key in enumerate(_SINGLE_PORTS)}
    return SlotPorts(slot=validate_slot(slot), **singles, worker_base=base + 10)


def local_ports(slot: int, forward: int | None) -> SlotPorts:
    """The ports this machine reaches an instance on: its slot's, or for a remote instance
    (`forward` set) the local ends of its SSH forwards."""
    return forward_ports(forward, slot) if forward else ports_for_slot(slot)


def port_map(engine: SlotPorts, local: SlotPorts) -> dict[int, int]:
    """Engine port -> the local port reaching it (empty when they are the same)."""
    if engine == local:
        return {}
    ours = local.all_ports()
    return {port: ours[name] for name, port in engine.all_ports().items()}


def port_table_rows() -> list[tuple[str, str, str]]:
    """(service, env variable, formula) rows for docs and `--help`."""
    rows = [(key, var, f"{base}+N") for key, (var, base) in _SINGLE_PORTS.items()]
    rows.append(
        ("workers", "KTRDR_WORKER_PORT_BASE", f"{WORKER_PORT_BASE}+10N … {WORKER_PORT_BASE}+10N+9")
    )
    return rows
