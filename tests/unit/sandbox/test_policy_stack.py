"""The stack policy on real resolved models: the shipped docker-compose.sandbox.yml (local and
with a remote instance's override) rendered by the real `docker compose config` (no engine
needed, as in tests/unit/test_compose_contract.py), hostile edits refused in one line, and the
faces: `--allow` on the CLI, nothing of it over MCP."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from ktrdr.cli.main import cli
from ktrdr.cli.sandbox.base import proc
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.base.stack_file import COMPOSE_FILE
from ktrdr.cli.sandbox.home.instance import EnvSettings, read_env, render_env, write_env_file
from ktrdr.cli.sandbox.home.shared_data import shared_root
from ktrdr.cli.sandbox.instances.locate import Instance
from ktrdr.cli.sandbox.policy.checker import check
from ktrdr.cli.sandbox.policy.enforcement import (
    StackRefusedError,
    check_stack,
    facts_for,
    refusal,
)
from ktrdr.cli.sandbox.policy.model import first_error_line, resolved_model
from ktrdr.cli.sandbox.policy.rules import RULES

REPO = Path(__file__).resolve().parents[3]
SLOT = 4
INSTANCE_ID = "ktrdr--feat-a"
# Every directory the shipped compose file bind-mounts (create_host_path: false).
BIND_DIRS = ("ktrdr", "tests", "deploy/prometheus", "deploy/grafana/provisioning",
             "deploy/grafana/dashboards")  # fmt: skip

needs_compose = pytest.mark.skipif(
    shutil.which("docker") is None and not os.environ.get("CI"),
    reason="needs the docker CLI with Compose v2 (no engine needed): run `make docker`",
)


def make_instance(root: Path, *, remote: bool = False, compose_text: str | None = None) -> Instance:
    """An instance directory with the shipped compose file (or `compose_text`) and the env file
    the sandbox writes; `remote`: on a named context with a block of forward ports."""
    root.mkdir(parents=True)
    for sub in BIND_DIRS:
        (root / sub).mkdir(parents=True)
    (root / "docker").mkdir()
    shutil.copy(REPO / "docker" / "images-offline.env", root / "docker" / "images-offline.env")
    text = compose_text or (REPO / COMPOSE_FILE).read_text(encoding="utf-8")
    (root / COMPOSE_FILE).write_text(text, encoding="utf-8")
    for sub in ("data", "strategies", "models"):
        (shared_root() / sub).mkdir(parents=True, exist_ok=True)
    settings = EnvSettings(
        instance_id=INSTANCE_ID,
        slot=SLOT,
        shared_dir=shared_root(),
        images="offline",
        db_password="db-secret",
        grafana_password="grafana-secret",
        checkout=root,
        context="far-away" if remote else None,
        forward=3 if remote else None,
    )
    write_env_file(root, render_env(settings, command="test"))
    return Instance(INSTANCE_ID, SLOT, root, read_env(root / ".env.sandbox"), None)


HOSTILE = """
  evil:
    image: ktrdr-app:dev
    volumes:
      - /var/run/docker.sock:/var/run/docker.sock
      - {other}:/p
"""


def hostile_compose(other: Path) -> str:
    shipped = (REPO / COMPOSE_FILE).read_text(encoding="utf-8")
    head, marker, tail = shipped.partition("\nservices:\n")
    return head + marker + HOSTILE.lstrip("\n").format(other=other) + tail


@needs_compose
def test_the_shipped_stack_passes_with_zero_violations(tmp_path: Path) -> None:
    instance = make_instance(tmp_path / INSTANCE_ID)
    model = resolved_model(instance)
    assert "e2e-tests" in model["services"]  # every profile is checked
    assert check(model, facts_for(instance)) == []
    assert check_stack(instance) == []


@needs_compose
def test_the_shipped_stack_with_a_remote_override_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ktrdr.cli.sandbox.remote.stack import override_for

    # compose runs with the instance's `--context`: a real one, in a DOCKER_CONFIG of its own
    # (client-side files only: `compose config` asks no engine).
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    proc.run(["docker", "context", "create", "far-away", "--docker", "host=ssh://x@far.test"])
    instance = make_instance(tmp_path / INSTANCE_ID, remote=True)
    override_for(
        instance.engine, instance.root, instance.env
    )  # what `up` writes before compose starts
    model = resolved_model(instance)
    mounts = [m for s in model["services"].values() for m in s.get("volumes", [])]
    assert mounts
    assert all(m["type"] == "volume" for m in mounts)  # the override replaced every bind
    assert any(v.get("external") for v in model["volumes"].values())  # the shared volumes
    assert check(model, facts_for(instance)) == []


@needs_compose
def test_a_hostile_service_is_refused_in_one_line_naming_service_key_value_and_rule(
    tmp_path: Path,
) -> None:
    other = tmp_path / "ktrdr--other"
    other.mkdir()
    instance = make_instance(tmp_path / INSTANCE_ID, compose_text=hostile_compose(other))
    with pytest.raises(StackRefusedError) as refused:
        check_stack(instance)
    message = str(refused.value)
    assert message == (
        'stack policy refuses service "evil": volumes: /var/run/docker.sock (rule '
        "docker-socket): the Docker socket gives full control of the engine; remove it from "
        "docker-compose.sandbox.yml (a person may pass --allow docker-socket to ktrdr sandbox "
        "up) (and 1 more)"
    )
    assert [v.rule for v in refused.value.violations] == ["docker-socket", "bind-mount"]


@needs_compose
def test_allow_overrides_the_named_rule_only_and_says_so(tmp_path: Path) -> None:
    other = tmp_path / "ktrdr--other"
    other.mkdir()
    instance = make_instance(tmp_path / INSTANCE_ID, compose_text=hostile_compose(other))
    with pytest.raises(StackRefusedError, match=r"\(rule bind-mount\)"):
        check_stack(instance, allow=frozenset({"docker-socket"}))
    said: list[str] = []
    let_through = check_stack(
        instance, allow=frozenset({"docker-socket", "bind-mount"}), notify=said.append
    )
    assert [v.rule for v in let_through] == ["docker-socket", "bind-mount"]
    assert said[0].startswith("Warning: stack policy rule docker-socket overridden by --allow")


@needs_compose
def test_a_compose_file_that_is_not_valid_yaml_is_one_line(tmp_path: Path) -> None:
    instance = make_instance(tmp_path / INSTANCE_ID, compose_text="services:\n  a: [\n")
    with pytest.raises(SandboxError) as failed:
        check_stack(instance)
    message = str(failed.value)
    assert "\n" not in message
    assert message.startswith(
        f"cannot check the stack of {INSTANCE_ID}: docker compose config failed: "
    )


def test_the_first_error_line_skips_compose_warnings() -> None:
    stderr = (
        'time="2024" level=warning msg="the attribute `version` is obsolete"\n'
        "WARN[0000] something else\n\n"
        "yaml: line 2: did not find expected node content\n"
        "second line\n"
    )
    assert first_error_line(stderr) == "yaml: line 2: did not find expected node content"
    assert first_error_line("") == "(no output)"


def test_the_refusal_names_the_command_the_person_runs() -> None:
    from ktrdr.cli.sandbox.policy.checker import Violation

    found = [Violation("service", "x", "privileged", "true", "privileged")]
    assert refusal(found, command="ktrdr sandbox resume") == (
        'stack policy refuses service "x": privileged: true (rule privileged): a privileged '
        "container is root on the host; remove it from docker-compose.sandbox.yml (a person "
        "may pass --allow privileged to ktrdr sandbox resume)"
    )


@pytest.mark.parametrize(
    "args", [["up"], ["resume"], ["test-e2e"]], ids=["up", "resume", "test-e2e"]
)
def test_an_unknown_rule_is_a_usage_error_listing_the_rules(args: list[str]) -> None:
    result = CliRunner().invoke(cli, ["sandbox", *args, "--allow", "everything"])
    assert result.exit_code == 2
    assert "'everything' is not one of" in result.stderr
    assert all(name in result.stderr for name in RULES)


def test_no_mcp_tool_offers_an_override() -> None:
    from ktrdr.cli.sandbox.mcp.scope import Scope
    from ktrdr.cli.sandbox.mcp.tools import tools_for

    for scope in (Scope(Path.cwd()), Scope(Path.cwd(), "x", Path.cwd())):
        for tool in tools_for(scope):
            assert "allow" not in tool.input_schema(scope)["properties"], tool.name


@needs_compose
def test_compose_starts_the_model_that_was_checked_not_a_later_edit(tmp_path: Path) -> None:
    """Between the check and the start an agent rewrites its compose file: what starts is the
    checked model, kept in the home, never the worktree's file."""
    from ktrdr.cli.sandbox.policy.enforcement import checked_model_file
    from ktrdr.cli.sandbox.stack import compose

    instance = make_instance(tmp_path / INSTANCE_ID)
    model_file = checked_model_file(instance)
    assert not model_file.is_relative_to(instance.root)
    assert oct(model_file.stat().st_mode & 0o777) == "0o600"  # it holds the instance's secrets
    checked = model_file.read_text()
    (instance.root / COMPOSE_FILE).write_text(hostile_compose(tmp_path / "other"))
    argv = compose.compose_argv(instance.engine, instance.root, instance.env, model=model_file)
    assert argv[argv.index("-f") + 1] == str(model_file)
    assert str(instance.root / COMPOSE_FILE) not in argv
    assert model_file.read_text() == checked
    assert "docker.sock" not in checked
