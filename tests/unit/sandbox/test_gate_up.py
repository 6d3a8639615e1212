"""`ktrdr sandbox up / down / logs` before any container starts: finding and validating the
instance, the port preflight, the shared-data warning, Docker being down, Ctrl-C."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from ktrdr.cli.main import cli
from ktrdr.cli.sandbox.base import host
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.home import registry
from ktrdr.cli.sandbox.instances.locate import locate
from ktrdr.cli.sandbox.lifecycle import operations as lifecycle
from ktrdr.cli.sandbox.lifecycle import preflight
from ktrdr.cli.sandbox.slots.ports import ports_for_slot
from ktrdr.cli.sandbox.stack import compose
from ktrdr.errors import ExitCode
from tests.support.docker_standin import StartedStackStandIn
from tests.support.instances import INSTANCE_ID, SLOT


@pytest.fixture
def foreign_listener() -> Iterator[socket.socket]:
    """A plain socket listening on SLOT's API port, standing for a foreign process. A test
    slot: its port is free unless another run of this suite holds it (then this fails)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", ports_for_slot(SLOT).api))
    except OSError:
        sock.close()
        raise
    sock.listen()
    try:
        yield sock
    finally:
        sock.close()


def rewrite_env(root: Path, key: str, value: str) -> None:
    path = root / ".env.sandbox"
    lines = [
        f"{key}={value}" if line.startswith(f"{key}=") else line
        for line in path.read_text().splitlines()
    ]
    path.write_text("\n".join(lines) + "\n")


def test_up_outside_an_instance_says_to_run_create_or_init(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["sandbox", "up"])
    assert result.exit_code == 1
    assert "no .env.sandbox in" in result.stderr
    assert "ktrdr sandbox create NAME" in result.stderr
    assert "ktrdr sandbox init" in result.stderr
    assert "Traceback" not in result.output


def test_an_instance_is_found_from_a_subdirectory_and_by_name(instance_dir: Path) -> None:
    sub = instance_dir / "ktrdr" / "api"
    sub.mkdir(parents=True)
    found = locate(None, sub)
    assert (found.instance_id, found.slot, found.root) == (INSTANCE_ID, SLOT, instance_dir)
    assert locate("feat-a", Path("/")).root == instance_dir
    assert locate(INSTANCE_ID, Path("/")).root == instance_dir


def test_an_unknown_name_lists_the_registered_instances(instance_dir: Path) -> None:
    with pytest.raises(SandboxError, match=r"no instance named 'nope'"):
        locate("nope", Path("/"))


def test_a_valid_registered_instance_passes_validation(instance_dir: Path) -> None:
    preflight.validate(locate(None, instance_dir))


def test_a_port_line_that_drifted_from_the_slot_is_refused(instance_dir: Path) -> None:
    rewrite_env(instance_dir, "KTRDR_API_PORT", "8000")
    api = ports_for_slot(SLOT).api
    with pytest.raises(
        SandboxError, match=f"says KTRDR_API_PORT=8000 but this home recorded {api}"
    ):
        locate(None, instance_dir)


def test_an_unregistered_instance_is_told_to_run_init(instance_dir: Path) -> None:
    with registry.transaction() as entries:
        del entries[INSTANCE_ID]
    with pytest.raises(SandboxError, match="is not registered: run `ktrdr sandbox init`"):
        preflight.validate(locate(None, instance_dir))


def test_a_slot_that_disagrees_with_the_registry_is_refused(instance_dir: Path) -> None:
    with registry.transaction() as entries:
        entries[INSTANCE_ID].slot = 3
    with pytest.raises(SandboxError, match=f"says KTRDR_SLOT={SLOT} but this home recorded 3"):
        locate(None, instance_dir)


def test_an_env_file_missing_required_keys_is_named(instance_dir: Path) -> None:
    rewrite_env(instance_dir, "KTRDR_DB_PASSWORD", "")
    with pytest.raises(SandboxError, match="lacks KTRDR_DB_PASSWORD"):
        locate(None, instance_dir).require_env()


def test_a_foreign_socket_on_a_slot_port_is_refused_naming_the_port_and_a_free_slot(
    instance_dir: Path, foreign_listener: socket.socket
) -> None:
    instance = locate(None, instance_dir)
    with pytest.raises(SandboxError) as raised:
        preflight.preflight_ports(instance, set())
    message = str(raised.value)
    api = ports_for_slot(SLOT).api
    assert message.startswith(f"cannot start {INSTANCE_ID}: slot {SLOT} port {api} (api)")
    assert "not by this instance" in message
    assert "is free" in message
    assert "--slot" in message


def test_ports_published_by_the_instances_own_containers_are_not_a_conflict(
    instance_dir: Path, foreign_listener: socket.socket
) -> None:
    instance = locate(None, instance_dir)
    preflight.preflight_ports(instance, {ports_for_slot(SLOT).api})


def test_up_without_shared_data_refuses_in_one_line_before_starting_anything(
    instance_dir: Path, isolated_ktrdr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It used to warn, start, and end in `Startability Gate: FAILED` (exit 3) with compose's
    bind-mount error at the end of a 746-character line."""
    import shutil

    from click.testing import CliRunner

    from ktrdr.cli.main import cli

    shutil.rmtree(isolated_ktrdr_home / "shared" / "strategies")
    started: list[object] = []
    monkeypatch.setattr(lifecycle.engine, "ensure_engine", lambda docker: None)
    monkeypatch.setattr(compose, "start", lambda *a, **k: started.append(a))
    monkeypatch.setattr(compose, "up", lambda *a, **k: started.append(a))
    monkeypatch.setattr(preflight, "prepare_start", lambda *a: started.append(a))
    before = sorted(p.relative_to(instance_dir) for p in instance_dir.rglob("*"))
    out = CliRunner().invoke(cli, ["sandbox", "up"])
    assert out.exit_code == 1, out.output
    errors = [line for line in out.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1
    assert out.stderr.endswith(errors[0] + "\n")
    assert "has no strategies/" in out.stderr
    assert "run `ktrdr sandbox init-shared` once for this home" in out.stderr
    assert started == []
    assert sorted(p.relative_to(instance_dir) for p in instance_dir.rglob("*")) == before


def test_up_with_the_docker_daemon_down_prints_one_line_and_exits_1(
    instance_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = f"unix://{instance_dir}/no-docker.sock"
    monkeypatch.setenv("DOCKER_HOST", address)
    result = CliRunner().invoke(cli, ["sandbox", "up"])
    assert result.exit_code == 1
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert error_lines == [
        f"Error: Docker engine not reachable at {address}: start Docker and retry"
    ]


@pytest.mark.timing
def test_ctrl_c_during_up_leaves_a_hint_and_exits_130(
    instance_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted_up(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # stands in for the user pressing Ctrl-C mid-start

    monkeypatch.setattr(lifecycle, "up", interrupted_up)
    result = CliRunner().invoke(cli, ["sandbox", "up"])
    assert result.exit_code == 130
    assert "ktrdr sandbox up" in result.stderr
    assert "ktrdr sandbox destroy" in result.stderr


@pytest.mark.timing
def test_ctrl_c_while_following_logs_stops_quietly(
    instance_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted_logs(*args: object, **kwargs: object) -> int:
        raise KeyboardInterrupt  # stands in for Ctrl-C, the normal way to end `logs -f`

    monkeypatch.setattr(lifecycle, "logs", interrupted_logs)
    result = CliRunner().invoke(cli, ["sandbox", "logs", "-f"])
    assert result.exit_code == 130
    assert result.stderr == ""
    assert "Interrupted" not in result.output


def test_logs_of_an_unknown_service_lists_the_services(instance_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["sandbox", "logs", "nosuch"])
    assert result.exit_code == 1
    assert "no service 'nosuch' in this stack; services: backend, backtest-worker-1, db" in (
        result.stderr
    )


def test_up_help_lists_the_options() -> None:
    result = CliRunner().invoke(cli, ["sandbox", "up", "--help"])
    assert result.exit_code == 0
    for option in ("--timeout", "--build", "--no-gate", "--json"):
        assert option in result.output


def test_low_memory_is_a_warning_naming_what_to_do(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 2000000 kB\nMemAvailable:  524288 kB\n")
    warning = host.memory_warning(meminfo)
    assert warning == (
        "only 512 MiB of memory available (under 1 GiB; an idle stack takes about 230 MiB): "
        "another stack may not fit; stop an instance with `ktrdr sandbox down NAME` first"
    )
    meminfo.write_text("MemAvailable: 8000000 kB\n")
    assert host.memory_warning(meminfo) is None
    assert host.memory_warning(tmp_path / "missing") is None


def test_up_on_an_interrupted_destroy_says_destroy_finishes_it(instance_dir: Path) -> None:
    with registry.transaction() as entries:
        entries[INSTANCE_ID].state = "destroying"
    result = CliRunner().invoke(cli, ["sandbox", "up"])
    assert result.exit_code == 1
    assert f"`ktrdr sandbox destroy {INSTANCE_ID}` finishes it" in result.stderr


@pytest.mark.parametrize("command", ["up", "down"])
def test_an_instance_of_another_home_is_refused_naming_that_home(
    instance_dir: Path, isolated_ktrdr_home: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    """Acting from another KTRDR_HOME is how one home took over (and then deleted) another's
    stack; the refusal comes before any engine call."""
    other_home = isolated_ktrdr_home.parent / "other-home"
    monkeypatch.setenv("KTRDR_HOME", str(other_home))
    result = CliRunner().invoke(cli, ["sandbox", command])
    assert result.exit_code == 1
    assert f"is not registered in KTRDR_HOME {other_home}" in result.stderr
    assert f"names KTRDR_HOME {isolated_ktrdr_home}" in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2  # the "Starting …" line, then the error


def test_a_project_name_that_is_not_the_instances_own_is_refused(instance_dir: Path) -> None:
    rewrite_env(instance_dir, "COMPOSE_PROJECT_NAME", INSTANCE_ID)  # the pre-owner form
    pattern = rf"says COMPOSE_PROJECT_NAME={INSTANCE_ID} but this home recorded .*sandbox init"
    with pytest.raises(SandboxError, match=pattern):
        locate(None, instance_dir)


def test_an_instance_destroyed_under_the_gate_gets_no_report_directory_recreated(
    instance_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from ktrdr.cli.sandbox.gate.report import GateReport

    def gate_while_destroy_removes_the_worktree(spec, probes, **kwargs):  # type: ignore[no-untyped-def]
        shutil.rmtree(instance_dir)
        return GateReport(
            instance_id=INSTANCE_ID, slot=SLOT, result="failed", started_at="t0",
            finished_at="t1", duration_s=1.0, timeout_s=60.0, checks=[], containers=[],
            failure="the instance's containers were removed while the gate ran",
        )  # fmt: skip

    # No engine here: the start-up steps that need one stand aside.
    monkeypatch.setattr(preflight, "prepare_start", lambda instance, notify: set())
    monkeypatch.setattr(preflight, "preflight_ports", lambda instance, own: None)
    monkeypatch.setattr(compose, "start", lambda *a, **k: StartedStackStandIn())
    monkeypatch.setattr(lifecycle, "run_gate", gate_while_destroy_removes_the_worktree)
    # The stack policy runs the docker CLI (tests/unit/sandbox/test_policy_*.py cover it).
    monkeypatch.setattr(lifecycle.engine, "ensure_engine", lambda docker: None)
    # Nor the policy's `docker compose config` (it needs the real project's files).
    monkeypatch.setattr(lifecycle, "checked_model_file", lambda *a, **k: instance_dir / "m.yml")
    instance = locate(None, instance_dir)
    result = lifecycle.up(instance, timeout=60)
    assert result.report is not None
    assert result.report_file is None
    assert result.report.failure is not None
    assert f"{instance_dir} is gone (destroyed meanwhile)" in result.report.failure
    assert not instance_dir.exists()  # the report did not recreate the worktree


def _failed_gate(instance_dir: Path) -> lifecycle.UpResult:
    from ktrdr.cli.sandbox.gate.checks import CheckResult
    from ktrdr.cli.sandbox.gate.report import GateReport

    check = CheckResult("backend", "Backend healthy", 60.0, status="failed", detail="no answer")
    report = GateReport(
        instance_id=INSTANCE_ID,
        slot=SLOT,
        result="failed",
        started_at="t0",
        finished_at="t1",
        duration_s=5.0,
        timeout_s=60.0,
        checks=[check],
        containers=[],
        failure="backend: no answer within 60s",
        urls=ports_for_slot(SLOT).urls(),
    )
    return lifecycle.UpResult(locate(None, instance_dir), report, instance_dir / "report.json")


@pytest.mark.parametrize("command", ["up", "resume"])
def test_a_failed_gate_exits_3_after_the_verdict_so_scripts_tell_it_from_a_refusal(
    instance_dir: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    def gate_fails(*args: object, **kwargs: object) -> lifecycle.UpResult:
        return _failed_gate(instance_dir)  # stands in for a stack whose backend never answers

    monkeypatch.setattr(lifecycle, command, gate_fails)
    result = CliRunner().invoke(cli, ["sandbox", command])
    assert result.exit_code == ExitCode.GATE_FAILED == 3
    assert result.stdout.startswith("Startability Gate: FAILED")
    assert f"Error: Startability Gate failed for {INSTANCE_ID}: backend: no answer" in (
        result.stderr
    )


def test_a_failed_gate_is_an_mcp_tool_error_with_the_same_exit_code(
    instance_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ktrdr.cli.sandbox.mcp.scope import Scope
    from ktrdr.cli.sandbox.mcp.server import tool_result
    from ktrdr.cli.sandbox.mcp.tools import run_tool

    def gate_fails(*args: object, **kwargs: object) -> lifecycle.UpResult:
        return _failed_gate(instance_dir)

    monkeypatch.setattr(lifecycle, "up", gate_fails)
    scope = Scope(cwd=instance_dir, pinned_id=INSTANCE_ID, pinned_root=instance_dir.resolve())
    outcome = run_tool(scope, "sandbox_up", {}, lambda line: None)
    structured = tool_result(outcome).structured_content
    assert structured is not None
    assert structured["exit_code"] == 3
    assert structured["result"]["result"] == "failed"
