"""Fixtures shared by every test: no test touches the real home or the user's API settings; and
the instances that unit and integration tests both start from (`instance`, `instance_dir`)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from ktrdr.cli.sandbox.base import stack_file
from ktrdr.cli.sandbox.home import registry
from ktrdr.cli.sandbox.home.instance import EnvSettings, render_env, write_env_file
from tests.support.instances import INSTANCE_ID, SLOT, register_instance

pytest_plugins = ["tests.support.engine", "tests.support.bystanders"]

TARGET_ENV_VARS = ("KTRDR_API_URL", "KTRDR_API_PORT", "KTRDR_HOME")


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C as in a terminal, for this process and every child it starts: a suite started in
    the background by a non-interactive shell (a CI step, `make test &`) inherits SIGINT
    ignored, and the tests that press Ctrl-C would then test nothing."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def test_slot_range(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests allocate from slots 90..99 (tests/support/slots.py), never from the user's range:
    the suite passes, and takes nothing, while the user's sandboxes hold any of slots 1..10."""
    from tests.support import slots

    monkeypatch.setenv("KTRDR_SLOTS", slots.TEST_SLOTS_TEXT)


@pytest.fixture(autouse=True)
def no_terminal_width(monkeypatch: pytest.MonkeyPatch) -> None:
    """Output is measured as piped, whatever COLUMNS the runner has: a terminal's exported width,
    or the 80 that a test runner's worker processes may get."""
    monkeypatch.delenv("COLUMNS", raising=False)


@pytest.fixture(autouse=True)
def isolated_ktrdr_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in TARGET_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "ktrdr-home"
    monkeypatch.setenv("KTRDR_HOME", str(home))
    return home


@pytest.fixture
def instance(repo: Path) -> Path:
    """`repo` registered as an instance on slot 6 with what `evidence` collects: a gate report,
    e2e results and a changed file."""
    register_instance(repo, slot=6)
    (repo / ".sandbox").mkdir()
    (repo / ".sandbox" / "gate-report.json").write_text('{"result": "passed"}')
    results = repo / ".sandbox" / "test-results"
    results.mkdir()
    (results / "e2e-junit.xml").write_text('<testsuite tests="6" failures="0"/>')
    (repo / "README.md").write_text("changed\n")
    return repo


@pytest.fixture
def instance_dir(
    tmp_path: Path, isolated_ktrdr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A registered instance directory on SLOT with a compose file, the test's cwd."""
    root = tmp_path / INSTANCE_ID
    root.mkdir()
    (root / stack_file.COMPOSE_FILE).write_text(
        "services:\n  db: {image: x}\n  backend: {image: x}\n"
        "  backtest-worker-1: {image: x, labels: {ktrdr.worker-type: backtest}}\n"
    )
    settings = EnvSettings(
        instance_id=INSTANCE_ID,
        slot=SLOT,
        shared_dir=isolated_ktrdr_home / "shared",
        images="offline",
        db_password="secret-1",
        grafana_password="secret-2",
        checkout=root,
    )
    write_env_file(root, render_env(settings, command="test"))
    for name in ("data", "strategies", "models"):  # as `init-shared` makes them
        (isolated_ktrdr_home / "shared" / name).mkdir(parents=True)
    with registry.transaction() as entries:
        entries[INSTANCE_ID] = registry.Entry(
            instance_id=INSTANCE_ID,
            slot=SLOT,
            path=str(root),
            kind="worktree",
            branch="feat-a",
            created_at=registry.now_iso(),
            name="feat-a",
        )
    monkeypatch.chdir(root)
    return root
