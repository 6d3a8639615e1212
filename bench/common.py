"""Shared helpers for the benchmarks: timing subprocesses, statistics, scratch repos.

Benchmarks print figures and ratios measured in one run; they never assert on timings.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
KTRDR = str(VENV_BIN / "ktrdr")


@dataclass
class Sample:
    label: str
    seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def spread(self) -> float:
        """Interquartile range (or max-min for fewer than 4 runs)."""
        if len(self.seconds) < 4:
            return max(self.seconds) - min(self.seconds)
        q = statistics.quantiles(self.seconds, n=4)
        return q[2] - q[0]

    def describe(self) -> str:
        return (
            f"{self.label}: median {self.median * 1000:.1f} ms, IQR {self.spread * 1000:.1f} ms, "
            f"n={len(self.seconds)}"
        )


def timed_run(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    result = subprocess.run(
        list(argv),
        env=dict(env) if env else None,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    return time.perf_counter() - start, result


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.strip()


def scratch_repo(path: Path) -> Path:
    """A small real git repo with one commit (what `sandbox create` branches from)."""
    path.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=path)
    git("config", "user.email", "bench@example.invalid", cwd=path)
    git("config", "user.name", "bench", cwd=path)
    (path / "README.md").write_text("scratch\n")
    git("add", "README.md", cwd=path)
    git("commit", "-q", "-m", "init", cwd=path)
    return path


def clone_project(path: Path) -> Path:
    """A clone of this project (a realistic tree for worktree timings)."""
    subprocess.run(
        ["git", "clone", "-q", str(REPO_ROOT), str(path)], check=True, capture_output=True
    )
    git("config", "user.email", "bench@example.invalid", cwd=path)
    git("config", "user.name", "bench", cwd=path)
    return path


def bench_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KTRDR_")}
    env["KTRDR_HOME"] = str(home)
    return env


def percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]
