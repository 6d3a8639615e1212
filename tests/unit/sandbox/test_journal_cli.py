"""The journal seen from the CLI: which runs leave a record (with the exit code the process
ends with), and `ktrdr sandbox journal` (table, --json, NAME, --since). Docker is a named
stand-in; git repos and the home are real."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from ktrdr.cli.main import cli
from ktrdr.cli.sandbox.journal import log as journal
from ktrdr.cli.sandbox.provision.create import create_instance
from tests.support.docker_standin import DockerStandIn


@pytest.fixture(autouse=True)
def _no_port_probing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ktrdr.cli.sandbox.provision.allocation.port_in_use", lambda port: False)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["sandbox", *args])


def records() -> list[journal.Record]:
    reading = journal.read()
    assert reading.corrupt_lines == []
    assert not reading.torn_tail
    return reading.records


def test_up_refused_outside_an_instance_leaves_one_record_with_exit_1(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOGNAME", "alice")
    out = run("up")
    assert out.exit_code == 1

    [record] = records()
    assert record.command == "up"
    assert record.args == []
    assert record.actor == "user:alice"
    assert record.instance is None
    assert record.exit_code == 1
    assert record.result.startswith("no .env.sandbox in ")
    assert f"Error: {record.result}" in out.stderr
    assert journal.parse_time(record.time).tzinfo is not None


def test_destroy_of_an_unknown_name_leaves_one_record(repo: Path) -> None:
    out = run("destroy", "nope", "--yes")
    assert out.exit_code == 1
    [record] = records()
    assert (record.command, record.args, record.exit_code) == ("destroy", ["nope", "--yes"], 1)
    assert record.result == "no instance named 'nope': see `ktrdr sandbox list`"


def test_a_usage_error_is_recorded_with_exit_2(repo: Path) -> None:
    out = run("up", "--bogus")
    assert out.exit_code == 2
    [record] = records()
    assert record.exit_code == 2
    assert "--bogus" in record.result


def test_read_only_runs_help_and_dry_runs_are_not_recorded(
    repo: Path, docker: DockerStandIn
) -> None:
    for args in (["list"], ["up", "--help"], ["prune", "--dry-run"], ["doctor"], ["journal"]):
        run(*args)
    assert records() == []


def test_create_up_and_destroy_record_the_instance_from_the_registry(
    repo: Path, docker: DockerStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run("create", "feat-a").exit_code == 0
    root = repo.parent / "ktrdr--feat-a"
    monkeypatch.chdir(root)
    (root / ".env.sandbox").write_text(
        (root / ".env.sandbox").read_text() + "KTRDR_INSTANCE_ID=someone-else\n"
    )  # the worktree says otherwise: the registry decides
    run("down")
    monkeypatch.chdir(repo)
    assert run("destroy", "feat-a", "--yes").exit_code == 0

    got = [(r.command, r.instance, r.exit_code) for r in records()]
    assert got[0] == ("create", "ktrdr--feat-a", 0)
    assert got[1][:2] == ("down", "ktrdr--feat-a")
    assert got[2] == ("destroy", "ktrdr--feat-a", 0)


def test_a_journal_that_cannot_be_written_never_changes_the_exit_code(
    repo: Path, isolated_ktrdr_home: Path
) -> None:
    (isolated_ktrdr_home / "sandbox" / "journal.jsonl").mkdir(parents=True)
    out = run("up")
    assert out.exit_code == 1
    assert out.stderr.count("could not write the journal") == 1


# --- ktrdr sandbox journal --------------------------------------------------------------------


def seed(*rows: tuple[str, str | None, str, int, str]) -> None:
    for when, instance, command, code, actor in rows:
        result = "ok" if code == 0 else "the gate failed"
        journal.append(journal.Record(when, actor, instance, command, ["--x"], result, code))


SEEDED = (
    ("2024-05-01T10:00:00+00:00", "ktrdr--feat-a", "create", 0, "user:alice"),
    (
        "2024-05-02T10:00:00+00:00",
        "ktrdr--feat-a",
        "sandbox_up",
        3,
        "mcp:claude-code pinned=ktrdr--feat-a",
    ),
    ("2024-05-03T10:00:00+00:00", "ktrdr--other", "up", 0, "user:bob"),
    ("2024-05-04T10:00:00+00:00", None, "prune", 0, "user:alice"),
)


def test_journal_prints_a_table_of_every_record(repo: Path) -> None:
    seed(*SEEDED)
    out = run("journal")
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["TIME", "ACTOR", "INSTANCE", "COMMAND", "RESULT"]
    assert len(lines) == 5
    assert "2024-05-02 10:00:00Z" in lines[2]
    assert "mcp:claude-code pinned=ktrdr--feat-a" in lines[2]
    assert "sandbox_up --x" in lines[2]
    assert "exit 3: the gate failed" in lines[2]
    assert lines[4].split()[3:] == ["-", "prune", "--x", "ok"]


def test_journal_json_prints_the_records(repo: Path) -> None:
    seed(*SEEDED)
    out = run("journal", "--json")
    data: dict[str, Any] = json.loads(out.stdout)
    assert [r["command"] for r in data["records"]] == ["create", "sandbox_up", "up", "prune"]
    assert data["records"][1]["exit_code"] == 3
    assert data["corrupt_lines"] == []
    assert data["torn_tail"] is False


def test_journal_name_finds_a_destroyed_instance_by_its_id_or_name(repo: Path) -> None:
    seed(*SEEDED)  # nothing is registered: both are gone
    for name in ("ktrdr--feat-a", "feat-a"):
        data = json.loads(run("journal", name, "--json").stdout)
        assert [r["command"] for r in data["records"]] == ["create", "sandbox_up"]
    out = run("journal", "never-was")
    assert out.exit_code == 0
    assert out.stdout == ""
    assert "no journal records for never-was" in out.stderr


def test_journal_name_of_a_live_instance_resolves_through_the_registry(
    repo: Path, docker: DockerStandIn
) -> None:
    create_instance(name="feat-b", cwd=repo)
    seed(("2024-05-01T10:00:00+00:00", "ktrdr--feat-b", "up", 0, "user:alice"), *SEEDED)
    data = json.loads(run("journal", "ktrdr--feat-b", "--json").stdout)
    assert [r["instance"] for r in data["records"]] == ["ktrdr--feat-b"]


def test_journal_since_keeps_later_records_and_refuses_a_bad_value_with_exit_2(
    repo: Path,
) -> None:
    seed(*SEEDED)
    data = json.loads(run("journal", "--since", "2024-05-03", "--json").stdout)
    assert [r["command"] for r in data["records"]] == ["up", "prune"]
    assert json.loads(run("journal", "--since", "1h", "--json").stdout)["records"] == []
    bad = run("journal", "--since", "last tuesday")
    assert bad.exit_code == 2
    assert "Invalid value for '--since'" in bad.stderr


def test_journal_reports_corrupt_lines_on_stderr_and_shows_the_rest(
    repo: Path, isolated_ktrdr_home: Path
) -> None:
    seed(*SEEDED[:1])
    path = isolated_ktrdr_home / "sandbox" / "journal.jsonl"
    with path.open("ab") as handle:
        handle.write(b"garbage\n")
    seed(*SEEDED[1:2])
    with path.open("ab") as handle:
        handle.write(b'{"time": "2024')  # torn

    out = run("journal", "--json")

    assert out.exit_code == 0
    data = json.loads(out.stdout)
    assert len(data["records"]) == 2
    assert data["corrupt_lines"] == [2]
    assert data["torn_tail"] is True
    assert "warning: journal: 1 corrupt line(s) skipped (2)" in out.stderr
    assert "cut short" in out.stderr


@pytest.mark.timing
def test_ctrl_c_is_recorded_with_exit_130(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    # stands in for Ctrl-C
    monkeypatch.setattr("ktrdr.cli.sandbox.instances.locate.locate", interrupted)
    out = run("down")
    assert out.exit_code == 130
    [record] = records()
    assert record.exit_code == 130
    assert record.result == "interrupted"


def test_a_bug_in_the_journal_never_stops_or_changes_the_command(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("resolver bug")

    monkeypatch.setattr("ktrdr.cli.sandbox.journal.entry.resolve_instance", broken)
    out = run("up")
    assert out.exit_code == 1
    assert "no .env.sandbox" in out.stderr
    assert "not recorded in the journal (resolver bug)" in out.stderr
    assert records() == []
