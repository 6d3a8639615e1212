"""pause / resume on the real engine: a frozen stack uses no CPU, `status`/`list` say paused,
and after a freeze longer than the heartbeat timeout (15 s) `resume` passes the gate with every
worker idle at once, and a backtest started just before the freeze completes (never failed by
the freeze)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from tests.support.workspace import UP_TIMEOUT, Workspace

FREEZE_S = 20  # longer than the backend's heartbeat timeout


def _cpu_usage_ns(instance_id: str) -> int:
    """Total CPU time of the instance's containers, from their cgroups (v1 or v2)."""
    import subprocess

    ids = subprocess.run(
        ["docker", "ps", "-q", "--no-trunc", "--filter", f"label=ktrdr.instance={instance_id}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    total = 0
    for container_id in ids:
        candidates = [
            *Path("/sys/fs/cgroup").glob(f"**/*{container_id}*/cpu.stat"),
            *Path("/sys/fs/cgroup").glob(f"**/*{container_id}*/cpuacct.usage"),
        ]
        for path in candidates[:1]:
            text = path.read_text()
            if path.name == "cpu.stat":
                usec = next(line for line in text.splitlines() if line.startswith("usage_usec"))
                total += int(usec.split()[1]) * 1000
            else:
                total += int(text)
    return total


def test_pause_freezes_and_resume_passes_the_gate_with_workers_alive(
    workspace: Workspace,
) -> None:
    workspace.ktrdr("sandbox", "create", "nap")
    instance = workspace.path_of("nap")
    workspace.instance_ids.add(instance.name)
    workspace.ktrdr("sandbox", "up", cwd=instance, timeout=UP_TIMEOUT)
    api_port = json.loads(workspace.ktrdr("sandbox", "status", "--json", cwd=instance)["stdout"])[
        "ports"
    ]["api"]
    started = workspace.ktrdr(
        "-p", str(api_port), "operations", "start", "backtest", "--symbol", "AAPL", "--json"
    )
    operation_id = json.loads(started["stdout"])["operation_id"]

    paused = json.loads(workspace.ktrdr("sandbox", "pause", "--json", cwd=instance)["stdout"])
    assert paused["instance_id"] == instance.name, paused
    assert len(paused["paused"]) >= 8, paused
    status = json.loads(workspace.ktrdr("sandbox", "status", "--json", cwd=instance)["stdout"])
    assert status["status"] == "paused", status
    listed = json.loads(workspace.ktrdr("sandbox", "list", "--json")["stdout"])
    assert [row["status"] for row in listed if row["instance_id"] == instance.name] == ["paused"]
    again = json.loads(workspace.ktrdr("sandbox", "pause", "--json", cwd=instance)["stdout"])
    assert again["paused"] == []  # already paused: nothing to do, not an error

    before = _cpu_usage_ns(instance.name)
    time.sleep(FREEZE_S)
    frozen_cpu_ms = (_cpu_usage_ns(instance.name) - before) / 1e6
    print(f"CPU of the paused stack over {FREEZE_S}s: {frozen_cpu_ms:.1f} ms", file=sys.stderr)
    assert frozen_cpu_ms < 50, "a frozen stack used CPU"

    resume_started = time.monotonic()
    resumed = workspace.ktrdr("sandbox", "resume", "--json", cwd=instance, timeout=300)
    resume_s = time.monotonic() - resume_started
    print(f"resume to PASSED: {resume_s:.1f}s", file=sys.stderr)
    report = json.loads(resumed["stdout"])
    assert report["result"] == "passed", report
    workers = json.loads(
        workspace.ktrdr("-p", str(api_port), "workers", "list", "--json")["stdout"]
    )
    assert workers, workers
    assert all(w["status"] in ("idle", "busy") for w in workers), workers
    deadline = time.monotonic() + 120
    while True:  # it may have finished before the freeze or after: never failed by it
        shown = workspace.ktrdr("-p", str(api_port), "operations", "show", operation_id, "--json")
        operation = json.loads(shown["stdout"])
        if operation["status"] not in ("pending", "running") or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert operation["status"] == "completed", operation
