"""Registry contention: 50 concurrent `ktrdr sandbox create --json` calls on 50 names.
Correctness (10 slots, no duplicate), total wall time, p50/p95 per call. No engine needed."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import KTRDR, bench_env, percentile, scratch_repo

CALLS = 50


def run() -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory(prefix="ktrdr-bench-reg-") as tmp:
        tmp_path = Path(tmp)
        env = bench_env(tmp_path / "home")
        repo = scratch_repo(tmp_path / "repo")

        def create(index: int) -> tuple[float, int, str]:
            start = time.perf_counter()
            result = subprocess.run(
                [KTRDR, "sandbox", "create", f"c{index}", "--json"],
                env=env,
                cwd=repo,
                capture_output=True,
                text=True,
                check=False,
            )
            return time.perf_counter() - start, result.returncode, result.stdout

        wall_start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=CALLS) as pool:
            outcomes = list(pool.map(create, range(CALLS)))
        wall = time.perf_counter() - wall_start
        registry = json.loads((tmp_path / "home" / "sandbox" / "instances.json").read_text())
    slots = [entry["slot"] for entry in registry["instances"].values()]
    succeeded = sum(1 for _, code, _ in outcomes if code == 0)
    durations = [elapsed for elapsed, _, _ in outcomes]
    correct = succeeded == 10 and sorted(slots) == list(range(1, 11))
    p50, p95 = percentile(durations, 50), percentile(durations, 95)
    print(
        f"{CALLS} concurrent creates: {succeeded} succeeded, slots {sorted(slots)}, "
        f"{'correct' if correct else 'WRONG'}; wall {wall:.2f} s, p50 {p50:.2f} s, p95 {p95:.2f} s"
    )
    return [
        {
            "benchmark": "Registry contention",
            "measure": f"{CALLS} concurrent creates: correctness",
            "value": f"{succeeded} ok, {len(set(slots))} distinct slots",
            "ratio": "",
            "goal": "10 slots, no duplicate" + (" ✓" if correct else " ✗"),
        },
        {
            "benchmark": "Registry contention",
            "measure": "wall time / p50 / p95 per call",
            "value": f"{wall:.2f} s / {p50:.2f} s / {p95:.2f} s",
            "ratio": "",
            "goal": "",
        },
    ]


if __name__ == "__main__":
    run()
