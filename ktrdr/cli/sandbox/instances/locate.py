"""The one way to find an instance: `locate(NAME or None, cwd)` returns an `Instance`.

An instance is a directory with a `.env.sandbox` at its root, usually also registered in this
home's registry. `locate` reads the env file once; every command then works from the returned
object instead of reading the file again.

- With a NAME: the instance at that path (`../ktrdr--a`), else the registry entry whose id,
  create NAME or directory name matches (a unique slug suffix is enough); its directory may be
  gone (destroy still works on it).
- Without: the nearest `.env.sandbox` at or above `cwd`, registered or not.

The registry entry is found by the directory, never by the id the env file names: the file is
a view an agent may have edited (instances/identity.py). For a registered instance `env` holds
the home's record (plus the view's secrets), `view` what the file says; `locate` refuses a view that
disagrees with the record unless the caller only repairs or removes the instance.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.engine import handle as docker_engine
from ktrdr.cli.sandbox.engine.handle import Engine
from ktrdr.cli.sandbox.home import registry
from ktrdr.cli.sandbox.home.directory import home_id, ktrdr_home
from ktrdr.cli.sandbox.home.instance import find_instance_root, read_env, slugify
from ktrdr.cli.sandbox.home.registry import Entry
from ktrdr.cli.sandbox.instances import identity
from ktrdr.cli.sandbox.slots.ports import SlotPorts, local_ports, port_map, ports_for_slot
from ktrdr.envfile import SANDBOX_ENV_FILENAME

# What `up`, `down`, `pause`, `resume` and `logs` need from the env file.
REQUIRED_KEYS = (
    "COMPOSE_PROJECT_NAME",
    "KTRDR_OWNER",
    "KTRDR_INSTANCE_ID",
    "KTRDR_SLOT",
    "KTRDR_SHARED_DIR",
    "KTRDR_DB_PASSWORD",
)
DEFAULT_NAME_HINT = "pass an instance NAME"


@dataclass(frozen=True)
class Instance:
    """A located instance: where it is, the values commands act on (the home's record for a
    registered instance), what its env file says (read once), and its registry entry (None
    when this home has not registered it)."""

    instance_id: str
    slot: int
    root: Path
    env: Mapping[str, str]  # {} when unregistered and the env file is gone
    entry: Entry | None
    view: Mapping[str, str] = field(default_factory=dict)  # the env file as read

    @property
    def env_path(self) -> Path:
        return self.root / SANDBOX_ENV_FILENAME

    @property
    def ports(self) -> SlotPorts:
        """Where this machine reaches the stack: the slot's ports, or for a remote instance the
        local ends of its SSH forwards."""
        return local_ports(self.slot, self.forward_index)

    @property
    def engine_ports(self) -> SlotPorts:
        """The ports the stack publishes on its engine's loopback."""
        return ports_for_slot(self.slot)

    @property
    def forward_index(self) -> int | None:
        text = self.env.get("KTRDR_FORWARD_INDEX", "")
        if text.isdigit():
            return int(text)
        return self.entry.forward if self.entry is not None and not text else None

    @functools.cached_property
    def engine(self) -> Engine:
        """The engine the instance lives on, as the home recorded it (made once per Instance,
        so its engine check is shared by everything this Instance is passed to)."""
        return docker_engine.recorded(self.context, forward=self.forward_index)

    @property
    def remote(self) -> bool:
        """Whether the engine is reached over SSH (sources copied, ports forwarded)."""
        return self.engine.remote

    @property
    def port_map(self) -> dict[int, int]:
        """Engine port -> local port, for a remote instance ({} otherwise)."""
        return port_map(self.engine_ports, self.ports)

    @property
    def project(self) -> str:
        return self.env["COMPOSE_PROJECT_NAME"]

    @property
    def context(self) -> str | None:
        """The Docker context the instance lives on (None: the default engine); the env file
        decides, the registry entry stands in when the directory is gone."""
        if "KTRDR_DOCKER_CONTEXT" in self.env:
            return self.env["KTRDR_DOCKER_CONTEXT"] or None
        return self.entry.context if self.entry is not None else None

    @property
    def registered(self) -> bool:
        return self.entry is not None

    def require_entry(self) -> Entry:
        """The registry entry, or the one-line error for a checkout this home never registered."""
        if self.entry is None:
            raise SandboxError(
                f"{self.root} has a {SANDBOX_ENV_FILENAME} but is not registered: run "
                "`ktrdr sandbox init` there, or delete the file"
            )
        return self.entry

    def require_env(self, keys: tuple[str, ...] = REQUIRED_KEYS) -> Instance:
        """Self, once the env file exists and holds `keys` (by default every key the stack
        commands need)."""
        if not self.env_path.is_file():
            raise SandboxError(
                f"instance directory {self.root} has no {SANDBOX_ENV_FILENAME}: run "
                "`ktrdr sandbox init` there (or `ktrdr sandbox doctor` to reconcile the registry)"
            )
        missing = [key for key in keys if not self.env.get(key)]
        if missing:
            raise SandboxError(
                f"{self.env_path} lacks {', '.join(missing)}: run `ktrdr sandbox doctor --fix` "
                "(it adds them), or re-create it with `ktrdr sandbox init`"
            )
        return self


def locate(
    name: str | None,
    cwd: Path,
    *,
    name_hint: str = DEFAULT_NAME_HINT,
    check_view: bool = True,
    unregistered: bool = False,
) -> Instance:
    """The instance named `name`, else the one containing `cwd`. `name_hint` says how the
    calling command takes a name, for the error when `cwd` is not inside an instance.

    Refused: a directory this home has not registered (its env file is all there is, and
    nothing reaches the engine on a worktree's word) unless `unregistered`; a registered
    instance whose env file disagrees with the home's record unless `check_view` is False
    (commands that rewrite the view or remove the instance)."""
    found = _locate(name, cwd, name_hint)
    if found.entry is None and not unregistered:
        _refuse_unregistered(found)
    if check_view and found.entry is not None and found.view:
        identity.check_view(found.entry, found.view, found.root)
    return found


def _refuse_unregistered(found: Instance) -> None:

    owner = found.view.get("KTRDR_OWNER", "")
    if owner and owner != home_id():
        where = found.view.get("KTRDR_OWNER_HOME") or f"the home with id {owner}"
        raise SandboxError(
            f"instance {found.instance_id} at {found.root} is not registered in KTRDR_HOME "
            f"{ktrdr_home()} (its env file names KTRDR_HOME {where}): run this with that "
            "KTRDR_HOME, or create your own instance with `ktrdr sandbox create NAME`"
        )
    found.require_entry()


def _locate(name: str | None, cwd: Path, name_hint: str) -> Instance:
    if name and os.sep in name and (cwd / name / SANDBOX_ENV_FILENAME).is_file():
        return at_root((cwd / name).resolve())  # a path to the instance, e.g. ../ktrdr--a
    if name:
        return from_entry(find_entry(name))
    root = find_instance_root(cwd)
    if root is None:
        raise SandboxError(
            f"no {SANDBOX_ENV_FILENAME} in {cwd} or its parents: this is not a sandbox "
            "instance; run `ktrdr sandbox create NAME` (new worktree) or "
            f"`ktrdr sandbox init` (this checkout)" + (f", or {name_hint}" if name_hint else "")
        )
    return at_root(root)


def at_root(root: Path) -> Instance:
    """The instance whose `.env.sandbox` is in `root`, with its registry entry when there is one."""
    view = read_env(root / SANDBOX_ENV_FILENAME)
    entry = _entry_at(registry.load(), root)
    if entry is not None:
        return from_entry(entry, view=view)
    instance_id = view.get("KTRDR_INSTANCE_ID", "")
    if not instance_id:
        raise SandboxError(
            f"{root / SANDBOX_ENV_FILENAME} has no KTRDR_INSTANCE_ID: re-create it with "
            "`ktrdr sandbox init`"
        )
    try:
        slot = _slot(view, root)
    except SandboxError:
        # Unregistered and unreadable: that it is unregistered is what the user can act on.
        Instance(instance_id, 0, root, view, None, view).require_entry()
        raise
    return Instance(instance_id, slot, root, view, None, view)


def from_entry(entry: Entry, *, view: Mapping[str, str] | None = None) -> Instance:
    """The instance of a registry entry, acting on the home's record; its env file (the view)
    is read when it still exists."""
    if view is None:
        env_path = entry.root / SANDBOX_ENV_FILENAME
        view = read_env(env_path) if env_path.is_file() else {}
    env = identity.trusted_env(entry, view)
    return Instance(entry.instance_id, entry.slot, entry.root, env, entry, view)


def find_entry(name: str) -> Entry:
    """A registry entry by full id, create NAME, directory name or unique slug suffix."""
    entries = registry.load()
    if name in entries:
        return entries[name]
    slug = slugify(name)
    matches = [
        e
        for e in entries.values()
        if e.name == name
        or Path(e.path).name == name  # the directory name as `list` shows it in PATH
        or (slug and (e.instance_id == slug or e.instance_id.endswith(f"--{slug}")))
    ]
    if len(matches) == 1:
        return matches[0]
    if matches:
        listed = ", ".join(sorted(e.instance_id for e in matches))
        raise SandboxError(f"{name!r} is ambiguous: it matches {listed}; pass the full id")
    raise SandboxError(f"no instance named {name!r}: see `ktrdr sandbox list`")


def _entry_at(entries: Mapping[str, Entry], root: Path) -> Entry | None:
    """The entry registered at `root` (by path: the id in the env file is the agent's to edit)."""
    resolved = root.resolve()
    return next((e for e in entries.values() if Path(e.path).resolve() == resolved), None)


def _slot(env: Mapping[str, str], root: Path) -> int:
    text = env.get("KTRDR_SLOT", "")
    if not text:
        raise SandboxError(
            f"{root / SANDBOX_ENV_FILENAME} lacks KTRDR_SLOT: run `ktrdr sandbox doctor --fix` "
            "(it adds it), or re-create it with `ktrdr sandbox init`"
        )
    try:
        slot = int(text)
    except ValueError as e:
        raise SandboxError(
            f"{root / SANDBOX_ENV_FILENAME}: KTRDR_SLOT={text!r} is not a number; "
            "run `ktrdr sandbox doctor --fix`"
        ) from e
    try:
        return ports_for_slot(slot).slot  # validates the range
    except SandboxError as e:
        raise SandboxError(
            f"{root / SANDBOX_ENV_FILENAME}: {e}; run `ktrdr sandbox doctor --fix`"
        ) from e
