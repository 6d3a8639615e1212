"""Parallel instances: 1, 3, 5, 10 and 20 instances of one home brought up concurrently; time
until every gate PASSED, and what the stacks cost: their containers' memory (docker stats), CPU
while starting and idle.

Every run allocates from KTRDR_SLOTS=40-59 (override with KTRDR_BENCH_SLOTS=FIRST-LAST, twenty
slots or more): past the default ten, which 20 stacks need, and clear of the user's sandboxes
(1..10 by default) and of the test suite's 90..99, so the bench runs beside both. Every figure
is this run's home only (owner label), except the host-wide CPU, which also counts whatever else
runs on the machine.
Each run owns its home and removes what it created, also on failure or ctrl-c (bench/stack.py).

    python -m bench.parallel_instances [COUNT ...]      # default 1 3 5 10 20
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import KTRDR
from bench.idle_cost import (
    _busy_seconds,
    container_ids,
    containers_memory_mib,
    measure,
    stacks_cpu_seconds,
)
from bench.stack import destroy_all, make_instances

COUNTS = (1, 3, 5, 10, 20)
DEFAULT_RANGE_SIZE = 10
WIDE_SLOTS = os.environ.get("KTRDR_BENCH_SLOTS") or "40-59"
SETTLE_S = 10.0
IDLE_S = 30.0


def _failure(instance: Path) -> str:
    """Why an instance's gate did not pass, from its report: the check and the failure."""
    try:
        report = json.loads((instance / ".sandbox" / "gate-report.json").read_text())
    except (OSError, ValueError):
        return "no gate report"
    what = str(report.get("failure") or report.get("result"))
    return f"{report.get('failing_check') or '?'}: {what.splitlines()[0][:80] if what else '?'}"


def _run_count(count: int) -> dict[str, object]:
    slots = WIDE_SLOTS
    with tempfile.TemporaryDirectory(prefix=f"ktrdr-bench-par{count}-") as tmp:
        env, paths = make_instances(Path(tmp), count, slots=slots)
        try:
            owner = (Path(env["KTRDR_HOME"]) / "home-id").read_text().strip()
            peak = {"memory": 0.0}
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    peak["memory"] = max(peak["memory"], containers_memory_mib(owner))
                    stop.wait(2)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            busy_before, start = _busy_seconds(), time.monotonic()
            with ThreadPoolExecutor(max_workers=count) as pool:
                codes = list(
                    pool.map(
                        lambda p: subprocess.run(
                            [KTRDR, "sandbox", "up", "--timeout", "1200"],
                            env=env,
                            cwd=p,
                            capture_output=True,
                            text=True,
                            check=False,
                        ),
                        paths,
                    )
                )
            elapsed = time.monotonic() - start
            causes = [_failure(path) for path, c in zip(paths, codes, strict=True) if c.returncode]
            host_start = 100 * (_busy_seconds() - busy_before) / elapsed
            stop.set()
            sampler.join()
            ids = container_ids(owner)
            # The containers are new: their cgroup counters are what starting them cost.
            start_seconds = stacks_cpu_seconds(ids, [])
            time.sleep(SETTLE_S)
            idle = measure(ids, IDLE_S)
            idle_memory = containers_memory_mib(owner)
        finally:
            destroy_all(env, paths)
    passed = sum(1 for c in codes if c.returncode == 0)
    failures = "; ".join(f"{n}× {cause}" for cause, n in Counter(causes).most_common())
    cores = os.cpu_count() or 1
    where = f" (KTRDR_SLOTS={slots})" if count > DEFAULT_RANGE_SIZE else ""
    value = (
        f"{passed}/{count} in {elapsed:.0f} s; memory peak {peak['memory']:.0f} MiB, idle "
        f"{idle_memory:.0f} MiB ({idle_memory / count:.0f} per stack); CPU while starting: "
        f"containers {start_seconds:.0f} core-s, host {host_start:.0f}% of {cores * 100}%; "
        f"idle: containers {idle.own:.0f}% of a core, host {idle.host:.0f}%"
    )
    if failures:
        value += f"; not passed: {failures}"
    print(f"{count} instances{where}: {value}", flush=True)
    return {
        "benchmark": "Parallel instances",
        "measure": f"{count} at once{where}: all PASSED",
        "value": value,
        "ratio": "",
        "goal": {10: "10 at once", 20: "20 at once (wide range)"}.get(count, ""),
    }


def run(counts: tuple[int, ...] = COUNTS) -> list[dict[str, object]]:
    return [_run_count(count) for count in counts]


if __name__ == "__main__":
    run(tuple(int(a) for a in sys.argv[1:]) or COUNTS)
