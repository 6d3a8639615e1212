"""The hook payload: every recorded shape understood, unknown fields ignored, one line for a
payload that cannot be used, and stdin read without waiting for an EOF that never comes."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from pathlib import Path

import pytest

from ktrdr.cli.sandbox.agent_tools.payload import (
    create_request,
    parse_object,
    read_payload,
    remove_request,
)
from ktrdr.cli.sandbox.base.errors import SandboxError
from tests.support.hooks import CREATE_SHAPES, payload

REPO = "/work/ktrdr"
EXPECTED = {  # shape -> (name, base, repos)
    "create_name": ("agent-a1b2c3d4", None, [REPO]),
    "create_worktree_name": ("feat-auth", "main", [REPO, f"{REPO}/.worktrees"]),
    "create_base_commit": ("feat-base", "abc123", [REPO]),
    "create_base_ref": ("feat-ref", "abc123", [REPO]),
    "create_worktree_path": ("early-shape", None, [REPO]),
    "create_unknown_fields": ("feat-extra", None, [REPO]),
}


def test_every_recorded_create_shape_has_an_expectation() -> None:
    assert sorted(EXPECTED) == CREATE_SHAPES


@pytest.mark.parametrize("shape", CREATE_SHAPES)
def test_each_recorded_create_payload_gives_its_name_base_and_repository(shape: str) -> None:
    request = create_request(payload(shape, repo=REPO, base="abc123"))
    name, base, repos = EXPECTED[shape]
    assert (request.name, request.base, [str(p) for p in request.repos]) == (name, base, repos)


def test_the_remove_payload_gives_the_worktree_path() -> None:
    request = remove_request(payload("remove", repo=REPO, worktree="/work/ktrdr--feat-a"))
    assert request.path == Path("/work/ktrdr--feat-a")
    assert request.session == "0f9c2a4e-5b1d-4c8e-9a7f-3e6d2b1c0a98"


def test_name_wins_over_worktree_name_and_base_commit_over_base_ref() -> None:
    request = create_request(
        {"name": "a", "worktree_name": "b", "base_ref": "r", "base_commit": "c", "cwd": REPO}
    )
    assert (request.name, request.base) == ("a", "c")


def test_blank_and_null_fields_count_as_absent() -> None:
    request = create_request({"name": "  ", "worktree_name": "feat", "base_commit": None})
    assert (request.name, request.base, request.repos) == ("feat", None, [])


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"cwd": REPO}, "hook payload names no worktree: it has none of `name`"),
        ({"name": 7}, "hook payload field `name` is a JSON int, expected text"),
        (
            {"hook_event_name": "WorktreeRemove", "name": "x"},
            "hook payload is for WorktreeRemove, not WorktreeCreate",
        ),
    ],
)
def test_an_unusable_create_payload_is_one_line(data: dict[str, object], expected: str) -> None:
    with pytest.raises(SandboxError) as caught:
        create_request(data)
    assert str(caught.value).startswith(expected)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"cwd": REPO}, "hook payload names no worktree to remove: `worktree_path` is missing"),
        ({"worktree_path": "relative/dir"}, "hook payload's worktree_path 'relative/dir' is not"),
    ],
)
def test_an_unusable_remove_payload_is_one_line(data: dict[str, object], expected: str) -> None:
    with pytest.raises(SandboxError, match="^" + expected):
        remove_request(data)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", "empty hook payload on stdin"),
        (b"  \n", "empty hook payload on stdin"),
        (b'{"name": ', "hook payload is not valid JSON"),
        (b"[1, 2]", "hook payload is a JSON list, not an object"),
        (b"\xff\xfe", "hook payload is not UTF-8 text"),
    ],
)
def test_what_is_not_one_json_object_is_one_line(raw: bytes, expected: str) -> None:
    with pytest.raises(SandboxError, match="^" + expected):
        parse_object(raw)


def test_an_in_memory_stream_is_read_to_its_end() -> None:
    assert read_payload(io.BytesIO(b'{"name": "a"}\n')) == {"name": "a"}


def test_the_payload_is_returned_as_soon_as_it_is_complete_while_stdin_stays_open() -> None:
    read_end, write_end = os.pipe()
    try:
        os.write(
            write_end,
            b'{"name": "feat',
        )
        threading.Timer(0.2, os.write, (write_end, b'-a", "cwd": "/x"}\n')).start()
        start = time.monotonic()
        with os.fdopen(read_end, "rb", buffering=0, closefd=False) as stream:
            data = read_payload(stream, wait=30)
        assert data == {"name": "feat-a", "cwd": "/x"}
        assert time.monotonic() - start < 5  # the writer never closed its end
    finally:
        os.close(read_end)
        os.close(write_end)


def test_a_payload_split_inside_a_character_is_still_read() -> None:
    read_end, write_end = os.pipe()
    raw = json.dumps({"name": "föö"}, ensure_ascii=False).encode()
    cut = raw.index("ö".encode()) + 1
    try:
        os.write(write_end, raw[:cut])
        threading.Timer(0.2, os.write, (write_end, raw[cut:])).start()
        with os.fdopen(read_end, "rb", buffering=0, closefd=False) as stream:
            assert read_payload(stream, wait=30) == {"name": "föö"}
    finally:
        os.close(read_end)
        os.close(write_end)


def test_stdin_that_stays_open_and_empty_is_one_line_after_the_wait() -> None:
    read_end, write_end = os.pipe()
    try:
        start = time.monotonic()
        with (
            os.fdopen(read_end, "rb", buffering=0, closefd=False) as stream,
            pytest.raises(SandboxError, match=r"^no hook payload on stdin within 0.3s \(got"),
        ):
            read_payload(stream, wait=0.3)
        assert time.monotonic() - start < 5
    finally:
        os.close(read_end)
        os.close(write_end)


def test_an_incomplete_payload_then_eof_says_it_is_not_valid_json() -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b'{"name": "a"')
    os.close(write_end)
    try:
        with (
            os.fdopen(read_end, "rb", buffering=0, closefd=False) as stream,
            pytest.raises(SandboxError, match=r"^hook payload is not valid JSON"),
        ):
            read_payload(stream, wait=5)
    finally:
        os.close(read_end)


def test_a_terminal_on_stdin_is_refused_at_once() -> None:
    primary, secondary = os.openpty()
    try:
        with (
            os.fdopen(secondary, "rb", buffering=0, closefd=False) as stream,
            pytest.raises(SandboxError, match=r"^no hook payload: stdin is a terminal"),
        ):
            read_payload(stream, wait=30)
    finally:
        os.close(primary)
        os.close(secondary)
