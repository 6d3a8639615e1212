"""Idle cost: what 1, 5 and 10 stacks that passed their gate and then sit unused cost the host.

CPU is measured host-wide from /proc/stat (busy = every state but idle and iowait), so the
engine's own work for the stacks (dockerd, containerd, shims, healthcheck execs, proxies) counts,
not only the containers' cgroups. Per stack = (busy with the stacks − busy before them) / N, in
percent of one core, each over MEASURE_S after SETTLE_S. Memory is the containers' own (docker
stats). Then every stack is paused (`ktrdr sandbox pause --all`) and measured the same way, and
one is resumed, timed to `Startability Gate: PASSED`.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import KTRDR
from bench.stack import destroy_all, make_instances

COUNTS = (1, 5, 10)
SETTLE_S = 30.0
MEASURE_S = 60.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _busy_seconds() -> float:
    """CPU seconds spent busy by the whole host since boot (all cores)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def host_cpu_percent(seconds: float) -> float:
    """Host-wide busy CPU over `seconds`, in percent of one core."""
    before, start = _busy_seconds(), time.monotonic()
    time.sleep(seconds)
    return 100 * (_busy_seconds() - before) / (time.monotonic() - start)


def containers_memory_mib(owner: str) -> float:
    """Memory of the containers this run's home owns (other stacks on the engine excluded)."""
    ids = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=ktrdr.owner={owner}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if not ids:
        return 0.0
    out = subprocess.run(
        ["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", *ids],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    units = {"GiB": 1024.0, "MiB": 1.0, "KiB": 1 / 1024, "B": 1 / 2**20}
    total = 0.0
    for line in out.splitlines():
        used = line.split("/")[0].strip()
        number = used.rstrip("GMKiB")
        total += float(number) * units[used[len(number) :]]
    return total


def _ktrdr(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KTRDR, "sandbox", *args], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )


def _run_count(count: int, baseline: float) -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory(prefix=f"ktrdr-bench-idle{count}-") as tmp:
        env, paths = make_instances(Path(tmp), count)
        try:
            for path in paths:  # one after the other: the start is not what is measured
                up = _ktrdr(env, "up", "--timeout", "900", cwd=path)
                if up.returncode != 0:
                    raise RuntimeError(f"up failed: {(up.stdout + up.stderr)[-300:]}")
            time.sleep(SETTLE_S)
            idle = (host_cpu_percent(MEASURE_S) - baseline) / count
            owner = (Path(env["KTRDR_HOME"]) / "home-id").read_text().strip()
            memory = containers_memory_mib(owner)
            paused_run = _ktrdr(env, "pause", "--all", cwd=paths[0])
            if paused_run.returncode != 0:
                raise RuntimeError(f"pause failed: {paused_run.stderr[-300:]}")
            time.sleep(5)
            paused = (host_cpu_percent(MEASURE_S / 2) - baseline) / count
            started = time.monotonic()
            resumed = _ktrdr(env, "resume", cwd=paths[0])
            resume_s = time.monotonic() - started
            resume_ok = resumed.returncode == 0
        finally:
            destroy_all(env, paths)
    print(
        f"{count} idle: {idle:.1f}% of a core and {memory / count:.0f} MiB per stack; "
        f"paused {paused:.1f}%; resume {resume_s:.1f}s ({'PASSED' if resume_ok else 'FAILED'})"
    )
    rows: list[dict[str, object]] = [
        {
            "benchmark": "Idle cost",
            "measure": f"{count} idle stack(s): host CPU and memory per stack",
            "value": f"{idle:.1f}% of a core, {memory / count:.0f} MiB",
            "ratio": "",
            "goal": "≤ 1 %, ≤ 300 MiB",
        },
        {
            "benchmark": "Idle cost",
            "measure": f"{count} paused stack(s): host CPU per stack",
            "value": f"{paused:.2f}% of a core",
            "ratio": "",
            "goal": "0 within noise",
        },
    ]
    if count == COUNTS[0]:
        rows.append(
            {
                "benchmark": "Idle cost",
                "measure": "resume → Startability Gate: PASSED",
                "value": f"{resume_s:.1f} s" + ("" if resume_ok else " (FAILED)"),
                "ratio": "",
                "goal": "≤ 2 s",
            }
        )
    return rows


def run() -> list[dict[str, object]]:
    baseline = host_cpu_percent(MEASURE_S / 2)
    print(f"host baseline before any stack: {baseline:.1f}% of a core")
    rows: list[dict[str, object]] = [
        {
            "benchmark": "Idle cost",
            "measure": "host baseline (no stack of this run)",
            "value": f"{baseline:.1f}% of a core",
            "ratio": "",
            "goal": "",
        }
    ]
    for count in COUNTS:
        rows += _run_count(count, baseline)
    return rows


if __name__ == "__main__":
    run()
