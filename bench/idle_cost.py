"""Idle cost: what 1, 5 and 10 stacks that passed their gate and then sit unused cost the host.

CPU is measured host-wide from /proc/stat (busy = every state but idle and iowait), so the
engine's own work for the stacks (dockerd, containerd, shims, healthcheck execs, proxies) counts,
not only the containers' cgroups. Per stack = (busy with the stacks − busy before them) / N, in
percent of one core, each over MEASURE_S after SETTLE_S. On a shared machine everything else
running moves that figure, so the same window is also measured from the stacks' own counters:
their containers' cgroups plus their containerd shims (what the stacks cost, whatever else runs).
Memory is the containers' own (docker stats). Then every stack is paused (`ktrdr sandbox pause
--all`) and measured the same way, and one is resumed, timed to `Startability Gate: PASSED`.

    python -m bench.idle_cost [COUNT ...]      # default 1 5 10; make bench runs them all
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
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


def _cgroup_cpu_seconds(container_id: str) -> float:
    """CPU seconds of one container's cgroup (v1 or v2, cgroupfs or systemd driver); 0 if none
    is found."""
    v1 = [f"docker/{container_id}", f"system.slice/docker-{container_id}.scope"]
    for group in v1:
        usage = Path("/sys/fs/cgroup/cpuacct", group, "cpuacct.usage")
        if usage.exists():
            return int(usage.read_text()) / 1e9
    for group in v1:
        stat = Path("/sys/fs/cgroup", group, "cpu.stat")
        if stat.exists():
            fields = dict(line.split() for line in stat.read_text().splitlines())
            return int(fields["usage_usec"]) / 1e6
    return 0.0


def _shims(container_ids: list[str]) -> list[int]:
    """Pids of the containerd shims (`containerd-shim-runc-v2 … -id <container> …`)."""
    wanted, pids = set(container_ids), []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if argv and "containerd-shim" in argv[0] and "-id" in argv:
            index = argv.index("-id") + 1
            if index < len(argv) and argv[index] in wanted:
                pids.append(int(proc.name))
    return pids


def _process_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def stacks_cpu_seconds(container_ids: list[str], shims: list[int]) -> float:
    return sum(_cgroup_cpu_seconds(c) for c in container_ids) + sum(
        _process_cpu_seconds(pid) for pid in shims
    )


def measure(container_ids: list[str], seconds: float) -> tuple[float, float]:
    """(host-wide busy, the stacks' cgroups + shims) over the same `seconds`, in % of a core."""
    shims = _shims(container_ids)
    start, host0 = time.monotonic(), _busy_seconds()
    own0 = stacks_cpu_seconds(container_ids, shims)
    time.sleep(seconds)
    own1, host1 = stacks_cpu_seconds(container_ids, shims), _busy_seconds()
    elapsed = time.monotonic() - start
    return 100 * (host1 - host0) / elapsed, 100 * (own1 - own0) / elapsed


def container_ids(owner: str) -> list[str]:
    return subprocess.run(
        ["docker", "ps", "-q", "--no-trunc", "--filter", f"label=ktrdr.owner={owner}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()


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


def _run_count(count: int, baseline: float, *, first: bool) -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory(prefix=f"ktrdr-bench-idle{count}-") as tmp:
        env, paths = make_instances(Path(tmp), count)
        try:
            for path in paths:  # one after the other: the start is not what is measured
                up = _ktrdr(env, "up", "--timeout", "900", cwd=path)
                if up.returncode != 0:
                    raise RuntimeError(f"up failed: {(up.stdout + up.stderr)[-300:]}")
            time.sleep(SETTLE_S)
            owner = (Path(env["KTRDR_HOME"]) / "home-id").read_text().strip()
            ids = container_ids(owner)
            host, own = measure(ids, MEASURE_S)
            idle, own = (host - baseline) / count, own / count
            memory = containers_memory_mib(owner)
            paused_run = _ktrdr(env, "pause", "--all", cwd=paths[0])
            if paused_run.returncode != 0:
                raise RuntimeError(f"pause failed: {paused_run.stderr[-300:]}")
            time.sleep(5)
            host, own_paused = measure(ids, MEASURE_S / 2)
            paused, own_paused = (host - baseline) / count, own_paused / count
            started = time.monotonic()
            resumed = _ktrdr(env, "resume", cwd=paths[0])
            resume_s = time.monotonic() - started
            resume_ok = resumed.returncode == 0
        finally:
            destroy_all(env, paths)
    print(
        f"{count} idle: {idle:.1f}% of a core host-wide ({own:.2f}% in its containers and "
        f"shims) and {memory / count:.0f} MiB per stack; paused {paused:.1f}% "
        f"({own_paused:.3f}%); resume {resume_s:.1f}s ({'PASSED' if resume_ok else 'FAILED'})"
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
            "measure": f"{count} idle stack(s): CPU of its containers' cgroups + shims per stack",
            "value": f"{own:.2f}% of a core",
            "ratio": "",
            "goal": "",
        },
        {
            "benchmark": "Idle cost",
            "measure": f"{count} paused stack(s): host CPU per stack (own cgroups + shims)",
            "value": f"{paused:.2f}% of a core ({own_paused:.3f}%)",
            "ratio": "",
            "goal": "0 within noise",
        },
    ]
    if first:
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


def run(counts: Sequence[int] = COUNTS) -> list[dict[str, object]]:
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
    for count in counts:
        rows += _run_count(count, baseline, first=count == counts[0])
    return rows


if __name__ == "__main__":
    run([int(arg) for arg in sys.argv[1:]] or COUNTS)
