"""The remote override, derived from the real docker-compose.sandbox.yml by `docker compose
config` (no engine needed): no bind mount is left, every former bind is a named volume at the
same target, instance volumes carry the stack's labels, shared ones are the home's."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from ktrdr.cli.sandbox.base import stack_file
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.base.proc import run
from ktrdr.cli.sandbox.e2e import run as e2e
from ktrdr.cli.sandbox.engine.handle import Engine
from ktrdr.cli.sandbox.home.instance import EnvSettings, render_env
from ktrdr.cli.sandbox.remote import stack as remote_stack
from ktrdr.envfile import parse_env_text

REPO = Path(__file__).resolve().parents[3]
OWNER = "c0ffee42"

pytestmark = pytest.mark.skipif(
    shutil.which("docker") is None and not os.environ.get("CI"),
    reason="needs the docker CLI with Compose v2 (no engine needed): run `make docker`",
)


def _checkout(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """An instance directory with the real compose file, the source dirs it mounts and an
    env file written by the sandbox's own renderer."""
    root = tmp_path / "work" / "ktrdr--feat"
    (root / "docker").mkdir(parents=True)
    shutil.copy2(REPO / "docker-compose.sandbox.yml", root)
    shutil.copy2(REPO / "docker" / "images-offline.env", root / "docker")
    for sub in ("ktrdr", "tests", "deploy/prometheus", "deploy/grafana/provisioning"):
        (root / sub).mkdir(parents=True)
    (root / "deploy" / "grafana" / "dashboards").mkdir()
    shared = tmp_path / "home" / "shared"
    for sub in ("data", "strategies", "models"):
        (shared / sub).mkdir(parents=True)
    settings = EnvSettings(
        "ktrdr--feat", 4, shared, "offline", "db-pw", "gf-pw", checkout=root, owner=OWNER
    )
    text = render_env(settings, command="test")
    (root / ".env.sandbox").write_text(text)
    return root, parse_env_text(text)


def _merged(root: Path) -> dict[str, Any]:
    argv = [
        "docker", "compose", "-p", "p", "--env-file", str(root / ".env.sandbox"),
        "-f", str(root / "docker-compose.sandbox.yml"), "--project-directory", str(root),
        *stack_file.override_args(root), "--profile", "*", "config", "--format", "json",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KTRDR_", "COMPOSE_"))}
    return dict(json.loads(run(argv, env=env).stdout))


def _mounts(config: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (service, mount["target"]): mount
        for service, spec in config["services"].items()
        for mount in spec.get("volumes", [])
    }


@pytest.fixture
def planned(tmp_path: Path) -> tuple[Path, remote_stack.RemotePlan, dict[str, Any]]:
    root, env = _checkout(tmp_path)
    before = _merged(root)
    plan = remote_stack.override_for(Engine(), root, env)
    return root, plan, before


def test_no_bind_mount_is_left_and_each_became_a_volume_at_the_same_target(
    planned: tuple[Path, remote_stack.RemotePlan, dict[str, Any]],
) -> None:
    root, plan, before = planned
    after = _mounts(_merged(root))

    binds = {key: m for key, m in _mounts(before).items() if m["type"] == "bind"}
    assert binds  # the stack does bind-mount
    assert [key for key, m in after.items() if m["type"] == "bind"] == []
    for key, bind in binds.items():
        assert after[key]["type"] == "volume", key
        assert bool(after[key].get("read_only")) == bool(bind.get("read_only")), key
    kept = {key: m for key, m in _mounts(before).items() if m["type"] == "volume"}
    assert {key: after[key]["source"] for key in kept} == {k: m["source"] for k, m in kept.items()}
    assert plan.override_path == root / ".sandbox" / "compose.remote.yml"


def test_instance_volumes_carry_the_stacks_labels_and_shared_ones_the_homes(
    planned: tuple[Path, remote_stack.RemotePlan, dict[str, Any]],
) -> None:
    root, plan, _ = planned
    volumes = _merged(root)["volumes"]

    src = volumes["src-ktrdr"]
    assert src["name"] == f"{plan.project}_src-ktrdr"
    assert src["labels"]["ktrdr.instance"] == "ktrdr--feat"
    assert src["labels"]["ktrdr.owner"] == OWNER
    assert src["labels"] == volumes["db-data"]["labels"]  # exactly the stack's own
    assert not src.get("external")
    shared = volumes["shared-data"]
    assert shared == {"name": f"ktrdr-shared-{OWNER}-data", "external": True}
    labels = plan.shared_labels()
    assert labels["ktrdr.shared-data"] == "1"
    assert labels["ktrdr.owner"] == OWNER
    assert "ktrdr.instance" not in labels
    assert plan.volume_labels("src-ktrdr")["com.docker.compose.project"] == plan.project


def test_only_the_source_written_by_services_is_live_and_watched_in_the_backend(
    planned: tuple[Path, remote_stack.RemotePlan, dict[str, Any]],
) -> None:
    root, plan, _ = planned

    assert [v.key for v in plan.volumes if v.live] == ["src-ktrdr"]
    assert plan.watch_service == "backend"
    watch = _merged(root)["services"]["backend"]["develop"]["watch"]
    assert len(watch) == 1
    assert watch[0]["action"] == "sync"
    assert watch[0]["path"] == str(root / "ktrdr")
    assert watch[0]["target"] == "/app/ktrdr"
    assert "**/__pycache__" in watch[0]["ignore"]


def test_read_only_volumes_are_mirrored_and_the_writable_shared_one_merged(
    planned: tuple[Path, remote_stack.RemotePlan, dict[str, Any]],
) -> None:
    _, plan, _ = planned
    by_key = {v.key: v for v in plan.volumes}

    assert set(by_key) == {
        "src-ktrdr",
        "src-tests",
        "src-deploy-prometheus",
        "src-deploy-grafana-provisioning",
        "src-deploy-grafana-dashboards",
        "shared-data",
        "shared-strategies",
        "shared-models",
    }
    assert not by_key["shared-models"].mirror
    assert all(v.mirror for k, v in by_key.items() if k != "shared-models")
    assert plan.image == "ktrdr-app:dev"  # the helper containers run the app image (Python)
    assert plan.builder_service == "migrate"  # its build section makes that image


def test_the_e2e_results_volume_is_where_the_suite_writes_junit(
    planned: tuple[Path, remote_stack.RemotePlan, dict[str, Any]],
) -> None:
    root, plan, _ = planned

    mount = _mounts(_merged(root))[("e2e-tests", e2e.CONTAINER_RESULTS)]

    assert remote_stack.E2E_RESULTS_TARGET == e2e.CONTAINER_RESULTS
    assert mount["source"] == remote_stack.E2E_RESULTS_KEY
    assert _merged(root)["volumes"][remote_stack.E2E_RESULTS_KEY]["name"] == plan.results_volume


def test_compose_file_args_name_the_override_only_when_it_exists(tmp_path: Path) -> None:
    assert stack_file.override_args(tmp_path) == []
    (tmp_path / ".sandbox").mkdir()
    (tmp_path / ".sandbox" / "compose.remote.yml").write_text("services: {}\n")

    assert stack_file.override_args(tmp_path) == [
        "-f",
        str(tmp_path / ".sandbox" / "compose.remote.yml"),
    ]


# --- from hand-made configs ----------------------------------------------------------------------


def _config(source: str, *, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "name": "proj",
        "services": {
            "app": {
                "image": "img",
                "restart": "unless-stopped",
                "volumes": [{"type": "bind", "source": source, "target": "/app/x"}],
            }
        },
        "volumes": {"data": {"labels": labels or {"ktrdr.instance": "i", "ktrdr.owner": OWNER}}},
    }


def test_a_bind_from_outside_the_checkout_and_the_shared_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    env = {"KTRDR_SHARED_DIR": str(tmp_path / "shared")}

    with pytest.raises(SandboxError, match=r"service app bind-mounts .*elsewhere.*neither"):
        remote_stack.plan_for(tmp_path / "root", env, _config(str(tmp_path / "elsewhere")))


def test_a_bind_of_one_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "one.yml").write_text("x: 1\n")

    with pytest.raises(SandboxError, match="is not a directory"):
        remote_stack.plan_for(tmp_path / "root", {}, _config(str(tmp_path / "root" / "one.yml")))


def test_a_config_without_labelled_volumes_is_refused(tmp_path: Path) -> None:
    (tmp_path / "root" / "x").mkdir(parents=True)
    config = _config(str(tmp_path / "root" / "x"), labels={"other": "1"})

    with pytest.raises(SandboxError, match="no volume with the instance's labels"):
        remote_stack.plan_for(tmp_path / "root", {}, config)


def test_dollars_in_paths_and_labels_are_escaped_from_interpolation(tmp_path: Path) -> None:
    root = tmp_path / "co$t"
    (root / "x").mkdir(parents=True)
    config = _config(str(root / "x"), labels={"ktrdr.instance": "i", "ktrdr.checkout": "/a$b"})

    text = remote_stack.override_text(remote_stack.plan_for(root, {}, config))

    assert f"path: {tmp_path}/co$$t/x" in text
    assert "ktrdr.checkout: /a$$b" in text
