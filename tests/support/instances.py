"""Instances made the way `create`/`init` make them: an env file and a registry entry, both
naming the same checkout, so `locate` finds the view in agreement with the record."""

from __future__ import annotations

from pathlib import Path

from ktrdr.cli.sandbox.home import registry
from ktrdr.cli.sandbox.home.instance import new_settings, render_env, slugify, write_env_file
from ktrdr.cli.sandbox.home.registry import Entry
from ktrdr.cli.sandbox.home.shared_data import shared_root


def register_instance(
    root: Path,
    *,
    instance_id: str | None = None,
    slot: int,
    images: str | None = None,
    kind: registry.Kind = "clone",
    name: str | None = None,
    context: str | None = None,
    forward: int | None = None,
) -> Entry:
    """Write `root/.env.sandbox` and register it in the current KTRDR_HOME."""
    instance_id = instance_id or slugify(root.name)
    settings = new_settings(
        instance_id=instance_id,
        slot=slot,
        shared_dir=shared_root(),
        images=images,
        previous=None,
        checkout=root,
        context=context,
        forward=forward,
    )
    write_env_file(root, render_env(settings, command="test"))
    entry = Entry(
        instance_id=instance_id,
        slot=slot,
        path=str(root),
        kind=kind,
        branch=None,
        created_at=registry.now_iso(),
        name=name,
        context=context,
        forward=forward,
    )
    with registry.transaction() as entries:
        entries[instance_id] = entry
    return entry


def edit_view(root: Path, key: str, value: str) -> None:
    """Change (or add) one line of the instance's `.env.sandbox`, as an agent would."""
    path = root / ".env.sandbox"
    lines = path.read_text(encoding="utf-8").splitlines()
    replaced = [f"{key}={value}" if line.startswith(f"{key}=") else line for line in lines]
    if replaced == lines:
        replaced.append(f"{key}={value}")
    path.write_text("\n".join(replaced) + "\n", encoding="utf-8")
