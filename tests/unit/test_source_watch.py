"""SourceWatcher on a real directory with real inotify: which edits count as a change."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ktrdr.api.watch import SourceWatcher

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="inotify is Linux only")
SEEN_WITHIN_S = 2.0
QUIET_FOR_S = 0.3  # long enough for inotify to deliver what it would


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "ktrdr"
    (root / "api").mkdir(parents=True)
    (root / "__init__.py").write_text('__version__ = "1"\n')
    (root / "api" / "app.py").write_text("app = None\n")
    (root / "api" / "__pycache__").mkdir()
    (root / "data.csv").write_text("date,close\n")
    return root


@pytest.fixture
def watch(tree: Path) -> Iterator[SourceWatcher]:
    watcher = SourceWatcher(tree)
    watcher.start()
    yield watcher
    (tree / "zz_stop.py").write_text("")  # ends the watcher's thread if nothing else did


@pytest.mark.timing
def test_writing_a_python_file_is_a_change_named_relative_to_the_root(
    tree: Path, watch: SourceWatcher
) -> None:
    (tree / "api" / "app.py").write_text("app = 1\n")

    assert watch.changed.wait(SEEN_WITHIN_S)
    assert watch.changes == [os.path.join("api", "app.py")]


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda root: (root / "new.py").write_text(""), id="create"),
        pytest.param(lambda root: (root / "__init__.py").unlink(), id="delete"),
        pytest.param(lambda root: (root / "api" / "app.py").rename(root / "app2.py"), id="rename"),
        pytest.param(lambda root: os.utime(root / "__init__.py"), id="touch"),
    ],
)
@pytest.mark.timing
def test_creating_deleting_renaming_or_touching_a_python_file_is_a_change(
    tree: Path, watch: SourceWatcher, edit: object
) -> None:
    edit(tree)  # type: ignore[operator]  # a parametrized lambda

    assert watch.changed.wait(SEEN_WITHIN_S)


@pytest.mark.timing
def test_other_files_bytecode_and_hidden_files_are_not_a_change(
    tree: Path, watch: SourceWatcher
) -> None:
    (tree / "data.csv").write_text("date,close\n2024-01-01,1\n")
    (tree / "api" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    (tree / ".app.py.swp").write_text("")
    (tree / "notes.txt").write_text("")
    (tree / "empty_dir").mkdir()

    assert not watch.changed.wait(QUIET_FOR_S)


@pytest.mark.timing
def test_a_directory_created_later_is_watched_too(tree: Path, watch: SourceWatcher) -> None:
    (tree / "workers").mkdir()
    assert not watch.changed.wait(QUIET_FOR_S)  # no Python in it yet

    (tree / "workers" / "jobs.py").write_text("")

    assert watch.changed.wait(SEEN_WITHIN_S)
    assert watch.changes == [os.path.join("workers", "jobs.py")]


@pytest.mark.timing
def test_a_directory_moved_in_with_python_files_is_a_change(
    tree: Path, tmp_path: Path, watch: SourceWatcher
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "mod.py").write_text("")

    outside.rename(tree / "moved")

    assert watch.changed.wait(SEEN_WITHIN_S)


@pytest.mark.timing
def test_one_edit_of_several_files_calls_on_change_once_from_the_watchers_thread(
    tree: Path,
) -> None:
    calls: list[str] = []
    done = threading.Event()

    def on_change() -> None:
        calls.append(threading.current_thread().name)
        done.set()

    watcher = SourceWatcher(tree, on_change=on_change)
    watcher.start()
    for name in ("a.py", "b.py", "c.py", "d.py"):
        (tree / name).write_text("")

    assert done.wait(SEEN_WITHIN_S)
    (tree / "e.py").write_text("")  # after the change: the watcher has stopped looking
    threading.Event().wait(QUIET_FOR_S)
    assert calls == ["ktrdr-source-watch"]
    assert watcher.changes == ["a.py", "b.py", "c.py"]  # the first few, for the log line


@pytest.mark.timing
def test_an_idle_watcher_does_not_wake_up(tree: Path, watch: SourceWatcher) -> None:
    """The point of it: no polling. Its thread blocks in read() until something happens."""
    thread = next(t for t in threading.enumerate() if t.name == "ktrdr-source-watch")
    task = Path(f"/proc/self/task/{thread.native_id}/status")

    def switches() -> int:
        fields = dict(line.split(":", 1) for line in task.read_text().splitlines())
        return int(fields["voluntary_ctxt_switches"]) + int(fields["nonvoluntary_ctxt_switches"])

    before = switches()
    threading.Event().wait(0.5)

    assert switches() - before <= 1
