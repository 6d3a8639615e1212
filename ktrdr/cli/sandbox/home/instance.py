"""Instance identity (slug), create-name validation and the `.env.sandbox` file.

An instance is a directory (worktree or clone) with a `.env.sandbox` at its root. Its id is the
slug of the directory's basename: readable, and unique within one KTRDR_HOME. The Compose project
name is that id plus the home's owner id (home.home_id), so it is unique on the whole engine: two
homes that both create `feat` get two projects, never one shared stack.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ktrdr.cli.sandbox.base.atomic import write_atomic
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.home.directory import home_id, ktrdr_home
from ktrdr.cli.sandbox.slots.ports import forward_ports, ports_for_slot
from ktrdr.envfile import SANDBOX_ENV_FILENAME, find_upwards, parse_env_text

MAX_ID_LENGTH = 63
MAX_NAME_LENGTH = 63
IMAGE_MODES = ("upstream", "offline")
SECRET_KEYS = ("KTRDR_DB_PASSWORD", "GRAFANA_ADMIN_PASSWORD")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def slugify(text: str) -> str:
    """Lowercase; runs outside [a-z0-9_-] become '-'; trimmed; <= 63 chars; starts alnum."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", text.lower())
    slug = re.sub(r"^[^a-z0-9]+", "", slug)[:MAX_ID_LENGTH].rstrip("-")
    return slug


def instance_id_for(directory: Path) -> str:
    slug = slugify(directory.name)
    if not slug:
        raise SandboxError(
            f"cannot derive an instance id from directory name {directory.name!r}: it has no "
            "letters or digits; rename the directory"
        )
    return slug


def validate_create_name(name: str, *, max_length: int = MAX_NAME_LENGTH) -> str:
    """Refuse names that could escape the parent directory, look like options or need guessing.

    Allowed: ASCII letters, digits, '.', '_', '-', starting with a letter or digit, at most
    `max_length` characters (git's branch-name rules are checked separately by
    `git check-ref-format`).
    """
    suggestion = suggest_name(name, max_length=max_length)
    hint = f"; try {suggestion!r}" if suggestion and suggestion != name else ""
    if not name:
        raise SandboxError("invalid instance name: it is empty; pass a name like 'feat-a'")
    if len(name) > max_length:
        raise SandboxError(
            f"invalid instance name {name[:20]!r}…: {len(name)} characters, at most "
            f"{max_length} allowed{hint[:80]}"
        )
    if not _NAME_RE.fullmatch(name):
        raise SandboxError(
            f"invalid instance name {name!r}: use ASCII letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit{hint}"
        )
    if ".." in name or name.endswith((".", ".lock")):
        # Allowed characters, but git refuses such branch names.
        raise SandboxError(
            f"invalid instance name {name!r}: git branch names cannot contain '..' or end in "
            f"'.' or '.lock'{hint}"
        )
    return name


def max_name_length(checkout_name: str) -> int:
    """The longest create NAME in a checkout: the id `<checkout slug>--NAME` is cut at 63
    characters, and two names differing only past the cut would share one id."""
    return max(0, min(MAX_NAME_LENGTH, MAX_ID_LENGTH - len(slugify(checkout_name)) - 2))


def suggest_name(name: str, *, max_length: int = MAX_NAME_LENGTH) -> str | None:
    """A valid name close to `name` ('föö' -> 'foo', 'my feat' -> 'my-feat'), or None when
    too little of it survives (a name of only non-Latin letters)."""
    ascii_text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", ascii_text)
    text = re.sub(r"\.{2,}", ".", text)
    text = re.sub(r"^[^A-Za-z0-9]+", "", text)[:max_length]
    text = text.removesuffix(".lock").rstrip(".-")
    # Dropping most of the name would suggest something unrelated ('日本x' -> 'x').
    letters = sum(ch.isalnum() for ch in name)
    if not text or sum(ch.isalnum() for ch in text) * 2 < letters:
        return None
    return text


def project_name(instance_id: str, owner: str) -> str:
    """The compose project of an instance: `<instance id>-<home id>`, unique on the engine."""
    return f"{instance_id}-{owner}"


@dataclass(frozen=True)
class EnvSettings:
    """What `.env.sandbox` records about one instance (ports are derived from the slot).
    The owner (home id and path) defaults to the current KTRDR_HOME."""

    instance_id: str
    slot: int
    shared_dir: Path
    images: str
    db_password: str
    grafana_password: str
    checkout: Path | None = None
    owner: str | None = None
    owner_home: Path | None = None
    context: str | None = None  # the Docker context (None: the default engine)
    forward: int | None = None  # remote: the block of local forward ports (ports.forward_ports)


def new_settings(
    *,
    instance_id: str,
    slot: int,
    shared_dir: Path,
    images: str | None,
    previous: Mapping[str, str] | None,
    checkout: Path | None = None,
    context: str | None = None,
    forward: int | None = None,
) -> EnvSettings:
    """Settings for a new env file; secrets are reused from the `previous` env file's values
    (a PostgreSQL volume only reads its password on first init), otherwise generated."""
    old = previous or {}
    if old.get("KTRDR_INSTANCE_ID") != instance_id:
        old = {}
    # A re-init keeps the instance's image set unless the shell names one.
    mode = validate_images(images or old.get("KTRDR_IMAGES"))
    return EnvSettings(
        instance_id=instance_id,
        slot=slot,
        shared_dir=shared_dir.absolute(),
        images=mode,
        db_password=old.get("KTRDR_DB_PASSWORD") or secrets.token_urlsafe(24),
        grafana_password=old.get("GRAFANA_ADMIN_PASSWORD") or secrets.token_urlsafe(24),
        checkout=checkout,
        context=context,
        forward=forward,
    )


def validate_images(images: str | None) -> str:
    mode = (images or "upstream").strip() or "upstream"
    if mode not in IMAGE_MODES:
        raise SandboxError(
            f"invalid KTRDR_IMAGES {mode!r}: expected one of {', '.join(IMAGE_MODES)}"
        )
    return mode


def render_env(settings: EnvSettings, *, command: str) -> str:

    ports = (
        forward_ports(settings.forward, settings.slot)
        if settings.forward
        else ports_for_slot(settings.slot)
    )
    owner = settings.owner or home_id()
    values: dict[str, str] = {
        "COMPOSE_PROJECT_NAME": project_name(settings.instance_id, owner),
        "KTRDR_INSTANCE_ID": settings.instance_id,
        **owner_variables(
            owner=owner,
            owner_home=settings.owner_home or ktrdr_home(),
            checkout=settings.checkout,
        ),
        "KTRDR_SLOT": str(settings.slot),
        **ports.env_variables(),
        "KTRDR_API_URL": ports.urls()["api"],
        "KTRDR_SHARED_DIR": str(settings.shared_dir),
        "KTRDR_DB_PASSWORD": settings.db_password,
        "GRAFANA_ADMIN_PASSWORD": settings.grafana_password,
        "KTRDR_IMAGES": settings.images,
        **_engine_variables(settings),
    }
    header = (
        f"# Generated by `{command}` for instance {settings.instance_id} (slot {settings.slot}).\n"
        "# Read by Docker Compose (--env-file) and the ktrdr CLI. Do not edit ports by hand:\n"
        "# they derive from the slot; destroy and re-create the instance to change it.\n"
    )
    return header + "".join(f"{key}={value}\n" for key, value in values.items())


def _engine_variables(settings: EnvSettings) -> dict[str, str]:
    """Only for an instance on a named context: the context, and for a remote one its block of
    local forward ports (the port variables above are then those local ends)."""
    if not settings.context:
        return {}
    values = {"KTRDR_DOCKER_CONTEXT": settings.context}
    if settings.forward:
        values["KTRDR_FORWARD_INDEX"] = str(settings.forward)
    return values


def owner_variables(*, owner: str, owner_home: Path, checkout: Path | None) -> dict[str, str]:
    """The env-file lines that become every resource's owner labels (docker-compose.sandbox.yml
    x-labels): which home owns the instance, and which checkout it runs from."""
    return {
        "KTRDR_OWNER": owner,
        "KTRDR_OWNER_HOME": str(owner_home),
        "KTRDR_CHECKOUT": str(checkout) if checkout is not None else "",
    }


def write_env_file(root: Path, text: str) -> Path:
    """Write `<root>/.env.sandbox` with mode 0600 (temp file + rename, never world-readable)."""
    path = root / SANDBOX_ENV_FILENAME
    try:
        write_atomic(path, text, mode=0o600)
    except OSError as e:
        raise SandboxError(
            f"cannot write {path}: {e.strerror or e}; check the directory's permissions"
        ) from e
    return path


def read_env(path: Path) -> dict[str, str]:
    try:
        return parse_env_text(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise SandboxError(
            f"cannot read {path}: {e}; re-create it with `ktrdr sandbox init`"
        ) from e


def find_instance_root(start: Path) -> Path | None:
    """The nearest directory at or above `start` holding a `.env.sandbox`."""
    found = find_upwards(SANDBOX_ENV_FILENAME, start)
    return found.parent if found is not None else None
