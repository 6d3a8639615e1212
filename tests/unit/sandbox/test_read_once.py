"""Each command reads `.env.sandbox` and the compose file at most once (issue 12): the
instance is located once and every step works from that object."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ktrdr.cli.main import cli
from ktrdr.cli.sandbox.base import stack_file
from ktrdr.cli.sandbox.gate.report import GateReport
from ktrdr.cli.sandbox.home.shared_data import shared_root
from ktrdr.cli.sandbox.lifecycle import operations as lifecycle
from ktrdr.cli.sandbox.lifecycle import preflight
from ktrdr.cli.sandbox.provision.create import create_instance
from ktrdr.cli.sandbox.stack import compose
from tests.support.docker_standin import DockerStandIn, StartedStackStandIn

WATCHED = (".env.sandbox", stack_file.COMPOSE_FILE)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """How often each watched file was read since the fixture started (the compose file's
    parse cache is emptied first, as in a fresh process)."""
    counts: Counter[str] = Counter()
    original = Path.read_text

    def counting_read_text(self: Path, *args: Any, **kwargs: Any) -> str:
        if self.name in WATCHED:
            counts[self.name] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counting_read_text)
    monkeypatch.setattr(stack_file, "_cache", {})
    return counts


@pytest.fixture(autouse=True)
def _no_port_probing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ktrdr.cli.sandbox.provision.allocation.port_in_use", lambda port: False)


@pytest.fixture
def instance(repo: Path, docker: DockerStandIn, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A created instance with the project's compose file, the test's cwd."""
    path = create_instance(name="feat-a", cwd=repo).path
    compose_file = Path(__file__).resolve().parents[3] / stack_file.COMPOSE_FILE
    (path / stack_file.COMPOSE_FILE).write_text(compose_file.read_text())
    monkeypatch.chdir(path)
    return path


def _run(*args: str) -> Any:
    return CliRunner().invoke(cli, ["sandbox", *args])


def _assert_at_most_once(reads: Counter[str]) -> None:
    assert all(count <= 1 for count in reads.values()), dict(reads)


def test_the_counter_sees_every_read_of_the_env_file(instance: Path, reads: Counter[str]) -> None:
    (instance / ".env.sandbox").read_text()
    (instance / ".env.sandbox").read_text()
    assert reads[".env.sandbox"] == 2


def test_status_reads_the_env_file_once(instance: Path, reads: Counter[str]) -> None:
    result = _run("status", "--json")
    assert result.exit_code == 0, result.output
    assert reads[".env.sandbox"] == 1
    _assert_at_most_once(reads)


def test_status_by_path_reads_the_env_file_once(
    instance: Path, repo: Path, reads: Counter[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo)
    result = _run("status", f"../{instance.name}", "--json")
    assert result.exit_code == 0, result.output
    _assert_at_most_once(reads)


def test_destroy_reads_the_env_file_once(
    instance: Path, repo: Path, reads: Counter[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo)
    result = _run("destroy", "feat-a", "--yes", "--force")
    assert result.exit_code == 0, result.output
    assert reads[".env.sandbox"] == 1
    _assert_at_most_once(reads)


def test_a_re_init_reads_the_old_env_file_once(
    repo: Path, docker: DockerStandIn, reads: Counter[str]
) -> None:
    assert _run("init").exit_code == 0
    reads.clear()
    result = _run("init")  # registered already: the view is rewritten from the record
    assert result.exit_code == 0, result.output
    _assert_at_most_once(reads)


def test_evidence_reads_the_env_file_once(instance: Path, reads: Counter[str]) -> None:
    result = _run("evidence", "--json")
    assert result.exit_code == 0, result.output
    assert reads[".env.sandbox"] == 1
    _assert_at_most_once(reads)


def test_up_reads_the_env_file_and_the_compose_file_once(
    instance: Path, reads: Counter[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def passing_gate(spec: Any, probes: Any, **kwargs: Any) -> GateReport:
        return GateReport(
            instance_id=spec.instance_id, slot=spec.ports.slot, result="passed",
            started_at="t0", finished_at="t1", duration_s=1.0, timeout_s=spec.timeout,
            checks=[], containers=[],
        )  # fmt: skip

    # No engine in unit tests: the steps that need one stand aside.
    monkeypatch.setattr(preflight, "prepare_start", lambda instance, notify: set())
    monkeypatch.setattr(preflight, "preflight_ports", lambda instance, own: None)
    monkeypatch.setattr(compose, "start", lambda *a, **k: StartedStackStandIn())
    monkeypatch.setattr(lifecycle, "run_gate", passing_gate)
    # The stack policy runs the docker CLI (tests/unit/sandbox/test_policy_*.py cover it).
    monkeypatch.setattr(lifecycle.engine, "ensure_engine", lambda docker: None)
    monkeypatch.setattr(lifecycle, "checked_model_file", lambda *a, **k: Path("checked.json"))
    for name in ("data", "strategies", "models"):  # as `init-shared` makes them
        (shared_root() / name).mkdir(parents=True)
    result = _run("up", "--json")
    assert result.exit_code == 0, result.output
    assert reads[".env.sandbox"] == 1
    assert reads[stack_file.COMPOSE_FILE] == 1
    _assert_at_most_once(reads)
