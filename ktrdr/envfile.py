"""Read `KEY=VALUE` env files (the format shared by Docker Compose `--env-file` and the CLI)."""

from __future__ import annotations

import re
from pathlib import Path

from ktrdr.errors import KtrdrError

SANDBOX_ENV_FILENAME = ".env.sandbox"
_DOUBLE_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "$": "$"}


def parse_env_text(text: str) -> dict[str, str]:
    """Parse env-file text the way Docker Compose does, for single-line values: `#` comment
    lines and blank lines skipped, an optional `export `, a value in double or single quotes
    taken up to its closing quote (double quotes expand `\\n \\t \\r \\\\ \\" \\$`), and an
    unquoted value ending before a ` #` comment. Checked against `docker compose config`."""
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
        values[key.strip()] = _value(value.strip())
    return values


def _value(text: str) -> str:
    if text[:1] == "'":
        closing = text.find("'", 1)
        if closing > 0:
            return text[1:closing]  # literal, like Compose: no escapes in single quotes
    elif text[:1] == '"':
        match = _DOUBLE_QUOTED.match(text)
        if match:
            return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m[1], m[0]), match.group(1))
    else:
        # Compose starts a comment at ` #` (a space, not a tab); `a#b` stays one value.
        return text.split(" #", 1)[0].rstrip()
    return text  # an unclosed quote: kept as written, so the caller's error shows it


def read_env_file(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise KtrdrError(f"cannot read {path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise KtrdrError(
            f"cannot read {path}: not UTF-8 text ({e.reason}); re-save it as UTF-8 "
            "(e.g. with `iconv -t utf-8`) and retry"
        ) from e
    return parse_env_text(text)


def find_upwards(filename: str, start: Path) -> Path | None:
    """The first `filename` in `start` or any of its parents, or None."""
    start = start.resolve()
    for directory in (start, *start.parents):
        candidate = directory / filename
        if candidate.is_file():
            return candidate
    return None
