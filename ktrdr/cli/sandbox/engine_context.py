"""Which Docker engine a command talks to: an instance lives on a Docker context (`create
--context CTX`), or on the docker CLI's default engine (None: DOCKER_HOST or the current context).

`use(context)` selects the engine for every `docker …` child started inside it (proc.child_env
puts DOCKER_CONTEXT in the child's environment); the rest of the code does not pass it around.
A context whose endpoint is `ssh://` is *remote*: that engine cannot see this machine's disk or
loopback, so its instances get their sources copied and their ports forwarded over SSH.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from ktrdr.cli.sandbox import proc
from ktrdr.cli.sandbox.errors import SandboxError

DEFAULT_LABEL = "local"  # how `list` and doctor name the default engine
INSPECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class SshEndpoint:
    host: str
    user: str | None = None
    port: int | None = None

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def ssh_args(self) -> list[str]:
        """`ssh` arguments naming this endpoint (the user's ssh config applies as usual)."""
        return [*(["-p", str(self.port)] if self.port else []), "--", self.destination]


def current() -> str | None:
    return proc.docker_context()


@contextmanager
def use(context: str | None) -> Iterator[None]:
    """Every docker child started inside talks to `context` (None: the default engine)."""
    token = proc.scoped_docker_context.set(context or None)
    try:
        yield
    finally:
        proc.scoped_docker_context.reset(token)


def select(context: str | None) -> None:
    """`use` for the rest of this command: a CLI command acts on one instance's engine."""
    proc.command_docker_context[0] = context or None


def describe() -> str | None:
    """The selected context with its endpoint, as messages name it (None: the default)."""
    context = current()
    if not context:
        return None
    try:
        return f"Docker context {context!r} ({endpoint(context)})"
    except SandboxError:
        return f"Docker context {context!r}"


def retry_hint() -> str:
    """What to do when the selected engine does not answer."""
    context = current()
    if context:
        return (
            f"the connection to it is down or it is stopped; check `docker --context {context} "
            "info`, then retry (nothing was changed)"
        )
    return "start Docker and retry"


def label(context: str | None) -> str:
    return context or DEFAULT_LABEL


@functools.cache
def endpoint(context: str) -> str:
    """The docker endpoint of a context (`ssh://…`, `unix://…`, `tcp://…`); SandboxError with
    what to do when the context does not exist."""
    result = proc.run(
        ["docker", "context", "inspect", "--format", "{{json .Endpoints.docker.Host}}", context],
        timeout=INSPECT_TIMEOUT,
        check=False,
        what="docker context inspect",
    )
    if result.returncode != 0:
        raise SandboxError(
            f"Docker context {context!r} does not exist ({proc.stderr_tail(result.stderr, 1)}): "
            f"create it with `docker context create {context} --docker host=ssh://USER@HOST`, "
            "or see `docker context ls`"
        )
    try:
        return str(json.loads(result.stdout.strip() or '""'))
    except json.JSONDecodeError:
        return result.stdout.strip().strip('"')


def ssh_endpoint(context: str | None) -> SshEndpoint | None:
    """Where SSH reaches the engine of `context`; None for an engine that is not reached over
    SSH (the default engine, a local socket, tcp://)."""
    if not context:
        return None
    url = endpoint(context)
    if not url.startswith("ssh://"):
        return None
    parts = urlsplit(url)
    if not parts.hostname:
        raise SandboxError(f"Docker context {context!r} has no host in its endpoint {url!r}")
    return SshEndpoint(host=parts.hostname, user=parts.username, port=parts.port)


def is_remote(context: str | None) -> bool:
    return ssh_endpoint(context) is not None


def validate(context: str | None) -> str | None:
    """The context to record: None for the default engine (no name, or docker's `default`,
    which would otherwise count as a second engine with slots of its own), else the name once
    it exists and its endpoint is one we can serve; SandboxError else."""
    if not context or context == "default":
        return None
    url = endpoint(context)
    if not url.startswith(("ssh://", "unix://")):
        raise SandboxError(
            f"Docker context {context!r} points at {url}: only ssh:// (remote) and unix:// "
            "(local) engines are supported, since the tool forwards remote ports over SSH"
        )
    return context
