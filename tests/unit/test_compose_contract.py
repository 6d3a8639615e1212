"""The compose contract: docker-compose.sandbox.yml rendered by `docker compose config` (no engine
needed) for every slot 0..10, with the env file the sandbox writes."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from ktrdr.cli.sandbox.slots.ports import ALL_SLOTS, ports_for_slot
from tests.support.compose_render import (
    OFFLINE_ENV,
    OWNER,
    REPO,
    SHARED_ROOT,
    compose_config,
    rendered,
    write_env,
)

WORKERS = ("backtest-worker-1", "backtest-worker-2", "training-worker-1", "training-worker-2")
LONG_RUNNING = ("db", "backend", *WORKERS, "prometheus", "grafana", "jaeger")

pytestmark = pytest.mark.skipif(
    shutil.which("docker") is None and not os.environ.get("CI"),
    reason="needs the docker CLI with Compose v2 (no engine needed): run `make docker`",
)


def host_ports(config: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(service, host ip, host port) of every published port."""
    return [
        (name, port.get("host_ip", "0.0.0.0"), int(port["published"]))
        for name, service in config["services"].items()
        for port in service.get("ports", [])
        if port.get("published")
    ]


@pytest.mark.parametrize("slot", list(ALL_SLOTS))
def test_every_slot_renders_with_no_unset_variable_and_only_localhost_ports(slot: int) -> None:
    config = rendered(slot)

    ports = host_ports(config)
    assert {ip for _, ip, _ in ports} == {"127.0.0.1"}
    assert all("container_name" not in s for s in config["services"].values())
    published = [port for _, _, port in ports]
    assert len(published) == len(set(published)), "a host port is used by two services"


@pytest.mark.parametrize("slot", [0, 3, 10])
def test_host_ports_are_exactly_the_slots_ports(slot: int) -> None:
    p = ports_for_slot(slot)
    expected = {
        "backend": p.api,
        "db": p.db,
        "grafana": p.grafana,
        "jaeger": p.jaeger_ui,
        "prometheus": p.prometheus,
        **{name: p.worker_base + offset for offset, name in enumerate(WORKERS)},
    }

    ports = {name: port for name, _, port in host_ports(rendered(slot))}

    assert ports == expected


def test_no_host_port_is_shared_by_two_slots() -> None:
    owners: dict[int, int] = {}
    for slot in ALL_SLOTS:
        for _, _, port in host_ports(rendered(slot)):
            assert port not in owners, f"port {port} used by slots {owners[port]} and {slot}"
            owners[port] = slot


def test_container_ports_are_fixed_whatever_the_slot() -> None:
    def targets(slot: int) -> dict[str, list[int]]:
        services = rendered(slot)["services"].items()
        return {name: [int(p["target"]) for p in s.get("ports", [])] for name, s in services}

    assert targets(0) == targets(7)
    assert targets(0)["backend"] == [8000]
    assert targets(0)["db"] == [5432]
    assert {tuple(targets(0)[w]) for w in WORKERS} == {(8080,)}


def test_every_service_volume_and_network_carries_the_owner_labels() -> None:
    config = rendered(4)
    expected = {
        "ktrdr.owner": OWNER,
        "ktrdr.owner-home": "/home/dev/.ktrdr",
        "ktrdr.instance": "ktrdr--feat-4",
        "ktrdr.slot": "4",
        "ktrdr.checkout": "/work/ktrdr--feat-4",
        "ktrdr.test": "0",
    }

    labelled = [
        *config["services"].values(),
        *config["volumes"].values(),
        *config["networks"].values(),
    ]

    assert len(labelled) >= len(LONG_RUNNING) + 2 + 2
    for item in labelled:
        assert expected.items() <= item["labels"].items(), item


def test_workers_are_two_backtest_and_two_training_labelled_by_type() -> None:
    services = rendered(1)["services"]

    types = {
        name: s["labels"]["ktrdr.worker-type"]
        for name, s in services.items()
        if "ktrdr.worker-type" in s.get("labels", {})
    }

    assert types == {
        "backtest-worker-1": "backtest",
        "backtest-worker-2": "backtest",
        "training-worker-1": "training",
        "training-worker-2": "training",
    }
    assert services["backtest-worker-2"]["environment"]["KTRDR_WORKER_ID"] == "backtest-worker-2"


def test_no_service_runs_a_healthcheck_and_the_startup_order_needs_none() -> None:
    """Idle cost: a healthcheck is an exec every few seconds. Neither the compose file nor the
    offline images declare one (`healthcheck: {disable: true}` would break `up --wait`), the
    gate's probes decide readiness instead, and the startup order waits only on starts and on
    the migrations finishing."""
    services = rendered(2)["services"]

    for name in LONG_RUNNING:
        assert "healthcheck" not in services[name], name
    for dockerfile in (REPO / "docker" / "offline").glob("*/Dockerfile"):
        instructions = [
            line.split()[0] for line in dockerfile.read_text().splitlines() if line.strip()
        ]
        assert "HEALTHCHECK" not in instructions, dockerfile
    assert services["migrate"]["depends_on"]["db"]["condition"] == "service_started"
    assert services["backend"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    conditions = [
        spec.get("condition")
        for service in services.values()
        for spec in (service.get("depends_on") or {}).values()
    ]
    assert "service_healthy" not in conditions
    assert services["e2e-tests"]["profiles"] == ["e2e"]


def test_shared_dir_and_source_are_mounted_without_creating_missing_paths() -> None:
    services = rendered(5)["services"]

    for name in ("backend", *WORKERS):
        mounts = {m["target"]: m for m in services[name]["volumes"]}
        assert mounts["/app/ktrdr"]["source"] == str(REPO / "ktrdr")
        for sub in ("data", "strategies", "models"):
            mount = mounts[f"/shared/{sub}"]
            assert mount["source"] == str(SHARED_ROOT / sub)
            assert mount["bind"].get("create_host_path", False) is False
        assert mounts["/shared/models"].get("read_only") is not True


def test_db_data_lives_in_a_named_volume_of_the_project() -> None:
    config = rendered(6)

    db_mounts = config["services"]["db"]["volumes"]

    assert [(m["type"], m["source"]) for m in db_mounts] == [("volume", "db-data")]
    assert config["volumes"]["db-data"]["name"] == "contract_db-data"


def test_instance_identity_and_secrets_reach_the_containers() -> None:
    services = rendered(8)["services"]

    assert services["backend"]["environment"]["KTRDR_INSTANCE_ID"] == "ktrdr--feat-8"
    assert services["backend"]["environment"]["KTRDR_DB_PASSWORD"] == "db-secret-8"
    assert services["db"]["environment"]["POSTGRES_PASSWORD"] == "db-secret-8"
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "grafana-secret-8"
    e2e = services["e2e-tests"]["environment"]
    assert e2e["KTRDR_E2E_API_URL"] == "http://backend:8000"


def test_offline_env_file_switches_every_image_and_upstream_defaults_are_pinned() -> None:
    offline = {n: s["image"] for n, s in rendered(1)["services"].items()}
    upstream = {n: s["image"] for n, s in rendered(1, "upstream")["services"].items()}

    assert all(i.startswith(("ktrdr-offline/", "ktrdr-app:")) for i in offline.values())
    assert upstream["db"] == "postgres:16.4"
    assert upstream["prometheus"] == "prom/prometheus:v2.54.1"
    assert upstream["grafana"] == "grafana/grafana:11.2.0"
    assert upstream["jaeger"] == "jaegertracing/all-in-one:1.60"
    assert all(":" in i and not i.endswith(":latest") for i in upstream.values())


def test_app_image_is_built_from_the_dockerfile_with_the_base_image_variable() -> None:
    services = rendered(1)["services"]
    upstream = rendered(1, "upstream")["services"]

    assert services["migrate"]["build"]["args"]["BASE_IMAGE"] == (
        "ktrdr-offline/python-base:bookworm"
    )
    assert upstream["migrate"]["build"]["args"]["BASE_IMAGE"] == "python:3.12-slim"
    assert {services[name]["pull_policy"] for name in ("backend", *WORKERS)} == {"never"}


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("KTRDR_SHARED_DIR", "KTRDR_SHARED_DIR is not set"),
        ("KTRDR_API_PORT", "KTRDR_API_PORT is not set"),
        ("KTRDR_INSTANCE_ID", "KTRDR_INSTANCE_ID is not set"),
        ("KTRDR_DB_PASSWORD", "KTRDR_DB_PASSWORD is not set"),
    ],
)
def test_a_missing_variable_fails_clearly_instead_of_expanding_to_nothing(
    tmp_path: Path, missing: str, message: str
) -> None:
    env_file = write_env(tmp_path, 2)
    lines = env_file.read_text().splitlines()
    env_file.write_text("\n".join(x for x in lines if not x.startswith(f"{missing}=")) + "\n")

    result = compose_config(env_file, OFFLINE_ENV, check=False)

    assert result.returncode != 0
    assert message in result.stderr


def test_prometheus_scrapes_backend_and_every_worker_service() -> None:
    import yaml

    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }

    assert {"backend:8000", *(f"{w}:8080" for w in WORKERS)} <= targets


def test_grafana_provisions_prometheus_jaeger_and_a_dashboard_on_our_metrics() -> None:
    import yaml

    grafana = REPO / "deploy" / "grafana"
    datasources = yaml.safe_load(
        (grafana / "provisioning" / "datasources" / "datasources.yml").read_text()
    )["datasources"]
    dashboard = json.loads((grafana / "dashboards" / "ktrdr-overview.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])

    assert {(d["type"], d["url"]) for d in datasources} == {
        ("prometheus", "http://prometheus:9090"),
        ("jaeger", "http://jaeger:16686"),
    }
    for metric in (
        "ktrdr_http_requests_total",
        "ktrdr_http_request_duration_seconds_bucket",
        "ktrdr_operations",
    ):
        assert metric in exprs


def test_no_bind_mount_lets_the_engine_create_a_missing_host_path() -> None:
    # A worktree deleted while `up` is still starting containers must stay deleted: with
    # create_host_path the engine would recreate its directories as empty root-owned dirs.
    services = rendered(3)["services"]

    binds = [
        (name, mount["source"], mount.get("bind", {}).get("create_host_path", False))
        for name, service in services.items()
        for mount in service.get("volumes", [])
        if mount["type"] == "bind"
    ]

    assert len(binds) >= 10
    assert [b for b in binds if b[2] is not False] == []


def test_the_python_services_serve_from_one_process_each_with_hot_reload() -> None:
    """`uvicorn --reload` kept a supervisor and multiprocessing's resource tracker beside every
    server (~20 MiB each) and polled for changes 20 times a second; ktrdr/api/server.py serves
    and reloads in one process (tests/unit/test_server.py)."""
    services = rendered(1)["services"]

    assert services["backend"]["command"] == ["python", "-m", "ktrdr.api", "--reload"]
    for name in WORKERS:
        kind = services[name]["labels"]["ktrdr.worker-type"]
        assert services[name]["command"] == [
            "python", "-m", "ktrdr.workers", "--type", kind, "--reload"
        ]  # fmt: skip
    assert not [n for n, s in services.items() if "uvicorn" in " ".join(s.get("command") or [])]


def test_database_and_prometheus_keep_their_idle_settings() -> None:
    """Measured on an idle stack: the database's background processes at half the CPU with
    these, Prometheus at about two thirds with one Go thread (docs/sandbox.md)."""
    services = rendered(1)["services"]

    db = services["db"]["command"]
    settings = dict(db[i + 1].split("=", 1) for i, arg in enumerate(db) if arg == "-c")
    assert {
        "max_logical_replication_workers": "0",
        "autovacuum_naptime": "300",
        "bgwriter_delay": "10000",
        "wal_writer_delay": "10000",
    }.items() <= settings.items()
    assert services["prometheus"]["environment"]["GOMAXPROCS"] == "1"
