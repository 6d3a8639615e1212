"""The registry file: versioned JSON, sidecar lock, atomic writes, corrupt files left alone."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from filelock import FileLock

from ktrdr.cli.main import cli
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.home import registry
from ktrdr.cli.sandbox.home.directory import ktrdr_home
from ktrdr.cli.sandbox.home.registry import Entry


def _entry(instance_id: str = "ktrdr--a", slot: int = 1) -> Entry:
    return Entry(instance_id, slot, f"/tmp/{instance_id}", "worktree", "a", registry.now_iso())


def test_registry_lives_under_ktrdr_home(isolated_ktrdr_home: Path) -> None:
    assert registry.registry_path() == isolated_ktrdr_home / "sandbox" / "instances.json"


def test_a_relative_ktrdr_home_is_refused_in_one_line_naming_the_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resolving it (against which directory?) made a home inside every worktree."""
    monkeypatch.setenv("KTRDR_HOME", "rel/home")
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(cli, ["sandbox", "list", "--json"])
    assert out.exit_code == 2
    assert out.stdout == ""
    assert out.stderr.count("\n") == 1
    assert "KTRDR_HOME=rel/home is a relative path" in out.stderr
    assert f"export KTRDR_HOME={tmp_path / 'rel' / 'home'}" in out.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_empty_ktrdr_home_is_refused_not_read_as_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KTRDR_HOME", "")
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(cli, ["sandbox", "list"])
    assert out.exit_code == 2
    assert out.stderr.count("\n") == 1
    assert "KTRDR_HOME is set but empty: unset it to use ~/.ktrdr" in out.stderr
    assert list(tmp_path.iterdir()) == []


def test_ktrdr_home_expands_the_user_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    monkeypatch.setenv("KTRDR_HOME", "~/state")
    assert ktrdr_home() == tmp_path / "me" / "state"


def test_missing_registry_reads_as_empty_without_creating_anything(
    isolated_ktrdr_home: Path,
) -> None:
    assert registry.load() == {}
    assert not isolated_ktrdr_home.exists()


def test_transaction_writes_versioned_json_without_ports_and_leaves_no_temp_files() -> None:
    with registry.transaction() as entries:
        entries["ktrdr--a"] = _entry()
    path = registry.registry_path()
    data = json.loads(path.read_text())
    assert data["version"] == 1
    stored = data["instances"]["ktrdr--a"]
    assert {"instance_id", "slot", "path", "kind", "branch", "created_at"} <= set(stored)
    assert not any("port" in key for key in stored)
    assert stored["created_at"].endswith("Z")
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "instances.json",
        "instances.json.lock",
    ]
    assert registry.load()["ktrdr--a"].slot == 1


def test_unchanged_transaction_does_not_rewrite_the_file() -> None:
    with registry.transaction() as entries:
        entries["ktrdr--a"] = _entry()
    path = registry.registry_path()
    before = path.stat().st_ino
    with registry.transaction():
        pass
    assert path.stat().st_ino == before


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"",
        b"\xff\xfe",
        b'{"version": 1}',
        b'{"version": 1, "instances": {"a": {"slot": 1}}}',
        b'{"version": 1, "instances": {"a": {"instance_id": "b", "slot": 1, "path": "/x", '
        b'"kind": "clone", "branch": null, "created_at": "t"}}}',
        b'{"version": 1, "instances": {"a": {"instance_id": "a", "slot": 100, "path": "/x", '
        b'"kind": "clone", "branch": null, "created_at": "t"}}}',
        b'{"version": 1, "instances": {"a": {"instance_id": "a", "slot": 1, "path": "/x", '
        b'"kind": "folder", "branch": null, "created_at": "t"}}}',
    ],
)
def test_corrupt_registry_is_a_clear_error_and_the_file_is_untouched(content: bytes) -> None:
    path = registry.registry_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(SandboxError) as caught:
        registry.load()
    assert str(path) in str(caught.value)
    assert "corrupt" in str(caught.value)
    with pytest.raises(SandboxError), registry.transaction() as entries:
        entries["x"] = _entry("x")
    assert path.read_bytes() == content


def _raw_entry(**fields: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "instance_id": "x",
        "slot": 1,
        "path": "/tmp/x",
        "kind": "worktree",
        "branch": None,
        "created_at": "2026-01-01T00:00:00Z",
    }
    entry.update(fields)
    return entry


@pytest.mark.parametrize(
    ("instances", "problem"),
    [
        (
            {"x": _raw_entry(state="creating", pid="abc")},
            'pid must be an integer or null, got "abc"',
        ),
        ({"x": _raw_entry(pid=True)}, "pid must be an integer or null, got true"),
        ({"x": _raw_entry(slot=True)}, "slot must be an integer 0..99, got true"),
        ({"x": _raw_entry(slot="1")}, 'slot must be an integer 0..99, got "1"'),
        ({"x": _raw_entry(slot=-1)}, "slot must be an integer 0..99, got -1"),
        ({"x": _raw_entry(path="rel/x")}, 'path must be an absolute path, got "rel/x"'),
        ({"x": _raw_entry(path=None)}, "path must be an absolute path, got null"),
        ({"x": _raw_entry(instance_id="y")}, "instance_id must equal its key 'x', got \"y\""),
        (
            {"x": _raw_entry(state="weird")},
            'state must be one of "ready", "creating", "destroying", got "weird"',
        ),
        ({"x": _raw_entry(kind="folder")}, 'kind must be one of "worktree", "clone", got "folder"'),
        ({"x": _raw_entry(branch=3)}, "branch must be a string or null, got 3"),
        ({"x": _raw_entry(name=[])}, "name must be a string or null, got []"),
        ({"x": _raw_entry(repo={})}, "repo must be a string or null, got {}"),
        ({"x": _raw_entry(created_at=None)}, "created_at must be a string, got null"),
        ({"x": _raw_entry(color="red")}, "unknown field 'color'"),
        ({"x": {"slot": 1, "path": "/x"}}, "missing 'instance_id', 'kind', 'branch', 'created_at'"),
        ({"x": None}, "must be an object, got null"),
    ],
)
def test_each_entry_field_is_type_checked_and_named_in_the_error(
    instances: dict[str, object], problem: str
) -> None:
    path = registry.registry_path()
    path.parent.mkdir(parents=True)
    content = json.dumps({"version": 1, "instances": instances}).encode()
    path.write_bytes(content)
    with pytest.raises(SandboxError) as caught:
        registry.load()
    assert str(caught.value) == (
        f"registry {path} is corrupt (entry 'x': {problem}); "
        "fix or move the file aside (it was left untouched)"
    )
    assert path.read_bytes() == content


def test_a_bad_entry_is_one_error_line_for_list_doctor_and_prune() -> None:
    """A string pid used to crash all of these with a TypeError traceback."""
    path = registry.registry_path()
    path.parent.mkdir(parents=True)
    content = json.dumps(
        {"version": 1, "instances": {"x": _raw_entry(state="creating", pid="abc")}}
    )
    path.write_text(content)
    for args in (["list"], ["list", "--json"], ["prune"]):
        out = CliRunner().invoke(cli, ["sandbox", *args])
        assert out.exit_code == 1, args
        assert out.exception is None or isinstance(out.exception, SystemExit)
        assert out.stderr.strip().splitlines() == [
            f"Error: registry {path} is corrupt (entry 'x': pid must be an integer or null, "
            'got "abc"); fix or move the file aside (it was left untouched)'
        ]
    assert path.read_text() == content


@pytest.mark.parametrize(
    ("version", "problem"),
    [
        ('"1"', 'version must be the integer 1, got "1"'),
        ("true", "version must be the integer 1, got true"),
        ("null", "version must be the integer 1, got null"),
    ],
)
def test_a_version_that_is_not_an_integer_is_corrupt(version: str, problem: str) -> None:
    path = registry.registry_path()
    path.parent.mkdir(parents=True)
    path.write_text(f'{{"version": {version}, "instances": {{}}}}')
    with pytest.raises(SandboxError) as caught:
        registry.load()
    assert f"is corrupt ({problem});" in str(caught.value)


def test_an_unusable_lock_file_is_one_error_line_naming_it(repo: Path) -> None:
    lock = registry.registry_path().with_name("instances.json.lock")
    lock.mkdir(parents=True)
    out = CliRunner().invoke(cli, ["sandbox", "create", "feat-a"])
    assert out.exit_code == 1
    assert out.stderr.strip().splitlines() == [
        f"Error: cannot lock the registry: {lock} is unusable (Is a directory); remove it if it "
        "is not a regular file, or check its permissions"
    ]
    assert not (repo.parent / "ktrdr--feat-a").exists()


def test_a_file_where_the_sandbox_dir_belongs_is_a_clear_error(isolated_ktrdr_home: Path) -> None:
    isolated_ktrdr_home.mkdir()
    (isolated_ktrdr_home / "sandbox").write_text("not a directory\n")
    with (
        pytest.raises(SandboxError, match=r"cannot create .*/sandbox: File exists; check"),
        registry.transaction(),
    ):
        pass


def test_an_oserror_inside_a_transaction_is_not_blamed_on_the_lock() -> None:
    with pytest.raises(FileNotFoundError), registry.transaction():
        Path("/nonexistent/for/sure").read_text()


def test_a_failed_registry_write_names_the_file_and_leaves_it_unchanged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with registry.transaction() as entries:
        entries["ktrdr--a"] = _entry()
    path = registry.registry_path()
    before = path.read_bytes()

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)  # the disk filling up between write and rename
    with pytest.raises(SandboxError) as caught, registry.transaction() as entries:
        entries["ktrdr--b"] = _entry("ktrdr--b", 2)
    assert str(caught.value).startswith(f"cannot write registry {path} (No space left on device)")
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "instances.json",
        "instances.json.lock",
    ]


def test_unknown_registry_version_is_refused_and_left_as_is() -> None:
    path = registry.registry_path()
    path.parent.mkdir(parents=True)
    content = b'{"version": 2, "instances": {}}'
    path.write_bytes(content)
    with pytest.raises(SandboxError, match="unknown version 2"):
        registry.load()
    assert path.read_bytes() == content


def test_a_held_lock_times_out_with_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KTRDR_REGISTRY_LOCK_TIMEOUT", "0.2")
    path = registry.registry_path()
    path.parent.mkdir(parents=True)
    with (
        FileLock(str(path) + ".lock"),
        pytest.raises(SandboxError, match=r"registry lock .* still held after 0.2s"),
        registry.transaction(),
    ):
        pass


def test_an_exception_inside_a_transaction_writes_nothing() -> None:
    with registry.transaction() as entries:
        entries["ktrdr--a"] = _entry()
    before = registry.registry_path().read_bytes()

    def write_then_fail() -> None:
        with registry.transaction() as entries:
            entries["ktrdr--b"] = _entry("ktrdr--b", 2)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_then_fail()
    assert registry.registry_path().read_bytes() == before


def test_a_creating_claim_is_dead_only_when_its_process_is_gone() -> None:
    import os

    alive = _entry()
    alive.state, alive.pid = "creating", os.getpid()
    dead = _entry()
    dead.state, dead.pid = "creating", 2**22 + 12345
    assert not alive.is_dead_claim()
    assert dead.is_dead_claim()
    assert not _entry().is_dead_claim()


@pytest.mark.timing
def test_a_claim_of_a_killed_but_unreaped_process_is_dead() -> None:
    import subprocess
    import sys
    import time

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        zombie = _entry()
        zombie.state, zombie.pid = "creating", child.pid
        assert not zombie.is_dead_claim()
        child.kill()  # not waited for: it stays a zombie
        deadline = time.monotonic() + 10
        while not zombie.is_dead_claim() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert zombie.is_dead_claim()
    finally:
        child.kill()
        child.wait()


def test_a_creating_claim_older_than_an_hour_is_dead_even_if_its_pid_is_alive() -> None:
    import os

    old = _entry()
    old.state, old.pid, old.created_at = "creating", os.getpid(), "2020-01-01T00:00:00Z"
    assert old.is_dead_claim()
