"""Which KTRDR API the CLI talks to, and why.

Precedence: `-u` > `-p` > env KTRDR_API_URL > env KTRDR_API_PORT > the API port this home
recorded for the instance whose `.env.sandbox` is nearest (current directory or a parent; the
file is only checked against the record) > http://localhost:8000.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ktrdr.cli import settings
from ktrdr.envfile import SANDBOX_ENV_FILENAME, find_upwards
from ktrdr.errors import ExitCode, KtrdrError

DEFAULT_API_URL = "http://localhost:8000"


class BadTargetError(KtrdrError):
    """A port or URL that cannot name an API; a usage error."""

    exit_code = ExitCode.USAGE


@dataclass(frozen=True)
class ApiTarget:
    url: str
    source: str  # "flag --url", "flag --port", "env KTRDR_API_URL", ..., "default"
    env_file: Path | None = None

    def to_json(self) -> dict[str, str | None]:
        return {
            "api_url": self.url,
            "source": self.source,
            "env_file": str(self.env_file) if self.env_file else None,
        }


def parse_port(value: str | int, *, origin: str) -> int:
    text = str(value).strip()
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise BadTargetError(f"invalid port {str(value)!r} from {origin}: expected 1-65535")
    return int(text)


def validate_url(value: str, *, origin: str) -> str:
    text = value.strip()
    expected = f"invalid API URL {value!r} from {origin}: expected http(s)://HOST[:PORT]"
    try:
        parts = urlsplit(text)
    except ValueError as e:  # e.g. `http://[::1` (unbalanced brackets)
        raise BadTargetError(f"{expected}, e.g. http://[::1]:8000 ({e})") from e
    if parts.scheme not in ("http", "https") or not _valid_host(parts.netloc):
        raise BadTargetError(expected)
    host_port = parts.netloc.rpartition("@")[2]
    _, has_port, port_text = host_port.rpartition("]")[2].partition(":")
    # Checked here rather than via `parts.port`, which accepts 0 and " 80" and words its
    # range as 0-65535: the same rule as -p.
    if has_port and not (port_text.isdigit() and 1 <= int(port_text) <= 65535):
        raise BadTargetError(
            f"invalid port {port_text!r} in API URL {value!r} from {origin}: expected 1-65535"
        )
    return text.rstrip("/")


def _valid_host(netloc: str) -> bool:
    """A DNS name or IPv4 address, or an IPv6 address in brackets; no spaces or stray marks."""
    host = netloc.rpartition("@")[2]
    if host.startswith("["):
        address, bracket, rest = host[1:].partition("]")
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            return False
        return bool(bracket) and (not rest or rest.startswith(":"))
    return re.fullmatch(r"[\w.-]+", host.partition(":")[0]) is not None


def url_for_port(port: int) -> str:
    return f"http://localhost:{port}"


def resolve_target(
    *,
    url_flag: str | None,
    port_flag: str | int | None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ApiTarget:
    environ = settings.values("KTRDR_API_URL", "KTRDR_API_PORT") if environ is None else environ
    if url_flag:
        return ApiTarget(validate_url(url_flag, origin="--url"), "flag --url")
    if port_flag is not None:
        return ApiTarget(url_for_port(parse_port(port_flag, origin="--port")), "flag --port")
    try:
        if environ.get("KTRDR_API_URL"):
            url = validate_url(environ["KTRDR_API_URL"], origin="env KTRDR_API_URL")
            return ApiTarget(url, "env KTRDR_API_URL")
        if environ.get("KTRDR_API_PORT"):
            port = parse_port(environ["KTRDR_API_PORT"], origin="env KTRDR_API_PORT")
            return ApiTarget(url_for_port(port), "env KTRDR_API_PORT")
    except BadTargetError as e:
        raise BadTargetError(f"{e}; fix or unset it, or pass -p/-u") from None
    env_file = find_upwards(SANDBOX_ENV_FILENAME, cwd or Path.cwd())
    if env_file is not None:
        return ApiTarget(url_for_port(recorded_api_port(env_file)), "env file", env_file)
    return ApiTarget(DEFAULT_API_URL, "default")


def recorded_api_port(env_file: Path) -> int:
    """The API port of the instance whose view `env_file` is, as its home recorded it: the
    file is in a worktree an agent edits, and a port edited there would reach another
    instance's API. A file no instance of this home owns names no port to trust."""
    from ktrdr.cli.sandbox.instances.locate import locate

    try:
        instance = locate(None, env_file.parent, name_hint="")
    except KtrdrError as e:
        raise KtrdrError(f"{e}; or pass -p/-u to name the API yourself") from None
    return instance.ports.api
