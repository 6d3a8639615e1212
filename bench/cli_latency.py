"""CLI latency: `ktrdr --help`, `sandbox list` (10 instances), `sandbox status`, `config show`
against the floor `python -c "import click"` in the same venv, measured in one run."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from bench.common import KTRDR, Sample, bench_env, scratch_repo, timed_run

RUNS = 15


def _measure(label: str, argv: list[str], env: dict[str, str], cwd: Path) -> Sample:
    timed_run(argv, env=env, cwd=cwd)  # warm the page cache once
    seconds = []
    for _ in range(RUNS):
        elapsed, result = timed_run(argv, env=env, cwd=cwd)
        if result.returncode != 0:
            raise SystemExit(f"{label} failed: {result.stderr.strip()[-400:]}")
        seconds.append(elapsed)
    return Sample(label, seconds)


def run() -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory(prefix="ktrdr-bench-cli-") as tmp:
        tmp_path = Path(tmp)
        env = bench_env(tmp_path / "home")
        repo = scratch_repo(tmp_path / "repo")
        for index in range(10):
            _, result = timed_run(
                [KTRDR, "sandbox", "create", f"b{index}", "--json"], env=env, cwd=repo
            )
            if result.returncode != 0:
                print(f"note: create b{index} failed: {result.stderr.strip()}", file=sys.stderr)
        instance_dir = tmp_path / "repo--b0"
        try:
            baseline = _measure(
                "python -c 'import click'", [sys.executable, "-c", "import click"], env, repo
            )
            samples = [
                _measure("ktrdr --help", [KTRDR, "--help"], env, repo),
                _measure(
                    "ktrdr sandbox list (10 instances)", [KTRDR, "sandbox", "list"], env, repo
                ),
                _measure("ktrdr sandbox status", [KTRDR, "sandbox", "status"], env, instance_dir),
                _measure("ktrdr config show", [KTRDR, "config", "show"], env, instance_dir),
            ]
        finally:
            # Each create left a slot-claim marker on the engine: the home is about to vanish.
            timed_run([KTRDR, "sandbox", "destroy", "--all", "--yes", "--force"], env=env, cwd=repo)
    print(baseline.describe())
    rows: list[dict[str, object]] = [
        {
            "benchmark": "CLI latency",
            "measure": baseline.label,
            "value": f"{baseline.median * 1000:.0f} ms",
            "ratio": "1.00 (baseline)",
            "goal": "",
        }
    ]
    for sample in samples:
        ratio = sample.median / baseline.median
        print(f"{sample.describe()} → {ratio:.2f}× baseline")
        goal = "≤ 2.0×" if "sandbox list" in sample.label else ""
        rows.append(
            {
                "benchmark": "CLI latency",
                "measure": sample.label,
                "value": f"{sample.median * 1000:.0f} ms (IQR {sample.spread * 1000:.0f})",
                "ratio": f"{ratio:.2f}×",
                "goal": goal,
            }
        )
    return rows


if __name__ == "__main__":
    run()
