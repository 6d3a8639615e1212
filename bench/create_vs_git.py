"""`ktrdr sandbox create` against plain `git worktree add` on the same repo, alternating which
goes first (each writes tens of MB on the realistic repo; the second of a pair would otherwise
always pay for the first one's write-back), each after `sync`."""

from __future__ import annotations

import os
import random
import statistics
import tempfile
from pathlib import Path

from bench.common import KTRDR, bench_env, clone_project, git, timed_run

PAIRS = 10  # creates are capped at 10 slots; destroy between runs keeps slots free
REALISTIC_PAIRS = 10  # even: each goes first as often; the disk here is noisy
REALISTIC_FILES = 2000  # about the real KTRDR's tracked files
REALISTIC_BYTES = 40 * 2**20  # and its checkout size


def realistic_repo(path: Path) -> Path:
    """This project plus generated source-like files up to ~2,000 tracked files / ~40 MB: the
    size of the real KTRDR, where checkout, not Python start-up, is most of the time."""
    repo = clone_project(path)
    tracked = len(git("ls-files", cwd=repo).splitlines())
    count = max(REALISTIC_FILES - tracked, 1)
    size = REALISTIC_BYTES // count
    rng = random.Random(7)
    words = ["def", "return", "self", "value", "import", "class", "for", "in", "if", "else"]
    for index in range(count):
        folder = repo / "generated" / f"pkg{index // 100:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        text = " ".join(rng.choice(words) + str(rng.randrange(10**6)) for _ in range(size // 10))
        (folder / f"module_{index:04d}.py").write_text(text[:size] + "\n")
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "generated: realistic size", cwd=repo)
    git("gc", "-q", cwd=repo)  # packed, like a clone of the real repository
    return repo


def _pairs(repo: Path, env: dict[str, str], pairs: int, scratch: Path) -> tuple[float, float]:
    """Median seconds of `sandbox create` and of `git worktree add`, alternating."""
    ktrdr_times: list[float] = []
    git_times: list[float] = []

    def create(index: int) -> None:
        os.sync()
        elapsed, result = timed_run([KTRDR, "sandbox", "create", f"k{index}"], env=env, cwd=repo)
        if result.returncode != 0:
            raise SystemExit(f"create failed: {result.stderr.strip()}")
        ktrdr_times.append(elapsed)

    def worktree_add(index: int) -> None:
        os.sync()
        elapsed, _ = timed_run(
            ["git", "worktree", "add", "-q", "-b", f"g{index}", str(scratch / f"g{index}")],
            cwd=repo,
        )
        git_times.append(elapsed)

    for index in range(pairs):
        first, second = (create, worktree_add) if index % 2 == 0 else (worktree_add, create)
        first(index)
        second(index)
        timed_run([KTRDR, "sandbox", "destroy", f"k{index}", "--yes"], env=env, cwd=repo)
        git("worktree", "remove", "--force", str(scratch / f"g{index}"), cwd=repo)
    return statistics.median(ktrdr_times), statistics.median(git_times)


def _row(measure: str, k: float, g: float) -> dict[str, object]:
    print(f"{measure}: sandbox create {k * 1000:.0f} ms, git worktree add {g * 1000:.0f} ms")
    return {
        "benchmark": "Create vs git",
        "measure": measure,
        "value": f"{k * 1000:.0f} ms vs {g * 1000:.0f} ms",
        "ratio": f"{k / g:.2f}×",
        "goal": "≤ 1.3×",
    }


def run() -> list[dict[str, object]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="ktrdr-bench-create-") as tmp:
        tmp_path = Path(tmp)
        env = bench_env(tmp_path / "home")
        repo = clone_project(tmp_path / "repo")
        k, g = _pairs(repo, env, PAIRS, tmp_path)
        rows.append(_row("sandbox create vs git worktree add (median, this repo)", k, g))
    with tempfile.TemporaryDirectory(prefix="ktrdr-bench-create-big-") as tmp:
        tmp_path = Path(tmp)
        env = bench_env(tmp_path / "home")
        repo = realistic_repo(tmp_path / "repo")
        files = len(git("ls-files", cwd=repo).splitlines())
        k, g = _pairs(repo, env, REALISTIC_PAIRS, tmp_path)
        rows.append(_row(f"same, realistic repo ({files} files, ~40 MB)", k, g))
    return rows


if __name__ == "__main__":
    run()
