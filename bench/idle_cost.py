"""Idle cost: what 1, 5 and 10 stacks that passed their gate and then sit unused cost the host.

CPU is measured host-wide from /proc/stat (busy = user, nice, system, irq and softirq), so the
engine's own work for the stacks (dockerd, containerd, shims, healthcheck execs, proxies) and the
kernel's count, not only the containers' cgroups. Steal is left out: it is time the hypervisor
gave to other guests, not work done here. Per stack = (busy with the stacks − busy just before
them) / N, in percent of one core, each over MEASURE_S after SETTLE_S. PID 1's share is shown
apart: on the measuring VM it is the VM's own agent (`process_api`), whose polling grows with
the number of processes on the host, whatever they are (+0.6 % of a core per 100 sleeping
processes, no container involved); a workstation's init does no such work. On a shared machine
everything else running moves the host figure, so the same window is also measured from the
stacks' own counters: their containers' cgroups plus their containerd shims (what the stacks
cost, whatever else runs), and the engine's daemons (dockerd, containerd, docker-proxy) against
their own baseline. Memory is the containers' own (docker stats). Then every stack is paused
(`ktrdr sandbox pause --all`) and measured the same way, and one is resumed, timed to
`Startability Gate: PASSED`.

    python -m bench.idle_cost [COUNT ...]      # default 1 5 10; make bench runs them all
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.common import KTRDR
from bench.stack import destroy_all, make_instances

COUNTS = (1, 5, 10)
SETTLE_S = 30.0
MEASURE_S = 60.0
BASELINE_S = 30.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ENGINE_DAEMONS = ("dockerd", "containerd", "docker-proxy")


def _busy_seconds() -> float:
    """CPU seconds the whole host spent working since boot (all cores; steal excluded)."""
    user, nice, system, _idle, _iowait, irq, softirq = (
        int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:8]
    )
    return (user + nice + system + irq + softirq) / CLOCK_TICKS


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


def _engine_daemons() -> list[int]:
    """dockerd, containerd and the docker-proxy processes: machine-wide, shared by every
    container on the engine (ours and anyone else's)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "comm").read_text().strip() in ENGINE_DAEMONS:
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@dataclass(frozen=True)
class CpuWindow:
    """CPU over one window, in % of a core: the whole host, PID 1, the stacks' own cgroups +
    shims, and the engine's daemons."""

    host: float
    init: float
    own: float
    engine: float


def measure(container_ids: list[str], seconds: float) -> CpuWindow:
    shims, daemons = _shims(container_ids), _engine_daemons()

    def sample() -> tuple[float, float, float, float, float]:
        return (
            time.monotonic(),
            _busy_seconds(),
            _process_cpu_seconds(1),
            stacks_cpu_seconds(container_ids, shims),
            sum(_process_cpu_seconds(pid) for pid in daemons),
        )

    start = sample()
    time.sleep(seconds)
    end = sample()
    elapsed = end[0] - start[0]
    host, init, own, engine = (
        100 * (b - a) / elapsed for a, b in zip(start[1:], end[1:], strict=True)
    )
    return CpuWindow(host, init, own, engine)


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


def _init_name() -> str:
    try:
        return Path("/proc/1/comm").read_text().strip()
    except OSError:
        return "init"


@dataclass(frozen=True)
class PerStack:
    """One window against the baseline taken just before the stacks, per stack."""

    host: float  # host-wide without PID 1
    with_init: float  # host-wide, PID 1 included
    own: float
    engine: float

    @classmethod
    def of(cls, window: CpuWindow, base: CpuWindow, count: int) -> PerStack:
        with_init = (window.host - base.host) / count
        return cls(
            host=with_init - (window.init - base.init) / count,
            with_init=with_init,
            own=window.own / count,
            engine=(window.engine - base.engine) / count,
        )


def _run_count(count: int, *, first: bool) -> list[dict[str, object]]:
    time.sleep(SETTLE_S)  # the previous count's stacks are gone, but the engine and the disk
    # may still be busy removing them: a baseline read then makes every stack look free
    base = measure([], BASELINE_S)
    print(
        f"before {count} stack(s): host {base.host:.2f}%, PID 1 {base.init:.2f}%, engine "
        f"daemons {base.engine:.2f}% of a core"
    )
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
            idle = PerStack.of(measure(ids, MEASURE_S), base, count)
            memory = containers_memory_mib(owner) / count
            paused_run = _ktrdr(env, "pause", "--all", cwd=paths[0])
            if paused_run.returncode != 0:
                raise RuntimeError(f"pause failed: {paused_run.stderr[-300:]}")
            time.sleep(5)
            paused = PerStack.of(measure(ids, MEASURE_S), base, count)
            started = time.monotonic()
            resumed = _ktrdr(env, "resume", cwd=paths[0])
            resume_s = time.monotonic() - started
            resume_ok = resumed.returncode == 0
        finally:
            destroy_all(env, paths)
    init = _init_name()
    print(
        f"{count} idle, per stack: host-wide {idle.host:.2f}% of a core ({idle.with_init:.2f}% "
        f"with PID 1 {init}); own cgroups + shims {idle.own:.2f}%, engine daemons "
        f"{idle.engine:+.2f}%; {memory:.0f} MiB. Paused: host-wide {paused.host:.2f}% "
        f"({paused.with_init:.2f}%), own {paused.own:.3f}%. Resume {resume_s:.1f}s "
        f"({'PASSED' if resume_ok else 'FAILED'})"
    )
    rows: list[dict[str, object]] = [
        {
            "benchmark": "Idle cost",
            "measure": f"{count} idle stack(s): host CPU per stack (PID 1 apart), memory per stack",
            "value": f"{idle.host:.2f}% of a core ({idle.with_init:.2f}% with PID 1 {init}), "
            f"{memory:.0f} MiB",
            "ratio": "",
            "goal": "≤ 1 %, ≤ 300 MiB",
        },
        {
            "benchmark": "Idle cost",
            "measure": f"{count} idle stack(s): own cgroups + shims, + engine daemons, per stack",
            "value": f"{idle.own:.2f}% of a core, {idle.own + idle.engine:.2f}% with the engine's",
            "ratio": "",
            "goal": "",
        },
        {
            "benchmark": "Idle cost",
            "measure": f"{count} paused stack(s): host CPU per stack (own cgroups + shims)",
            "value": f"{paused.host:.2f}% of a core, {paused.with_init:.2f}% with PID 1 "
            f"({paused.own:.3f}%)",
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


def _noise() -> dict[str, object]:
    """The host's own drift: two empty windows back to back, per window difference."""
    first, second = measure([], BASELINE_S), measure([], BASELINE_S)
    drift = abs(second.host - second.init - (first.host - first.init))
    print(f"noise: two empty windows differ by {drift:.2f}% of a core")
    return {
        "benchmark": "Idle cost",
        "measure": "noise: two empty windows back to back (host without PID 1)",
        "value": f"{first.host - first.init:.2f}% and {second.host - second.init:.2f}% of a core "
        f"(differ by {drift:.2f}%)",
        "ratio": "",
        "goal": "",
    }


def run(counts: Sequence[int] = COUNTS) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = [_noise()]
    for count in counts:
        try:
            rows += _run_count(count, first=count == counts[0])
        except (RuntimeError, subprocess.CalledProcessError) as e:  # e.g. too few free slots
            output = getattr(e, "stderr", None) or str(e)
            if isinstance(output, bytes):
                output = output.decode(errors="replace")
            reason = output.strip().splitlines()[-1][:160]
            print(f"{count} idle: not measured: {reason}")
            rows.append(
                {
                    "benchmark": "Idle cost",
                    "measure": f"{count} idle stack(s)",
                    "value": f"not measured: {reason}",
                    "ratio": "",
                    "goal": "",
                }
            )
    return rows


if __name__ == "__main__":
    run([int(arg) for arg in sys.argv[1:]] or COUNTS)
