"""Parallel instances: 1, 3, 5 and 10 instances brought up concurrently; time until every gate
PASSED, and the engine's idle/peak memory and CPU (docker stats)."""

from __future__ import annotations

import json
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import KTRDR
from bench.stack import destroy_all, make_instances

COUNTS = (1, 3, 5, 10)


def _stats_sample() -> tuple[float, float]:
    """(total memory MiB, total CPU %) over every running container."""
    out = subprocess.run(
        ["docker", "stats", "--no-stream", "--format", "{{json .}}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    memory, cpu = 0.0, 0.0
    for line in out.splitlines():
        row = json.loads(line)
        cpu += float(row["CPUPerc"].rstrip("%") or 0)
        used = row["MemUsage"].split("/")[0].strip()
        number = float("".join(ch for ch in used if ch.isdigit() or ch == "."))
        memory += (
            number
            * {"GiB": 1024, "MiB": 1, "KiB": 1 / 1024, "B": 1 / 2**20}[used.lstrip("0123456789.")]
        )
    return memory, cpu


def _run_count(count: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix=f"ktrdr-bench-par{count}-") as tmp:
        env, paths = make_instances(Path(tmp), count)
        peaks = {"memory": 0.0, "cpu": 0.0}
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                memory, cpu = _stats_sample()
                peaks["memory"], peaks["cpu"] = max(peaks["memory"], memory), max(peaks["cpu"], cpu)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = time.monotonic()
        try:
            with ThreadPoolExecutor(max_workers=count) as pool:
                codes = list(
                    pool.map(
                        lambda p: subprocess.run(
                            [KTRDR, "sandbox", "up", "--timeout", "900"],
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
            stop.set()
            sampler.join()
            time.sleep(10)
            idle_memory, idle_cpu = _stats_sample()
        finally:
            stop.set()
            destroy_all(env, paths)
    passed = sum(1 for c in codes if c.returncode == 0)
    failures = [c.stdout.strip().splitlines()[-1:] for c in codes if c.returncode != 0]
    print(
        f"{count} instances: {passed}/{count} PASSED in {elapsed:.0f} s; "
        f"peak {peaks['memory']:.0f} MiB / {peaks['cpu']:.0f}% CPU; "
        f"idle {idle_memory:.0f} MiB / {idle_cpu:.0f}% CPU {failures}"
    )
    return {
        "benchmark": "Parallel instances",
        "measure": f"{count} at once: all PASSED",
        "value": f"{passed}/{count} in {elapsed:.0f} s; peak {peaks['memory']:.0f} MiB, "
        f"{peaks['cpu']:.0f}% CPU; idle {idle_memory:.0f} MiB, {idle_cpu:.0f}% CPU",
        "ratio": "",
        "goal": "10 at once" if count == 10 else "",
    }


def run() -> list[dict[str, object]]:
    return [_run_count(count) for count in COUNTS]


if __name__ == "__main__":
    run()
