"""The tar stream that fills remote volumes, without an engine: made by volume_push.write_tar,
unpacked by volume_unpack (in this process, and as the helper container runs it: `python -c
<source> SPEC` reading stdin, through proc.piped), on real directories."""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
from pathlib import Path

import pytest

from ktrdr.cli.sandbox.base import proc
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.engine.handle import Engine
from ktrdr.cli.sandbox.remote import volume_push, volume_unpack


def _tree(root: Path) -> Path:
    (root / "api").mkdir(parents=True)
    (root / "__init__.py").write_text('__version__ = "1"\n')
    (root / "api" / "app.py").write_text("app = 1\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / "api" / "__pycache__").mkdir()
    (root / "api" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"junk")
    (root / "stale.pyc").write_bytes(b"junk")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref\n")
    (root / "link.py").symlink_to(root / "api" / "app.py")
    (root / "dirlink").symlink_to(root / "api")
    (root / "broken.py").symlink_to(root / "missing.py")
    return root


def _pack(sources: dict[str, Path]) -> tuple[bytes, int, int]:
    buffer = io.BytesIO()
    files, size = volume_push.write_tar(buffer, sources)
    return buffer.getvalue(), files, size


def _unpack(data: bytes, root: Path, keys: dict[str, dict[str, object]]) -> dict[str, int]:
    return volume_unpack.unpack(io.BytesIO(data), {"root": str(root), "keys": keys})


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_the_tar_holds_the_sources_under_their_key_without_junk(tmp_path: Path) -> None:
    data, files, size = _pack({"src-ktrdr": _tree(tmp_path / "ktrdr")})

    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        names = archive.getnames()
        owners = {(m.uid, m.gid, m.uname) for m in archive}
    assert "src-ktrdr/__init__.py" in names
    assert "src-ktrdr/api/app.py" in names
    assert "src-ktrdr/link.py" in names  # a link to a file: its content goes
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or ".git" in n]
    assert not [n for n in names if "dirlink" in n or "broken" in n]
    assert files == 4
    assert size == sum(
        (tmp_path / "ktrdr" / n).stat().st_size
        for n in ("__init__.py", "api/app.py", "run.sh", "link.py")
    )
    assert owners == {(0, 0, "root")}


def test_unpacking_mirrors_the_tree_and_keeps_modes_and_mtimes(tmp_path: Path) -> None:
    source = _tree(tmp_path / "ktrdr")
    data, _, _ = _pack({"src": source})

    counts = _unpack(data, tmp_path / "dst", {"src": {"mode": "mirror"}})

    out = tmp_path / "dst" / "src"
    assert _files(out) == {"__init__.py", "api/app.py", "run.sh", "link.py"}
    assert (out / "run.sh").stat().st_mode & 0o111
    assert int((out / "api" / "app.py").stat().st_mtime) == int(
        (source / "api" / "app.py").stat().st_mtime
    )
    assert counts["written"] == 4


def test_an_unchanged_file_is_not_rewritten_and_a_changed_one_is(tmp_path: Path) -> None:
    source = _tree(tmp_path / "ktrdr")
    _unpack(_pack({"src": source})[0], tmp_path / "dst", {"src": {"mode": "mirror"}})
    target = tmp_path / "dst" / "src" / "__init__.py"
    inode = target.stat().st_ino
    (source / "api" / "app.py").write_text("app = 2  # edited\n")

    counts = _unpack(_pack({"src": source})[0], tmp_path / "dst", {"src": {"mode": "mirror"}})

    assert target.stat().st_ino == inode  # untouched: no reload in the containers
    assert counts["written"] == 2  # app.py, and link.py (a link to it: its content)
    assert (tmp_path / "dst" / "src" / "api" / "app.py").read_text() == "app = 2  # edited\n"


def test_mirror_removes_what_is_gone_here_and_merge_keeps_it(tmp_path: Path) -> None:
    source = _tree(tmp_path / "src")
    for key in ("m", "g"):
        _unpack(_pack({key: source})[0], tmp_path / "dst", {key: {"mode": "mirror"}})
        (tmp_path / "dst" / key / "written-there").mkdir()
        (tmp_path / "dst" / key / "written-there" / "model.pt").write_text("weights")
    (source / "run.sh").unlink()

    data, _, _ = _pack({"m": source, "g": source})
    counts = _unpack(data, tmp_path / "dst", {"m": {"mode": "mirror"}, "g": {"mode": "merge"}})

    assert "run.sh" not in _files(tmp_path / "dst" / "m")
    assert "written-there/model.pt" not in _files(tmp_path / "dst" / "m")
    assert {"run.sh", "written-there/model.pt"} <= _files(tmp_path / "dst" / "g")
    assert counts["removed"] == 3  # run.sh, model.pt and its directory


def test_clear_empties_a_key_and_marker_records_a_completed_push(tmp_path: Path) -> None:
    (tmp_path / "dst" / "results").mkdir(parents=True)
    (tmp_path / "dst" / "results" / "old-junit.xml").write_text("<old/>")
    source = _tree(tmp_path / "src")
    spec_keys = {"results": {"mode": "clear"}, "data": {"mode": "mirror", "marker": True}}

    _unpack(_pack({"data": source})[0], tmp_path / "dst", spec_keys)

    assert _files(tmp_path / "dst" / "results") == set()
    marker = tmp_path / "dst" / "data" / volume_unpack.MARKER_FILE
    assert json.loads(marker.read_text())["files"] == 4
    assert volume_unpack.check({"root": str(tmp_path / "dst"), "keys": spec_keys}) == {
        "results": False,
        "data": True,
    }


def test_a_second_mirror_push_keeps_the_marker(tmp_path: Path) -> None:
    source = _tree(tmp_path / "src")
    keys: dict[str, dict[str, object]] = {"data": {"mode": "mirror", "marker": True}}
    _unpack(_pack({"data": source})[0], tmp_path / "dst", keys)

    _unpack(_pack({"data": source})[0], tmp_path / "dst", {"data": {"mode": "mirror"}})

    assert (tmp_path / "dst" / "data" / volume_unpack.MARKER_FILE).is_file()


def test_names_outside_the_keys_absolute_or_climbing_are_skipped(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name in ("k/ok.txt", "/etc/evil", "k/../../evil", "other/x", "k/link"):
            info = tarfile.TarInfo(name)
            if name == "k/link":
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                archive.addfile(info)
            else:
                info.size = 2
                archive.addfile(info, io.BytesIO(b"hi"))

    counts = _unpack(buffer.getvalue(), tmp_path / "dst", {"k": {"mode": "merge"}})

    assert _files(tmp_path / "dst") == {"k/ok.txt"}
    assert not (tmp_path / "evil").exists()
    assert counts["skipped"] == 4


def test_the_helper_program_runs_as_the_container_runs_it(tmp_path: Path) -> None:
    """`python -c <volume_unpack source> SPEC` with the tar on stdin, through proc.piped."""
    source = _tree(tmp_path / "src")
    spec = {"root": str(tmp_path / "dst"), "keys": {"src": {"mode": "mirror"}}}
    program = Path(volume_unpack.__file__).read_text()

    result = proc.piped(
        [sys.executable, "-c", program, json.dumps(spec)],
        write=lambda stdin: volume_push.write_tar(stdin, {"src": source}),
    )

    assert json.loads(result.stdout)["written"] == 4
    assert _files(tmp_path / "dst" / "src") == {"__init__.py", "api/app.py", "run.sh", "link.py"}
    checked = proc.run([sys.executable, "-c", program, "--check", json.dumps(spec)])
    assert json.loads(checked.stdout) == {"src": False}


def test_the_helper_mount_is_csv_so_label_values_may_hold_commas() -> None:
    arg = volume_push.mount_arg("proj_src", "/dst/src", {"ktrdr.checkout": "/a,b", "k": "v"})

    assert arg == (
        'type=volume,src=proj_src,dst=/dst/src,volume-label=k=v,"volume-label=ktrdr.checkout=/a,b"'
    )


def test_volume_queries_and_helpers_go_to_the_engine_passed_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in `docker` first on PATH prints the argv it got."""
    fake = tmp_path / "docker"
    fake.write_text('#!/bin/sh\necho "$@"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    listed = volume_push.existing_volumes(Engine("buildbox"), {"k": "v"})
    assert {"--context", "buildbox", "volume", "ls"} <= listed
    assert "--context" not in volume_push.existing_volumes(Engine(), {"k": "v"})


# --- proc.piped ---------------------------------------------------------------------------------


def test_piped_streams_into_and_out_of_a_process() -> None:
    seen: list[bytes] = []

    proc.piped(
        [
            sys.executable,
            "-c",
            "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read()[::-1])",
        ],
        write=lambda stdin: stdin.write(b"abc"),
        read=lambda stdout: seen.append(stdout.read()),
    )

    assert seen == [b"cba"]


def test_piped_raises_with_stderr_when_the_process_fails() -> None:
    with pytest.raises(SandboxError, match=r"unpacking failed \(exit 3\): no space left"):
        proc.piped(
            [sys.executable, "-c", "import sys; sys.stderr.write('no space left'); sys.exit(3)"],
            what="unpacking",
        )


def test_piped_raises_when_the_process_stops_reading_its_input() -> None:
    big = os.urandom(1 << 16)

    def flood(stdin: object) -> None:
        for _ in range(200):
            stdin.write(big)  # type: ignore[attr-defined]  # a binary pipe

    with pytest.raises(SandboxError, match="failed"):
        proc.piped([sys.executable, "-c", "import sys; sys.stdin.close()"], write=flood)


@pytest.mark.timing
def test_piped_kills_a_process_that_outlives_its_timeout() -> None:
    with pytest.raises(SandboxError, match=r"did not finish within 0.5s"):
        proc.piped([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)


def test_piped_passes_on_an_error_of_the_reader() -> None:
    def reader(stdout: object) -> None:
        raise tarfile.ReadError("not a tar")

    with pytest.raises(tarfile.ReadError, match="not a tar"):
        proc.piped([sys.executable, "-c", "print('plain text')"], read=reader)
