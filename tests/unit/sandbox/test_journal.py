"""The journal file itself: append, read, corrupt and torn lines, --since, concurrent writers
(real processes), and what goes into a record (actors, arguments without secrets)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ktrdr.cli.sandbox.journal import log as journal
from ktrdr.cli.sandbox.journal.entry import (
    Action,
    Recorder,
    cli_recorded,
    mcp_actor,
    redact_arguments,
    redact_argv,
    user_actor,
)

PROJECT = Path(__file__).resolve().parents[3]


def a_record(
    command: str = "up", *, instance: str | None = "ktrdr--a", code: int = 0
) -> journal.Record:
    return Action.begin("user:tester", command, [], instance).record(
        "ok" if code == 0 else "it failed", code, instance=None
    )


def test_a_record_appended_reads_back_equal_and_the_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "sandbox" / "journal.jsonl"
    first, second = a_record("up"), a_record("down", code=1)
    journal.append(first, path)
    journal.append(second, path)

    reading = journal.read(path)

    assert reading.records == [first, second]
    assert reading.corrupt_lines == []
    assert not reading.torn_tail
    assert reading.problem() is None
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(path.read_bytes().splitlines()) == 2


def test_the_default_path_is_under_the_home(isolated_ktrdr_home: Path) -> None:
    journal.append(a_record())
    assert (isolated_ktrdr_home / "sandbox" / "journal.jsonl").is_file()
    assert len(journal.read().records) == 1


def test_a_missing_journal_is_empty(tmp_path: Path) -> None:
    assert journal.read(tmp_path / "none.jsonl") == journal.Reading([], [])


def test_corrupt_lines_are_counted_and_skipped_and_the_file_is_left_as_it_is(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.jsonl"
    journal.append(a_record("up"), path)
    with path.open("ab") as handle:
        handle.write(b"not json at all\n")
        handle.write(b'{"v": 1, "time": "x"}\n')  # JSON, but not a record
        handle.write(b'{"v": 99, "command": "from the future"}\n')
        handle.write(b"\xff\xfe\n")
        handle.write(b"\n")  # a blank line is not a problem
    journal.append(a_record("down"), path)
    before = path.read_bytes()

    reading = journal.read(path)

    assert [r.command for r in reading.records] == ["up", "down"]
    assert reading.corrupt_lines == [2, 3, 4, 5]
    assert not reading.torn_tail
    assert "4 corrupt line(s) skipped (2, 3, 4, 5)" in (reading.problem() or "")
    assert path.read_bytes() == before


def test_a_torn_last_line_is_reported_and_the_next_record_starts_on_its_own_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.jsonl"
    journal.append(a_record("up"), path)
    with path.open("ab") as handle:  # a crash halfway through a write
        handle.write(b'{"time":"2024-05-01T12:00:00+00:00","actor":"user:x","inst')

    torn = journal.read(path)
    assert [r.command for r in torn.records] == ["up"]
    assert torn.torn_tail
    assert torn.corrupt_lines == []
    assert "cut short" in (torn.problem() or "")

    journal.append(a_record("down"), path)
    after = journal.read(path)
    assert [r.command for r in after.records] == ["up", "down"]
    assert after.corrupt_lines == [2]
    assert not after.torn_tail


def test_a_complete_last_record_without_its_newline_still_counts(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    line = json.dumps(a_record("pause").to_json())
    path.write_text(line)  # e.g. written by hand
    reading = journal.read(path)
    assert [r.command for r in reading.records] == ["pause"]
    assert not reading.torn_tail


APPENDER = """
import sys
from ktrdr.cli.sandbox.journal import log as journal
from ktrdr.cli.sandbox.journal.entry import Action

path, writer, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
for n in range(count):
    action = Action.begin("user:" + writer, "up", ["x" * 3000, str(n)], writer)
    journal.append(action.record("ok", 0, instance=None), __import__("pathlib").Path(path))
"""


@pytest.mark.timing
def test_concurrent_appends_from_several_processes_each_land_whole_on_their_own_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.jsonl"
    writers, each = 6, 40
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, str(path), f"w{i}", str(each)], env=env, cwd=PROJECT
        )
        for i in range(writers)
    ]
    assert [p.wait(timeout=120) for p in processes] == [0] * writers

    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    assert all(journal.parse_line(line) is not None for line in lines[:-1])
    reading = journal.read(path)
    assert len(reading.records) == writers * each
    assert reading.corrupt_lines == []
    assert not reading.torn_tail
    for i in range(writers):  # each writer's records in its own order
        mine = [r.args[1] for r in reading.records if r.instance == f"w{i}"]
        assert mine == [str(n) for n in range(each)]


# --- --since ----------------------------------------------------------------------------------

NOW = datetime(2024, 5, 10, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", NOW - timedelta(seconds=90)),
        ("30m", NOW - timedelta(minutes=30)),
        ("2h", NOW - timedelta(hours=2)),
        (" 3d ", NOW - timedelta(days=3)),
        ("1w", NOW - timedelta(weeks=1)),
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024-05-01T08:30", datetime(2024, 5, 1, 8, 30, tzinfo=UTC)),
        ("2024-05-01T08:30:00+02:00", datetime(2024, 5, 1, 6, 30, tzinfo=UTC)),
    ],
)
def test_since_takes_an_age_or_an_iso_time_naive_meaning_utc(text: str, expected: datetime) -> None:
    assert journal.parse_since(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["", "yesterday", "2h ago", "-3d", "3x", "2024-13-01"])
def test_since_refuses_anything_else_saying_what_it_takes(text: str) -> None:
    with pytest.raises(ValueError, match="neither an age"):
        journal.parse_since(text, now=NOW)


def test_select_filters_by_instance_and_time() -> None:
    old = journal.Record("2024-05-01T00:00:00+00:00", "user:x", "a", "up", [], "ok", 0)
    new = journal.Record("2024-05-09T00:00:00+00:00", "user:x", "b", "up", [], "ok", 0)
    gone = journal.Record("2024-05-09T00:00:00+00:00", "user:x", None, "prune", [], "ok", 0)
    records = [old, new, gone]
    assert journal.select(records, instances={"a"}) == [old]
    assert journal.select(records, since=datetime(2024, 5, 5, tzinfo=UTC)) == [new, gone]
    assert journal.select(records, instances=set()) == []


# --- what a record says -------------------------------------------------------------------------


def test_the_terminal_actor_is_the_login_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGNAME", "alice")
    assert user_actor() == "user:alice"


def test_the_mcp_actor_names_the_client_and_its_pin() -> None:
    assert mcp_actor("claude-code", "ktrdr--feat") == "mcp:claude-code pinned=ktrdr--feat"
    assert mcp_actor("claude-code", None) == "mcp:claude-code unpinned"
    assert mcp_actor("my client\n", None) == "mcp:my-client unpinned"
    assert mcp_actor(None, None) == "mcp:unknown-client unpinned"


def test_secrets_in_arguments_are_never_recorded() -> None:
    argv = ["--db-password=hunter2", "--token", "abc123", "API_KEY=s3", "-k", "test_password"]
    shown = redact_argv(argv)
    assert shown == ["--db-password=***", "--token", "***", "API_KEY=***", "-k", "test_password"]
    assert not {"hunter2", "abc123", "s3"} & set(" ".join(shown).replace("=", " ").split())
    assert redact_arguments(
        {"api_token": "abc", "name": "feat", "pytest_args": ["--secret=x"]}
    ) == {
        "api_token": "***",
        "name": "feat",
        "pytest_args": ["--secret=***"],
    }


def test_long_and_many_arguments_are_cut_to_a_sane_size() -> None:
    shown = redact_argv(["y" * 5000] * 100)
    assert len(shown) == 31
    assert shown[-1] == "… 70 more"
    assert all(len(arg) <= 200 for arg in shown)
    assert redact_arguments({"name": "n\n" * 300})["name"].count("\n") == 0


@pytest.mark.parametrize(
    ("command", "params", "recorded"),
    [
        ("up", {}, True),
        ("test-e2e", {}, True),
        ("init-shared", {}, True),
        ("prune", {"dry_run": False}, True),
        ("prune", {"dry_run": True}, False),
        ("doctor", {"fix": True}, True),
        ("doctor", {"fix": False}, False),
        ("list", {}, False),
        ("status", {}, False),
        ("evidence", {}, False),
        ("journal", {}, False),
        ("status", {"allow": ("privileged",)}, True),  # any policy override is recorded
    ],
)
def test_only_commands_that_change_something_are_recorded(
    command: str, params: dict[str, object], recorded: bool
) -> None:
    assert cli_recorded(command, params) is recorded


def test_a_journal_that_cannot_be_written_is_said_once_and_never_raises(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.mkdir()  # not a file: every write fails (running as root, permissions would not)
    warnings: list[str] = []
    recorder = Recorder(warn=warnings.append, path=path)
    recorder.write(a_record())
    recorder.write(a_record())
    assert len(warnings) == 1
    assert str(path) in warnings[0]
    assert "not affected" in warnings[0]
