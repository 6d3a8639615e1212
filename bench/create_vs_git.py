"""`ktrdr sandbox create` against plain `git worktree add` on the same repo, alternating."""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from bench.common import KTRDR, bench_env, clone_project, git, timed_run

PAIRS = 10  # creates are capped at 10 slots; destroy between runs keeps slots free


def run() -> list[dict[str, object]]:
    ktrdr_times: list[float] = []
    git_times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="ktrdr-bench-create-") as tmp:
        tmp_path = Path(tmp)
        env = bench_env(tmp_path / "home")
        repo = clone_project(tmp_path / "repo")
        for index in range(PAIRS):
            elapsed, result = timed_run(
                [KTRDR, "sandbox", "create", f"k{index}"], env=env, cwd=repo
            )
            if result.returncode != 0:
                raise SystemExit(f"create failed: {result.stderr.strip()}")
            ktrdr_times.append(elapsed)
            elapsed, result = timed_run(
                ["git", "worktree", "add", "-q", "-b", f"g{index}", str(tmp_path / f"g{index}")],
                cwd=repo,
            )
            git_times.append(elapsed)
            timed_run([KTRDR, "sandbox", "destroy", f"k{index}", "--yes"], env=env, cwd=repo)
            git("worktree", "remove", str(tmp_path / f"g{index}"), cwd=repo)
    k, g = statistics.median(ktrdr_times), statistics.median(git_times)
    print(
        f"sandbox create median {k * 1000:.0f} ms, "
        f"git worktree add {g * 1000:.0f} ms → {k / g:.2f}×"
    )
    return [
        {
            "benchmark": "Create vs git",
            "measure": "sandbox create vs git worktree add (median)",
            "value": f"{k * 1000:.0f} ms vs {g * 1000:.0f} ms",
            "ratio": f"{k / g:.2f}×",
            "goal": "≤ 1.3×",
        }
    ]


if __name__ == "__main__":
    run()
