"""The hooks as Claude Code runs them: real `ktrdr` processes whose stdin stays open after the
payload, and ten worktree creations at once, each on its own slot or refused in one line.

Port probing is real (subprocesses see no stand-in), the engine is absent as in every unit test
(tests/unit/conftest.py); slots come from
the test range (tests/support/slots.py), which another run of the suite may hold in part, so the
expected slots are bounded by those free at the start and at the end (as in
test_concurrent_create).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ktrdr.cli.sandbox.home import registry
from ktrdr.cli.sandbox.provision.allocation import busy_ports
from tests.support.hooks import make_stack_repo, payload, run_hook
from tests.support.slots import TEST_SLOTS

CREATE = ["claude-code", "worktree-create", "--start", "on-demand"]
REMOVE = ["claude-code", "worktree-remove"]
AGENTS = 10


@pytest.fixture
def stack_repo(tmp_path: Path) -> Path:
    """As the conftest's, but the test stays where it is: the hooks run as other processes."""
    return make_stack_repo(tmp_path / "work" / "ktrdr")


@pytest.fixture
def env(isolated_ktrdr_home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "KTRDR_HOME": str(isolated_ktrdr_home),
        "KTRDR_TEST": "1",
        "KTRDR_REGISTRY_LOCK_TIMEOUT": "120",
    }


def test_the_hook_prints_the_path_while_its_stdin_stays_open(
    stack_repo: Path, env: dict[str, str]
) -> None:
    data = payload("create_name", repo=str(stack_repo))
    run = run_hook(CREATE, data, cwd=stack_repo, env=env, keep_stdin_open=True)
    assert run.returncode == 0, run.stderr
    path = stack_repo.parent / "ktrdr--agent-a1b2c3d4"
    assert run.stdout == f"{path}\n"
    assert (path / ".env.sandbox").is_file()
    assert (path / ".mcp.json").is_file()
    assert run.seconds < 30, run.seconds  # "within a few seconds"; 2 loaded cores here
    print(f"worktree-create through the entry point: {run.seconds:.2f}s")
    # Unit tests have no engine (tests/unit/conftest.py): a remove cannot confirm the stack
    # gone, so it changes nothing and says so (the real removal: tests/integration).
    kept = run_hook(
        REMOVE,
        payload("remove", repo=str(stack_repo), worktree=str(path)),
        cwd=stack_repo,
        env=env,
    )
    assert kept.returncode == 1
    assert kept.stderr.startswith("Error: cannot destroy ktrdr--agent-a1b2c3d4: the Docker engine")
    assert kept.stderr.count("\n") == 1
    assert path.is_dir()
    assert list(registry.load()) == ["ktrdr--agent-a1b2c3d4"]


def test_a_payload_that_never_comes_is_one_line_not_a_hang(
    stack_repo: Path, env: dict[str, str]
) -> None:
    run = run_hook([*CREATE, "--stdin-wait", "0.5"], b"", cwd=stack_repo, env=env)
    assert run.returncode == 1
    assert run.stdout == ""
    assert run.stderr.startswith("Error: no hook payload on stdin within 0.5s (got nothing)")
    assert run.stderr.count("\n") == 1
    assert run.seconds < 20


def test_ten_creations_at_once_take_distinct_slots_or_refuse_cleanly(
    stack_repo: Path, env: dict[str, str]
) -> None:
    free = [slot for slot in TEST_SLOTS if not busy_ports(slot, with_owners=False)]

    def create(index: int) -> tuple[int, str, str]:
        data = payload("create_unknown_fields", repo=str(stack_repo))
        data["name"] = f"agent-{index:02d}"
        run = run_hook(CREATE, data, cwd=stack_repo, env=env, timeout=300)
        return run.returncode, run.stdout, run.stderr

    with ThreadPoolExecutor(AGENTS) as pool:
        outcomes = list(pool.map(create, range(AGENTS)))
    free_at_end = [slot for slot in TEST_SLOTS if not busy_ports(slot, with_owners=False)]
    made = [Path(out.strip()) for code, out, _ in outcomes if code == 0]
    refused = [err for code, _, err in outcomes if code != 0]
    entries = registry.load()
    slots = sorted(e.slot for e in entries.values())
    assert len(slots) == len(set(slots)) == len(made)  # never one slot twice
    assert set(free) & set(free_at_end) <= set(slots) <= set(free) | set(free_at_end)
    assert all(e.state == "ready" for e in entries.values())
    assert sorted(e.root for e in entries.values()) == sorted(made)
    assert all(err.startswith("Error: no free slot in ") for err in refused), refused
    assert all(err.count("\n") == 1 for err in refused)
    for path in made:
        server = json.loads((path / ".mcp.json").read_text())["mcpServers"]
        assert list(server) == [f"ktrdr-{path.name}"]

    print(f"{AGENTS} hook creations at once: {len(made)} made, {len(refused)} refused")
    # Every slot of the range held now: the next one names the holders and how to free one.
    if len(made) == len(TEST_SLOTS):
        data = payload("create_name", repo=str(stack_repo))
        run = run_hook(CREATE, data, cwd=stack_repo, env=env)
        assert run.returncode == 1
        assert run.stdout == ""
        holders = ", ".join(
            f"{e.instance_id} (slot {e.slot})"
            for e in sorted(entries.values(), key=lambda e: e.slot)
        )
        assert f"(instances: {holders})" in run.stderr
        assert "free one with `ktrdr sandbox destroy NAME`" in run.stderr
        assert not (stack_repo.parent / "ktrdr--agent-a1b2c3d4").exists()
