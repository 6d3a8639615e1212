"""Table output: plain columns when piped, a rich table on a real terminal (a pty)."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from ktrdr.cli.output import print_table

KTRDR = str(Path(sys.executable).parent / "ktrdr")


def test_piped_table_is_plain_aligned_columns_with_exact_values(
    capsys: pytest.CaptureFixture[str],
) -> None:
    long_path = "/very/" + "long/" * 40 + "path [bold]x[/bold]"
    print_table(["NAME", "SLOT", "PATH"], [("a", 1, long_path), ("bbbbb", None, "/p")])

    lines = capsys.readouterr().out.splitlines()

    assert lines == [
        "NAME   SLOT  PATH",
        f"a      1     {long_path}",  # never folded, markup printed literally
        "bbbbb        /p",
    ]


def write_registry(home: Path, count: int) -> None:
    instances = {
        f"w{i}": {
            "instance_id": f"w{i}",
            "slot": i,
            "path": str(home / f"w{i}"),
            "kind": "clone",
            "branch": "main",
            "created_at": "2026-01-01T00:00:00Z",
        }
        for i in range(1, count + 1)
    }
    (home / "sandbox").mkdir(parents=True)
    (home / "sandbox" / "instances.json").write_text(
        json.dumps({"version": 1, "instances": instances})
    )


def test_list_on_a_terminal_renders_a_rich_table(isolated_ktrdr_home: Path) -> None:
    write_registry(isolated_ktrdr_home, 2)
    leader, follower = pty.openpty()
    try:
        process = subprocess.run(
            [KTRDR, "sandbox", "list"],
            stdin=subprocess.DEVNULL,
            stdout=follower,
            stderr=subprocess.PIPE,
            env={**{k: v for k, v in os.environ.items() if k != "NO_COLOR"}, "TERM": "xterm"},
            timeout=60,
            check=False,
        )
        os.close(follower)
        follower = -1
        output = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child side is closed and everything was read
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)

    text = output.decode()
    assert process.returncode == 0, process.stderr
    assert "\x1b[1m" in text  # the bold header only rich draws
    assert "INSTANCE" in text
    assert "w1" in text
    assert "w2" in text
    assert "stale" in text
