"""Gate overhead: the same stopped, warm instance brought up by `ktrdr sandbox up` (to PASSED) and
by plain `docker compose … up -d --wait`, alternating; plus the gate's detection lag.

The stack has no Docker healthchecks (they were most of an idle stack's CPU), so `--wait` returns
once the containers run, before the API, database and workers answer. The comparable figure is
therefore compose plus the time until an independent observer sees every gate check true: what
someone without the gate would have to wait for before using the stack. The observer polls
from the start in both runs, so both stacks carry its load."""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import KTRDR
from bench.stack import all_checks_true, destroy_all, make_instances, plain_compose_argv

PAIRS = 5
READY_TIMEOUT_S = 120.0


def _down(env: dict[str, str], instance: Path) -> None:
    subprocess.run(
        [KTRDR, "sandbox", "down"], env=env, cwd=instance, check=True, capture_output=True
    )


def _stack_ready(instance: Path) -> Callable[[], bool]:
    """The gate's conditions, checked from outside (HTTP only)."""
    from ktrdr.cli.sandbox.slots.ports import ports_for_slot

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


class _ReadyObserver:
    """Polls the gate's conditions from outside every 50 ms from the start of a run, so the
    stack carries the same extra load whichever way it is started; `seen` is when every
    condition was first true."""

    def __init__(self, instance: Path) -> None:
        self.ready = _stack_ready(instance)
        self.seen: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set() and self.seen is None:
            if self.ready():
                self.seen = time.monotonic()
            time.sleep(0.05)

    def __enter__(self) -> _ReadyObserver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def wait(self, timeout: float) -> float | None:
        self._thread.join(timeout)
        return self.seen


def _ktrdr_up_with_lag(env: dict[str, str], instance: Path) -> tuple[float, float | None]:
    """Seconds to PASSED, and lag between an observer seeing every check true and PASSED."""
    with _ReadyObserver(instance) as observer:
        start = time.monotonic()
        process = subprocess.Popen(
            [KTRDR, "sandbox", "up"],
            env=env,
            cwd=instance,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        passed_at = None
        assert process.stdout is not None
        for line in process.stdout:
            if "Startability Gate: PASSED" in line:
                passed_at = time.monotonic()
        process.wait()
    if process.returncode != 0 or passed_at is None:
        raise SystemExit(f"ktrdr sandbox up failed (exit {process.returncode})")
    lag = passed_at - observer.seen if observer.seen is not None else None
    return passed_at - start, lag


def _compose_up(env: dict[str, str], instance: Path) -> tuple[float, float]:
    """Seconds until `compose up -d --wait` returns, and until the observer sees the stack
    ready."""
    with _ReadyObserver(instance) as observer:
        start = time.monotonic()
        subprocess.run(
            [*plain_compose_argv(instance, env), "up", "-d", "--wait"],
            env=env,
            check=True,
            capture_output=True,
        )
        returned = time.monotonic() - start
        ready_at = observer.wait(READY_TIMEOUT_S)
    if ready_at is None:
        raise SystemExit(f"the compose-started stack was not ready in {READY_TIMEOUT_S}s")
    return returned, ready_at - start


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
                returned, ready = _compose_up(env, instance)
                compose_times.append(returned)
                ready_times.append(ready)
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
