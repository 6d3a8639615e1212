"""Every environment variable the `ktrdr` CLI reads, in one table.

No other module of `ktrdr.cli` reads `os.environ` (tests/unit/test_settings.py checks it);
docs/sandbox.md "Environment variables" lists these rows plus what the services and the
compose file read. Values are read when asked for, not at import: tests and `KTRDR_HOME`
redirection change them at run time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Variable:
    name: str
    default: str
    meaning: str


VARIABLES = (
    Variable(
        "KTRDR_HOME",
        "~/.ktrdr",
        "root of this user's sandbox state: registry, locks, home id, shared data, evidence",
    ),
    Variable(
        "KTRDR_IMAGES",
        "upstream",
        "image set of a new instance (`create`/`init`): `upstream` or `offline`; an instance "
        "keeps the mode written in its .env.sandbox",
    ),
    Variable("KTRDR_API_URL", "", "API base URL for `health`, `workers`, `operations` (after -u)"),
    Variable("KTRDR_API_PORT", "", "API port on 127.0.0.1 for the same commands (after -p)"),
    Variable(
        "DOCKER_HOST",
        "unix:///var/run/docker.sock",
        "the engine the docker CLI talks to (read by docker itself; named in messages)",
    ),
    Variable(
        "KTRDR_SLOTS",
        "1-10",
        "slots `create`/`init` pick the lowest free one from (FIRST-LAST within 1..99); one "
        "setting for every home on the machine",
    ),
    Variable(
        "KTRDR_SLOTS_LOCK",
        "<tmp>/ktrdr-sandbox-slots.lock",
        "machine-wide slot allocation lock; every home using one engine must share it",
    ),
    Variable(
        "KTRDR_REGISTRY_LOCK_TIMEOUT", "30", "seconds to wait for the registry lock before failing"
    ),
    Variable(
        "KTRDR_INSTANCE_LOCK_TIMEOUT",
        "1800",
        "seconds to wait for another command on the same instance (an `up` holds it throughout)",
    ),
    Variable(
        "KTRDR_HOOK_START",
        "background",
        "how `hook claude-code worktree-create` and `hook setup` start a new instance's stack: "
        "`background` (a detached `up` at once) or `on-demand` (the agent's first `up`)",
    ),
    Variable(
        "CLAUDE_PROJECT_DIR",
        "",
        "set by Claude Code for its hooks: the project a WorktreeCreate hook falls back to "
        "when the payload names no checkout",
    ),
    Variable(
        "CLAUDE_CONFIG_DIR",
        "~/.claude",
        "Claude Code's config directory: `hooks install claude-code --user` edits its "
        "settings.json",
    ),
    Variable("KTRDR_TEST", "0", "`1` labels every resource `ktrdr.test=1` (set by the test suite)"),
    Variable("NO_COLOR", "", "set: no colours in tables and gate progress"),
    Variable("COLUMNS", "", "table width when output is not a terminal (default 240)"),
)
_KNOWN = frozenset(v.name for v in VARIABLES)


def get(name: str, default: str = "") -> str:
    """The variable's value, or `default` when unset or empty. Only names in VARIABLES."""
    if name not in _KNOWN:
        raise KeyError(f"{name} is not a documented ktrdr setting (add it to VARIABLES)")
    return os.environ.get(name) or default


def is_set_empty(name: str) -> bool:
    """True when `$name` is in the environment but empty (`KTRDR_HOME=''`): for a variable
    whose empty value must be refused rather than read as the default."""
    if name not in _KNOWN:
        raise KeyError(f"{name} is not a documented ktrdr setting (add it to VARIABLES)")
    return os.environ.get(name) == ""


def values(*names: str) -> dict[str, str]:
    """The set ones of `names`, as a mapping (for code that takes an injectable environment)."""
    return {name: get(name) for name in names if get(name)}


def is_set(name: str) -> bool:
    return bool(get(name))


def seconds(name: str, default: float) -> float:
    """A positive number of seconds from `$name`, or `default` when unset or not a number."""
    value = get(name)
    try:
        seconds = float(value) if value else default
    except ValueError:
        return default
    return seconds if seconds >= 0 else default
