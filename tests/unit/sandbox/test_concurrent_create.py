"""30 real `ktrdr sandbox create` processes at once on distinct names.

Port probing stays real (no test-only switch in the product). The creates allocate from the test
slot range 90..99 (tests/support/slots.py), which the user's sandboxes never use; another run
of this suite may still hold some, so the expected slots are bounded by the slots free at the
start and at the end: normally exactly 10 successes on slots 90..99 and 20 "no free slot"
failures.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ktrdr.cli.sandbox import registry
from ktrdr.cli.sandbox.allocation import busy_ports
from tests.support.slots import TEST_SLOTS

PROCESSES = 30


def _ktrdr() -> list[str]:
    script = Path(sys.executable).parent / "ktrdr"
    if script.exists():
        return [str(script)]
    found = shutil.which("ktrdr")
    return [found] if found else [sys.executable, "-m", "ktrdr.cli.main"]


@pytest.mark.timing
def test_thirty_concurrent_creates_claim_each_free_slot_exactly_once(
    repo: Path, isolated_ktrdr_home: Path
) -> None:
    free = [slot for slot in TEST_SLOTS if not busy_ports(slot, with_owners=False)]
    env = {
        **os.environ,
        "KTRDR_HOME": str(isolated_ktrdr_home),
        "KTRDR_REGISTRY_LOCK_TIMEOUT": "120",
    }
    start = time.monotonic()
    procs = [
        subprocess.Popen(
            [*_ktrdr(), "sandbox", "create", f"c{i:02d}", "--json"],
            cwd=repo,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(PROCESSES)
    ]
    outcomes = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    elapsed = time.monotonic() - start
    succeeded = [json.loads(out) for code, out, _ in outcomes if code == 0]
    failed = [err for code, _, err in outcomes if code != 0]

    free_at_end = [slot for slot in TEST_SLOTS if not busy_ports(slot, with_owners=False)]
    stable = sorted(set(free) & set(free_at_end))
    slots = sorted(r["slot"] for r in succeeded)
    assert len(slots) == len(set(slots)), slots  # never the same slot twice
    assert set(stable) <= set(slots) <= set(free) | set(free_at_end), (slots, free, free_at_end)
    if free == free_at_end == list(TEST_SLOTS):
        assert slots == list(TEST_SLOTS)
        assert len(failed) == 20
    assert len(failed) == PROCESSES - len(slots)
    no_slot = f"Error: no free slot in {TEST_SLOTS[0]}..{TEST_SLOTS[-1]}"
    assert all(err.startswith(no_slot) for err in failed), failed[:3]
    assert all("Traceback" not in err for err in failed)

    entries = registry.load()
    assert all(e.state == "ready" and e.pid is None for e in entries.values())
    assert sorted(e.slot for e in entries.values()) == slots
    for result in succeeded:
        assert (Path(result["path"]) / ".env.sandbox").is_file()
    worktrees = [d for d in repo.parent.iterdir() if d.name.startswith("ktrdr--")]
    assert len(worktrees) == len(slots)  # the failed creates left no directory behind
    branches = subprocess.run(
        ["git", "branch", "--format=%(refname:short)"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(branches) == 1 + len(slots)  # ... and no branch
    print(f"{PROCESSES} concurrent creates: {elapsed:.1f}s, {len(slots)} succeeded")
