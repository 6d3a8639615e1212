"""The one table of host ports per slot. Everything else (env file, compose variables, gate,
`list`, docs) derives ports from here; ports are never stored anywhere they could drift.

Slot 0 is the main dev environment with the standard ports. Slots 1..10 keep the seed's ports
(standard port + N); slots 11..99 each get a block of 20 ports at 22000+20N, a range no common
tool uses by default (COMMON_TOOL_PORTS; tests/unit/sandbox/test_port_map.py checks all of it).
Which slots `create`/`init` pick from is the machine's KTRDR_SLOTS (slots/slot_range.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from ktrdr.cli.sandbox.base.errors import SandboxError

MAIN_SLOT = 0
FIRST_SANDBOX_SLOT = 1
SEED_LAST_SLOT = 10  # slots 1..10: the seed's ports, standard port + N
LAST_SLOT = 99
SANDBOX_SLOTS = range(FIRST_SANDBOX_SLOT, LAST_SLOT + 1)  # every slot that has ports
ALL_SLOTS = range(MAIN_SLOT, LAST_SLOT + 1)

WORKER_PORTS_PER_SLOT = 10

# Slots above SEED_LAST_SLOT: one block of BLOCK_SIZE ports per slot at BLOCK_BASE + BLOCK_SIZE*N
# (slot 11: 22220..22239, slot 99: 23980..23999), laid out like a forward block: the single
# ports at +0..+4 in _SINGLE_PORTS order, the workers at +10..+19.
BLOCK_BASE = 22000
BLOCK_SIZE = 20
BLOCK_WORKER_OFFSET = 10

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

    if not MAIN_SLOT <= slot <= LAST_SLOT:
        raise SandboxError(
            f"invalid slot {slot}: slots are {MAIN_SLOT} (main) and "
            f"{FIRST_SANDBOX_SLOT}..{LAST_SLOT} (sandboxes)"
        )
    return slot


def ports_for_slot(slot: int) -> SlotPorts:
    validate_slot(slot)
    if slot > SEED_LAST_SLOT:
        base = BLOCK_BASE + BLOCK_SIZE * slot
        singles = {key: base + offset for offset, key in enumerate(_SINGLE_PORTS)}
        return SlotPorts(slot=slot, **singles, worker_base=base + BLOCK_WORKER_OFFSET)
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


def port_table_rows() -> list[tuple[str, str, str, str]]:
    """(service, env variable, formula for slots 0..10, formula for slots 11..99) rows for the
    docs."""
    block = f"{BLOCK_BASE}+{BLOCK_SIZE}N"
    rows = [
        (key, var, f"{base}+N", f"{block}+{offset}")
        for offset, (key, (var, base)) in enumerate(_SINGLE_PORTS.items())
    ]
    last = BLOCK_WORKER_OFFSET + WORKER_PORTS_PER_SLOT - 1
    rows.append(
        (
            "workers",
            "KTRDR_WORKER_PORT_BASE",
            f"{WORKER_PORT_BASE}+10N … {WORKER_PORT_BASE}+10N+9",
            f"{block}+{BLOCK_WORKER_OFFSET} … {block}+{last}",
        )
    )
    return rows


# Ports (first, last, who) that common tools listen on by default. No port of slots 11..99 is in
# one (checked over the whole range by tests/unit/sandbox/test_port_map.py); slot 0 *is* the
# standard ports, and slots 1..10 keep the seed's ports, which touch the few listed in
# SEED_OVERLAPS. Rendered into docs/sandbox.md "Ports and slots".
COMMON_TOOL_PORTS: tuple[tuple[int, int, str], ...] = (
    (1433, 1433, "SQL Server"),
    (1521, 1521, "Oracle"),
    (1883, 1883, "MQTT"),
    (2181, 2181, "ZooKeeper"),
    (2375, 2376, "Docker API"),
    (2379, 2380, "etcd"),
    (3000, 3000, "Grafana, Node/React/Rails dev servers"),
    (3100, 3100, "Loki"),
    (3200, 3200, "Tempo"),
    (3306, 3306, "MySQL"),
    (4000, 4000, "Phoenix, Jekyll"),
    (4200, 4200, "Angular"),
    (4317, 4318, "OpenTelemetry OTLP"),
    (4444, 4444, "Selenium"),
    (5000, 5001, "Flask, Docker registry, macOS AirPlay"),
    (5044, 5044, "Logstash Beats"),
    (5173, 5173, "Vite"),
    (5432, 5432, "PostgreSQL"),
    (5601, 5601, "Kibana"),
    (5672, 5672, "RabbitMQ"),
    (5900, 5900, "VNC"),
    (6006, 6006, "TensorBoard, Storybook"),
    (6379, 6379, "Redis"),
    (6443, 6443, "Kubernetes API"),
    (7474, 7474, "Neo4j"),
    (7687, 7687, "Neo4j Bolt"),
    (8000, 8000, "Django, uvicorn, python -m http.server"),
    (8080, 8081, "HTTP alternates, Jenkins, Tomcat"),
    (8088, 8088, "Superset, Hadoop"),
    (8443, 8443, "HTTPS alternate"),
    (8501, 8501, "Streamlit"),
    (8888, 8888, "Jupyter"),
    (9000, 9001, "MinIO, Portainer, php-fpm"),
    (9042, 9042, "Cassandra"),
    (9090, 9090, "Prometheus"),
    (9091, 9091, "Prometheus Pushgateway"),
    (9092, 9092, "Kafka"),
    (9093, 9093, "Alertmanager"),
    (9100, 9100, "node_exporter"),
    (9200, 9200, "Elasticsearch, OpenSearch"),
    (9300, 9300, "Elasticsearch transport"),
    (9411, 9411, "Zipkin"),
    (9443, 9443, "Portainer"),
    (11211, 11211, "memcached"),
    (14250, 14250, "Jaeger gRPC"),
    (14268, 14268, "Jaeger collector"),
    (15672, 15672, "RabbitMQ management"),
    (16686, 16686, "Jaeger UI"),
    (17500, 17500, "Dropbox LAN sync"),
    (19000, 19002, "Expo"),
    (22000, 22000, "Syncthing"),
    (24224, 24224, "Fluentd"),
    (25565, 25565, "Minecraft"),
    (26257, 26257, "CockroachDB"),
    (27017, 27019, "MongoDB"),
    (30000, 32767, "Kubernetes NodePorts"),
    (32768, 65535, "ephemeral ports (Linux 32768-60999, IANA/macOS/Windows 49152-65535)"),
)

# (slot, port, tool) where a seed slot (1..10) keeps a port a tool above also uses.
SEED_OVERLAPS: tuple[tuple[int, int, str], ...] = (
    (1, 9091, "Prometheus Pushgateway"),
    (2, 9092, "Kafka"),
    (3, 9093, "Alertmanager"),
    (4, 5044, "Logstash Beats"),
    (10, 9100, "node_exporter"),
)


def common_tool_at(port: int) -> str | None:
    """The common tool whose default range holds `port`, if any."""
    return next((who for first, last, who in COMMON_TOOL_PORTS if first <= port <= last), None)
