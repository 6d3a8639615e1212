"""Gate overhead: the same stopped, warm instance brought up by `ktrdr sandbox up` (to PASSED) and
by plain `docker compose … up -d --wait`, alternating; plus the gate's detection lag.

The stack has no Docker healthchecks (they were most of an idle stack's CPU), so `--wait` returns
once the containers run, before the API, database and workers answer. The comparable figure is
therefore compose plus the time until an independent observer sees every gate check true: what
someone without the gate would have to wait for before using the stack."""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import KTRDR
from bench.stack import (
    all_checks_true,
    destroy_all,
    make_instances,
    plain_compose_argv,
    wait_for,
)

PAIRS = 5
READY_TIMEOUT_S = 120.0


def _down(env: dict[str, str], instance: Path) -> None:
    subprocess.run(
        [KTRDR, "sandbox", "down"], env=env, cwd=instance, check=True, capture_output=True
    )


def _stack_ready(instance: Path) -> Callable[[], bool]:
    """The gate's conditions, checked from outside (HTTP only)."""
    from ktrdr.cli.sandbox.ports import ports_for_slot

    slot = int(
        next(
            line.split("=", 1)[1]
            for line in (instance / ".env.sandbox").read_text().splitlines()
            if line.startswith("KTRDR_SLOT=")
        )
    )
    ports = ports_for_slot(slot)
    others = {"prometheus": ports.prometheus, "grafana": ports.grafana, "jaeger": ports.jaeger_ui}
    return lambda: all_checks_true(ports.api, others, workers=4)


def _ktrdr_up_with_lag(env: dict[str, str], instance: Path) -> tuple[float, float | None]:
    """Seconds to PASSED, and lag between an observer seeing every check true and PASSED."""
    ready = _stack_ready(instance)
    seen_true: list[float] = []
    stop = threading.Event()

    def observe() -> None:
        while not stop.is_set() and not seen_true:
            if ready():
                seen_true.append(time.monotonic())
            time.sleep(0.05)

    observer = threading.Thread(target=observe, daemon=True)
    start = time.monotonic()
    process = subprocess.Popen(
        [KTRDR, "sandbox", "up"],
        env=env,
        cwd=instance,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    observer.start()
    passed_at = None
    assert process.stdout is not None
    for line in process.stdout:
        if "Startability Gate: PASSED" in line:
            passed_at = time.monotonic()
    process.wait()
    stop.set()
    if process.returncode != 0 or passed_at is None:
        raise SystemExit(f"ktrdr sandbox up failed (exit {process.returncode})")
    lag = passed_at - seen_true[0] if seen_true else None
    return passed_at - start, lag


def run() -> list[dict[str, object]]:
    ktrdr_times, compose_times, ready_times, lags = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="ktrdr-bench-gate-") as tmp:
        env, (instance,) = make_instances(Path(tmp), 1)
        try:
            _ktrdr_up_with_lag(env, instance)  # cold start: build caches, init the volume
            _down(env, instance)
            for _ in range(PAIRS):
                elapsed, lag = _ktrdr_up_with_lag(env, instance)
                ktrdr_times.append(elapsed)
                if lag is not None:
                    lags.append(lag)
                _down(env, instance)
                start = time.monotonic()
                subprocess.run(
                    [*plain_compose_argv(instance, env), "up", "-d", "--wait"],
                    env=env,
                    check=True,
                    capture_output=True,
                )
                compose_times.append(time.monotonic() - start)
                ready_at = wait_for(_stack_ready(instance), READY_TIMEOUT_S)
                if ready_at is None:
                    raise SystemExit(
                        f"the compose-started stack was not ready in {READY_TIMEOUT_S}s"
                    )
                ready_times.append(ready_at - start)
                _down(env, instance)
        finally:
            destroy_all(env, [instance])
    k, c = statistics.median(ktrdr_times), statistics.median(compose_times)
    r = statistics.median(ready_times)
    lag = statistics.median(lags) if lags else float("nan")
    print(
        f"warm up: ktrdr sandbox up {k:.1f} s vs compose up --wait {c:.1f} s → {k / c:.2f}×, "
        f"vs compose until ready {r:.1f} s → {k / r:.2f}×; detection lag median {lag:.2f} s"
    )
    return [
        {
            "benchmark": "Gate overhead",
            "measure": f"warm up to PASSED vs compose up -d --wait until ready ({PAIRS} pairs)",
            "value": f"{k:.1f} s vs {r:.1f} s",
            "ratio": f"{k / r:.2f}×",
            "goal": "≤ 1.10×",
        },
        {
            "benchmark": "Gate overhead",
            "measure": "same vs compose up -d --wait alone (no healthchecks: returns before the "
            "stack answers)",
            "value": f"{k:.1f} s vs {c:.1f} s",
            "ratio": f"{k / c:.2f}×",
            "goal": "",
        },
        {
            "benchmark": "Gate overhead",
            "measure": "detection lag (observer all-true → PASSED)",
            "value": f"{lag:.2f} s",
            "ratio": "",
            "goal": "≤ 0.5 s",
        },
    ]


if __name__ == "__main__":
    run()
