"""The agent loop through `ktrdr sandbox mcp` on the real engine, with the SDK's stdio client:
an unpinned server creates two instances, then two pinned servers (one per instance, started
inside it) each run up (progress per gate check) → api_health → test_e2e → evidence → destroy,
both at the same time; one of them first cancels an `up` midway (clean-up as after Ctrl-C).
One test, because one `up` takes most of a minute on 2 cores.

The project is copied into tmp_path; the home is this test's own; everything its home owns is
removed by owner label at the end, even on failure.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession

from tests.support.engine import leftovers
from tests.support.mcp_client import ok, server
from tests.support.owners import owner_of

pytestmark = pytest.mark.docker

UP_TIMEOUT = 600.0


async def loop(env: dict[str, str], root: Path, record: dict[str, Any]) -> None:
    """One pinned agent's whole loop; what it saw goes into `record`."""
    progress: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async with server(env, root) as client:
        if record.get("cancel_first_up"):
            record["cancelled_report"] = await cancelled_up(client, root)
        record["up"] = ok(
            await client.call_tool(
                "sandbox_up", {}, read_timeout_seconds=UP_TIMEOUT, progress_callback=on_progress
            )
        )
        record["up_progress"] = list(progress)
        record["health"] = ok(await client.call_tool("api_health", {}))
        progress.clear()
        record["e2e"] = ok(
            await client.call_tool(
                "sandbox_test_e2e",
                {},
                read_timeout_seconds=UP_TIMEOUT,
                progress_callback=on_progress,
            )
        )
        record["e2e_progress"] = list(progress)
        record["evidence"] = ok(await client.call_tool("sandbox_evidence", {}))
        record["destroy"] = ok(
            await client.call_tool("sandbox_destroy", {}, read_timeout_seconds=300)
        )


async def cancelled_up(client: ClientSession, root: Path) -> dict[str, Any]:
    """Cancel `sandbox_up` once its first gate check passed (containers are starting): the
    server interrupts it like Ctrl-C, so the gate report ends `interrupted`."""
    with anyio.CancelScope() as scope:

        async def cancel_on_first_check(
            value: float, total: float | None, message: str | None
        ) -> None:
            if (message or "").startswith("✓"):
                scope.cancel()

        await client.call_tool(
            "sandbox_up",
            {},
            read_timeout_seconds=UP_TIMEOUT,
            progress_callback=cancel_on_first_check,
        )
    assert scope.cancelled_caught, "sandbox_up finished before its first check was reported"
    report_file = root / ".sandbox" / "gate-report.json"
    with anyio.fail_after(120):  # the server's clean-up: report written, compose stopped
        while True:
            if report_file.is_file():
                report: dict[str, Any] = json.loads(report_file.read_text())
                if report.get("result") == "interrupted":
                    return report
            await anyio.sleep(0.5)


def test_two_pinned_agents_run_the_whole_loop_at_the_same_time(agent_env: dict[str, str]) -> None:
    repo = Path(agent_env["TEST_REPO"])
    records: dict[str, dict[str, Any]] = {"alpha": {"cancel_first_up": True}, "beta": {}}

    async def main() -> dict[str, Any]:
        async with server(agent_env, repo, "--all-instances") as unpinned:
            created = {
                name: ok(await unpinned.call_tool("sandbox_create", {"name": name}))
                for name in records
            }
        async with anyio.create_task_group() as group:
            for name, record in records.items():
                group.start_soon(loop, agent_env, Path(created[name]["path"]), record)
        return created

    created = anyio.run(main)
    assert created["alpha"]["slot"] != created["beta"]["slot"]
    interrupted = records["alpha"]["cancelled_report"]
    assert interrupted["failure"].startswith("interrupted by the user")
    assert any(check["status"] == "passed" for check in interrupted["checks"])
    for name, record in records.items():
        instance_id = created[name]["instance_id"]
        up = record["up"]
        assert up["result"] == "passed"
        assert up["instance_id"] == instance_id
        done = [line for line in record["up_progress"] if line[:1] in "✓✗"]
        assert len(done) == len(up["checks"]), record["up_progress"]  # one per gate check
        for check in up["checks"]:
            assert any(check["title"] in line for line in done), (check, done)
        assert record["health"]["instance_id"] == instance_id  # the pinned slot's API
        e2e = record["e2e"]
        assert e2e["passed"], e2e
        assert e2e["failing"] == [], e2e
        assert e2e["tests"] >= 5, e2e
        assert any("passed" in line for line in record["e2e_progress"])
        with tarfile.open(record["evidence"]["path"]) as tar:
            names = {member.name.split("/", 1)[1] for member in tar.getmembers()}
        assert {"gate-report.json", "test-results/e2e-junit.xml", "logs/backend.log"} <= names
        (destroyed,) = record["destroy"]["destroyed"]
        assert destroyed["instance_id"] == instance_id
        assert destroyed["slot_released"]
        assert not Path(created[name]["path"]).exists()
        owner = owner_of(Path(agent_env["KTRDR_HOME"]))
        assert leftovers(f"ktrdr.instance={instance_id}", f"ktrdr.owner={owner}") == {
            "container": [],
            "volume": [],
            "network": [],
        }
    registry = Path(agent_env["KTRDR_HOME"]) / "sandbox" / "instances.json"
    assert json.loads(registry.read_text())["instances"] == {}
