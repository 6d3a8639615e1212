"""Smoke tests of the offline image set (`make images-offline`) and of the docker harness itself,
on the real engine: compose projects, published 127.0.0.1 ports, cleanup by label."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import pytest

from ktrdr.envfile import read_env_file
from tests.support.engine import (
    OFFLINE_POSTGRES_IMAGE,
    PROJECT_LABEL,
    TEST_LABEL,
    ComposeProject,
    docker,
    image_exists,
    leftovers,
    missing_engine_outcome,
    remove_project,
    wait_for_postgres,
)

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
OFFLINE_ENV = REPO / "docker" / "images-offline.env"
NOTHING: dict[str, list[str]] = {"container": [], "volume": [], "network": []}


def project_label(project: ComposeProject) -> str:
    return f"{PROJECT_LABEL}={project.name}"


def offline_images() -> dict[str, str]:
    return dict(read_env_file(OFFLINE_ENV))


def require_images(*images: str) -> None:
    missing = [image for image in images if not image_exists(image)]
    if missing:
        message = f"offline images missing: {', '.join(missing)} (run `make images-offline`)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def labels_yaml(project: ComposeProject, indent: int) -> str:
    pad = " " * indent
    return "".join(f'{pad}{key}: "{value}"\n' for key, value in project.labels.items())


def write_compose(tmp_path: Path, project: ComposeProject, services: str) -> Path:
    """A compose file whose services, volumes and default network carry the project's labels."""
    text = (
        f"services:\n{services}"
        f"volumes:\n  data:\n    labels:\n{labels_yaml(project, 6)}"
        f"networks:\n  default:\n    labels:\n{labels_yaml(project, 6)}"
    )
    path = tmp_path / f"{project.name}.yml"
    path.write_text(text)
    return path


def postgres_service(project: ComposeProject) -> str:
    return (
        "  db:\n"
        "    image: ${KTRDR_POSTGRES_IMAGE}\n"
        "    environment:\n"
        "      POSTGRES_USER: ktrdr\n"
        "      POSTGRES_PASSWORD: ${PG_PASSWORD:?set PG_PASSWORD}\n"
        "      POSTGRES_DB: ktrdr\n"
        '    ports: ["127.0.0.1:${PG_PORT:?set PG_PORT}:5432"]\n'
        "    volumes: [data:/var/lib/postgresql/data]\n"
        "    labels:\n"
        f"{labels_yaml(project, 6)}"
    )


def dsn(port: int, password: str) -> str:
    return f"postgresql://ktrdr:{password}@127.0.0.1:{port}/ktrdr"


def test_offline_postgres_runs_under_two_compose_projects_at_once_each_with_its_own_password(
    compose_project: Callable[[str], ComposeProject], tmp_path: Path
) -> None:
    require_images(OFFLINE_POSTGRES_IMAGE)
    projects = [compose_project("pg-a"), compose_project("pg-b")]
    settings = [
        {
            "PG_PORT": str(free_port()),
            "PG_PASSWORD": secrets.token_urlsafe(12),
            "KTRDR_POSTGRES_IMAGE": OFFLINE_POSTGRES_IMAGE,
        }
        for _ in projects
    ]
    files = [write_compose(tmp_path, p, postgres_service(p)) for p in projects]

    started = [
        subprocess.Popen(
            ["docker", "compose", "-p", p.name, "-f", str(f), "up", "-d", "--wait"],
            env={**p.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p, f, env in zip(projects, files, settings, strict=True)
    ]
    for proc in started:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err

    (a, b) = settings
    for mine, other in ((a, b), (b, a)):
        wait_for_postgres(dsn(int(mine["PG_PORT"]), mine["PG_PASSWORD"]))
        with psycopg.connect(dsn(int(mine["PG_PORT"]), mine["PG_PASSWORD"])) as conn:
            assert conn.execute("SELECT current_user, current_database()").fetchone() == (
                "ktrdr",
                "ktrdr",
            )
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(dsn(int(mine["PG_PORT"]), other["PG_PASSWORD"]), connect_timeout=5)

    for project, file, env in zip(projects, files, settings, strict=True):
        project.compose("down", "-v", "--timeout", "10", files=[file], env=env)
        project.remove()
        for owner in (f"com.docker.compose.project={project.name}", project_label(project)):
            assert leftovers(TEST_LABEL, owner) == NOTHING, owner


def test_offline_postgres_runs_initdb_scripts_on_first_start_only(
    compose_project: Callable[[str], ComposeProject], tmp_path: Path
) -> None:
    require_images(OFFLINE_POSTGRES_IMAGE)
    project = compose_project("pg-init")
    initdb = tmp_path / "initdb"
    initdb.mkdir()
    (initdb / "01-table.sql").write_text(
        "CREATE TABLE seeded (n int); INSERT INTO seeded VALUES (1);"
    )
    (initdb / "02-more.sh").write_text(
        'psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" '
        '-c "INSERT INTO seeded VALUES (2)"\n'
    )
    service = postgres_service(project).replace(
        "    volumes: [data:/var/lib/postgresql/data]\n",
        f"    volumes: [data:/var/lib/postgresql/data, {initdb}:/docker-entrypoint-initdb.d:ro]\n",
    )
    file = write_compose(tmp_path, project, service)
    env = {"PG_PORT": str(free_port()), "PG_PASSWORD": "first"}
    env["KTRDR_POSTGRES_IMAGE"] = OFFLINE_POSTGRES_IMAGE

    project.compose("up", "-d", "--wait", files=[file], env=env)
    project.compose("restart", "db", files=[file], env=env)
    # The password only counts on first init (PITFALLS): a changed one must not take effect.
    project.compose("up", "-d", "--wait", files=[file], env={**env, "PG_PASSWORD": "second"})
    wait_for_postgres(dsn(int(env["PG_PORT"]), "first"))
    with psycopg.connect(dsn(int(env["PG_PORT"]), "first")) as conn:
        rows = conn.execute("SELECT n FROM seeded ORDER BY n").fetchall()
    assert rows == [(1,), (2,)]


def otlp_export(service: str) -> bytes:
    """A real OTLP ExportTraceServiceRequest with one span of service."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    name = KeyValue(key="service.name", value=AnyValue(string_value=service))
    span = Span(name="smoke", trace_id=b"t" * 16, span_id=b"s" * 8, start_time_unix_nano=1)
    spans = ResourceSpans(
        resource=Resource(attributes=[name]), scope_spans=[ScopeSpans(spans=[span])]
    )
    return bytes(ExportTraceServiceRequest(resource_spans=[spans]).SerializeToString())


def get_when_up(url: str, *, timeout: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, timeout=3)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_grafana_and_jaeger_standins_and_prometheus_answer_on_published_loopback_ports(
    compose_project: Callable[[str], ComposeProject], tmp_path: Path
) -> None:
    images = offline_images()
    grafana, jaeger = images["KTRDR_GRAFANA_IMAGE"], images["KTRDR_JAEGER_IMAGE"]
    prometheus = images["KTRDR_PROMETHEUS_IMAGE"]
    require_images(grafana, jaeger, prometheus)
    project = compose_project("obs")
    ports = {name: free_port() for name in ("grafana", "ui", "otlp_http", "otlp_grpc", "prom")}
    labels = f"    labels:\n{labels_yaml(project, 6)}"
    services = (
        f"  grafana:\n    image: {grafana}\n"
        f'    ports: ["127.0.0.1:{ports["grafana"]}:3000"]\n{labels}'
        f"  jaeger:\n    image: {jaeger}\n"
        f'    ports: ["127.0.0.1:{ports["ui"]}:16686", "127.0.0.1:{ports["otlp_http"]}:4318",'
        f' "127.0.0.1:{ports["otlp_grpc"]}:4317"]\n{labels}'
        f"  prometheus:\n    image: {prometheus}\n"
        f'    ports: ["127.0.0.1:{ports["prom"]}:9090"]\n{labels}'
    )
    file = write_compose(tmp_path, project, services)
    project.compose("up", "-d", files=[file])

    health = get_when_up(f"http://127.0.0.1:{ports['grafana']}/api/health")
    assert health.status_code == 200
    assert health.json()["database"] == "ok"
    assert get_when_up(f"http://127.0.0.1:{ports['grafana']}/").status_code == 200

    ui = get_when_up(f"http://127.0.0.1:{ports['ui']}/")
    assert ui.status_code == 200
    assert "text/html" in ui.headers["content-type"]
    assert ui.headers["x-ktrdr-standin"] == "1"
    services_seen = httpx.get(f"http://127.0.0.1:{ports['ui']}/api/services", timeout=5).json()
    assert services_seen["standin"] is True
    assert services_seen["data"] == []
    get_when_up(f"http://127.0.0.1:{ports['otlp_http']}/")
    posted = httpx.post(
        f"http://127.0.0.1:{ports['otlp_http']}/v1/traces",
        content=otlp_export("ktrdr-smoke"),
        headers={"Content-Type": "application/x-protobuf"},
        timeout=5,
    )
    assert posted.status_code == 200
    services_seen = httpx.get(f"http://127.0.0.1:{ports['ui']}/api/services", timeout=5).json()
    assert services_seen["data"] == ["ktrdr-smoke"]
    with socket.create_connection(("127.0.0.1", ports["otlp_grpc"]), timeout=5) as conn:
        conn.sendall(b"PRI * HTTP/2.0\r\n\r\n")

    ready = get_when_up(f"http://127.0.0.1:{ports['prom']}/-/ready")
    deadline = time.monotonic() + 60
    while ready.status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
        ready = httpx.get(f"http://127.0.0.1:{ports['prom']}/-/ready", timeout=3)
    assert ready.status_code == 200

    for container in docker(
        "ps", "-q", "--filter", f"label={project_label(project)}"
    ).stdout.split():
        for line in docker("port", container).stdout.splitlines():
            assert line.split(" -> ")[1].startswith("127.0.0.1:"), line


def test_standin_images_say_they_are_not_the_real_grafana_and_jaeger() -> None:
    images = offline_images()
    for key, real in (("KTRDR_GRAFANA_IMAGE", "Grafana"), ("KTRDR_JAEGER_IMAGE", "Jaeger")):
        require_images(images[key])
        description = docker(
            "image",
            "inspect",
            "-f",
            '{{ index .Config.Labels "org.opencontainers.image.description" }}',
            images[key],
        ).stdout.strip()
        assert description == f"offline stand-in, not {real}"
        assert "standin" in images[key]


def wait_for_sigterm_handler(container: str, timeout: float = 60) -> None:
    """Until PID 1 has installed its SIGTERM handler (bit 15 of SigCgt in /proc/1/status)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = docker("exec", container, "cat", "/proc/1/status", check=False).stdout
        caught = [line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")]
        if caught and int(caught[0], 16) & (1 << (15 - 1)):
            return
        time.sleep(0.2)
    raise AssertionError(f"{container}: PID 1 never caught SIGTERM")


@pytest.mark.parametrize("key", ["KTRDR_GRAFANA_IMAGE", "KTRDR_JAEGER_IMAGE"])
def test_standins_stop_on_sigterm_instead_of_waiting_for_the_kill(key: str) -> None:
    # As PID 1 without a handler they ignored SIGTERM: every down/destroy waited 10 s for them.
    image = offline_images()[key]
    require_images(image)
    name = f"ktrdr-test-sigterm-{secrets.token_hex(4)}"
    docker("run", "-d", "--name", name, "--label", "ktrdr.test=1", image)
    try:
        wait_for_sigterm_handler(name)
        docker("stop", "--time", "30", name)
        exit_code = docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip()
        assert exit_code == "0"  # 137 would mean it had to be killed
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def test_removing_a_project_deletes_its_containers_volumes_and_networks_even_after_a_failure(
    compose_project: Callable[[str], ComposeProject],
) -> None:
    require_images(OFFLINE_POSTGRES_IMAGE)
    project = compose_project("cleanup")
    label = [f"--label=com.docker.compose.project={project.name}", "--label=ktrdr.test=1"]
    docker("volume", "create", *label, f"{project.name}_data")
    docker("network", "create", *label, f"{project.name}_default")
    docker(
        "create",
        *label,
        "--name",
        f"{project.name}-db-1",
        "--network",
        f"{project.name}_default",
        "-v",
        f"{project.name}_data:/var/lib/postgresql/data",
        OFFLINE_POSTGRES_IMAGE,
    )

    remove_project(project.name)

    assert leftovers(f"com.docker.compose.project={project.name}") == NOTHING


def test_missing_engine_skips_on_a_laptop_but_fails_in_ci() -> None:
    assert missing_engine_outcome({}) == "skip"
    assert missing_engine_outcome({"CI": "true"}) == "fail"


def test_a_second_offline_images_run_skips_every_built_image() -> None:
    """Skipping is seen in what the script says, not in how long it took (a timing bound fails
    on a busy machine): every image is up to date, none is built or bootstrapped again."""
    images = [*offline_images().values(), "ktrdr-offline/debian:bookworm"]
    require_images(*images)
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "offline-images.sh")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for image in images:
        assert f"{image}: up to date" in result.stderr
    assert ": building (log:" not in result.stderr
    assert "debootstrap" not in result.stderr
    assert ": built (" not in result.stderr


def test_offline_postgres_fixture_yields_a_superuser_dsn_on_loopback(offline_postgres: str) -> None:
    assert "@127.0.0.1:" in offline_postgres
    with psycopg.connect(offline_postgres, autocommit=True) as conn:
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        conn.execute("CREATE DATABASE ktrdr_fixture_check")
        conn.execute("DROP DATABASE ktrdr_fixture_check")
