"""The worktree's `.env.sandbox` is a view of what the home recorded: an agent that edits it
(another instance's project, port, id, owner, engine) gets a one-line refusal from every
command that would reach an engine or an API, and nothing changes. `init` rewrites the view.
No engine here (DOCKER_HOST points nowhere): every refusal must come before the engine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from ktrdr.cli.main import cli
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.home import registry
from ktrdr.cli.sandbox.home.instance import read_env
from ktrdr.cli.sandbox.instances import identity
from ktrdr.cli.sandbox.instances.locate import locate
from ktrdr.cli.sandbox.stack import compose
from tests.support.git_repos import git, make_repo
from tests.support.instances import edit_view

PROJECT = Path(__file__).resolve().parents[3]


@pytest.fixture
def two_instances(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Instances X (`feat`) and Y (`other`) of one home, made by the real `create`."""
    checkout = make_repo(tmp_path / "work" / "ktrdr")
    shutil.copy(PROJECT / "docker-compose.sandbox.yml", checkout / "docker-compose.sandbox.yml")
    git(checkout, "add", "docker-compose.sandbox.yml")
    git(checkout, "commit", "-q", "-m", "stack")
    monkeypatch.chdir(checkout)
    roots = []
    for name in ("feat", "other"):
        result = CliRunner().invoke(cli, ["sandbox", "create", name, "--json"])
        assert result.exit_code == 0, result.output
        roots.append(Path(json.loads(result.stdout)["path"]))
    return roots[0], roots[1]


def _other_value(key: str, y: Path) -> str:
    """What a hostile agent in X writes: Y's own value where Y has one."""
    y_view = read_env(y / ".env.sandbox")
    return {
        "KTRDR_DOCKER_CONTEXT": "someone-elses-engine",
        "KTRDR_FORWARD_INDEX": "3",
        "KTRDR_OWNER": "0badf00d",
        "KTRDR_OWNER_HOME": "/elsewhere/home",
        "KTRDR_SHARED_DIR": "/",
    }.get(key) or y_view[key]


IDENTITY_FIELDS = [
    "COMPOSE_PROJECT_NAME",
    "KTRDR_INSTANCE_ID",
    "KTRDR_SLOT",
    "KTRDR_API_PORT",
    "KTRDR_DB_PORT",
    "KTRDR_GRAFANA_PORT",
    "KTRDR_OWNER",
    "KTRDR_OWNER_HOME",
    "KTRDR_CHECKOUT",
    "KTRDR_SHARED_DIR",
    "KTRDR_DOCKER_CONTEXT",
    "KTRDR_FORWARD_INDEX",
]
# Every command that reaches an engine or an instance's API from the worktree.
COMMANDS = [
    ["sandbox", "status"],
    ["sandbox", "up"],
    ["sandbox", "down"],
    ["sandbox", "pause"],
    ["sandbox", "resume"],
    ["sandbox", "logs"],
    ["sandbox", "evidence"],
    ["sandbox", "test-e2e", "-k", "health"],
    ["sandbox", "db-env"],
    ["health"],
    ["config", "show"],
]


@pytest.mark.parametrize("key", IDENTITY_FIELDS)
def test_an_edited_identity_line_is_refused_by_every_command_and_nothing_changes(
    two_instances: tuple[Path, Path], key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y = two_instances
    edit_view(x, key, _other_value(key, y))
    monkeypatch.chdir(x)
    registry_before = registry.registry_path().read_bytes()
    views_before = [(root / ".env.sandbox").read_bytes() for root in (x, y)]
    for command in COMMANDS:
        result = CliRunner().invoke(cli, command)
        assert result.exit_code == 1, (command, result.output)
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1, (command, result.stderr)
        assert f"says {key}=" in errors[0], (command, errors[0])
        assert "this home recorded" in errors[0]
        assert "ktrdr sandbox init" in errors[0]
        assert "Traceback" not in result.output
    assert registry.registry_path().read_bytes() == registry_before
    assert [(root / ".env.sandbox").read_bytes() for root in (x, y)] == views_before
    assert not (x / ".sandbox" / "gate-report.json").exists()


def test_an_id_edited_to_another_instances_never_finds_that_instance(
    two_instances: tuple[Path, Path],
) -> None:
    x, y = two_instances
    edit_view(x, "KTRDR_INSTANCE_ID", "ktrdr--other")
    with pytest.raises(SandboxError, match="says KTRDR_INSTANCE_ID=ktrdr--other"):
        locate(None, x)
    # Where a command may look past the view (destroy), it is still X's record it acts on.
    found = locate(None, x, check_view=False)
    assert found.instance_id == "ktrdr--feat"
    assert found.env["COMPOSE_PROJECT_NAME"] != read_env(y / ".env.sandbox")["COMPOSE_PROJECT_NAME"]


def test_compose_gets_the_records_values_and_the_views_own_secrets(
    two_instances: tuple[Path, Path],
) -> None:
    x, _ = two_instances
    edit_view(x, "KTRDR_DB_PASSWORD", "changed-by-the-agent")
    edit_view(x, "DOCKER_HOST", "tcp://elsewhere:2375")
    found = locate(None, x)
    argv = compose.compose_argv(found.engine, found.root, found.env)
    assert argv[argv.index("--env-file") + 1] == "/dev/null"  # the worktree's file is never read
    assert (
        argv[argv.index("-p") + 1]
        == identity.recorded(found.require_entry())["COMPOSE_PROJECT_NAME"]
    )
    env = compose.compose_env(found.engine, found.env, found.root)
    assert env["KTRDR_DB_PASSWORD"] == "changed-by-the-agent"  # its own database, its own risk
    assert env.get("DOCKER_HOST") != "tcp://elsewhere:2375"


def test_a_malformed_secret_or_image_mode_in_the_view_is_not_used(
    two_instances: tuple[Path, Path],
) -> None:
    x, _ = two_instances
    edit_view(x, "KTRDR_IMAGES", "evil")
    assert "KTRDR_IMAGES" not in locate(None, x).env


def test_init_rewrites_the_view_from_the_record_keeping_the_secrets(
    two_instances: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y = two_instances
    before = read_env(x / ".env.sandbox")
    edit_view(x, "COMPOSE_PROJECT_NAME", read_env(y / ".env.sandbox")["COMPOSE_PROJECT_NAME"])
    edit_view(x, "KTRDR_INSTANCE_ID", "ktrdr--other")
    monkeypatch.chdir(x)
    restored = CliRunner().invoke(cli, ["sandbox", "init", "--json"])
    assert restored.exit_code == 0, restored.output
    assert "rewrote .env.sandbox from this home's record" in restored.stderr
    after = read_env(x / ".env.sandbox")
    assert after == before
    assert CliRunner().invoke(cli, ["sandbox", "status", "--json"]).exit_code == 0


def test_init_does_not_move_a_registered_instance(
    two_instances: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    x, _ = two_instances
    monkeypatch.chdir(x)
    slot = locate(None, x).slot
    result = CliRunner().invoke(cli, ["sandbox", "init", "--slot", str(slot + 5)])
    assert result.exit_code == 1
    assert f"is already instance ktrdr--feat; --slot {slot + 5} (it has slot {slot})" in (
        result.stderr
    )
    assert locate(None, x).slot == slot


def test_an_env_file_this_home_never_registered_reaches_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / ".env.sandbox").write_text(
        "KTRDR_INSTANCE_ID=x\nKTRDR_SLOT=3\nCOMPOSE_PROJECT_NAME=someone-else\nKTRDR_API_PORT=8003\n"
    )
    monkeypatch.chdir(stray)
    for command in (["sandbox", "logs"], ["sandbox", "test-e2e"], ["health"]):
        result = CliRunner().invoke(cli, command)
        assert result.exit_code == 1, (command, result.output)
        assert "is not registered" in result.stderr, (command, result.stderr)
    status = CliRunner().invoke(cli, ["sandbox", "status", "--json"])  # reports, reaches nothing
    assert json.loads(status.stdout)["status"] == "unregistered"


def test_destroy_removes_an_instance_whose_view_was_edited(
    two_instances: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y = two_instances
    edit_view(x, "COMPOSE_PROJECT_NAME", read_env(y / ".env.sandbox")["COMPOSE_PROJECT_NAME"])
    monkeypatch.chdir(x.parent)
    monkeypatch.setattr(shutil, "which", lambda name: None)  # this host has no engine at all
    result = CliRunner().invoke(cli, ["sandbox", "destroy", "feat", "--yes", "--force"])
    assert result.exit_code == 0, result.output
    assert set(registry.load()) == {"ktrdr--other"}
    assert (y / ".env.sandbox").is_file()
