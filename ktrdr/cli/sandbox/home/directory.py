"""Where KTRDR keeps its state: $KTRDR_HOME, default ~/.ktrdr (registry, shared data,
evidence)."""

from __future__ import annotations

from pathlib import Path

from ktrdr.cli import settings
from ktrdr.cli.sandbox.base.atomic import write_atomic
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.errors import ExitCode, KtrdrError


def ktrdr_home() -> Path:
    """$KTRDR_HOME (with `~` expanded), or ~/.ktrdr when unset; always an absolute path.

    A relative or empty KTRDR_HOME is refused (a usage error), not resolved: a relative path
    would name another home in every directory a command (or a child process, a test run, an
    MCP server) starts in, so no choice of "the" directory to resolve it against is right for
    all of them; and an empty one reads like "no home", not "the default home". The message
    names the absolute path to set instead.
    """

    if settings.is_set_empty("KTRDR_HOME"):
        raise KtrdrError(
            "KTRDR_HOME is set but empty: unset it to use ~/.ktrdr, or set it to an absolute "
            f"path (e.g. export KTRDR_HOME={Path.home() / '.ktrdr'})",
            exit_code=ExitCode.USAGE,
        )
    configured = settings.get("KTRDR_HOME")
    if not configured:
        return Path.home() / ".ktrdr"
    home = Path(configured).expanduser()
    if not home.is_absolute():
        raise KtrdrError(
            f"KTRDR_HOME={configured} is a relative path, which would name another home in "
            f"every directory: set it to an absolute path (export KTRDR_HOME={Path.cwd() / home})",
            exit_code=ExitCode.USAGE,
        )
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
    home = ktrdr_home()
    path = home / HOME_ID_FILE
    existing = _read_home_id(path)
    if existing:
        return existing
    # Only a new home needs these (`list` and every other command read the id).
    import secrets

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
