"""The JSON an agent tool's hook gets on stdin, read and understood.

Reading: the tool may keep stdin open after writing the payload, so reading to EOF could hang
the hook (and the tool with it). The payload is read in chunks as they arrive and returned as
soon as they hold one complete JSON object; no complete object within the wait is one error
line, and so is a terminal on stdin (nobody is going to type the payload).

Understanding: Claude Code's payloads changed between releases: the name came as `name` or
`worktree_name` (or only as the last part of a `worktree_path`), the base as `base_commit`,
`base_ref`, `source_ref` or not at all, the repository as `cwd` or `base_path`. Each variant is
accepted, unknown fields are ignored, and a payload that cannot be used is one line saying what
is missing.
"""

from __future__ import annotations

import io
import json
import os
import select
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ktrdr.cli.sandbox.base.errors import SandboxError

WAIT_SECONDS = 10.0  # the tool writes the payload at once; this only bounds a stuck pipe
MAX_BYTES = 1 << 20  # a payload is a few hundred bytes
NAME_FIELDS = ("name", "worktree_name")
BASE_FIELDS = ("base_commit", "base_ref", "source_ref")
REPO_FIELDS = ("cwd", "base_path")
CREATE_EVENT = "WorktreeCreate"
REMOVE_EVENT = "WorktreeRemove"


@dataclass(frozen=True)
class CreateRequest:
    """What a WorktreeCreate payload asks for."""

    name: str
    base: str | None = None
    repos: list[Path] = field(default_factory=list)  # where to look for the repository
    session: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "base": self.base,
            "repos": [str(p) for p in self.repos],
            "session": self.session,
        }


@dataclass(frozen=True)
class RemoveRequest:
    """What a WorktreeRemove payload asks for."""

    path: Path
    session: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "session": self.session}


def read_payload(stream: IO[bytes], *, wait: float = WAIT_SECONDS) -> dict[str, Any]:
    """One JSON object from `stream`, returned as soon as it is complete (EOF not needed)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return parse_object(stream.read(MAX_BYTES + 1))  # in memory: its end is known
    if os.isatty(fd):
        raise SandboxError(
            "no hook payload: stdin is a terminal; an agent tool pipes its JSON in (to try it: "
            'echo \'{"name": "feat-a"}\' | ktrdr sandbox hook claude-code worktree-create)'
        )
    return _read_fd(fd, wait)


def _read_fd(fd: int, wait: float) -> dict[str, Any]:
    buffer = b""
    deadline = time.monotonic() + wait
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            got = f"{len(buffer)} bytes, not a complete JSON object" if buffer else "nothing"
            raise SandboxError(
                f"no hook payload on stdin within {wait:g}s (got {got}): the hook expects the "
                "agent tool's JSON on stdin; check the hook's command in the tool's settings"
            )
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:  # EOF: whatever arrived is the payload
            return parse_object(buffer)
        buffer += chunk
        if len(buffer) > MAX_BYTES:
            raise SandboxError(f"hook payload larger than {MAX_BYTES} bytes: not a hook payload")
        complete = _complete_object(buffer)
        if complete is not None:
            return complete


def _complete_object(buffer: bytes) -> dict[str, Any] | None:
    """The object `buffer` holds once it is complete; None while more may come."""
    try:
        text = buffer.decode("utf-8").lstrip()
        value, _ = json.JSONDecoder().raw_decode(text)
    except ValueError:  # incomplete so far (or broken: EOF or the wait will say)
        return None
    return _object(value)


def parse_object(raw: bytes) -> dict[str, Any]:
    """The whole of `raw` as one JSON object, or one line saying why it is not one."""
    if len(raw) > MAX_BYTES:
        raise SandboxError(f"hook payload larger than {MAX_BYTES} bytes: not a hook payload")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SandboxError(f"hook payload is not UTF-8 text (byte {e.start})") from e
    if not text.strip():
        raise SandboxError(
            "empty hook payload on stdin: the hook expects the agent tool's JSON; check the "
            "hook's command in the tool's settings"
        )
    try:
        value, _ = json.JSONDecoder().raw_decode(text.lstrip())
    except json.JSONDecodeError as e:
        raise SandboxError(
            f"hook payload is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})"
        ) from e
    return _object(value)


def _object(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SandboxError(
            f"hook payload is a JSON {type(value).__name__}, not an object: not a hook payload"
        )
    return value


def create_request(payload: dict[str, Any]) -> CreateRequest:
    """A WorktreeCreate payload of any shipped shape."""
    _check_event(payload, CREATE_EVENT)
    name = _first_text(payload, NAME_FIELDS)
    if name is None and isinstance(payload.get("worktree_path"), str):
        name = Path(payload["worktree_path"]).name or None  # an early shape: only the path
    if name is None:
        raise SandboxError(
            "hook payload names no worktree: it has none of "
            + ", ".join(f"`{f}`" for f in (*NAME_FIELDS, "worktree_path"))
            + f" (fields: {_fields(payload)})"
        )
    repos = [Path(text) for key in REPO_FIELDS if (text := _text(payload, key))]
    return CreateRequest(
        name=name,
        base=_first_text(payload, BASE_FIELDS),
        repos=repos,
        session=_text(payload, "session_id"),
    )


def remove_request(payload: dict[str, Any]) -> RemoveRequest:
    _check_event(payload, REMOVE_EVENT)
    path = _text(payload, "worktree_path")
    if path is None:
        raise SandboxError(
            f"hook payload names no worktree to remove: `worktree_path` is missing "
            f"(fields: {_fields(payload)})"
        )
    if not Path(path).is_absolute():
        raise SandboxError(f"hook payload's worktree_path {path!r} is not an absolute path")
    return RemoveRequest(Path(path), session=_text(payload, "session_id"))


def _check_event(payload: dict[str, Any], expected: str) -> None:
    event = payload.get("hook_event_name")
    if isinstance(event, str) and event and event != expected:
        raise SandboxError(
            f"hook payload is for {event}, not {expected}: the tool's settings run this command "
            "for the wrong event; `ktrdr sandbox hooks install claude-code` writes them right"
        )


def _text(payload: dict[str, Any], key: str) -> str | None:
    """The field as non-blank text; None when absent, null or blank; another type refused."""
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise SandboxError(
            f"hook payload field `{key}` is a JSON {type(value).__name__}, expected text"
        )
    return value.strip() or None


def _first_text(payload: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    return next((text for key in keys if (text := _text(payload, key))), None)


def _fields(payload: dict[str, Any]) -> str:
    names = sorted(str(key) for key in payload)[:12]
    return ", ".join(names) if names else "none"
