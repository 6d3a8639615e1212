"""What makes an instance itself, as the home recorded it, and the worktree's view of it.

The registry entry (id, slot, path, Docker context, forward block) and the home (owner id and
path, shared data dir) decide an instance's identity: its compose project, owner labels and
ports all derive from them. The worktree's `.env.sandbox` is a view of that record written for
tools and people; an agent working in the worktree can edit it, so nothing that reaches the
engine or an API takes identity from it. Only the instance's own secrets and its image mode are
read from the view: changing them can break that instance, never reach another.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.home.directory import home_id, ktrdr_home
from ktrdr.cli.sandbox.home.instance import (
    IMAGE_MODES,
    SECRET_KEYS,
    owner_variables,
    project_name,
)
from ktrdr.cli.sandbox.home.registry import Entry
from ktrdr.cli.sandbox.slots.ports import local_ports
from ktrdr.envfile import SANDBOX_ENV_FILENAME

# Read from the view: they only ever concern the instance's own stack.
VIEW_KEYS = (*SECRET_KEYS, "KTRDR_IMAGES")
MAX_VIEW_VALUE = 4096


def recorded(entry: Entry) -> dict[str, str]:
    """The env-file lines the home's record decides (everything but secrets and image mode)."""
    ports = local_ports(entry.slot, entry.forward)
    owner = home_id()
    home = ktrdr_home()
    return {
        "COMPOSE_PROJECT_NAME": project_name(entry.instance_id, owner),
        "KTRDR_INSTANCE_ID": entry.instance_id,
        **owner_variables(owner=owner, owner_home=home, checkout=entry.root),
        "KTRDR_SLOT": str(entry.slot),
        **ports.env_variables(),
        "KTRDR_API_URL": ports.urls()["api"],
        "KTRDR_SHARED_DIR": str(home / "shared"),
        **({"KTRDR_DOCKER_CONTEXT": entry.context} if entry.context else {}),
        **({"KTRDR_FORWARD_INDEX": str(entry.forward)} if entry.forward else {}),
    }


def drift(entry: Entry, view: Mapping[str, str]) -> dict[str, tuple[str | None, str]]:
    """key -> (what the view says, what the home recorded), for every identity line that
    disagrees. A view that names a context the record does not have drifts too."""
    expected = recorded(entry)
    found = {k: (view.get(k), v) for k, v in expected.items() if view.get(k) != v}
    for key in ("KTRDR_DOCKER_CONTEXT", "KTRDR_FORWARD_INDEX"):
        if view.get(key) and key not in expected:
            found[key] = (view[key], "")
    return found


def trusted_env(entry: Entry, view: Mapping[str, str]) -> dict[str, str]:
    """The values commands act on: the record's identity, plus the view's secrets and image
    mode when they are well-formed (anything else in the view is ignored)."""
    values = recorded(entry)
    for key in VIEW_KEYS:
        value = view.get(key)
        if value is not None and _acceptable(key, value):
            values[key] = value
    return values


def _acceptable(key: str, value: str) -> bool:
    if len(value) > MAX_VIEW_VALUE or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return False
    return key != "KTRDR_IMAGES" or value.strip() in (*IMAGE_MODES, "")


def check_view(entry: Entry, view: Mapping[str, str], root: Path) -> None:
    """Refuse, in one line, a view that disagrees with the record: the field, both values and
    how to restore it."""
    found = drift(entry, view)
    if not found:
        return
    key, (seen, expected) = next(iter(found.items()))
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    shown = "(missing)" if seen is None else _short(seen)
    want = _short(expected) if expected else "(not set)"
    raise SandboxError(
        f"{root / SANDBOX_ENV_FILENAME} says {key}={shown} but this home recorded {want} for "
        f"instance {entry.instance_id}{more}: the file is only a view of the record, and "
        f"nothing is done from an edited one; run `ktrdr sandbox init` in {root} to rewrite it"
    )


def _short(value: str) -> str:
    text = value.encode("unicode_escape").decode("ascii")
    return text if len(text) <= 80 else text[:77] + "..."
