"""Where KTRDR keeps its state: $KTRDR_HOME, default ~/.ktrdr (registry, shared data,
evidence)."""

from __future__ import annotations

import os
from pathlib import Path

from ktrdr.cli import settings


def ktrdr_home() -> Path:
    """$KTRDR_HOME (with `~` expanded), or ~/.ktrdr; always an absolute path.

    A relative KTRDR_HOME is resolved against the current directory the first time it is read
    and written back to the environment as that absolute path: otherwise the registry would
    move with the directory a command runs in (and differ again in a child process started with
    another cwd), so `list` in one checkout would not see an instance created from another.
    """
    configured = settings.get("KTRDR_HOME")
    if not configured:
        return Path.home() / ".ktrdr"
    home = Path(configured).expanduser()
    if not home.is_absolute():
        home = Path.cwd() / home
        os.environ["KTRDR_HOME"] = str(home)
    return home


def evidence_dir(instance_id: str) -> Path:
    """Evidence bundles live outside the worktree: `destroy` removes the worktree, and the
    evidence of what an instance did must outlive it."""
    return ktrdr_home() / "evidence" / instance_id


def unused_evidence_path(instance_id: str, stem: str, suffix: str = "") -> Path:
    """`<evidence dir>/<stem><suffix>`, or with `-2`, `-3`… appended to the stem when taken:
    names carry a one-second stamp, and nothing kept there may be replaced."""
    directory = evidence_dir(instance_id)
    candidate, counter = directory / f"{stem}{suffix}", 2
    while candidate.exists():
        candidate, counter = directory / f"{stem}-{counter}{suffix}", counter + 1
    return candidate


HOME_ID_FILE = "home-id"
HOME_ID_LENGTH = 8


def home_id() -> str:
    """This home's owner id: made once (random), kept in `$KTRDR_HOME/home-id`.

    Every container, volume and network the tool creates carries it as the `ktrdr.owner` label,
    and it is part of every compose project name, so two homes on one engine never share a
    project even when their instances have the same readable id."""
    import secrets

    from ktrdr.cli.sandbox.atomic import write_atomic
    from ktrdr.cli.sandbox.errors import SandboxError

    home = ktrdr_home()
    path = home / HOME_ID_FILE
    existing = _read_home_id(path)
    if existing:
        return existing
    candidate = secrets.token_hex(HOME_ID_LENGTH // 2)
    try:
        home.mkdir(parents=True, exist_ok=True)
        # Never replaced: the first writer wins, racers read its id.
        write_atomic(path, candidate + "\n", mode=None, replace=False)
    except OSError as e:
        raise SandboxError(
            f"cannot record this home's id in {path}: {e.strerror or e}; check that "
            f"{home} is a writable directory, or set KTRDR_HOME elsewhere"
        ) from e
    found = _read_home_id(path)
    if not found:
        raise SandboxError(
            f"{path} does not hold a home id ({HOME_ID_LENGTH} lowercase hex digits): move it "
            "aside so a new one is made (instances made with the old id then count as another "
            "home's)"
        )
    return found


def _read_home_id(path: Path) -> str | None:
    from ktrdr.cli.sandbox.errors import SandboxError

    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise SandboxError(f"cannot read this home's id from {path}: {e.strerror or e}") from e
    if len(text) == HOME_ID_LENGTH and all(c in "0123456789abcdef" for c in text):
        return text
    raise SandboxError(
        f"{path} is corrupt (expected {HOME_ID_LENGTH} lowercase hex digits, got {text[:20]!r}): "
        "it was left untouched; restore it, or move it aside to make a new one (instances "
        "made under the old id then count as another home's)"
    )
