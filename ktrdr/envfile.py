"""Read `KEY=VALUE` env files (the format shared by Docker Compose `--env-file` and the CLI)."""

from __future__ import annotations

from pathlib import Path

from ktrdr.errors import KtrdrError

SANDBOX_ENV_FILENAME = ".env.sandbox"


def parse_env_text(text: str) -> dict[str, str]:
    """Parse env-file text: `#` comments and blank lines skipped, optional quotes stripped."""
    values: dict[str, str] = {}
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def read_env_file(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise KtrdrError(f"cannot read {path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise KtrdrError(f"cannot read {path}: not UTF-8 text ({e.reason})") from e
    return parse_env_text(text)


def find_upwards(filename: str, start: Path) -> Path | None:
    """The first `filename` in `start` or any of its parents, or None."""
    start = start.resolve()
    for directory in (start, *start.parents):
        candidate = directory / filename
        if candidate.is_file():
            return candidate
    return None
