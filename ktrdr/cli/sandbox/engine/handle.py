"""The Docker engine as a value: which engine a call talks to is an argument, never a global.

An instance lives on a Docker context (`create --context CTX`) or on the docker CLI's default
engine (context None: DOCKER_HOST or the current context). An `Engine` names that context and
builds every `docker …` argv with it (`docker --context CTX …`, as python-on-whales'
`DockerClient(context=…)` does; a named context beats DOCKER_HOST), so two engines can be used
from one process at once. A context whose endpoint is `ssh://` is *remote*: that engine cannot
see this machine's disk or loopback, so its instances get their sources copied and their ports
forwarded over SSH. Whether an engine is remote is decided once, when the Engine is made: from
the endpoint (`Engine.of`, at create/init) or from what the home recorded then (`recorded`).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ktrdr.cli.sandbox.base import proc
from ktrdr.cli.sandbox.base.errors import SandboxError

DEFAULT_LABEL = "local"  # how `list` and doctor name the default engine
INSPECT_TIMEOUT = 10.0
CHECK_TTL = 60.0  # seconds a successful engine check is trusted; failures are never kept


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


class CheckMemo:
    """When this engine last passed its check (engine.ensure_engine); per Engine value."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._passed_at: float | None = None

    def fresh(self) -> bool:
        with self._lock:
            return self._passed_at is not None and time.monotonic() - self._passed_at < CHECK_TTL

    def passed(self) -> None:
        with self._lock:
            self._passed_at = time.monotonic()


@dataclass(frozen=True)
class Engine:
    """One Docker engine: its context (None: the docker CLI's default), whether it is remote,
    and its endpoint when known."""

    context: str | None = None
    remote: bool = False
    endpoint: str | None = None
    checks: CheckMemo = field(default_factory=CheckMemo, compare=False, repr=False)

    @classmethod
    def of(cls, context: str | None) -> Engine:
        """The engine of `context`, its endpoint read from docker (`validate` first)."""
        if not context:
            return cls()
        url = endpoint(context)
        return cls(context, remote=url.startswith("ssh://"), endpoint=url)

    def argv(self, *args: object) -> list[str]:
        """`docker [--context CTX] ARGS…`."""
        head = ["docker", "--context", self.context] if self.context else ["docker"]
        return [*head, *(str(a) for a in args)]

    @property
    def label(self) -> str:
        return label(self.context)

    def describe(self) -> str | None:
        """The context with its endpoint, as messages name it (None: the default engine)."""
        if not self.context:
            return None
        try:
            return f"Docker context {self.context!r} ({self.endpoint or endpoint(self.context)})"
        except SandboxError:
            return f"Docker context {self.context!r}"

    def retry_hint(self) -> str:
        """What to do when this engine does not answer."""
        if self.context:
            return (
                f"the connection to it is down or it is stopped; check `docker --context "
                f"{self.context} info`, then retry (nothing was changed)"
            )
        return "start Docker and retry"

    def ssh_endpoint(self) -> SshEndpoint | None:
        """Where SSH reaches this engine; None for one not reached over SSH."""
        if not self.context:
            return None
        url = self.endpoint or endpoint(self.context)
        if not url.startswith("ssh://"):
            return None
        parts = urlsplit(url)
        if not parts.hostname:
            raise SandboxError(
                f"Docker context {self.context!r} has no host in its endpoint {url!r}"
            )
        return SshEndpoint(host=parts.hostname, user=parts.username, port=parts.port)


def recorded(context: str | None, *, forward: int | None) -> Engine:
    """The engine an instance was created on, as the home recorded it: a remote instance got a
    block of forward ports then (create/init decided from the endpoint)."""
    return Engine(context or None, remote=forward is not None)


def label(context: str | None) -> str:
    return context or DEFAULT_LABEL


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


def validate(context: str | None) -> Engine:
    """The engine to record: the default engine for no name or docker's `default` (which would
    otherwise count as a second engine with slots of its own), else the context's once it exists
    and its endpoint is one we can serve; SandboxError else."""
    if not context or context == "default":
        return Engine()
    engine = Engine.of(context)
    if not (engine.endpoint or "").startswith(("ssh://", "unix://")):
        raise SandboxError(
            f"Docker context {context!r} points at {engine.endpoint}: only ssh:// (remote) and "
            "unix:// (local) engines are supported, since the tool forwards remote ports over SSH"
        )
    return engine
