"""Stacks whose home is gone: found by their owner labels, then adopted or removed on request.

A home (`$KTRDR_HOME`) can be deleted while its stacks run (a reinstall, a wrong `rm`). Their
containers, networks and volumes still carry `ktrdr.owner` (the lost home's id) and
`ktrdr.owner-home` (where it was); a home is *lost* when that directory no longer holds that id.
`doctor`, run with any home, names such stacks (`lost_stacks`). Nothing is removed without one of
two explicit commands:

- `ktrdr sandbox adopt PATH`: the checkout at PATH (where the labels say, holding a
  `.env.sandbox` naming that instance) becomes an instance of this home. A compose project is
  `<instance id>-<home id>`, so the old project cannot be re-owned in place: its containers and
  networks are removed, its volumes are KEPT under their old names (the data is not copied;
  the new stack starts with empty volumes), and the checkout is registered here as `init`
  would (same slot when free). The old volumes stay listed by doctor until
- `ktrdr sandbox doctor --remove-lost HOME_ID`: removes every container, network and volume
  labelled with that lost home's id (refused while that home exists).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ktrdr.cli.sandbox.base import proc
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.engine import ownership
from ktrdr.cli.sandbox.engine.handle import Engine
from ktrdr.cli.sandbox.engine.ownership import Resource
from ktrdr.cli.sandbox.engine.queries import INSTANCE_LABEL, OWNER_LABEL
from ktrdr.cli.sandbox.home.directory import HOME_ID_FILE, home_id
from ktrdr.cli.sandbox.home.instance import read_env
from ktrdr.envfile import SANDBOX_ENV_FILENAME


@dataclass
class LostStack:
    """One instance's resources on the engine whose owner home is gone."""

    owner: str
    owner_home: str
    instance_id: str
    checkout: str
    items: list[Resource] = field(default_factory=list)

    def holds(self) -> str:
        """What it holds, in words: `2 container(s), 1 network(s), 3 volume(s) (a, b, c)`."""
        parts = []
        for kind in ("container", "network", "volume"):
            names = [i.name for i in self.items if i.kind == kind]
            if names:
                parts.append(f"{len(names)} {kind}(s)")
        volumes = [i.name for i in self.items if i.kind == "volume"]
        return ", ".join(parts) + (f" (volumes {', '.join(volumes)})" if volumes else "")


def home_is_gone(owner: str, owner_home: str) -> bool:
    """Whether the home a resource names no longer holds that id (deleted, or recreated with
    a new id). A home we may not read counts as alive; an unknown path too."""
    if not owner or not owner_home:
        return False
    try:
        return (Path(owner_home) / HOME_ID_FILE).read_text().strip() != owner
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False


def group_lost(found: list[Resource]) -> list[LostStack]:
    """The stacks among `found` whose owner home is gone (never this home's)."""
    mine = home_id()
    stacks: dict[tuple[str, str], LostStack] = {}
    for item in found:
        if item.owner == mine or not home_is_gone(item.owner, item.owner_home):
            continue
        key = (item.owner, item.instance_id)
        stack = stacks.setdefault(key, LostStack(item.owner, item.owner_home, item.instance_id, ""))
        stack.checkout = stack.checkout or item.checkout or item.working_dir
        stack.items.append(item)
    return [stacks[k] for k in sorted(stacks)]


def lost_stacks(engine: Engine) -> list[LostStack]:
    return group_lost(ownership.instance_resources(engine))


def _stacks_of(engine: Engine, owner: str, instance_id: str | None = None) -> list[LostStack]:
    filters = ["--filter", f"label={OWNER_LABEL}={owner}"]
    if instance_id is not None:
        filters += ["--filter", f"label={INSTANCE_LABEL}={instance_id}"]
    return group_lost(ownership.resources(engine, filters))


def remove_lost(engine: Engine, owner: str) -> list[str]:
    """Remove every resource labelled with the lost home `owner`; what was removed. Refused when
    that home is this one or still exists, or when nothing of it is on the engine."""
    if owner == home_id():
        raise SandboxError(f"{owner} is this home's id: nothing removed (see `ktrdr sandbox list`)")
    found = ownership.resources(engine, ["--filter", f"label={OWNER_LABEL}={owner}"])
    if not found:
        raise SandboxError(f"no container, network or volume of home {owner} is on this engine")
    alive = next((i.owner_home for i in found if not home_is_gone(i.owner, i.owner_home)), None)
    if alive is not None:
        raise SandboxError(
            f"home {owner} is not lost ({alive or 'its path is not recorded'}): nothing "
            f"removed; run `ktrdr sandbox destroy` with KTRDR_HOME={alive} instead"
        )
    return _remove(engine, found, keep_volumes=False)


def _remove(engine: Engine, items: list[Resource], *, keep_volumes: bool) -> list[str]:
    removed: list[str] = []
    for kind, argv in (
        ("container", engine.argv("rm", "-f")),
        ("network", engine.argv("network", "rm")),
        ("volume", engine.argv("volume", "rm")),
    ):
        if kind == "volume" and keep_volumes:
            continue
        refs = [i.resource_id or i.name for i in items if i.kind == kind]
        if refs:
            proc.run([*argv, *refs], timeout=120, what=f"docker {kind} rm")
            removed += [f"{kind} {i.name}" for i in items if i.kind == kind]
    return removed


@dataclass
class Released:
    """A lost home's stack whose containers and networks were removed for adoption."""

    instance_id: str
    old_owner: str
    old_home: str
    removed: list[str]
    kept_volumes: list[str]
    path: Path


def release_for_adoption(engine: Engine, path: Path) -> Released:
    """The first step of `adopt` (the second is `init_instance(adopting=old owner)`): checks
    that the labels of a lost home's stack name the checkout at `path` and that its
    `.env.sandbox` names that instance and owner, then removes the old containers and networks
    (volumes kept). Refused, changing nothing, when any check fails."""

    top = path.resolve()
    view = read_env(top / SANDBOX_ENV_FILENAME) if (top / SANDBOX_ENV_FILENAME).is_file() else {}
    instance_id, owner = view.get("KTRDR_INSTANCE_ID", ""), view.get("KTRDR_OWNER", "")
    if not instance_id or not owner:
        raise SandboxError(
            f"{top} has no {SANDBOX_ENV_FILENAME} naming an instance and its owner: nothing to "
            "adopt there (`ktrdr sandbox doctor` lists the stacks of lost homes and their paths)"
        )
    stacks = _stacks_of(engine, owner, instance_id)
    stack = next((s for s in stacks if s.instance_id == instance_id), None)
    if stack is None:
        raise SandboxError(
            f"no stack of a lost home is labelled instance {instance_id} of home {owner}: "
            "nothing adopted (`ktrdr sandbox doctor` lists the stacks of lost homes)"
        )
    if not stack.checkout or Path(stack.checkout).resolve() != top:
        raise SandboxError(
            f"the stack of {instance_id} names checkout {stack.checkout or '(none)'}, not {top}: "
            "nothing adopted; adopt it from the checkout its labels name"
        )
    return Released(
        instance_id=instance_id,
        old_owner=owner,
        old_home=stack.owner_home,
        removed=_remove(engine, stack.items, keep_volumes=True),
        kept_volumes=[i.name for i in stack.items if i.kind == "volume"],
        path=top,
    )


def refuse_lost_owner(
    engine: Engine, top: Path, view: dict[str, str] | None, *, adopting: str | None
) -> None:
    """`init` in the checkout of a lost home's instance whose stack is still on the engine would
    register it anew and strand that stack: refused, naming the two ways out."""
    view = view or {}
    owner, owner_home = view.get("KTRDR_OWNER", ""), view.get("KTRDR_OWNER_HOME", "")
    instance_id = view.get("KTRDR_INSTANCE_ID", "")
    if not owner or owner == adopting or owner == home_id() or not instance_id:
        return
    if not home_is_gone(owner, owner_home):
        return
    try:
        stacks = _stacks_of(engine, owner, instance_id)
    except SandboxError:
        return  # no engine: nothing of it can be seen, init's own checks follow
    if stacks:
        raise SandboxError(
            f"{top} is instance {instance_id} of lost home {owner} ({owner_home} is gone), and "
            f"its stack is still on the engine ({stacks[0].holds()}): `ktrdr sandbox adopt "
            f"{top}` takes it into this home (volumes kept), or `ktrdr sandbox doctor "
            f"--remove-lost {owner}` removes it; nothing was changed"
        )
