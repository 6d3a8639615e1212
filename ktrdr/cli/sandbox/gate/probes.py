"""What the Startability Gate asks of a stack, and the real answers.

`GateProbes` is the protocol the gate loop probes through (container state, HTTP, logs, the
engine's view of a container); `DockerProbes` implements it with `docker` queries by label and
HTTP to the published 127.0.0.1 ports. Tests pass scripted stand-ins instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from ktrdr.cli.sandbox.engine import logs as container_logs
from ktrdr.cli.sandbox.engine import queries as engine
from ktrdr.cli.sandbox.engine.follow import ContainerFollower
from ktrdr.cli.sandbox.engine.handle import Engine
from ktrdr.cli.sandbox.engine.queries import ContainerState

HTTP_TIMEOUT = 2.0


class ProbeError(Exception):
    """A probe could not get an answer (connection refused, timeout, docker failure)."""


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: Any  # parsed JSON when the response is JSON, else the text


class GateProbes(Protocol):
    def containers(self) -> list[ContainerState]: ...

    def http_get(self, url: str) -> HttpAnswer: ...

    def logs(self, container: str, tail: int) -> list[str]: ...

    def engine_view(self, container: str) -> list[str]: ...


class Startup(Protocol):
    """The containers being started (compose.StartingStack), watched while the gate runs."""

    def done(self) -> bool: ...

    def error(self) -> str | None: ...


class DockerProbes:
    """The real probes: containers by label (listed and inspected, or followed) and HTTP to
    127.0.0.1 published ports."""

    def __init__(
        self,
        docker: Engine,
        instance_id: str,
        *,
        engine_timeout: float | None = None,
        follow: bool = False,
    ) -> None:
        """`engine_timeout`: a shorter limit for docker queries (`status` must not hang).
        `follow`: many rounds will ask (the gate), so follow the engine's events
        (engine/follow.py) instead of listing and inspecting every round."""
        self.docker = docker
        self.instance_id = instance_id
        self.engine_timeout = engine_timeout
        self.follower = ContainerFollower(docker, instance_id) if follow else None
        # Proxies must never see loopback probes: trust_env=False ignores HTTP(S)_PROXY.
        self._client = httpx.Client(timeout=HTTP_TIMEOUT, trust_env=False)

    def containers(self) -> list[ContainerState]:
        if self.follower is not None:
            return self.follower.containers()
        return engine.ps(self.docker, self.instance_id)

    def http_get(self, url: str) -> HttpAnswer:

        try:
            response = self._client.get(url)
        except httpx.ConnectError as e:
            raise ProbeError("connection refused") from e
        except httpx.TimeoutException as e:
            raise ProbeError(f"no answer within {HTTP_TIMEOUT:g}s") from e
        except httpx.HTTPError as e:
            raise ProbeError(str(e) or type(e).__name__) from e
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        return HttpAnswer(response.status_code, body)

    def logs(self, container: str, tail: int) -> list[str]:
        timeout = self.engine_timeout or engine.QUERY_TIMEOUT
        return container_logs.container_logs(self.docker, container, tail=tail, timeout=timeout)

    def engine_view(self, container: str) -> list[str]:
        return container_logs.engine_view(self.docker, container)

    def close(self) -> None:
        self._client.close()
        if self.follower is not None:
            self.follower.close()
